//! In-process tests: a real receiver on 127.0.0.1 port 0, real clients (tonic's generated
//! OTLP clients, reqwest), real bounded pipeline channels.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hpcotel_core::channel;
use hpcotel_core::{Batch, proto};
use hpcotel_core::{
    BearerAuthConfig, ComponentError, ComponentId, ComponentKind, ComponentStats, Counter,
    HostPort, Outputs, Receiver, ReceiverContext, Secret, Signal, Telemetry,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use proto::common::v1::{AnyValue, KeyValue, any_value};
use proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use proto::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use proto::resource::v1::Resource;
use proto::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_types::StatusExt;

use super::*;

/// How long a test waits for something that should happen at once.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- harness

struct Harness {
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    pipelines: [Option<channel::Receiver>; 3],
    stats: Arc<ComponentStats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ComponentError>>,
}

impl Harness {
    /// Binds `config` (endpoints rewritten to 127.0.0.1:0) and runs it, with one pipeline
    /// of `capacity` batches for each of `signals`.
    async fn start(mut config: Config, capacity: usize, signals: &[Signal]) -> Harness {
        if let Some(g) = &mut config.protocols.grpc {
            g.endpoint = HostPort::new("127.0.0.1", 0);
        }
        if let Some(h) = &mut config.protocols.http {
            h.endpoint = HostPort::new("127.0.0.1", 0);
        }
        let receiver = OtlpReceiver::bind(&config).await.expect("bind");
        let (grpc, http) = receiver.local_addrs();
        let telemetry = Telemetry::default();
        let id: ComponentId = "otlp/test".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Receiver, id.clone());
        let mut outputs = Outputs::new(stats.clone());
        let mut pipelines = [None, None, None];
        for &signal in signals {
            let (tx, rx) = channel::channel(capacity);
            outputs.add(signal, signal.as_str(), tx);
            pipelines[signal.index()] = Some(rx);
        }
        let shutdown = CancellationToken::new();
        let ctx = ReceiverContext {
            id,
            outputs,
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(Box::new(receiver).run(ctx));
        Harness {
            grpc,
            http,
            pipelines,
            stats,
            shutdown,
            task,
        }
    }

    async fn all(capacity: usize) -> Harness {
        Harness::start(Config::default(), capacity, &Signal::ALL).await
    }

    /// The next batch of `signal`'s pipeline, failing the test after [`DEADLINE`].
    /// The next batch of `signal`, decoded.
    async fn next(&mut self, signal: Signal) -> Batch {
        self.next_as_sent(signal).await.into_decoded()
    }

    /// The next batch of `signal` as the receiver handed it over (spans and log records
    /// kept raw where they could be).
    async fn next_as_sent(&mut self, signal: Signal) -> Batch {
        let rx = self.pipelines[signal.index()]
            .as_mut()
            .expect("no pipeline of that signal");
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("no batch arrived in time")
            .expect("pipeline closed")
    }

    fn assert_nothing_queued(&mut self, signal: Signal) {
        let rx = self.pipelines[signal.index()].as_mut().unwrap();
        assert!(
            rx.try_recv().is_none(),
            "unexpected batch in the {signal} pipeline"
        );
    }

    fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("http enabled"))
    }

    async fn trace_client(&self) -> TraceServiceClient<tonic::transport::Channel> {
        TraceServiceClient::connect(format!("http://{}", self.grpc.expect("grpc enabled")))
            .await
            .expect("connect gRPC")
    }

    /// Cancels and waits for `run` to return.
    async fn stop(self) -> [Option<channel::Receiver>; 3] {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("run did not return after shutdown")
            .expect("run panicked")
            .expect("run failed");
        self.pipelines
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn traces(service: &str, names: &[&str]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        name: (*n).into(),
                        attributes: vec![string_kv("mpi.op", n)],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metrics(name: &str, value: i64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    unit: "1".into(),
                    data: Some(proto::metrics::v1::metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(proto::metrics::v1::number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs(body: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span_names(batch: &Batch) -> Vec<String> {
    let Batch::Traces(rs) = batch else {
        panic!("expected traces, got {:?}", batch.signal())
    };
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("HTTP request failed")
}

/// An error answer's `google.rpc.Status` JSON body: (code, message).
async fn json_status(resp: reqwest::Response) -> (i64, String) {
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap()).expect("error body is JSON");
    (
        v["code"].as_i64().expect("code"),
        v["message"].as_str().expect("message").to_owned(),
    )
}

/// Proves the HTTP server still answers: a good protobuf trace request succeeds and
/// arrives.
async fn assert_http_still_serving(h: &mut Harness) {
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        traces("svc", &["still-alive"]).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["still-alive"]);
}

// ---------------------------------------------------------------- config

#[test]
fn default_config_serves_both_protocols_on_loopback() {
    let c = Config::default();
    let g = c.protocols.grpc.as_ref().unwrap();
    let h = c.protocols.http.as_ref().unwrap();
    assert_eq!(g.endpoint.to_string(), "127.0.0.1:4317");
    assert_eq!(h.endpoint.to_string(), "127.0.0.1:4318");
    assert!(g.endpoint.is_loopback() && h.endpoint.is_loopback());
    assert_eq!(g.max_recv_msg_size_mib, 4);
    assert_eq!(h.max_request_body_size, 4 * 1024 * 1024);
    assert_eq!(c.pipeline_wait, Duration::from_millis(50));
    // An empty `otlp:` section means the same.
    let parsed: Config = serde_yaml::from_str("{}").unwrap();
    assert_eq!(parsed, c);
}

#[test]
fn a_present_protocol_key_enables_only_that_protocol() {
    let c: Config = serde_yaml::from_str("protocols:\n  grpc:\n").unwrap();
    assert_eq!(c.protocols.grpc, Some(GrpcConfig::default()));
    assert_eq!(c.protocols.http, None);
    let c: Config = serde_yaml::from_str(
        "protocols:\n  http:\n    endpoint: 0.0.0.0:14318\n    max_request_body_size: 1024\n\
         auth:\n  token: s3cret\npipeline_wait: 0s\nretry_after: 2500ms\n",
    )
    .unwrap();
    let h = c.protocols.http.unwrap();
    assert_eq!(h.endpoint, HostPort::new("0.0.0.0", 14318));
    assert_eq!(h.max_request_body_size, 1024);
    assert_eq!(c.protocols.grpc, None);
    assert_eq!(c.auth.unwrap().token.expose(), "s3cret");
    assert_eq!(c.pipeline_wait, Duration::ZERO);
    assert_eq!(c.retry_after, Duration::from_millis(2500));
}

#[test]
fn config_mistakes_are_explained() {
    let err = |yaml: &str| {
        serde_yaml::from_str::<Config>(yaml)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err("protocols:\n  grpc:\n    endpoint: tempo\n")
            .contains("expected host:port, got 'tempo'")
    );
    assert!(err("protocols:\n  grpc:\n    max_recv_msg_size_mib: 0\n").contains("at least 1"));
    assert!(err("protocols: {}\n").contains("no protocol enabled"));
    assert!(err("protocols:\n  grcp:\n").contains("unknown field `grcp`"));
    assert!(err("protocols:\n  http:\n    endpont: x\n").contains("unknown field `endpont`"));
    assert!(err("pipeline_wait: soon\n").contains("pipeline_wait"));
    assert!(err("auth: {}\n").contains("token"));
}

#[test]
fn printed_config_hides_the_token() {
    let c = Config {
        auth: Some(BearerAuthConfig {
            token: Secret::new("hunter2"),
        }),
        ..Config::default()
    };
    let yaml = serde_yaml::to_string(&c).unwrap();
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert!(!format!("{c:?}").contains("hunter2"));
}

// ---------------------------------------------------------------- bind

#[tokio::test]
async fn a_port_in_use_is_an_error_naming_the_endpoint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = Config::default();
    config.protocols.http = None;
    config.protocols.grpc.as_mut().unwrap().endpoint = HostPort::new("127.0.0.1", port);
    let err = OtlpReceiver::bind(&config).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("OTLP/gRPC"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_tls_file_is_an_error_naming_it() {
    let mut config = Config::default();
    config.protocols.grpc = None;
    config.protocols.http.as_mut().unwrap().endpoint = HostPort::new("127.0.0.1", 0);
    config.protocols.http.as_mut().unwrap().tls = Some(hpcotel_core::TlsServerConfig {
        cert_file: "/nonexistent/tls.crt".into(),
        key_file: "/nonexistent/tls.key".into(),
        client_ca_file: None,
    });
    let err = OtlpReceiver::bind(&config).await.unwrap_err().to_string();
    assert!(err.contains("/nonexistent/tls.crt"), "{err}");
}

// ---------------------------------------------------------------- gRPC

#[tokio::test]
async fn grpc_exports_of_each_signal_arrive_as_batches() {
    let mut h = Harness::all(8).await;
    let addr = format!("http://{}", h.grpc.unwrap());

    let resp = h
        .trace_client()
        .await
        .export(traces("checkout", &["MPI_Allreduce", "MPI_Barrier"]))
        .await
        .expect("trace export")
        .into_inner();
    assert_eq!(resp.partial_success, None);
    let batch = h.next_as_sent(Signal::Traces).await;
    // Plainly valid spans travel on as the bytes they came in (hpcotel_core::raw).
    assert!(matches!(&batch, Batch::Raw(r) if r.signal() == Signal::Traces));
    let batch = batch.into_decoded();
    assert_eq!(span_names(&batch), ["MPI_Allreduce", "MPI_Barrier"]);
    let Batch::Traces(rs) = &batch else {
        unreachable!()
    };
    let resource = rs[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(&any_value::Value::StringValue("checkout".into()))
    );
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id, vec![7; 16]);
    assert_eq!(
        attr(&span.attributes, "mpi.op"),
        Some(&any_value::Value::StringValue("MPI_Allreduce".into()))
    );

    let mut mc = MetricsServiceClient::connect(addr.clone()).await.unwrap();
    mc.export(metrics("hw.gpu.utilization", 87)).await.unwrap();
    let batch = h.next_as_sent(Signal::Metrics).await;
    assert!(matches!(&batch, Batch::Raw(r) if r.signal() == Signal::Metrics));
    let Batch::Metrics(rm) = batch.into_decoded() else {
        panic!("expected metrics")
    };
    let metric = &rm[0].scope_metrics[0].metrics[0];
    assert_eq!(metric.name, "hw.gpu.utilization");
    let Some(proto::metrics::v1::metric::Data::Gauge(g)) = &metric.data else {
        panic!("expected a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(proto::metrics::v1::number_data_point::Value::AsInt(87))
    );

    let mut lc = LogsServiceClient::connect(addr).await.unwrap();
    lc.export(logs("rollout started")).await.unwrap();
    let Batch::Logs(rl) = h.next(Signal::Logs).await else {
        panic!("expected logs")
    };
    assert_eq!(
        rl[0].scope_logs[0].log_records[0].body,
        Some(AnyValue {
            value: Some(any_value::Value::StringValue("rollout started".into()))
        })
    );

    assert_eq!(h.stats.get(Signal::Traces, Counter::Accepted), 2);
    assert_eq!(h.stats.get(Signal::Metrics, Counter::Accepted), 1);
    assert_eq!(h.stats.get(Signal::Logs, Counter::Accepted), 1);
    h.stop().await;
}

#[tokio::test]
async fn grpc_gzip_and_zstd_requests_are_accepted() {
    let mut h = Harness::all(8).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = h
            .trace_client()
            .await
            .send_compressed(encoding)
            .accept_compressed(encoding);
        client
            .export(traces("svc", &[encoding.to_string().as_str()]))
            .await
            .unwrap_or_else(|e| panic!("{encoding} export: {e}"));
        assert_eq!(
            span_names(&h.next(Signal::Traces).await),
            [encoding.to_string()]
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn grpc_empty_request_succeeds_without_a_batch() {
    let mut h = Harness::all(8).await;
    h.trace_client()
        .await
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("empty export succeeds");
    h.assert_nothing_queued(Signal::Traces);
    // Resources and scopes without a span: nothing to forward either.
    let mut hollow = traces("svc", &["a"]);
    hollow.resource_spans[0].scope_spans[0].spans.clear();
    h.trace_client()
        .await
        .export(hollow)
        .await
        .expect("an export without spans succeeds");
    h.assert_nothing_queued(Signal::Traces);
    h.stop().await;
}

#[tokio::test]
async fn odd_but_valid_values_are_forwarded_as_they_came() {
    let mut h = Harness::all(8).await;
    let mut req = traces("svc", &["", "b"]);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    // An unknown span kind and status code (a newer SDK's), a span without a name.
    spans[1].kind = 42;
    spans[1].status = Some(proto::trace::v1::Status {
        message: "odd".into(),
        code: 9,
    });
    let sent = req.clone();
    let resp = h.trace_client().await.export(req).await.expect("accepted");
    assert_eq!(resp.into_inner().partial_success, None);
    let Batch::Traces(got) = h.next(Signal::Traces).await else {
        panic!("not traces")
    };
    assert_eq!(got, sent.resource_spans);
    h.stop().await;
}

#[tokio::test]
async fn grpc_message_over_the_limit_is_refused_and_the_server_keeps_serving() {
    let mut config = Config::default();
    config
        .protocols
        .grpc
        .as_mut()
        .unwrap()
        .max_recv_msg_size_mib = 1;
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let mut client = h.trace_client().await;
    let big = "x".repeat(1024 * 1024 + 1);
    let status = client
        .export(traces("svc", &[big.as_str()]))
        .await
        .expect_err("over the limit");
    // RESOURCE_EXHAUSTED without RetryInfo, as grpc-go answers: permanent per OTLP, so the
    // client does not resend a request that can never fit.
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&status).is_none(),
        "{status:?}"
    );
    assert!(status.message().contains("too large"), "{status:?}");
    h.assert_nothing_queued(Signal::Traces);
    client
        .export(traces("svc", &["small"]))
        .await
        .expect("small export after the big one");
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["small"]);
    h.stop().await;
}

#[tokio::test]
async fn grpc_full_pipeline_is_resource_exhausted_with_retry_info() {
    let config = Config {
        pipeline_wait: Duration::ZERO,
        retry_after: Duration::from_secs(3),
        ..Config::default()
    };
    let mut h = Harness::start(config, 1, &Signal::ALL).await;
    let mut client = h.trace_client().await;
    client.export(traces("svc", &["first"])).await.unwrap();
    // Nobody reads the pipeline: its one slot is taken.
    let status = client
        .export(traces("svc", &["second", "third"]))
        .await
        .expect_err("pipeline full");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status
        .get_details_retry_info()
        .expect("RESOURCE_EXHAUSTED must carry RetryInfo to be retryable");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(3)));
    assert_eq!(
        h.stats.reasons(Signal::Traces, Counter::Refused),
        vec![("pipeline_full".to_owned(), 2)]
    );
    // Once there is room again, the client's retry succeeds.
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["first"]);
    client.export(traces("svc", &["retried"])).await.unwrap();
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["retried"]);
    h.stop().await;
}

