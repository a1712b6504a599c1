//! Ids checked at the door: what a request carries with a malformed trace or span id is
//! refused here and never forwarded, so that one client's bad span cannot make a backend that
//! validates ids refuse a merged batch holding other clients' data.
//!
//! The rules, as the OTLP specification and W3C Trace Context state them (and as the
//! Collector's pdata reads ids):
//!
//! - a span's `traceId` is 16 bytes and its `spanId` 8, neither all zero; its
//!   `parentSpanId` is empty (a root) or 8 bytes — 8 zero bytes also mean "no parent" and are
//!   forwarded as empty, as pdata does; each link's ids follow the span's rules;
//! - a log record's and an exemplar's `traceId` and `spanId` are optional: empty, or 16 and 8
//!   bytes; all zero means unset and is forwarded as empty;
//! - the unit refused is the item: a span (a bad link refuses its span), a log record, a
//!   metric data point (a bad exemplar refuses its point). When anything was refused, scopes
//!   and resources left without items are dropped. The client is told how many were refused and why (the first reason, with the
//!   item's path), through the response's partial success, or with INVALID_ARGUMENT / 400
//!   when nothing of the request was good.

use hpcotel_core::Batch;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, Metric, metric::Data};
use opentelemetry_proto::tonic::trace::v1::Span;

/// What was refused from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Items refused.
    pub items: u64,
    /// Items left.
    pub kept: u64,
    /// The first reason, naming the item's path in the request.
    pub message: String,
}

/// Why an id of `len` bytes is not a valid id of `want` bytes; `None` when it is.
fn required(id: &[u8], want: usize, what: &str) -> Option<String> {
    if id.len() != want {
        Some(format!("{what} is {} bytes, must be {want}", id.len()))
    } else if id.iter().all(|b| *b == 0) {
        Some(format!("{what} is all zero"))
    } else {
        None
    }
}

/// Checks an optional id in place: empty stays empty, all zero becomes empty; otherwise it
/// must be `want` bytes.
fn optional(id: &mut Vec<u8>, want: usize, what: &str) -> Option<String> {
    if id.iter().all(|b| *b == 0) {
        id.clear();
        return None;
    }
    (id.len() != want).then(|| format!("{what} is {} bytes, must be {want}", id.len()))
}

fn span_problem(span: &mut Span) -> Option<String> {
    required(&span.trace_id, 16, "traceId")
        .or_else(|| required(&span.span_id, 8, "spanId"))
        .or_else(|| optional(&mut span.parent_span_id, 8, "parentSpanId"))
        .or_else(|| {
            span.links.iter().enumerate().find_map(|(i, l)| {
                required(&l.trace_id, 16, &format!("links[{i}].traceId"))
                    .or_else(|| required(&l.span_id, 8, &format!("links[{i}].spanId")))
            })
        })
}

fn exemplars_problem(exemplars: &mut [Exemplar]) -> Option<String> {
    exemplars.iter_mut().enumerate().find_map(|(i, e)| {
        optional(&mut e.trace_id, 16, &format!("exemplars[{i}].traceId"))
            .or_else(|| optional(&mut e.span_id, 8, &format!("exemplars[{i}].spanId")))
    })
}

/// Keeps the points of `metric` whose exemplars' ids are valid; returns (refused, first
/// reason with the point's index).
fn retain_points(metric: &mut Metric) -> (u64, Option<String>) {
    let mut refused = 0;
    let mut first: Option<String> = None;
    macro_rules! retain {
        ($points:expr) => {{
            let mut i = 0;
            $points.retain_mut(|p| {
                let problem = exemplars_problem(&mut p.exemplars);
                let index = i;
                i += 1;
                match problem {
                    Some(why) => {
                        refused += 1;
                        first.get_or_insert_with(|| format!("dataPoints[{index}].{why}"));
                        false
                    }
                    None => true,
                }
            });
        }};
    }
    match &mut metric.data {
        Some(Data::Gauge(g)) => retain!(g.data_points),
        Some(Data::Sum(s)) => retain!(s.data_points),
        Some(Data::Histogram(h)) => retain!(h.data_points),
        Some(Data::ExponentialHistogram(h)) => retain!(h.data_points),
        // Summary points carry no exemplars.
        Some(Data::Summary(_)) | None => {}
    }
    (refused, first)
}

