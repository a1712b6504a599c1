//! Acceptance: SIGTERM while clients are sending: hpcotel stops accepting, drains its
//! pipelines, flushes its exporters, exits 0, and the backend holds every item hpcotel
//! acknowledged.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otlp::spans_request;
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_after_delivering_everything_acknowledged() {
    let sink = OtlpSink::start().await;
    let grpc = free_port();
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 2s, send_batch_size: 100000 }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
service:
  shutdown_timeout: 20s
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint(),
    ));

    const CLIENTS: usize = 4;
    const SPANS: usize = 25;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (acked, progress) = (acked.clone(), progress.clone());
        let endpoint = format!("http://127.0.0.1:{grpc}");
        clients.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
            // Send until hpcotel stops answering; count only acknowledged spans.
            for r in 0.. {
                let run = format!("c{c}");
                let req = spans_request(&run, r * SPANS, SPANS);
                let names: Vec<String> = (r * SPANS..(r + 1) * SPANS)
                    .map(|i| format!("{run}-{i}"))
                    .collect();
                match client.export(req).await {
                    Ok(_) => {
                        acked.lock().unwrap().extend(names);
                        progress.notify_one();
                    }
                    Err(_) => return r,
                }
            }
            unreachable!()
        }));
    }
    // Under load (a batch of 2 s is still held in the batch processor): stop it.
    tokio::time::timeout(Duration::from_secs(30), async {
        while acked.lock().unwrap().len() < 200 * SPANS {
            progress.notified().await;
        }
    })
    .await
    .expect("load never reached 200 acknowledged requests");
    let status = sigterm_and_wait(hpcotel).await;
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        status.0.code(),
        Some(0),
        "hpcotel did not exit 0; stderr:\n{}",
        status.1
    );

    let acked = acked.lock().unwrap().clone();
    let received: HashSet<String> = sink.received().span_names().into_iter().collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|n| !received.contains(*n))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost, e.g. {missing:?}",
        acked.iter().filter(|n| !received.contains(*n)).count()
    );
    eprintln!(
        "acknowledged {} spans, sink holds {}",
        acked.len(),
        received.len()
    );
}

/// The `dropped_at_shutdown=N` hpcotel reports when it stops uncleanly.
fn dropped_at_shutdown(log: &str) -> Option<u64> {
    let at = log.find("dropped_at_shutdown=")? + "dropped_at_shutdown=".len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Acceptance (nothing dropped silently): when the backend never answers, SIGTERM's deadline
/// passes with data still inside hpcotel — held by the batch processor, waiting in an export
/// queue, in an export that is in flight. hpcotel exits 1 and counts every one of those items
/// as dropped, none lost uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_deadline_everything_undelivered_is_counted_as_dropped() {
    use common::otlp::logs_request;
    use hpcotel_testkit::sink::Behaviour;
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;

    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let grpc = free_port();
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 1h, send_batch_size: 100000 }}
exporters:
  otlp/sink:
    endpoint: "{sink}"
    timeout: 120s
    sending_queue: {{ num_consumers: 1, queue_size: 10 }}
service:
  shutdown_timeout: 2s
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp/sink] }}
    logs: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint(),
    ));
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut logs = LogsServiceClient::connect(endpoint).await.unwrap();
    // 30 spans: held by the batch processor (1 h timeout) until shutdown, then stuck behind
    // the full queue. 8 × 5 log records: the first request's records are in an export the
    // stalled backend never answers, the next 10 fill the export queue (10 items, one
    // consumer), one request waits in the fan-out's hand and the rest in the pipeline's
    // channel.
    for r in 0..3 {
        traces
            .export(spans_request("held", r * 10, 10))
            .await
            .unwrap();
    }
    for r in 0..8 {
        logs.export(logs_request("queued", r * 5, 5)).await.unwrap();
    }
    let accepted = 30 + 40;
    // The first log export is held by the stalled sink.
    sink.wait_for_in_flight(1, Duration::from_secs(20)).await;

    let (status, log) = sigterm_and_wait(hpcotel).await;
    assert_eq!(
        status.code(),
        Some(1),
        "an unclean drain exits 1; log:\n{log}"
    );
    assert_eq!(
        dropped_at_shutdown(&log),
        Some(accepted),
        "every accepted item must be counted as dropped; log:\n{log}"
    );
    assert_eq!(sink.received().span_count(), 0);
}

/// Acceptance: a client stuck in the middle of a request (a body that never completes) can
/// neither hang shutdown nor keep the pipelines open: the receivers get half the shutdown
/// budget, then stop, and everything acknowledged is still delivered; exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_does_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;

    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
service:
  shutdown_timeout: 4s
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint(),
    ));
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    client.export(spans_request("acked", 0, 7)).await.unwrap();

    // Announce 1000 bytes, send 10, stall.
    let mut stuck = tokio::net::TcpStream::connect(("127.0.0.1", http))
        .await
        .unwrap();
    stuck
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    stuck.flush().await.unwrap();

    let (status, log) = sigterm_and_wait(hpcotel).await;
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    let names = sink.received().span_names();
    assert_eq!(names.len(), 7, "acknowledged spans lost: {names:?}");
    drop(stuck);
}

/// Sends SIGTERM and waits (at most 30 s) for hpcotel to exit; its exit status and log.
async fn sigterm_and_wait(mut hpcotel: Hpcotel) -> (std::process::ExitStatus, String) {
    hpcotel.sigterm();
    tokio::task::spawn_blocking(move || {
        let status = hpcotel.wait_exit(Duration::from_secs(30));
        (status, hpcotel.stderr())
    })
    .await
    .unwrap()
}