#[tokio::test]
async fn grpc_signal_without_pipeline_is_unimplemented() {
    let h = Harness::start(Config::default(), 8, &[Signal::Metrics]).await;
    let status = h
        .trace_client()
        .await
        .export(traces("svc", &["orphan"]))
        .await
        .expect_err("no traces pipeline");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "this receiver is not part of any traces pipeline"
    );
    h.stop().await;
}

#[tokio::test]
async fn grpc_bearer_token_is_checked() {
    let config = Config {
        auth: Some(BearerAuthConfig {
            token: Secret::new("s3cret-token"),
        }),
        ..Config::default()
    };
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let mut client = h.trace_client().await;
    let status = client
        .export(traces("svc", &["anonymous"]))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    for wrong in [
        "Bearer s3cret-tokem",
        "Bearer s3cret",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        let mut req = tonic::Request::new(traces("svc", &["wrong"]));
        req.metadata_mut()
            .insert("authorization", wrong.parse().unwrap());
        let status = client.export(req).await.expect_err(wrong);
        assert_eq!(status.code(), Code::Unauthenticated, "{wrong}");
        assert!(
            !status.message().contains("s3cret"),
            "the token leaked into the answer"
        );
    }
    h.assert_nothing_queued(Signal::Traces);
    let mut req = tonic::Request::new(traces("svc", &["authorized"]));
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    client.export(req).await.expect("right token");
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["authorized"]);
    h.stop().await;
}

// ---------------------------------------------------------------- HTTP

#[tokio::test]
async fn http_protobuf_exports_arrive_and_are_answered_in_protobuf() {
    let mut h = Harness::all(8).await;
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        traces("svc", &["a", "b"]).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = resp.bytes().await.unwrap();
    let decoded =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(body)
            .expect("protobuf response");
    assert_eq!(decoded.partial_success, None);
    let batch = h.next_as_sent(Signal::Traces).await;
    assert!(
        matches!(batch, Batch::Raw(_)),
        "protobuf spans are kept as received"
    );
    assert_eq!(span_names(&batch.into_decoded()), ["a", "b"]);

    let resp = post(
        &h.http_url("/v1/metrics"),
        "application/x-protobuf",
        metrics("hw.power", 300).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(matches!(h.next(Signal::Metrics).await, Batch::Metrics(_)));
    let resp = post(
        &h.http_url("/v1/logs"),
        "application/x-protobuf",
        logs("hello").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(matches!(h.next(Signal::Logs).await, Batch::Logs(_)));
    h.stop().await;
}

/// A body shaped like the OTLP/JSON examples of the opentelemetry-proto repository:
/// lowerCamelCase keys, hex ids (upper case here, which the spec allows decoders to
/// accept), enums as integers, 64-bit integers as strings, unknown fields to ignore.
const SPEC_TRACE_JSON: &str = r#"{
  "resourceSpans": [
    {
      "resource": {
        "attributes": [
          { "key": "service.name", "value": { "stringValue": "trainer" } }
        ]
      },
      "scopeSpans": [
        {
          "scope": { "name": "mpi.shim", "version": "0.1.0" },
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "parentSpanId": "eee19b7ec3c1b173",
              "name": "MPI_Allreduce",
              "startTimeUnixNano": "1544712660000000000",
              "endTimeUnixNano": 1544712661000000000,
              "kind": 2,
              "attributes": [
                { "key": "mpi.rank", "value": { "intValue": "3" } },
                { "key": "mpi.bytes", "value": { "intValue": 4096 } },
                { "key": "mpi.ok", "value": { "boolValue": true } },
                { "key": "mpi.seconds", "value": { "doubleValue": 0.25 } }
              ],
              "status": { "code": 1 },
              "someFutureField": { "ignored": true }
            }
          ]
        }
      ]
    }
  ]
}"#;

#[tokio::test]
async fn http_json_spec_example_is_decoded_faithfully() {
    let mut h = Harness::all(8).await;
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/json; charset=utf-8",
        SPEC_TRACE_JSON.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({}));

    let Batch::Traces(rs) = h.next(Signal::Traces).await else {
        panic!("expected traces")
    };
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(
        span.span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
    );
    assert_eq!(
        span.parent_span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]
    );
    assert_eq!(span.name, "MPI_Allreduce");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(
        attr(&span.attributes, "mpi.rank"),
        Some(&any_value::Value::IntValue(3))
    );
    assert_eq!(
        attr(&span.attributes, "mpi.bytes"),
        Some(&any_value::Value::IntValue(4096))
    );
    assert_eq!(
        attr(&span.attributes, "mpi.ok"),
        Some(&any_value::Value::BoolValue(true))
    );
    assert_eq!(
        attr(&span.attributes, "mpi.seconds"),
        Some(&any_value::Value::DoubleValue(0.25))
    );
    assert_eq!(span.status.as_ref().unwrap().code, 1);
    assert_eq!(
        rs[0].scope_spans[0].scope.as_ref().unwrap().name,
        "mpi.shim"
    );
    h.stop().await;
}

#[tokio::test]
async fn http_json_metrics_and_logs_are_decoded() {
    let mut h = Harness::all(8).await;
    let metrics_json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"hw.gpu.memory.usage","unit":"By","sum":{"aggregationTemporality":2,
         "isMonotonic":false,"dataPoints":[{"asInt":"81920","timeUnixNano":"1544712660300000000",
         "attributes":[{"key":"hw.id","value":{"stringValue":"GPU-1"}}]}]}},
        {"name":"lat","unit":"s","histogram":{"aggregationTemporality":1,"dataPoints":[
         {"count":"3","sum":1.5,"bucketCounts":["1","2"],"explicitBounds":[1.0]}]}}]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/metrics"),
        "application/json",
        metrics_json.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let Batch::Metrics(rm) = h.next(Signal::Metrics).await else {
        panic!("expected metrics")
    };
    let ms = &rm[0].scope_metrics[0].metrics;
    let Some(proto::metrics::v1::metric::Data::Sum(sum)) = &ms[0].data else {
        panic!("expected a sum")
    };
    assert_eq!(
        sum.data_points[0].value,
        Some(proto::metrics::v1::number_data_point::Value::AsInt(81920))
    );
    assert_eq!(sum.data_points[0].time_unix_nano, 1_544_712_660_300_000_000);
    let Some(proto::metrics::v1::metric::Data::Histogram(hist)) = &ms[1].data else {
        panic!("expected a histogram")
    };
    assert_eq!(hist.data_points[0].count, 3);
    assert_eq!(hist.data_points[0].bucket_counts, [1, 2]);

    let logs_json = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
        "timeUnixNano":"1544712660300000000","severityNumber":17,"severityText":"ERROR",
        "traceId":"5b8efff798038103d269b633813fc60c","body":{"stringValue":"Xid 79"}}]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/logs"),
        "application/json",
        logs_json.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let Batch::Logs(rl) = h.next(Signal::Logs).await else {
        panic!("expected logs")
    };
    let record = &rl[0].scope_logs[0].log_records[0];
    assert_eq!(record.severity_number, 17);
    assert_eq!(record.trace_id.len(), 16);
    assert_eq!(
        record.body.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("Xid 79".into()))
    );
    h.stop().await;
}

