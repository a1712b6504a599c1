//! The library's settings, read once per rank from the environment at `MPI_Init`.
//!
//! A preloaded library has no config file: it follows the OpenTelemetry SDK's environment
//! variables where one exists and `HPCOTEL_MPI_*` for its own. A bad value is reported on
//! stderr (naming the variable and the value) and its default is used; the job never fails
//! because of it.

use std::time::Duration;

/// Default OTLP/HTTP base URL: the node-local collector's OTLP/HTTP receiver.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
/// Default export period (`OTEL_METRIC_EXPORT_INTERVAL`): 10 s. Shorter than the SDK's 60 s
/// because MPI jobs are often short and a live view of a running job is the point.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Default timeout of one export request (`OTEL_EXPORTER_OTLP_TIMEOUT`): 10 s, as the SDK.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on the final flush at `MPI_Finalize`, `MPI_Abort` or exit
/// (`HPCOTEL_MPI_FLUSH_TIMEOUT`): 2 s, the most a missing or hung collector can add to a job.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default slow-call threshold (`HPCOTEL_MPI_SLOW_CALL`): calls of 10 ms or more become spans.
pub const DEFAULT_SLOW_CALL: SlowCall = SlowCall::Absolute(Duration::from_millis(10));
/// Default bound on queued spans per rank between two exports (`HPCOTEL_MPI_MAX_SPANS`).
pub const DEFAULT_MAX_SPANS: usize = 2048;
/// Calls of one kind recorded before a median-relative threshold applies.
pub const MEDIAN_MIN_CALLS: u64 = 64;

/// Which calls become spans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SlowCall {
    /// Calls at least this long (`HPCOTEL_MPI_SLOW_CALL=10ms`).
    Absolute(Duration),
    /// Calls at least this many times the running median of their kind (same operation,
    /// communicator size and size class), once [`MEDIAN_MIN_CALLS`] were seen
    /// (`HPCOTEL_MPI_SLOW_CALL=20x`).
    MedianMultiple(f64),
    /// No slow-call spans (`HPCOTEL_MPI_SLOW_CALL=off`).
    Off,
}

