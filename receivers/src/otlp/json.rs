//! OTLP/JSON decoding: opentelemetry-proto's serde mapping, completed where it reads less
//! than the protobuf JSON mapping that OTLP/JSON follows.
//!
//! A body is first decoded with opentelemetry-proto 0.33's mapping alone. That result stands
//! when it decoded, lost no value (below) and no member name of the body holds an
//! underscore or an escape sequence (a byte scan, [`has_unusual_name`]), which is so for
//! every body written as the OTLP specification asks; the canonical body costs one scan
//! extra. Otherwise [`decode`] rewrites the body's JSON tree into the form the mapping reads
//! and decodes that.
//!
//! What the mapping misses, and what [`normalise`] does about it (rules keyed by member
//! name, which is safe because OTLP's JSON names mean one thing wherever they occur):
//!
//! - **Original proto field names.** The mapping reads only lowerCamelCase keys and ignores
//!   any other key as an unknown field, so `{"trace_id": ...}` or `{"resource_spans": ...}`
//!   was answered 200 with the data dropped. The OTLP specification says senders MUST use
//!   lowerCamelCase; the protobuf JSON mapping says parsers accept both the proto field name
//!   and its lowerCamelCase JSON name, and so do protobuf's parsers and the OpenTelemetry
//!   Collector. hpcotel accepts both: a key made of lowercase letters, digits and
//!   underscores is the proto name of the field whose JSON name is its lowerCamelCase form
//!   (`trace_id` -> `traceId`, as protoc derives JSON names). A field given under both
//!   spellings in one object is a 400 naming both and where.
//! - **Members protobuf's printer leaves out.** The mapping requires `values` in an
//!   `ArrayValue` and a `KeyValueList`, `key` in a `KeyValue`, and every field of an
//!   `EntityRef`, but protobuf's printer omits empty fields: an empty array or map attribute
//!   is `{"arrayValue":{}}` / `{"kvlistValue":{}}`, and failed the whole request. A missing
//!   one is the field's default (an empty list or string).
//! - **`null`**, which the protobuf JSON mapping reads as the field's default; the mapping
//!   fails on it for strings, numbers and lists. A `null` member is dropped.
//! - **Enum names** (`"kind": "SPAN_KIND_SERVER"`), which protobuf's printer writes by
//!   default. The OTLP specification says senders MUST write the integer; protobuf's parsers
//!   and the OpenTelemetry Collector accept either, as hpcotel now does for `kind`, `code`
//!   (span status), `severityNumber` and `aggregationTemporality`. An unknown name stays a
//!   400.
//! - **32-bit integers written as strings** (`"droppedAttributesCount": "3"`, `"flags": "1"`),
//!   which the protobuf JSON mapping allows for every integer; the mapping reads 64-bit ones
//!   only.
//! - **Doubles written as strings.** The protobuf JSON mapping writes a non-finite double as
//!   `"NaN"`, `"Infinity"` or `"-Infinity"` and allows any double as a string (`"2.5"`).
//!   opentelemetry-proto reads such strings only in a summary's `quantileValues`; elsewhere
//!   it fails on them, in one of two ways. Where a double is read directly (an `AnyValue`'s
//!   `doubleValue` in any attributes or a log body), the whole request fails to decode.
//!   Inside a metric, whose data and whose points' and exemplars' values are oneofs
//!   deserialized through `#[serde(flatten)]` into an `Option`, the error is swallowed: a
//!   gauge or sum point, or an exemplar, with a string `asDouble` silently loses its value,
//!   and a string `sum`, `min`, `max` or `zeroThreshold` of a histogram, exponential
//!   histogram or summary point (or a string `doubleValue` in a point's attributes)
//!   silently loses the metric's whole data. Such a loss (a metric, point or exemplar left
//!   without a value) also sends a body down the slow path. There:
//!   1. in a copy of the rewritten tree, every string under a double-valued key
//!      ([`DOUBLE_KEYS`]) that reads as a double becomes a number (the value itself when
//!      finite, a placeholder 0 when not, as a JSON number cannot be NaN or infinite), so
//!      that the request decodes;
//!   2. a walk over the decoded request beside the rewritten tree then puts back every
//!      double that was written as a string, so NaN stays NaN and ±Infinity stays
//!      ±Infinity, restores the values of points and exemplars, and reports what it could
//!      not read (naming the metric) instead of passing on a metric or point without its
//!      value.
//!
//! Unknown fields are ignored, as the OTLP specification requires of receivers (protobuf's
//! parsers would refuse them). Trace and span ids are hex (any case), as OTLP/JSON
//! specifies; the mapping refuses base64 or other text with a 400. 64-bit integers are read
//! as strings or numbers by the mapping itself.

