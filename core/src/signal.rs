//! Signals and batches: the only in-process representation of telemetry.

use std::fmt;

use bytes::Bytes;

use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
    metric::Data,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use serde::{Deserialize, Serialize};

use crate::raw::RawBatch;

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
    /// Spans or log records kept as the receiver got them: resources decoded, scope entries
    /// as checked protobuf bytes ([`crate::raw`]). Stages that read items call
    /// [`into_decoded`](Self::into_decoded) or [`make_decoded`](Self::make_decoded).
    Raw(RawBatch),
}

impl Batch {
    /// The OTLP request for this batch (`ExportTraceServiceRequest`,
    /// `ExportMetricsServiceRequest` or `ExportLogsServiceRequest`), protobuf-encoded
    /// straight from the borrowed batch: each request is its resource entries as field 1,
    /// repeated, so no owned request message has to be built (or the batch copied) first.
    pub fn encode_request(&self) -> Vec<u8> {
        fn encode<M: prost::Message>(entries: &[M]) -> Vec<u8> {
            let mut buf = Vec::with_capacity(request_len(entries));
            for m in entries {
                prost::encoding::message::encode(1, m, &mut buf);
            }
            buf
        }
        match self {
            Batch::Traces(v) => encode(v),
            Batch::Metrics(v) => encode(v),
            Batch::Logs(v) => encode(v),
            Batch::Raw(r) => r.encode_request(),
        }
    }

    /// The length in bytes of [`encode_request`](Self::encode_request)'s output, computed
    /// without encoding: what a backend's message size limit (gRPC `max_recv_msg_size`, HTTP
    /// body limits, before compression) is checked against. Additive: the request of two
    /// batches [appended](Self::append) is exactly as long as theirs together.
    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(v) => request_len(v),
            Batch::Metrics(v) => request_len(v),
            Batch::Logs(v) => request_len(v),
            Batch::Raw(r) => r.encoded_len(),
        }
    }

    /// The batch in an OTLP request of `signal` as [`encode_request`](Self::encode_request)
    /// writes it (and as receivers get it): the decoder's error when it is not one.
    pub fn decode_request(signal: Signal, request: &[u8]) -> Result<Batch, prost::DecodeError> {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message as _;
        Ok(match signal {
            Signal::Traces => {
                Batch::Traces(ExportTraceServiceRequest::decode(request)?.resource_spans)
            }
            Signal::Metrics => {
                Batch::Metrics(ExportMetricsServiceRequest::decode(request)?.resource_metrics)
            }
            Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(request)?.resource_logs),
        })
    }

    /// The batch in an OTLP request of `signal`, as receivers take it: spans and log records
    /// kept as received when every part of the request is plainly valid
    /// ([`RawBatch::parse`]), else decoded (the decoder's error when it is not a request).
    pub fn from_request(signal: Signal, request: Bytes) -> Result<Batch, prost::DecodeError> {
        match RawBatch::parse(signal, &request) {
            Some(raw) => Ok(Batch::Raw(raw)),
            None => Batch::decode_request(signal, &request),
        }
    }

    /// [`from_request`](Self::from_request) for a request read back from this process's
    /// write-ahead log: it was checked when received, so it is only counted
    /// ([`RawBatch::parse_logged`]); one that was not kept raw then is decoded again.
    pub fn from_logged_request(
        signal: Signal,
        request: Bytes,
    ) -> Result<Batch, prost::DecodeError> {
        match RawBatch::parse_logged(signal, &request) {
            Some(raw) => Ok(Batch::Raw(raw)),
            None => Batch::decode_request(signal, &request),
        }
    }

    /// This batch with its items as prost types (a [`Batch::Raw`] decoded; others as they are).
    pub fn into_decoded(self) -> Batch {
        match self {
            Batch::Raw(r) => r.decode(),
            other => other,
        }
    }

    /// Decodes a [`Batch::Raw`] in place.
    pub fn make_decoded(&mut self) {
        if let Batch::Raw(_) = self {
            let raw = std::mem::replace(self, Batch::empty(self.signal()));
            *self = raw.into_decoded();
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
            Batch::Raw(r) => r.signal(),
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
            Batch::Raw(r) => r.item_count(),
        }
    }

    /// Number of resource entries (`ResourceSpans` / `ResourceMetrics` / `ResourceLogs`).
    pub fn resource_count(&self) -> usize {
        match self {
            Batch::Traces(v) => v.len(),
            Batch::Metrics(v) => v.len(),
            Batch::Logs(v) => v.len(),
            Batch::Raw(r) => r.resources.len(),
        }
    }

    /// True when the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Appends `other`'s resources to this batch. Returns `other` unchanged when its signal
    /// differs. Raw and decoded batches mix: a decoded batch appended to a raw one has its
    /// scope entries encoded; a raw one appended to a decoded one is decoded, unless the
    /// decoded one is empty (then this batch becomes `other`).
    pub fn append(&mut self, other: Batch) -> Result<(), Batch> {
        if other.signal() != self.signal() {
            return Err(other);
        }
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
            (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
            (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
            (Batch::Raw(a), Batch::Raw(b)) => return a.append(b).map_err(Batch::Raw),
            (Batch::Raw(a), b) => return a.append_decoded(b),
            (a, b @ Batch::Raw(_)) if a.resource_count() == 0 => *a = b,
            (a, b) => return a.append(b.into_decoded()),
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
            Batch::Raw(r) => Batch::Raw(r.split_off_resources(at)),
        }
    }

    /// Removes the first `n` items (spans, metric data points, log records) from this batch
    /// and returns them as a batch of the same signal; this batch keeps the rest. Order is
    /// kept on both sides, and concatenating the two gives back every item of the original.
    ///
    /// The cut is at item granularity, so it can fall inside a resource entry, a scope entry
    /// or a metric: that entry is then split in two, each half carrying the same metadata
    /// (resource and its `schema_url`; scope and its `schema_url`; metric name, description,
    /// unit, metadata, data type, aggregation temporality and monotonicity). No entry left
    /// empty by the cut is kept: the returned batch holds exactly `n` items (all of them when
    /// `n >= item_count()`, leaving this batch with no resource entries at all). Entries that
    /// held no items to begin with are neither dropped nor added: an entry whose items all
    /// come before the cut is returned whole, item-less entries inside it included; other
    /// item-less entries are returned when they come before the `n`-th item and kept when
    /// after it. `n == 0` returns an empty batch and changes nothing.
    ///
    /// Unlike [`split_off_resources`](Self::split_off_resources), which keeps the front and
    /// returns the back, this returns the front (as `Iterator::take` would): the batch
    /// processor uses it to cut batches of at most `send_batch_max_size` items.
    pub fn take_items(&mut self, n: usize) -> Batch {
        if n >= self.item_count() {
            return std::mem::replace(self, Batch::empty(self.signal()));
        }
        match self {
            Batch::Raw(r) => Batch::Raw(r.take_items(n)),
            Batch::Traces(rs) => Batch::Traces(take_front(
                rs,
                n,
                |r| r.scope_spans.iter().map(|s| s.spans.len()).sum(),
                |r, k| ResourceSpans {
                    resource: r.resource.clone(),
                    scope_spans: take_front(
                        &mut r.scope_spans,
                        k,
                        |s| s.spans.len(),
                        |s, k| ScopeSpans {
                            scope: s.scope.clone(),
                            spans: s.spans.drain(..k).collect(),
                            schema_url: s.schema_url.clone(),
                        },
                    ),
                    schema_url: r.schema_url.clone(),
                },
            )),
            Batch::Metrics(rm) => Batch::Metrics(take_front(
                rm,
                n,
                |r| {
                    r.scope_metrics
                        .iter()
                        .flat_map(|s| &s.metrics)
                        .map(metric_point_count)
                        .sum()
                },
                |r, k| ResourceMetrics {
                    resource: r.resource.clone(),
                    scope_metrics: take_front(
                        &mut r.scope_metrics,
                        k,
                        |s| s.metrics.iter().map(metric_point_count).sum(),
                        |s, k| ScopeMetrics {
                            scope: s.scope.clone(),
                            metrics: take_front(
                                &mut s.metrics,
                                k,
                                metric_point_count,
                                take_metric_points,
                            ),
                            schema_url: s.schema_url.clone(),
                        },
                    ),
                    schema_url: r.schema_url.clone(),
                },
            )),
            Batch::Logs(rl) => Batch::Logs(take_front(
                rl,
                n,
                |r| r.scope_logs.iter().map(|s| s.log_records.len()).sum(),
                |r, k| ResourceLogs {
                    resource: r.resource.clone(),
                    scope_logs: take_front(
                        &mut r.scope_logs,
                        k,
                        |s| s.log_records.len(),
                        |s, k| ScopeLogs {
                            scope: s.scope.clone(),
                            log_records: s.log_records.drain(..k).collect(),
                            schema_url: s.schema_url.clone(),
                        },
                    ),
                    schema_url: r.schema_url.clone(),
                },
            )),
        }
    }
}

