//! Acceptance: the `health_check` extension's `/healthz` and `/readyz` answer as the README
//! documents — ready once the pipelines run, not ready (naming the exporter and why) while an
//! exporter fails permanently and ready again after its next delivery, not ready while
//! draining at shutdown, closed after; bad health check config is rejected with its key path;
//! and hpcotel's own metrics are on a `prometheus` exporter's scrape endpoint.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp::spans_request;
use common::{Hpcotel, free_port};
use hpcotel_testkit::sink::{Behaviour, OtlpSink};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two queries of an endpoint while polling.
const POLL_EVERY: Duration = Duration::from_millis(50);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

/// `GET http://127.0.0.1:{port}{path}`: the status and the body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// `GET` with the body parsed as JSON.
async fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = get(port, path).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// Queries `path` until `pred` holds for its status and JSON body; panics with the last
/// answer after [`DEADLINE`].
async fn poll(port: u16, path: &str, what: &str, pred: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = get_json(port, path).await;
        if pred(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {status} {body} after {DEADLINE:?}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn send_spans(receiver: u16, run: &str, n: usize) {
    TraceServiceClient::connect(format!("http://127.0.0.1:{receiver}"))
        .await
        .expect("connect to hpcotel")
        .export(spans_request(run, 0, n))
        .await
        .expect("hpcotel accepts the request");
}

/// Traces in over gRPC on `receiver`, out to `{kind}/backend` at `backend` and to `debug`;
/// the health check on `health`.
fn config(receiver: u16, health: u16, kind: &str, backend: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{receiver}" }}
exporters:
  {kind}/backend:
    endpoint: "{backend}"
    retry_on_failure: {{ initial_interval: 50ms, max_interval: 100ms }}
  debug:
extensions:
  health_check:
    endpoint: "127.0.0.1:{health}"
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [{kind}/backend, debug] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_once_the_pipelines_run() {
    let sink = OtlpSink::start().await;
    let (receiver, health) = (free_port(), free_port());
    let _hpcotel = Hpcotel::start(&config(receiver, health, "otlp", &sink.grpc_endpoint()));

    let (status, body) = get(health, "/healthz").await;
    assert_eq!((status, body.trim()), (200, r#"{"status":"ok"}"#));

    let ready = poll(health, "/readyz", "ready", |s, _| s == 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["phase"], "running", "{ready}");
    assert_eq!(ready["pipelines"], serde_json::json!(["traces"]), "{ready}");
    for exporter in ["otlp/backend", "debug"] {
        assert_eq!(
            ready["exporters"][exporter],
            serde_json::json!({ "status": "ok" }),
            "{ready}"
        );
    }

    let (status, _) = get(health, "/metrics").await;
    assert_eq!(status, 404);
    let r = client()
        .post(format!("http://127.0.0.1:{health}/readyz"))
        .send()
        .await
        .expect("POST /readyz");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_an_exporter_fails_permanently_and_recovers_after_a_delivery() {
    for kind in ["otlp", "otlphttp"] {
        let sink = OtlpSink::start().await;
        let endpoint = if kind == "otlp" {
            sink.grpc_endpoint()
        } else {
            sink.http_endpoint()
        };
        let (receiver, health) = (free_port(), free_port());
        let _hpcotel = Hpcotel::start(&config(receiver, health, kind, &endpoint));
        poll(health, "/readyz", "ready at start", |s, _| s == 200).await;

        sink.set_behaviour(Behaviour::Fail {
            grpc: tonic::Code::InvalidArgument,
            http: 400,
            retry_after: None,
            message: "span name too long".into(),
        });
        send_spans(receiver, "refused", 3).await;
        let failing = poll(health, "/readyz", "not ready", |s, _| s == 503).await;
        assert_eq!(failing["status"], "not_ready", "{kind}: {failing}");
        assert_eq!(failing["phase"], "running", "{kind}: {failing}");
        let backend = &failing["exporters"][format!("{kind}/backend").as_str()];
        assert_eq!(backend["status"], "failing", "{kind}: {failing}");
        assert_eq!(backend["reason"], "permanent", "{kind}: {failing}");
        assert_eq!(backend["failed_batches"], 1, "{kind}: {failing}");
        let error = backend["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("span name too long"),
            "{kind}: the backend's message is not in the error: {failing}"
        );
        assert_eq!(
            failing["exporters"]["debug"]["status"], "ok",
            "{kind}: {failing}"
        );
        // Alive all the same.
        let (status, _) = get(health, "/healthz").await;
        assert_eq!(status, 200, "{kind}");

        // The backend recovers; readiness returns with the next delivery, not before.
        sink.set_behaviour(Behaviour::Accept);
        let (status, _) = get(health, "/readyz").await;
        assert_eq!(status, 503, "{kind}: ready before any delivery succeeded");
        send_spans(receiver, "accepted", 2).await;
        let ready = poll(health, "/readyz", "ready again", |s, _| s == 200).await;
        assert_eq!(ready["status"], "ready", "{kind}: {ready}");
        assert_eq!(sink.received().span_count(), 2, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_draining_at_shutdown_readyz_is_not_ready_then_the_endpoint_closes() {
    let sink = OtlpSink::start().await;
    let (receiver, health) = (free_port(), free_port());
    let mut hpcotel = Hpcotel::start(&config(receiver, health, "otlp", &sink.grpc_endpoint()));
    poll(health, "/readyz", "ready at start", |s, _| s == 200).await;

    // Hold the export open so that draining lasts until the sink lets go.
    sink.set_behaviour(Behaviour::Stall);
    send_spans(receiver, "held", 4).await;
    sink.wait_for_in_flight(1, DEADLINE).await;
    hpcotel.sigterm();

    let stopping = poll(health, "/readyz", "stopping", |s, b| {
        s == 503 && b["phase"] == "stopping"
    })
    .await;
    assert_eq!(stopping["status"], "not_ready", "{stopping}");
    let (status, body) = get(health, "/healthz").await;
    assert_eq!(
        (status, body.trim()),
        (200, r#"{"status":"ok"}"#),
        "alive while draining"
    );

    sink.set_behaviour(Behaviour::Accept);
    let exit = hpcotel.wait_exit(DEADLINE);
    assert!(exit.success(), "{exit}: {}", hpcotel.stderr());
    assert_eq!(sink.received().span_count(), 4);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", health)).is_err(),
        "the health endpoint still accepts connections after exit"
    );
}

/// Runs `hpcotel <args>` to its end (killing it after [`DEADLINE`]): success, stderr.
fn hpcotel(args: &[&str], config: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hpcotel");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("hpcotel {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"))
}

#[test]
fn bad_health_check_config_is_rejected_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, extensions: &str, listed: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "receivers: {{otlp: }}\nexporters: {{debug: }}\n{extensions}\
                 service:\n  extensions: {listed}\n  pipelines: {{logs: {{receivers: [otlp], exporters: [debug]}}}}\n"
            ),
        )
        .unwrap();
        path
    };

    let unknown = write(
        "unknown-extension.yaml",
        "extensions: {health_check: }\n",
        "[health_check, zpages]",
    );
    let (ok, stderr) = hpcotel(&["validate"], &unknown);
    assert!(!ok, "an undefined extension was accepted");
    let line = error_line(&stderr);
    for expected in [
        "unknown-extension.yaml",
        "service.extensions",
        "extension 'zpages' is not defined under extensions (defined: health_check)",
    ] {
        assert!(line.contains(expected), "lacks {expected:?}: {line}");
    }

    let kind = write("unknown-kind.yaml", "extensions: {pprof: }\n", "[pprof]");
    let (ok, stderr) = hpcotel(&["validate"], &kind);
    assert!(!ok);
    assert!(
        error_line(&stderr).contains(
            "extensions.pprof: unknown extension type 'pprof'; known types: health_check"
        ),
        "{stderr}"
    );

    let endpoint = write(
        "bad-endpoint.yaml",
        "extensions: {health_check: {endpoint: localhost}}\n",
        "[health_check]",
    );
    let (ok, stderr) = hpcotel(&["validate"], &endpoint);
    assert!(!ok);
    assert!(
        error_line(&stderr).contains(
            "bad-endpoint.yaml: extensions.health_check.endpoint: expected host:port, got 'localhost'"
        ),
        "{stderr}"
    );

    let unused = write("unused.yaml", "extensions: {health_check: }\n", "[]");
    let (ok, stderr) = hpcotel(&["validate"], &unused);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("extensions.health_check is defined but not listed in service.extensions"),
        "{stderr}"
    );

    // A port in use stops `hpcotel run` at start, naming the extension and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = write(
        "in-use.yaml",
        &format!("extensions: {{health_check: {{endpoint: \"127.0.0.1:{port}\"}}}}\n"),
        "[health_check]",
    );
    let (ok, stderr) = hpcotel(&["run"], &in_use);
    assert!(!ok, "started although the health check port is taken");
    let line = error_line(&stderr);
    assert!(
        line.contains(&format!(
            "extension 'health_check': endpoint: could not listen on 127.0.0.1:{port} for health checks"
        )),
        "{line}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpcotels_own_metrics_are_on_the_prometheus_endpoint() {
    let (receiver, scrape) = (free_port(), free_port());
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{receiver}" }}
exporters:
  prometheus:
    endpoint: "127.0.0.1:{scrape}"
service:
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus] }}
"#
    ));
    // The first self-metrics report reaches the endpoint; the next ones count its delivery.
    let deadline = Instant::now() + DEADLINE;
    let exposition = loop {
        let (status, body) = get(scrape, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        if body.contains("hpcotel_exporter_sent_total{") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no self-metrics on the scrape endpoint after {DEADLINE:?}:\n{body}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    };
    let sent = exposition
        .lines()
        .find(|l| l.starts_with("hpcotel_exporter_sent_total{"))
        .expect("a sent series");
    for label in [
        r#"hpcotel_component_id="prometheus""#,
        r#"hpcotel_signal="metrics""#,
        r#"job="hpcotel""#,
    ] {
        assert!(sent.contains(label), "{label} missing: {sent}");
    }
    assert!(
        exposition.contains("# TYPE hpcotel_exporter_queue_capacity gauge"),
        "{exposition}"
    );
}