use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, NumberDataPoint, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The keys of the double fields opentelemetry-proto cannot read from a string (a summary's
/// `quantile` and `value` it reads itself). No string-valued OTLP field has one of these
/// names; an unknown field that does is ignored by the decoding anyway.
const DOUBLE_KEYS: [&str; 6] = [
    "asDouble",
    "doubleValue",
    "sum",
    "min",
    "max",
    "zeroThreshold",
];

/// The keys of the 32-bit integer and enum fields, which opentelemetry-proto reads only from
/// a JSON number.
const INT32_KEYS: [&str; 10] = [
    "kind",
    "code",
    "severityNumber",
    "aggregationTemporality",
    "flags",
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "scale",
    "offset",
];

/// The keys whose value is a list of `KeyValue`s (besides a `kvlistValue`'s `values`).
const KEY_VALUE_LISTS: [&str; 3] = ["attributes", "filteredAttributes", "metadata"];

/// A location in a request, for error messages; built only when one is needed.
type Where<'a> = &'a dyn Fn() -> String;

/// An `Export*ServiceRequest` that [`decode`] can repair.
pub(super) trait Repair: DeserializeOwned {
    /// Whether the plain decoding may have dropped a value silently (a flattened oneof
    /// left empty); see the module docs.
    fn lost_values(&self) -> bool {
        false
    }

    /// Step 2 of the module docs: puts back the doubles `original` (the rewritten body's
    /// tree) holds as strings. `decodable` is the tree the request was decoded from.
    fn restore(&mut self, original: &Value, decodable: &Value) -> Result<(), String>;
}

/// Decodes the OTLP/JSON `body` of an `Export*ServiceRequest` called `name`, as the module
/// docs describe. Costs one byte scan extra for a body that decodes plainly without losing
/// a value.
pub(super) fn decode<T: Repair>(body: &[u8], name: &str) -> Result<T, String> {
    let bad = |e: &dyn fmt::Display| format!("could not decode {name} JSON: {e}");
    let plain = serde_json::from_slice::<T>(body);
    if let Ok(req) = &plain
        && !req.lost_values()
        && !has_unusual_name(body)
    {
        return plain.map_err(|e| bad(&e));
    }
    let mut original: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
    let rewritten = normalise(&mut original, Shape::Other, &Path::Root).map_err(|e| bad(&e))?;
    let mut decodable = original.clone();
    let mut req = if make_decodable(&mut decodable) | rewritten {
        T::deserialize(&decodable).map_err(|e| bad(&e))?
    } else {
        // Nothing to rewrite: the plain result stands (an error keeps its line and column);
        // the walk below still reports a value it lost.
        plain.map_err(|e| bad(&e))?
    };
    req.restore(&original, &decodable).map_err(|e| bad(&e))?;
    Ok(req)
}

/// Whether some member name in the JSON text `body` holds an underscore (a proto field
/// name such as `trace_id`) or an escape sequence (which could spell one, `trace\u005fid`).
/// Strings that are values (attribute keys, names) do not count: a member name is a string
/// followed by a colon.
fn has_unusual_name(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        let mut unusual = false;
        i += 1;
        while i < body.len() {
            match body[i] {
                b'"' => break,
                b'\\' => {
                    unusual = true;
                    i += 2;
                }
                b'_' => {
                    unusual = true;
                    i += 1;
                }
                _ => i += 1,
            }
        }
        i += 1;
        if unusual {
            let after = body.get(i..).unwrap_or_default();
            if after.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':') {
                return true;
            }
        }
    }
    false
}

/// A place in the body's JSON tree, for error messages.
enum Path<'a> {
    Root,
    Member(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("the request"),
            Path::Member(Path::Root, key) => f.write_str(key),
            Path::Member(parent, key) => write!(f, "{parent}.{key}"),
            Path::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// What an object of the tree is, as far as [`normalise`] needs to know: the messages whose
/// members opentelemetry-proto requires.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Other,
    /// An `arrayValue` (an `ArrayValue`).
    Array,
    /// A `kvlistValue` (a `KeyValueList`).
    KvList,
    KeyValue,
    EntityRef,
}

