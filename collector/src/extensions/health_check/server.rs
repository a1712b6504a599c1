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
pub(super) async fn serve(listener: TcpListener, status: Arc<Status>, shutdown: CancellationToken) {
    let handler: Arc<hpcotel_exporters::http_server::Handler> =
        Arc::new(move |req: &Request<Incoming>| handle(&status, req));
    hpcotel_exporters::http_server::serve(
        listener,
        "health check endpoint",
        SHUTDOWN_GRACE,
        handler,
        shutdown,
    )
    .await;
}

fn handle(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
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
    let code = if report.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    self::json(code, &readiness(&report))
}

/// The `/readyz` body for `report`.
pub(super) fn readiness(report: &Report) -> Value {
    let exporters: Map<String, Value> = report
        .exporters
        .iter()
        .map(|e| {
            let value = match &e.failure {
                None => json!({ "status": "ok" }),
                Some(f) => json!({
                    "status": "failing",
                    "reason": f.reason,
                    "error": redact(&f.error),
                    "failing_for_seconds": (f.since.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    "failed_batches": f.batches,
                }),
            };
            (e.id.to_string(), value)
        })
        .collect();
    json!({
        "status": if report.ready() { "ready" } else { "not_ready" },
        "phase": report.phase.as_str(),
        "pipelines": report.pipelines,
        "exporters": exporters,
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
        let body = readiness(&status.report());
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["phase"], "starting");

        status.set_phase(Phase::Running);
        let body = readiness(&status.report());
        assert_eq!(body["status"], "ready");
        assert_eq!(body["pipelines"], json!(["traces"]));
        assert_eq!(body["exporters"]["debug"], json!({ "status": "ok" }));

        telemetry
            .find(ComponentKind::Exporter, "otlp/tempo")
            .unwrap()
            .export_failed("permanent", "HTTP 400: POST https://u:p@tempo/v1/traces");
        let body = readiness(&status.report());
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
}