#[tokio::test]
async fn http_json_non_finite_and_string_doubles_keep_their_values() {
    // opentelemetry-proto's mapping alone would turn these values into "no value".
    let mut h = Harness::all(8).await;
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"temp","gauge":
        {"dataPoints":[{"asDouble":"NaN"},{"asDouble":"-Infinity"},{"asDouble":"2.5"},
        {"asInt":"-4","exemplars":[{"asDouble":"Infinity"}]}]}}]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/metrics"),
        "application/json",
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let Batch::Metrics(rm) = h.next(Signal::Metrics).await else {
        panic!("expected metrics")
    };
    let Some(proto::metrics::v1::metric::Data::Gauge(g)) = &rm[0].scope_metrics[0].metrics[0].data
    else {
        panic!("expected a gauge")
    };
    use proto::metrics::v1::number_data_point::Value as V;
    let values: Vec<_> = g.data_points.iter().map(|p| p.value).collect();
    assert!(matches!(values[0], Some(V::AsDouble(d)) if d.is_nan()));
    assert_eq!(values[1], Some(V::AsDouble(f64::NEG_INFINITY)));
    assert_eq!(values[2], Some(V::AsDouble(2.5)));
    assert_eq!(values[3], Some(V::AsInt(-4)));
    assert_eq!(
        g.data_points[3].exemplars[0].value,
        Some(proto::metrics::v1::exemplar::Value::AsDouble(f64::INFINITY))
    );

    // A value that is no number at all is a 400, not a silently empty point.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"temp","gauge":
        {"dataPoints":[{"asDouble":"warm"}]}}]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/metrics"),
        "application/json",
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let (_, message) = json_status(resp).await;
    assert!(
        message.contains("metric 'temp'") && message.contains("asDouble"),
        "{message}"
    );
    h.assert_nothing_queued(Signal::Metrics);
    h.stop().await;
}

/// Whether two doubles are the same value, NaN included.
#[track_caller]
fn assert_double(actual: f64, expected: f64) {
    assert!(
        actual.to_bits() == expected.to_bits() || (actual.is_nan() && expected.is_nan()),
        "expected {expected:?}, got {actual:?}"
    );
}

/// The double value of attribute `key`.
#[track_caller]
fn double_attr(attrs: &[KeyValue], key: &str) -> f64 {
    match attr(attrs, key) {
        Some(any_value::Value::DoubleValue(d)) => *d,
        other => panic!("attribute '{key}': expected a double, got {other:?}"),
    }
}

/// The double in an `AnyValue`.
#[track_caller]
fn double_of(v: &AnyValue) -> f64 {
    match &v.value {
        Some(any_value::Value::DoubleValue(d)) => *d,
        other => panic!("expected a double, got {other:?}"),
    }
}

/// POSTs an OTLP/JSON body to `path` and returns the batch it delivered.
async fn post_json_ok(h: &mut Harness, path: &str, body: &str) -> Batch {
    let resp = post(
        &h.http_url(path),
        "application/json",
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let signal = match path {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        _ => Signal::Logs,
    };
    h.next(signal).await
}

#[tokio::test]
async fn http_json_non_finite_histogram_and_summary_doubles_keep_their_values() {
    // Before the repair, each of these metrics arrived without its data (opentelemetry-proto
    // drops a flattened oneof it cannot read).
    let mut h = Harness::all(8).await;
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
      {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[
        {"count":"2","sum":"NaN","min":"-Infinity","max":"Infinity","bucketCounts":["1","1"],
         "explicitBounds":[0.5],
         "exemplars":[{"asDouble":"Infinity"},{"asDouble":"-2.5"},{"asInt":"7"}]},
        {"count":"1","sum":3.25,"min":"0.5","max":1}]}},
      {"name":"e","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[
        {"count":"1","scale":2,"sum":"Infinity","min":"NaN","max":"-Infinity",
         "zeroThreshold":"Infinity","zeroCount":"1","positive":{"offset":-1,"bucketCounts":["4"]},
         "exemplars":[{"asDouble":"NaN"}]},
        {"count":"1","sum":2,"zeroThreshold":"1e-9"},
        {"count":"1","zeroThreshold":"-Infinity"}]}},
      {"name":"q","summary":{"dataPoints":[
        {"count":"1","sum":"-Infinity","quantileValues":[{"quantile":"NaN","value":"Infinity"},
         {"quantile":0.5,"value":"-Infinity"},{"quantile":"1","value":2.5}]},
        {"count":"3","sum":"NaN"},
        {"count":"3","sum":"Infinity"},
        {"count":"3","sum":0.125}]}}]}]}]}"#;
    let Batch::Metrics(rm) = post_json_ok(&mut h, "/v1/metrics", body).await else {
        panic!("expected metrics")
    };
    use proto::metrics::v1::exemplar::Value as Ex;
    use proto::metrics::v1::metric::Data;
    let ms = &rm[0].scope_metrics[0].metrics;

    let Some(Data::Histogram(hist)) = &ms[0].data else {
        panic!("expected a histogram, got {:?}", ms[0].data)
    };
    let p = &hist.data_points[0];
    assert_double(p.sum.unwrap(), f64::NAN);
    assert_double(p.min.unwrap(), f64::NEG_INFINITY);
    assert_double(p.max.unwrap(), f64::INFINITY);
    assert_eq!((p.count, &p.bucket_counts[..]), (2, &[1, 1][..]));
    assert_eq!(p.explicit_bounds, [0.5]);
    // Exemplars of histogram points are repaired too.
    let exemplars: Vec<_> = p.exemplars.iter().map(|e| e.value).collect();
    assert_eq!(
        exemplars,
        [
            Some(Ex::AsDouble(f64::INFINITY)),
            Some(Ex::AsDouble(-2.5)),
            Some(Ex::AsInt(7))
        ]
    );
    let p = &hist.data_points[1];
    assert_eq!((p.sum, p.min, p.max), (Some(3.25), Some(0.5), Some(1.0)));

    let Some(Data::ExponentialHistogram(exp)) = &ms[1].data else {
        panic!("expected an exponential histogram, got {:?}", ms[1].data)
    };
    let p = &exp.data_points[0];
    assert_double(p.sum.unwrap(), f64::INFINITY);
    assert_double(p.min.unwrap(), f64::NAN);
    assert_double(p.max.unwrap(), f64::NEG_INFINITY);
    assert_double(p.zero_threshold, f64::INFINITY);
    assert_eq!((p.scale, p.zero_count), (2, 1));
    assert_eq!(p.positive.as_ref().unwrap().bucket_counts, [4]);
    assert!(matches!(p.exemplars[0].value, Some(Ex::AsDouble(d)) if d.is_nan()));
    let p = &exp.data_points[1];
    assert_eq!((p.sum, p.min, p.max), (Some(2.0), None, None));
    assert_double(p.zero_threshold, 1e-9);
    assert_double(exp.data_points[2].zero_threshold, f64::NEG_INFINITY);

    let Some(Data::Summary(summary)) = &ms[2].data else {
        panic!("expected a summary, got {:?}", ms[2].data)
    };
    let p = &summary.data_points[0];
    assert_double(p.sum, f64::NEG_INFINITY);
    let q: Vec<_> = p
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(q.len(), 3);
    assert_double(q[0].0, f64::NAN);
    assert_double(q[0].1, f64::INFINITY);
    assert_double(q[1].0, 0.5);
    assert_double(q[1].1, f64::NEG_INFINITY);
    assert_double(q[2].0, 1.0);
    assert_double(q[2].1, 2.5);
    assert_double(summary.data_points[1].sum, f64::NAN);
    assert_double(summary.data_points[2].sum, f64::INFINITY);
    assert_double(summary.data_points[3].sum, 0.125);
    h.stop().await;
}

