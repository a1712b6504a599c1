//! A correction to opentelemetry-proto's OTLP/JSON mapping.
//!
//! opentelemetry-proto 0.33 deserializes a `NumberDataPoint`'s and an `Exemplar`'s value
//! oneof through `#[serde(flatten)]` into an `Option`, which turns any value it cannot read
//! into `None` silently. The protobuf JSON mapping (which OTLP/JSON follows) writes a
//! non-finite double as the string `"NaN"`, `"Infinity"` or `"-Infinity"` and allows any
//! double as a string, so `{"asDouble": "NaN"}` would lose the point's value without an
//! error. When a decoded request has a gauge or sum point (or one of its exemplars) without
//! a value, this module reads the body again as a JSON tree and restores the values from
//! `asDouble` / `asInt`, or reports what it could not read.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{exemplar, metric::Data, number_data_point};
use serde_json::Value;

/// Restores number values opentelemetry-proto's mapping dropped; see the module docs.
/// Cheap when nothing is missing (no second parse).
pub(super) fn fix_number_values(
    req: &mut ExportMetricsServiceRequest,
    body: &[u8],
) -> Result<(), String> {
    if !has_missing_values(req) {
        return Ok(());
    }
    let tree: Value = serde_json::from_slice(body)
        .map_err(|e| format!("could not decode ExportMetricsServiceRequest JSON: {e}"))?;
    for (ri, rm) in req.resource_metrics.iter_mut().enumerate() {
        let rm_json = &tree["resourceMetrics"][ri];
        for (si, sm) in rm.scope_metrics.iter_mut().enumerate() {
            let sm_json = &rm_json["scopeMetrics"][si];
            for (mi, metric) in sm.metrics.iter_mut().enumerate() {
                let m_json = &sm_json["metrics"][mi];
                let (points, kind) = match &mut metric.data {
                    Some(Data::Gauge(g)) => (&mut g.data_points, "gauge"),
                    Some(Data::Sum(s)) => (&mut s.data_points, "sum"),
                    _ => continue,
                };
                for (pi, point) in points.iter_mut().enumerate() {
                    let p_json = &m_json[kind]["dataPoints"][pi];
                    let where_ = || format!("metric '{}' data point {pi}", metric.name);
                    if point.value.is_none() {
                        point.value = read_value(p_json, &where_)?.map(|v| match v {
                            Number::Double(d) => number_data_point::Value::AsDouble(d),
                            Number::Int(i) => number_data_point::Value::AsInt(i),
                        });
                    }
                    for (ei, ex) in point.exemplars.iter_mut().enumerate() {
                        if ex.value.is_none() {
                            let where_ = || format!("{} exemplar {ei}", where_());
                            ex.value =
                                read_value(&p_json["exemplars"][ei], &where_)?.map(|v| match v {
                                    Number::Double(d) => exemplar::Value::AsDouble(d),
                                    Number::Int(i) => exemplar::Value::AsInt(i),
                                });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn has_missing_values(req: &ExportMetricsServiceRequest) -> bool {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .any(|m| {
            let points = match &m.data {
                Some(Data::Gauge(g)) => &g.data_points,
                Some(Data::Sum(s)) => &s.data_points,
                _ => return false,
            };
            points
                .iter()
                .any(|p| p.value.is_none() || p.exemplars.iter().any(|e| e.value.is_none()))
        })
}

enum Number {
    Double(f64),
    Int(i64),
}

/// The `asDouble` or `asInt` of a point object; `None` when it has neither (a point without
/// a value, which OTLP allows to pass through).
fn read_value(point: &Value, where_: &dyn Fn() -> String) -> Result<Option<Number>, String> {
    let bad = |field: &str, v: &Value| {
        format!(
            "could not decode ExportMetricsServiceRequest JSON: {}: invalid {field} {v}",
            where_()
        )
    };
    if let Some(v) = point.get("asDouble").filter(|v| !v.is_null()) {
        let d = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                s => s.parse::<f64>().ok().filter(|d| d.is_finite()),
            },
            _ => None,
        };
        return d
            .map(|d| Some(Number::Double(d)))
            .ok_or_else(|| bad("asDouble", v));
    }
    if let Some(v) = point.get("asInt").filter(|v| !v.is_null()) {
        let i = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        return i
            .map(|i| Some(Number::Int(i)))
            .ok_or_else(|| bad("asInt", v));
    }
    Ok(None)
}