/// Points a metric holds.
fn point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Removes from `batch` every item with a malformed id (see the module docs); `None` when
/// every item was good.
pub fn retain_valid(batch: &mut Batch) -> Option<Invalid> {
    // (items refused, reason with the path) per refusal, in request order.
    let mut refusals: Vec<(u64, String)> = Vec::new();
    match batch {
        // Kept raw only when every id passed these rules ([`hpcotel_core::raw`]).
        Batch::Raw(_) => {}
        Batch::Traces(resources) => {
            for (r, rs) in resources.iter_mut().enumerate() {
                for (s, ss) in rs.scope_spans.iter_mut().enumerate() {
                    let mut k = 0;
                    ss.spans.retain_mut(|span| {
                        let index = k;
                        k += 1;
                        let problem = span_problem(span);
                        if let Some(why) = &problem {
                            refusals.push((
                                1,
                                format!("resourceSpans[{r}].scopeSpans[{s}].spans[{index}]: {why}"),
                            ));
                        }
                        problem.is_none()
                    });
                }
            }
            if !refusals.is_empty() {
                for rs in resources.iter_mut() {
                    rs.scope_spans.retain(|s| !s.spans.is_empty());
                }
                resources.retain(|r| !r.scope_spans.is_empty());
            }
        }
        Batch::Logs(resources) => {
            for (r, rl) in resources.iter_mut().enumerate() {
                for (s, sl) in rl.scope_logs.iter_mut().enumerate() {
                    let mut k = 0;
                    sl.log_records.retain_mut(|l| {
                        let index = k;
                        k += 1;
                        let problem = optional(&mut l.trace_id, 16, "traceId")
                            .or_else(|| optional(&mut l.span_id, 8, "spanId"));
                        if let Some(why) = &problem {
                            refusals.push((
                                1,
                                format!(
                                    "resourceLogs[{r}].scopeLogs[{s}].logRecords[{index}]: {why}"
                                ),
                            ));
                        }
                        problem.is_none()
                    });
                }
            }
            if !refusals.is_empty() {
                for rl in resources.iter_mut() {
                    rl.scope_logs.retain(|s| !s.log_records.is_empty());
                }
                resources.retain(|r| !r.scope_logs.is_empty());
            }
        }
        Batch::Metrics(resources) => {
            for (r, rm) in resources.iter_mut().enumerate() {
                for (s, sm) in rm.scope_metrics.iter_mut().enumerate() {
                    let mut m = 0;
                    sm.metrics.retain_mut(|metric| {
                        let index = m;
                        m += 1;
                        let (n, why) = retain_points(metric);
                        let Some(why) = why else { return true };
                        refusals.push((
                            n,
                            format!(
                                "resourceMetrics[{r}].scopeMetrics[{s}].metrics[{index}] ({}).{why}",
                                metric.name
                            ),
                        ));
                        // A metric whose every point was refused goes with them.
                        point_count(metric) > 0
                    });
                }
            }
            if !refusals.is_empty() {
                for rm in resources.iter_mut() {
                    rm.scope_metrics.retain(|s| !s.metrics.is_empty());
                }
                resources.retain(|r| !r.scope_metrics.is_empty());
            }
        }
    }
    let (_, message) = refusals.first()?.clone();
    Some(Invalid {
        items: refusals.iter().map(|(n, _)| n).sum(),
        kept: batch.item_count() as u64,
        message,
    })
}

/// The `Export*ServiceResponse`s, with the partial success of what was refused.
pub mod response {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };

    use super::Invalid;

    fn count(i: &Invalid) -> i64 {
        i64::try_from(i.items).unwrap_or(i64::MAX)
    }

    /// `ExportTraceServiceResponse`: `rejected_spans` and the reason, if any were.
    pub fn traces(refused: Option<&Invalid>) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: refused.map(|i| ExportTracePartialSuccess {
                rejected_spans: count(i),
                error_message: i.message.clone(),
            }),
        }
    }

    /// `ExportMetricsServiceResponse`: `rejected_data_points` and the reason, if any were.
    pub fn metrics(refused: Option<&Invalid>) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: refused.map(|i| ExportMetricsPartialSuccess {
                rejected_data_points: count(i),
                error_message: i.message.clone(),
            }),
        }
    }

    /// `ExportLogsServiceResponse`: `rejected_log_records` and the reason, if any were.
    pub fn logs(refused: Option<&Invalid>) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: refused.map(|i| ExportLogsPartialSuccess {
                rejected_log_records: count(i),
                error_message: i.message.clone(),
            }),
        }
    }
}
