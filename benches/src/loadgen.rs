//! `otlp-loadgen`: an OTLP/gRPC load generator for spans, log records or metric points.
//!
//! `otlp-loadgen --endpoint http://127.0.0.1:4317 --rate 50000 --batch 100 --duration 10s
//! --concurrency 4 [--signal traces|logs|metrics]` sends realistic items (HTTP server spans
//! with a few attributes and random trace ids; log records of those requests; gauge and
//! counter points of a few series) at `rate` items/s (0 = as fast as possible) from
//! `concurrency` connections, counts accepted and refused (RESOURCE_EXHAUSTED / UNAVAILABLE)
//! requests, and prints one JSON line: `{"signal":..,"sent_spans":..,"accepted_spans":..,
//! "refused_spans":..,"errors":..,"elapsed_s":..,"spans_per_s":..,"p50_ms":..,"p99_ms":..}`
//! where "spans" are the signal's items (the keys keep their first name), `spans_per_s`
//! counts accepted items and latencies are per request (hdrhistogram).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::MissedTickBehavior;
use tonic::transport::{Channel, Endpoint};

/// OTLP/gRPC span load generator.
#[derive(Debug, Parser)]
#[command(name = "otlp-loadgen", version, about)]
struct Args {
    /// OTLP/gRPC endpoint to send to.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Target spans per second over all connections; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// How long to send (e.g. `10s`); in-flight requests are awaited afterwards.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Concurrent senders, each with its own connection.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Per-request timeout (e.g. `10s`).
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    timeout: Duration,
    /// What to send: `traces` (spans), `logs` (log records) or `metrics` (data points).
    #[arg(long, default_value = "traces", value_parser = ["traces", "logs", "metrics"])]
    signal: String,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("expected a duration like 10s or 500ms, got '{s}'"))?;
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 500ms, got '{s}'"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown duration unit in '{s}' (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug)]
struct WorkerResult {
    sent_spans: u64,
    accepted_spans: u64,
    refused_spans: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

const ROUTES: [&str; 4] = ["/api/jobs", "/api/jobs/{id}", "/api/nodes", "/healthz"];
const METHODS: [&str; 3] = ["GET", "POST", "PUT"];

/// One request of `n` spans: several small traces (a server span and its children).
fn request(n: usize, rng: &mut impl Rng) -> ExportTraceServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut spans = Vec::with_capacity(n);
    let mut trace_id = [0u8; 16];
    let mut root_id = [0u8; 8];
    for i in 0..n {
        let mut span_id = [0u8; 8];
        rng.fill(&mut span_id[..]);
        let root = i % 5 == 0;
        if root {
            rng.fill(&mut trace_id[..]);
            root_id = span_id;
        }
        let route = ROUTES[rng.random_range(0..ROUTES.len())];
        let method = METHODS[rng.random_range(0..METHODS.len())];
        let status_code: i64 = if rng.random_range(0..100) < 3 {
            500
        } else {
            200
        };
        let dur = rng.random_range(50_000..5_000_000u64);
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if root { Vec::new() } else { root_id.to_vec() },
            name: if root {
                format!("{method} {route}")
            } else {
                "SELECT jobs".to_owned()
            },
            kind: if root {
                span::SpanKind::Server as i32
            } else {
                span::SpanKind::Client as i32
            },
            start_time_unix_nano: now.saturating_sub(dur),
            end_time_unix_nano: now,
            attributes: if root {
                vec![
                    kv("http.request.method", s(method)),
                    kv("http.route", s(route)),
                    kv("url.scheme", s("https")),
                    kv("server.address", s("api.example.internal")),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(status_code),
                    ),
                ]
            } else {
                vec![
                    kv("db.system.name", s("postgresql")),
                    kv("db.query.text", s("SELECT * FROM jobs WHERE id = $1")),
                    kv("server.port", any_value::Value::IntValue(5432)),
                ]
            },
            status: Some(Status {
                code: if status_code >= 500 {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("loadgen")),
                    kv("service.version", s(env!("CARGO_PKG_VERSION"))),
                    kv("host.name", s("bench-host")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "otlp-loadgen".to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn loadgen_resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s("loadgen")),
            kv("service.version", s(env!("CARGO_PKG_VERSION"))),
            kv("host.name", s("bench-host")),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "otlp-loadgen".to_owned(),
        ..Default::default()
    })
}

