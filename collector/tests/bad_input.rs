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
    Setup {
        _hpcotel: hpcotel,
        sink,
        grpc,
        http,
    }
}

async fn post(
    http: u16,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
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
    let resp = post(
        s.http,
        "/v1/traces",
        "application/x-protobuf",
        Some(TOKEN),
        spans_request(run, 0, 2).encode_to_vec(),
    )
    .await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "good request after {run} refused"
    );
    s.sink
        .wait_for(
            &format!("spans after {run}"),
            Duration::from_secs(20),
            |r| {
                r.span_names()
                    .iter()
                    .filter(|n| n.starts_with(&format!("{run}-")))
                    .count()
                    == 2
            },
        )
        .await;
}

async fn error_message(resp: reqwest::Response) -> String {
    let json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
    let bytes = resp.bytes().await.unwrap();
    if json {
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).expect("JSON google.rpc.Status body");
        v["message"].as_str().unwrap_or_default().to_string()
    } else {
        RpcStatus::decode(bytes)
            .expect("protobuf google.rpc.Status body")
            .message
    }
}

/// One bad HTTP request and the answer the OTLP specification documents for it.
struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    token: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// A substring the error message must contain ("" = no message checked).
    needle: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_documented_statuses_and_the_collector_keeps_serving() {
    let s = setup().await;
    let cases = vec![
        Case {
            name: "undecodable-protobuf",
            path: "/v1/traces",
            content_type: "application/x-protobuf",
            token: Some(TOKEN),
            body: vec![0xff, 0xff, 0xff, 0x0f, 0x01],
            status: 400,
            needle: "decode",
        },
        Case {
            name: "invalid-json",
            path: "/v1/traces",
            content_type: "application/json",
            token: Some(TOKEN),
            body: b"{\"resourceSpans\": [".to_vec(),
            status: 400,
            needle: "line 1",
        },
        Case {
            name: "wrong-content-type",
            path: "/v1/traces",
            content_type: "text/plain",
            token: Some(TOKEN),
            body: b"hello".to_vec(),
            status: 415,
            needle: "application/x-protobuf",
        },
        Case {
            name: "oversized",
            path: "/v1/traces",
            content_type: "application/x-protobuf",
            token: Some(TOKEN),
            body: spans_request("big", 0, 2000).encode_to_vec(),
            status: 413,
            needle: "65536",
        },
        Case {
            name: "unknown-path",
            path: "/v1/profiles",
            content_type: "application/x-protobuf",
            token: Some(TOKEN),
            body: vec![],
            status: 404,
            needle: "",
        },
        Case {
            name: "wrong-token",
            path: "/v1/traces",
            content_type: "application/x-protobuf",
            token: Some("not-the-token"),
            body: spans_request("x", 0, 1).encode_to_vec(),
            status: 401,
            needle: "",
        },
        Case {
            name: "missing-token",
            path: "/v1/traces",
            content_type: "application/x-protobuf",
            token: None,
            body: spans_request("x", 0, 1).encode_to_vec(),
            status: 401,
            needle: "",
        },
    ];
    for Case {
        name,
        path,
        content_type,
        token,
        body,
        status,
        needle,
    } in cases
    {
        let resp = post(s.http, path, content_type, token, body).await;
        assert_eq!(resp.status().as_u16(), status, "{name}");
        if status == 401 {
            assert!(
                resp.headers().get("www-authenticate").is_some(),
                "{name}: 401 without WWW-Authenticate"
            );
        }
        if !needle.is_empty() {
            let msg = error_message(resp).await;
            assert!(
                msg.contains(needle),
                "{name}: message {msg:?} lacks {needle:?}"
            );
        }
        still_serving(&s, name).await;
    }
    // The wrong token's data never got in.
    assert!(
        !s.sink
            .received()
            .span_names()
            .iter()
            .any(|n| n.starts_with("x-"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_get_documented_codes_and_the_collector_keeps_serving() {
    let s = setup().await;
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", s.grpc))
        .await
        .unwrap();
    let with_token = |req, token: &str| {
        let mut r = tonic::Request::new(req);
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        r
    };

    let err = client
        .export(with_token(spans_request("x", 0, 1), "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let err = client
        .export(tonic::Request::new(spans_request("x", 0, 1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // 1 MiB limit: ~3 MiB of spans is refused.
    let big = spans_request("big", 0, 30_000);
    assert!(big.encoded_len() > 2 << 20);
    let err = client.export(with_token(big, TOKEN)).await.unwrap_err();
    // RESOURCE_EXHAUSTED without RetryInfo (as grpc-go): permanent, not resent forever.
    assert_eq!(
        err.code(),
        tonic::Code::ResourceExhausted,
        "oversized message: {err:?}"
    );
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&err).is_none(),
        "an oversized message must not be marked retryable: {err:?}"
    );
    assert!(
        err.message().contains("message length too large") || err.message().contains("1048576"),
        "{err:?}"
    );

    // A gRPC frame whose payload is not an ExportTraceServiceRequest: sent raw over HTTP/2,
    // as a broken client would, since no generated client can produce it.
    let (code, message) = raw_grpc_export(s.grpc, TOKEN, &[0xff, 0xff, 0xff, 0x0f, 0x01]).await;
    // INTERNAL, as grpc-go (the OpenTelemetry Collector) answers an unmarshal failure: not
    // retryable per OTLP, so the client drops the request instead of resending it forever.
    assert_eq!(
        code,
        tonic::Code::Internal as i32,
        "undecodable protobuf answered grpc-status {code}: {message}"
    );
    assert!(
        message.contains("decode") || message.contains("Decode"),
        "grpc-message {message:?} does not say the request did not decode"
    );

    client
        .export(with_token(spans_request("grpc-ok", 0, 2), TOKEN))
        .await
        .expect("good request after bad ones");
    s.sink
        .wait_for("grpc-ok spans", Duration::from_secs(20), |r| {
            r.span_names()
                .iter()
                .filter(|n| n.starts_with("grpc-ok-"))
                .count()
                == 2
        })
        .await;
    still_serving(&s, "after-grpc").await;
}

/// Posts one gRPC frame carrying `payload` to the trace service's Export method over HTTP/2
/// and returns the `grpc-status` and the percent-decoded `grpc-message`.
async fn raw_grpc_export(port: u16, token: &str, payload: &[u8]) -> (i32, String) {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .post(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .bearer_auth(token)
        .body(frame)
        .send()
        .await
        .expect("HTTP/2 request");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "gRPC answers errors in grpc-status"
    );
    // An error before any response message is a trailers-only response: the status is in
    // the headers.
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let code: i32 = header("grpc-status")
        .parse()
        .expect("a grpc-status header on a trailers-only error response");
    let message = percent_decode(&header("grpc-message"));
    (code, message)
}

/// Decodes the percent-encoding gRPC applies to `grpc-message`.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
