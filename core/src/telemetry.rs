//! Self-telemetry: per-component item counters and export-queue gauges.
//!
//! Every component registers once and gets an [`Arc<ComponentStats>`]; counting is a relaxed
//! atomic add on the hot path (a mutex only for counts that carry a reason, which are the rare
//! refusals and drops). [`Telemetry::to_resource_metrics`] turns a snapshot into OTLP metrics
//! that the collector sends through its own metrics pipelines:
//!
//! | metric | type | attributes |
//! |---|---|---|
//! | `hpcotel.receiver.accepted` | counter `{item}` | `hpcotel.component.id`, `hpcotel.signal` |
//! | `hpcotel.receiver.refused` | counter `{item}` | + `hpcotel.reason` |
//! | `hpcotel.processor.dropped` | counter `{item}` | + `hpcotel.reason` |
//! | `hpcotel.exporter.sent` | counter `{item}` | `hpcotel.component.id`, `hpcotel.signal` |
//! | `hpcotel.exporter.send_failed` | counter `{item}` | + `hpcotel.reason` (attempts that failed, retried or not) |
//! | `hpcotel.exporter.dropped` | counter `{item}` | + `hpcotel.reason` (given up: permanent, retries exhausted, queue full, rejected, too large, shutdown) |
//! | `hpcotel.exporter.queue.size` | gauge `{item}` | `hpcotel.component.id` |
//! | `hpcotel.exporter.queue.capacity` | gauge `{item}` | `hpcotel.component.id` |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::component::{ComponentId, ComponentKind};
use crate::semconv;
use crate::signal::Signal;

/// The item counters every component may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Items a receiver handed to its pipelines.
    Accepted,
    /// Items a receiver turned away (client told to retry, no pipeline, or invalid items).
    Refused,
    /// Items a receiver accepted after correcting what they claimed (their pod identity).
    Corrected,
    /// Items an exporter delivered.
    Sent,
    /// Items in export attempts that failed (each failed attempt counts).
    SendFailed,
    /// Items given up on for good.
    Dropped,
}

impl Counter {
    const ALL: [Counter; 6] = [
        Counter::Accepted,
        Counter::Refused,
        Counter::Corrected,
        Counter::Sent,
        Counter::SendFailed,
        Counter::Dropped,
    ];

    /// Metric-name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Accepted => "accepted",
            Counter::Refused => "refused",
            Counter::Corrected => "corrected",
            Counter::Sent => "sent",
            Counter::SendFailed => "send_failed",
            Counter::Dropped => "dropped",
        }
    }
}

/// Why an exporter is failing: its latest delivery ended with the batch given up on, and no
/// delivery has succeeded since (see [`ComponentStats::export_failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFailure {
    /// The drop reason of the latest failure: `permanent`, `retries_exhausted`,
    /// `retry_disabled` or `panic`.
    pub reason: String,
    /// The latest error as the exporter reported it (status code and the backend's message;
    /// never headers or credentials).
    pub error: String,
    /// When the first failure since the last success happened.
    pub since: Instant,
    /// Batches given up on since the last success.
    pub batches: u64,
}

/// One per-reason total of a counter (see [`ComponentStats::reason_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount {
    /// The signal counted.
    pub signal: Signal,
    /// Why, e.g. `permanent`, `too_large`, `queue_full`.
    pub reason: String,
    /// Items counted with this reason since start.
    pub items: u64,
    /// When the latest of them was counted.
    pub last: Instant,
}

/// Per (signal, counter, reason): the total and when it last grew.
type Reasons = BTreeMap<(Signal, Counter, String), (u64, Instant)>;

/// The counters of one component instance.
#[derive(Debug)]
pub struct ComponentStats {
    kind: ComponentKind,
    id: ComponentId,
    counters: [[AtomicU64; Counter::ALL.len()]; 3],
    reasons: Mutex<Reasons>,
    queue_size: AtomicI64,
    queue_capacity: AtomicI64,
    /// Whether `failure` is set: lets a success skip the mutex on the hot path.
    failing: AtomicBool,
    failure: Mutex<Option<ExportFailure>>,
    /// A receiver's memory budget: bytes held, the budget (-1: none), when it last refused.
    memory_used: AtomicI64,
    memory_limit: AtomicI64,
    memory_refused: Mutex<Option<Instant>>,
    /// A log receiver's bytes lost with files gone before they were read, per (namespace,
    /// pod).
    lost_bytes: Mutex<BTreeMap<(String, String), u64>>,
}

