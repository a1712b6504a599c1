//! The health endpoint: `/healthz` and `/readyz` served by hyper (HTTP/1.1 and HTTP/2) from
//! a plain accept loop, like the prometheus exporter's scrape endpoint.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::{Report, Status};

/// The liveness path.
pub const HEALTHZ_PATH: &str = "/healthz";
/// The readiness path.
pub const READYZ_PATH: &str = "/readyz";
/// How long open connections may take to finish after shutdown before they are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Longest error text put in a `/readyz` answer, in bytes.
const MAX_ERROR_LEN: usize = 1024;

/// Serves on `listener` until `shutdown` is cancelled, then lets the open connections finish
/// their requests (at most [`SHUTDOWN_GRACE`]); see [`hpcotel_exporters::http_server`].
pub(super) async fn serve(
    listener: TcpListener,
    status: Arc<Status>,
    drop_window: Duration,
    shutdown: CancellationToken,
) {
    let handler: Arc<hpcotel_exporters::http_server::Handler> =
        Arc::new(move |req: &Request<Incoming>| handle(&status, drop_window, req));
    hpcotel_exporters::http_server::serve(
        listener,
        "health check endpoint",
        SHUTDOWN_GRACE,
        handler,
        shutdown,
    )
    .await;
}

fn handle(
    status: &Status,
    drop_window: Duration,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != HEALTHZ_PATH && path != READYZ_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; probes are at /healthz and /readyz\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == HEALTHZ_PATH {
        return self::json(StatusCode::OK, &json!({ "status": "ok" }));
    }
    let report = status.report();
    let code = if report.ready(drop_window) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    self::json(code, &readiness(&report, drop_window))
}

/// Seconds since `t`, to a tenth.
fn seconds_since(t: std::time::Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 10.0).round() / 10.0
}

/// The `/readyz` body for `report`, exporters that dropped data less than `drop_window` ago
/// reported `dropping`.
pub(super) fn readiness(report: &Report, drop_window: Duration) -> Value {
    let exporters: Map<String, Value> = report
        .exporters
        .iter()
        .map(|e| {
            let mut value = match (&e.failure, e.recent_drop(drop_window)) {
                (Some(f), _) => json!({
                    "status": "failing",
                    "reason": f.reason,
                    "error": redact(&f.error),
                    "failing_for_seconds": seconds_since(f.since),
                    "failed_batches": f.batches,
                }),
                (None, Some(d)) => json!({
                    "status": "dropping",
                    "reason": d.reason,
                    "signal": d.signal.as_str(),
                    "last_drop_seconds_ago": seconds_since(d.last),
                }),
                (None, None) => json!({ "status": "ok" }),
            };
            if !e.dropped.is_empty() {
                let mut per_reason: Map<String, Value> = Map::new();
                for d in &e.dropped {
                    let n = per_reason
                        .get(&d.reason)
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    per_reason.insert(d.reason.clone(), json!(n + d.items));
                }
                value["dropped"] = Value::Object(per_reason);
            }
            (e.id.to_string(), value)
        })
        .collect();
    let receivers: Map<String, Value> = report
        .receivers
        .iter()
        .map(|r| {
            let mut value = json!({
                "status": if r.at_memory_budget() { "at_memory_budget" } else { "ok" },
                "memory_in_use_bytes": r.memory.used,
                "memory_budget_bytes": r.memory.limit,
            });
            if let Some(t) = r.memory.last_refusal {
                value["last_refusal_seconds_ago"] = json!(seconds_since(t));
            }
            (r.id.to_string(), value)
        })
        .collect();
    json!({
        "status": if report.ready(drop_window) { "ready" } else { "not_ready" },
        "phase": report.phase.as_str(),
        "pipelines": report.pipelines,
        "exporters": exporters,
        "receivers": receivers,
    })
}

