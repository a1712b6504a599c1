//! Acceptance: OTLP/JSON as others write it passes through hpcotel unchanged.
//!
//! Each official example of opentelemetry-proto (`examples/*.json`), and the same request as
//! printed by protobuf's own JSON printer (enum names, empty lists and maps as `{}`, with
//! lowerCamelCase keys, with the original proto field names, and with every field printed),
//! is POSTed to the real binary over OTLP/HTTP JSON. What the `file` exporter writes for it
//! must be the request Google's protobuf library decoded from the example: the exporter's
//! line, decoded into opentelemetry-proto's types, must equal the `*.pb` reference decoded
//! by prost (see `fixtures/otlp-examples/README.md` for how each file was made).

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Hpcotel, free_port, test_file};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::de::DeserializeOwned;

/// How long a request may take to reach the exporter's file.
const WAIT: Duration = Duration::from_secs(20);

/// The upstream examples, each sent by one test below.
const EXAMPLES: [&str; 4] = ["trace", "metrics", "logs", "events"];

/// The protobuf-printer variants of each example: `<example>.<variant>.json`, all of them
/// the request `<example>.protobuf.pb`.
const VARIANTS: [&str; 3] = ["protobuf", "protobuf-proto-names", "protobuf-all-fields"];

/// hpcotel receiving OTLP/HTTP on `http` and writing every signal to `out` (file exporter).
struct Collector {
    _hpcotel: Hpcotel,
    http: u16,
    out: tempfile::TempDir,
}

fn start() -> Collector {
    let out = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  file: {{ path: "{out}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [file] }}
    metrics: {{ receivers: [otlp], exporters: [file] }}
    logs: {{ receivers: [otlp], exporters: [file] }}
"#,
        out = out.path().display()
    ));
    Collector {
        _hpcotel: hpcotel,
        http,
        out,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = test_file(&format!("fixtures/otlp-examples/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// POSTs an OTLP/JSON body; returns the status and the response body.
async fn post(http: u16, path: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Line `n` (from 0) of `file`, once the exporter has written it completely; `None` if it
/// has not within [`WAIT`].
async fn wait_for_line(file: &Path, n: usize) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Only lines ended by a newline are complete.
        if let Some(line) = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .nth(n)
        {
            return Some(line.trim_end().to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Member names of `json` that are not lowerCamelCase (OTLP/JSON keys must be).
fn snake_keys(json: &serde_json::Value, out: &mut BTreeSet<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k.contains('_') {
                    out.insert(k.clone());
                }
                snake_keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| snake_keys(v, out)),
        _ => {}
    }
}

/// Sends `example` and its protobuf-printer variants to a fresh collector and checks that
/// the file exporter writes each as its reference request.
async fn round_trip<T>(example: &str, path: &str, jsonl: &str)
where
    T: Message + Default + DeserializeOwned + PartialEq + Debug,
{
    let c = start();
    let file = c.out.path().join(jsonl);
    let mut cases = vec![(format!("{example}.json"), format!("{example}.pb"))];
    for v in VARIANTS {
        cases.push((
            format!("{example}.{v}.json"),
            format!("{example}.protobuf.pb"),
        ));
    }
    let mut failures = Vec::new();
    let mut lines = 0;
    for (body, reference) in &cases {
        let expected = T::decode(fixture(reference).as_slice())
            .unwrap_or_else(|e| panic!("{reference} is no {}: {e}", std::any::type_name::<T>()));
        let (status, answer) = post(c.http, path, fixture(body)).await;
        if status != 200 {
            failures.push(format!("{body}: HTTP {status} {answer}"));
            continue;
        }
        let Some(line) = wait_for_line(&file, lines).await else {
            failures.push(format!(
                "{body}: answered 200, but nothing reached {jsonl} within {WAIT:?}"
            ));
            continue;
        };
        lines += 1;
        let json: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{body}: {jsonl} line is no JSON: {e}\n{line}"));
        let mut snake = BTreeSet::new();
        snake_keys(&json, &mut snake);
        if !snake.is_empty() {
            failures.push(format!("{body}: the file exporter wrote keys {snake:?}"));
        }
        match serde_json::from_value::<T>(json) {
            Ok(actual) if actual == expected => {}
            Ok(actual) => failures.push(format!(
                "{body}: the file exporter wrote\n{actual:#?}\ninstead of {reference}:\n{expected:#?}"
            )),
            Err(e) => failures.push(format!("{body}: {jsonl} line does not decode: {e}\n{line}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn trace_example_and_its_protobuf_printings_pass_through_unchanged() {
    round_trip::<ExportTraceServiceRequest>("trace", "/v1/traces", "traces.jsonl").await;
}

#[tokio::test]
async fn metrics_example_and_its_protobuf_printings_pass_through_unchanged() {
    round_trip::<ExportMetricsServiceRequest>("metrics", "/v1/metrics", "metrics.jsonl").await;
}

#[tokio::test]
async fn logs_example_and_its_protobuf_printings_pass_through_unchanged() {
    round_trip::<ExportLogsServiceRequest>("logs", "/v1/logs", "logs.jsonl").await;
}

#[tokio::test]
async fn events_example_and_its_protobuf_printings_pass_through_unchanged() {
    round_trip::<ExportLogsServiceRequest>("events", "/v1/logs", "logs.jsonl").await;
}

/// A new upstream example copied into the fixtures must get a test above.
#[test]
fn every_fixture_example_is_tested() {
    let dir = test_file("fixtures/otlp-examples");
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("read fixtures/otlp-examples") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "README.md" {
            continue;
        }
        let (stem, _) = name.split_once('.').expect("fixture without extension");
        present.insert(stem.to_owned());
        let known = [".json", ".pb", ".protobuf.pb"]
            .iter()
            .map(|s| format!("{stem}{s}"))
            .chain(VARIANTS.iter().map(|v| format!("{stem}.{v}.json")))
            .any(|n| n == name);
        assert!(known, "unexpected fixture {name}");
    }
    let tested: BTreeSet<String> = EXAMPLES.iter().map(|e| e.to_string()).collect();
    assert_eq!(present, tested, "examples in {} vs tested", dir.display());
}