/// A receiver's memory budget for requests in flight (see [`ComponentStats::memory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryUse {
    /// Bytes held by requests in flight.
    pub used: u64,
    /// The budget, bytes.
    pub limit: u64,
    /// When it last refused a request for want of room.
    pub last_refusal: Option<Instant>,
}

impl ComponentStats {
    fn new(kind: ComponentKind, id: ComponentId) -> Self {
        Self {
            kind,
            id,
            counters: Default::default(),
            reasons: Mutex::default(),
            queue_size: AtomicI64::new(0),
            queue_capacity: AtomicI64::new(-1),
            failing: AtomicBool::new(false),
            failure: Mutex::new(None),
            memory_used: AtomicI64::new(0),
            memory_limit: AtomicI64::new(-1),
            memory_refused: Mutex::new(None),
            lost_bytes: Mutex::default(),
        }
    }

    /// Counts `bytes` of pod `namespace`/`pod`'s log lost: its file was gone before it was
    /// read to its end (`hpcotel.receiver.log.lost`).
    pub fn add_lost_bytes(&self, namespace: &str, pod: &str, bytes: u64) {
        let mut m = self
            .lost_bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry((namespace.to_owned(), pod.to_owned())).or_insert(0) += bytes;
    }

    /// Log bytes lost, per (namespace, pod).
    pub fn lost_bytes(&self) -> Vec<((String, String), u64)> {
        let m = self
            .lost_bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The component's id.
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// The component's kind.
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    /// Adds `n` items to `counter` for `signal`. Each component kind has its own set of
    /// counters (see [`counter_metric`]); counting another is a bug caught in debug builds.
    pub fn add(&self, signal: Signal, counter: Counter, n: u64) {
        debug_assert!(
            counter_metric(self.kind, counter).is_some(),
            "{} {} has no '{}' counter",
            self.kind.as_str(),
            self.id,
            counter.as_str()
        );
        self.counters[signal.index()][counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` items to `counter` for `signal`, remembering why and when.
    pub fn add_with_reason(&self, signal: Signal, counter: Counter, reason: &str, n: u64) {
        self.add(signal, counter, n);
        let now = Instant::now();
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        let entry = reasons
            .entry((signal, counter, reason.to_owned()))
            .or_insert((0, now));
        *entry = (entry.0 + n, now);
    }

    /// The current total of `counter` for `signal`.
    pub fn get(&self, signal: Signal, counter: Counter) -> u64 {
        self.counters[signal.index()][counter as usize].load(Ordering::Relaxed)
    }

    /// The per-reason totals of `counter` for `signal`, sorted by reason.
    pub fn reasons(&self, signal: Signal, counter: Counter) -> Vec<(String, u64)> {
        let reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        reasons
            .iter()
            .filter(|((s, c, _), _)| *s == signal && *c == counter)
            .map(|((_, _, r), (n, _))| (r.clone(), *n))
            .collect()
    }

    /// Every per-reason total of `counter`, all signals, with when each last grew; sorted by
    /// signal, then reason.
    pub fn reason_counts(&self, counter: Counter) -> Vec<ReasonCount> {
        let reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        reasons
            .iter()
            .filter(|((_, c, _), _)| *c == counter)
            .map(|((signal, _, reason), (items, last))| ReasonCount {
                signal: *signal,
                reason: reason.clone(),
                items: *items,
                last: *last,
            })
            .collect()
    }

    /// Records the export queue's current length and capacity, in items.
    pub fn set_queue(&self, size: usize, capacity: usize) {
        self.queue_size.store(size as i64, Ordering::Relaxed);
        self.queue_capacity
            .store(capacity as i64, Ordering::Relaxed);
    }

    /// The export queue's length and capacity, if this component has a queue.
    pub fn queue(&self) -> Option<(u64, u64)> {
        let cap = self.queue_capacity.load(Ordering::Relaxed);
        (cap >= 0).then(|| {
            (
                self.queue_size.load(Ordering::Relaxed).max(0) as u64,
                cap as u64,
            )
        })
    }

    /// Records a receiver's memory budget use: `used` of `limit` bytes held.
    pub fn set_memory(&self, used: usize, limit: usize) {
        self.memory_used.store(used as i64, Ordering::Relaxed);
        self.memory_limit.store(limit as i64, Ordering::Relaxed);
    }

    /// Records that a receiver refused a request because its memory budget was full.
    pub fn memory_refused(&self) {
        *self
            .memory_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// The receiver's memory budget use, if it has a budget.
    pub fn memory(&self) -> Option<MemoryUse> {
        let limit = self.memory_limit.load(Ordering::Relaxed);
        (limit >= 0).then(|| MemoryUse {
            used: self.memory_used.load(Ordering::Relaxed).max(0) as u64,
            limit: limit as u64,
            last_refusal: *self
                .memory_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// Records that an exporter delivered a batch (a partial success included: the backend
    /// took the request): it is no longer failing. One relaxed load when it was not.
    pub fn export_succeeded(&self) {
        if self.failing.load(Ordering::Relaxed) {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            *failure = None;
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    /// Records that an exporter gave a batch up because delivering it failed, with the drop
    /// `reason` (`permanent`, `retries_exhausted`, `retry_disabled`, `panic`) and the
    /// exporter's `error`. The exporter is failing until its next successful delivery.
    pub fn export_failed(&self, reason: &str, error: &str) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        let (since, batches) = failure
            .as_ref()
            .map_or((Instant::now(), 0), |f| (f.since, f.batches));
        *failure = Some(ExportFailure {
            reason: reason.to_owned(),
            error: error.to_owned(),
            since,
            batches: batches.saturating_add(1),
        });
        self.failing.store(true, Ordering::Relaxed);
    }

    /// The current failure, if the latest delivery failed and none succeeded since.
    pub fn export_failure(&self) -> Option<ExportFailure> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The registry of every component's counters.
#[derive(Debug, Default, Clone)]
pub struct Telemetry {
    components: Arc<Mutex<Vec<Arc<ComponentStats>>>>,
}

impl Telemetry {
    /// Registers a component and returns its counters (registering an id twice returns the
    /// same counters).
    pub fn register(&self, kind: ComponentKind, id: ComponentId) -> Arc<ComponentStats> {
        let mut all = self.components.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = all.iter().find(|s| s.kind == kind && s.id == id) {
            return s.clone();
        }
        let s = Arc::new(ComponentStats::new(kind, id));
        all.push(s.clone());
        s
    }

    /// Every registered component's counters.
    pub fn components(&self) -> Vec<Arc<ComponentStats>> {
        self.components
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters of `id` of `kind`, if registered.
    pub fn find(&self, kind: ComponentKind, id: &str) -> Option<Arc<ComponentStats>> {
        self.components()
            .into_iter()
            .find(|s| s.kind == kind && s.id.to_string() == id)
    }

    /// The current counters as OTLP metrics: cumulative sums since `start_unix_nano`, queue
    /// gauges, under `resource`. Counters that never moved are left out.
    pub fn to_resource_metrics(&self, resource: Resource, start_unix_nano: u64) -> ResourceMetrics {
        let now = unix_nanos(SystemTime::now());
        let mut sums: BTreeMap<&'static str, Vec<NumberDataPoint>> = BTreeMap::new();
        let mut gauges: BTreeMap<&'static str, Vec<NumberDataPoint>> = BTreeMap::new();
        let point = |attrs: Vec<KeyValue>, v: i64, start: u64| NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt(v)),
            ..Default::default()
        };
        for c in self.components() {
            let comp = kv(semconv::HPCOTEL_COMPONENT_ID, c.id.to_string());
            for signal in Signal::ALL {
                for counter in Counter::ALL {
                    let total = c.get(signal, counter);
                    if total == 0 {
                        continue;
                    }
                    let Some(name) = counter_metric(c.kind, counter) else {
                        continue;
                    };
                    let base = vec![comp.clone(), kv(semconv::HPCOTEL_SIGNAL, signal.as_str())];
                    let reasons = c.reasons(signal, counter);
                    let explained: u64 = reasons.iter().map(|(_, n)| n).sum();
                    let points = sums.entry(name).or_default();
                    for (reason, n) in reasons {
                        let mut attrs = base.clone();
                        attrs.push(kv(semconv::HPCOTEL_REASON, reason));
                        points.push(point(attrs, n as i64, start_unix_nano));
                    }
                    if total > explained {
                        points.push(point(base, (total - explained) as i64, start_unix_nano));
                    }
                }
            }
            if let Some((size, cap)) = c.queue() {
                gauges
                    .entry(semconv::METRIC_HPCOTEL_EXPORTER_QUEUE_SIZE)
                    .or_default()
                    .push(point(vec![comp.clone()], size as i64, 0));
                gauges
                    .entry(semconv::METRIC_HPCOTEL_EXPORTER_QUEUE_CAPACITY)
                    .or_default()
                    .push(point(vec![comp], cap as i64, 0));
            }
        }
        let lost: Vec<NumberDataPoint> = self
            .components()
            .iter()
            .flat_map(|c| {
                let comp = kv(semconv::HPCOTEL_COMPONENT_ID, c.id.to_string());
                c.lost_bytes()
                    .into_iter()
                    .map(move |((ns, pod), n)| {
                        let attrs = vec![
                            comp.clone(),
                            kv(semconv::K8S_NAMESPACE_NAME, ns),
                            kv(semconv::K8S_POD_NAME, pod),
                        ];
                        (attrs, n)
                    })
                    .collect::<Vec<_>>()
            })
            .map(|(attrs, n)| point(attrs, n as i64, start_unix_nano))
            .collect();
        let mut metrics: Vec<Metric> = sums
            .into_iter()
            .map(|(name, data_points)| Metric {
                name: name.into(),
                unit: "{item}".into(),
                description: description(name).into(),
                data: Some(Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            })
            .collect();
        if !lost.is_empty() {
            let name = semconv::METRIC_HPCOTEL_RECEIVER_LOG_LOST;
            metrics.push(Metric {
                name: name.into(),
                unit: "By".into(),
                description: description(name).into(),
                data: Some(Data::Sum(Sum {
                    data_points: lost,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
        }
        metrics.extend(gauges.into_iter().map(|(name, data_points)| Metric {
            name: name.into(),
            unit: "{item}".into(),
            description: description(name).into(),
            data: Some(Data::Gauge(Gauge { data_points })),
            ..Default::default()
        }));
        ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

/// Every metric the self-telemetry can emit: (name, description). Counters are cumulative
/// monotonic sums in `{item}` (`hpcotel.receiver.log.lost` in bytes), the queue metrics
/// `{item}` gauges.
pub const SELF_METRICS: [(&str, &str); 10] = [
    (
        semconv::METRIC_HPCOTEL_RECEIVER_ACCEPTED,
        "Items a receiver handed to its pipelines.",
    ),
    (
        semconv::METRIC_HPCOTEL_RECEIVER_REFUSED,
        "Items a receiver turned away (client told to retry, no pipeline, or invalid items), by reason.",
    ),
    (
        semconv::METRIC_HPCOTEL_RECEIVER_CORRECTED,
        "Items a receiver accepted after correcting what they claimed (their pod identity), by reason.",
    ),
    (
        semconv::METRIC_HPCOTEL_RECEIVER_LOG_LOST,
        "Bytes of container log files gone before they were read to their end, per pod (at least).",
    ),
    (
        semconv::METRIC_HPCOTEL_PROCESSOR_DROPPED,
        "Items a processor discarded, by reason.",
    ),
    (
        semconv::METRIC_HPCOTEL_EXPORTER_SENT,
        "Items an exporter delivered.",
    ),
    (
        semconv::METRIC_HPCOTEL_EXPORTER_SEND_FAILED,
        "Items in export attempts that failed, retried or not, by reason.",
    ),
    (
        semconv::METRIC_HPCOTEL_EXPORTER_DROPPED,
        "Items an exporter gave up on (permanent error, retries exhausted, queue full, too large, shutdown), by reason.",
    ),
    (
        semconv::METRIC_HPCOTEL_EXPORTER_QUEUE_SIZE,
        "Items waiting in an export queue.",
    ),
    (
        semconv::METRIC_HPCOTEL_EXPORTER_QUEUE_CAPACITY,
        "Capacity of an export queue, in items.",
    ),
];

fn description(name: &str) -> &'static str {
    SELF_METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, d)| d)
}

/// The counters a component of `kind` keeps, and the metric each becomes: receivers accept
/// and refuse, processors drop, exporters send, fail and drop. `None` for any other pair.
pub fn counter_metric(kind: ComponentKind, counter: Counter) -> Option<&'static str> {
    use ComponentKind as K;
    use Counter as C;
    let name = match (kind, counter) {
        (K::Receiver, C::Accepted) => semconv::METRIC_HPCOTEL_RECEIVER_ACCEPTED,
        (K::Receiver, C::Refused) => semconv::METRIC_HPCOTEL_RECEIVER_REFUSED,
        (K::Receiver, C::Corrected) => semconv::METRIC_HPCOTEL_RECEIVER_CORRECTED,
        (K::Processor, C::Dropped) => semconv::METRIC_HPCOTEL_PROCESSOR_DROPPED,
        (K::Exporter, C::Sent) => semconv::METRIC_HPCOTEL_EXPORTER_SENT,
        (K::Exporter, C::SendFailed) => semconv::METRIC_HPCOTEL_EXPORTER_SEND_FAILED,
        (K::Exporter, C::Dropped) => semconv::METRIC_HPCOTEL_EXPORTER_DROPPED,
        _ => return None,
    };
    Some(name)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The instrumentation scope of everything hpcotel produces itself: `hpcotel` with the
/// collector's version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: semconv::SCOPE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// The value of attribute `key` among `attrs`, if present and set.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// The value of string attribute `key` among `attrs` (`None` for other types).
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// The value of integer attribute `key` among `attrs` (`None` for other types).
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// A string-valued OTLP attribute.
pub fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer-valued OTLP attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_failure_lasts_until_the_next_success() {
        let t = Telemetry::default();
        let ex = t.register(ComponentKind::Exporter, "otlp".parse().unwrap());
        assert_eq!(ex.export_failure(), None);
        ex.export_succeeded();
        assert_eq!(ex.export_failure(), None);
        ex.export_failed("permanent", "gRPC status InvalidArgument: bad");
        let first = ex.export_failure().expect("failing");
        ex.export_failed("retries_exhausted", "connection refused");
        let f = ex.export_failure().expect("still failing");
        assert_eq!(
            (f.reason.as_str(), f.error.as_str(), f.batches, f.since),
            ("retries_exhausted", "connection refused", 2, first.since)
        );
        ex.export_succeeded();
        assert_eq!(ex.export_failure(), None);
        ex.export_failed("panic", "boom");
        assert_eq!(ex.export_failure().map(|f| f.batches), Some(1));
    }

    #[test]
    fn reason_counts_sum_per_signal_and_reason_and_say_when_they_last_grew() {
        let t = Telemetry::default();
        let ex = t.register(ComponentKind::Exporter, "otlp".parse().unwrap());
        let before = Instant::now();
        ex.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 1);
        ex.add_with_reason(Signal::Logs, Counter::Dropped, "queue_full", 5);
        let first = ex.reason_counts(Counter::Dropped);
        ex.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 2);
        ex.add_with_reason(Signal::Traces, Counter::SendFailed, "too_large", 9);
        let counts = ex.reason_counts(Counter::Dropped);
        let summary: Vec<(Signal, &str, u64)> = counts
            .iter()
            .map(|c| (c.signal, c.reason.as_str(), c.items))
            .collect();
        assert_eq!(
            summary,
            [
                (Signal::Traces, "too_large", 3),
                (Signal::Logs, "queue_full", 5)
            ]
        );
        assert!(counts.iter().all(|c| c.last >= before));
        assert!(counts[0].last >= first[0].last, "the latest drop's time");
        assert_eq!(
            counts[1].last, first[1].last,
            "unchanged when it did not grow"
        );
    }

    #[test]
    fn snapshot_becomes_otlp_sums_with_reasons() {
        let t = Telemetry::default();
        let ex = t.register(ComponentKind::Exporter, "otlp/tempo".parse().unwrap());
        ex.add(Signal::Traces, Counter::Sent, 10);
        ex.add_with_reason(Signal::Traces, Counter::Dropped, "permanent", 4);
        ex.set_queue(3, 100);
        let rm = t.to_resource_metrics(Resource::default(), 1);
        let metrics = &rm.scope_metrics[0].metrics;
        let find = |n: &str| metrics.iter().find(|m| m.name == n).unwrap();
        let Some(Data::Sum(dropped)) = &find("hpcotel.exporter.dropped").data else {
            panic!("dropped is not a sum")
        };
        assert_eq!(dropped.data_points.len(), 1);
        let dp = &dropped.data_points[0];
        assert_eq!(dp.value, Some(number_data_point::Value::AsInt(4)));
        assert!(
            dp.attributes
                .contains(&kv(semconv::HPCOTEL_REASON, "permanent"))
        );
        assert!(
            dp.attributes
                .contains(&kv(semconv::HPCOTEL_COMPONENT_ID, "otlp/tempo"))
        );
        let Some(Data::Gauge(q)) = &find("hpcotel.exporter.queue.capacity").data else {
            panic!("capacity is not a gauge")
        };
        assert_eq!(
            q.data_points[0].value,
            Some(number_data_point::Value::AsInt(100))
        );
        assert!(
            metrics
                .iter()
                .all(|m| m.name != "hpcotel.exporter.send_failed")
        );
    }
}
