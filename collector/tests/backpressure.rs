//! Acceptance: with the exporter's backend stalled, receivers answer with the retryable status
//! (gRPC RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 + Retry-After) instead of buffering
//! without bound; when the backend returns, everything that was accepted is delivered.

mod common;

use std::time::Duration;

use common::otlp::spans_request;
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::{Behaviour, OtlpSink};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

const SPANS_PER_REQUEST: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_backend_turns_into_retryable_refusals_and_nothing_accepted_is_lost() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let (grpc, http) = (free_port(), free_port());
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp/sink:
    endpoint: "{sink}"
    timeout: 60s
    sending_queue: {{ queue_size: 2, num_consumers: 1 }}
    retry_on_failure: {{ initial_interval: 100ms, max_elapsed_time: 0s }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink], queue_size: 2 }}
"#,
        sink = sink.grpc_endpoint(),
    ));

    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let (mut accepted, mut refused) = (0usize, 0usize);
    for i in 0..200 {
        match client
            .export(spans_request(
                "bp",
                i * SPANS_PER_REQUEST,
                SPANS_PER_REQUEST,
            ))
            .await
        {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                let retry = tonic_types::StatusExt::get_details_retry_info(&status);
                assert!(
                    retry.is_some(),
                    "RESOURCE_EXHAUSTED without RetryInfo is not retryable per OTLP"
                );
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refused, 5,
        "never pushed back after {accepted} accepted requests"
    );
    // Bounded: pipeline channel (2) + fan-out (1) + export queue (2) + the stalled export (1),
    // and a little slack for batches in hand-over.
    assert!(
        accepted <= 10,
        "accepted {accepted} requests while the backend was stalled"
    );

    // OTLP/HTTP answers 429 with Retry-After while full.
    let body = spans_request("bp-http", 0, 1).encode_to_vec();
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After header");
    assert!(
        retry_after.to_str().unwrap().parse::<u64>().is_ok(),
        "{retry_after:?}"
    );

    // Backend returns: exactly what was accepted arrives, nothing refused sneaks in.
    sink.set_behaviour(Behaviour::Accept);
    let expected = accepted * SPANS_PER_REQUEST;
    let got = sink
        .wait_for(&format!("{expected} spans"), Duration::from_secs(30), |r| {
            r.span_count() >= expected
        })
        .await;
    let mut names = got.span_names();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        expected,
        "duplicates or losses: {} distinct of {expected}",
        names.len()
    );
    let accepted_names: Vec<String> = (0..accepted * SPANS_PER_REQUEST)
        .map(|i| format!("bp-{i}"))
        .collect();
    for n in &accepted_names {
        assert!(
            names.binary_search(n).is_ok(),
            "accepted span {n} was not delivered"
        );
    }
}
