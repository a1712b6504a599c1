//! Requests kept as received: OTLP spans, log records and metric points that stay the
//! protobuf bytes they arrived as.
//!
//! A forwarding collector has no need to own every span as a tree of strings and vectors:
//! routing, counting, identity and enrichment read the *resource* and nothing below it. So
//! [`RawBatch::parse`] decodes each resource entry's `resource` (which processors read and
//! change) and keeps each scope entry (`ScopeSpans` / `ScopeLogs` / `ScopeMetrics`) as a slice
//! of the received request's buffer, shared, not copied. What leaves is the resource
//! re-encoded and the scope bytes copied once into the outgoing request: no span is decoded,
//! allocated, dropped or re-encoded on the way.
//!
//! Kept bytes are checked first, all the way down, against the OTLP schema as prost decodes
//! it (field numbers, wire types, length prefixes, UTF-8 of strings, packed repeated fields,
//! nesting depth), and each span's, link's, log record's and exemplar's ids against the rules
//! in the receivers' `validate` module; items are counted on the way (a metric's points
//! inside its one data message). Anything the walker is not sure of — an unknown field, a
//! group, an id to refuse or rewrite, a metric with two `data` fields — makes `parse` answer
//! `None`, and the caller decodes the request with prost as before, which then refuses,
//! rewrites or keeps exactly as it always did. So a request kept raw is one that prost would
//! have decoded unchanged, and a backend decodes the forwarded bytes to the same items it
//! would have got from the decoded path: one client's bad span can never break a merged
//! request.
//!
//! Stages that read items (file and debug exporters, Prometheus, a rollout join of log
//! records) decode with [`Batch::into_decoded`]; a batch cut inside a scope entry has only
//! that entry decoded and encoded again.

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::signal::{Batch, Signal};

/// A batch of spans or log records kept as received: see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    signal: Signal,
    /// The resource entries, in order.
    pub resources: Vec<RawResource>,
}

/// One resource entry (`ResourceSpans` / `ResourceLogs`): its resource decoded, its scope
/// entries as bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawResource {
    /// The entry's `resource`, which processors read and change.
    pub resource: Option<Resource>,
    /// The entry's scope entries, as received.
    scopes: Vec<RawScope>,
    /// The entry's `schema_url`.
    pub schema_url: String,
}

/// One scope entry (`ScopeSpans` / `ScopeLogs`) as the protobuf message's bytes, checked,
/// with the number of items (spans / log records) it holds.
#[derive(Debug, Clone, PartialEq)]
struct RawScope {
    bytes: Bytes,
    items: usize,
}

/// Deepest message nesting the walker follows (prost allows 100; deeper requests go to prost).
const MAX_DEPTH: u32 = 64;

impl RawBatch {
    /// `request` (an `ExportTraceServiceRequest` or `ExportLogsServiceRequest`) kept raw, when
    /// every part of it is plainly valid; `None` when it must be decoded (see the module doc:
    /// malformed, an id to refuse or rewrite, an unknown field, or a metrics request).
    pub fn parse(signal: Signal, request: &Bytes) -> Option<RawBatch> {
        Self::parse_with(signal, request, Check::Full)
    }

    /// `request` kept raw without checking it again: for a request this process parsed
    /// before and read back from its write-ahead log (checksummed), only the resources are
    /// decoded and the items counted. `None` only for what `parse` would not have kept.
    pub fn parse_logged(signal: Signal, request: &Bytes) -> Option<RawBatch> {
        Self::parse_with(signal, request, Check::Count)
    }

    fn parse_with(signal: Signal, request: &Bytes, check: Check) -> Option<RawBatch> {
        let scope = match signal {
            Signal::Traces => Schema::ScopeSpans,
            Signal::Logs => Schema::ScopeLogs,
            Signal::Metrics => Schema::ScopeMetrics,
        };
        let mut resources = Vec::new();
        let mut r = Reader::new(request);
        while !r.done() {
            let (field, wire) = r.key()?;
            if field != 1 || wire != LEN {
                return None;
            }
            let range = r.len_delimited_range()?;
            resources.push(RawResource::parse(&request.slice(range), scope, check)?);
        }
        Some(RawBatch { signal, resources })
    }

