//! Acceptance: real MPI jobs (`mpi/tests/programs/job.c`, 4 ranks, `--oversubscribe`) with
//! `libhpcotel_mpi.so` preloaded by `hpcotel mpirun`, exporting through the real `hpcotel`
//! collector (OTLP/HTTP receiver) to testkit's OTLP sink. Open MPI and MPICH, each with its
//! own build of the library (`mpi/build.sh --mpicc …`). `scripts/test.sh` installs both from
//! Debian packages.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::{Hpcotel, free_port};
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{attr_int, attr_str};
use hpcotel_testkit::sink::{OtlpSink, Received};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

const WAIT: Duration = Duration::from_secs(60);

/// One MPI test at a time: each runs 4 ranks on a 2-core machine, and the straggler test
/// reads timings.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const RANKS: i64 = 4;
const ITERATIONS: i64 = 100;

/// One MPI implementation: its compiler wrapper, launcher and launcher arguments.
#[derive(Clone, Copy, Debug)]
struct Mpi {
    name: &'static str,
    mpicc: &'static str,
    mpirun: &'static str,
    /// Arguments before the program.
    launch: &'static [&'static str],
}

const OPEN_MPI: Mpi = Mpi {
    name: "openmpi",
    mpicc: "mpicc.openmpi",
    mpirun: "mpirun.openmpi",
    launch: &["--oversubscribe", "--bind-to", "none", "-np", "4"],
};

const MPICH: Mpi = Mpi {
    name: "mpich",
    mpicc: "mpicc.mpich",
    mpirun: "mpirun.mpich",
    launch: &["-np", "4"],
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The newest `libhpcotel_mpi-*.a` cargo built for this test (a dev-dependency).
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    std::fs::read_dir(deps)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libhpcotel_mpi-") && n.ends_with(".a"))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no libhpcotel_mpi-*.a in {}", deps.display()))
}

/// The library and the test program built with `mpi`'s compiler wrapper, once per process.
fn build(mpi: Mpi) -> &'static (PathBuf, PathBuf) {
    static OPEN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    static CH: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let cell = if mpi.name == "openmpi" { &OPEN } else { &CH };
    cell.get_or_init(|| {
        let installed = |cmd: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!(
            installed(mpi.mpicc) && installed(mpi.mpirun),
            "{} / {} not installed: run `bash scripts/test.sh` (it installs openmpi-bin \
             libopenmpi-dev mpich libmpich-dev)",
            mpi.mpicc,
            mpi.mpirun
        );
        // Under the target directory (target/debug/mpi-test/<mpi>/), replaced on every run.
        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("mpi-test")
            .join(mpi.name);
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libhpcotel_mpi.so");
        let out = Command::new("bash")
            .arg(root().join("mpi/build.sh"))
            .args(["--mpicc", mpi.mpicc, "--staticlib"])
            .arg(staticlib())
            .arg("--out")
            .arg(&lib)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "mpi/build.sh failed: {stderr}");
        assert!(
            !stderr.contains("warning:"),
            "the wrappers compile with warnings against {}'s mpi.h:\n{stderr}",
            mpi.name
        );
        let program = dir.join("job");
        let building = dir.join(format!("job.{}.tmp", std::process::id()));
        let out = Command::new(mpi.mpicc)
            .args(["-O2", "-o"])
            .arg(&building)
            .arg(root().join("mpi/tests/programs/job.c"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} job.c failed: {}",
            mpi.mpicc,
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&building, &program).unwrap();
        (lib, program)
    })
}

/// The launcher's environment: Open MPI refuses to run as root (CI containers) without the
/// first two; one host with no network fabric, so shared memory and loopback only.
const LAUNCH_ENV: [(&str, &str); 5] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_btl", "self,vader,tcp"),
    ("OMPI_MCA_btl_tcp_if_include", "lo"),
    ("OMPI_MCA_oob_tcp_if_include", "lo"),
];