impl Batch {
    /// Cuts this batch, in order, into batches whose requests are each at most `max_bytes`
    /// long ([`encoded_len`](Self::encoded_len)), and returns them with their lengths.
    ///
    /// Packing is greedy: each batch takes as many of the next items as fit, counting the
    /// resource and scope (and, for metrics, metric) entries the items need around them.
    /// Cuts are made with [`take_items`](Self::take_items), so an entry cut in two keeps its
    /// metadata on both sides, and concatenating the batches gives back every item, in order,
    /// in its context. An item whose request alone (the item with its resource, scope and
    /// metric) is longer than `max_bytes` comes out as a batch of its own, longer than
    /// `max_bytes`: the only batch that can be (so `max_bytes == 0` gives one item per batch).
    /// A batch that fits already is returned whole, untouched. Item-less entries left after
    /// the last item go with the last batch when they fit there, else in a batch of their
    /// own (with no items).
    pub fn split_to_fit(mut self, max_bytes: usize) -> Vec<(Batch, usize)> {
        let len = self.encoded_len();
        if len <= max_bytes {
            return vec![(self, len)];
        }
        // Item by item sizes need the items: a raw batch this long is decoded (rare: requests
        // are cut to the next hop's limit, and batches built to fit it).
        self.make_decoded();
        let counts = greedy_counts(&self.size_steps(max_bytes), max_bytes);
        let mut out = Vec::with_capacity(counts.len());
        for n in counts {
            push_fitting(self.take_items(n), max_bytes, &mut out);
        }
        if self.resource_count() > 0 {
            let rest_len = self.encoded_len();
            match out.last_mut() {
                Some((last, last_len)) if *last_len + rest_len <= max_bytes => {
                    *last_len += rest_len;
                    // Same signal: cannot fail.
                    let _ = last.append(self);
                }
                _ => out.push((self, rest_len)),
            }
        }
        out
    }

