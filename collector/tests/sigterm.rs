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
    let mut hpcotel = Hpcotel::start(&format!(
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
    hpcotel.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let s = hpcotel.wait_exit(Duration::from_secs(30));
        (s, hpcotel.stderr())
    })
    .await
    .unwrap();
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