/// Runs the job through `hpcotel mpirun` with `program_args`, exporting to `endpoint`.
fn run_job(mpi: Mpi, endpoint: &str, program_args: &[&str], env: &[(&str, &str)]) -> Output {
    let (lib, program) = build(mpi);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpcotel"));
    cmd.arg("mpirun")
        .arg("--library")
        .arg(lib)
        .args(["--endpoint", endpoint, "--launcher", mpi.mpirun, "--"])
        .args(mpi.launch)
        .arg(program)
        .args(program_args)
        .envs(LAUNCH_ENV)
        .env("OTEL_SERVICE_NAME", "allreduce-job");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hpcotel mpirun")
}

/// Runs the job with no library and no collector, for the reference exit code.
fn run_plain(mpi: Mpi, program_args: &[&str]) -> Output {
    let (_, program) = build(mpi);
    Command::new(mpi.mpirun)
        .args(mpi.launch)
        .arg(program)
        .args(program_args)
        .envs(LAUNCH_ENV)
        .output()
        .expect("run mpirun")
}

fn collector(sink: &OtlpSink) -> (Hpcotel, String) {
    let port = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:{port}"
exporters:
  otlp:
    endpoint: "{sink}"
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp] }}
    metrics: {{ receivers: [otlp], exporters: [otlp] }}
    logs: {{ receivers: [otlp], exporters: [otlp] }}
"#,
        sink = sink.grpc_endpoint()
    );
    (Hpcotel::start(&config), format!("http://127.0.0.1:{port}"))
}

/// The program's own count of its calls: `rank -> (name -> count)`.
fn program_counts(stdout: &str) -> BTreeMap<i64, BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("rank ")) {
        let rank: i64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let counts = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect();
        assert!(
            line.ends_with("result=OK"),
            "the job computed wrong: {line}"
        );
        out.insert(rank, counts);
    }
    out
}

/// Every span with its resource's `mpi.rank` (None for the launcher's root span).
fn spans(r: &Received) -> Vec<(Option<i64>, Span)> {
    r.traces
        .iter()
        .flat_map(|rs| {
            let rank = rs
                .resource
                .as_ref()
                .and_then(|res| attr_int(&res.attributes, semconv::MPI_RANK));
            rs.scope_spans
                .iter()
                .flat_map(move |ss| ss.spans.iter().map(move |s| (rank, s.clone())))
        })
        .collect()
}

/// `rank -> operation -> count` from the latest cumulative `mpi.call.duration` per rank.
fn histogram_counts(r: &Received) -> BTreeMap<i64, BTreeMap<String, u64>> {
    let mut latest: BTreeMap<i64, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for rm in &r.metrics {
        let Some(rank) = rm
            .resource
            .as_ref()
            .and_then(|res| attr_int(&res.attributes, semconv::MPI_RANK))
        else {
            continue;
        };
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let Some(Data::Histogram(h)) = &m.data else {
                continue;
            };
            assert_eq!(m.name, semconv::METRIC_MPI_CALL_DURATION);
            assert_eq!(m.unit, "s");
            let Some(t) = h.data_points.iter().map(|p| p.time_unix_nano).max() else {
                continue;
            };
            let entry = latest.entry(rank).or_default();
            if t < entry.0 {
                continue;
            }
            let mut counts = BTreeMap::new();
            for p in &h.data_points {
                let op = attr_str(&p.attributes, semconv::MPI_OPERATION)
                    .unwrap()
                    .to_owned();
                assert_eq!(
                    p.bucket_counts.iter().sum::<u64>(),
                    p.count,
                    "{op}: buckets disagree with the count"
                );
                *counts.entry(op).or_default() += p.count;
            }
            *entry = (t, counts);
        }
    }
    latest.into_iter().map(|(k, (_, c))| (k, c)).collect()
}

fn is_error(s: &Span) -> bool {
    s.status
        .as_ref()
        .is_some_and(|st| st.code == StatusCode::Error as i32)
}

/// Every log record received.
fn log_records(r: &Received) -> impl Iterator<Item = &LogRecord> {
    r.logs
        .iter()
        .flat_map(|rl| rl.scope_logs.iter().flat_map(|s| &s.log_records))
}

/// Rank 0's summary emitted at `MPI_Finalize` (`mpi.summary.final` = true).
fn final_summary(r: &Received) -> Option<&LogRecord> {
    log_records(r).find(|l| {
        l.event_name == semconv::EVENT_MPI_JOB_SUMMARY
            && l.attributes.iter().any(|a| {
                a.key == semconv::MPI_SUMMARY_FINAL
                    && a.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&Value::BoolValue(true))
            })
    })
}

