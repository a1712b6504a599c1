//! Acceptance: hpcotel's exporters speak OTLP to a third-party implementation. hpcotel
//! forwards spans and metrics over OTLP/gRPC (`otlp`) and logs over OTLP/HTTP (`otlphttp`) to
//! rotel (from PyPI), and rotel's own debug log accounts for every item.

mod common;

use std::process::Command;
use std::time::Duration;

use common::otlp::{logs_request, metrics_request, spans_request};
use common::{Hpcotel, Proc, free_port, rotel_agent, sum_field};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotel_accepts_every_item_hpcotel_exports() {
    let (rotel_grpc, rotel_http) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(rotel_agent());
    cmd.args(["start", "--exporter", "blackhole"])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{rotel_grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{rotel_http}")])
        .args([
            "--debug-log",
            "traces",
            "--debug-log",
            "metrics",
            "--debug-log",
            "logs",
        ])
        .arg("--pid-file")
        .arg(dir.path().join("rotel.pid"))
        .arg("--log-file")
        .arg(dir.path().join("rotel.log"));
    let rotel = Proc::spawn(cmd, "Starting Rotel", dir, Default::default());

    let receiver = free_port();
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{receiver}" }}
processors:
  batch: {{ timeout: 50ms, send_batch_size: 100 }}
exporters:
  otlp/rotel: {{ endpoint: "http://127.0.0.1:{rotel_grpc}" }}
  otlphttp/rotel: {{ endpoint: "http://127.0.0.1:{rotel_http}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp/rotel] }}
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [otlp/rotel] }}
    logs: {{ receivers: [otlp], processors: [batch], exporters: [otlphttp/rotel] }}
"#
    ));

    let endpoint = format!("http://127.0.0.1:{receiver}");
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut metrics = MetricsServiceClient::connect(endpoint.clone())
        .await
        .unwrap();
    let mut logs = LogsServiceClient::connect(endpoint).await.unwrap();
    const REQUESTS: usize = 20;
    const SPANS: usize = 50;
    const METRICS: usize = 5;
    const LOGS: usize = 7;
    for r in 0..REQUESTS {
        traces
            .export(spans_request("rotel", r * SPANS, SPANS))
            .await
            .unwrap();
        metrics
            .export(metrics_request("rotel", r * METRICS, METRICS))
            .await
            .unwrap();
        logs.export(logs_request("rotel", r * LOGS, LOGS))
            .await
            .unwrap();
    }

    let (spans, points, records) = (REQUESTS * SPANS, REQUESTS * METRICS, REQUESTS * LOGS);
    rotel.wait_until(
        &format!("rotel to log {spans} spans, {points} metrics, {records} log records"),
        Duration::from_secs(30),
        |log| {
            sum_field(log, "Received traces", "spans") == spans as u64
                && sum_field(log, "Received metrics", "metrics") == points as u64
                && sum_field(log, "Received logs", "logs") == records as u64
        },
    );
    // Nothing beyond what was sent (no duplicates from retries).
    let log = rotel.stderr();
    assert_eq!(sum_field(&log, "Received traces", "spans"), spans as u64);
    assert_eq!(sum_field(&log, "Received logs", "logs"), records as u64);
}