    /// Every item in order, with what it costs in a request of at most `max_bytes`: see
    /// [`SizeStep`].
    fn size_steps(&self, max_bytes: usize) -> Vec<SizeStep> {
        use prost::Message;
        use prost::encoding::message::encoded_len as field_len;
        // Any length prefix inside a request of at most `max_bytes` is at most this long.
        let prefix = prost::encoding::encoded_len_varint(max_bytes as u64);
        // What an entry costs without its children, as a field (tag and length prefix).
        let open = |own: usize, children: usize| own - children + 1 + prefix;
        let mut out = Vec::with_capacity(self.item_count());
        match self {
            // Decoded by `split_to_fit` first.
            Batch::Raw(_) => {}
            Batch::Traces(rs) => {
                for (ri, r) in rs.iter().enumerate() {
                    let scopes: usize = r.scope_spans.iter().map(|s| field_len(2, s)).sum();
                    let r_open = open(r.encoded_len(), scopes);
                    for (si, s) in r.scope_spans.iter().enumerate() {
                        let items: Vec<usize> = s.spans.iter().map(|x| field_len(2, x)).collect();
                        let s_open = open(s.encoded_len(), items.iter().sum());
                        out.extend(items.into_iter().map(|cost| SizeStep {
                            key: [ri, si, 0],
                            open: [r_open, s_open, 0],
                            cost,
                        }));
                    }
                }
            }
            Batch::Metrics(rm) => {
                for (ri, r) in rm.iter().enumerate() {
                    let scopes: usize = r.scope_metrics.iter().map(|s| field_len(2, s)).sum();
                    let r_open = open(r.encoded_len(), scopes);
                    for (si, s) in r.scope_metrics.iter().enumerate() {
                        let metrics: usize = s.metrics.iter().map(|m| field_len(2, m)).sum();
                        let s_open = open(s.encoded_len(), metrics);
                        for (mi, m) in s.metrics.iter().enumerate() {
                            let points = metric_point_lens(m);
                            // The data message's own length prefix is counted as it is with
                            // every point, at least as long as with some of them.
                            let m_open = open(m.encoded_len(), points.iter().sum());
                            out.extend(points.into_iter().map(|cost| SizeStep {
                                key: [ri, si, mi],
                                open: [r_open, s_open, m_open],
                                cost,
                            }));
                        }
                    }
                }
            }
            Batch::Logs(rl) => {
                for (ri, r) in rl.iter().enumerate() {
                    let scopes: usize = r.scope_logs.iter().map(|s| field_len(2, s)).sum();
                    let r_open = open(r.encoded_len(), scopes);
                    for (si, s) in r.scope_logs.iter().enumerate() {
                        let items: Vec<usize> =
                            s.log_records.iter().map(|x| field_len(2, x)).collect();
                        let s_open = open(s.encoded_len(), items.iter().sum());
                        out.extend(items.into_iter().map(|cost| SizeStep {
                            key: [ri, si, 0],
                            open: [r_open, s_open, 0],
                            cost,
                        }));
                    }
                }
            }
        }
        out
    }
}

/// The length of a request made of `entries` (field 1, repeated).
fn request_len<M: prost::Message>(entries: &[M]) -> usize {
    entries
        .iter()
        .map(|m| prost::encoding::message::encoded_len(1, m))
        .sum()
}

/// One item as [`Batch::split_to_fit`] sees it: which resource, scope and metric entry it is
/// in (`key`), what opening each of them in a request costs (`open`: the entry's own fields,
/// tag and longest possible length prefix), and what the item itself costs as a field
/// (`cost`). Summed over a batch made by `take_items`, these bound its
/// [`encoded_len`](Batch::encoded_len) from above (entries without items aside).
struct SizeStep {
    key: [usize; 3],
    open: [usize; 3],
    cost: usize,
}

/// How many items go into each batch, packing greedily under `max_bytes` by the bound of
/// [`SizeStep`]. An item that alone exceeds `max_bytes` gets a batch of its own.
fn greedy_counts(steps: &[SizeStep], max_bytes: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    let (mut n, mut bound, mut last) = (0usize, 0usize, [usize::MAX; 3]);
    for st in steps {
        let fresh = st.cost + st.open.iter().sum::<usize>();
        let mut add = if n == 0 || st.key[0] != last[0] {
            fresh
        } else if st.key[1] != last[1] {
            st.cost + st.open[1] + st.open[2]
        } else if st.key[2] != last[2] {
            st.cost + st.open[2]
        } else {
            st.cost
        };
        if n > 0 && bound + add > max_bytes {
            counts.push(n);
            (n, bound, add) = (0, 0, fresh);
        }
        bound += add;
        n += 1;
        last = st.key;
    }
    if n > 0 {
        counts.push(n);
    }
    counts
}

/// Pushes `batch` onto `out` with its length, halved (again and again) while it is longer
/// than `max_bytes` and has more than one item. [`greedy_counts`] makes that rare: only
/// item-less entries inside a batch are not in its bound.
fn push_fitting(batch: Batch, max_bytes: usize, out: &mut Vec<(Batch, usize)>) {
    let mut stack = vec![batch];
    while let Some(mut b) = stack.pop() {
        let len = b.encoded_len();
        let items = b.item_count();
        if len <= max_bytes || items <= 1 {
            out.push((b, len));
            continue;
        }
        let front = b.take_items(items / 2);
        stack.push(b);
        stack.push(front);
    }
}