/// A 2-worker runtime for a test that also runs blocking launchers on its own thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn full_job(mpi: Mpi) -> (Output, Received) {
    let rt = runtime();
    rt.block_on(async {
        let sink = OtlpSink::start().await;
        let (_collector, endpoint) = collector(&sink);
        let iterations = ITERATIONS.to_string();
        // One export at the end (a periodic one could show partial counts first).
        let out = run_job(
            mpi,
            &endpoint,
            &[
                "--iterations",
                &iterations,
                "--straggler",
                "2",
                "--intercomm",
            ],
            &[("OTEL_METRIC_EXPORT_INTERVAL", "600000")],
        );
        assert!(
            out.status.success(),
            "the job failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let received = sink
            .wait_for(
                "the root span, 4 rank spans, the job span and the final summary",
                WAIT,
                |r| {
                    let s = spans(r);
                    s.iter()
                        .filter(|(_, s)| s.name == semconv::SPAN_MPI_RANK)
                        .count()
                        == 4
                        && s.iter().any(|(_, s)| s.name == semconv::SPAN_MPI_JOB)
                        && s.iter().any(|(rank, _)| rank.is_none())
                        && histogram_counts(r).len() == 4
                        && final_summary(r).is_some()
                },
            )
            .await;
        (out, received)
    })
}