#[tokio::test]
async fn http_json_non_finite_attribute_and_body_doubles_keep_their_values() {
    let mut h = Harness::all(8).await;

    // Traces: resource, scope, span, event and link attributes; nested arrays and lists.
    // Strings that are not doubles ("NaN" as a string value, a span named "Infinity") stay.
    let body = r#"{"resourceSpans":[{
      "resource":{"attributes":[{"key":"r","value":{"doubleValue":"NaN"}}]},
      "scopeSpans":[{"scope":{"name":"s","attributes":[{"key":"s","value":{"doubleValue":"Infinity"}}]},
       "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "name":"Infinity",
        "attributes":[
          {"key":"a","value":{"doubleValue":"-Infinity"}},
          {"key":"finite","value":{"doubleValue":0.5}},
          {"key":"string","value":{"doubleValue":"2.5"}},
          {"key":"sum","value":{"stringValue":"NaN"}},
          {"key":"arr","value":{"arrayValue":{"values":[{"doubleValue":"NaN"},
            {"stringValue":"Infinity"},{"arrayValue":{"values":[{"doubleValue":"-Infinity"}]}}]}}},
          {"key":"kv","value":{"kvlistValue":{"values":[
            {"key":"inner","value":{"doubleValue":"Infinity"}},
            {"key":"deeper","value":{"kvlistValue":{"values":[
              {"key":"x","value":{"doubleValue":"NaN"}}]}}}]}}}],
        "events":[{"name":"e","attributes":[{"key":"e","value":{"doubleValue":"Infinity"}}]}],
        "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b173",
          "attributes":[{"key":"l","value":{"doubleValue":"-Infinity"}}]}]}]}]}]}"#;
    let Batch::Traces(rs) = post_json_ok(&mut h, "/v1/traces", body).await else {
        panic!("expected traces")
    };
    assert_double(
        double_attr(&rs[0].resource.as_ref().unwrap().attributes, "r"),
        f64::NAN,
    );
    let ss = &rs[0].scope_spans[0];
    assert_double(
        double_attr(&ss.scope.as_ref().unwrap().attributes, "s"),
        f64::INFINITY,
    );
    let span = &ss.spans[0];
    assert_eq!(span.name, "Infinity");
    assert_double(double_attr(&span.attributes, "a"), f64::NEG_INFINITY);
    assert_double(double_attr(&span.attributes, "finite"), 0.5);
    assert_double(double_attr(&span.attributes, "string"), 2.5);
    assert_eq!(
        attr(&span.attributes, "sum"),
        Some(&any_value::Value::StringValue("NaN".into()))
    );
    let Some(any_value::Value::ArrayValue(arr)) = attr(&span.attributes, "arr") else {
        panic!("expected an array")
    };
    assert_double(double_of(&arr.values[0]), f64::NAN);
    assert_eq!(
        arr.values[1].value,
        Some(any_value::Value::StringValue("Infinity".into()))
    );
    let Some(any_value::Value::ArrayValue(inner)) = &arr.values[2].value else {
        panic!("expected a nested array")
    };
    assert_double(double_of(&inner.values[0]), f64::NEG_INFINITY);
    let Some(any_value::Value::KvlistValue(kv)) = attr(&span.attributes, "kv") else {
        panic!("expected a kvlist")
    };
    assert_double(double_attr(&kv.values, "inner"), f64::INFINITY);
    let Some(any_value::Value::KvlistValue(deeper)) = attr(&kv.values, "deeper") else {
        panic!("expected a nested kvlist")
    };
    assert_double(double_attr(&deeper.values, "x"), f64::NAN);
    assert_double(double_attr(&span.events[0].attributes, "e"), f64::INFINITY);
    assert_double(
        double_attr(&span.links[0].attributes, "l"),
        f64::NEG_INFINITY,
    );

    // Logs: resource, scope and record attributes, bodies (plain and nested).
    let body = r#"{"resourceLogs":[{
      "resource":{"attributes":[{"key":"r","value":{"doubleValue":"-Infinity"}}]},
      "scopeLogs":[{"scope":{"name":"s","attributes":[{"key":"s","value":{"doubleValue":"NaN"}}]},
       "logRecords":[
        {"body":{"doubleValue":"Infinity"},"attributes":[{"key":"a","value":{"doubleValue":"NaN"}}]},
        {"body":{"kvlistValue":{"values":[{"key":"v","value":{"arrayValue":{"values":[
          {"doubleValue":"-Infinity"},{"doubleValue":1}]}}}]}}},
        {"body":{"doubleValue":"NaN"}}]}]}]}"#;
    let Batch::Logs(rl) = post_json_ok(&mut h, "/v1/logs", body).await else {
        panic!("expected logs")
    };
    assert_double(
        double_attr(&rl[0].resource.as_ref().unwrap().attributes, "r"),
        f64::NEG_INFINITY,
    );
    let sl = &rl[0].scope_logs[0];
    assert_double(
        double_attr(&sl.scope.as_ref().unwrap().attributes, "s"),
        f64::NAN,
    );
    let records = &sl.log_records;
    assert_double(double_of(records[0].body.as_ref().unwrap()), f64::INFINITY);
    assert_double(double_attr(&records[0].attributes, "a"), f64::NAN);
    let Some(any_value::Value::KvlistValue(kv)) = &records[1].body.as_ref().unwrap().value else {
        panic!("expected a kvlist body")
    };
    let Some(any_value::Value::ArrayValue(arr)) = attr(&kv.values, "v") else {
        panic!("expected an array")
    };
    assert_double(double_of(&arr.values[0]), f64::NEG_INFINITY);
    assert_double(double_of(&arr.values[1]), 1.0);
    assert_double(double_of(records[2].body.as_ref().unwrap()), f64::NAN);

    // Metrics: resource, scope, metric metadata, the attributes of every kind of data point
    // and of exemplars (a point's attribute used to drop the whole metric's data).
    let body = r#"{"resourceMetrics":[{
      "resource":{"attributes":[{"key":"r","value":{"doubleValue":"NaN"}}]},
      "scopeMetrics":[{"scope":{"name":"s","attributes":[{"key":"s","value":{"doubleValue":"Infinity"}}]},
       "metrics":[
        {"name":"g","metadata":[{"key":"m","value":{"doubleValue":"-Infinity"}}],"gauge":{"dataPoints":[
          {"asDouble":1.5,"attributes":[{"key":"p","value":{"doubleValue":"NaN"}}],
           "exemplars":[{"asInt":"3","filteredAttributes":[{"key":"x","value":{"doubleValue":"Infinity"}}]}]}]}},
        {"name":"c","sum":{"isMonotonic":true,"aggregationTemporality":2,"dataPoints":[
          {"asInt":"9","attributes":[{"key":"p","value":{"doubleValue":"-Infinity"}}]}]}},
        {"name":"h","histogram":{"dataPoints":[{"count":"1","sum":1,
          "attributes":[{"key":"p","value":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":"Infinity"}}]}}}],
          "exemplars":[{"asDouble":2,"filteredAttributes":[{"key":"x","value":{"doubleValue":"NaN"}}]}]}]}},
        {"name":"e","exponentialHistogram":{"dataPoints":[{"count":"1",
          "attributes":[{"key":"p","value":{"doubleValue":"NaN"}}]}]}},
        {"name":"q","summary":{"dataPoints":[{"count":"1","sum":1,
          "attributes":[{"key":"p","value":{"arrayValue":{"values":[{"doubleValue":"-Infinity"}]}}}]}]}},
        {"name":"no data"}]}]}]}"#;
    let Batch::Metrics(rm) = post_json_ok(&mut h, "/v1/metrics", body).await else {
        panic!("expected metrics")
    };
    use proto::metrics::v1::metric::Data;
    assert_double(
        double_attr(&rm[0].resource.as_ref().unwrap().attributes, "r"),
        f64::NAN,
    );
    let sm = &rm[0].scope_metrics[0];
    assert_double(
        double_attr(&sm.scope.as_ref().unwrap().attributes, "s"),
        f64::INFINITY,
    );
    let ms = &sm.metrics;
    assert_double(double_attr(&ms[0].metadata, "m"), f64::NEG_INFINITY);
    let Some(Data::Gauge(g)) = &ms[0].data else {
        panic!("expected a gauge, got {:?}", ms[0].data)
    };
    assert_eq!(
        g.data_points[0].value,
        Some(proto::metrics::v1::number_data_point::Value::AsDouble(1.5))
    );
    assert_double(double_attr(&g.data_points[0].attributes, "p"), f64::NAN);
    let ex = &g.data_points[0].exemplars[0];
    assert_eq!(
        ex.value,
        Some(proto::metrics::v1::exemplar::Value::AsInt(3))
    );
    assert_double(double_attr(&ex.filtered_attributes, "x"), f64::INFINITY);
    let Some(Data::Sum(s)) = &ms[1].data else {
        panic!("expected a sum, got {:?}", ms[1].data)
    };
    assert!(s.is_monotonic);
    assert_double(
        double_attr(&s.data_points[0].attributes, "p"),
        f64::NEG_INFINITY,
    );
    let Some(Data::Histogram(hist)) = &ms[2].data else {
        panic!("expected a histogram, got {:?}", ms[2].data)
    };
    let Some(any_value::Value::KvlistValue(kv)) = attr(&hist.data_points[0].attributes, "p") else {
        panic!("expected a kvlist")
    };
    assert_double(double_attr(&kv.values, "k"), f64::INFINITY);
    assert_double(
        double_attr(&hist.data_points[0].exemplars[0].filtered_attributes, "x"),
        f64::NAN,
    );
    let Some(Data::ExponentialHistogram(exp)) = &ms[3].data else {
        panic!("expected an exponential histogram, got {:?}", ms[3].data)
    };
    assert_double(double_attr(&exp.data_points[0].attributes, "p"), f64::NAN);
    let Some(Data::Summary(summary)) = &ms[4].data else {
        panic!("expected a summary, got {:?}", ms[4].data)
    };
    let Some(any_value::Value::ArrayValue(arr)) = attr(&summary.data_points[0].attributes, "p")
    else {
        panic!("expected an array")
    };
    assert_double(double_of(&arr.values[0]), f64::NEG_INFINITY);
    // A metric without data still passes through as it is.
    assert_eq!((ms[5].name.as_str(), &ms[5].data), ("no data", &None));
    h.stop().await;
}

#[tokio::test]
async fn http_json_doubles_that_are_no_numbers_are_a_400() {
    let mut h = Harness::all(8).await;
    // Before the repair, the first three arrived as metrics without data.
    let cases = [
        (
            "/v1/metrics",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":
            {"dataPoints":[{"count":"1","sum":"NaN","max":"lots"}]}}]}]}]}"#,
            &["metric 'h'", "histogram", "lots"][..],
        ),
        (
            "/v1/metrics",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"e",
            "exponentialHistogram":{"dataPoints":[{"count":"1","zeroThreshold":"tiny"}]}}]}]}]}"#,
            &["metric 'e'", "exponentialHistogram", "tiny"][..],
        ),
        (
            "/v1/metrics",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"q","summary":
            {"dataPoints":[{"count":"1","sum":"inf"}]}}]}]}]}"#,
            &["metric 'q'", "summary", "inf"][..],
        ),
        (
            "/v1/metrics",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":
            {"dataPoints":[{"asDouble":1,"exemplars":[{"asDouble":"many"}]}]}}]}]}]}"#,
            &["metric 'g' data point 0 exemplar 0", "asDouble", "many"][..],
        ),
        (
            "/v1/traces",
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s","attributes":
            [{"key":"a","value":{"doubleValue":"Infinity"}},
             {"key":"b","value":{"doubleValue":"warm"}}]}]}]}]}"#,
            &["ExportTraceServiceRequest", "warm"][..],
        ),
        (
            "/v1/logs",
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"doubleValue":"nan"}}]}]}]}"#,
            &["ExportLogsServiceRequest", "nan"][..],
        ),
    ];
    for (path, body, expected) in cases {
        let resp = post(
            &h.http_url(path),
            "application/json",
            body.as_bytes().to_vec(),
            &[],
        )
        .await;
        assert_eq!(resp.status(), 400, "{body}");
        let (_, message) = json_status(resp).await;
        for e in expected {
            assert!(message.contains(e), "{e:?} not in {message:?}");
        }
    }
    for signal in Signal::ALL {
        h.assert_nothing_queued(signal);
    }
    h.stop().await;
}

// ---------------------------------------------------------------- OTLP/JSON as others write it

/// An empty `ArrayValue`.
fn empty_array() -> any_value::Value {
    any_value::Value::ArrayValue(proto::common::v1::ArrayValue::default())
}

/// An empty `KeyValueList`.
fn empty_kvlist() -> any_value::Value {
    any_value::Value::KvlistValue(proto::common::v1::KeyValueList::default())
}

#[tokio::test]
async fn http_json_empty_arrays_and_kvlists_decode_to_empty_values() {
    // protobuf's JSON printer writes an empty ArrayValue or KeyValueList as `{}` (it omits
    // the empty repeated `values`); before, each of these bodies was a 400.
    let mut h = Harness::all(8).await;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"r","value":{"kvlistValue":{}}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"s","attributes":[
        {"key":"a","value":{"arrayValue":{}}},
        {"key":"m","value":{"kvlistValue":{}}},
        {"key":"null","value":{"arrayValue":{"values":null}}},
        {"key":"nested","value":{"arrayValue":{"values":[{"arrayValue":{}},{"kvlistValue":{}}]}}},
        {"key":"deep","value":{"kvlistValue":{"values":[{"key":"inner","value":{"arrayValue":{}}}]}}}
      ]}]}]}]}"#;
    let Batch::Traces(rs) = post_json_ok(&mut h, "/v1/traces", body).await else {
        panic!("expected traces")
    };
    let resource = rs[0].resource.as_ref().unwrap();
    assert_eq!(attr(&resource.attributes, "r"), Some(&empty_kvlist()));
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(attr(&span.attributes, "a"), Some(&empty_array()));
    assert_eq!(attr(&span.attributes, "m"), Some(&empty_kvlist()));
    assert_eq!(attr(&span.attributes, "null"), Some(&empty_array()));
    let Some(any_value::Value::ArrayValue(nested)) = attr(&span.attributes, "nested") else {
        panic!(
            "expected an array, got {:?}",
            attr(&span.attributes, "nested")
        )
    };
    let nested: Vec<_> = nested.values.iter().map(|v| v.value.clone()).collect();
    assert_eq!(nested, [Some(empty_array()), Some(empty_kvlist())]);
    let Some(any_value::Value::KvlistValue(deep)) = attr(&span.attributes, "deep") else {
        panic!(
            "expected a kvlist, got {:?}",
            attr(&span.attributes, "deep")
        )
    };
    assert_eq!(attr(&deep.values, "inner"), Some(&empty_array()));

    // In a metric point's attributes (behind opentelemetry-proto's flattened oneofs).
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":
        {"dataPoints":[{"asInt":"1","attributes":[{"key":"a","value":{"arrayValue":{}}}]}]}}]}]}]}"#;
    let Batch::Metrics(rm) = post_json_ok(&mut h, "/v1/metrics", body).await else {
        panic!("expected metrics")
    };
    let Some(proto::metrics::v1::metric::Data::Gauge(g)) = &rm[0].scope_metrics[0].metrics[0].data
    else {
        panic!(
            "expected a gauge, got {:?}",
            rm[0].scope_metrics[0].metrics[0].data
        )
    };
    assert_eq!(
        attr(&g.data_points[0].attributes, "a"),
        Some(&empty_array())
    );

    // As a log body.
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"kvlistValue":{}}}]}]}]}"#;
    let Batch::Logs(rl) = post_json_ok(&mut h, "/v1/logs", body).await else {
        panic!("expected logs")
    };
    let record = &rl[0].scope_logs[0].log_records[0];
    assert_eq!(record.body.as_ref().unwrap().value, Some(empty_kvlist()));
    h.stop().await;
}

