//! Acceptance (issue 13, batches that fit the next hop; honest accounting): five 1 MiB spans,
//! each accepted, through `batch` into a downstream with the OpenTelemetry Collector's default
//! 4 MiB message limit all arrive, in more than one request, each under 4 MiB, and hpcotel
//! exits 0; a single 5 MiB span is refused at the exporter with reason `too_large` — in
//! hpcotel's own metrics, on `/readyz`, in the shutdown summary — and the exit code is 1.
//!
//! The downstream is testkit's sink with the Collector's limit: it refuses a longer message
//! as grpc-go does (RESOURCE_EXHAUSTED), so the 5 MiB batch of the original report would be
//! refused there. Run with `--nocapture` to see the requests and sizes it saw.

mod common;

use std::time::Duration;

use common::otlp::{attr_str, kv, spans_request};
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::{
    Answer, COLLECTOR_MAX_RECV_MSG_SIZE, OtlpSink, Received, RequestRecord, SinkOptions,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use prost::Message;

const MIB: usize = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(30);

/// Traces over gRPC (up to 16 MiB per message) through `batch` (with `batch_extra`) to the
/// sink; hpcotel's own metrics to `metrics_sink`; the health check on `health`.
fn config(grpc: u16, health: u16, batch_extra: &str, sink: &str, metrics_sink: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 16 }}
processors:
  batch: {{ send_batch_size: 5, timeout: 3s{batch_extra} }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
  otlp/self: {{ endpoint: "{metrics_sink}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  shutdown_timeout: 10s
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp/sink] }}
    metrics: {{ receivers: [otlp], exporters: [otlp/self] }}
"#
    )
}

/// One span named `<run>-0` carrying a `payload` attribute of `bytes` bytes.
fn big_span(run: &str, bytes: usize) -> ExportTraceServiceRequest {
    let mut req = spans_request(run, 0, 1);
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("payload", &"x".repeat(bytes)));
    req
}

/// A sink that refuses messages longer than the Collector's default 4 MiB.
async fn collector_like_sink() -> OtlpSink {
    OtlpSink::start_with(SinkOptions {
        max_message_bytes: Some(COLLECTOR_MAX_RECV_MSG_SIZE),
        ..SinkOptions::default()
    })
    .await
    .expect("start the sink")
}

fn print_requests(what: &str, requests: &[RequestRecord]) {
    eprintln!(
        "{what}: the sink (limit {COLLECTOR_MAX_RECV_MSG_SIZE} bytes) saw {} trace request(s):",
        requests.len()
    );
    for (i, r) in requests.iter().enumerate() {
        eprintln!(
            "  request {}: {} spans, {} bytes ({:.2} MiB), {:?}",
            i + 1,
            r.items,
            r.bytes,
            r.bytes as f64 / MIB as f64,
            r.answer
        );
    }
}

/// Sends SIGTERM and waits for hpcotel to exit: its exit code and log.
async fn stop(mut hpcotel: Hpcotel) -> (Option<i32>, String) {
    hpcotel.sigterm();
    tokio::task::spawn_blocking(move || {
        let status = hpcotel.wait_exit(WAIT);
        (status.code(), hpcotel.stderr())
    })
    .await
    .unwrap()
}

