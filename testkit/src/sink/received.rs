//! [`Received`]: a snapshot of the data a sink accepted, with helpers for assertions.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric::Data};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// Everything a sink accepted so far, in arrival order (one entry per resource entry of
/// each accepted request).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// Accepted `ResourceSpans`.
    pub traces: Vec<ResourceSpans>,
    /// Accepted `ResourceMetrics`.
    pub metrics: Vec<ResourceMetrics>,
    /// Accepted `ResourceLogs`.
    pub logs: Vec<ResourceLogs>,
}

/// Renders a scalar attribute or body value as a string; `None` for arrays, maps, bytes.
pub fn any_value_string(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn values_of<'a>(attrs: impl IntoIterator<Item = &'a KeyValue>, key: &str) -> Vec<String> {
    attrs
        .into_iter()
        .filter(|kv| kv.key == key)
        .filter_map(|kv| kv.value.as_ref().and_then(any_value_string))
        .collect()
}

fn point_attributes(m: &Metric) -> Vec<&KeyValue> {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.iter().flat_map(|p| &p.attributes).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().flat_map(|p| &p.attributes).collect(),
        Some(Data::Histogram(h)) => h.data_points.iter().flat_map(|p| &p.attributes).collect(),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().flat_map(|p| &p.attributes).collect()
        }
        Some(Data::Summary(s)) => s.data_points.iter().flat_map(|p| &p.attributes).collect(),
        None => Vec::new(),
    }
}

impl Received {
    /// Every accepted span.
    pub fn spans(&self) -> Vec<&Span> {
        self.traces
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    /// Every accepted metric (one per metric per request; the same name may repeat).
    pub fn metrics_list(&self) -> Vec<&Metric> {
        self.metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .collect()
    }

    /// Every accepted metric called `name`.
    pub fn metrics_named(&self, name: &str) -> Vec<&Metric> {
        self.metrics_list()
            .into_iter()
            .filter(|m| m.name == name)
            .collect()
    }

    /// Every accepted log record.
    pub fn log_records(&self) -> Vec<&LogRecord> {
        self.logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .collect()
    }

    /// Number of spans.
    pub fn span_count(&self) -> usize {
        self.spans().len()
    }

    /// Number of metric data points (of every metric type).
    pub fn metric_point_count(&self) -> usize {
        self.metrics_list()
            .into_iter()
            .map(hpcotel_core::metric_point_count)
            .sum()
    }

    /// Number of log records.
    pub fn log_record_count(&self) -> usize {
        self.log_records().len()
    }

    /// The name of every span, in arrival order (repeats kept).
    pub fn span_names(&self) -> Vec<String> {
        self.spans().into_iter().map(|s| s.name.clone()).collect()
    }

    /// The distinct metric names, in order of first arrival.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for m in self.metrics_list() {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
        names
    }

    /// The body of every log record rendered as a string (string bodies as-is, numbers and
    /// booleans formatted, other bodies as `""`), in arrival order.
    pub fn log_bodies(&self) -> Vec<String> {
        self.log_records()
            .into_iter()
            .map(|r| {
                r.body
                    .as_ref()
                    .and_then(any_value_string)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Values of resource attribute `key` across every accepted resource entry (all signals).
    pub fn resource_attribute_values(&self, key: &str) -> Vec<String> {
        let resources = self
            .traces
            .iter()
            .filter_map(|r| r.resource.as_ref())
            .chain(self.metrics.iter().filter_map(|r| r.resource.as_ref()))
            .chain(self.logs.iter().filter_map(|r| r.resource.as_ref()));
        resources
            .flat_map(|r| values_of(&r.attributes, key))
            .collect()
    }

    /// Values of attribute `key` wherever it occurs: resource, scope, span (and span event),
    /// metric data point and log record attributes. Scalars are rendered as strings.
    pub fn attribute_values(&self, key: &str) -> Vec<String> {
        let mut out = self.resource_attribute_values(key);
        for rs in &self.traces {
            for ss in &rs.scope_spans {
                if let Some(scope) = &ss.scope {
                    out.extend(values_of(&scope.attributes, key));
                }
                for span in &ss.spans {
                    out.extend(values_of(&span.attributes, key));
                    for ev in &span.events {
                        out.extend(values_of(&ev.attributes, key));
                    }
                }
            }
        }
        for rm in &self.metrics {
            for sm in &rm.scope_metrics {
                if let Some(scope) = &sm.scope {
                    out.extend(values_of(&scope.attributes, key));
                }
                for m in &sm.metrics {
                    out.extend(values_of(point_attributes(m), key));
                }
            }
        }
        for rl in &self.logs {
            for sl in &rl.scope_logs {
                if let Some(scope) = &sl.scope {
                    out.extend(values_of(&scope.attributes, key));
                }
                for r in &sl.log_records {
                    out.extend(values_of(&r.attributes, key));
                }
            }
        }
        out
    }

    /// A one-line summary for failure messages: counts and the first few names.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "spans={} metric_points={} log_records={}",
            self.span_count(),
            self.metric_point_count(),
            self.log_record_count()
        );
        let mut list = |label: &str, mut items: Vec<String>| {
            if !items.is_empty() {
                let more = items.len().saturating_sub(8);
                items.truncate(8);
                let _ = write!(s, "; {label}: {items:?}");
                if more > 0 {
                    let _ = write!(s, " (+{more} more)");
                }
            }
        };
        list("span names", self.span_names());
        list("metric names", self.metric_names());
        list("log bodies", self.log_bodies());
        s
    }
}