    /// The signal (traces or logs).
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Spans or log records held.
    pub fn item_count(&self) -> usize {
        self.resources.iter().map(RawResource::item_count).sum()
    }

    /// The length of [`encode_request`](Self::encode_request)'s output.
    pub fn encoded_len(&self) -> usize {
        self.resources.iter().map(|r| field_len(r.body_len())).sum()
    }

    /// The OTLP request of this batch, protobuf-encoded: each resource entry as field 1.
    pub fn encode_request(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        for r in &self.resources {
            encode_key(1, WireType::LengthDelimited, &mut buf);
            encode_varint(r.body_len() as u64, &mut buf);
            r.encode_body(&mut buf);
        }
        buf
    }

    /// The same batch as prost types (`Batch::Traces` / `Batch::Logs`).
    pub fn decode(self) -> Batch {
        match self.signal {
            Signal::Traces => Batch::Traces(
                self.resources
                    .into_iter()
                    .map(|r| ResourceSpans {
                        scope_spans: r.decode_scopes(),
                        resource: r.resource,
                        schema_url: r.schema_url,
                    })
                    .collect(),
            ),
            Signal::Logs => Batch::Logs(
                self.resources
                    .into_iter()
                    .map(|r| ResourceLogs {
                        scope_logs: r.decode_scopes(),
                        resource: r.resource,
                        schema_url: r.schema_url,
                    })
                    .collect(),
            ),
            Signal::Metrics => Batch::Metrics(
                self.resources
                    .into_iter()
                    .map(|r| ResourceMetrics {
                        scope_metrics: r.decode_scopes(),
                        resource: r.resource,
                        schema_url: r.schema_url,
                    })
                    .collect(),
            ),
        }
    }

