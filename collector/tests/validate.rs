//! Acceptance: broken config files are rejected by `hpcotel validate` with the file, the key
//! path and what was expected; a good one passes; `print-config` shows the effective config
//! with secrets redacted.

mod common;

use std::process::Command;

use common::test_file;

fn hpcotel(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(args)
        .env_remove("HPCOTEL_TEST_SURELY_UNSET_TOKEN")
        .output()
        .expect("run hpcotel");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_configs_are_rejected_with_file_key_path_and_expectation() {
    let cases = [
        (
            "unknown-key.yaml",
            "exporters.otlp/tempo",
            "unknown field `endpiont`",
        ),
        (
            "bad-endpoint.yaml",
            "receivers.otlp.protocols.grpc.endpoint",
            "expected host:port, got 'tempo'",
        ),
        (
            "undefined-exporter.yaml",
            "service.pipelines.traces.exporters",
            "exporter 'otlp/tempo' is not defined under exporters (defined: debug)",
        ),
        ("bad-duration.yaml", "processors.batch.timeout", "soon"),
        (
            "missing-env.yaml",
            "receivers.otlp.auth.token",
            "environment variable HPCOTEL_TEST_SURELY_UNSET_TOKEN is not set",
        ),
        (
            "wrong-signal.yaml",
            "service.pipelines.traces.receivers",
            "receiver 'host' does not produce traces",
        ),
        ("bad-yaml.yaml", "bad-yaml.yaml:", "invalid YAML"),
    ];
    for (file, path, expected) in cases {
        let f = test_file(&format!("fixtures/invalid/{file}"));
        let (ok, _, stderr) = hpcotel(&["validate", "--config", f.to_str().unwrap()]);
        assert!(!ok, "{file} was accepted");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{file}: no error line in {stderr}"));
        assert!(
            line.contains(file),
            "{file}: message does not name the file: {line}"
        );
        assert!(
            line.contains(path),
            "{file}: message lacks key path {path}: {line}"
        );
        assert!(
            line.contains(expected),
            "{file}: message lacks {expected:?}: {line}"
        );
    }
}

#[test]
fn the_embedded_default_and_a_good_file_validate() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "receivers: {otlp: }\nexporters: {debug: , file/unused: }\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = hpcotel(&["validate", "--config", good.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        stderr.contains("exporters.file/unused is defined but used by no pipeline"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = hpcotel(&["print-config"]);
    assert!(ok, "{stderr}");
    for expected in [
        "127.0.0.1:4317",
        "127.0.0.1:4318",
        "collection_interval: 10s",
        "hpcotel-data",
        "pipelines:",
    ] {
        assert!(
            stdout.contains(expected),
            "print-config lacks {expected}:\n{stdout}"
        );
    }
}

#[test]
fn print_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret.yaml");
    std::fs::write(
        &f,
        "receivers: {otlp: {auth: {token: hunter2-receiver}}}\nexporters: {otlp: {endpoint: \"tempo:4317\", headers: {authorization: \"Bearer hunter2-exporter\"}}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = hpcotel(&["print-config", "--config", f.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("hunter2"), "secret printed:\n{stdout}");
    assert!(stdout.matches("[redacted]").count() >= 2, "{stdout}");
}