/// The log's shutdown summary lines.
fn summary_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("shutdown summary") || l.contains("shutdown complete"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_1_mib_spans_through_batch_into_a_4_mib_downstream_all_arrive() {
    // Default batch: the processor cuts by bytes (3 spans sent when the 4th arrives, 2 after
    // the timeout). `send_batch_max_bytes: 0`: it merges all five (`send_batch_size: 5`),
    // the original report's 5 MiB request, and the exporter splits it before sending.
    for (what, batch_extra) in [
        ("batch defaults", ""),
        ("send_batch_max_bytes: 0", ", send_batch_max_bytes: 0"),
    ] {
        let sink = collector_like_sink().await;
        let metrics = OtlpSink::start().await;
        let (grpc, health) = (free_port(), free_port());
        let hpcotel = Hpcotel::start(&config(
            grpc,
            health,
            batch_extra,
            &sink.grpc_endpoint(),
            &metrics.grpc_endpoint(),
        ));
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        for i in 0..5 {
            let req = big_span(&format!("mib{i}"), MIB);
            assert!(req.encoded_len() > MIB);
            client
                .export(req)
                .await
                .unwrap_or_else(|e| panic!("{what}: span {i} not accepted: {e}"));
        }
        let got = sink
            .wait_for(&format!("{what}: 5 spans"), WAIT, |r: &Received| {
                r.span_count() == 5
            })
            .await;
        let mut names = got.span_names();
        names.sort();
        assert_eq!(
            names,
            ["mib0-0", "mib1-0", "mib2-0", "mib3-0", "mib4-0"],
            "{what}"
        );

        let requests = sink.requests();
        print_requests(what, &requests);
        assert!(requests.len() > 1, "{what}: one request: {requests:?}");
        for r in &requests {
            assert_eq!(r.answer, Answer::Accepted, "{what}: {} bytes", r.bytes);
            assert!(
                r.bytes <= COLLECTOR_MAX_RECV_MSG_SIZE,
                "{what}: {} bytes",
                r.bytes
            );
        }
        assert_eq!(requests.iter().map(|r| r.items).sum::<usize>(), 5, "{what}");

        let (code, log) = stop(hpcotel).await;
        // Who cut: the processor by default, the exporter when the processor does not.
        let exporter_split = log
            .lines()
            .find(|l| l.contains("request longer than max_request_size; split"));
        if let Some(l) = exporter_split {
            eprintln!("  {l}");
        }
        assert_eq!(
            exporter_split.is_some(),
            !batch_extra.is_empty(),
            "{what}: log:\n{log}"
        );
        for l in summary_lines(&log) {
            eprintln!("  {l}");
        }
        assert_eq!(code, Some(0), "{what}: nothing was dropped; log:\n{log}");
        assert!(
            log.contains("shutdown complete: everything accepted was delivered"),
            "{what}: {log}"
        );
        assert!(!log.contains("accepted items dropped"), "{what}: {log}");
    }
}

/// `hpcotel.exporter.dropped` of `otlp/sink`, traces, with `reason`, in the latest snapshot.
fn dropped(r: &Received, reason: &str) -> i64 {
    r.metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "hpcotel.exporter.dropped")
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => Some(s.data_points.clone()),
            _ => None,
        })
        .flatten()
        .filter(|p| {
            attr_str(&p.attributes, "hpcotel.reason") == Some(reason)
                && attr_str(&p.attributes, "hpcotel.signal") == Some("traces")
                && attr_str(&p.attributes, "hpcotel.component.id") == Some("otlp/sink")
        })
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_5_mib_span_is_refused_at_the_exporter_counted_named_and_exit_1() {
    let sink = collector_like_sink().await;
    let metrics = OtlpSink::start().await;
    let (grpc, health) = (free_port(), free_port());
    let hpcotel = Hpcotel::start(&config(
        grpc,
        health,
        "",
        &sink.grpc_endpoint(),
        &metrics.grpc_endpoint(),
    ));
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    // A small span first: it is delivered; the exporter is healthy.
    client.export(big_span("small", 10)).await.unwrap();
    let huge = big_span("huge", 5 * MIB);
    let huge_len = huge.encoded_len();
    client
        .export(huge)
        .await
        .expect("the receiver accepts up to 16 MiB");

    metrics
        .wait_for(
            "hpcotel.exporter.dropped{otlp/sink, traces, too_large} = 1",
            WAIT,
            |r| dropped(r, "too_large") == 1,
        )
        .await;
    eprintln!(
        "hpcotel.exporter.dropped{{hpcotel.component.id=otlp/sink, hpcotel.signal=traces, hpcotel.reason=too_large}} = 1"
    );
    // The exporter refused it before sending: the sink never saw it.
    sink.wait_for("the small span", WAIT, |r| r.span_count() == 1)
        .await;
    let requests = sink.requests();
    print_requests("a 5 MiB span", &requests);
    assert_eq!(sink.received().span_names(), ["small-0"]);
    assert!(
        requests
            .iter()
            .all(|r| r.answer == Answer::Accepted && r.items == 1),
        "{requests:?}"
    );

    // /readyz names the exporter as dropping, and why.
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{health}/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    eprintln!("GET /readyz -> {status} {body}");
    assert_eq!(status, 503, "{body}");
    let exporter = &body["exporters"]["otlp/sink"];
    assert_eq!(exporter["status"], "dropping", "{body}");
    assert_eq!(exporter["reason"], "too_large", "{body}");
    assert_eq!(exporter["dropped"]["too_large"], 1, "{body}");

    let (code, log) = stop(hpcotel).await;
    let warned = log
        .lines()
        .find(|l| l.contains("an item alone is larger than max_request_size"))
        .unwrap_or_else(|| panic!("no WARN naming the refused item; log:\n{log}"));
    eprintln!("  {warned}");
    for needle in [
        "exporter=otlp/sink",
        "signal=traces",
        &format!("max_request_size={COLLECTOR_MAX_RECV_MSG_SIZE}"),
    ] {
        assert!(warned.contains(needle), "{needle} not in: {warned}");
    }
    let bytes: usize = warned
        .split("bytes=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes= in: {warned}"));
    assert!(
        bytes > COLLECTOR_MAX_RECV_MSG_SIZE && bytes >= huge_len - 1024,
        "{bytes} bytes (sent {huge_len}): {warned}"
    );
    let summary = summary_lines(&log);
    for l in &summary {
        eprintln!("  {l}");
    }
    let named = summary
        .iter()
        .find(|l| l.contains("accepted items dropped"))
        .unwrap_or_else(|| panic!("the summary names no drop; log:\n{log}"));
    for needle in [
        "component=otlp/sink",
        "signal=traces",
        "reason=too_large",
        "items=1",
    ] {
        assert!(named.contains(needle), "{needle} not in: {named}");
    }
    assert!(
        !log.contains("everything accepted was delivered"),
        "claimed a clean run; log:\n{log}"
    );
    assert_eq!(code, Some(1), "a drop means exit 1; log:\n{log}");
}
