//! Label and field selectors, parsed from the query strings real clients send.
//!
//! Label selectors follow the Kubernetes grammar (`a=b`, `a==b`, `a!=b`, `a`, `!a`,
//! `a in (x,y)`, `a notin (x,y)`, comma-joined); field selectors are dotted-path equality or
//! inequality over the object JSON (`spec.nodeName=node-1`, `metadata.name!=x`), where a missing
//! field reads as the empty string, as `spec.nodeName=` does on a real server.

use serde_json::Value;

/// One label requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

/// One field requirement: dotted path, wanted value, equal (true) or not equal (false).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    equal: bool,
}

/// A parsed `fieldSelector`; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<FieldReq>);

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses a label selector; `Err` carries a message for a 400 answer.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            reqs.push(parse_label_term(term)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }

    /// Whether the selector has no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_label_term(term: &str) -> Result<LabelReq, String> {
    let bad = || format!("unable to parse requirement: {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(LabelReq::NotExists(key.to_string()))
        } else {
            Err(bad())
        };
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')').filter(|&c| c > open).ok_or_else(bad)?;
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        let [key, op] = head.as_slice() else {
            return Err(bad());
        };
        if !valid_key(key) {
            return Err(bad());
        }
        let values: Vec<String> = term[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return match *op {
            "in" => Ok(LabelReq::In(key.to_string(), values)),
            "notin" => Ok(LabelReq::NotIn(key.to_string(), values)),
            _ => Err(bad()),
        };
    }
    let Some((key, value, equal)) = split_op(term) else {
        return if valid_key(term) {
            Ok(LabelReq::Exists(term.to_string()))
        } else {
            Err(bad())
        };
    };
    let (key, value) = (key.trim().to_string(), value.trim().to_string());
    if !valid_key(&key) {
        return Err(bad());
    }
    Ok(if equal {
        LabelReq::Eq(key, value)
    } else {
        LabelReq::NotEq(key, value)
    })
}

/// Splits `k!=v`, `k==v` or `k=v` into (key, value, equal).
fn split_op(term: &str) -> Option<(&str, &str, bool)> {
    if let Some((k, v)) = term.split_once("!=") {
        return Some((k, v, false));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Some((k, v, true));
    }
    term.split_once('=').map(|(k, v)| (k, v, true))
}

impl FieldSelector {
    /// Parses a field selector; `Err` carries a message for a 400 answer.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let (path, value, equal) =
                split_op(term).ok_or_else(|| format!("invalid selector: {term:?}"))?;
            let path = path.trim();
            if path.is_empty() {
                return Err(format!("invalid selector: {term:?}"));
            }
            reqs.push(FieldReq {
                path: path.split('.').map(str::to_string).collect(),
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether the object satisfies every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let got = field_string(obj, &r.path);
            (got == r.value) == r.equal
        })
    }

    /// Whether the selector has no requirements.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The value at a dotted path as a selector compares it: strings as they are, numbers and
/// booleans printed, anything missing or null as "".
fn field_string(obj: &Value, path: &[String]) -> String {
    let mut cur = obj;
    for seg in path {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}