/// `json` with every member name turned into its proto field name (`traceId` ->
/// `trace_id`), as protobuf's printer writes with `preserving_proto_field_name`.
fn proto_names(json: &serde_json::Value) -> serde_json::Value {
    match json {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut name = String::new();
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            name.push('_');
                        }
                        name.push(c.to_ascii_lowercase());
                    }
                    (name, proto_names(v))
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => items.iter().map(proto_names).collect(),
        other => other.clone(),
    }
}

/// A traces body using every field of every message it holds, in lowerCamelCase.
const EVERY_SPAN_FIELD_JSON: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"trainer"}}],
    "droppedAttributesCount":1,
    "entityRefs":[{"schemaUrl":"s","type":"k8s.pod","idKeys":["k8s.pod.uid"],
      "descriptionKeys":["k8s.pod.name"]}]},
  "scopeSpans":[{"scope":{"name":"shim","version":"1","droppedAttributesCount":2,
      "attributes":[{"key":"k","value":{"boolValue":true}}]},
    "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "parentSpanId":"eee19b7ec3c1b173","traceState":"a=b","flags":257,"name":"op","kind":2,
      "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
      "attributes":[
        {"key":"i","value":{"intValue":"3"}},
        {"key":"d","value":{"doubleValue":"NaN"}},
        {"key":"b","value":{"bytesValue":"aGk="}},
        {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}},
        {"key":"m","value":{"kvlistValue":{"values":[{"key":"y","value":{"intValue":4}}]}}}],
      "droppedAttributesCount":3,
      "events":[{"timeUnixNano":"1544712660500000000","name":"e","droppedAttributesCount":4,
        "attributes":[{"key":"e","value":{"stringValue":"v"}}]}],
      "droppedEventsCount":5,
      "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175",
        "traceState":"c=d","droppedAttributesCount":6,"flags":1,
        "attributes":[{"key":"l","value":{"stringValue":"v"}}]}],
      "droppedLinksCount":7,
      "status":{"message":"bad","code":2}}],
    "schemaUrl":"https://opentelemetry.io/schemas/1.4.0"}],
  "schemaUrl":"https://opentelemetry.io/schemas/1.5.0"}]}"#;

/// A metrics body using every kind of data and every field of their points.
const EVERY_METRIC_FIELD_JSON: &str = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
  {"name":"g","description":"d","unit":"1",
   "metadata":[{"key":"k","value":{"stringValue":"v"}}],
   "gauge":{"dataPoints":[{"asDouble":"Infinity","startTimeUnixNano":"1","timeUnixNano":"2",
     "flags":1,"attributes":[{"key":"a","value":{"stringValue":"v"}}],
     "exemplars":[{"asInt":"5","timeUnixNano":"3","spanId":"eee19b7ec3c1b174",
       "traceId":"5b8efff798038103d269b633813fc60c",
       "filteredAttributes":[{"key":"f","value":{"stringValue":"v"}}]}]}]}},
  {"name":"s","sum":{"aggregationTemporality":2,"isMonotonic":true,
   "dataPoints":[{"asInt":"7","timeUnixNano":"2"}]}},
  {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"2","sum":2.5,
   "bucketCounts":["1","1"],"explicitBounds":[1.0],"min":0.5,"max":2,"timeUnixNano":"2"}]}},
  {"name":"e","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3",
   "sum":10,"scale":-1,"zeroCount":"1","zeroThreshold":0.001,
   "positive":{"offset":1,"bucketCounts":["0","2"]},"negative":{"offset":-2,"bucketCounts":["1"]},
   "min":0,"max":5}]}},
  {"name":"q","summary":{"dataPoints":[{"count":"4","sum":8,
   "quantileValues":[{"quantile":0.5,"value":2},{"quantile":1,"value":3}]}]}}
]}]}]}"#;

/// A logs body using every field of a log record.
const EVERY_LOG_FIELD_JSON: &str = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
  "timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660400000000",
  "severityNumber":17,"severityText":"ERROR","body":{"stringValue":"Xid 79"},
  "attributes":[{"key":"a","value":{"stringValue":"v"}}],"droppedAttributesCount":1,
  "flags":1,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
  "eventName":"gpu.xid"}],"schemaUrl":"s"}],"schemaUrl":"r"}]}"#;

#[tokio::test]
async fn http_json_proto_field_names_decode_like_json_names() {
    // Before, the receiver answered 200 to each snake_case body and dropped what it held.
    let mut h = Harness::all(8).await;
    for (path, camel) in [
        ("/v1/traces", EVERY_SPAN_FIELD_JSON),
        ("/v1/metrics", EVERY_METRIC_FIELD_JSON),
        ("/v1/logs", EVERY_LOG_FIELD_JSON),
    ] {
        let snake = proto_names(&serde_json::from_str(camel).unwrap()).to_string();
        assert!(snake.contains("_unix_nano"), "{snake}");
        let expected = post_json_ok(&mut h, path, camel).await;
        let actual = post_json_ok(&mut h, path, &snake).await;
        // The NaN attribute makes the traces unequal to themselves: compare their encoding.
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "{path}: {snake}"
        );
    }
    let Batch::Traces(rs) = post_json_ok(&mut h, "/v1/traces", EVERY_SPAN_FIELD_JSON).await else {
        panic!("expected traces")
    };
    // What was compared above is the whole request, not an empty one.
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!((span.trace_id.len(), span.kind, span.flags), (16, 2, 257));
    assert_eq!((span.events.len(), span.links.len()), (1, 1));
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(
        rs[0].resource.as_ref().unwrap().entity_refs[0].r#type,
        "k8s.pod"
    );
    h.stop().await;
}

fn decode_traces(body: &str) -> Result<ExportTraceServiceRequest, String> {
    super::json::decode(body.as_bytes(), "ExportTraceServiceRequest")
}

/// The only span of a decoded traces body.
#[track_caller]
fn only_span(body: &str) -> Span {
    let req = decode_traces(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let spans: Vec<_> = req
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    assert_eq!(spans.len(), 1, "{body}");
    spans.into_iter().next().unwrap()
}

/// `span` (a span's members) as a whole traces body.
fn spans_body(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

#[test]
fn json_proto_field_names_spelled_with_escapes_are_read() {
    let span = only_span(&spans_body(
        r#"{"name":"s","trace\u005fid":"5b8efff798038103d269b633813fc60c","kin\u0064":3}"#,
    ));
    assert_eq!((span.trace_id.len(), span.kind), (16, 3));
}

#[test]
fn json_a_field_under_both_names_is_refused_naming_both() {
    // Before, `trace_id` was ignored and the request accepted.
    let err = decode_traces(&spans_body(
        r#"{"name":"s","traceId":"5b8efff798038103d269b633813fc60c",
            "trace_id":"5b8efff798038103d269b633813fc60d"}"#,
    ))
    .unwrap_err();
    for needle in [
        "resourceSpans[0].scopeSpans[0].spans[0]",
        "'trace_id'",
        "'traceId'",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

#[test]
fn json_enum_names_and_integers_written_as_strings_are_read() {
    let span = only_span(&spans_body(
        r#"{"name":"s","kind":"SPAN_KIND_CONSUMER","flags":"257","droppedAttributesCount":"3",
            "droppedEventsCount":"4","droppedLinksCount":"5",
            "links":[{"flags":"1","droppedAttributesCount":"6"}],
            "status":{"code":"STATUS_CODE_ERROR"}}"#,
    ));
    assert_eq!(span.kind, SpanKind::Consumer as i32);
    assert_eq!(
        (span.flags, span.dropped_attributes_count),
        (257, 3),
        "{span:?}"
    );
    assert_eq!(
        (span.dropped_events_count, span.dropped_links_count),
        (4, 5)
    );
    assert_eq!(
        (span.links[0].flags, span.links[0].dropped_attributes_count),
        (1, 6)
    );
    assert_eq!(span.status.unwrap().code, 2);
    // An integer still reads as itself, an enum number as a string too.
    assert_eq!(only_span(&spans_body(r#"{"kind":2}"#)).kind, 2);
    assert_eq!(only_span(&spans_body(r#"{"kind":"4"}"#)).kind, 4);

    let logs: ExportLogsServiceRequest = super::json::decode(
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_WARN"}]}]}]}"#,
        "ExportLogsServiceRequest",
    )
    .unwrap();
    assert_eq!(
        logs.resource_logs[0].scope_logs[0].log_records[0].severity_number,
        13
    );

    let metrics: ExportMetricsServiceRequest = super::json::decode(
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"s","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE",
            "dataPoints":[{"asInt":"1","flags":"1"}]}},
          {"name":"e","exponentialHistogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA",
            "dataPoints":[{"count":"1","scale":"-2","positive":{"offset":"-1","bucketCounts":["1"]}}]}}
        ]}]}]}"#,
        "ExportMetricsServiceRequest",
    )
    .unwrap();
    use proto::metrics::v1::metric::Data;
    let ms = &metrics.resource_metrics[0].scope_metrics[0].metrics;
    let Some(Data::Sum(sum)) = &ms[0].data else {
        panic!("expected a sum, got {:?}", ms[0].data)
    };
    assert_eq!(
        (sum.aggregation_temporality, sum.data_points[0].flags),
        (2, 1)
    );
    let Some(Data::ExponentialHistogram(exp)) = &ms[1].data else {
        panic!("expected an exponential histogram, got {:?}", ms[1].data)
    };
    let p = &exp.data_points[0];
    assert_eq!((exp.aggregation_temporality, p.scale), (1, -2));
    assert_eq!(p.positive.as_ref().unwrap().offset, -1);

    // A name the enum does not have is refused, not read as 0.
    let err = decode_traces(&spans_body(r#"{"kind":"SPAN_KIND_NOPE"}"#)).unwrap_err();
    assert!(err.contains("SPAN_KIND_NOPE"), "{err}");
}

#[test]
fn json_null_and_missing_members_read_as_defaults() {
    let span = only_span(&spans_body(
        r#"{"name":null,"traceId":null,"kind":null,"flags":null,"attributes":null,"status":null,
            "events":[{"name":"e","attributes":[{"value":{"stringValue":"no key"}},
                                                {"key":"no value"},{"key":"null","value":null}]}]}"#,
    ));
    assert_eq!(
        (
            span.name.as_str(),
            span.trace_id.len(),
            span.kind,
            span.flags
        ),
        ("", 0, 0, 0)
    );
    assert!(span.attributes.is_empty() && span.status.is_none());
    let attrs: Vec<_> = span.events[0]
        .attributes
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.is_some()))
        .collect();
    assert_eq!(attrs, [("", true), ("no value", false), ("null", false)]);

    // An entity reference with its empty fields left out, as protobuf prints it.
    let req = decode_traces(
        r#"{"resourceSpans":[{"resource":{"entityRefs":[{"type":"k8s.pod","idKeys":["k8s.pod.uid"]}]}}]}"#,
    )
    .unwrap();
    let refs = &req.resource_spans[0].resource.as_ref().unwrap().entity_refs;
    assert_eq!(refs[0].r#type, "k8s.pod");
    assert_eq!(refs[0].id_keys, ["k8s.pod.uid"]);
    assert!(refs[0].schema_url.is_empty() && refs[0].description_keys.is_empty());
}