    /// `batch` (same signal, decoded) appended, its scopes encoded; `Err(batch)` when its
    /// signal differs or it is raw (append raw batches with [`append`](Self::append)).
    pub fn append_decoded(&mut self, batch: Batch) -> Result<(), Batch> {
        match (self.signal, batch) {
            (Signal::Traces, Batch::Traces(rs)) => {
                self.resources.extend(rs.into_iter().map(|r| {
                    RawResource::encoded(r.resource, r.schema_url, &r.scope_spans, |s| {
                        s.spans.len()
                    })
                }));
            }
            (Signal::Logs, Batch::Logs(rs)) => {
                self.resources.extend(rs.into_iter().map(|r| {
                    RawResource::encoded(r.resource, r.schema_url, &r.scope_logs, |s| {
                        s.log_records.len()
                    })
                }));
            }
            (Signal::Metrics, Batch::Metrics(rs)) => {
                self.resources.extend(rs.into_iter().map(|r| {
                    RawResource::encoded(r.resource, r.schema_url, &r.scope_metrics, |s| {
                        s.metrics.iter().map(crate::metric_point_count).sum()
                    })
                }));
            }
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// `other`'s resources appended; `Err(other)` when its signal differs.
    pub fn append(&mut self, other: RawBatch) -> Result<(), RawBatch> {
        if other.signal != self.signal {
            return Err(other);
        }
        self.resources.extend(other.resources);
        Ok(())
    }

    /// Keeps the first `at` resource entries, returns the rest.
    pub fn split_off_resources(&mut self, at: usize) -> RawBatch {
        RawBatch {
            signal: self.signal,
            resources: self.resources.split_off(at.min(self.resources.len())),
        }
    }

    /// Moves the first `n` items out, as [`Batch::take_items`] does (same rules for entries
    /// cut in two and for item-less entries). Whole scope entries move as bytes; only a scope
    /// entry the cut falls inside is decoded, cut, and its two halves encoded again.
    pub fn take_items(&mut self, n: usize) -> RawBatch {
        let signal = self.signal;
        let resources =
            crate::signal::take_front(&mut self.resources, n, RawResource::item_count, |r, k| {
                RawResource {
                    resource: r.resource.clone(),
                    scopes: crate::signal::take_front(
                        &mut r.scopes,
                        k,
                        |s| s.items,
                        |s, k| s.take_front(signal, k),
                    ),
                    schema_url: r.schema_url.clone(),
                }
            });
        RawBatch { signal, resources }
    }
}

impl RawResource {
    fn parse(entry: &Bytes, scope: Schema, check: Check) -> Option<RawResource> {
        let mut out = RawResource::default();
        let mut r = Reader::new(entry);
        while !r.done() {
            let (field, wire) = r.key()?;
            if wire != LEN {
                return None;
            }
            let range = r.len_delimited_range()?;
            match field {
                1 => out
                    .resource
                    .get_or_insert_with(Resource::default)
                    .merge(&entry[range])
                    .ok()?,
                2 => {
                    let bytes = entry.slice(range);
                    let items = walk(&bytes, scope, 3, check).ok()?;
                    out.scopes.push(RawScope { bytes, items });
                }
                3 => out.schema_url = std::str::from_utf8(&entry[range]).ok()?.to_owned(),
                _ => return None,
            }
        }
        Some(out)
    }

    /// A resource entry from decoded scope entries, each encoded once.
    fn encoded<S: Message>(
        resource: Option<Resource>,
        schema_url: String,
        scopes: &[S],
        items: impl Fn(&S) -> usize,
    ) -> RawResource {
        RawResource {
            resource,
            scopes: scopes
                .iter()
                .map(|s| RawScope {
                    bytes: Bytes::from(s.encode_to_vec()),
                    items: items(s),
                })
                .collect(),
            schema_url,
        }
    }

    /// Items in this entry's scopes.
    pub fn item_count(&self) -> usize {
        self.scopes.iter().map(|s| s.items).sum()
    }

    /// The entry's message length (without its own tag and length prefix).
    fn body_len(&self) -> usize {
        self.resource
            .as_ref()
            .map_or(0, |r| prost::encoding::message::encoded_len(1, r))
            + self
                .scopes
                .iter()
                .map(|s| field_len(s.bytes.len()))
                .sum::<usize>()
            + if self.schema_url.is_empty() {
                0
            } else {
                prost::encoding::string::encoded_len(3, &self.schema_url)
            }
    }

    fn encode_body(&self, buf: &mut Vec<u8>) {
        if let Some(r) = &self.resource {
            prost::encoding::message::encode(1, r, buf);
        }
        for s in &self.scopes {
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(s.bytes.len() as u64, buf);
            buf.extend_from_slice(&s.bytes);
        }
        if !self.schema_url.is_empty() {
            prost::encoding::string::encode(3, &self.schema_url, buf);
        }
    }

    /// The scope entries decoded. They were checked when kept, so prost decodes them; one
    /// that would not (a walker bug) is logged and left out rather than taking the rest down.
    fn decode_scopes<S: Message + Default>(&self) -> Vec<S> {
        self.scopes
            .iter()
            .filter_map(|s| match S::decode(s.bytes.clone()) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(error = %e, items = s.items, "kept scope entry does not decode; dropped");
                    None
                }
            })
            .collect()
    }
}

