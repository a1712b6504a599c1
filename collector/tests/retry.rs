//! Acceptance: a backend answering UNAVAILABLE / 503 with a retry delay is retried after the
//! delay it asked for, and the data is delivered; a permanent error (INVALID_ARGUMENT / 400) is
//! not retried and is counted as dropped in hpcotel's own metrics.

mod common;

use std::time::Duration;

use common::otlp::{attr_str, spans_request};
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::{Behaviour, OtlpSink};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

fn config(receiver: u16, kind: &str, backend: &str, metrics_sink: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{receiver}" }}
exporters:
  {kind}/backend:
    endpoint: "{backend}"
    retry_on_failure: {{ initial_interval: 50ms, max_interval: 100ms }}
  otlp/self:
    endpoint: "{metrics_sink}"
service:
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [{kind}/backend] }}
    metrics: {{ receivers: [otlp], exporters: [otlp/self] }}
"#
    )
}

async fn send(receiver: u16, run: &str, n: usize) {
    TraceServiceClient::connect(format!("http://127.0.0.1:{receiver}"))
        .await
        .unwrap()
        .export(spans_request(run, 0, n))
        .await
        .expect("hpcotel accepts the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_with_retry_delay_is_waited_out_then_delivered() {
    for kind in ["otlp", "otlphttp"] {
        let backend = OtlpSink::start().await;
        let metrics = OtlpSink::start().await;
        let delay = Duration::from_millis(1200);
        backend.push_behaviour(
            Behaviour::Fail {
                grpc: tonic::Code::Unavailable,
                http: 503,
                retry_after: Some(delay),
                message: "backend restarting".into(),
            },
            2,
        );
        let endpoint = if kind == "otlp" {
            backend.grpc_endpoint()
        } else {
            backend.http_endpoint()
        };
        let receiver = free_port();
        let _hpcotel = Hpcotel::start(&config(receiver, kind, &endpoint, &metrics.grpc_endpoint()));
        send(receiver, "retry", 5).await;

        let got = backend
            .wait_for(
                &format!("{kind}: 5 spans after 2 refusals"),
                Duration::from_secs(30),
                |r| r.span_count() == 5,
            )
            .await;
        assert_eq!(got.span_count(), 5, "{kind}: delivered once, no duplicates");
        let attempts: Vec<_> = backend
            .requests()
            .into_iter()
            .filter(|r| r.items == 5)
            .collect();
        assert_eq!(
            attempts.len(),
            3,
            "{kind}: two refused attempts and one accepted: {attempts:?}"
        );
        for pair in attempts.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].answered_at);
            // The configured backoff is 50-100 ms; the backend asked for 1.2 s and must be obeyed.
            assert!(
                gap >= delay,
                "{kind}: retried after {gap:?}, backend asked for {delay:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_not_retried_and_are_counted_as_dropped() {
    for kind in ["otlp", "otlphttp"] {
        let backend = OtlpSink::start().await;
        let metrics = OtlpSink::start().await;
        backend.set_behaviour(Behaviour::Fail {
            grpc: tonic::Code::InvalidArgument,
            http: 400,
            retry_after: None,
            message: "span name too long".into(),
        });
        let endpoint = if kind == "otlp" {
            backend.grpc_endpoint()
        } else {
            backend.http_endpoint()
        };
        let receiver = free_port();
        let _hpcotel = Hpcotel::start(&config(receiver, kind, &endpoint, &metrics.grpc_endpoint()));
        send(receiver, "permanent", 7).await;

        // hpcotel's own metric says the 7 spans were dropped as permanent failures.
        let dropped = |r: &hpcotel_testkit::sink::Received| -> i64 {
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
                    attr_str(&p.attributes, "hpcotel.reason") == Some("permanent")
                        && attr_str(&p.attributes, "hpcotel.signal") == Some("traces")
                        && attr_str(&p.attributes, "hpcotel.component.id")
                            == Some(&format!("{kind}/backend"))
                })
                .filter_map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(v)) => Some(v),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        };
        metrics
            .wait_for(
                &format!("{kind}: hpcotel.exporter.dropped{{reason=permanent}} = 7"),
                Duration::from_secs(30),
                |r| dropped(r) == 7,
            )
            .await;
        // The drop was final: exactly one attempt reached the backend.
        let attempts = backend
            .requests()
            .into_iter()
            .filter(|r| r.items == 7)
            .count();
        assert_eq!(attempts, 1, "{kind}: a permanent error was retried");
        assert_eq!(backend.received().span_count(), 0);
    }
}