#[test]
fn json_unknown_members_are_ignored() {
    // The OTLP specification: receivers MUST ignore fields with unknown names.
    let with = decode_traces(
        r#"{"future":1,"resourceSpans":[{"futureResource":{"a":[1]},
            "resource":{"future":"x","attributes":[{"key":"k","future":true,
              "value":{"stringValue":"v","futureValue":{"x":1}}}]},
            "scopeSpans":[{"spans":[{"name":"s","future_field":"y","futureKind":"SPAN_KIND_X"}]}]}]}"#,
    )
    .unwrap();
    let without = decode_traces(
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"v"}}]},
            "scopeSpans":[{"spans":[{"name":"s"}]}]}]}"#,
    )
    .unwrap();
    assert_eq!(with, without);
}

#[tokio::test]
async fn http_gzip_bodies_are_decompressed() {
    let mut h = Harness::all(8).await;
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        gzip(&traces("svc", &["zipped"]).encode_to_vec()),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["zipped"]);
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/json",
        gzip(SPEC_TRACE_JSON.as_bytes()),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["MPI_Allreduce"]);
    // zstd, as the Collector's otlphttp exporter sends it with `compression: zstd`.
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        zstd::bulk::compress(&traces("svc", &["zstd"]).encode_to_vec(), 3).unwrap(),
        &[("content-encoding", "zstd")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["zstd"]);
    h.stop().await;
}

#[tokio::test]
async fn http_bad_requests_get_documented_statuses_and_the_server_keeps_serving() {
    let mut config = Config::default();
    config
        .protocols
        .http
        .as_mut()
        .unwrap()
        .max_request_body_size = 64 * 1024;
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let url = h.http_url("/v1/traces");

    // Undecodable protobuf: 400, google.rpc.Status in protobuf.
    let resp = post(&url, "application/x-protobuf", vec![0xff, 0xff, 0xff], &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert!(
        status
            .message
            .starts_with("could not decode ExportTraceServiceRequest protobuf: "),
        "{}",
        status.message
    );
    assert_http_still_serving(&mut h).await;

    // Invalid JSON: 400 with serde's line and column.
    let resp = post(
        &url,
        "application/json",
        b"{\n  \"resourceSpans\": [ {\"scopeSpans\": ]\n}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let (code, message) = json_status(resp).await;
    assert_eq!(code, Code::InvalidArgument as i64);
    assert!(
        message.starts_with("could not decode ExportTraceServiceRequest JSON: ")
            && message.contains("line 2 column"),
        "{message}"
    );
    // A JSON value of the wrong type for a field is also a 400.
    let resp = post(
        &url,
        "application/json",
        br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not hex"}]}]}]}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_http_still_serving(&mut h).await;

    // Unknown content type: 415 naming the supported ones.
    let resp = post(&url, "text/plain", b"hello".to_vec(), &[]).await;
    assert_eq!(resp.status(), 415);
    let (_, message) = json_status(resp).await;
    assert!(
        message.contains("'text/plain'")
            && message.contains("application/x-protobuf")
            && message.contains("application/json"),
        "{message}"
    );
    // Unknown content encoding: 415.
    let resp = post(
        &url,
        "application/json",
        b"{}".to_vec(),
        &[("content-encoding", "br")],
    )
    .await;
    assert_eq!(resp.status(), 415);
    assert!(json_status(resp).await.1.contains("'br'"));

    // Body over the limit: 413.
    let big = traces("svc", &["x".repeat(70 * 1024).as_str()]).encode_to_vec();
    let resp = post(&url, "application/x-protobuf", big, &[]).await;
    assert_eq!(resp.status(), 413);
    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(status.message.contains("65536 bytes"), "{}", status.message);
    assert_http_still_serving(&mut h).await;

    // A small gzip or zstd body that inflates past the limit ("zip bomb"): 413, not OOM.
    let zeros = vec![0u8; 16 * 1024 * 1024];
    for (encoding, bomb) in [
        ("gzip", gzip(&zeros)),
        ("zstd", zstd::bulk::compress(&zeros, 3).unwrap()),
    ] {
        assert!(bomb.len() < 64 * 1024);
        let resp = post(
            &url,
            "application/x-protobuf",
            bomb,
            &[("content-encoding", encoding)],
        )
        .await;
        assert_eq!(resp.status(), 413, "{encoding}");
        let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
        assert!(
            status.message.contains("decompressed"),
            "{encoding}: {}",
            status.message
        );
    }
    // A corrupt zstd body: 400 naming the coding.
    let resp = post(
        &url,
        "application/x-protobuf",
        b"not zstd at all".to_vec(),
        &[("content-encoding", "zstd")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(
        status
            .message
            .contains("could not decompress the zstd body"),
        "{}",
        status.message
    );
    // A corrupt gzip body: 400.
    let resp = post(
        &url,
        "application/x-protobuf",
        b"not gzip at all".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(resp.status(), 400);

    // Unknown path: 404; wrong method: 405 with Allow.
    let resp = post(
        &h.http_url("/v1/profiles"),
        "application/x-protobuf",
        Vec::new(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 404);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");

    h.assert_nothing_queued(Signal::Traces);
    assert_http_still_serving(&mut h).await;
    h.stop().await;
}

#[tokio::test]
async fn http_full_pipeline_is_429_with_retry_after() {
    let config = Config {
        pipeline_wait: Duration::from_millis(20),
        retry_after: Duration::from_millis(1500),
        ..Config::default()
    };
    let mut h = Harness::start(config, 1, &Signal::ALL).await;
    let url = h.http_url("/v1/logs");
    // The first request fills the one-batch pipeline.
    let resp = post(
        &url,
        "application/json",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"fills"}}]}]}]}"#
            .to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        &url,
        "application/x-protobuf",
        logs("refused").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 429);
    // 1.5 s rounds up to whole seconds.
    assert_eq!(resp.headers()["retry-after"], "2");
    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, Code::ResourceExhausted as i32);
    assert!(
        status.message.contains("pipeline is full"),
        "{}",
        status.message
    );
    assert_eq!(
        h.stats.reasons(Signal::Logs, Counter::Refused),
        vec![("pipeline_full".to_owned(), 1)]
    );
    h.next(Signal::Logs).await;
    let resp = post(
        &url,
        "application/x-protobuf",
        logs("retried").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn http_signal_without_pipeline_is_501() {
    let h = Harness::start(Config::default(), 8, &[Signal::Traces]).await;
    let resp = post(
        &h.http_url("/v1/metrics"),
        "application/json",
        metrics_json_one(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 501);
    assert_eq!(
        json_status(resp).await.1,
        "this receiver is not part of any metrics pipeline"
    );
    h.stop().await;
}

fn metrics_json_one() -> Vec<u8> {
    br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asDouble":1.5}]}}]}]}]}"#
        .to_vec()
}

#[tokio::test]
async fn http_bearer_token_is_checked() {
    let config = Config {
        auth: Some(BearerAuthConfig {
            token: Secret::new("s3cret-token"),
        }),
        ..Config::default()
    };
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let url = h.http_url("/v1/traces");
    let body = traces("svc", &["guarded"]).encode_to_vec();
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Basic s3cret-token")],
    ] {
        let resp = post(&url, "application/x-protobuf", body.clone(), &headers).await;
        assert_eq!(resp.status(), 401, "{headers:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
        assert_eq!(status.code, Code::Unauthenticated as i32);
        assert!(!status.message.contains("s3cret"));
    }
    h.assert_nothing_queued(Signal::Traces);
    let resp = post(
        &url,
        "application/x-protobuf",
        body,
        &[("authorization", "bearer s3cret-token")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["guarded"]);
    h.stop().await;
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn shutdown_returns_from_run_and_closes_the_pipelines() {
    let h = Harness::all(8).await;
    let (grpc, http) = (h.grpc.unwrap(), h.http.unwrap());
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        traces("svc", &["before-shutdown"]).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut pipelines = h.stop().await;
    // What was accepted is there, and then the pipeline ends: the receiver let go of it.
    let traces_rx = pipelines[Signal::Traces.index()].as_mut().unwrap();
    assert_eq!(
        span_names(&traces_rx.recv().await.unwrap().into_decoded()),
        ["before-shutdown"]
    );
    assert!(traces_rx.recv().await.is_none());
    // Both listeners are closed.
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_finished_and_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The pipeline's one slot is taken, and a request may wait 30 s for room.
    let config = Config {
        pipeline_wait: Duration::from_secs(30),
        ..Config::default()
    };
    let mut h = Harness::start(config, 1, &Signal::ALL).await;
    let first = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        traces("svc", &["first"]).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(first.status(), 200);

    // A raw HTTP/1.1 client with `Expect: 100-continue`: the server's "100 Continue" proves
    // the request is inside the receiver before shutdown is asked.
    let body = traces("svc", &["in-flight"]).encode_to_vec();
    let mut conn = tokio::net::TcpStream::connect(h.http.unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: test\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, conn.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    h.shutdown.cancel();
    conn.write_all(&body).await.unwrap();
    // The request now waits for room; make some.
    let rx = h.pipelines[Signal::Traces.index()].as_mut().unwrap();
    assert_eq!(
        span_names(&rx.recv().await.unwrap().into_decoded()),
        ["first"]
    );
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, conn.read_to_end(&mut response))
        .await
        .expect("the in-flight request was not answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        span_names(&rx.recv().await.unwrap().into_decoded()),
        ["in-flight"]
    );
    tokio::time::timeout(DEADLINE, h.task)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
    assert!(
        rx.recv().await.is_none(),
        "the receiver still holds the pipeline"
    );
}

// ---------------------------------------------------------------- TLS

/// A self-signed certificate for `localhost` and 127.0.0.1 written to a temporary
/// directory: (dir, TLS config, certificate PEM).
fn self_signed() -> (tempfile::TempDir, hpcotel_core::TlsServerConfig, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = certified.cert.pem();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, certified.key_pair.serialize_pem()).unwrap();
    let tls = hpcotel_core::TlsServerConfig {
        cert_file,
        key_file,
        client_ca_file: None,
    };
    (dir, tls, cert_pem)
}

#[tokio::test]
async fn both_protocols_serve_tls_when_configured() {
    let (_dir, tls, cert_pem) = self_signed();
    let mut config = Config::default();
    config.protocols.grpc.as_mut().unwrap().tls = Some(tls.clone());
    config.protocols.http.as_mut().unwrap().tls = Some(tls);
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let (grpc, http) = (h.grpc.unwrap(), h.http.unwrap());

    let channel = tonic::transport::Channel::from_shared(format!("https://{grpc}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS gRPC connect");
    TraceServiceClient::new(channel)
        .export(traces("svc", &["over-grpc-tls"]))
        .await
        .expect("TLS gRPC export");
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["over-grpc-tls"]);

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("localhost", http)
        .build()
        .unwrap();
    let resp = client
        .post(format!("https://localhost:{}/v1/traces", http.port()))
        .header("content-type", "application/x-protobuf")
        .body(traces("svc", &["over-https"]).encode_to_vec())
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["over-https"]);

    // Plaintext to a TLS port gets no OTLP answer, and the server keeps serving.
    let plain = reqwest::Client::new()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(traces("svc", &["plaintext"]).encode_to_vec())
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status() != 200),
        "plaintext request was accepted on a TLS port"
    );
    h.assert_nothing_queued(Signal::Traces);
    let resp = client
        .post(format!("https://localhost:{}/v1/traces", http.port()))
        .header("content-type", "application/x-protobuf")
        .body(traces("svc", &["again"]).encode_to_vec())
        .send()
        .await
        .expect("HTTPS request after the plaintext one");
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["again"]);
    h.stop().await;
}