impl RawScope {
    /// Moves the first `k` items (`0 < k < items`) into a new scope entry, cut as
    /// [`Batch::take_items`] cuts (the same scope and `schema_url` on both sides; for metrics,
    /// a metric cut in two keeps its name, type and temporality on both).
    fn take_front(&mut self, signal: Signal, k: usize) -> RawScope {
        fn one<R, S: Message + Default>(
            bytes: &Bytes,
            wrap: impl FnOnce(S) -> R,
        ) -> Option<Vec<R>> {
            Some(vec![wrap(S::decode(bytes.clone()).ok()?)])
        }
        let back = match signal {
            Signal::Traces => one(&self.bytes, |s| ResourceSpans {
                scope_spans: vec![s],
                ..Default::default()
            })
            .map(Batch::Traces),
            Signal::Logs => one(&self.bytes, |s| ResourceLogs {
                scope_logs: vec![s],
                ..Default::default()
            })
            .map(Batch::Logs),
            Signal::Metrics => one(&self.bytes, |s| ResourceMetrics {
                scope_metrics: vec![s],
                ..Default::default()
            })
            .map(Batch::Metrics),
        };
        let Some(mut back) = back else {
            // Checked when kept, so unreachable; leave everything where it is.
            tracing::error!(
                items = self.items,
                "kept scope entry does not decode; not cut"
            );
            return RawScope {
                bytes: Bytes::new(),
                items: 0,
            };
        };
        let front = back.take_items(k);
        self.items = back.item_count();
        self.bytes = only_scope(&back);
        RawScope {
            items: front.item_count(),
            bytes: only_scope(&front),
        }
    }
}

/// The encoded scope entry of a decoded batch of one resource entry with one scope entry
/// (what [`RawScope::take_front`] cuts); empty otherwise.
fn only_scope(batch: &Batch) -> Bytes {
    let encoded = match batch {
        Batch::Traces(rs) => rs
            .first()
            .and_then(|r| r.scope_spans.first())
            .map(Message::encode_to_vec),
        Batch::Logs(rs) => rs
            .first()
            .and_then(|r| r.scope_logs.first())
            .map(Message::encode_to_vec),
        Batch::Metrics(rs) => rs
            .first()
            .and_then(|r| r.scope_metrics.first())
            .map(Message::encode_to_vec),
        Batch::Raw(_) => None,
    };
    encoded.map(Bytes::from).unwrap_or_default()
}

/// A length-delimited field of `len` bytes with a one-byte tag (fields 1 to 15).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Wire type numbers.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// The messages the walker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    ScopeSpans,
    ScopeLogs,
    ScopeMetrics,
    Metric,
    /// `Gauge` and `Summary`: data points only.
    Points(Point),
    /// `Sum`, `Histogram`, `ExponentialHistogram`: data points, temporality (and monotonicity).
    Aggregated(Point),
    NumberDataPoint,
    HistogramDataPoint,
    ExponentialHistogramDataPoint,
    Buckets,
    SummaryDataPoint,
    ValueAtQuantile,
    Exemplar,
    Scope,
    Span,
    Event,
    Link,
    Status,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A metric's data point type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Number,
    Histogram,
    Exponential,
    Summary,
}

impl Point {
    fn schema(self) -> Schema {
        match self {
            Point::Number => Schema::NumberDataPoint,
            Point::Histogram => Schema::HistogramDataPoint,
            Point::Exponential => Schema::ExponentialHistogramDataPoint,
            Point::Summary => Schema::SummaryDataPoint,
        }
    }
}

/// How a known field is encoded.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// int32, uint32, int64, bool, enum: any varint.
    Varint,
    Fixed64,
    Fixed32,
    /// bytes: any length.
    Bytes,
    /// string: UTF-8.
    Str,
    Msg(Schema),
    /// repeated fixed64 / double: unpacked, or packed (a multiple of 8 bytes).
    Repeated64,
    /// repeated uint64: unpacked, or packed varints.
    RepeatedVarint,
}