/// Everything the library reads from its environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `OTEL_SDK_DISABLED=true` or `HPCOTEL_MPI_DISABLED=1`: record and export nothing.
    pub disabled: bool,
    /// Full URL of traces (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else the base + `/v1/traces`).
    pub traces_url: String,
    /// Full URL of metrics (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, else the base + `/v1/metrics`).
    pub metrics_url: String,
    /// Full URL of logs (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, else the base + `/v1/logs`).
    pub logs_url: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `k=v,k2=v2`, values
    /// percent-decoded), e.g. `authorization=Bearer%20…`. Values are never logged.
    pub headers: Vec<(String, String)>,
    /// One export request's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub export_timeout: Duration,
    /// Export period (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub export_interval: Duration,
    /// Bound on the final flush (`HPCOTEL_MPI_FLUSH_TIMEOUT`, e.g. `2s`, `500ms`).
    pub flush_timeout: Duration,
    /// Which calls become spans (`HPCOTEL_MPI_SLOW_CALL`: `10ms`, `20x` or `off`).
    pub slow_call: SlowCall,
    /// Bound on queued spans between exports (`HPCOTEL_MPI_MAX_SPANS`).
    pub max_spans: usize,
    /// The library's own collectives: the context broadcast and host gather at `MPI_Init`,
    /// the straggler reductions (`HPCOTEL_MPI_COLLECTIVES`, `on` by default; `off` for MPMD
    /// jobs in which some ranks run without the library). Must match on every rank.
    pub collectives: bool,
    /// Read the name of `MPI_Pcontrol(1|-1, name)` (`HPCOTEL_MPI_PCONTROL_NAMES`, `on` by
    /// default).
    pub phase_names: bool,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` of
    /// `OTEL_RESOURCE_ATTRIBUTES`, else the executable's name.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, parsed (`k8s.pod.uid=…,k8s.pod.name=…`).
    pub resource_attributes: Vec<(String, String)>,
    /// W3C `TRACEPARENT` the launcher set, when valid.
    pub traceparent: Option<TraceParent>,
    /// What was wrong, one line per bad variable; printed once by the caller.
    pub problems: Vec<String>,
}

/// A parsed W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the job joins.
    pub trace_id: [u8; 16],
    /// The launcher's span, the job span's parent.
    pub parent_span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid, as in W3C Trace Context.
    pub fn parse(s: &str) -> Result<TraceParent, String> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [version, trace, parent, flags] = parts[..] else {
            return Err("expected 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>".into());
        };
        if version.len() != 2 || version == "ff" || hex::<1>(version).is_none() {
            return Err(format!("bad version {version:?}"));
        }
        let trace_id = hex::<16>(trace).ok_or("bad trace id (32 lowercase hex digits)")?;
        let parent_span_id = hex::<8>(parent).ok_or("bad parent id (16 lowercase hex digits)")?;
        let [flags] = hex::<1>(flags).ok_or("bad flags (2 hex digits)")?;
        if trace_id == [0; 16] || parent_span_id == [0; 8] {
            return Err("all-zero trace or parent id".into());
        }
        Ok(TraceParent {
            trace_id,
            parent_span_id,
            flags,
        })
    }
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Settings {
    /// Reads the settings through `get` (the process environment in production).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut problems = Vec::new();
        let truthy = |k: &str| {
            get(k).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
        };
        let disabled = truthy("OTEL_SDK_DISABLED") || truthy("HPCOTEL_MPI_DISABLED");

        let base = get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let base = base.trim().trim_end_matches('/').to_owned();
        let url = |signal_var: &str, path: &str| {
            get(signal_var).map_or_else(|| format!("{base}{path}"), |v| v.trim().to_owned())
        };
        let traces_url = url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces");
        let metrics_url = url("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "/v1/metrics");
        let logs_url = url("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "/v1/logs");
        if let Some(p) = get("OTEL_EXPORTER_OTLP_PROTOCOL")
            && p.trim() != "http/protobuf"
        {
            problems.push(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={p:?} is not supported: libhpcotel_mpi speaks \
                 http/protobuf only (the collector's OTLP/HTTP receiver, port 4318); using it"
            ));
        }

        let headers = match get("OTEL_EXPORTER_OTLP_HEADERS") {
            None => Vec::new(),
            Some(v) => parse_pairs(&v).and_then(check_headers).unwrap_or_else(|e| {
                // Never echo the value: it usually holds a token.
                problems.push(format!(
                    "OTEL_EXPORTER_OTLP_HEADERS: {e}; sending no headers"
                ));
                Vec::new()
            }),
        };
        let mut millis = |k: &str, default: Duration| match get(k) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    problems.push(format!(
                        "{k}={v:?} is not a positive number of milliseconds; using {}ms",
                        default.as_millis()
                    ));
                    default
                }
            },
        };
        let export_timeout = millis("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_EXPORT_TIMEOUT);
        let export_interval = millis("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_EXPORT_INTERVAL);
        let flush_timeout = match get("HPCOTEL_MPI_FLUSH_TIMEOUT") {
            None => DEFAULT_FLUSH_TIMEOUT,
            Some(v) => parse_duration(&v).unwrap_or_else(|| {
                problems.push(format!(
                    "HPCOTEL_MPI_FLUSH_TIMEOUT={v:?} is not a duration such as 2s or 500ms; \
                     using 2s"
                ));
                DEFAULT_FLUSH_TIMEOUT
            }),
        };
        let slow_call = match get("HPCOTEL_MPI_SLOW_CALL") {
            None => DEFAULT_SLOW_CALL,
            Some(v) => parse_slow_call(&v).unwrap_or_else(|| {
                problems.push(format!(
                    "HPCOTEL_MPI_SLOW_CALL={v:?} is not a duration (10ms), a multiple of the \
                     median (20x) or off; using 10ms"
                ));
                DEFAULT_SLOW_CALL
            }),
        };
        let max_spans = match get("HPCOTEL_MPI_MAX_SPANS") {
            None => DEFAULT_MAX_SPANS,
            Some(v) => v.trim().parse::<usize>().unwrap_or_else(|_| {
                problems.push(format!(
                    "HPCOTEL_MPI_MAX_SPANS={v:?} is not a count; using {DEFAULT_MAX_SPANS}"
                ));
                DEFAULT_MAX_SPANS
            }),
        };

        let mut switch = |k: &str| match get(k).map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "on" | "true" | "1") => true,
            Some(v) if matches!(v.as_str(), "off" | "false" | "0") => false,
            Some(v) => {
                problems.push(format!("{k}={v:?} is not on or off; using on"));
                true
            }
        };
        let collectives = switch("HPCOTEL_MPI_COLLECTIVES");
        let phase_names = switch("HPCOTEL_MPI_PCONTROL_NAMES");

        let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            None => Vec::new(),
            Some(v) => parse_pairs(&v).unwrap_or_else(|e| {
                problems.push(format!("OTEL_RESOURCE_ATTRIBUTES: {e}; ignored"));
                Vec::new()
            }),
        };
        let service_name = get("OTEL_SERVICE_NAME").or_else(|| {
            resource_attributes
                .iter()
                .find(|(k, _)| k == hpcotel_core::semconv::SERVICE_NAME)
                .map(|(_, v)| v.clone())
        });
        let traceparent = get("TRACEPARENT").and_then(|v| match TraceParent::parse(&v) {
            Ok(tp) => Some(tp),
            Err(e) => {
                problems.push(format!(
                    "TRACEPARENT={v:?} is not a W3C traceparent ({e}); starting a new trace"
                ));
                None
            }
        });
        for (var, url) in [
            ("traces", &traces_url),
            ("metrics", &metrics_url),
            ("logs", &logs_url),
        ] {
            if let Err(e) = crate::http::Url::parse(url) {
                let url = crate::http::redact(url);
                problems.push(format!("the {var} endpoint {url}: {e}"));
            }
        }
        Settings {
            disabled,
            traces_url,
            metrics_url,
            logs_url,
            headers,
            export_timeout,
            export_interval,
            flush_timeout,
            slow_call,
            max_spans,
            collectives,
            phase_names,
            service_name,
            resource_attributes,
            traceparent,
            problems,
        }
    }
}

/// `k=v,k2=v2` with percent-decoded values (the SDK's format for headers and resource
/// attributes).
fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("item {} is not key=value", i + 1));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("item {} has an empty key", i + 1));
        }
        out.push((k.to_owned(), percent_decode(v.trim())));
    }
    Ok(out)
}

/// Header names must be HTTP tokens and values free of control characters (a CR/LF would
/// let a value add headers of its own). The message names the item, never its value.
fn check_headers(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    for (i, (k, v)) in pairs.iter().enumerate() {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !k.bytes().all(token) {
            return Err(format!(
                "item {} has a name that is not an HTTP token",
                i + 1
            ));
        }
        if v.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(format!(
                "item {} ({k}) has control characters in its value",
                i + 1
            ));
        }
    }
    Ok(pairs)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `2s`, `500ms`, `250us`, `1m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_slow_call(s: &str) -> Option<SlowCall> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Some(SlowCall::Off);
    }
    if let Some(m) = s.strip_suffix('x') {
        return m
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 1.0)
            .map(SlowCall::MedianMultiple);
    }
    parse_duration(s).map(SlowCall::Absolute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_point_at_the_node_local_collector() {
        let s = settings(&[]);
        assert!(!s.disabled);
        assert_eq!(s.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.metrics_url, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(s.logs_url, "http://127.0.0.1:4318/v1/logs");
        assert_eq!(s.slow_call, DEFAULT_SLOW_CALL);
        assert_eq!(s.export_interval, DEFAULT_EXPORT_INTERVAL);
        assert_eq!(s.flush_timeout, DEFAULT_FLUSH_TIMEOUT);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[test]
    fn sdk_variables_are_honoured() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.0.0.7:4318/"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9000/in"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cret,x-tenant=ml",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "250"),
            ("OTEL_SERVICE_NAME", "lammps"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.pod.uid=u-1,k8s.pod.name=w-0",
            ),
            (
                "TRACEPARENT",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("HPCOTEL_MPI_SLOW_CALL", "20x"),
        ]);
        assert_eq!(s.traces_url, "http://10.0.0.7:4318/v1/traces");
        assert_eq!(s.logs_url, "http://logs:9000/in");
        assert_eq!(
            s.headers,
            vec![
                ("authorization".into(), "Bearer s3cret".into()),
                ("x-tenant".into(), "ml".into())
            ]
        );
        assert_eq!(s.export_interval, Duration::from_millis(250));
        assert_eq!(s.service_name.as_deref(), Some("lammps"));
        assert_eq!(s.resource_attributes.len(), 2);
        let tp = s.traceparent.unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.parent_span_id[7], 0xb7);
        assert_eq!(tp.flags, 1);
        assert_eq!(s.slow_call, SlowCall::MedianMultiple(20.0));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
    }

    #[test]
    fn bad_values_name_the_variable_keep_the_default_and_hide_header_values() {
        let s = settings(&[
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
            ("HPCOTEL_MPI_SLOW_CALL", "fast"),
            ("HPCOTEL_MPI_FLUSH_TIMEOUT", "-1s"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Bearer-s3cret"),
            (
                "TRACEPARENT",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("HPCOTEL_MPI_COLLECTIVES", "maybe"),
        ]);
        assert!(s.collectives, "a bad switch keeps its default");
        assert_eq!(s.export_interval, DEFAULT_EXPORT_INTERVAL);
        assert_eq!(s.slow_call, DEFAULT_SLOW_CALL);
        assert_eq!(s.flush_timeout, DEFAULT_FLUSH_TIMEOUT);
        assert!(s.headers.is_empty());
        assert!(s.traceparent.is_none());
        let all = s.problems.join("\n");
        for needle in [
            "OTEL_METRIC_EXPORT_INTERVAL=\"soon\"",
            "HPCOTEL_MPI_SLOW_CALL=\"fast\"",
            "HPCOTEL_MPI_FLUSH_TIMEOUT",
            "OTEL_EXPORTER_OTLP_HEADERS: item 1 is not key=value",
            "TRACEPARENT",
            "https",
            "HPCOTEL_MPI_COLLECTIVES=\"maybe\"",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert!(!all.contains("s3cret"), "a header value leaked: {all}");
    }

    #[test]
    fn header_injection_and_url_credentials_are_refused_without_echoing_them() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=ok%0D%0AX-Evil: s3cret"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://user:pa55@c:4318/v1/traces",
            ),
        ]);
        assert!(s.headers.is_empty());
        let all = s.problems.join("\n");
        assert!(all.contains("item 1 (x-a) has control characters"), "{all}");
        assert!(all.contains("credentials"), "{all}");
        assert!(!all.contains("s3cret") && !all.contains("pa55"), "{all}");
        let s = settings(&[("OTEL_EXPORTER_OTLP_HEADERS", "bad name=v")]);
        assert!(s.problems[0].contains("not an HTTP token"));
        assert!(!settings(&[("HPCOTEL_MPI_PCONTROL_NAMES", "off")]).phase_names);
        assert!(!settings(&[("HPCOTEL_MPI_COLLECTIVES", "off")]).collectives);
    }

    #[test]
    fn disabled_by_either_switch() {
        assert!(settings(&[("OTEL_SDK_DISABLED", "true")]).disabled);
        assert!(settings(&[("HPCOTEL_MPI_DISABLED", "1")]).disabled);
        assert!(!settings(&[("HPCOTEL_MPI_DISABLED", "0")]).disabled);
    }

    #[test]
    fn traceparent_rules() {
        assert!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_ok()
        );
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
