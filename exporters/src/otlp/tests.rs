use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hpcotel_core::{Batch, ExportError, ExportOutcome, Exporter, Secret, TlsClientConfig};
use hpcotel_testkit::sink::{Behaviour, OtlpSink};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tonic::Code;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn traces() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("trainer".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: (0..3u8)
                .map(|i| Span {
                    trace_id: vec![i + 1; 16],
                    span_id: vec![i + 1; 8],
                    name: format!("allreduce-{i}"),
                    start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
                    end_time_unix_nano: 1_700_000_000_500_000_000,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn logs() -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(); 2],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn config(endpoint: &str) -> Config {
    Config {
        endpoint: Some(Endpoint::parse(endpoint).unwrap()),
        timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

fn retryable_after(r: Result<ExportOutcome, ExportError>) -> Option<Duration> {
    match r {
        Err(ExportError::Retryable { retry_after, .. }) => retry_after,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

fn permanent_reason(r: Result<ExportOutcome, ExportError>) -> String {
    match r {
        Err(ExportError::Permanent { reason }) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[test]
fn endpoint_shapes_are_validated_while_parsing() {
    let e = serde_yaml::from_str::<Config>("endpoint: tempo").unwrap_err();
    assert!(
        e.to_string()
            .contains("expected host:port or http(s)://host:port, got 'tempo'"),
        "{e}"
    );
    for bad in ["grpc://tempo:4317", "http://", "tempo:port"] {
        assert!(Endpoint::parse(bad).is_err(), "{bad} should not parse");
    }
    let ep = Endpoint::parse("https://otlp.example.com/otlp/").unwrap();
    assert_eq!(
        (ep.scheme(), ep.host(), ep.port(), ep.path()),
        (Some(Scheme::Https), "otlp.example.com", None, "/otlp")
    );
    let ep = Endpoint::parse("[::1]:4317").unwrap();
    assert_eq!(
        (ep.scheme(), ep.host(), ep.port()),
        (None, "::1", Some(4317))
    );
    let c: Config = serde_yaml::from_str(
        "endpoint: tempo:4317\nheaders:\n  authorization: Bearer hunter2\ntimeout: 3s\n\
         sending_queue:\n  queue_size: 5\nretry_on_failure:\n  enabled: false\ncompression: none",
    )
    .unwrap();
    assert_eq!(c.timeout, Duration::from_secs(3));
    assert_eq!(c.compression, Compression::None);
    assert_eq!(c.sending_queue.queue_size, 5);
    assert!(!c.retry_on_failure.enabled);
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!serde_yaml::to_string(&c).unwrap().contains("hunter2"));
    assert_eq!(Config::default().compression, Compression::Gzip);
    assert_eq!(Config::default().timeout, Duration::from_secs(10));
    let compression = |v: &str| {
        serde_yaml::from_str::<Config>(&format!("compression: {v}"))
            .map(|c| c.compression)
            .map_err(|e| e.to_string())
    };
    assert_eq!(compression("zstd"), Ok(Compression::Zstd));
    assert_eq!(compression("gzip"), Ok(Compression::Gzip));
    assert_eq!(compression("\"\""), Ok(Compression::None));
    let e = compression("snappy").unwrap_err();
    assert!(
        e.contains("'snappy' is not supported by hpcotel; use gzip, zstd or none"),
        "{e}"
    );
    let e = compression("brotli").unwrap_err();
    assert!(
        e.contains("expected gzip, zstd or none, got 'brotli'"),
        "{e}"
    );
    let e = serde_yaml::from_str::<Config>("endpont: x:1").unwrap_err();
    assert!(e.to_string().contains("unknown field `endpont`"), "{e}");
}

#[tokio::test]
async fn construction_errors_name_the_field() {
    let err = |c: &Config, p| OtlpExporter::new(c, p).unwrap_err().to_string();
    assert!(err(&Config::default(), Protocol::Grpc).starts_with("endpoint: required"));
    assert!(err(&Config::default(), Protocol::HttpProtobuf).starts_with("endpoint: required"));
    assert_eq!(
        err(&config("tempo:4318"), Protocol::HttpProtobuf),
        "endpoint: expected an http:// or https:// URL for otlphttp, got 'tempo:4318'"
    );
    assert!(err(&config("http://tempo:4317/v1"), Protocol::Grpc).starts_with("endpoint: expected"));
    let mut c = config("https://tempo:4317");
    c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    assert_eq!(
        err(&c, Protocol::Grpc),
        "tls.ca_file: cannot read '/nonexistent/ca.pem'"
    );
    let mut c = config("https://tempo:4318");
    c.tls.cert_file = Some("/nonexistent/cert.pem".into());
    assert_eq!(
        err(&c, Protocol::HttpProtobuf),
        "tls: cert_file and key_file must be set together"
    );
    let mut c = config("http://tempo:4317");
    c.headers
        .insert("x-token".into(), Secret::new("bad\nvalue-hunter2"));
    let e = err(&c, Protocol::Grpc);
    assert!(
        e.starts_with("headers.x-token:") && !e.contains("hunter2"),
        "{e}"
    );
    // Construction touches no network.
    assert!(OtlpExporter::new(&config("tempo:4317"), Protocol::Grpc).is_ok());
}

#[test]
fn grpc_codes_are_classified_per_the_otlp_spec() {
    use tonic_types::{ErrorDetails, StatusExt};
    for code in [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unavailable,
        Code::DataLoss,
    ] {
        assert!(
            classify_status(&tonic::Status::new(code, "x")).is_retryable(),
            "{code:?}"
        );
    }
    for code in [
        Code::InvalidArgument,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::NotFound,
        Code::Internal,
        Code::ResourceExhausted,
    ] {
        assert!(
            !classify_status(&tonic::Status::new(code, "x")).is_retryable(),
            "{code:?}"
        );
    }
    let with_info = tonic::Status::with_error_details(
        Code::ResourceExhausted,
        "slow down",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
    );
    assert_eq!(
        classify_status(&with_info),
        ExportError::Retryable {
            reason: "gRPC status ResourceExhausted: slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
}

#[test]
fn too_large_answers_are_told_apart_from_quotas() {
    use tonic_types::{ErrorDetails, StatusExt};
    let too_large = |code, message: &str| {
        matches!(
            classify_status(&tonic::Status::new(code, message)),
            ExportError::TooLarge { .. }
        )
    };
    // grpc-go (the OpenTelemetry Collector), grpc-java, tonic, hpcotel's own receiver.
    assert!(too_large(
        Code::ResourceExhausted,
        "grpc: received message larger than max (5242880 vs. 4194304)"
    ));
    assert!(too_large(
        Code::ResourceExhausted,
        "grpc: received message after decompression larger than max (5242880 vs. 4194304)"
    ));
    assert!(too_large(
        Code::ResourceExhausted,
        "gRPC message exceeds maximum size 4194304: 5242880"
    ));
    assert!(too_large(
        Code::OutOfRange,
        "Error, decoded message length too large: found 5242880 bytes, the limit is: 4194304 bytes"
    ));
    // A quota is not a size: permanent as before; with RetryInfo it is retryable.
    assert!(!too_large(Code::ResourceExhausted, "quota exceeded"));
    let with_info = tonic::Status::with_error_details(
        Code::ResourceExhausted,
        "message too large for now",
        ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
    );
    assert!(classify_status(&with_info).is_retryable());
    assert!(classify_status(&tonic::Status::new(Code::OutOfRange, "x")).is_retryable());
    assert_eq!(
        classify_http(413, "HTTP 413: body too large".into(), None),
        ExportError::TooLarge {
            reason: "HTTP 413: body too large".into()
        }
    );
}

#[test]
fn max_request_size_defaults_to_4_mib_and_0_means_no_limit() {
    assert_eq!(Config::default().max_request_size, 4 * 1024 * 1024);
    assert_eq!(DEFAULT_MAX_REQUEST_SIZE, 4 * 1024 * 1024);
    let exporter = OtlpExporter::new(&config("http://127.0.0.1:4317"), Protocol::Grpc).unwrap();
    assert_eq!(exporter.max_request_size(), Some(4 * 1024 * 1024));
    let c: Config =
        serde_yaml::from_str("endpoint: http://127.0.0.1:4318\nmax_request_size: 0").unwrap();
    let exporter = OtlpExporter::new(&c, Protocol::HttpProtobuf).unwrap();
    assert_eq!(exporter.max_request_size(), None);
}

/// `n` spans of about 1 MiB each (a 1 MiB attribute), named `big-<i>`.
fn mib_spans(n: usize) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: traces()[0].resource.clone(),
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: vec![1; 16],
                    span_id: vec![i as u8 + 1; 8],
                    name: format!("big-{i}"),
                    attributes: vec![KeyValue {
                        key: "payload".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("x".repeat(1 << 20))),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Five 1 MiB spans through an export queue into a sink with the Collector's 4 MiB limit:
/// `max_request_size` set (the default) splits before sending; with no limit the sink's
/// "too large" answer (grpc-go's RESOURCE_EXHAUSTED, HTTP 413) is met with halves. Either
/// way all five arrive, no request over 4 MiB is accepted, nothing is dropped. Returns
/// `(items, bytes, accepted)` per request the sink saw.
async fn five_mib_through_a_4_mib_sink(
    protocol: Protocol,
    max_request_size: usize,
) -> Vec<(usize, usize, bool)> {
    use crate::queue::{ExportQueue, QueueConfig, RetryConfig};
    use hpcotel_core::{ComponentKind, Counter, Signal, Telemetry};
    use hpcotel_testkit::sink::{Answer, COLLECTOR_MAX_RECV_MSG_SIZE, SinkOptions};
    let sink = OtlpSink::start_with(SinkOptions {
        max_message_bytes: Some(COLLECTOR_MAX_RECV_MSG_SIZE),
        ..SinkOptions::default()
    })
    .await
    .unwrap();
    let endpoint = match protocol {
        Protocol::Grpc => sink.grpc_endpoint(),
        Protocol::HttpProtobuf => sink.http_endpoint(),
    };
    let c = Config {
        max_request_size,
        ..config(&endpoint)
    };
    let exporter = OtlpExporter::new(&c, protocol).unwrap();
    let stats = Telemetry::default().register(ComponentKind::Exporter, "otlp/x".parse().unwrap());
    let (tx, handle) = ExportQueue::start(
        "otlp/x".parse().unwrap(),
        Arc::new(exporter),
        QueueConfig::default(),
        RetryConfig::default(),
        stats.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    tx.send(mib_spans(5)).await;
    drop(tx);
    tokio::time::timeout(WAIT, handle).await.unwrap().unwrap();
    let names = sink.received().span_names();
    assert_eq!(
        names,
        ["big-0", "big-1", "big-2", "big-3", "big-4"],
        "{protocol:?}"
    );
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 5);
    assert_eq!(stats.get(Signal::Traces, Counter::Dropped), 0);
    let seen: Vec<(usize, usize, bool)> = sink
        .requests()
        .iter()
        .map(|r| (r.items, r.bytes, r.answer == Answer::Accepted))
        .collect();
    for (items, bytes, accepted) in &seen {
        assert_eq!(
            *accepted,
            *bytes <= COLLECTOR_MAX_RECV_MSG_SIZE,
            "{protocol:?}: {items} items, {bytes} bytes"
        );
    }
    seen
}

#[tokio::test]
async fn requests_are_split_to_max_request_size_before_sending() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let seen = five_mib_through_a_4_mib_sink(protocol, DEFAULT_MAX_REQUEST_SIZE).await;
        let items: Vec<usize> = seen.iter().map(|r| r.0).collect();
        assert_eq!(items, [3, 2], "{protocol:?}: {seen:?}");
        assert!(seen.iter().all(|r| r.2), "{protocol:?}: {seen:?}");
    }
}

#[tokio::test]
async fn a_backend_refusing_a_request_as_too_large_gets_it_in_halves() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let seen = five_mib_through_a_4_mib_sink(protocol, 0).await;
        let items: Vec<(usize, bool)> = seen.iter().map(|r| (r.0, r.2)).collect();
        assert_eq!(
            items,
            [(5, false), (2, true), (3, true)],
            "{protocol:?}: {seen:?}"
        );
    }
}

#[test]
fn retry_after_parses_seconds_and_http_dates() {
    let now = SystemTime::now();
    assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    let d = parse_retry_after(&later, now).unwrap();
    assert!(
        d <= Duration::from_secs(30) && d >= Duration::from_secs(29),
        "{d:?}"
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert!(classify_http(429, "x".into(), None).is_retryable());
    assert!(classify_http(504, "x".into(), None).is_retryable());
    assert!(!classify_http(500, "x".into(), None).is_retryable());
    assert!(!classify_http(401, "x".into(), None).is_retryable());
}

#[tokio::test]
async fn grpc_delivers_exact_spans_with_headers_and_gzip() {
    let sink = OtlpSink::start().await;
    let mut c = config(&sink.grpc_endpoint());
    c.headers
        .insert("X-Scope-OrgID".into(), Secret::new("tenant-1"));
    let exporter = OtlpExporter::new(&c, Protocol::Grpc).unwrap();
    assert_eq!(exporter.protocol(), Protocol::Grpc);
    let outcome = exporter.export(&Batch::Traces(traces())).await.unwrap();
    assert_eq!(outcome, ExportOutcome::default());
    let got = sink
        .wait_for("3 spans", WAIT, |r| r.span_count() == 3)
        .await;
    assert_eq!(got.traces, traces());
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(reqs[0].header("grpc-encoding"), Some("gzip"));
    exporter.export(&Batch::Logs(logs())).await.unwrap();
    sink.wait_for("2 log records", WAIT, |r| r.log_record_count() == 2)
        .await;
}

#[tokio::test]
async fn zstd_requests_deliver_the_exact_items_over_both_protocols() {
    for (protocol, header) in [
        (Protocol::Grpc, "grpc-encoding"),
        (Protocol::HttpProtobuf, "content-encoding"),
    ] {
        let sink = OtlpSink::start().await;
        let endpoint = match protocol {
            Protocol::Grpc => sink.grpc_endpoint(),
            Protocol::HttpProtobuf => sink.http_endpoint(),
        };
        let c = Config {
            compression: Compression::Zstd,
            ..config(&endpoint)
        };
        let exporter = OtlpExporter::new(&c, protocol).unwrap();
        exporter.export(&Batch::Traces(traces())).await.unwrap();
        exporter.export(&Batch::Logs(logs())).await.unwrap();
        let got = sink
            .wait_for("3 spans and 2 log records", WAIT, |r| {
                r.span_count() == 3 && r.log_record_count() == 2
            })
            .await;
        assert_eq!(got.traces, traces(), "{protocol:?}");
        assert_eq!(got.logs, logs(), "{protocol:?}");
        let reqs = sink.requests();
        assert!(
            reqs.iter().all(|r| r.header(header) == Some("zstd")),
            "{protocol:?}: {:?}",
            reqs.iter().map(|r| r.header(header)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn grpc_status_headers_are_read_and_malformed_details_left_out() {
    use ::http::HeaderValue;
    use tonic_types::StatusExt as _;
    let mut h = ::http::HeaderMap::new();
    assert!(grpc::status_of(&h).is_none());
    h.insert("grpc-status", HeaderValue::from_static("14"));
    h.insert(
        "grpc-message",
        HeaderValue::from_static("backend%20restarting%3A%20100%25"),
    );
    let details = tonic::Status::with_error_details(
        Code::Unavailable,
        "x",
        tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
    );
    use base64::Engine as _;
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ] {
        h.insert(
            "grpc-status-details-bin",
            HeaderValue::from_str(&engine.encode(details.details())).unwrap(),
        );
        let status = grpc::status_of(&h).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "backend restarting: 100%");
        assert_eq!(
            classify_status(&status),
            ExportError::Retryable {
                reason: "gRPC status Unavailable: backend restarting: 100%".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }
    // Details that are not base64: the status stands without them (tonic would panic).
    h.insert(
        "grpc-status-details-bin",
        HeaderValue::from_static("!!not base64!!"),
    );
    let status = grpc::status_of(&h).unwrap();
    assert_eq!(
        (status.code(), status.details()),
        (Code::Unavailable, &b""[..])
    );
}

#[test]
fn grpc_answer_messages_are_read_plain_or_compressed() {
    use bytes::Bytes;
    use prost::Message as _;
    let reply = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
        partial_success: Some(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            },
        ),
    }
    .encode_to_vec();
    let frame = |flag: u8, m: &[u8]| {
        let mut f = vec![flag];
        f.extend_from_slice(&(m.len() as u32).to_be_bytes());
        f.extend_from_slice(m);
        Bytes::from(f)
    };
    let mut headers = ::http::HeaderMap::new();
    assert_eq!(
        grpc::response_message(&headers, frame(0, &reply)).unwrap(),
        reply
    );
    for (name, compressed) in [
        ("gzip", {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&reply).unwrap();
            e.finish().unwrap()
        }),
        ("zstd", zstd::bulk::compress(&reply, 1).unwrap()),
    ] {
        headers.insert("grpc-encoding", ::http::HeaderValue::from_static(name));
        assert_eq!(
            grpc::response_message(&headers, frame(1, &compressed)).unwrap(),
            reply,
            "{name}"
        );
    }
    let cut = grpc::response_message(&headers, frame(0, &reply).slice(..8)).unwrap_err();
    assert!(cut.contains("cut at 3"), "{cut}");
    assert!(
        grpc::response_message(&headers, Bytes::new())
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn grpc_unavailable_with_retry_info_is_retryable_with_delay() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::unavailable(Some(Duration::from_secs(3))));
    let exporter = OtlpExporter::new(&config(&sink.grpc_endpoint()), Protocol::Grpc).unwrap();
    let r = exporter.export(&Batch::Traces(traces())).await;
    assert_eq!(retryable_after(r), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn grpc_resource_exhausted_without_retry_info_is_permanent() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Fail {
        grpc: Code::ResourceExhausted,
        http: 429,
        retry_after: None,
        message: "quota exceeded".into(),
    });
    let exporter = OtlpExporter::new(&config(&sink.grpc_endpoint()), Protocol::Grpc).unwrap();
    let reason = permanent_reason(exporter.export(&Batch::Traces(traces())).await);
    assert_eq!(reason, "gRPC status ResourceExhausted: quota exceeded");
}

#[tokio::test]
async fn grpc_partial_success_reports_rejected() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::PartialSuccess {
        rejected: 2,
        message: "spans too old".into(),
    });
    let exporter = OtlpExporter::new(&config(&sink.grpc_endpoint()), Protocol::Grpc).unwrap();
    let outcome = exporter.export(&Batch::Traces(traces())).await.unwrap();
    assert_eq!(
        outcome,
        ExportOutcome {
            rejected: 2,
            message: "spans too old".into()
        }
    );
}

#[tokio::test]
async fn connection_refused_is_retryable_for_both_protocols() {
    let addr = closed_port().await;
    let grpc = OtlpExporter::new(&config(&format!("http://{addr}")), Protocol::Grpc).unwrap();
    assert_eq!(
        retryable_after(grpc.export(&Batch::Traces(traces())).await),
        None
    );
    let http =
        OtlpExporter::new(&config(&format!("http://{addr}")), Protocol::HttpProtobuf).unwrap();
    assert_eq!(
        retryable_after(http.export(&Batch::Traces(traces())).await),
        None
    );
}

#[tokio::test]
async fn http_delivers_protobuf_gzip_with_headers() {
    let sink = OtlpSink::start().await;
    let mut c = config(&sink.http_endpoint());
    c.headers
        .insert("authorization".into(), Secret::new("Bearer t0ken"));
    let exporter = OtlpExporter::new(&c, Protocol::HttpProtobuf).unwrap();
    exporter.export(&Batch::Traces(traces())).await.unwrap();
    let got = sink
        .wait_for("3 spans", WAIT, |r| r.span_count() == 3)
        .await;
    assert_eq!(got.traces, traces());
    let reqs = sink.requests();
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(reqs[0].header("content-encoding"), Some("gzip"));
    assert_eq!(reqs[0].header("authorization"), Some("Bearer t0ken"));
}

#[tokio::test]
async fn http_signal_endpoint_overrides_the_base_url() {
    let sink = OtlpSink::start().await;
    let c = Config {
        endpoint: None,
        logs_endpoint: Some(Endpoint::parse(&format!("{}/v1/logs", sink.http_endpoint())).unwrap()),
        compression: Compression::None,
        ..config("http://unused:1")
    };
    let exporter = OtlpExporter::new(&c, Protocol::HttpProtobuf).unwrap();
    exporter.export(&Batch::Logs(logs())).await.unwrap();
    sink.wait_for("2 log records", WAIT, |r| r.log_record_count() == 2)
        .await;
    assert_eq!(sink.requests()[0].header("content-encoding"), None);
    let reason = permanent_reason(exporter.export(&Batch::Traces(traces())).await);
    assert!(reason.starts_with("no URL for traces"), "{reason}");
}

#[tokio::test]
async fn http_503_with_retry_after_is_retryable_with_delay() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::unavailable(Some(Duration::from_secs(2))));
    let exporter =
        OtlpExporter::new(&config(&sink.http_endpoint()), Protocol::HttpProtobuf).unwrap();
    let r = exporter.export(&Batch::Traces(traces())).await;
    assert_eq!(retryable_after(r), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn http_400_is_permanent_with_the_status_message() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::Fail {
        grpc: Code::InvalidArgument,
        http: 400,
        retry_after: None,
        message: "span has no trace id".into(),
    });
    let exporter =
        OtlpExporter::new(&config(&sink.http_endpoint()), Protocol::HttpProtobuf).unwrap();
    let reason = permanent_reason(exporter.export(&Batch::Traces(traces())).await);
    assert_eq!(reason, "HTTP 400 Bad Request: span has no trace id");
}

#[tokio::test]
async fn http_partial_success_reports_rejected() {
    let sink = OtlpSink::start().await;
    sink.set_behaviour(Behaviour::PartialSuccess {
        rejected: 1,
        message: "one log too large".into(),
    });
    let exporter =
        OtlpExporter::new(&config(&sink.http_endpoint()), Protocol::HttpProtobuf).unwrap();
    let outcome = exporter.export(&Batch::Logs(logs())).await.unwrap();
    assert_eq!(
        outcome,
        ExportOutcome {
            rejected: 1,
            message: "one log too large".into()
        }
    );
}

// --- TLS ---

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for `localhost` / 127.0.0.1 signed by it, and an unrelated
    /// second CA, as PEM files.
    fn generate() -> (Pki, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("hpcotel test CA");
        let (other_ca, _) = ca("some other CA");
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other_ca.pem()).unwrap();
        (Pki { dir }, cert.pem(), key.serialize_pem())
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A gRPC trace service over TLS on 127.0.0.1; returns its port.
async fn tls_server(cert: &str, key: &str, recorder: Recorder) -> u16 {
    use tonic::transport::{Identity, Server, ServerTlsConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(
            TraceServiceServer::new(recorder)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    port
}

#[tokio::test]
async fn grpc_tls_with_the_right_ca_works_and_a_wrong_ca_fails() {
    let (pki, cert, key) = Pki::generate();
    let recorder = Recorder::default();
    let port = tls_server(&cert, &key, recorder.clone()).await;
    let tls = |ca: &str| TlsClientConfig {
        ca_file: Some(pki.path(ca)),
        server_name: Some("localhost".into()),
        ..TlsClientConfig::default()
    };
    // A bare host:port means TLS.
    let good = Config {
        tls: tls("ca.pem"),
        ..config(&format!("127.0.0.1:{port}"))
    };
    let exporter = OtlpExporter::new(&good, Protocol::Grpc).unwrap();
    exporter.export(&Batch::Traces(traces())).await.unwrap();
    assert_eq!(recorder.0.lock().unwrap()[0].resource_spans, traces());

    let bad = Config {
        tls: tls("other-ca.pem"),
        ..config(&format!("https://127.0.0.1:{port}"))
    };
    let exporter = OtlpExporter::new(&bad, Protocol::Grpc).unwrap();
    let r = exporter.export(&Batch::Traces(traces())).await;
    let Err(ExportError::Retryable { reason, .. }) = r else {
        panic!("a server certificate from another CA must be refused, got {r:?}");
    };
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert_eq!(recorder.0.lock().unwrap().len(), 1);

    // insecure_skip_verify accepts it anyway.
    let skip = Config {
        tls: TlsClientConfig {
            insecure_skip_verify: true,
            ..TlsClientConfig::default()
        },
        ..config(&format!("https://127.0.0.1:{port}"))
    };
    let exporter = OtlpExporter::new(&skip, Protocol::Grpc).unwrap();
    exporter.export(&Batch::Traces(traces())).await.unwrap();
    assert_eq!(recorder.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn queue_and_exporter_retry_through_a_failing_sink() {
    use crate::queue::{ExportQueue, QueueConfig, RetryConfig};
    use hpcotel_core::{ComponentKind, Counter, Signal, Telemetry};
    let sink = OtlpSink::start().await;
    sink.push_behaviour(Behaviour::unavailable(Some(Duration::from_millis(200))), 2);
    let exporter = OtlpExporter::new(&config(&sink.grpc_endpoint()), Protocol::Grpc).unwrap();
    let stats = Telemetry::default().register(ComponentKind::Exporter, "otlp/x".parse().unwrap());
    let retry = RetryConfig {
        initial_interval: Duration::from_millis(10),
        ..RetryConfig::default()
    };
    let (tx, handle) = ExportQueue::start(
        "otlp/x".parse().unwrap(),
        Arc::new(exporter),
        QueueConfig::default(),
        retry,
        stats.clone(),
        tokio_util::sync::CancellationToken::new(),
    );
    tx.send(Batch::Traces(traces())).await;
    drop(tx);
    tokio::time::timeout(WAIT, handle).await.unwrap().unwrap();
    let reqs = sink.requests();
    assert_eq!(reqs.len(), 3);
    for pair in reqs.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(200), "retried after {gap:?}");
    }
    assert_eq!(stats.get(Signal::Traces, Counter::Sent), 3);
    assert_eq!(stats.get(Signal::Traces, Counter::SendFailed), 6);
}

/// An HTTPS/1.1 server on 127.0.0.1 that answers 200 to every POST and records
/// `(path, body bytes)`; returns its port.
async fn https_server(cert: &str, key: &str, seen: Arc<Mutex<Vec<(String, usize)>>>) -> u16 {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: ::http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            seen.lock().unwrap().push((path, body.len()));
                            Ok::<_, hyper::Error>(::http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn http_tls_with_the_right_ca_works_and_a_wrong_ca_fails() {
    let (pki, cert, key) = Pki::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = https_server(&cert, &key, seen.clone()).await;
    let with_ca = |ca: &str| Config {
        tls: TlsClientConfig {
            ca_file: Some(pki.path(ca)),
            ..TlsClientConfig::default()
        },
        ..config(&format!("https://127.0.0.1:{port}/otlp"))
    };
    let exporter = OtlpExporter::new(&with_ca("ca.pem"), Protocol::HttpProtobuf).unwrap();
    exporter.export(&Batch::Traces(traces())).await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "/otlp/v1/traces");
        assert!(seen[0].1 > 0);
    }
    let exporter = OtlpExporter::new(&with_ca("other-ca.pem"), Protocol::HttpProtobuf).unwrap();
    match exporter.export(&Batch::Traces(traces())).await {
        Err(ExportError::Retryable { reason, .. }) => {
            assert!(reason.contains("UnknownIssuer"), "{reason}")
        }
        other => panic!("a certificate from another CA must be refused, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// A backend that crashes mid-request: it accepts a connection (HTTP/2 for gRPC, HTTP/1.1
/// otherwise), reads a request's headers, then drops the connection without answering.
/// Returns its endpoint and how many requests it saw.
async fn crashing_backend(http2: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let (got_request, request_seen) = tokio::sync::oneshot::channel::<()>();
                let got_request = Arc::new(Mutex::new(Some(got_request)));
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if let Some(tx) = got_request.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    // Never answers: the connection is dropped first.
                    std::future::pending::<
                        Result<
                            hyper::Response<http_body_util::Empty<bytes::Bytes>>,
                            std::convert::Infallible,
                        >,
                    >()
                });
                let io = TokioIo::new(stream);
                if http2 {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc);
                    tokio::select! { _ = conn => {}, _ = request_seen => {} }
                } else {
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                    tokio::select! { _ = conn => {}, _ = request_seen => {} }
                }
                // Dropping the connection here closes the socket mid-request.
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_backend_dropping_the_connection_mid_request_is_retryable() {
    for (protocol, http2) in [(Protocol::Grpc, true), (Protocol::HttpProtobuf, false)] {
        let (endpoint, seen) = crashing_backend(http2).await;
        let exporter = OtlpExporter::new(&config(&endpoint), protocol).unwrap();
        let result = exporter.export(&Batch::Traces(traces())).await;
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "{protocol:?}: the request never reached the backend"
        );
        assert!(
            matches!(result, Err(ExportError::Retryable { .. })),
            "{protocol:?}: a connection lost mid-request must be retried, got {result:?}"
        );
    }
}
