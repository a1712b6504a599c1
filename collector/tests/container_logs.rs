//! Container logs, in the real binary: the `kubernetes_logs` receiver reads a pod log tree
//! written as containerd (CRI) and Docker's json-file driver write it, and testkit's sink
//! gets every line with its exact body, severity and attributes; through kubelet-style
//! rotation while writing, copy-truncate, a recreated file and a collector restart, every
//! line arrives exactly once. With the kubernetes receiver on testkit's fake API server, pods
//! are selected by their labels and annotations (known at start or only later) and limited
//! per pod, the drops counted in the self-telemetry.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::otlp::attr_str;
use common::pod_logs::{T, append, counts, log_path, write_lines};
use common::{Hpcotel, free_port};
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, Verb, fixtures};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

const WAIT: Duration = Duration::from_secs(30);
const PYTHON: &str = "Traceback (most recent call last):
  File \"train.py\", line 3, in <module>
    main()
ValueError: bad shape";
const JAVA: &str = "java.lang.IllegalStateException: boom
\tat com.example.Main.run(Main.java:10)
\tat com.example.Main.main(Main.java:5)
Caused by: java.io.IOException: disk full
\t... 2 more";
const GO: &str = "panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.main()
\t/app/main.go:12 +0x1d
exit status 2";
const T_NANOS: u64 = 1_796_623_200_123_456_789;