#[tokio::test]
async fn a_key_that_is_not_pem_is_an_error_at_bind() {
    let (dir, mut tls, _) = self_signed();
    let bogus = dir.path().join("bogus.key");
    std::fs::write(&bogus, "not a key").unwrap();
    tls.key_file = bogus;
    let mut config = Config::default();
    config.protocols.http = None;
    let grpc = config.protocols.grpc.as_mut().unwrap();
    grpc.endpoint = HostPort::new("127.0.0.1", 0);
    grpc.tls = Some(tls);
    let err = OtlpReceiver::bind(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("bogus.key") && err.contains("OTLP/gRPC"),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificates_are_demanded_when_a_client_ca_is_set() {
    let (dir, mut tls, server_pem) = self_signed();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    tls.client_ca_file = Some(ca_file);
    let mut config = Config::default();
    config.protocols.grpc.as_mut().unwrap().tls = Some(tls.clone());
    config.protocols.http.as_mut().unwrap().tls = Some(tls);
    let mut h = Harness::start(config, 8, &Signal::ALL).await;
    let (grpc, http) = (h.grpc.unwrap(), h.http.unwrap());

    let https = |identity: Option<reqwest::Identity>| {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(server_pem.as_bytes()).unwrap())
            .resolve("localhost", http);
        if let Some(id) = identity {
            b = b.identity(id);
        }
        b.build().unwrap()
    };
    let url = format!("https://localhost:{}/v1/traces", http.port());
    let anonymous = https(None)
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(traces("svc", &["anonymous"]).encode_to_vec())
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate got an answer"
    );
    let identity_pem = format!("{}{}", client_cert.pem(), client_key.serialize_pem());
    let resp = https(Some(
        reqwest::Identity::from_pem(identity_pem.as_bytes()).unwrap(),
    ))
    .post(&url)
    .header("content-type", "application/x-protobuf")
    .body(traces("svc", &["mutual"]).encode_to_vec())
    .send()
    .await
    .expect("mutual TLS request");
    assert_eq!(resp.status(), 200);
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["mutual"]);

    let grpc_client = |identity: Option<tonic::transport::Identity>| {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&server_pem))
            .domain_name("localhost");
        if let Some(id) = identity {
            tls = tls.identity(id);
        }
        tonic::transport::Channel::from_shared(format!("https://{grpc}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
    };
    let anonymous = match grpc_client(None).connect().await {
        Err(_) => true,
        Ok(ch) => TraceServiceClient::new(ch)
            .export(traces("svc", &["anonymous"]))
            .await
            .is_err(),
    };
    assert!(anonymous, "a gRPC client without a certificate was served");
    let channel = grpc_client(Some(tonic::transport::Identity::from_pem(
        client_cert.pem(),
        client_key.serialize_pem(),
    )))
    .connect()
    .await
    .expect("mutual TLS gRPC connect");
    TraceServiceClient::new(channel)
        .export(traces("svc", &["mutual-grpc"]))
        .await
        .expect("mutual TLS gRPC export");
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["mutual-grpc"]);
    h.assert_nothing_queued(Signal::Traces);
    h.stop().await;
}

// ---------------------------------------------------------------- ids checked at the door

/// One span of trace `trace` and id `span` (parent `parent`), named `name`.
fn span_with(name: &str, trace: Vec<u8>, span: Vec<u8>, parent: Vec<u8>) -> Span {
    Span {
        trace_id: trace,
        span_id: span,
        parent_span_id: parent,
        name: name.into(),
        ..Default::default()
    }
}

/// A request mixing good spans with every kind of malformed id a client has been seen to
/// send: 2 good (one with an 8-zero-byte parent, i.e. a root), 6 bad.
fn mixed_spans() -> ExportTraceServiceRequest {
    let good = || (vec![7; 16], vec![9; 8]);
    let mut bad_link = span_with("bad-link", good().0, good().1, Vec::new());
    bad_link.links.push(proto::trace::v1::span::Link {
        trace_id: vec![1; 16],
        span_id: vec![2; 4],
        ..Default::default()
    });
    let mut req = traces("mixed", &[]);
    req.resource_spans[0].scope_spans[0].spans = vec![
        span_with("good", good().0, good().1, vec![3; 8]),
        span_with("trace-3", vec![1; 3], good().1, Vec::new()),
        span_with("trace-15", vec![1; 15], good().1, Vec::new()),
        span_with("trace-17", vec![1; 17], good().1, Vec::new()),
        span_with("trace-0", Vec::new(), good().1, Vec::new()),
        span_with("span-4", good().0, vec![2; 4], Vec::new()),
        bad_link,
        span_with("zero-parent", good().0, good().1, vec![0; 8]),
    ];
    req
}

/// Only the good spans of [`mixed_spans`] arrive, the root's parent as empty.
fn assert_only_good_spans(batch: &Batch) {
    assert_eq!(span_names(batch), ["good", "zero-parent"]);
    let Batch::Traces(rs) = batch else {
        unreachable!()
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert!(
        spans[1].parent_span_id.is_empty(),
        "8 zero bytes = no parent"
    );
    for s in spans {
        assert_eq!((s.trace_id.len(), s.span_id.len()), (16, 8));
    }
}

#[tokio::test]
async fn grpc_malformed_ids_are_refused_with_partial_success_and_never_forwarded() {
    let mut h = Harness::all(8).await;
    let resp = h
        .trace_client()
        .await
        .export(mixed_spans())
        .await
        .expect("a partial success is a success")
        .into_inner();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 6);
    assert_eq!(
        partial.error_message,
        "resourceSpans[0].scopeSpans[0].spans[1]: traceId is 3 bytes, must be 16"
    );
    assert_only_good_spans(&h.next(Signal::Traces).await);
    assert_eq!(
        h.stats.reasons(Signal::Traces, Counter::Refused),
        [("invalid".to_owned(), 6)]
    );
    assert_eq!(h.stats.get(Signal::Traces, Counter::Accepted), 2);
    // Nothing good in it: INVALID_ARGUMENT, nothing forwarded.
    let mut bad = traces("bad", &[]);
    bad.resource_spans[0].scope_spans[0].spans =
        vec![span_with("x", vec![1; 16], vec![0; 8], Vec::new())];
    let err = h.trace_client().await.export(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("spanId is all zero"),
        "{}",
        err.message()
    );
    h.assert_nothing_queued(Signal::Traces);
    // Logs: an optional id of the wrong length refuses its record; all zero means unset.
    let mut lc = LogsServiceClient::connect(format!("http://{}", h.grpc.unwrap()))
        .await
        .unwrap();
    let mut req = logs("kept");
    let good = req.resource_logs[0].scope_logs[0].log_records[0].clone();
    let mut bad = good.clone();
    bad.trace_id = vec![5; 5];
    let mut zero = good.clone();
    zero.trace_id = vec![0; 16];
    zero.span_id = vec![0; 8];
    req.resource_logs[0].scope_logs[0].log_records = vec![good, bad, zero];
    let partial = lc
        .export(req)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    let Batch::Logs(rl) = h.next(Signal::Logs).await else {
        panic!("expected logs")
    };
    let records = &rl[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    assert!(records[1].trace_id.is_empty() && records[1].span_id.is_empty());
    // Metrics: an exemplar with a bad span id refuses its data point.
    let mut mc = MetricsServiceClient::connect(format!("http://{}", h.grpc.unwrap()))
        .await
        .unwrap();
    let mut req = metrics("hw.gpu.utilization", 1);
    let Some(proto::metrics::v1::metric::Data::Gauge(g)) =
        &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("a gauge")
    };
    let mut with_exemplar = g.data_points[0].clone();
    with_exemplar.exemplars.push(proto::metrics::v1::Exemplar {
        trace_id: vec![1; 16],
        span_id: vec![1; 3],
        ..Default::default()
    });
    g.data_points.push(with_exemplar);
    let partial = mc
        .export(req)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial
            .error_message
            .contains("(hw.gpu.utilization).dataPoints[1].exemplars[0].spanId is 3 bytes"),
        "{}",
        partial.error_message
    );
    h.stop().await;
}

#[tokio::test]
async fn http_malformed_ids_are_refused_with_partial_success_in_protobuf_and_json() {
    let mut h = Harness::all(8).await;
    // Protobuf: the partial success is an ExportTraceServiceResponse.
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/x-protobuf",
        mixed_spans().encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            resp.bytes().await.unwrap(),
        )
        .unwrap();
    assert_eq!(body.partial_success.unwrap().rejected_spans, 6);
    assert_only_good_spans(&h.next(Signal::Traces).await);
    // JSON: hex ids of 3 and 17 bytes beside a good one.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"good"},
        {"traceId":"5b8eff","spanId":"eee19b7ec3c1b174","name":"short"},
        {"traceId":"5b8efff798038103d269b633813fc60c00","spanId":"eee19b7ec3c1b174","name":"long"}
    ]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/json",
        json.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
    assert_eq!(
        v["partialSuccess"]["errorMessage"],
        "resourceSpans[0].scopeSpans[0].spans[1]: traceId is 3 bytes, must be 16"
    );
    assert_eq!(span_names(&h.next(Signal::Traces).await), ["good"]);
    // All bad: 400 naming the first, nothing forwarded.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8eff","spanId":"eee19b7ec3c1b174","name":"short"}]}]}]}"#;
    let resp = post(
        &h.http_url("/v1/traces"),
        "application/json",
        json.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 400);
    let (code, message) = json_status(resp).await;
    assert_eq!(code, Code::InvalidArgument as i64);
    assert!(
        message.contains("traceId is 3 bytes, must be 16"),
        "{message}"
    );
    h.assert_nothing_queued(Signal::Traces);
    assert_eq!(
        h.stats.reasons(Signal::Traces, Counter::Refused),
        [("invalid".to_owned(), 9)]
    );
    h.stop().await;
}

