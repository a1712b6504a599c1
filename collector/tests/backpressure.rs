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

/// Spans per client request: large enough that a bound counted in batches would show.
const SPANS_PER_REQUEST: usize = 1000;

/// Sends requests of [`SPANS_PER_REQUEST`] spans named `<run>-<n>` until hpcotel has refused
/// 5 (each with RESOURCE_EXHAUSTED and RetryInfo, as OTLP wants a retryable refusal), at most
/// `max` requests; the names of the spans it accepted.
async fn send_until_refused(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    run: &str,
    max: usize,
) -> Vec<String> {
    let mut accepted: Vec<String> = Vec::new();
    let mut refused = 0usize;
    for i in 0..max {
        let first = i * SPANS_PER_REQUEST;
        match client
            .export(spans_request(run, first, SPANS_PER_REQUEST))
            .await
        {
            Ok(_) => {
                accepted.extend((first..first + SPANS_PER_REQUEST).map(|n| format!("{run}-{n}")))
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                let retry = tonic_types::StatusExt::get_details_retry_info(&status);
                assert!(
                    retry.is_some(),
                    "RESOURCE_EXHAUSTED without RetryInfo is not retryable per OTLP"
                );
                refused += 1;
                if refused == 5 {
                    return accepted;
                }
            }
        }
    }
    panic!("never pushed back after {} accepted spans", accepted.len());
}

/// Waits until `sink` holds exactly the spans `accepted` names, once each.
async fn assert_delivered_once(sink: &OtlpSink, mut accepted: Vec<String>) {
    let expected = accepted.len();
    let got = sink
        .wait_for(&format!("{expected} spans"), Duration::from_secs(60), |r| {
            r.span_count() >= expected
        })
        .await;
    let mut names = got.span_names();
    names.sort();
    accepted.sort();
    assert_eq!(
        names, accepted,
        "delivered spans differ from the accepted ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_backend_turns_into_retryable_refusals_and_nothing_accepted_is_lost() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let (grpc, http) = (free_port(), free_port());
    // Default queue sizes: the point is that the defaults are bounded.
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
    timeout: 120s
    retry_on_failure: {{ initial_interval: 100ms, max_elapsed_time: 0s }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint(),
    ));

    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let accepted = send_until_refused(&mut client, "bp", 1000).await;
    // Bounded in items, with the default sizes: the pipeline's channel, one batch in the
    // fan-out's hand, the export queue, and one stalled export per queue consumer.
    let bound = hpcotel::config::DEFAULT_PIPELINE_QUEUE_SIZE
        + SPANS_PER_REQUEST
        + hpcotel_exporters::queue::DEFAULT_QUEUE_SIZE
        + hpcotel_exporters::queue::DEFAULT_NUM_CONSUMERS * SPANS_PER_REQUEST;
    eprintln!(
        "stalled backend: accepted {} spans before refusing; bound from the defaults {bound}",
        accepted.len()
    );
    assert!(
        accepted.len() <= bound,
        "accepted {} spans while the backend was stalled; the defaults bound it to {bound}",
        accepted.len()
    );

    // OTLP/HTTP answers 429 with Retry-After while full (a request as large as the refused
    // gRPC ones: a smaller one may still fit in what room is left).
    let body = spans_request("bp-http", 0, SPANS_PER_REQUEST).encode_to_vec();
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

    // Backend returns: exactly what was accepted arrives, once, and nothing refused.
    sink.set_behaviour(Behaviour::Accept);
    assert_delivered_once(&sink, accepted).await;
}

/// Every value of exporter `id`'s gauge `name` among the self-metrics `r` holds.
fn gauge(r: &hpcotel_testkit::sink::Received, name: &str, id: &str) -> Vec<i64> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    r.metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .filter_map(|m| match &m.data {
            Some(Data::Gauge(g)) => Some(g.data_points.clone()),
            _ => None,
        })
        .flatten()
        .filter(|p| common::otlp::attr_str(&p.attributes, "hpcotel.component.id") == Some(id))
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            Some(number_data_point::Value::AsDouble(v)) => Some(v as i64),
            None => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_sized_in_bytes_holds_at_most_its_budget_and_delivers_everything_after() {
    const BUDGET: i64 = 256 * 1024;
    let sink = OtlpSink::start().await;
    let metrics = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let grpc = free_port();
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp/sink:
    endpoint: "{sink}"
    timeout: 120s
    retry_on_failure: {{ initial_interval: 100ms, max_elapsed_time: 0s }}
    sending_queue: {{ sizer: bytes, queue_size: {BUDGET} }}
  otlp/self: {{ endpoint: "{metrics}" }}
service:
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink], queue_size: 4096 }}
    metrics: {{ receivers: [otlp], exporters: [otlp/self] }}
"#,
        sink = sink.grpc_endpoint(),
        metrics = metrics.grpc_endpoint(),
    ));
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let accepted = send_until_refused(&mut client, "bytes", 5000).await;
    // The queue's own gauges, in bytes: full to its budget, never past it.
    let got = metrics
        .wait_for("the export queue's size", Duration::from_secs(30), |r| {
            gauge(r, "hpcotel.exporter.queue.size", "otlp/sink")
                .iter()
                .any(|v| *v > BUDGET / 2)
        })
        .await;
    let sizes = gauge(&got, "hpcotel.exporter.queue.size", "otlp/sink");
    let capacity = gauge(&got, "hpcotel.exporter.queue.capacity", "otlp/sink");
    let peak = sizes.iter().copied().max().unwrap_or(0);
    eprintln!(
        "queue sized in bytes, backend stalled: {} spans accepted, queue peak {peak} of {BUDGET} bytes",
        accepted.len()
    );
    assert!(capacity.iter().all(|c| *c == BUDGET), "{capacity:?}");
    assert!(
        peak <= BUDGET,
        "the queue held {peak} bytes, budget {BUDGET}"
    );

    sink.set_behaviour(Behaviour::Accept);
    assert_delivered_once(&sink, accepted).await;
}
