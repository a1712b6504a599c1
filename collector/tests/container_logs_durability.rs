//! Container logs survive what kills agents and backends: the collector `kill -9`ed mid-file
//! loses no line and repeats only what was in flight (its checkpoint moves only over what
//! the backend acknowledged), and a backend stalled for 30 s makes reading pause — the files
//! are the buffer — with nothing dropped and memory bounded.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::pod_logs::{counts, log_path, missing_and_repeated, write_lines};
use common::{Hpcotel, PeakRss};
use hpcotel_testkit::sink::{Behaviour, OtlpSink, Received};

const WAIT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

fn start(root: &Path, state: &Path, sink: &OtlpSink) -> Hpcotel {
    Hpcotel::start(&format!(
        r#"
receivers:
  kubernetes_logs:
    root: "{root}"
    state_dir: "{state}"
    start_at: beginning
    poll_interval: 50ms
    # No kubernetes receiver here: no pod metadata to wait for.
    pod_metadata_wait: 0s
exporters:
  otlp:
    endpoint: "{sink}"
    retry_on_failure: {{ initial_interval: 200ms, max_interval: 1s }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs: {{ receivers: [kubernetes_logs], exporters: [otlp] }}
"#,
        root = root.display(),
        state = state.display(),
        sink = sink.grpc_endpoint()
    ))
}

/// The lines of `file` its checkpoint entry in `state` covers (0 without one).
fn checkpointed_lines(state: &Path, file: &Path) -> usize {
    let Ok(bytes) = std::fs::read(state.join("offsets.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let offset = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str() == Some(file.to_str().unwrap()))
        .and_then(|e| e["offset"].as_u64())
        .unwrap_or(0) as usize;
    let content = std::fs::read(file).unwrap();
    content[..offset.min(content.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Distinct lines `<tag>-<i>` read (observed) by the collector before `before`.
fn read_before(r: &Received, tag: &str, before: SystemTime) -> usize {
    let before = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let prefix = format!("{tag}-");
    let mut seen = std::collections::HashSet::new();
    for l in r.log_records() {
        let body = l
            .body
            .as_ref()
            .and_then(hpcotel_testkit::sink::any_value_string);
        if let Some(i) = body.as_deref().and_then(|b| b.strip_prefix(&prefix))
            && l.observed_time_unix_nano < before
        {
            seen.insert(i.to_owned());
        }
    }
    seen.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_killed_mid_file_loses_nothing_and_repeats_only_what_was_in_flight() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let path = log_path(&root, "ml", "killed-0", "main", 0);
    common::pod_logs::append(&path, b"");
    let sink = OtlpSink::start().await;
    let mut first = start(&root, &state, &sink);
    let p = path.clone();
    let none = |_: &Path, _: usize| {};
    let writer = std::thread::spawn(move || write_lines(&p, "killed", N, 5_000, usize::MAX, &none));

    // Delivery works and the checkpoint follows it.
    sink.wait_for("the first 2000 lines", WAIT, |r| {
        counts(r, "killed").len() >= 2_000
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while checkpointed_lines(&state, &path) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then the backend stops answering: what the collector reads from now on is in flight
    // (in its queues, or held by the backend) while the container writes on.
    sink.set_behaviour(Behaviour::Stall);
    sink.wait_for_in_flight(1, WAIT).await;
    writer.join().unwrap();
    first.kill9();
    let killed_at = SystemTime::now();
    let delivered = counts(&sink.received(), "killed").len();
    let checkpointed = checkpointed_lines(&state, &path);
    assert!(
        checkpointed > 0 && checkpointed <= delivered,
        "the checkpoint ({checkpointed} lines) is never ahead of what the backend has \
         ({delivered} lines)"
    );

    sink.set_behaviour(Behaviour::Accept);
    let mut second = start(&root, &state, &sink);
    let r = sink
        .wait_for("every line", WAIT, |r| counts(r, "killed").len() >= N)
        .await;
    let (missing, repeated) = missing_and_repeated(&r, "killed", N);
    let in_flight = read_before(&r, "killed", killed_at) - checkpointed;
    let repeated_below_checkpoint = counts(&r, "killed")
        .iter()
        .filter(|(i, k)| **k > 1 && **i < checkpointed)
        .count();
    println!(
        "kill -9: {N} lines written; at the kill the checkpoint covered {checkpointed}, the \
         backend had {delivered}, {in_flight} read past the checkpoint were in flight; after \
         the restart: {} missing, {repeated} repeated",
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "missing {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        repeated_below_checkpoint, 0,
        "a line the checkpoint covered was read again"
    );
    assert!(
        repeated <= in_flight,
        "{repeated} repeated, more than the {in_flight} in flight at the kill"
    );
    second.sigterm();
    assert!(second.wait_exit(WAIT).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_stalled_for_30s_pauses_reading_drops_nothing_and_bounds_memory() {
    const RATE: usize = 4_000;
    const N: usize = RATE * 40;
    const STALL: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let path = log_path(&root, "ml", "stalled-0", "main", 0);
    common::pod_logs::append(&path, b"");
    let sink = OtlpSink::start().await;
    let mut hpcotel = start(&root, &state, &sink);
    let p = path.clone();
    let none = |_: &Path, _: usize| {};
    let writer = std::thread::spawn(move || write_lines(&p, "stalled", N, RATE, usize::MAX, &none));
    sink.wait_for("the first 4000 lines", WAIT, |r| {
        counts(r, "stalled").len() >= 4_000
    })
    .await;
    let rss_before = hpcotel.rss();
    let peak = PeakRss::watch(hpcotel.pid());

    // The outage: 30 s of a backend that takes requests and never answers.
    sink.set_behaviour(Behaviour::Stall);
    let stalled_at = tokio::time::Instant::now();
    let file_size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // Its last 10 s: by then the export queue and the pipeline are full and reading waits.
    tokio::time::sleep_until(stalled_at + STALL - Duration::from_secs(10)).await;
    let (read_a, size_a) = (hpcotel.read_bytes(), file_size());
    tokio::time::sleep_until(stalled_at + STALL).await;
    let (read_b, size_b) = (hpcotel.read_bytes(), file_size());
    let during = sink.received();
    sink.set_behaviour(Behaviour::Accept);
    let peak_rss = peak.peak();

    writer.join().unwrap();
    let r = sink
        .wait_for("every line", WAIT, |r| counts(r, "stalled").len() >= N)
        .await;
    let (missing, repeated) = missing_and_repeated(&r, "stalled", N);
    println!(
        "backend stalled 30 s at {RATE} lines/s: in its last 10 s the container wrote {} KiB, \
         the collector read {} KiB; {} lines had arrived when it came back; RSS {:.1} MiB \
         before, peak {:.1} MiB; {N} lines written, {} missing, {repeated} repeated",
        (size_b - size_a) / 1024,
        (read_b - read_a) / 1024,
        counts(&during, "stalled").len(),
        rss_before as f64 / MIB as f64,
        peak_rss as f64 / MIB as f64,
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "missing {:?}",
        &missing[..missing.len().min(10)]
    );
    assert_eq!(repeated, 0, "lines delivered twice");
    assert!(
        (read_b - read_a) * 4 < size_b - size_a,
        "reading did not pause while the backend was stalled"
    );
    // The bound: what the default export queue (50,000 records) and the pipeline hold,
    // decoded, over the RSS before (measured: +34 MiB). Reading without pause would hold
    // all 120,000 lines written during the outage.
    assert!(
        peak_rss < rss_before + 64 * MIB,
        "RSS grew from {rss_before} to {peak_rss} bytes"
    );
    hpcotel.sigterm();
    assert!(hpcotel.wait_exit(WAIT).success());
    assert!(
        hpcotel
            .stderr()
            .contains("shutdown complete: everything accepted was delivered"),
        "{}",
        hpcotel.stderr()
    );
}
