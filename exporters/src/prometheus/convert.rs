//! OpenTelemetry names, units, attributes and numbers in Prometheus form, per the
//! OpenTelemetry "Prometheus and OpenMetrics compatibility" specification (and the
//! OpenTelemetry Collector's normalization where the specification leaves a choice).

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// What a metric becomes in Prometheus, as far as its name is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// An OTLP gauge: unit `1` becomes `_ratio`.
    Gauge,
    /// A monotonic sum: a Prometheus counter, `_total` appended.
    Counter,
    /// Anything else (non-monotonic sum, histogram, summary): unit suffix only.
    Other,
}

/// The Prometheus name of metric `name` with unit `unit` (UCUM, as OTLP carries it).
///
/// - characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_` one `_`, leading and
///   trailing `_` are dropped, a leading digit gets a `_` in front;
/// - with `add_suffixes`: the unit, converted by [`unit_suffix`], is appended unless the name
///   already ends with it; a [`NameKind::Counter`] then gets `_total` (moved to the end when
///   the name already had it);
/// - `namespace`, when set, is prepended with `_`.
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    add_suffixes: bool,
    namespace: Option<&str>,
) -> String {
    let mut out = sanitize_metric_name(name);
    if add_suffixes {
        if kind == NameKind::Counter
            && let Some(stripped) = out.strip_suffix("_total")
        {
            out.truncate(stripped.len());
        }
        if let Some(unit) = unit_suffix(unit, kind == NameKind::Gauge)
            && out != unit
            && !out.ends_with(&format!("_{unit}"))
        {
            out.push('_');
            out.push_str(&unit);
        }
        if kind == NameKind::Counter {
            out.push_str("_total");
        }
    }
    match namespace.map(sanitize_metric_name) {
        Some(ns) if !ns.is_empty() => format!("{ns}_{out}"),
        _ => out,
    }
}

/// `name` with characters outside `[a-zA-Z0-9_:]` replaced by `_`, runs of `_` collapsed,
/// leading and trailing `_` dropped, and `_` put before a leading digit.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' {
            c
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name from an attribute key: characters outside `[a-zA-Z0-9_]` become `_`; a
/// leading digit gets `key_` in front and a leading `__` (reserved by Prometheus) `key`.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// The name suffix for UCUM unit `unit`, or `None` when it adds none.
///
/// `{…}` annotations are dropped (`{packet}` adds nothing); `1` is `ratio` on a gauge and
/// nothing otherwise; known units are spelled out (`By` → `bytes`, `s` → `seconds`,
/// `Cel` → `celsius`, ...), rates as `<unit>_per_<unit>` (`By/s` → `bytes_per_second`);
/// other units are kept, sanitized.
pub fn unit_suffix(unit: &str, gauge: bool) -> Option<String> {
    let mut bare = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => bare.push(c),
            _ => {}
        }
    }
    let bare = bare.trim();
    if bare == "1" {
        return gauge.then(|| "ratio".to_owned());
    }
    let (main, per) = match bare.split_once('/') {
        Some((m, p)) => (m.trim(), p.trim()),
        None => (bare, ""),
    };
    let main = main_unit(main).map_or_else(|| sanitize_unit(main), str::to_owned);
    let per = per_unit(per).map_or_else(|| sanitize_unit(per), str::to_owned);
    match (main.is_empty(), per.is_empty()) {
        (true, true) => None,
        (false, true) => Some(main),
        (true, false) => Some(format!("per_{per}")),
        (false, false) => Some(format!("{main}_per_{per}")),
    }
}

/// Prometheus spelling of a UCUM unit (the Collector's table).
fn main_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        // Time
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        // Bytes
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        // SI
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        // Misc
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// Prometheus spelling of the unit after `/` in a rate.
fn per_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// An unknown unit, kept: characters outside `[a-zA-Z0-9]` become `_`, trimmed of `_`.
fn sanitize_unit(unit: &str) -> String {
    let s: String = unit
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    sanitize_metric_name(&s).replace(':', "_")
}

/// An attribute value as a label value: strings as they are, numbers and booleans in their
/// usual spelling, arrays and maps as JSON, bytes as lowercase hex.
pub fn value_string(v: Option<&AnyValue>) -> String {
    let Some(v) = v.and_then(|v| v.value.as_ref()) else {
        return String::new();
    };
    match v {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => format_float(*d),
        any_value::Value::BytesValue(b) => b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        }),
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            serde_json::to_string(&json(v)).unwrap_or_default()
        }
        // An index into a profiles string table: meaningless for metrics.
        any_value::Value::StringValueStrindex(_) => String::new(),
    }
}

fn json(v: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number)
        }
        any_value::Value::BytesValue(_) | any_value::Value::StringValueStrindex(_) => {
            J::String(value_string(Some(&AnyValue {
                value: Some(v.clone()),
            })))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(J::Null, json))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|p| {
                    let v = p.value.as_ref().and_then(|v| v.value.as_ref());
                    (p.key.clone(), v.map_or(J::Null, json))
                })
                .collect(),
        ),
    }
}

/// The string value of attribute `key` among `attrs`, if present.
pub fn attr_string(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_string(kv.value.as_ref()))
}

/// Labels from attributes: names sanitized, empty values left out. Keys that sanitize to
/// the same name have their values joined with `;` in the order of their original keys,
/// as the specification asks.
pub fn attribute_labels<'a>(attrs: impl IntoIterator<Item = &'a KeyValue>) -> Vec<Label> {
    let mut pairs: Vec<(&str, String)> = attrs
        .into_iter()
        .map(|kv| (kv.key.as_str(), value_string(kv.value.as_ref())))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<Label> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let name = sanitize_label_name(key);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(';');
                v.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    out
}

/// One label: (name, value).
pub type Label = (String, String);

/// A sample value or `le`/`quantile` bound in the text format: `NaN`, `+Inf`, `-Inf`,
/// integers without a fraction, others in the shortest form that reads back exactly.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v == 0.0 {
        "0".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if (1e-4..1e21).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// `s` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for a `# HELP` line: `\` → `\\`, newline → `\n`.
pub fn escape_help(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