/// The length of each data point of `m` as a field of its data message.
fn metric_point_lens(m: &Metric) -> Vec<usize> {
    use prost::encoding::message::encoded_len as field_len;
    fn lens<P: prost::Message>(points: &[P]) -> Vec<usize> {
        points.iter().map(|p| field_len(1, p)).collect()
    }
    match &m.data {
        Some(Data::Gauge(g)) => lens(&g.data_points),
        Some(Data::Sum(s)) => lens(&s.data_points),
        Some(Data::Histogram(h)) => lens(&h.data_points),
        Some(Data::ExponentialHistogram(h)) => lens(&h.data_points),
        Some(Data::Summary(s)) => lens(&s.data_points),
        None => Vec::new(),
    }
}

/// Moves the entries holding the first `n` items of `entries` out into the returned vector,
/// keeping order: whole entries while they fit, then, when the cut falls inside an entry,
/// the front of that entry as made by `split(entry, k)`, which must move the entry's first
/// `k` items (`0 < k < count(entry)`) into a new entry with the same metadata. Stops as soon
/// as `n` items are taken, so item-less entries after the cut stay in `entries`.
pub(crate) fn take_front<E>(
    entries: &mut Vec<E>,
    n: usize,
    count: impl Fn(&E) -> usize,
    split: impl FnOnce(&mut E, usize) -> E,
) -> Vec<E> {
    let mut left = n;
    let mut whole = 0;
    for e in entries.iter() {
        let c = count(e);
        if left == 0 || c > left {
            break;
        }
        left -= c;
        whole += 1;
    }
    let mut taken: Vec<E> = entries.drain(..whole).collect();
    if left > 0
        && let Some(first) = entries.first_mut()
    {
        taken.push(split(first, left));
    }
    taken
}

