use std::io::Write as _;
use std::time::Duration;

use hpcotel_core::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

fn traces(service: &str, names: &[&str]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: (*n).to_owned(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        attributes: vec![kv("rank", "0")],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(name: &str, values: &[i64]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_owned(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: values
                            .iter()
                            .map(|v| NumberDataPoint {
                                value: Some(number_data_point::Value::AsInt(*v)),
                                attributes: vec![kv("cpu", &v.to_string())],
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(bodies: &[&str]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue((*b).to_owned())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn trace_client(sink: &OtlpSink) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(sink.grpc_endpoint())
        .await
        .expect("connect to sink")
}

#[tokio::test]
async fn grpc_signals_are_recorded_with_headers() {
    let sink = OtlpSink::start().await;
    assert!(sink.grpc_endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(
        sink.grpc_endpoint(),
        format!("http://127.0.0.1:{}", sink.grpc_addr().port())
    );

    let mut tc = trace_client(&sink)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let mut req = tonic::Request::new(traces("svc-a", &["alloc", "allreduce"]));
    req.metadata_mut()
        .insert("authorization", "Bearer t0k".parse().unwrap());
    let resp = tc.export(req).await.expect("traces accepted").into_inner();
    assert_eq!(resp.partial_success, None);

    let mut mc = MetricsServiceClient::connect(sink.grpc_endpoint())
        .await
        .unwrap();
    mc.export(metrics("gpu.util", &[1, 2, 3])).await.unwrap();
    let mut lc = LogsServiceClient::connect(sink.grpc_endpoint())
        .await
        .unwrap();
    lc.export(logs(&["hello", "world"])).await.unwrap();

    let got = sink
        .wait_for("2 spans, 3 points, 2 logs", WAIT, |r| {
            r.span_count() == 2 && r.metric_point_count() == 3 && r.log_record_count() == 2
        })
        .await;
    assert_eq!(got.span_names(), vec!["alloc", "allreduce"]);
    assert_eq!(got.metric_names(), vec!["gpu.util"]);
    assert_eq!(got.log_bodies(), vec!["hello", "world"]);
    assert_eq!(got.resource_attribute_values("service.name"), vec!["svc-a"]);
    assert_eq!(got.attribute_values("cpu"), vec!["1", "2", "3"]);
    assert_eq!(got.attribute_values("rank"), vec!["0", "0"]);

    let reqs = sink.requests();
    assert_eq!(reqs.len(), 3);
    let t = reqs.iter().find(|r| r.signal == Signal::Traces).unwrap();
    assert_eq!(t.protocol, Protocol::Grpc);
    assert_eq!(t.items, 2);
    assert_eq!(t.answer, Answer::Accepted);
    assert_eq!(t.header("Authorization"), Some("Bearer t0k"));
    assert_eq!(t.header("grpc-encoding"), Some("gzip"));
    assert_eq!(
        sink.totals(),
        Totals {
            spans: 2,
            metric_points: 3,
            log_records: 2,
            requests: 3
        }
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn http_protobuf_gzip_and_json_are_recorded() {
    let sink = OtlpSink::start().await;
    let client = reqwest::Client::new();

    let body = gzip(&traces("svc-h", &["GET /"]).encode_to_vec());
    let resp = client
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .header("x-tenant", "blue")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/x-protobuf"
    );
    let decoded = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(decoded.partial_success, None);

    // OTLP/JSON as the spec writes it (camelCase, hex ids, AnyValue objects).
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc-j"}}]},
        "scopeLogs":[{"logRecords":[{"body":{"stringValue":"json hello"},
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
    let resp = client
        .post(format!("{}/v1/logs", sink.http_endpoint()))
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );

    let got = sink
        .wait_for("1 span and 1 log", WAIT, |r| {
            r.span_count() == 1 && r.log_record_count() == 1
        })
        .await;
    assert_eq!(got.span_names(), vec!["GET /"]);
    assert_eq!(got.log_bodies(), vec!["json hello"]);
    assert_eq!(
        got.resource_attribute_values("service.name"),
        vec!["svc-h", "svc-j"]
    );
    assert_eq!(
        got.log_records()[0].trace_id,
        vec![
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    let reqs = sink.requests();
    assert_eq!(reqs[0].protocol, Protocol::Http);
    assert_eq!(reqs[0].header("x-tenant"), Some("blue"));
    assert_eq!(reqs[1].signal, Signal::Logs);
    sink.shutdown().await;
}

#[tokio::test]
async fn grpc_fails_as_scripted_with_retry_info_then_accepts() {
    let sink = OtlpSink::start().await;
    sink.push_behaviour(Behaviour::unavailable(Some(Duration::from_secs(3))), 2);
    let mut tc = trace_client(&sink).await;

    for attempt in 0..2 {
        let err = tc
            .export(traces("svc", &["lost"]))
            .await
            .expect_err("scripted failure");
        assert_eq!(err.code(), tonic::Code::Unavailable, "attempt {attempt}");
        let retry = err.get_details_retry_info().expect("RetryInfo detail");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    }
    tc.export(traces("svc", &["kept"])).await.expect("accepted");

    let got = sink.received();
    assert_eq!(
        got.span_names(),
        vec!["kept"],
        "failed requests are not received"
    );
    let answers: Vec<bool> = sink
        .requests()
        .iter()
        .map(|r| r.answer == Answer::Accepted)
        .collect();
    assert_eq!(answers, vec![false, false, true]);
    assert!(matches!(
        sink.requests()[0].answer,
        Answer::Failed { grpc: tonic::Code::Unavailable, retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));

    // A failure without retry_after carries no RetryInfo.
    sink.set_behaviour(Behaviour::Fail {
        grpc: tonic::Code::InvalidArgument,
        http: 400,
        retry_after: None,
        message: "nope".to_owned(),
    });
    let err = tc.export(traces("svc", &["bad"])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "nope");
    assert!(err.get_details_retry_info().is_none());
    sink.shutdown().await;
}

#[tokio::test]
async fn http_failure_sets_retry_after_and_status_body() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Fail {
        grpc: tonic::Code::ResourceExhausted,
        http: 429,
        retry_after: Some(Duration::from_millis(1500)),
        message: "slow down".to_owned(),
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/metrics", sink.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(metrics("m", &[1]).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"].to_str().unwrap(), "2");
    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.message, "slow down");
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    assert_eq!(sink.received().metric_point_count(), 0);
    assert_eq!(sink.requests()[0].items, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn partial_success_is_answered_on_both_protocols() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::PartialSuccess {
        rejected: 1,
        message: "one too old".to_owned(),
    });
    let resp = trace_client(&sink)
        .await
        .export(traces("svc", &["a", "b"]))
        .await
        .unwrap()
        .into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(
        (ps.rejected_spans, ps.error_message.as_str()),
        (1, "one too old")
    );

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&traces("svc", &["c"])).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], 1);
    assert_eq!(body["partialSuccess"]["errorMessage"], "one too old");
    assert_eq!(sink.received().span_count(), 3);
    sink.shutdown().await;
}

#[tokio::test]
async fn stall_holds_requests_until_the_behaviour_changes() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let mut tc = trace_client(&sink).await;
    let pending = tokio::spawn(async move { tc.export(traces("svc", &["held"])).await });

    sink.wait_for_in_flight(1, WAIT).await;
    assert!(!pending.is_finished(), "stalled request was answered");
    assert_eq!(sink.received().span_count(), 0);
    assert!(sink.requests().is_empty());

    sink.set_behaviour(Behaviour::Accept);
    let answer = tokio::time::timeout(WAIT, pending)
        .await
        .expect("released")
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].answered_at > reqs[0].at);
    assert_eq!(sink.received().span_names(), vec!["held"]);
    assert_eq!(sink.in_flight(), 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn stalled_requests_get_unavailable_on_shutdown() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Stall);
    let url = format!("{}/v1/logs", sink.http_endpoint());
    let pending = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(logs(&["x"]).encode_to_vec())
            .send()
            .await
    });
    sink.wait_for_in_flight(1, WAIT).await;
    tokio::time::timeout(WAIT, sink.shutdown())
        .await
        .expect("shutdown does not hang on stalled requests");
    let resp = pending.await.unwrap().expect("answered before close");
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn invalid_http_bodies_are_refused_and_recorded() {
    let sink = OtlpSink::start().await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 2);
    assert!(matches!(&reqs[0].answer, Answer::Invalid { reason } if reason.contains("JSON")));
    assert_eq!(sink.received(), Received::default());
    sink.shutdown().await;
}

#[tokio::test]
#[should_panic(expected = "waiting for 5 spans")]
async fn wait_for_panics_with_what_and_summary() {
    let sink = OtlpSink::start().await;
    trace_client(&sink)
        .await
        .export(traces("svc", &["only-one"]))
        .await
        .unwrap();
    sink.wait_for("5 spans", Duration::from_millis(200), |r| {
        r.span_count() == 5
    })
    .await;
}

#[tokio::test]
async fn wait_for_wakes_on_arrival() {
    let sink = OtlpSink::start().await;
    let endpoint = sink.grpc_endpoint();
    let sender = tokio::spawn(async move {
        let mut tc = TraceServiceClient::connect(endpoint).await.unwrap();
        for i in 0..5 {
            tc.export(traces("svc", &[&format!("s{i}")])).await.unwrap();
        }
    });
    let got = sink
        .wait_for("5 spans", WAIT, |r| r.span_count() == 5)
        .await;
    assert_eq!(got.span_names(), vec!["s0", "s1", "s2", "s3", "s4"]);
    sender.await.unwrap();
    let reqs = sink
        .wait_for_requests("5 requests", WAIT, |r| r.len() == 5)
        .await;
    assert!(reqs.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn a_size_limit_refuses_longer_requests_as_grpc_go_and_http_413_and_records_sizes() {
    let small = traces("svc", &["small"]);
    let big = traces("svc", &[&"x".repeat(2000)]);
    let limit = 1000;
    assert!(small.encoded_len() <= limit && big.encoded_len() > limit);
    let sink = OtlpSink::start_with(SinkOptions {
        max_message_bytes: Some(limit),
        ..SinkOptions::default()
    })
    .await
    .unwrap();

    // gRPC, gzip-compressed: the limit applies to the decompressed message, as in grpc-go.
    let mut client = trace_client(&sink)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    client.export(small.clone()).await.expect("under the limit");
    let status = client
        .export(big.clone())
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.get_details_retry_info().is_none(), "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "grpc: received message larger than max ({} vs. {limit})",
            big.encoded_len()
        )
    );

    // HTTP: 413 with a google.rpc.Status body.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/traces", sink.http_endpoint()))
        .header("content-type", "application/x-protobuf")
        .body(big.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(body.message.contains("larger than max"), "{body:?}");

    let reqs = sink.requests();
    let seen: Vec<(Protocol, usize, &Answer)> = reqs
        .iter()
        .map(|r| (r.protocol, r.bytes, &r.answer))
        .collect();
    let too_large = Answer::TooLarge {
        bytes: big.encoded_len(),
        limit,
    };
    assert_eq!(
        seen,
        [
            (Protocol::Grpc, small.encoded_len(), &Answer::Accepted),
            (Protocol::Grpc, big.encoded_len(), &too_large),
            (Protocol::Http, big.encoded_len(), &too_large),
        ]
    );
    assert_eq!(sink.received().span_names(), ["small"]);
    sink.shutdown().await;
}