impl Shape {
    /// The members opentelemetry-proto requires of this message; each defaults to an empty
    /// list when it is plural, else to an empty string.
    fn required(self) -> &'static [&'static str] {
        match self {
            Shape::Other => &[],
            Shape::Array | Shape::KvList => &["values"],
            Shape::KeyValue => &["key"],
            Shape::EntityRef => &["schemaUrl", "type", "idKeys", "descriptionKeys"],
        }
    }

    /// The shape of the value, or of each item of the list, under member `key` of an
    /// object of this shape.
    fn of_member(self, key: &str) -> Shape {
        match key {
            "arrayValue" => Shape::Array,
            "kvlistValue" => Shape::KvList,
            "values" if self == Shape::KvList => Shape::KeyValue,
            "entityRefs" => Shape::EntityRef,
            k if KEY_VALUE_LISTS.contains(&k) => Shape::KeyValue,
            _ => Shape::Other,
        }
    }
}

/// The lowerCamelCase JSON name of `key` when `key` is a proto field name that differs from
/// it (`trace_id` -> `traceId`).
fn json_name(key: &str) -> Option<String> {
    let proto_name = key.contains('_')
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !proto_name {
        return None;
    }
    let mut name = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else {
            name.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        }
    }
    Some(name)
}

/// The number of enum value `name` of the enum field `key`.
fn enum_number(key: &str, name: &str) -> Option<i32> {
    match key {
        "kind" => SpanKind::from_str_name(name).map(|e| e as i32),
        "code" => StatusCode::from_str_name(name).map(|e| e as i32),
        "severityNumber" => SeverityNumber::from_str_name(name).map(|e| e as i32),
        "aggregationTemporality" => AggregationTemporality::from_str_name(name).map(|e| e as i32),
        _ => None,
    }
}

/// Rewrites `json`, an object of `shape` (or anything else) at `path`, into the form
/// opentelemetry-proto's mapping reads, as the module docs list; returns whether it changed
/// anything. Fails only on a field given under both its names.
fn normalise(json: &mut Value, shape: Shape, path: &Path) -> Result<bool, String> {
    match json {
        Value::Object(map) => normalise_object(map, shape, path),
        Value::Array(items) => {
            let mut changed = false;
            for (i, item) in items.iter_mut().enumerate() {
                changed |= normalise(item, shape, &Path::Item(path, i))?;
            }
            Ok(changed)
        }
        _ => Ok(false),
    }
}

fn normalise_object(
    map: &mut Map<String, Value>,
    shape: Shape,
    path: &Path,
) -> Result<bool, String> {
    let mut changed = false;
    let renames: Vec<(String, String)> = map
        .keys()
        .filter_map(|k| json_name(k).map(|name| (k.clone(), name)))
        .collect();
    for (proto_name, name) in renames {
        if map.contains_key(&name) {
            return Err(format!(
                "{path}: field given twice, as '{proto_name}' and as '{name}'"
            ));
        }
        let v = map.remove(&proto_name).unwrap_or_default();
        map.insert(name, v);
        changed = true;
    }
    let before = map.len();
    map.retain(|_, v| !v.is_null());
    changed |= map.len() != before;
    for key in shape.required() {
        if !map.contains_key(*key) {
            let empty = if key.ends_with('s') {
                Value::Array(Vec::new())
            } else {
                Value::String(String::new())
            };
            map.insert((*key).to_owned(), empty);
            changed = true;
        }
    }
    for (key, v) in map.iter_mut() {
        if let Value::String(s) = v
            && INT32_KEYS.contains(&key.as_str())
        {
            let number = enum_number(key, s)
                .map(i64::from)
                .or_else(|| s.parse().ok());
            if let Some(n) = number {
                *v = Value::from(n);
                changed = true;
            }
            continue;
        }
        changed |= normalise(v, shape.of_member(key), &Path::Member(path, key))?;
    }
    Ok(changed)
}