/// One request of `n` log records: an access-log line per request span `request` makes, with
/// its trace and span ids.
fn logs_request(n: usize, rng: &mut impl Rng) -> ExportLogsServiceRequest {
    let spans = request(n, rng);
    let records = spans.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|sp| {
            let error = sp.status.as_ref().is_some_and(|st| st.code != 0);
            LogRecord {
                time_unix_nano: sp.end_time_unix_nano,
                observed_time_unix_nano: sp.end_time_unix_nano,
                severity_number: if error {
                    SeverityNumber::Error as i32
                } else {
                    SeverityNumber::Info as i32
                },
                severity_text: if error { "ERROR" } else { "INFO" }.to_owned(),
                body: Some(AnyValue {
                    value: Some(s(&format!(
                        "{} took {} us",
                        sp.name,
                        (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1000
                    ))),
                }),
                attributes: sp.attributes.clone(),
                trace_id: sp.trace_id.clone(),
                span_id: sp.span_id.clone(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: loadgen_resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One request of `n` data points: gauges and counters of 10 series per metric, as a
/// service's request metrics.
fn metrics_request(n: usize, rng: &mut impl Rng) -> ExportMetricsServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let point = |i: usize, v: f64| NumberDataPoint {
        attributes: vec![
            kv("http.route", s(ROUTES[i % ROUTES.len()])),
            kv("http.request.method", s(METHODS[i % METHODS.len()])),
            kv("series", any_value::Value::IntValue((i % 10) as i64)),
        ],
        start_time_unix_nano: now.saturating_sub(60_000_000_000),
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let mut metrics = Vec::new();
    let mut left = n;
    let mut m = 0usize;
    while left > 0 {
        let k = left.min(10);
        let points: Vec<_> = (0..k)
            .map(|i| point(i, rng.random_range(0.0..1000.0)))
            .collect();
        let data = if m.is_multiple_of(2) {
            metric::Data::Gauge(Gauge {
                data_points: points,
            })
        } else {
            metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })
        };
        metrics.push(Metric {
            name: format!("loadgen.metric.{m}"),
            unit: "1".to_owned(),
            data: Some(data),
            ..Default::default()
        });
        left -= k;
        m += 1;
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: loadgen_resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A client of one signal's service.
enum Client {
    Traces(TraceServiceClient<Channel>),
    Logs(LogsServiceClient<Channel>),
    Metrics(MetricsServiceClient<Channel>),
}

impl Client {
    /// Sends `n` items; the rejected count of a partial success.
    async fn send(&mut self, n: usize, rng: &mut SmallRng) -> Result<u64, tonic::Status> {
        Ok(match self {
            Client::Traces(c) => c
                .export(request(n, rng))
                .await?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_spans.max(0) as u64),
            Client::Logs(c) => c
                .export(logs_request(n, rng))
                .await?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_log_records.max(0) as u64),
            Client::Metrics(c) => c
                .export(metrics_request(n, rng))
                .await?
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_data_points.max(0) as u64),
        })
    }
}

async fn worker(
    channel: Channel,
    signal: String,
    batch: usize,
    period: Option<Duration>,
    until: Instant,
) -> Result<WorkerResult> {
    let limit = 64 << 20;
    let mut client = match signal.as_str() {
        "logs" => Client::Logs(LogsServiceClient::new(channel).max_decoding_message_size(limit)),
        "metrics" => {
            Client::Metrics(MetricsServiceClient::new(channel).max_decoding_message_size(limit))
        }
        _ => Client::Traces(TraceServiceClient::new(channel).max_decoding_message_size(limit)),
    };
    let mut rng = SmallRng::from_os_rng();
    let mut res = WorkerResult {
        sent_spans: 0,
        accepted_spans: 0,
        refused_spans: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)?,
    };
    let mut ticks = period.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(MissedTickBehavior::Burst);
        t
    });
    while Instant::now() < until {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
            if Instant::now() >= until {
                break;
            }
        }
        let n = batch as u64;
        res.sent_spans += n;
        let started = Instant::now();
        let answer = client.send(batch, &mut rng).await;
        res.latency_us
            .saturating_record(started.elapsed().as_micros().max(1) as u64);
        match answer {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                res.accepted_spans += n - rejected;
                res.refused_spans += rejected;
            }
            Err(st)
                if matches!(
                    st.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ) =>
            {
                res.refused_spans += n;
            }
            Err(st) => {
                res.errors += 1;
                if res.errors <= 3 {
                    eprintln!(
                        "otlp-loadgen: request failed: {} {}",
                        st.code(),
                        st.message()
                    );
                }
            }
        }
    }
    Ok(res)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    // Per worker: one request every batch * concurrency / rate seconds.
    let period = (args.rate > 0).then(|| {
        Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / args.rate as f64)
    });
    let mut channels = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let ch = Endpoint::from_shared(args.endpoint.clone())
            .with_context(|| format!("bad endpoint '{}'", args.endpoint))?
            .timeout(args.timeout)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", args.endpoint))?;
        channels.push(ch);
    }
    let start = Instant::now();
    let until = start + args.duration;
    let tasks: Vec<_> = channels
        .into_iter()
        .map(|ch| tokio::spawn(worker(ch, args.signal.clone(), args.batch, period, until)))
        .collect();
    let mut total = WorkerResult {
        sent_spans: 0,
        accepted_spans: 0,
        refused_spans: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)?,
    };
    for t in tasks {
        let r = t.await.context("sender task panicked")??;
        total.sent_spans += r.sent_spans;
        total.accepted_spans += r.accepted_spans;
        total.refused_spans += r.refused_spans;
        total.errors += r.errors;
        total.latency_us.add(&r.latency_us)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ms = |q: f64| total.latency_us.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"signal\":\"{}\",\"sent_spans\":{},\"accepted_spans\":{},\"refused_spans\":{},\"errors\":{},\"elapsed_s\":{:.3},\"spans_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        args.signal,
        total.sent_spans,
        total.accepted_spans,
        total.refused_spans,
        total.errors,
        elapsed,
        total.accepted_spans as f64 / elapsed.max(1e-9),
        ms(0.5),
        ms(0.99),
    );
    Ok(())
}