// ---------------------------------------------------------------- limits and identity

#[test]
fn limits_parse_with_defaults_and_bad_values_are_explained() {
    let c: Config = serde_yaml::from_str("limits: { memory_mib: 32, idle_timeout: 5s }").unwrap();
    assert_eq!(c.limits.memory_mib, Some(32));
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.limits.read_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_connections, 1024);
    assert_eq!(c.limits.max_concurrent_streams, 32);
    assert_eq!(c.identity.source, IdentitySource::Connection);
    assert_eq!(c.identity.on_conflict, OnConflict::Replace);
    for (yaml, message) in [
        (
            "limits: { per_client_percent: 0 }",
            "expected a percentage from 1 to 100, got 0",
        ),
        ("limits: { per_client_percent: 101 }", "got 101"),
        (
            "limits: { max_connections: 0 }",
            "expected at least 1, got 0",
        ),
        (
            "limits: { max_concurrent_streams: 0 }",
            "expected at least 1, got 0",
        ),
        ("limits: { idle: 5s }", "unknown field `idle`"),
        ("identity: { source: pod }", "unknown variant `pod`"),
    ] {
        let e = serde_yaml::from_str::<Config>(yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(message), "{yaml}: {e}");
    }
}

#[test]
fn the_memory_budget_follows_the_cgroup_limit_unless_set() {
    let mut l = Limits::default();
    const MIB: usize = 1024 * 1024;
    // The chart's 256 MiB limit: a quarter.
    assert_eq!(
        l.memory_budget_bytes(Some(256 * MIB as u64), 4 * MIB),
        64 * MIB
    );
    assert_eq!(l.memory_budget_bytes(None, 4 * MIB), 64 * MIB);
    // Never less than two of the largest request.
    assert_eq!(
        l.memory_budget_bytes(Some(16 * MIB as u64), 4 * MIB),
        8 * MIB
    );
    l.memory_mib = Some(100);
    assert_eq!(
        l.memory_budget_bytes(Some(256 * MIB as u64), 4 * MIB),
        100 * MIB
    );
}

mod identity_at_the_door {
    use super::*;
    use hpcotel_core::catalog::{PodMeta, Snapshot};
    use hpcotel_core::{PodRef, semconv};
    use std::net::IpAddr;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (ns, name, ip) in [
            ("team-b", "scraper-0", "10.0.0.3"),
            ("team-a", "victim-0", "10.0.0.4"),
        ] {
            let uid = format!("uid-{name}");
            s.pods.insert(
                uid.clone(),
                PodMeta {
                    pod: PodRef {
                        namespace: ns.into(),
                        name: name.into(),
                        container: None,
                        uid: Some(uid.clone()),
                    },
                    ip: Some(ip.into()),
                    node: Some("node-1".into()),
                    owner: None,
                    created_unix_nano: None,
                    annotations: Default::default(),
                    labels: Default::default(),
                    instance_label: None,
                },
            );
            s.pods_by_ip.insert(ip.into(), uid);
        }
        s
    }

    /// Two resources: one claiming the victim, one claiming nothing but a forged source.
    fn batch() -> Batch {
        let mut t = traces("svc", &["a", "b"]);
        let mut second = t.resource_spans[0].clone();
        t.resource_spans[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .extend([
                string_kv("k8s.namespace.name", "team-a"),
                string_kv("k8s.pod.name", "victim-0"),
            ]);
        second
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(string_kv(semconv::HPCOTEL_IDENTITY_SOURCE, "connection"));
        t.resource_spans.push(second);
        Batch::Traces(t.resource_spans)
    }

    fn resource_attr(b: &Batch, i: usize, key: &str) -> Option<String> {
        let Batch::Traces(rs) = b else { unreachable!() };
        let attrs = &rs[i].resource.as_ref()?.attributes;
        let values: Vec<_> = attrs.iter().filter(|kv| kv.key == key).collect();
        assert!(values.len() <= 1, "{key} set twice: {values:?}");
        match attr(attrs, key)? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            v => panic!("{key}: {v:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_pods_claim_of_another_pod_is_replaced_by_its_own_identity() {
        let mut b = batch();
        let cfg = Identity::default();
        let applied = super::super::identity::apply(&mut b, &snapshot(), ip("10.0.0.3"), &cfg);
        assert_eq!(applied.corrected, 2, "the claiming resource's 2 spans");
        assert_eq!(applied.refused, 0);
        assert_eq!(
            applied.example,
            Some(("team-a/victim-0".into(), "team-b/scraper-0".into()))
        );
        for i in 0..2 {
            assert_eq!(
                resource_attr(&b, i, "k8s.namespace.name").as_deref(),
                Some("team-b")
            );
            assert_eq!(
                resource_attr(&b, i, "k8s.pod.name").as_deref(),
                Some("scraper-0")
            );
            assert_eq!(
                resource_attr(&b, i, "k8s.pod.uid").as_deref(),
                Some("uid-scraper-0")
            );
            assert_eq!(
                resource_attr(&b, i, semconv::HPCOTEL_IDENTITY_SOURCE).as_deref(),
                Some("connection")
            );
        }
        // An IPv4-mapped IPv6 peer (a dual-stack listener) is the same pod.
        let mut b = batch();
        super::super::identity::apply(&mut b, &snapshot(), ip("::ffff:10.0.0.3"), &cfg);
        assert_eq!(
            resource_attr(&b, 0, "k8s.pod.name").as_deref(),
            Some("scraper-0")
        );
    }

    #[test]
    fn with_refuse_the_claiming_resource_is_dropped_and_counted() {
        let mut b = batch();
        let cfg = Identity {
            on_conflict: OnConflict::Refuse,
            ..Identity::default()
        };
        let applied = super::super::identity::apply(&mut b, &snapshot(), ip("10.0.0.3"), &cfg);
        assert_eq!((applied.corrected, applied.refused), (0, 2));
        assert_eq!(
            b.resource_count(),
            1,
            "only the resource that claimed nothing is left"
        );
        assert_eq!(
            resource_attr(&b, 0, "k8s.pod.name").as_deref(),
            Some("scraper-0")
        );
    }

    #[test]
    fn a_peer_that_is_no_pod_keeps_its_claims_marked_unverified() {
        let mut b = batch();
        let applied = super::super::identity::apply(
            &mut b,
            &snapshot(),
            ip("192.168.1.10"),
            &Identity::default(),
        );
        assert_eq!(applied, Default::default());
        assert_eq!(
            resource_attr(&b, 0, "k8s.pod.name").as_deref(),
            Some("victim-0")
        );
        for i in 0..2 {
            // The forged "connection" is overwritten.
            assert_eq!(
                resource_attr(&b, i, semconv::HPCOTEL_IDENTITY_SOURCE).as_deref(),
                Some("attributes")
            );
        }
        // `source: attributes` never looks at the peer.
        let mut b = batch();
        let cfg = Identity {
            source: IdentitySource::Attributes,
            ..Identity::default()
        };
        super::super::identity::apply(&mut b, &snapshot(), ip("10.0.0.3"), &cfg);
        assert_eq!(
            resource_attr(&b, 0, "k8s.pod.name").as_deref(),
            Some("victim-0")
        );
    }

    #[test]
    fn without_a_catalog_nothing_is_stamped() {
        let mut b = batch();
        let before = b.clone();
        super::super::identity::apply(
            &mut b,
            &Snapshot::default(),
            ip("10.0.0.3"),
            &Identity::default(),
        );
        assert_eq!(b, before);
    }
}

mod metered_body {
    use super::super::budget::{BodyError, Budget, Charge, Exhausted, MeteredBody, ReadRules};
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use hyper::body::Frame;
    use std::convert::Infallible;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    type Item = Result<Frame<Bytes>, Infallible>;
    type Tx = tokio::sync::mpsc::Sender<Item>;
    /// A body fed frame by frame through a channel.
    type Fed = http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Item>>;

    fn body(
        budget: &std::sync::Arc<Budget>,
        prepaid: usize,
        rules: ReadRules,
    ) -> (Tx, MeteredBody<Fed>, Charge) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let charge = Charge::new(budget.clone(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        charge.add(prepaid).unwrap();
        let stream =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        (
            tx,
            MeteredBody::new(stream, charge.clone(), prepaid, 1 << 20, rules),
            charge,
        )
    }

    const RULES: ReadRules = ReadRules {
        timeout: Duration::from_secs(10),
        min_rate: 1000,
    };

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_off_by_its_rate_and_one_that_trickles_by_the_timeout() {
        let budget = Budget::new(1 << 20, 100, None);
        // 3,000 bytes at once, then nothing: under 1,000 bytes/s from 3 s on.
        let (tx, mut b, _charge) = body(&budget, 0, RULES);
        tx.send(Ok(Frame::data(Bytes::from(vec![0; 3000]))))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(b.frame().await.unwrap().is_ok());
        match b.frame().await {
            Some(Err(BodyError::TooSlow { received: 3000, .. })) => {}
            other => panic!("{other:?}"),
        }
        let at = started.elapsed();
        assert!(
            at >= Duration::from_secs(3) && at < Duration::from_millis(3100),
            "{at:?}"
        );
        drop(tx);

        // 2,000 bytes/s keeps the rate but not the 10 s deadline.
        let (tx, mut b, _charge) = body(&budget, 0, RULES);
        let feeder = tokio::spawn(async move {
            loop {
                if tx
                    .send(Ok(Frame::data(Bytes::from(vec![0; 200]))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = tokio::time::Instant::now();
        let e = loop {
            match b.frame().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => break e,
                None => panic!("ended"),
            }
        };
        assert!(matches!(e, BodyError::TimedOut(_)), "{e:?}");
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(e.to_string().contains("within 10s (read_timeout)"), "{e}");
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn frames_are_charged_beyond_what_was_prepaid_and_refused_past_the_budget() {
        let budget = Budget::new(10_000, 100, None);
        let (tx, mut b, charge) = body(&budget, 4000, RULES);
        assert_eq!(budget.used(), 4000);
        // Within the declared length: nothing more is charged.
        tx.send(Ok(Frame::data(Bytes::from(vec![0; 4000]))))
            .await
            .unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        assert_eq!(budget.used(), 4000);
        // Beyond it (a lying Content-Length): charged, then refused at the budget.
        tx.send(Ok(Frame::data(Bytes::from(vec![0; 5000]))))
            .await
            .unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        assert_eq!(budget.used(), 9000);
        tx.send(Ok(Frame::data(Bytes::from(vec![0; 5000]))))
            .await
            .unwrap();
        match b.frame().await {
            Some(Err(BodyError::Exhausted(Exhausted::Receiver { limit: 10_000 }))) => {}
            other => panic!("{other:?}"),
        }
        drop((b, charge));
        assert_eq!(budget.used(), 0, "everything given back with the request");
    }
}
