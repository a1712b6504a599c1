//! Signals and batches: the only in-process representation of telemetry.

use std::fmt;

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, metric::Data};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::{Deserialize, Serialize};

/// One of the three OTLP signals a pipeline carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in a fixed order (traces, metrics, logs).
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The lowercase name used in config (`service.pipelines.<name>`) and in attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The unit one item of this signal is counted in: spans, metric points, log records.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric points",
            Signal::Logs => "log records",
        }
    }

    /// Index 0..3, for per-signal arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch of telemetry of one signal, exactly as OTLP carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    /// `ExportTraceServiceRequest.resource_spans`.
    Traces(Vec<ResourceSpans>),
    /// `ExportMetricsServiceRequest.resource_metrics`.
    Metrics(Vec<ResourceMetrics>),
    /// `ExportLogsServiceRequest.resource_logs`.
    Logs(Vec<ResourceLogs>),
}

impl Batch {
    /// The OTLP request for this batch (`ExportTraceServiceRequest`,
    /// `ExportMetricsServiceRequest` or `ExportLogsServiceRequest`), protobuf-encoded
    /// straight from the borrowed batch: each request is its resource entries as field 1,
    /// repeated, so no owned request message has to be built (or the batch copied) first.
    pub fn encode_request(&self) -> Vec<u8> {
        fn encode<M: prost::Message>(entries: &[M]) -> Vec<u8> {
            let len = entries
                .iter()
                .map(|m| prost::encoding::message::encoded_len(1, m))
                .sum();
            let mut buf = Vec::with_capacity(len);
            for m in entries {
                prost::encoding::message::encode(1, m, &mut buf);
            }
            buf
        }
        match self {
            Batch::Traces(v) => encode(v),
            Batch::Metrics(v) => encode(v),
            Batch::Logs(v) => encode(v),
        }
    }

    /// An empty batch of `signal`.
    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Traces => Batch::Traces(Vec::new()),
            Signal::Metrics => Batch::Metrics(Vec::new()),
            Signal::Logs => Batch::Logs(Vec::new()),
        }
    }

    /// The signal this batch carries.
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
        }
    }

    /// Number of items: spans, metric data points, or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(rs) => rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Batch::Metrics(rm) => rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(metric_point_count)
                .sum(),
            Batch::Logs(rl) => rl
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
        }
    }

    /// Number of resource entries (`ResourceSpans` / `ResourceMetrics` / `ResourceLogs`).
    pub fn resource_count(&self) -> usize {
        match self {
            Batch::Traces(v) => v.len(),
            Batch::Metrics(v) => v.len(),
            Batch::Logs(v) => v.len(),
        }
    }

    /// True when the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Appends `other`'s resources to this batch. Returns `other` unchanged when its signal
    /// differs.
    pub fn append(&mut self, other: Batch) -> Result<(), Batch> {
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
            (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
            (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Splits off whole resource entries from the end so that this batch keeps the first
    /// `at` of them; returns the rest (empty when `at >= resource_count()`).
    pub fn split_off_resources(&mut self, at: usize) -> Batch {
        match self {
            Batch::Traces(v) => Batch::Traces(v.split_off(at.min(v.len()))),
            Batch::Metrics(v) => Batch::Metrics(v.split_off(at.min(v.len()))),
            Batch::Logs(v) => Batch::Logs(v.split_off(at.min(v.len()))),
        }
    }
}

/// Number of data points in one metric, whatever its type (the unit in which metrics are
/// counted everywhere in hpcotel).
pub fn metric_point_count(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encode_request_is_the_otlp_request_message() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, ScopeMetrics};
        use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
        use prost::Message;

        let spans: Vec<ResourceSpans> = (0..3)
            .map(|r| ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        Span {
                            name: format!("r{r}"),
                            trace_id: vec![r as u8; 16],
                            ..Default::default()
                        };
                        2
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        let bytes = Batch::Traces(spans.clone()).encode_request();
        assert_eq!(
            bytes,
            ExportTraceServiceRequest {
                resource_spans: spans.clone()
            }
            .encode_to_vec()
        );
        assert_eq!(
            ExportTraceServiceRequest::decode(bytes.as_slice())
                .unwrap()
                .resource_spans,
            spans
        );

        let metrics = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 3],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        assert_eq!(
            Batch::Metrics(metrics.clone()).encode_request(),
            ExportMetricsServiceRequest {
                resource_metrics: metrics
            }
            .encode_to_vec()
        );
        let logs = vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 2],
                ..Default::default()
            }],
            ..Default::default()
        }];
        assert_eq!(
            Batch::Logs(logs.clone()).encode_request(),
            ExportLogsServiceRequest {
                resource_logs: logs
            }
            .encode_to_vec()
        );
        assert!(Batch::empty(Signal::Logs).encode_request().is_empty());
    }

    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn spans(n: usize) -> ResourceSpans {
        ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn counts_items_and_appends_same_signal_only() {
        let mut b = Batch::Traces(vec![spans(2), spans(3)]);
        assert_eq!(b.item_count(), 5);
        assert_eq!(b.resource_count(), 2);
        b.append(Batch::Traces(vec![spans(4)])).unwrap();
        assert_eq!(b.item_count(), 9);
        let other = Batch::Logs(vec![]);
        assert_eq!(b.append(other.clone()), Err(other));
        let rest = b.split_off_resources(1);
        assert_eq!((b.item_count(), rest.item_count()), (2, 7));
    }
}