/// `error` cut to [`MAX_ERROR_LEN`] bytes, with the user information of any URL in it
/// (`https://user:password@host`) replaced by `[redacted]`.
pub(super) fn redact(error: &str) -> String {
    let mut out = String::with_capacity(error.len().min(MAX_ERROR_LEN));
    let mut rest = error;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ')')
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("[redacted]");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    if out.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut body = body.to_string();
    body.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

fn text(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(msg.as_bytes())))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use hpcotel_core::{ComponentId, ComponentKind, Telemetry};

    use super::*;
    use crate::service::Phase;

    const WINDOW: Duration = super::super::DEFAULT_DROP_WINDOW;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact("POST https://user:hunter2@mimir.example.com/otlp/v1/metrics: 401"),
            "POST https://[redacted]@mimir.example.com/otlp/v1/metrics: 401"
        );
        assert_eq!(
            redact("gRPC status InvalidArgument: see http://docs/x (a@b)"),
            "gRPC status InvalidArgument: see http://docs/x (a@b)"
        );
        assert_eq!(redact("no url"), "no url");
        let long = "é".repeat(MAX_ERROR_LEN);
        assert!(redact(&long).len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }

    #[test]
    fn readiness_body_names_the_failing_exporter_and_why() {
        let telemetry = Telemetry::default();
        let ids: Vec<ComponentId> = ["debug", "otlp/tempo"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for id in &ids {
            telemetry.register(ComponentKind::Exporter, id.clone());
        }
        let status = Status::new(vec!["traces".into()], ids, telemetry.clone());
        let body = readiness(&status.report(), WINDOW);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["phase"], "starting");

        status.set_phase(Phase::Running);
        let body = readiness(&status.report(), WINDOW);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["pipelines"], json!(["traces"]));
        assert_eq!(body["exporters"]["debug"], json!({ "status": "ok" }));

        telemetry
            .find(ComponentKind::Exporter, "otlp/tempo")
            .unwrap()
            .export_failed("permanent", "HTTP 400: POST https://u:p@tempo/v1/traces");
        let body = readiness(&status.report(), WINDOW);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["phase"], "running");
        let tempo = &body["exporters"]["otlp/tempo"];
        assert_eq!(tempo["status"], "failing");
        assert_eq!(tempo["reason"], "permanent");
        assert_eq!(
            tempo["error"],
            "HTTP 400: POST https://[redacted]@tempo/v1/traces"
        );
        assert_eq!(tempo["failed_batches"], 1);
    }

    #[test]
    fn readiness_body_names_a_dropping_exporter_its_reason_and_counts() {
        use hpcotel_core::{Counter, Signal};
        let telemetry = Telemetry::default();
        let id: ComponentId = "otlp/tempo".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Exporter, id.clone());
        let status = Status::new(vec!["traces".into()], vec![id], telemetry);
        status.set_phase(Phase::Running);
        stats.add_with_reason(Signal::Traces, Counter::Dropped, "queue_full", 200);
        stats.add_with_reason(Signal::Logs, Counter::Dropped, "queue_full", 5);
        stats.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 1);
        let body = readiness(&status.report(), WINDOW);
        assert_eq!(body["status"], "not_ready");
        let tempo = &body["exporters"]["otlp/tempo"];
        assert_eq!(tempo["status"], "dropping", "{body}");
        assert_eq!(tempo["reason"], "too_large", "the latest drop: {body}");
        assert_eq!(tempo["signal"], "traces", "{body}");
        assert_eq!(
            tempo["dropped"],
            json!({ "queue_full": 205, "too_large": 1 }),
            "{body}"
        );
        assert!(tempo["last_drop_seconds_ago"].as_f64().unwrap() < 60.0);
        // drop_window 0s: ready, the drops still listed.
        let body = readiness(&status.report(), Duration::ZERO);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["exporters"]["otlp/tempo"]["status"], "ok");
        assert_eq!(body["exporters"]["otlp/tempo"]["dropped"]["too_large"], 1);
    }
}