/// Acceptance 1–3 for one MPI implementation.
fn one_trace_histograms_phases_and_the_straggler(mpi: Mpi) {
    let _serial = serial();
    let (out, r) = full_job(mpi);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let program = program_counts(&stdout);
    assert_eq!(program.len(), RANKS as usize, "stdout:\n{stdout}");
    assert!(
        !stderr.contains("hpcotel-mpi:"),
        "the library warned with a collector up:\n{stderr}"
    );

    // 1. One trace: the launcher's root span, one mpi.job under it, 4 mpi.rank under that.
    let all = spans(&r);
    let trace_ids: std::collections::BTreeSet<&Vec<u8>> =
        all.iter().map(|(_, s)| &s.trace_id).collect();
    assert_eq!(trace_ids.len(), 1, "more than one trace");
    let root: Vec<&Span> = all
        .iter()
        .filter(|(rank, _)| rank.is_none())
        .map(|(_, s)| s)
        .collect();
    assert_eq!(root.len(), 1, "the launcher's root span");
    assert!(root[0].name.starts_with("mpirun"), "{}", root[0].name);
    let jobs: Vec<&(Option<i64>, Span)> = all
        .iter()
        .filter(|(_, s)| s.name == semconv::SPAN_MPI_JOB)
        .collect();
    assert_eq!(jobs.len(), 1, "exactly one mpi.job span");
    let (job_rank, job) = jobs[0];
    assert_eq!(*job_rank, Some(0), "rank 0 emits the job span");
    assert_eq!(job.parent_span_id, root[0].span_id);
    assert_eq!(
        attr_int(&job.attributes, semconv::MPI_WORLD_SIZE),
        Some(RANKS)
    );
    assert!(!is_error(job));
    let rank_spans: BTreeMap<i64, &Span> = all
        .iter()
        .filter(|(_, s)| s.name == semconv::SPAN_MPI_RANK)
        .map(|(rank, s)| (rank.unwrap(), s))
        .collect();
    assert_eq!(
        rank_spans.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    for (rank, s) in &rank_spans {
        assert_eq!(s.parent_span_id, job.span_id, "rank {rank}'s parent");
        assert!(!is_error(s), "rank {rank}: {:?}", s.status);
        assert!(s.start_time_unix_nano >= job.start_time_unix_nano - 5_000_000_000);
    }
    for rs in &r.traces {
        let res = &rs.resource.as_ref().unwrap().attributes;
        if attr_int(res, semconv::MPI_RANK).is_some() {
            assert_eq!(attr_str(res, semconv::SERVICE_NAME), Some("allreduce-job"));
            assert_eq!(attr_int(res, semconv::MPI_WORLD_SIZE), Some(RANKS));
            assert!(attr_str(res, semconv::HOST_NAME).is_some());
            assert!(attr_str(res, semconv::MPI_JOB_ID).is_some_and(|j| !j.is_empty()));
        }
    }

    // Histogram counts equal the program's own counts, rank by rank.
    let hist = histogram_counts(&r);
    println!("{}: histogram counts per rank: {hist:?}", mpi.name);
    println!("{}: the program's counts per rank: {program:?}", mpi.name);
    for (rank, counts) in &program {
        for (op, key) in [
            ("Allreduce", "allreduce"),
            ("Bcast", "bcast"),
            ("Barrier", "barrier"),
            ("Allgather", "allgather"),
            ("Alltoallv", "alltoallv"),
            ("Send", "send"),
            ("Recv", "recv"),
        ] {
            assert_eq!(
                hist[rank].get(op).copied().unwrap_or(0) as i64,
                counts[key],
                "rank {rank}: {op} histogram count vs the program's"
            );
        }
    }
    // The intercommunicator Alltoallv sends one int to each remote rank: 4 bytes from each of
    // the 3 ranks (1 remote rank), 12 from the last rank (3 remote ranks). A wrapper that
    // summed the counts over the local group's size would add the 1000000s past them.
    for rm in &r.metrics {
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let Some(Data::Histogram(h)) = &m.data else {
                continue;
            };
            for p in &h.data_points {
                if attr_str(&p.attributes, semconv::MPI_OPERATION) == Some("Alltoallv") {
                    let bucket = attr_str(&p.attributes, semconv::MPI_MESSAGE_SIZE_BUCKET);
                    assert!(
                        matches!(bucket, Some("8") | Some("64")),
                        "Alltoallv on an intercommunicator: bytes in class {bucket:?}"
                    );
                }
            }
        }
    }
    let total = |op: &str| hist.values().map(|c| c[op]).sum::<u64>() as i64;
    assert_eq!(total("Allreduce"), RANKS * ITERATIONS);
    assert_eq!(total("Bcast"), RANKS);

    // 2. Slow-call spans for the others' waits; the summary names rank 2. A waiting rank
    //    counts when its Allreduce took at least half the 50 ms delay: with 4 busy-polling
    //    ranks on 2 cores a rank can itself enter a few ms late, and it still waited.
    const HALF_THE_DELAY_NS: u64 = 25_000_000;
    let delayed = ITERATIONS / 10;
    let slow_allreduce = |rank: i64| {
        all.iter()
            .filter(|(r, s)| {
                *r == Some(rank)
                    && s.name == "MPI_Allreduce"
                    && s.end_time_unix_nano - s.start_time_unix_nano >= HALF_THE_DELAY_NS
            })
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    for rank in [0, 1, 3] {
        let slow = slow_allreduce(rank);
        println!(
            "{}: rank {rank}: {} Allreduce spans of 25 ms or more",
            mpi.name,
            slow.len()
        );
        assert!(
            slow.len() as i64 >= delayed,
            "rank {rank}: {} slow Allreduce spans, want {delayed}",
            slow.len()
        );
        let s = slow[0];
        assert_eq!(
            attr_str(&s.attributes, semconv::MPI_OPERATION),
            Some("Allreduce")
        );
        assert_eq!(
            attr_int(&s.attributes, semconv::MPI_COMMUNICATOR_SIZE),
            Some(RANKS)
        );
        assert_eq!(attr_int(&s.attributes, semconv::MPI_MESSAGE_SIZE), Some(8));
    }
    let rank2 = slow_allreduce(2).len() as i64;
    println!(
        "{}: rank 2 (the straggler): {rank2} Allreduce spans of 25 ms or more",
        mpi.name
    );
    assert!(
        rank2 < delayed,
        "the straggler itself waited in {rank2} Allreduces"
    );

    let summary = final_summary(&r).expect("the final job summary");
    let body = hpcotel_testkit::sink::any_value_string(summary.body.as_ref().unwrap()).unwrap();
    println!("{}: {body}", mpi.name);
    assert_eq!(
        attr_int(&summary.attributes, semconv::MPI_STRAGGLER_RANK),
        Some(2)
    );
    assert!(attr_str(&summary.attributes, semconv::MPI_STRAGGLER_HOST).is_some());
    assert!(attr_int(&summary.attributes, semconv::MPI_STRAGGLER_LAST_COUNT).unwrap() >= delayed);
    assert!(body.contains("straggler rank 2 on "), "{body}");
    assert_eq!(summary.trace_id, job.trace_id);
    assert_eq!(summary.span_id, job.span_id);

    // 3. MPI_Pcontrol phases as spans with the program's names, children of the rank span;
    //    the slow calls of an epoch sit under that epoch.
    for (rank, rank_span) in &rank_spans {
        for name in ["setup", "epoch 0", "epoch 1"] {
            let phase: Vec<&Span> = all
                .iter()
                .filter(|(r, s)| *r == Some(*rank) && s.name == name)
                .map(|(_, s)| s)
                .collect();
            assert_eq!(phase.len(), 1, "rank {rank}: phase {name:?}");
            assert_eq!(phase[0].parent_span_id, rank_span.span_id);
            assert_eq!(
                attr_str(&phase[0].attributes, semconv::MPI_PHASE),
                Some(name)
            );
        }
    }
    let epochs: Vec<&Vec<u8>> = all
        .iter()
        .filter(|(r, s)| *r == Some(0) && s.name.starts_with("epoch "))
        .map(|(_, s)| &s.span_id)
        .collect();
    assert!(
        slow_allreduce(0)
            .iter()
            .all(|s| epochs.contains(&&s.parent_span_id))
    );
}

#[test]
fn open_mpi_job_is_one_trace_with_histograms_phases_and_the_straggler() {
    one_trace_histograms_phases_and_the_straggler(OPEN_MPI);
}

#[test]
fn mpich_job_is_one_trace_with_histograms_phases_and_the_straggler() {
    one_trace_histograms_phases_and_the_straggler(MPICH);
}

/// Acceptance 4: no collector listening.
#[test]
fn without_a_collector_the_job_keeps_its_exit_code_and_warns_once_per_rank() {
    let _serial = serial();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let args = ["--iterations", "200", "--exit-code", "3"];
    let plain = run_plain(OPEN_MPI, &args);
    // Exports every 20 ms, so each rank fails many times during the job.
    let out = run_job(
        OPEN_MPI,
        &closed,
        &args,
        &[("OTEL_METRIC_EXPORT_INTERVAL", "20")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "exit codes: without the library {:?}, with it {:?}",
        plain.status.code(),
        out.status.code()
    );
    assert_eq!(
        plain.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert_eq!(out.status.code(), plain.status.code(), "stderr:\n{stderr}");
    assert_eq!(
        program_counts(&stdout).len(),
        RANKS as usize,
        "every rank finished"
    );
    // Ranks may be killed by mpirun once one rank exits with 3, before their final flush
    // fails, so not every rank gets to warn; none warns twice.
    assert!(
        stderr.contains("hpcotel-mpi: rank "),
        "no warning at all:\n{stderr}"
    );
    for rank in 0..RANKS {
        let warnings = stderr
            .lines()
            .filter(|l| l.starts_with(&format!("hpcotel-mpi: rank {rank}: ")))
            .count();
        println!("rank {rank}: {warnings} warning(s)");
        assert!(
            warnings <= 1,
            "rank {rank} warned {warnings} times:\n{stderr}"
        );
    }
}

/// `MPI_Abort`, an exit without `MPI_Finalize`, and `fork` in a rank.
#[test]
fn abort_a_missing_finalize_and_fork_end_the_spans_as_they_should() {
    let _serial = serial();
    let rt = runtime();
    rt.block_on(async {
        let sink = OtlpSink::start().await;
        let (_collector, endpoint) = collector(&sink);
        let rank_spans = |r: &Received, trace: &[u8]| -> Vec<(i64, Span)> {
            spans(r)
                .into_iter()
                .filter(|(_, s)| s.name == semconv::SPAN_MPI_RANK && s.trace_id == trace)
                .map(|(rank, s)| (rank.unwrap(), s))
                .collect()
        };
        let trace_of = |out: &Output| -> Vec<u8> {
            let line = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find_map(|l| l.strip_prefix("hpcotel: MPI job trace ").map(str::to_owned))
                .expect("hpcotel mpirun prints the trace id");
            (0..16)
                .map(|i| u8::from_str_radix(&line.trim()[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        };

        // fork: the child exits through exit(); still exactly 4 rank spans, none failed.
        let out = run_job(OPEN_MPI, &endpoint, &["--iterations", "10", "--fork"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace = trace_of(&out);
        let r = sink
            .wait_for("the forking job's 4 rank spans", WAIT, |r| {
                rank_spans(r, &trace).len() >= 4
            })
            .await;
        let forked = rank_spans(&r, &trace);
        assert_eq!(forked.len(), 4, "a forked child added spans");
        assert!(forked.iter().all(|(_, s)| !is_error(s)));

        // No MPI_Finalize: every rank span ends as an error saying so.
        let out = run_job(
            OPEN_MPI,
            &endpoint,
            &["--iterations", "10", "--no-finalize"],
            &[],
        );
        let trace = trace_of(&out);
        let r = sink
            .wait_for("the unfinalized job's 4 rank spans", WAIT, |r| {
                rank_spans(r, &trace).len() == 4
            })
            .await;
        for (rank, s) in rank_spans(&r, &trace) {
            assert!(
                is_error(&s),
                "rank {rank} without MPI_Finalize: {:?}",
                s.status
            );
            assert!(
                s.status
                    .as_ref()
                    .unwrap()
                    .message
                    .contains("without calling MPI_Finalize")
            );
        }

        // MPI_Abort on rank 1: its span fails with the code, and an error log says so.
        let out = run_job(
            OPEN_MPI,
            &endpoint,
            &["--iterations", "10", "--abort-rank", "1"],
            &[],
        );
        assert!(!out.status.success(), "MPI_Abort must fail the job");
        let trace = trace_of(&out);
        let r = sink
            .wait_for("rank 1's aborted span", WAIT, |r| {
                rank_spans(r, &trace).iter().any(|(rank, _)| *rank == 1)
            })
            .await;
        let aborted = rank_spans(&r, &trace)
            .into_iter()
            .find(|(rank, _)| *rank == 1)
            .unwrap()
            .1;
        assert!(is_error(&aborted));
        assert!(
            aborted
                .status
                .as_ref()
                .unwrap()
                .message
                .contains("MPI_Abort")
        );
        let r = sink
            .wait_for("the abort log", WAIT, |r| {
                log_records(r).any(|l| {
                    l.trace_id == trace
                        && attr_int(&l.attributes, semconv::MPI_ABORT_CODE) == Some(42)
                })
            })
            .await;
        assert!(!r.logs.is_empty());

        // No library collectives (MPMD jobs where some ranks run without the library), and
        // MPI_Pcontrol called with levels only: still one trace (from TRACEPARENT), the rank
        // spans under the one job span, no straggler summary, no crash.
        let out = run_job(
            OPEN_MPI,
            &endpoint,
            &["--iterations", "10", "--bare-pcontrol"],
            &[("HPCOTEL_MPI_COLLECTIVES", "off")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trace = trace_of(&out);
        let r = sink
            .wait_for("the job span and 4 rank spans", WAIT, |r| {
                rank_spans(r, &trace).len() == 4
                    && spans(r)
                        .iter()
                        .any(|(_, s)| s.trace_id == trace && s.name == semconv::SPAN_MPI_JOB)
            })
            .await;
        let job = spans(&r)
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace && s.name == semconv::SPAN_MPI_JOB)
            .map(|(_, s)| s)
            .collect::<Vec<_>>();
        assert_eq!(job.len(), 1);
        for (rank, s) in rank_spans(&r, &trace) {
            assert_eq!(s.parent_span_id, job[0].span_id, "rank {rank}'s parent");
            assert!(!is_error(&s));
        }
        let summaries = log_records(&r)
            .filter(|l| l.trace_id == trace && l.event_name == semconv::EVENT_MPI_JOB_SUMMARY)
            .count();
        assert_eq!(summaries, 0, "no straggler analysis without collectives");
    });
}