/// Step 1 of the module docs; returns whether it changed anything.
fn make_decodable(json: &mut Value) -> bool {
    match json {
        Value::Object(map) => {
            let mut changed = false;
            for (key, v) in map.iter_mut() {
                let double = match v {
                    Value::String(s) if DOUBLE_KEYS.contains(&key.as_str()) => parse_double(s),
                    _ => None,
                };
                if let Some(d) = double {
                    *v = Value::from(if d.is_finite() { d } else { 0.0 });
                    changed = true;
                } else {
                    changed |= make_decodable(v);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| make_decodable(v) | changed),
        _ => false,
    }
}

/// A double written as a string, per the protobuf JSON mapping.
fn parse_double(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // Rust also reads "inf" and "nan", and "1e999" as infinity: not doubles here.
        s => s.parse::<f64>().ok().filter(|d| d.is_finite()),
    }
}

fn invalid(where_: Where, field: &str, v: &Value) -> String {
    format!("{}: invalid {field} {v}", where_())
}

/// Puts back the double `json` holds as a string into `slot`.
fn double(slot: &mut f64, json: &Value, field: &str, where_: Where) -> Result<(), String> {
    if let Value::String(s) = json {
        *slot = parse_double(s).ok_or_else(|| invalid(where_, field, json))?;
    }
    Ok(())
}

/// [`double`] for an optional field (`sum`, `min`, `max` of histograms).
fn optional_double(
    slot: &mut Option<f64>,
    json: &Value,
    field: &str,
    where_: Where,
) -> Result<(), String> {
    match slot {
        Some(d) => double(d, json, field, where_),
        None => Ok(()),
    }
}

/// Restores the doubles in an `AnyValue`, nested arrays and key-value lists included.
fn any_value(v: &mut AnyValue, json: &Value, where_: Where) -> Result<(), String> {
    match &mut v.value {
        Some(any_value::Value::DoubleValue(d)) => {
            double(d, &json["doubleValue"], "doubleValue", where_)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            let items = &json["arrayValue"]["values"];
            for (i, item) in a.values.iter_mut().enumerate() {
                any_value(item, &items[i], &|| format!("{} array item {i}", where_()))?;
            }
            Ok(())
        }
        Some(any_value::Value::KvlistValue(kvs)) => {
            attributes(&mut kvs.values, &json["kvlistValue"]["values"], where_)
        }
        _ => Ok(()),
    }
}

/// [`any_value`] for each value of a key-value list (`attributes`, `kvlistValue`).
fn attributes(kvs: &mut [KeyValue], json: &Value, where_: Where) -> Result<(), String> {
    for (i, kv) in kvs.iter_mut().enumerate() {
        if let Some(v) = &mut kv.value {
            let key = &kv.key;
            any_value(v, &json[i]["value"], &|| {
                format!("{} key '{key}'", where_())
            })?;
        }
    }
    Ok(())
}

fn resource(r: Option<&mut Resource>, json: &Value, where_: Where) -> Result<(), String> {
    match r {
        Some(r) => attributes(&mut r.attributes, &json["attributes"], &|| {
            format!("{} resource", where_())
        }),
        None => Ok(()),
    }
}

fn scope(s: Option<&mut InstrumentationScope>, json: &Value, where_: Where) -> Result<(), String> {
    match s {
        Some(s) => attributes(&mut s.attributes, &json["attributes"], &|| {
            format!("{} scope", where_())
        }),
        None => Ok(()),
    }
}

impl Repair for ExportTraceServiceRequest {
    fn restore(&mut self, original: &Value, _: &Value) -> Result<(), String> {
        for (ri, rs) in self.resource_spans.iter_mut().enumerate() {
            let r_json = &original["resourceSpans"][ri];
            let where_ = || format!("resourceSpans {ri}");
            resource(rs.resource.as_mut(), &r_json["resource"], &where_)?;
            for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
                let s_json = &r_json["scopeSpans"][si];
                let where_ = || format!("{} scopeSpans {si}", where_());
                scope(ss.scope.as_mut(), &s_json["scope"], &where_)?;
                for (i, span) in ss.spans.iter_mut().enumerate() {
                    let j = &s_json["spans"][i];
                    let name = &span.name;
                    let where_ = || format!("span '{name}'");
                    attributes(&mut span.attributes, &j["attributes"], &where_)?;
                    for (ei, event) in span.events.iter_mut().enumerate() {
                        let where_ = || format!("{} event {ei}", where_());
                        attributes(
                            &mut event.attributes,
                            &j["events"][ei]["attributes"],
                            &where_,
                        )?;
                    }
                    for (li, link) in span.links.iter_mut().enumerate() {
                        let where_ = || format!("{} link {li}", where_());
                        attributes(&mut link.attributes, &j["links"][li]["attributes"], &where_)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Repair for ExportLogsServiceRequest {
    fn restore(&mut self, original: &Value, _: &Value) -> Result<(), String> {
        for (ri, rl) in self.resource_logs.iter_mut().enumerate() {
            let r_json = &original["resourceLogs"][ri];
            let where_ = || format!("resourceLogs {ri}");
            resource(rl.resource.as_mut(), &r_json["resource"], &where_)?;
            for (si, sl) in rl.scope_logs.iter_mut().enumerate() {
                let s_json = &r_json["scopeLogs"][si];
                let where_ = || format!("{} scopeLogs {si}", where_());
                scope(sl.scope.as_mut(), &s_json["scope"], &where_)?;
                for (i, record) in sl.log_records.iter_mut().enumerate() {
                    let j = &s_json["logRecords"][i];
                    let where_ = || format!("{} log record {i}", where_());
                    attributes(&mut record.attributes, &j["attributes"], &where_)?;
                    if let Some(body) = &mut record.body {
                        any_value(body, &j["body"], &|| format!("{} body", where_()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Repair for ExportMetricsServiceRequest {
    fn lost_values(&self) -> bool {
        let exemplars = |e: &[Exemplar]| e.iter().any(|e| e.value.is_none());
        let numbers = |p: &[NumberDataPoint]| {
            p.iter()
                .any(|p| p.value.is_none() || exemplars(&p.exemplars))
        };
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .any(|m| match &m.data {
                None => true,
                Some(Data::Gauge(g)) => numbers(&g.data_points),
                Some(Data::Sum(s)) => numbers(&s.data_points),
                Some(Data::Histogram(h)) => h.data_points.iter().any(|p| exemplars(&p.exemplars)),
                Some(Data::ExponentialHistogram(h)) => {
                    h.data_points.iter().any(|p| exemplars(&p.exemplars))
                }
                Some(Data::Summary(_)) => false,
            })
    }

    fn restore(&mut self, original: &Value, decodable: &Value) -> Result<(), String> {
        for (ri, rm) in self.resource_metrics.iter_mut().enumerate() {
            let r_json = &original["resourceMetrics"][ri];
            let where_ = || format!("resourceMetrics {ri}");
            resource(rm.resource.as_mut(), &r_json["resource"], &where_)?;
            for (si, sm) in rm.scope_metrics.iter_mut().enumerate() {
                let s_json = &r_json["scopeMetrics"][si];
                let where_ = || format!("{} scopeMetrics {si}", where_());
                scope(sm.scope.as_mut(), &s_json["scope"], &where_)?;
                for (mi, metric) in sm.metrics.iter_mut().enumerate() {
                    let m_json = &s_json["metrics"][mi];
                    let name = &metric.name;
                    let where_ = || format!("metric '{name}'");
                    if metric.data.is_none() {
                        let decodable =
                            &decodable["resourceMetrics"][ri]["scopeMetrics"][si]["metrics"][mi];
                        metric.data = lost_data(decodable, &where_)?;
                    }
                    attributes(&mut metric.metadata, &m_json["metadata"], &where_)?;
                    restore_data(metric.data.as_mut(), m_json, &where_)?;
                }
            }
        }
        Ok(())
    }
}

/// The data of a metric the plain decoding left without any although its JSON has some:
/// decoded alone (from the tree the request was decoded from) to find out why.
fn lost_data(m_json: &Value, where_: Where) -> Result<Option<Data>, String> {
    for key in [
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
    ] {
        if let Some(v) = m_json.get(key).filter(|v| !v.is_null()) {
            let alone = Value::Object([(key.to_owned(), v.clone())].into_iter().collect());
            return Data::deserialize(&alone)
                .map(Some)
                .map_err(|e| format!("{}: invalid {key}: {e}", where_()));
        }
    }
    Ok(None)
}

/// Restores the doubles of a metric's data points and exemplars; `m_json` is the metric.
fn restore_data(data: Option<&mut Data>, m_json: &Value, where_: Where) -> Result<(), String> {
    match data {
        Some(Data::Gauge(g)) => number_points(&mut g.data_points, &m_json["gauge"], where_),
        Some(Data::Sum(s)) => number_points(&mut s.data_points, &m_json["sum"], where_),
        Some(Data::Histogram(h)) => {
            for (pi, p) in h.data_points.iter_mut().enumerate() {
                let j = &m_json["histogram"]["dataPoints"][pi];
                let where_ = || format!("{} data point {pi}", where_());
                attributes(&mut p.attributes, &j["attributes"], &where_)?;
                optional_double(&mut p.sum, &j["sum"], "sum", &where_)?;
                optional_double(&mut p.min, &j["min"], "min", &where_)?;
                optional_double(&mut p.max, &j["max"], "max", &where_)?;
                exemplars(&mut p.exemplars, &j["exemplars"], &where_)?;
            }
            Ok(())
        }
        Some(Data::ExponentialHistogram(h)) => {
            for (pi, p) in h.data_points.iter_mut().enumerate() {
                let j = &m_json["exponentialHistogram"]["dataPoints"][pi];
                let where_ = || format!("{} data point {pi}", where_());
                attributes(&mut p.attributes, &j["attributes"], &where_)?;
                optional_double(&mut p.sum, &j["sum"], "sum", &where_)?;
                optional_double(&mut p.min, &j["min"], "min", &where_)?;
                optional_double(&mut p.max, &j["max"], "max", &where_)?;
                let zero = &j["zeroThreshold"];
                double(&mut p.zero_threshold, zero, "zeroThreshold", &where_)?;
                exemplars(&mut p.exemplars, &j["exemplars"], &where_)?;
            }
            Ok(())
        }
        Some(Data::Summary(s)) => {
            // opentelemetry-proto reads the `quantileValues` doubles itself, strings included.
            for (pi, p) in s.data_points.iter_mut().enumerate() {
                let j = &m_json["summary"]["dataPoints"][pi];
                let where_ = || format!("{} data point {pi}", where_());
                attributes(&mut p.attributes, &j["attributes"], &where_)?;
                double(&mut p.sum, &j["sum"], "sum", &where_)?;
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// Gauge or sum points; `json` is the gauge or sum.
fn number_points(
    points: &mut [NumberDataPoint],
    json: &Value,
    where_: Where,
) -> Result<(), String> {
    for (pi, p) in points.iter_mut().enumerate() {
        let j = &json["dataPoints"][pi];
        let where_ = || format!("{} data point {pi}", where_());
        attributes(&mut p.attributes, &j["attributes"], &where_)?;
        match &mut p.value {
            None => {
                p.value = read_value(j, &where_)?.map(|v| match v {
                    Number::Double(d) => number_data_point::Value::AsDouble(d),
                    Number::Int(i) => number_data_point::Value::AsInt(i),
                });
            }
            Some(number_data_point::Value::AsDouble(d)) => {
                double(d, &j["asDouble"], "asDouble", &where_)?;
            }
            Some(number_data_point::Value::AsInt(_)) => {}
        }
        exemplars(&mut p.exemplars, &j["exemplars"], &where_)?;
    }
    Ok(())
}

/// A point's exemplars; `json` is the point's `exemplars`.
fn exemplars(exemplars: &mut [Exemplar], json: &Value, where_: Where) -> Result<(), String> {
    for (ei, ex) in exemplars.iter_mut().enumerate() {
        let j = &json[ei];
        let where_ = || format!("{} exemplar {ei}", where_());
        attributes(
            &mut ex.filtered_attributes,
            &j["filteredAttributes"],
            &where_,
        )?;
        match &mut ex.value {
            None => {
                ex.value = read_value(j, &where_)?.map(|v| match v {
                    Number::Double(d) => exemplar::Value::AsDouble(d),
                    Number::Int(i) => exemplar::Value::AsInt(i),
                });
            }
            Some(exemplar::Value::AsDouble(d)) => double(d, &j["asDouble"], "asDouble", &where_)?,
            Some(exemplar::Value::AsInt(_)) => {}
        }
    }
    Ok(())
}

enum Number {
    Double(f64),
    Int(i64),
}

/// The `asDouble` or `asInt` of a point or exemplar object whose value the decoding left
/// empty; `None` when it has neither (a point without a value, which OTLP allows to pass
/// through).
fn read_value(point: &Value, where_: Where) -> Result<Option<Number>, String> {
    if let Some(v) = point.get("asDouble").filter(|v| !v.is_null()) {
        let d = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_double(s),
            _ => None,
        };
        return d
            .map(|d| Some(Number::Double(d)))
            .ok_or_else(|| invalid(where_, "asDouble", v));
    }
    if let Some(v) = point.get("asInt").filter(|v| !v.is_null()) {
        let i = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        return i
            .map(|i| Some(Number::Int(i)))
            .ok_or_else(|| invalid(where_, "asInt", v));
    }
    Ok(None)
}