fn start(root: &Path, state: &Path, sink: &OtlpSink, start_at: &str) -> Hpcotel {
    Hpcotel::start(&format!(
        r#"
receivers:
  kubernetes_logs:
    root: "{root}"
    state_dir: "{state}"
    start_at: {start_at}
    poll_interval: 50ms
    # No kubernetes receiver here: no pod metadata to wait for at start.
    pod_metadata_wait: 0s
exporters:
  otlp: {{ endpoint: "{sink}" }}
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

fn body(r: &LogRecord) -> Option<String> {
    r.body.as_ref().and_then(any_value_string)
}

/// Every record with its resource's `k8s.pod.name`.
fn records(r: &Received) -> Vec<(String, LogRecord)> {
    r.logs
        .iter()
        .flat_map(|rl| {
            let pod = rl
                .resource
                .as_ref()
                .and_then(|res| attr_str(&res.attributes, "k8s.pod.name"))
                .unwrap_or_default()
                .to_owned();
            rl.scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .map(move |l| (pod.clone(), l.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_and_docker_lines_arrive_with_exact_bodies_severities_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let cri = log_path(&root, "ml", "trainer-0", "main", 2);
    let mut text = Vec::new();
    writeln!(text, "{T} stdout F INFO starting epoch 1").unwrap();
    writeln!(text, "{T} stdout P hello, ").unwrap();
    writeln!(
        text,
        "{T} stderr F E1207 06:00:00.000000 1 nccl.go:42] ring broken"
    )
    .unwrap();
    writeln!(text, "{T} stdout F world").unwrap();
    // 3 MiB in containerd's 16 KiB parts: joined, cut at 1 MiB.
    let part = "x".repeat(16 * 1024);
    for _ in 0..3 * 64 - 1 {
        writeln!(text, "{T} stdout P {part}").unwrap();
    }
    writeln!(text, "{T} stdout F {part}").unwrap();
    writeln!(
        text,
        r#"{T} stderr F {{"level":"ERROR","msg":"boom","step":3,"ok":false}}"#
    )
    .unwrap();
    // Stack traces: each one record.
    for block in [PYTHON, JAVA, GO] {
        for l in block.lines() {
            writeln!(text, "{T} stderr F {l}").unwrap();
        }
    }
    text.extend_from_slice(format!("{T} stdout F bad ").as_bytes());
    text.extend_from_slice(b"\xff bytes\n");
    // The container died before its newline.
    write!(text, "{T} stdout F last words").unwrap();
    append(&cri, &text);
    let docker = log_path(&root, "web", "api-0", "api", 0);
    append(
        &docker,
        format!(
            "{{\"log\":\"WARNING:urllib3:retrying\\n\",\"stream\":\"stderr\",\"time\":\"{T}\"}}\n\
             {{\"log\":\"half \",\"stream\":\"stdout\",\"time\":\"{T}\"}}\n\
             {{\"log\":\"and half\\n\",\"stream\":\"stdout\",\"time\":\"{T}\"}}\n"
        )
        .as_bytes(),
    );

    let sink = OtlpSink::start().await;
    let _hpcotel = start(&root, &state, &sink, "beginning");
    let r = sink
        .wait_for("12 log records", WAIT, |r| r.log_record_count() >= 12)
        .await;
    let got = records(&r);
    let find = |pod: &str, start: &str| {
        got.iter()
            .find(|(p, l)| p == pod && body(l).is_some_and(|b| b.starts_with(start)))
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| panic!("no record of {pod} starting {start:?}: {got:?}"))
    };
    let sev = |l: &LogRecord| (l.severity_number, l.severity_text.clone());

    let l = find("trainer-0", "INFO starting");
    assert_eq!(body(&l).unwrap(), "INFO starting epoch 1");
    assert_eq!(sev(&l), (9, "INFO".into()));
    assert_eq!(l.time_unix_nano, T_NANOS);
    assert!(l.observed_time_unix_nano > 0);
    assert_eq!(attr_str(&l.attributes, "log.iostream"), Some("stdout"));
    assert_eq!(
        attr_str(&l.attributes, "log.file.path"),
        Some(cri.to_str().unwrap())
    );
    assert_eq!(body(&find("trainer-0", "hello")).unwrap(), "hello, world");
    let glog = find("trainer-0", "E1207");
    assert_eq!(
        (sev(&glog).0, attr_str(&glog.attributes, "log.iostream")),
        (17, Some("stderr"))
    );
    let long = find("trainer-0", "xxxx");
    assert_eq!(body(&long).unwrap().len(), 1024 * 1024);
    let cut = long
        .attributes
        .iter()
        .find(|kv| kv.key == "hpcotel.log.truncated_bytes")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::IntValue(i) => Some(*i),
            _ => None,
        });
    assert_eq!(cut, Some(3 * 1024 * 1024 - 1024 * 1024));
    let json = got
        .iter()
        .find(|(_, l)| {
            matches!(
                l.body.as_ref().and_then(|b| b.value.as_ref()),
                Some(Value::KvlistValue(_))
            )
        })
        .map(|(_, l)| l.clone())
        .expect("the JSON line as a map body");
    assert_eq!(sev(&json), (17, "ERROR".into()));
    let Some(Value::KvlistValue(map)) = json.body.as_ref().and_then(|b| b.value.clone()) else {
        unreachable!()
    };
    let fields: HashMap<String, Option<Value>> = map
        .values
        .into_iter()
        .map(|kv| (kv.key, kv.value.and_then(|v| v.value)))
        .collect();
    assert_eq!(fields["msg"], Some(Value::StringValue("boom".into())));
    assert_eq!(fields["step"], Some(Value::IntValue(3)));
    assert_eq!(fields["ok"], Some(Value::BoolValue(false)));
    assert_eq!(
        body(&find("trainer-0", "bad")).unwrap(),
        "bad \u{fffd} bytes"
    );
    assert_eq!(
        body(&find("trainer-0", "last words")).unwrap(),
        "last words"
    );
    let retry = find("api-0", "WARNING");
    assert_eq!(sev(&retry), (13, "WARN".into()));
    assert_eq!(body(&find("api-0", "half")).unwrap(), "half and half");
    // Resource attributes of the CRI file.
    let res = r
        .logs
        .iter()
        .find_map(|rl| {
            let res = rl.resource.as_ref()?;
            (attr_str(&res.attributes, "k8s.pod.name") == Some("trainer-0")).then_some(res)
        })
        .unwrap();
    for (k, v) in [
        ("k8s.namespace.name", "ml"),
        ("k8s.pod.uid", "uid-trainer-0"),
        ("k8s.container.name", "main"),
    ] {
        assert_eq!(attr_str(&res.attributes, k), Some(v), "{k}");
    }
    let restarts = res
        .attributes
        .iter()
        .find(|kv| kv.key == "k8s.container.restart_count")
        .and_then(|kv| kv.value.clone()?.value);
    assert_eq!(restarts, Some(Value::IntValue(2)));
    println!(
        "container logs: {} records from a CRI and a Docker json-file log; the 3 MiB line cut to \
         1 MiB (truncated_bytes {}), JSON as a map body with severity ERROR, a Python \
         traceback, a Java exception and a Go panic one record each",
        got.len(),
        cut.unwrap()
    );
    let short: Vec<_> = got
        .iter()
        .map(|(p, l)| (p, body(l).map(|b| b.chars().take(40).collect::<String>())))
        .collect();
    assert_eq!(got.len(), 12, "{short:?}");
}

fn assert_exactly_once(r: &Received, tag: &str, n: usize) {
    let c = counts(r, tag);
    let missing: Vec<usize> = (0..n).filter(|i| !c.contains_key(i)).collect();
    let twice: Vec<usize> = c.iter().filter(|(_, k)| **k > 1).map(|(i, _)| *i).collect();
    println!(
        "{tag}: {n} lines written, {} delivered, {} missing, {} twice",
        c.values().sum::<usize>(),
        missing.len(),
        twice.len()
    );
    assert!(
        missing.is_empty(),
        "{tag}: missing {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{tag}: twice {:?}",
        &twice[..twice.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_copy_truncate_and_recreation_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let renamed = log_path(&root, "ml", "rename-0", "main", 0);
    let truncated = log_path(&root, "ml", "truncate-0", "main", 0);
    let recreated = log_path(&root, "ml", "recreate-0", "main", 0);
    for p in [&renamed, &truncated, &recreated] {
        append(p, b"");
    }
    let sink = OtlpSink::start().await;
    let _hpcotel = start(&root, &state, &sink, "beginning");

    // kubelet: rename 0.log to 0.log.<timestamp>, the runtime opens a new 0.log.
    let rename = |p: &Path, i: usize| {
        std::fs::rename(p, p.with_extension(format!("log.2026120706{i:04}"))).unwrap();
    };
    // copytruncate: copy, then truncate in place.
    let copy_truncate = |p: &Path, i: usize| {
        std::fs::copy(p, p.with_extension(format!("log.{i}"))).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .unwrap();
    };
    // Deleted and recreated (after the reader had time to finish it).
    let recreate = |p: &Path, _: usize| {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::remove_file(p).unwrap();
    };
    let (a, b, c) = (renamed.clone(), truncated.clone(), recreated.clone());
    let writers = [
        std::thread::spawn(move || write_lines(&a, "rename", 15_000, 5_000, 5_000, &rename)),
        std::thread::spawn(move || {
            write_lines(&b, "truncate", 3_000, 1_000, 1_000, &copy_truncate)
        }),
        std::thread::spawn(move || write_lines(&c, "recreate", 2_000, 1_000, 1_000, &recreate)),
    ];
    for w in writers {
        w.join().unwrap();
    }
    // Every line, or the deadline: then the counts say what is missing.
    let deadline = std::time::Instant::now() + WAIT;
    let complete = |r: &Received| {
        counts(r, "rename").len() >= 15_000
            && counts(r, "truncate").len() >= 3_000
            && counts(r, "recreate").len() >= 2_000
    };
    while !complete(&sink.received()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = sink.received();
    assert_exactly_once(&r, "rename", 15_000);
    assert_exactly_once(&r, "recreate", 2_000);
    // copy-truncate can lose what was written between the copy and the truncation, as with
    // every tailer; here the reader keeps up, so nothing is.
    assert_exactly_once(&r, "truncate", 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_resumes_where_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let path = log_path(&root, "ml", "resume-0", "main", 0);
    let none = |_: &Path, _: usize| {};
    write_lines(&path, "resume", 2_000, 1_000_000, usize::MAX, &none);
    let sink = OtlpSink::start().await;
    let mut first = start(&root, &state, &sink, "beginning");
    sink.wait_for("the first 2000", WAIT, |r| {
        counts(r, "resume").len() >= 2_000
    })
    .await;
    first.sigterm();
    assert!(first.wait_exit(WAIT).success());
    // Written while the collector was down, then more after it is back.
    for i in 2_000..3_000 {
        append(&path, format!("{T} stdout F resume-{i}\n").as_bytes());
    }
    let _second = start(&root, &state, &sink, "end");
    for i in 3_000..4_000 {
        append(&path, format!("{T} stdout F resume-{i}\n").as_bytes());
    }
    let r = sink
        .wait_for("all 4000", WAIT, |r| counts(r, "resume").len() >= 4_000)
        .await;
    assert_exactly_once(&r, "resume", 4_000);
}

/// Pod `ns/name` (uid `uid-<name>`) on node-1 with `labels` and `annotations`.
fn node_pod(
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> serde_json::Value {
    fixtures::pod(
        ns,
        name,
        &format!("uid-{name}"),
        "node-1",
        None,
        "10.0.0.20",
        annotations,
        labels,
    )
}

/// The latest `hpcotel.receiver.refused{hpcotel.reason=rate_limited}` of `kubernetes_logs`.
fn rate_limited(r: &Received) -> i64 {
    r.metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == semconv::METRIC_HPCOTEL_RECEIVER_REFUSED)
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.iter().find(|p| {
                attr_str(&p.attributes, semconv::HPCOTEL_REASON) == Some("rate_limited")
                    && attr_str(&p.attributes, semconv::HPCOTEL_COMPONENT_ID)
                        == Some("kubernetes_logs")
            }),
            _ => None,
        })
        .filter_map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => Some(v),
            _ => None,
        })
        .next_back()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_selected_by_labels_and_annotations_and_limited_per_pod() {
    const RATE: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("pods"), dir.path().join("state"));
    let api = FakeApiServer::start().await;
    for p in [
        node_pod("ml", "quiet-0", &[("team", "ml")], &[]),
        node_pod("ml", "chatty-0", &[("team", "ml")], &[]),
        node_pod(
            "ml",
            "optout-0",
            &[("team", "ml")],
            &[("hpcotel.io/logs", "false")],
        ),
        node_pod("ml", "nolog-0", &[("team", "ml"), ("logging", "off")], &[]),
        node_pod(
            "hpcotel",
            "hpcotel-agent-x",
            &[
                ("app.kubernetes.io/name", "hpcotel"),
                ("app.kubernetes.io/component", "cluster"),
            ],
            &[],
        ),
        node_pod("ml", "marker-0", &[], &[]),
        node_pod("ml", "marker-1", &[], &[]),
    ] {
        api.apply(p);
    }
    // The pods already there at start, each with lines written before it.
    let path = |ns: &str, pod: &str| log_path(&root, ns, pod, "main", 0);
    let (quiet, chatty) = (path("ml", "quiet-0"), path("ml", "chatty-0"));
    let (optout, nolog) = (path("ml", "optout-0"), path("ml", "nolog-0"));
    let own = path("hpcotel", "hpcotel-agent-x");
    for (p, tag) in [
        (&quiet, "quiet"),
        (&optout, "optout"),
        (&nolog, "nolog"),
        (&own, "own"),
    ] {
        for i in 0..20 {
            append(p, format!("{T} stdout F {tag}-pre-{i}\n").as_bytes());
        }
    }
    append(&chatty, b"");

    let sink = OtlpSink::start().await;
    let metrics = OtlpSink::start().await;
    let started = std::time::Instant::now();
    let hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp}" }}
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
  kubernetes_logs:
    root: "{root}"
    state_dir: "{state}"
    start_at: beginning
    poll_interval: 50ms
    exclude_pod_labels: ["logging=off"]
    # Long enough that a late pod is read because it became known, never by timing out.
    pod_metadata_wait: 60s
    rate_limit: {{ lines_per_second: {RATE}, burst: 1s }}
exporters:
  otlp: {{ endpoint: "{sink}" }}
  otlp/self: {{ endpoint: "{metrics}" }}
service:
  telemetry: {{ metrics: {{ level: basic, interval: 200ms }} }}
  pipelines:
    logs: {{ receivers: [kubernetes_logs], exporters: [otlp] }}
    metrics: {{ receivers: [otlp], exporters: [otlp/self] }}
"#,
        otlp = free_port(),
        api = api.url(),
        root = root.display(),
        state = state.display(),
        sink = sink.grpc_endpoint(),
        metrics = metrics.grpc_endpoint(),
    ));
    assert!(
        api.wait_until(WAIT, |a| a.requests().iter().any(|r| r.verb == Verb::Watch
            && r.plural == "pods"
            && r.status == 200))
            .await,
        "the kubernetes receiver never watched pods"
    );

    // A chatty pod and a quiet one on the same node, the excluded ones writing too. The
    // chatty one's lines carry the time they are written, as the runtime stamps them (the
    // limit counts per second of that time, or of the wall clock when it lags).
    const CHATTY: usize = 3_000;
    const QUIET: usize = 150;
    let none = |_: &Path, _: usize| {};
    let chatty_writer = {
        let p = chatty.clone();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            for i in 0..CHATTY {
                let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
                append(&p, format!("{now} stdout F chatty-{i}\n").as_bytes());
                // Pace the writer (not synchronisation: the rate under test), 1000 a second.
                let due = started + Duration::from_millis(i as u64 + 1);
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };
    let writers: Vec<_> = [
        (quiet.clone(), "quiet", QUIET, 50),
        (optout.clone(), "optout", 150, 50),
        (nolog.clone(), "nolog", 150, 50),
        (own.clone(), "own", 150, 50),
    ]
    .into_iter()
    .map(|(p, tag, n, rate)| {
        std::thread::spawn(move || write_lines(&p, tag, n, rate, usize::MAX, &none))
    })
    .chain([chatty_writer])
    .collect();

    // Pods whose files appear before the Catalog knows them: one that will say it opted out,
    // one that will not. Once a later pod's line arrived, a look at the tree saw them both.
    let (late, lateout) = (path("ml", "late-0"), path("ml", "lateout-0"));
    for (p, tag) in [(&lateout, "lateout"), (&late, "late")] {
        for i in 0..20 {
            append(p, format!("{T} stdout F {tag}-{i}\n").as_bytes());
        }
    }
    append(
        &path("ml", "marker-0"),
        format!("{T} stdout F marker-0\n").as_bytes(),
    );
    sink.wait_for("marker-0", WAIT, |r| counts(r, "marker").contains_key(&0))
        .await;
    assert!(
        counts(&sink.received(), "late").is_empty(),
        "read before it was known"
    );
    // Now the API server knows them, the opted-out one first.
    api.apply(node_pod(
        "ml",
        "lateout-0",
        &[],
        &[("hpcotel.io/logs", "false")],
    ));
    api.apply(node_pod("ml", "late-0", &[], &[]));
    sink.wait_for("late-0's lines", WAIT, |r| counts(r, "late").len() >= 20)
        .await;

    for w in writers {
        w.join().unwrap();
    }
    // A look at the tree after everything above: what was not read by now never will be.
    append(
        &path("ml", "marker-1"),
        format!("{T} stdout F marker-1\n").as_bytes(),
    );
    sink.wait_for("the quiet pod's lines and marker-1", WAIT, |r| {
        counts(r, "quiet").len() >= QUIET && counts(r, "marker").contains_key(&1)
    })
    .await;
    let pre = |r: &Received, tag: &str| {
        let prefix = format!("{tag}-pre-");
        r.log_bodies()
            .iter()
            .filter(|b| b.starts_with(&prefix))
            .count()
    };
    // Every chatty line is delivered or counted as dropped, exactly.
    let deadline = std::time::Instant::now() + WAIT;
    let (delivered, dropped) = loop {
        let delivered = counts(&sink.received(), "chatty").len();
        let dropped = rate_limited(&metrics.received());
        if delivered as i64 + dropped == CHATTY as i64 || std::time::Instant::now() > deadline {
            break (delivered, dropped);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let r = sink.received();
    let warnings: Vec<String> = hpcotel
        .stderr()
        .lines()
        .filter(|l| l.contains("pod over its rate limit"))
        .map(str::to_owned)
        .collect();
    println!(
        "selection: quiet-0 {} of {} lines (+{} of 20 written before start), late-0 {} of 20 \
         (its files seen before the API server knew it), opted-out optout-0 {}, lateout-0 {}, \
         label-excluded nolog-0 {}, hpcotel's own pod {}; rate limit {RATE}/s, burst 1 s: \
         chatty-0 wrote {CHATTY} at 1000/s, {delivered} delivered ({:.0}/s over the {elapsed:.1} \
         s since start), hpcotel.receiver.refused{{reason=rate_limited}} = {dropped}; {} \
         warning(s)",
        counts(&r, "quiet").len(),
        QUIET,
        pre(&r, "quiet"),
        counts(&r, "late").len(),
        counts(&r, "optout").len() + pre(&r, "optout"),
        counts(&r, "lateout").len(),
        counts(&r, "nolog").len() + pre(&r, "nolog"),
        counts(&r, "own").len() + pre(&r, "own"),
        delivered as f64 / elapsed,
        warnings.len(),
    );
    assert_exactly_once(&r, "quiet", QUIET);
    assert_eq!(
        pre(&r, "quiet"),
        20,
        "the quiet pod's lines from before the start"
    );
    assert_exactly_once(&r, "late", 20);
    for tag in ["optout", "lateout", "nolog", "own"] {
        assert_eq!(counts(&r, tag).len() + pre(&r, tag), 0, "{tag}: read");
    }
    // The bucket: its burst, then the rate; never more than burst + rate × time.
    assert!(delivered >= RATE, "{delivered}: less than the burst");
    assert!(
        (delivered as f64) <= RATE as f64 * (1.0 + elapsed),
        "{delivered} in {elapsed:.1} s: over the limit"
    );
    assert!(
        counts(&r, "chatty").values().all(|n| *n == 1),
        "a chatty line twice"
    );
    assert_eq!(
        delivered as i64 + dropped,
        CHATTY as i64,
        "delivered + dropped"
    );
    assert_eq!(
        warnings.len(),
        1,
        "one warning per pod per minute: {warnings:?}"
    );
    assert!(warnings[0].contains("chatty-0"), "{}", warnings[0]);
}