/// The encoding of `field` of `schema`, as opentelemetry-proto's generated types declare it;
/// `None` for a field they do not know.
fn kind(schema: Schema, field: u32) -> Option<Kind> {
    use Kind::{Bytes, Fixed32, Fixed64, Msg, Repeated64, RepeatedVarint, Str, Varint};
    use Schema as S;
    Some(match (schema, field) {
        (S::ScopeSpans | S::ScopeLogs | S::ScopeMetrics, 1) => Msg(S::Scope),
        (S::ScopeSpans, 2) => Msg(S::Span),
        (S::ScopeLogs, 2) => Msg(S::LogRecord),
        (S::ScopeMetrics, 2) => Msg(S::Metric),
        (S::ScopeSpans | S::ScopeLogs | S::ScopeMetrics, 3) => Str,
        (S::Metric, 1..=3) => Str,
        (S::Metric, 5) => Msg(S::Points(Point::Number)),
        (S::Metric, 7) => Msg(S::Aggregated(Point::Number)),
        (S::Metric, 9) => Msg(S::Aggregated(Point::Histogram)),
        (S::Metric, 10) => Msg(S::Aggregated(Point::Exponential)),
        (S::Metric, 11) => Msg(S::Points(Point::Summary)),
        (S::Metric, 12) => Msg(S::KeyValue),
        (S::Points(p) | S::Aggregated(p), 1) => Msg(p.schema()),
        (S::Aggregated(_), 2) => Varint,
        // `is_monotonic`, of a Sum only.
        (S::Aggregated(Point::Number), 3) => Varint,
        (S::NumberDataPoint, 7) | (S::HistogramDataPoint, 9) => Msg(S::KeyValue),
        (S::ExponentialHistogramDataPoint, 1) | (S::SummaryDataPoint, 7) => Msg(S::KeyValue),
        (
            S::NumberDataPoint
            | S::HistogramDataPoint
            | S::ExponentialHistogramDataPoint
            | S::SummaryDataPoint,
            2 | 3,
        ) => Fixed64,
        (S::NumberDataPoint, 4 | 6) => Fixed64,
        (S::NumberDataPoint, 5) | (S::HistogramDataPoint, 8) => Msg(S::Exemplar),
        (S::ExponentialHistogramDataPoint, 11) => Msg(S::Exemplar),
        (S::NumberDataPoint, 8) | (S::HistogramDataPoint, 10) => Varint,
        (S::ExponentialHistogramDataPoint, 10) | (S::SummaryDataPoint, 8) => Varint,
        (S::HistogramDataPoint, 4 | 5 | 11 | 12) => Fixed64,
        (S::HistogramDataPoint, 6 | 7) => Repeated64,
        (S::ExponentialHistogramDataPoint, 4 | 5 | 7 | 12 | 13 | 14) => Fixed64,
        (S::ExponentialHistogramDataPoint, 6) => Varint,
        (S::ExponentialHistogramDataPoint, 8 | 9) => Msg(S::Buckets),
        (S::Buckets, 1) => Varint,
        (S::Buckets, 2) => RepeatedVarint,
        (S::SummaryDataPoint, 4 | 5) => Fixed64,
        (S::SummaryDataPoint, 6) => Msg(S::ValueAtQuantile),
        (S::ValueAtQuantile, 1 | 2) => Fixed64,
        (S::Exemplar, 7) => Msg(S::KeyValue),
        (S::Exemplar, 2 | 3 | 6) => Fixed64,
        (S::Exemplar, 4 | 5) => Bytes,
        (S::Scope, 1 | 2) => Str,
        (S::Scope, 3) => Msg(S::KeyValue),
        (S::Scope, 4) => Varint,
        (S::Span, 1 | 2 | 4) => Bytes,
        (S::Span, 3 | 5) => Str,
        (S::Span, 6 | 10 | 12 | 14) => Varint,
        (S::Span, 7 | 8) => Fixed64,
        (S::Span, 9) => Msg(S::KeyValue),
        (S::Span, 11) => Msg(S::Event),
        (S::Span, 13) => Msg(S::Link),
        (S::Span, 15) => Msg(S::Status),
        (S::Span, 16) => Fixed32,
        (S::Event, 1) => Fixed64,
        (S::Event, 2) => Str,
        (S::Event, 3) => Msg(S::KeyValue),
        (S::Event, 4) => Varint,
        (S::Link, 1 | 2) => Bytes,
        (S::Link, 3) => Str,
        (S::Link, 4) => Msg(S::KeyValue),
        (S::Link, 5) => Varint,
        (S::Link, 6) => Fixed32,
        (S::Status, 2) => Str,
        (S::Status, 3) => Varint,
        (S::LogRecord, 1 | 11) => Fixed64,
        (S::LogRecord, 2 | 7) => Varint,
        (S::LogRecord, 3 | 12) => Str,
        (S::LogRecord, 5) => Msg(S::AnyValue),
        (S::LogRecord, 6) => Msg(S::KeyValue),
        (S::LogRecord, 8) => Fixed32,
        (S::LogRecord, 9 | 10) => Bytes,
        (S::KeyValue, 1) => Str,
        (S::KeyValue, 2) => Msg(S::AnyValue),
        (S::KeyValue, 3) => Varint,
        (S::AnyValue, 1) => Str,
        (S::AnyValue, 2 | 3 | 8) => Varint,
        (S::AnyValue, 4) => Fixed64,
        (S::AnyValue, 5) => Msg(S::ArrayValue),
        (S::AnyValue, 6) => Msg(S::KeyValueList),
        (S::AnyValue, 7) => Bytes,
        (S::ArrayValue, 1) => Msg(S::AnyValue),
        (S::KeyValueList, 1) => Msg(S::KeyValue),
        _ => return None,
    })
}

