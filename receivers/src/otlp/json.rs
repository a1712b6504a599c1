//! Corrections to opentelemetry-proto's OTLP/JSON mapping.
//!
//! The protobuf JSON mapping, which OTLP/JSON follows, writes a non-finite double as the
//! string `"NaN"`, `"Infinity"` or `"-Infinity"` and allows any double as a string
//! (`"2.5"`). opentelemetry-proto 0.33 reads such strings only in a summary's
//! `quantileValues`; elsewhere it fails on them, in one of two ways:
//!
//! - where a double is read directly (an `AnyValue`'s `doubleValue` in the attributes of a
//!   resource, scope, span, span event, link or log record, or in a log body), the whole
//!   request fails to decode;
//! - inside a metric, whose data and whose points' and exemplars' values are oneofs
//!   deserialized through `#[serde(flatten)]` into an `Option`, the error is swallowed: a
//!   gauge or sum point, or an exemplar, with a string `asDouble` silently loses its value,
//!   and a string `sum`, `min`, `max` or `zeroThreshold` of a histogram, exponential
//!   histogram or summary point (or a string `doubleValue` in a point's attributes) silently
//!   loses the metric's whole data.
//!
//! [`decode`] therefore decodes as usual and only when that failed, or left a metric, point
//! or exemplar without a value, repairs from the body's JSON tree:
//!
//! 1. in a copy of the tree, every string under a double-valued key ([`DOUBLE_KEYS`]) that
//!    reads as a double becomes a number (the value itself when finite, a placeholder 0 when
//!    not, as a JSON number cannot be NaN or infinite), so that the request decodes;
//! 2. a walk over the decoded request beside the original tree then puts back every double
//!    that was written as a string, so NaN stays NaN and ±Infinity stays ±Infinity, restores
//!    the values of points and exemplars, and reports what it could not read (naming the
//!    metric) instead of passing on a metric or point without its value.

use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, NumberDataPoint, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// A location in a request, for error messages; built only when one is needed.
type Where<'a> = &'a dyn Fn() -> String;

/// An `Export*ServiceRequest` that [`decode`] can repair.
pub(super) trait Repair: DeserializeOwned {
    /// Whether the plain decoding may have dropped a value silently (a flattened oneof
    /// left empty); see the module docs.
    fn lost_values(&self) -> bool {
        false
    }

    /// Step 2 of the module docs: puts back the doubles `original` (the body's tree) holds
    /// as strings. `decodable` is the tree the request was decoded from.
    fn restore(&mut self, original: &Value, decodable: &Value) -> Result<(), String>;
}

/// Decodes the OTLP/JSON `body` of an `Export*ServiceRequest` called `name`, reading doubles
/// written as strings (`"NaN"`, `"Infinity"`, `"-Infinity"`, `"2.5"`) wherever they may be.
/// Costs nothing extra for a body that decodes plainly without losing a value.
pub(super) fn decode<T: Repair>(body: &[u8], name: &str) -> Result<T, String> {
    let bad = |e: &dyn fmt::Display| format!("could not decode {name} JSON: {e}");
    let plain = serde_json::from_slice::<T>(body);
    if let Ok(req) = &plain
        && !req.lost_values()
    {
        return plain.map_err(|e| bad(&e));
    }
    let original: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
    let mut decodable = original.clone();
    let mut req = if make_decodable(&mut decodable) {
        T::deserialize(&decodable).map_err(|e| bad(&e))?
    } else {
        // No double written as a string: the plain result stands (an error keeps its line
        // and column); the walk below still reports a value it lost.
        plain.map_err(|e| bad(&e))?
    };
    req.restore(&original, &decodable).map_err(|e| bad(&e))?;
    Ok(req)
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
