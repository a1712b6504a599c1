//! Acceptance: the real OpenTelemetry Python SDK sends traces, metrics and logs to `hpcotel
//! run` over OTLP/gRPC, OTLP/HTTP protobuf and OTLP/HTTP JSON; hpcotel exports them to the
//! testkit sink (over gRPC for traces and logs, HTTP for metrics), and every span name,
//! attribute value, metric point and log body arrives intact.

mod common;

use std::process::Command;
use std::time::Duration;

use common::otlp::{attr, attr_str, body, logs_where, metrics_where, spans_where};
use common::{Hpcotel, free_port, python, test_file};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_traces_metrics_logs_arrive_intact_over_every_otlp_protocol() {
    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp/sink: {{ endpoint: "{sink_grpc}", tls: {{ insecure: true }} }}
  otlphttp/sink: {{ endpoint: "{sink_http}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp/sink] }}
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [otlphttp/sink] }}
    logs: {{ receivers: [otlp], processors: [batch], exporters: [otlp/sink] }}
"#,
        sink_grpc = sink.grpc_endpoint(),
        sink_http = sink.http_endpoint(),
    );
    let _hpcotel = Hpcotel::start(&config);

    for (protocol, endpoint) in [
        ("grpc", format!("http://127.0.0.1:{grpc}")),
        ("http/protobuf", format!("http://127.0.0.1:{http}")),
        ("http/json", format!("http://127.0.0.1:{http}")),
    ] {
        let run_id = format!("run-{protocol}");
        let out = Command::new(python())
            .arg(test_file("python/send_with_sdk.py"))
            .args([
                "--protocol",
                protocol,
                "--endpoint",
                &endpoint,
                "--run-id",
                &run_id,
            ])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{protocol}: SDK export failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let got = sink
            .wait_for(
                &format!("{protocol}: 2 spans, 2 metrics, 2 logs"),
                Duration::from_secs(20),
                |r| {
                    spans_where(&r.traces, "test.run_id", &run_id).len() == 2
                        && metrics_where(&r.metrics, "test.run_id", &run_id).len() == 2
                        && logs_where(&r.logs, "test.run_id", &run_id).len() == 2
                },
            )
            .await;

        // Traces: names, typed attributes, parent/child linkage.
        let spans = spans_where(&got.traces, "test.run_id", &run_id);
        let parent = spans
            .iter()
            .find(|s| s.name == "checkout")
            .expect("span checkout");
        let child = spans
            .iter()
            .find(|s| s.name == "db.query")
            .expect("span db.query");
        assert_eq!(
            attr_str(&parent.attributes, "http.request.method"),
            Some("POST"),
            "{protocol}"
        );
        assert_eq!(
            attr(&parent.attributes, "cart.items"),
            Some(&Value::IntValue(3)),
            "{protocol}"
        );
        assert_eq!(
            attr(&child.attributes, "ratio"),
            Some(&Value::DoubleValue(0.25)),
            "{protocol}"
        );
        assert_eq!(
            attr_str(&child.attributes, "db.system.name"),
            Some("postgresql")
        );
        assert_eq!(child.trace_id, parent.trace_id, "{protocol}: one trace");
        assert_eq!(child.trace_id.len(), 16, "{protocol}: trace id bytes");
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{protocol}: child links to parent"
        );
        assert_eq!(parent.kind, 2, "{protocol}: SERVER kind survives");

        // Metrics: counter points per route, histogram count and sum.
        let metrics = metrics_where(&got.metrics, "test.run_id", &run_id);
        let requests = metrics
            .iter()
            .find(|m| m.name == "requests")
            .expect("metric requests");
        assert_eq!(requests.unit, "{request}");
        let Some(Data::Sum(sum)) = &requests.data else {
            panic!("{protocol}: requests is not a sum")
        };
        assert!(sum.is_monotonic);
        let mut points: Vec<(String, i64)> = sum
            .data_points
            .iter()
            .map(|p| {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    other => panic!("{protocol}: unexpected value {other:?}"),
                };
                (
                    attr_str(&p.attributes, "route")
                        .unwrap_or_default()
                        .to_string(),
                    v,
                )
            })
            .collect();
        points.sort();
        assert_eq!(
            points,
            [("/cart".to_string(), 2), ("/checkout".to_string(), 5)],
            "{protocol}"
        );
        let latency = metrics
            .iter()
            .find(|m| m.name == "latency")
            .expect("metric latency");
        let Some(Data::Histogram(h)) = &latency.data else {
            panic!("{protocol}: latency is not a histogram")
        };
        assert_eq!(
            (h.data_points[0].count, h.data_points[0].sum),
            (3, Some(60.0)),
            "{protocol}"
        );

        // Logs: bodies, severity, attributes.
        let logs = logs_where(&got.logs, "test.run_id", &run_id);
        let mut bodies: Vec<&str> = logs.iter().filter_map(|l| body(l)).collect();
        bodies.sort();
        assert_eq!(
            bodies,
            ["GPU 0 fell off the bus", "rollout finished"],
            "{protocol}"
        );
        let warn = logs
            .iter()
            .find(|l| body(l) == Some("GPU 0 fell off the bus"))
            .unwrap();
        assert_eq!(warn.severity_text, "WARN", "{protocol}");
        assert_eq!(
            attr(&warn.attributes, "gpu.index"),
            Some(&Value::IntValue(0)),
            "{protocol}"
        );
    }
}