/// The walker is not sure: decode with prost instead.
#[derive(Debug)]
struct Unsure;

/// The ids a span, link or log record carried (the last of each field, as a decoder keeps).
#[derive(Default)]
struct Ids<'a> {
    trace: &'a [u8],
    span: &'a [u8],
    parent: &'a [u8],
}

impl<'a> Ids<'a> {
    fn note(&mut self, schema: Schema, field: u32, value: &'a [u8]) {
        match (schema, field) {
            (Schema::Span | Schema::Link, 1) | (Schema::LogRecord, 9) | (Schema::Exemplar, 5) => {
                self.trace = value
            }
            (Schema::Span | Schema::Link, 2) | (Schema::LogRecord, 10) | (Schema::Exemplar, 4) => {
                self.span = value
            }
            (Schema::Span, 4) => self.parent = value,
            _ => {}
        }
    }

    /// Whether these ids pass unchanged (the receivers' `validate` rules): a span's and a
    /// link's are 16 and 8 bytes, not all zero; a span's parent is empty or 8 bytes, not all
    /// zero (8 zero bytes are rewritten to empty, by prost's path); a log record's are empty
    /// or 16 and 8 bytes, not all zero (all zero are rewritten to empty).
    fn pass(&self, schema: Schema) -> bool {
        let set = |id: &[u8], len: usize| id.len() == len && id.iter().any(|b| *b != 0);
        match schema {
            Schema::Span => {
                set(self.trace, 16)
                    && set(self.span, 8)
                    && (self.parent.is_empty() || set(self.parent, 8))
            }
            Schema::Link => set(self.trace, 16) && set(self.span, 8),
            Schema::LogRecord | Schema::Exemplar => {
                (self.trace.is_empty() || set(self.trace, 16))
                    && (self.span.is_empty() || set(self.span, 8))
            }
            _ => true,
        }
    }
}

/// How much [`walk`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Everything, down to each string's UTF-8 and each id.
    Full,
    /// Only what counting items needs (bytes this process checked before, read back from its
    /// write-ahead log under a checksum).
    Count,
}

