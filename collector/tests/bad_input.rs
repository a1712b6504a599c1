//! Acceptance: bad input is answered with the status the OTLP specification documents and a
//! message saying what was wrong, and the collector keeps serving afterwards.

mod common;

use std::time::Duration;

use common::otlp::spans_request;
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::metadata::MetadataValue;

const TOKEN: &str = "s3cret-token";

/// `google.rpc.Status`, the body of every OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

struct Setup {
    _hpcotel: Hpcotel,
    sink: OtlpSink,
    grpc: u16,
    http: u16,
}

async fn setup() -> Setup {
    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let hpcotel = Hpcotel::start_with_env(
        &format!(
            r#"
receivers:
  otlp:
    auth: {{ token: "${{env:RECEIVER_TOKEN}}" }}
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 1 }}
      http: {{ endpoint: "127.0.0.1:{http}", max_request_body_size: 65536 }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
            sink = sink.grpc_endpoint()
        ),
        &[("RECEIVER_TOKEN", TOKEN)],
    );
    Setup { _hpcotel: hpcotel, sink, grpc, http }
}

async fn post(http: u16, path: &str, content_type: &str, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}{path}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("HTTP request")
}

/// The collector still accepts a good request and delivers it.
async fn still_serving(s: &Setup, run: &str) {
    let resp = post(s.http, "/v1/traces", "application/x-protobuf", Some(TOKEN), spans_request(run, 0, 2).encode_to_vec()).await;
    assert_eq!(resp.status().as_u16(), 200, "good request after {run} refused");
    s.sink
        .wait_for(&format!("spans after {run}"), Duration::from_secs(20), |r| {
            r.span_names().iter().filter(|n| n.starts_with(&format!("{run}-"))).count() == 2
        })
        .await;
}

async fn error_message(resp: reqwest::Response) -> String {
    let json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
    let bytes = resp.bytes().await.unwrap();
    if json {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON google.rpc.Status body");
        v["message"].as_str().unwrap_or_default().to_string()
    } else {
        RpcStatus::decode(bytes).expect("protobuf google.rpc.Status body").message
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_documented_statuses_and_the_collector_keeps_serving() {
    let s = setup().await;
    let cases: Vec<(&str, &str, &str, Option<&str>, Vec<u8>, u16, &str)> = vec![
        ("undecodable-protobuf", "/v1/traces", "application/x-protobuf", Some(TOKEN), vec![0xff, 0xff, 0xff, 0x0f, 0x01], 400, "decode"),
        ("invalid-json", "/v1/traces", "application/json", Some(TOKEN), b"{\"resourceSpans\": [".to_vec(), 400, "line 1"),
        ("wrong-content-type", "/v1/traces", "text/plain", Some(TOKEN), b"hello".to_vec(), 415, "application/x-protobuf"),
        ("oversized", "/v1/traces", "application/x-protobuf", Some(TOKEN), spans_request("big", 0, 2000).encode_to_vec(), 413, "65536"),
        ("unknown-path", "/v1/profiles", "application/x-protobuf", Some(TOKEN), vec![], 404, ""),
        ("wrong-token", "/v1/traces", "application/x-protobuf", Some("not-the-token"), spans_request("x", 0, 1).encode_to_vec(), 401, ""),
        ("missing-token", "/v1/traces", "application/x-protobuf", None, spans_request("x", 0, 1).encode_to_vec(), 401, ""),
    ];
    for (name, path, ct, token, body, status, needle) in cases {
        let resp = post(s.http, path, ct, token, body).await;
        assert_eq!(resp.status().as_u16(), status, "{name}");
        if status == 401 {
            assert!(resp.headers().get("www-authenticate").is_some(), "{name}: 401 without WWW-Authenticate");
        }
        if !needle.is_empty() {
            let msg = error_message(resp).await;
            assert!(msg.contains(needle), "{name}: message {msg:?} lacks {needle:?}");
        }
        still_serving(&s, name).await;
    }
    // The wrong token's data never got in.
    assert!(!s.sink.received().span_names().iter().any(|n| n.starts_with("x-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_get_documented_codes_and_the_collector_keeps_serving() {
    let s = setup().await;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", s.grpc)).await.unwrap();
    let with_token = |req, token: &str| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut()
            .insert("authorization", MetadataValue::try_from(format!("Bearer {token}")).unwrap());
        r
    };

    let err = client.export(with_token(spans_request("x", 0, 1), "wrong")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = client.export(tonic::Request::new(spans_request("x", 0, 1))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // 1 MiB limit: ~3 MiB of spans is refused.
    let big = spans_request("big", 0, 30_000);
    assert!(big.encoded_len() > 2 << 20);
    let err = client.export(with_token(big, TOKEN)).await.unwrap_err();
    assert!(
        matches!(err.code(), tonic::Code::ResourceExhausted | tonic::Code::OutOfRange),
        "oversized message: {err:?}"
    );
    assert!(err.message().contains("message length too large") || err.message().contains("1048576"), "{err:?}");

    client.export(with_token(spans_request("grpc-ok", 0, 2), TOKEN)).await.expect("good request after bad ones");
    s.sink
        .wait_for("grpc-ok spans", Duration::from_secs(20), |r| {
            r.span_names().iter().filter(|n| n.starts_with("grpc-ok-")).count() == 2
        })
        .await;
    still_serving(&s, "after-grpc").await;
}