/// Moves the first `k` data points of `m` into a new metric with the same name, description,
/// unit, metadata, data type, temporality and monotonicity.
fn take_metric_points(m: &mut Metric, k: usize) -> Metric {
    let data = m.data.as_mut().map(|data| match data {
        Data::Gauge(g) => Data::Gauge(Gauge {
            data_points: g.data_points.drain(..k).collect(),
        }),
        Data::Sum(s) => Data::Sum(Sum {
            data_points: s.data_points.drain(..k).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Data::Histogram(h) => Data::Histogram(Histogram {
            data_points: h.data_points.drain(..k).collect(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: h.data_points.drain(..k).collect(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::Summary(s) => Data::Summary(Summary {
            data_points: s.data_points.drain(..k).collect(),
        }),
    });
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data,
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

    // ---- take_items ----

    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
        SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn resource(name: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", name)],
            ..Default::default()
        })
    }

    fn scope(name: &str) -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: name.into(),
            version: "1.2.3".into(),
            attributes: vec![kv("scope.attr", name)],
            ..Default::default()
        })
    }

    fn named_spans(names: &[&str]) -> Vec<Span> {
        names
            .iter()
            .map(|n| Span {
                name: n.to_string(),
                ..Default::default()
            })
            .collect()
    }

    fn rs(r: &str, scopes: Vec<ScopeSpans>) -> ResourceSpans {
        ResourceSpans {
            resource: resource(r),
            scope_spans: scopes,
            schema_url: format!("https://schema/{r}"),
        }
    }

    fn ss(s: &str, names: &[&str]) -> ScopeSpans {
        ScopeSpans {
            scope: scope(s),
            spans: named_spans(names),
            schema_url: format!("https://schema/{s}"),
        }
    }

    /// r1 { s1 [a1 a2], s2 [b1] }, r2 { s3 [c1 c2 c3] }: 6 spans.
    fn traces() -> Batch {
        Batch::Traces(vec![
            rs("r1", vec![ss("s1", &["a1", "a2"]), ss("s2", &["b1"])]),
            rs("r2", vec![ss("s3", &["c1", "c2", "c3"])]),
        ])
    }

    fn span_names(b: &Batch) -> Vec<String> {
        let Batch::Traces(rs) = b else {
            panic!("not traces")
        };
        rs.iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    /// The data points of `m`, each as the `Debug` of a metric holding only it, so that a
    /// point compares equal only with the same metadata, data type, temporality and
    /// monotonicity around it.
    fn metric_points(m: &Metric) -> Vec<String> {
        fn each<P: Clone>(points: &[P], one: impl Fn(Vec<P>) -> Data) -> Vec<Data> {
            points.iter().map(|p| one(vec![p.clone()])).collect()
        }
        let data = match &m.data {
            Some(Data::Gauge(g)) => each(&g.data_points, |p| Data::Gauge(Gauge { data_points: p })),
            Some(Data::Sum(s)) => each(&s.data_points, |p| {
                Data::Sum(Sum {
                    data_points: p,
                    ..s.clone()
                })
            }),
            Some(Data::Histogram(h)) => each(&h.data_points, |p| {
                Data::Histogram(Histogram {
                    data_points: p,
                    ..h.clone()
                })
            }),
            Some(Data::ExponentialHistogram(h)) => each(&h.data_points, |p| {
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: p,
                    ..h.clone()
                })
            }),
            Some(Data::Summary(s)) => each(&s.data_points, |p| {
                Data::Summary(Summary { data_points: p })
            }),
            None => vec![],
        };
        data.into_iter()
            .map(|d| {
                let one = Metric {
                    data: Some(d),
                    ..m.clone()
                };
                format!("{one:?}")
            })
            .collect()
    }

    /// Every item of `b` in order, with the resource, scope (and metric) it belongs to.
    fn items_in_context(b: &Batch) -> Vec<String> {
        let mut out = Vec::new();
        match b {
            Batch::Raw(raw) => return items_in_context(&raw.clone().decode()),
            Batch::Traces(rs) => {
                for r in rs {
                    for s in &r.scope_spans {
                        for span in &s.spans {
                            out.push(format!(
                                "{:?}|{}|{:?}|{}|{span:?}",
                                r.resource, r.schema_url, s.scope, s.schema_url
                            ));
                        }
                    }
                }
            }
            Batch::Metrics(rm) => {
                for r in rm {
                    for s in &r.scope_metrics {
                        for m in &s.metrics {
                            for p in metric_points(m) {
                                out.push(format!(
                                    "{:?}|{}|{:?}|{}|{p}",
                                    r.resource, r.schema_url, s.scope, s.schema_url
                                ));
                            }
                        }
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    for s in &r.scope_logs {
                        for l in &s.log_records {
                            out.push(format!(
                                "{:?}|{}|{:?}|{}|{l:?}",
                                r.resource, r.schema_url, s.scope, s.schema_url
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// Panics when `b` has a resource, scope or metric entry holding no items.
    fn assert_no_empty_entries(b: &Batch) {
        match b {
            Batch::Raw(raw) => assert_no_empty_entries(&raw.clone().decode()),
            Batch::Traces(rs) => {
                for r in rs {
                    assert!(!r.scope_spans.is_empty(), "empty resource in {b:?}");
                    for s in &r.scope_spans {
                        assert!(!s.spans.is_empty(), "empty scope in {b:?}");
                    }
                }
            }
            Batch::Metrics(rm) => {
                for r in rm {
                    assert!(!r.scope_metrics.is_empty(), "empty resource in {b:?}");
                    for s in &r.scope_metrics {
                        assert!(!s.metrics.is_empty(), "empty scope in {b:?}");
                        for m in &s.metrics {
                            assert!(metric_point_count(m) > 0, "empty metric in {b:?}");
                        }
                    }
                }
            }
            Batch::Logs(rl) => {
                for r in rl {
                    assert!(!r.scope_logs.is_empty(), "empty resource in {b:?}");
                    for s in &r.scope_logs {
                        assert!(!s.log_records.is_empty(), "empty scope in {b:?}");
                    }
                }
            }
        }
    }

    /// Cuts `original` at every position from 0 to past its end and checks both halves:
    /// exact item counts, every item in order and in its original context, no empty entries.
    fn check_every_cut(original: &Batch) {
        let total = original.item_count();
        let all = items_in_context(original);
        assert_eq!(all.len(), total);
        for n in 0..=total + 2 {
            let mut rest = original.clone();
            let front = rest.take_items(n);
            let k = n.min(total);
            assert_eq!(front.signal(), original.signal());
            assert_eq!(rest.signal(), original.signal());
            assert_eq!(
                (front.item_count(), rest.item_count()),
                (k, total - k),
                "n={n}"
            );
            assert_eq!(items_in_context(&front), all[..k], "front, n={n}");
            assert_eq!(items_in_context(&rest), all[k..], "rest, n={n}");
            assert_no_empty_entries(&front);
            assert_no_empty_entries(&rest);
        }
    }

    #[test]
    fn take_items_cuts_spans_at_every_position_keeping_order_and_context() {
        let original = traces();
        check_every_cut(&original);
        for (n, front, rest) in [
            (0, vec![], vec!["a1", "a2", "b1", "c1", "c2", "c3"]),
            (2, vec!["a1", "a2"], vec!["b1", "c1", "c2", "c3"]),
            (5, vec!["a1", "a2", "b1", "c1", "c2"], vec!["c3"]),
            (6, vec!["a1", "a2", "b1", "c1", "c2", "c3"], vec![]),
        ] {
            let mut b = original.clone();
            assert_eq!(span_names(&b.take_items(n)), front, "n={n}");
            assert_eq!(span_names(&b), rest, "n={n}");
        }
    }

    #[test]
    fn take_items_splits_the_resource_and_scope_the_cut_falls_in() {
        // Inside a scope of the first resource.
        let mut b = traces();
        let front = b.take_items(1);
        assert_eq!(
            front,
            Batch::Traces(vec![rs("r1", vec![ss("s1", &["a1"])])])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![
                rs("r1", vec![ss("s1", &["a2"]), ss("s2", &["b1"])]),
                rs("r2", vec![ss("s3", &["c1", "c2", "c3"])]),
            ])
        );
        // Between two scopes of one resource: the resource is split, the scopes are not.
        let mut b = traces();
        let front = b.take_items(2);
        assert_eq!(
            front,
            Batch::Traces(vec![rs("r1", vec![ss("s1", &["a1", "a2"])])])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![
                rs("r1", vec![ss("s2", &["b1"])]),
                rs("r2", vec![ss("s3", &["c1", "c2", "c3"])]),
            ])
        );
        // Between two resources: nothing is split.
        let mut b = traces();
        let front = b.take_items(3);
        assert_eq!(
            front,
            Batch::Traces(vec![rs(
                "r1",
                vec![ss("s1", &["a1", "a2"]), ss("s2", &["b1"])]
            )])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![rs("r2", vec![ss("s3", &["c1", "c2", "c3"])])])
        );
        // Inside the second resource.
        let mut b = traces();
        let front = b.take_items(4);
        assert_eq!(
            front,
            Batch::Traces(vec![
                rs("r1", vec![ss("s1", &["a1", "a2"]), ss("s2", &["b1"])]),
                rs("r2", vec![ss("s3", &["c1"])]),
            ])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![rs("r2", vec![ss("s3", &["c2", "c3"])])])
        );
    }

    #[test]
    fn take_items_of_none_or_all() {
        let mut b = traces();
        assert_eq!(b.take_items(0), Batch::empty(Signal::Traces));
        assert_eq!(b, traces(), "n=0 must change nothing");
        for n in [6, 7, usize::MAX] {
            let mut b = traces();
            assert_eq!(b.take_items(n), traces(), "n={n}");
            assert_eq!(b, Batch::empty(Signal::Traces), "n={n}");
            assert_eq!(b.resource_count(), 0);
        }
        for signal in Signal::ALL {
            let mut b = Batch::empty(signal);
            assert_eq!(b.take_items(3), Batch::empty(signal));
            assert_eq!(b, Batch::empty(signal));
        }
    }

    #[test]
    fn take_items_keeps_item_less_entries_beside_their_neighbours() {
        let empty = |r: &str| rs(r, vec![]);
        let original = Batch::Traces(vec![
            empty("e1"),
            rs("r1", vec![ss("s1", &["a", "b"]), ss("s0", &[])]),
            empty("e2"),
            rs("r2", vec![ss("s2", &["c"])]),
        ]);
        let mut b = original.clone();
        assert_eq!(
            b.take_items(1),
            Batch::Traces(vec![empty("e1"), rs("r1", vec![ss("s1", &["a"])])])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![
                rs("r1", vec![ss("s1", &["b"]), ss("s0", &[])]),
                empty("e2"),
                rs("r2", vec![ss("s2", &["c"])]),
            ])
        );
        // r1 fits whole, so it is not split: its item-less scope goes with it.
        let mut b = original.clone();
        assert_eq!(
            b.take_items(2),
            Batch::Traces(vec![
                empty("e1"),
                rs("r1", vec![ss("s1", &["a", "b"]), ss("s0", &[])]),
            ])
        );
        assert_eq!(
            b,
            Batch::Traces(vec![empty("e2"), rs("r2", vec![ss("s2", &["c"])])])
        );
        let mut b = original.clone();
        assert_eq!(b.take_items(3), original);
        assert_eq!(b, Batch::empty(Signal::Traces));
    }

    fn number_points(from: u64, n: u64) -> Vec<NumberDataPoint> {
        (from..from + n)
            .map(|t| NumberDataPoint {
                time_unix_nano: t,
                attributes: vec![kv("point", &t.to_string())],
                ..Default::default()
            })
            .collect()
    }

    fn metric(name: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            description: format!("{name} described"),
            unit: "By".into(),
            metadata: vec![kv("meta", name)],
            data: Some(data),
        }
    }

    /// One metric of each data type, with 2 data points each (time_unix_nano 0..10), in one
    /// scope of one resource, then a gauge with 1 point in a second resource: 11 points.
    fn metrics() -> Batch {
        let cumulative = AggregationTemporality::Cumulative as i32;
        let delta = AggregationTemporality::Delta as i32;
        let hist = |t: u64| HistogramDataPoint {
            time_unix_nano: t,
            count: t,
            bucket_counts: vec![t],
            ..Default::default()
        };
        let exp = |t: u64| ExponentialHistogramDataPoint {
            time_unix_nano: t,
            count: t,
            scale: 2,
            ..Default::default()
        };
        let summary = |t: u64| SummaryDataPoint {
            time_unix_nano: t,
            count: t,
            ..Default::default()
        };
        Batch::Metrics(vec![
            ResourceMetrics {
                resource: resource("r1"),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope("s1"),
                    metrics: vec![
                        metric(
                            "gauge",
                            Data::Gauge(Gauge {
                                data_points: number_points(0, 2),
                            }),
                        ),
                        metric(
                            "sum",
                            Data::Sum(Sum {
                                data_points: number_points(2, 2),
                                aggregation_temporality: cumulative,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "histogram",
                            Data::Histogram(Histogram {
                                data_points: vec![hist(4), hist(5)],
                                aggregation_temporality: delta,
                            }),
                        ),
                        metric(
                            "exponential_histogram",
                            Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![exp(6), exp(7)],
                                aggregation_temporality: cumulative,
                            }),
                        ),
                        metric(
                            "summary",
                            Data::Summary(Summary {
                                data_points: vec![summary(8), summary(9)],
                            }),
                        ),
                    ],
                    schema_url: "https://schema/s1".into(),
                }],
                schema_url: "https://schema/r1".into(),
            },
            ResourceMetrics {
                resource: resource("r2"),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope("s2"),
                    metrics: vec![metric(
                        "gauge2",
                        Data::Gauge(Gauge {
                            data_points: number_points(10, 1),
                        }),
                    )],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            },
        ])
    }

    /// The metrics of `b`, in order.
    fn metric_list(b: &Batch) -> Vec<Metric> {
        let Batch::Metrics(rm) = b else {
            panic!("not metrics")
        };
        rm.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| s.metrics.clone())
            .collect()
    }

    /// `m` with only the data points whose index is in `range`.
    fn with_points(m: &Metric, range: std::ops::Range<usize>) -> Metric {
        let data = match m.data.clone().unwrap() {
            Data::Gauge(g) => Data::Gauge(Gauge {
                data_points: g.data_points[range].to_vec(),
            }),
            Data::Sum(s) => Data::Sum(Sum {
                data_points: s.data_points[range].to_vec(),
                ..s
            }),
            Data::Histogram(h) => Data::Histogram(Histogram {
                data_points: h.data_points[range].to_vec(),
                ..h
            }),
            Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
                data_points: h.data_points[range].to_vec(),
                ..h
            }),
            Data::Summary(s) => Data::Summary(Summary {
                data_points: s.data_points[range].to_vec(),
            }),
        };
        Metric {
            data: Some(data),
            ..m.clone()
        }
    }

    #[test]
    fn take_items_cuts_metric_points_at_every_position_keeping_order_and_context() {
        check_every_cut(&metrics());
    }

    #[test]
    fn take_items_splits_a_metric_of_each_data_type_the_cut_falls_in() {
        let original = metric_list(&metrics());
        // Cutting after point 2i + 1 falls inside metric i (gauge, sum, histogram,
        // exponential histogram, summary): it becomes two metrics with the same metadata,
        // one point each.
        for (i, m) in original.iter().take(5).enumerate() {
            let n = 2 * i + 1;
            let mut rest = metrics();
            let front = rest.take_items(n);
            let (front, rest) = (metric_list(&front), metric_list(&rest));
            let mut want_front = original[..i].to_vec();
            want_front.push(with_points(m, 0..1));
            let mut want_rest = vec![with_points(m, 1..2)];
            want_rest.extend_from_slice(&original[i + 1..]);
            assert_eq!(front, want_front, "{}", m.name);
            assert_eq!(rest, want_rest, "{}", m.name);
        }
        // Spelled out for a sum: name, description, unit, metadata, temporality and
        // monotonicity on both halves.
        let mut b = metrics();
        let front = metric_list(&b.take_items(3));
        let number = |t: u64| NumberDataPoint {
            time_unix_nano: t,
            attributes: vec![kv("point", &t.to_string())],
            ..Default::default()
        };
        let sum = |t: u64| Metric {
            name: "sum".into(),
            description: "sum described".into(),
            unit: "By".into(),
            metadata: vec![kv("meta", "sum")],
            data: Some(Data::Sum(Sum {
                data_points: vec![number(t)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
        };
        assert_eq!(front.last(), Some(&sum(2)));
        assert_eq!(metric_list(&b).first(), Some(&sum(3)));
        let Batch::Metrics(rm) = &b else {
            unreachable!()
        };
        assert_eq!(rm.len(), 2);
        assert_eq!(rm[0].resource, resource("r1"));
        assert_eq!(rm[0].schema_url, "https://schema/r1");
        assert_eq!(rm[0].scope_metrics[0].scope, scope("s1"));
        assert_eq!(rm[0].scope_metrics[0].schema_url, "https://schema/s1");
    }

    fn logs() -> Batch {
        let records = |names: &[&str]| -> Vec<LogRecord> {
            names
                .iter()
                .map(|n| LogRecord {
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(n.to_string())),
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let rl = |r: &str, scopes: Vec<(&str, Vec<LogRecord>)>| ResourceLogs {
            resource: resource(r),
            scope_logs: scopes
                .into_iter()
                .map(|(s, log_records)| ScopeLogs {
                    scope: scope(s),
                    log_records,
                    schema_url: format!("https://schema/{s}"),
                })
                .collect(),
            schema_url: format!("https://schema/{r}"),
        };
        Batch::Logs(vec![
            rl("r1", vec![("s1", records(&["l1", "l2", "l3"]))]),
            rl(
                "r2",
                vec![("s2", records(&["m1"])), ("s3", records(&["n1", "n2"]))],
            ),
        ])
    }

    fn log_bodies(b: &Batch) -> Vec<String> {
        let Batch::Logs(rl) = b else {
            panic!("not logs")
        };
        rl.iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|l| match l.body.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("unexpected body {other:?}"),
            })
            .collect()
    }

    #[test]
    fn take_items_cuts_log_records_at_every_position_keeping_order_and_context() {
        check_every_cut(&logs());
        let mut b = logs();
        let front = b.take_items(2);
        assert_eq!(log_bodies(&front), ["l1", "l2"]);
        assert_eq!(log_bodies(&b), ["l3", "m1", "n1", "n2"]);
        let mut b = logs();
        let front = b.take_items(5);
        assert_eq!(log_bodies(&front), ["l1", "l2", "l3", "m1", "n1"]);
        assert_eq!(log_bodies(&b), ["n2"]);
        let (Batch::Logs(front), Batch::Logs(rest)) = (&front, &b) else {
            unreachable!()
        };
        assert_eq!(front.len(), 2);
        assert_eq!(front[1].scope_logs.len(), 2);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].resource, resource("r2"));
        assert_eq!(rest[0].schema_url, "https://schema/r2");
        assert_eq!(rest[0].scope_logs.len(), 1);
        assert_eq!(rest[0].scope_logs[0].scope, scope("s3"));
        assert_eq!(rest[0].scope_logs[0].schema_url, "https://schema/s3");
    }

    // ---- encoded_len, split_to_fit ----

    #[test]
    fn encoded_len_is_the_request_length_and_adds_up() {
        for b in [traces(), metrics(), logs(), Batch::empty(Signal::Traces)] {
            assert_eq!(b.encoded_len(), b.encode_request().len());
            let mut two = b.clone();
            two.append(b.clone()).unwrap();
            assert_eq!(two.encoded_len(), 2 * b.encoded_len());
        }
    }

    /// `b` split under `max`: every piece's length is right and within `max` (or it is one
    /// item that alone is not), the pieces hold every item in order and in context, none has
    /// an empty entry, and two neighbours would not have fitted together (greedy packing; the
    /// bound is a few bytes of length prefixes above the exact length).
    fn check_split(b: &Batch, max: usize) -> Vec<(Batch, usize)> {
        let pieces = b.clone().split_to_fit(max);
        let mut items = Vec::new();
        for (p, len) in &pieces {
            assert_eq!(*len, p.encoded_len(), "max={max}");
            assert!(
                *len <= max || p.item_count() == 1,
                "max={max}: a piece of {} items is {len} bytes",
                p.item_count()
            );
            assert_no_empty_entries(p);
            items.extend(items_in_context(p));
        }
        assert_eq!(items, items_in_context(b), "max={max}");
        for pair in pieces.windows(2) {
            let slack = 4 * prost::encoding::encoded_len_varint(max as u64);
            assert!(
                pair[0].1 + pair[1].1 + slack > max,
                "max={max}: {} + {} bytes would have fitted in one piece",
                pair[0].1,
                pair[1].1
            );
        }
        pieces
    }

    #[test]
    fn split_to_fit_returns_a_batch_that_fits_untouched() {
        let b = traces();
        let len = b.encoded_len();
        assert_eq!(b.clone().split_to_fit(len), vec![(b.clone(), len)]);
        assert_eq!(b.clone().split_to_fit(usize::MAX), vec![(b, len)]);
        let empty = Batch::empty(Signal::Logs);
        assert_eq!(empty.clone().split_to_fit(0), vec![(empty, 0)]);
    }

    #[test]
    fn split_to_fit_packs_every_signal_under_every_limit() {
        for b in [traces(), metrics(), logs()] {
            let total = b.encoded_len();
            let smallest_alone = check_split(&b, 0)
                .iter()
                .map(|(_, len)| *len)
                .max()
                .unwrap();
            for max in (0..=total + 1).step_by(3) {
                let pieces = check_split(&b, max);
                if max >= smallest_alone {
                    assert!(
                        pieces.iter().all(|(_, len)| *len <= max),
                        "{:?} max={max}",
                        b.signal()
                    );
                }
            }
            // No limit: one item per piece.
            assert_eq!(check_split(&b, 0).len(), b.item_count());
        }
    }

    fn big_span(name: &str, bytes: usize) -> Span {
        Span {
            name: name.into(),
            attributes: vec![kv("payload", &"x".repeat(bytes))],
            ..Default::default()
        }
    }

    #[test]
    fn five_one_mib_spans_under_four_mib_are_cut_three_and_two() {
        const MIB: usize = 1024 * 1024;
        let spans: Vec<Span> = (0..5).map(|i| big_span(&format!("s{i}"), MIB)).collect();
        let b = Batch::Traces(vec![ResourceSpans {
            resource: resource("trainer"),
            scope_spans: vec![ScopeSpans {
                scope: scope("s"),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]);
        assert!(b.encoded_len() > 5 * MIB);
        let pieces = check_split(&b, 4 * MIB);
        let sizes: Vec<(usize, usize)> = pieces
            .iter()
            .map(|(p, len)| (p.item_count(), *len))
            .collect();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert_eq!((sizes[0].0, sizes[1].0), (3, 2), "{sizes:?}");
        assert!(sizes.iter().all(|(_, len)| *len <= 4 * MIB), "{sizes:?}");
    }

    #[test]
    fn an_item_too_large_alone_comes_out_alone_between_the_others() {
        let b = Batch::Traces(vec![rs(
            "r1",
            vec![ScopeSpans {
                scope: scope("s1"),
                spans: vec![
                    big_span("a", 100),
                    big_span("b", 100),
                    big_span("huge", 5000),
                    big_span("c", 100),
                ],
                schema_url: String::new(),
            }],
        )]);
        let pieces = check_split(&b, 1000);
        let names: Vec<Vec<String>> = pieces.iter().map(|(p, _)| span_names(p)).collect();
        assert_eq!(names, [vec!["a", "b"], vec!["huge"], vec!["c"]]);
        assert!(pieces[1].1 > 1000);
        let Batch::Traces(rs) = &pieces[1].0 else {
            unreachable!()
        };
        assert_eq!(rs[0].resource, resource("r1"));
        assert_eq!(rs[0].scope_spans[0].scope, scope("s1"));
    }

    #[test]
    fn split_to_fit_keeps_item_less_entries() {
        let b = Batch::Traces(vec![
            rs("r1", vec![ss("s1", &["a", "b", "c"])]),
            rs("e1", vec![]),
        ]);
        let one = Batch::Traces(vec![rs("r1", vec![ss("s1", &["a"])])]).encoded_len();
        let pieces = b.clone().split_to_fit(one);
        let resources: usize = pieces.iter().map(|(p, _)| p.resource_count()).sum();
        assert_eq!(resources, 4, "{pieces:?}");
        let Batch::Traces(last) = &pieces.last().unwrap().0 else {
            unreachable!()
        };
        assert_eq!(last.last().unwrap().resource, resource("e1"));
        let names: Vec<String> = pieces.iter().flat_map(|(p, _)| span_names(p)).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