/// Checks `buf` as a `schema` message, all the way down ([`Check::Full`]); returns how many
/// items it holds (a scope entry's spans, log records or metric points).
fn walk(buf: &[u8], schema: Schema, depth: u32, check: Check) -> Result<usize, Unsure> {
    if depth > MAX_DEPTH {
        return Err(Unsure);
    }
    let mut ids = Ids::default();
    let mut items = 0;
    let mut data_fields = 0;
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wire) = r.key().ok_or(Unsure)?;
        match (kind(schema, field).ok_or(Unsure)?, wire) {
            (Kind::Varint, VARINT) => {
                r.varint().ok_or(Unsure)?;
            }
            (Kind::Fixed64, FIXED64) => r.skip(8).ok_or(Unsure)?,
            (Kind::Fixed32, FIXED32) => r.skip(4).ok_or(Unsure)?,
            (Kind::Bytes, LEN) => {
                let v = r.len_delimited().ok_or(Unsure)?;
                ids.note(schema, field, v);
            }
            (Kind::Str, LEN) => {
                let v = r.len_delimited().ok_or(Unsure)?;
                if check == Check::Full {
                    std::str::from_utf8(v).map_err(|_| Unsure)?;
                }
            }
            (Kind::Msg(inner), LEN) => {
                let v = r.len_delimited().ok_or(Unsure)?;
                // Counting needs the inside of metrics and their data messages only.
                let counted = matches!(
                    inner,
                    Schema::Metric | Schema::Points(_) | Schema::Aggregated(_)
                );
                let inner_items = if check == Check::Full || counted {
                    walk(v, inner, depth + 1, check)?
                } else {
                    0
                };
                items += match (schema, inner) {
                    // A scope entry's spans and log records; a data message's points.
                    (Schema::ScopeSpans | Schema::ScopeLogs, Schema::Span | Schema::LogRecord) => 1,
                    (Schema::Points(_) | Schema::Aggregated(_), _) if field == 1 => 1,
                    // A scope entry's metrics' points; a metric's data message's points.
                    (Schema::ScopeMetrics, Schema::Metric) => inner_items,
                    (Schema::Metric, Schema::Points(_) | Schema::Aggregated(_)) => {
                        // `data` is a oneof: a second one replaces or merges into the
                        // first, which prost knows how to count.
                        data_fields += 1;
                        inner_items
                    }
                    _ => 0,
                };
            }
            (Kind::Repeated64, FIXED64) => r.skip(8).ok_or(Unsure)?,
            (Kind::Repeated64, LEN) => {
                if r.len_delimited().ok_or(Unsure)?.len() % 8 != 0 {
                    return Err(Unsure);
                }
            }
            (Kind::RepeatedVarint, VARINT) => {
                r.varint().ok_or(Unsure)?;
            }
            (Kind::RepeatedVarint, LEN) => {
                let mut packed = Reader::new(r.len_delimited().ok_or(Unsure)?);
                while !packed.done() {
                    packed.varint().ok_or(Unsure)?;
                }
            }
            _ => return Err(Unsure),
        }
    }
    if (check == Check::Count || ids.pass(schema)) && data_fields <= 1 {
        Ok(items)
    } else {
        Err(Unsure)
    }
}

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A varint of at most 10 bytes whose last byte leaves no bit past 64, as prost reads.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// A field's number (1 ..= 2^29 - 1) and wire type.
    fn key(&mut self) -> Option<(u32, u8)> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok()?;
        (1..(1 << 29))
            .contains(&field)
            .then_some((field, (key & 7) as u8))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        (end <= self.buf.len()).then(|| self.pos = end)
    }

    fn len_delimited_range(&mut self) -> Option<std::ops::Range<usize>> {
        let len = usize::try_from(self.varint()?).ok()?;
        let start = self.pos;
        self.skip(len)?;
        Some(start..self.pos)
    }

    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let range = self.len_delimited_range()?;
        Some(&self.buf[range])
    }
}

#[cfg(test)]
mod tests;
