//! `${env:NAME}` and `${env:NAME:-default}` expansion inside config values, the
//! OpenTelemetry Collector's syntax. `$$` writes a literal `$`.
//!
//! Expansion happens on parsed YAML values, never on the raw text, so an environment variable
//! cannot inject YAML structure. A value that is exactly one reference is re-read as a YAML
//! scalar, so `port: ${env:PORT}` becomes a number and `insecure: ${env:TLS_OFF}` a bool.

use serde_yaml::Value;

/// Looks an environment variable up; injectable for tests.
pub trait Env {
    /// The variable's value, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Expands every string scalar in `value` in place. On error returns (key path, message).
pub fn expand_value(
    value: &mut Value,
    env: &dyn Env,
    path: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(());
            }
            let whole_ref = is_single_reference(s);
            let expanded = expand_str(s, env).map_err(|m| (path.join("."), m))?;
            *value = if whole_ref {
                // Re-read as a YAML scalar so numbers and booleans keep their type; anything
                // that would parse as structure stays a string.
                match serde_yaml::from_str::<Value>(&expanded) {
                    Ok(v @ (Value::Bool(_) | Value::Number(_))) => v,
                    _ => Value::String(expanded),
                }
            } else {
                Value::String(expanded)
            };
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                let r = expand_value(item, env, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                path.push(key_name(k));
                let r = expand_value(v, env, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Tagged(t) => expand_value(&mut t.value, env, path),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// A mapping key as it appears in a key path.
pub fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

fn is_single_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && s[2..].find('}') == Some(s.len() - 3)
}

/// Expands references in one string.
pub fn expand_str(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let end = body_and_tail
                .find('}')
                .ok_or_else(|| format!("unterminated '${{' in '{s}'"))?;
            let body = &body_and_tail[..end];
            out.push_str(&resolve(body, env)?);
            rest = &body_and_tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(body: &str, env: &dyn Env) -> Result<String, String> {
    let Some(reference) = body.strip_prefix("env:") else {
        return Err(format!(
            "unsupported reference '${{{body}}}': only ${{env:NAME}} and ${{env:NAME:-default}} are supported (write $$ for a literal $)"
        ));
    };
    let (name, default) = match reference.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!(
            "invalid environment variable name '{name}' in '${{{body}}}'"
        ));
    }
    match (env.get(name), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (write ${{env:{name}:-default}} to give a default)"
        )),
    }
}
