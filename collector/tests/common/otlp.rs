//! Reading OTLP data back in tests: find items by resource attribute, read attribute values.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// The value of attribute `key`, if present.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// The value of attribute `key` as a string (what `any_value_string` makes of it), if
/// present.
pub fn attr_string(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(hpcotel_testkit::sink::any_value_string)
}

/// The string value of attribute `key`, if present and a string.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn resource_has(resource: &Option<Resource>, key: &str, value: &str) -> bool {
    resource
        .as_ref()
        .is_some_and(|r| attr_str(&r.attributes, key) == Some(value))
}

/// Spans whose resource has `key = value`.
pub fn spans_where<'a>(rs: &'a [ResourceSpans], key: &str, value: &str) -> Vec<&'a Span> {
    rs.iter()
        .filter(|r| resource_has(&r.resource, key, value))
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect()
}

/// Metrics whose resource has `key = value`.
pub fn metrics_where<'a>(rm: &'a [ResourceMetrics], key: &str, value: &str) -> Vec<&'a Metric> {
    rm.iter()
        .filter(|r| resource_has(&r.resource, key, value))
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

/// Log records whose resource has `key = value`.
pub fn logs_where<'a>(rl: &'a [ResourceLogs], key: &str, value: &str) -> Vec<&'a LogRecord> {
    rl.iter()
        .filter(|r| resource_has(&r.resource, key, value))
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect()
}

/// A log record's body as a string.
pub fn body(l: &LogRecord) -> Option<&str> {
    match l.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, NumberDataPoint, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource(run: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", "hpcotel-test"), kv("test.run_id", run)],
        ..Default::default()
    })
}

/// `n` spans named `<run>-<i>` (ids derived from `i`) under resource `test.run_id = run`.
pub fn spans_request(run: &str, first: usize, n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(run),
            scope_spans: vec![ScopeSpans {
                spans: (first..first + n)
                    .map(|i| Span {
                        name: format!("{run}-{i}"),
                        trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_000_001_000,
                        attributes: vec![kv("i", &i.to_string())],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `n` log records with bodies `<run>-<i>`.
pub fn logs_request(run: &str, first: usize, n: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(run),
            scope_logs: vec![ScopeLogs {
                log_records: (first..first + n)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(format!("{run}-{i}"))),
                        }),
                        severity_text: "INFO".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `n` gauges named `<run>.g<i>`, one point each with value `i`.
pub fn metrics_request(run: &str, first: usize, n: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(run),
            scope_metrics: vec![ScopeMetrics {
                metrics: (first..first + n)
                    .map(|i| Metric {
                        name: format!("{run}.g{i}"),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
