//! Ids checked at the door, in the real binary: spans with wrong-length or all-zero trace and
//! span ids, sent over OTLP/gRPC (protobuf) and OTLP/HTTP (protobuf and JSON) beside good
//! ones, are refused with a partial success and never reach the backend; the good ones do.

mod common;

use std::time::Duration;

use common::otlp::spans_request;
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_with_malformed_ids_are_refused_and_the_good_ones_delivered() {
    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint()
    ));
    // 3 good spans and, among them, one of each malformed kind: trace ids of 3, 15, 17 and 0
    // bytes, a 4-byte span id, an all-zero trace id.
    let mixed = |run: &str| {
        let mut req = spans_request(run, 0, 9);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[1].trace_id.truncate(3);
        spans[2].trace_id.truncate(15);
        spans[3].trace_id.push(0);
        spans[4].trace_id.clear();
        spans[5].span_id.truncate(4);
        spans[6].trace_id = vec![0; 16];
        req
    };
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap();
    let partial = client
        .export(mixed("grpc"))
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .expect("a partial success");
    assert_eq!(partial.rejected_spans, 6);
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(mixed("http").encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body.partial_success.unwrap().rejected_spans, 6);
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"json-good"},
        {"traceId":"5b8efff798038103d269b633813fc6","spanId":"eee19b7ec3c1b174","name":"json-15"},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7e","name":"json-span-4"}
    ]}]}]}"#;
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2", "{v}");

    let r = sink
        .wait_for("the good spans", WAIT, |r| r.span_count() >= 7)
        .await;
    let mut names = r.span_names();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc-0",
            "grpc-7",
            "grpc-8",
            "http-0",
            "http-7",
            "http-8",
            "json-good"
        ]
    );
    for s in r.spans() {
        assert_eq!((s.trace_id.len(), s.span_id.len()), (16, 8), "{}", s.name);
    }
    println!(
        "malformed ids: 14 refused (6 gRPC, 6 HTTP protobuf, 2 HTTP JSON), {} good spans delivered",
        r.span_count()
    );
}
