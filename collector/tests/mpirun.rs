//! Acceptance: `hpcotel mpirun` with a fake launcher (a shell script that answers `--version`
//! like Open MPI or Hydra and records its argv and environment), exporting the root span to
//! testkit's OTLP sink over HTTP. No MPI needed: `--library` points at any existing file (one
//! that names an MPI soname stands in for a build against that MPI).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::Proc;
use hpcotel_core::semconv;
use hpcotel_testkit::sink::{OtlpSink, any_value_string};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

const WAIT: Duration = Duration::from_secs(30);

/// A fake launcher in `dir`: `--version` prints `version`; any other call writes its
/// arguments (`ARG <arg>` lines) and its own `LD_PRELOAD` / `TRACEPARENT` to `record`, runs
/// `then` and exits with `code`.
struct FakeLauncher {
    path: PathBuf,
    record: PathBuf,
}

impl FakeLauncher {
    fn new(dir: &Path, version: &str, then: &str, code: i32) -> Self {
        let path = dir.join("fake-mpirun");
        let record = dir.join("launcher-record.txt");
        let script = format!(
            r#"#!/bin/sh
if [ "$1" = "--version" ]; then
    printf '%s\n\n' '{version}'
    exit 0
fi
{{
    for a in "$@"; do printf 'ARG %s\n' "$a"; done
    printf 'OWN_LD_PRELOAD=%s\n' "$LD_PRELOAD"
    printf 'OWN_TRACEPARENT=%s\n' "$TRACEPARENT"
}} > '{record}.tmp'
mv '{record}.tmp' '{record}'
{then}
exit {code}
"#,
            record = record.display(),
        );
        std::fs::write(&path, script).expect("write fake launcher");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod fake launcher");
        Self { path, record }
    }

    /// The recorded arguments, or `None` when the launcher never ran its job.
    fn args(&self) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(&self.record).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.strip_prefix("ARG "))
                .map(str::to_owned)
                .collect(),
        )
    }

    /// A recorded `OWN_<name>=` value (the launcher's own environment).
    fn own_env(&self, name: &str) -> String {
        let text = std::fs::read_to_string(&self.record).expect("launcher record");
        let prefix = format!("OWN_{name}=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in the record:\n{text}"))
            .to_owned()
    }
}

/// `hpcotel mpirun` with a clean MPI/OTel environment plus `env`.
fn hpcotel_mpirun(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpcotel"));
    cmd.arg("mpirun").args(args);
    for var in [
        "LD_PRELOAD",
        "TRACEPARENT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "HPCOTEL_MPIRUN",
        "HPCOTEL_MPI_LIBRARY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run hpcotel mpirun"))
        .await
        .expect("join")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file that stands in for libhpcotel_mpi.so.
fn fake_library(dir: &Path) -> PathBuf {
    let lib = dir.join("libhpcotel_mpi.so");
    std::fs::write(&lib, b"not really a shared object").expect("write fake library");
    lib
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_trace_gets_a_root_span_with_the_launchers_exit_code() {
    let sink = OtlpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_library(dir.path());
    let launcher = FakeLauncher::new(dir.path(), "mpirun (Open MPI) 4.1.4", "", 3);
    let endpoint = sink.http_endpoint();

    let out = output(hpcotel_mpirun(
        &[
            "--launcher",
            launcher.path.to_str().unwrap(),
            "--library",
            lib.to_str().unwrap(),
            "--endpoint",
            &endpoint,
            "--",
            "-np",
            "2",
            "./bin/solver",
            "--iters",
            "5",
        ],
        &[("OTEL_SERVICE_NAME", "cfd-test")],
    ))
    .await;
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "stderr:\n{stderr}");
    assert!(out.stdout.is_empty());

    // The launcher got the variables as Open MPI -x options, before the user's arguments.
    let args = launcher.args().expect("the launcher ran the job");
    let traceparent = args
        .iter()
        .find_map(|a| a.strip_prefix("TRACEPARENT="))
        .expect("-x TRACEPARENT=...")
        .to_owned();
    assert_eq!(
        args,
        vec![
            "-x".to_owned(),
            format!("LD_PRELOAD={}", lib.display()),
            "-x".into(),
            format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"),
            "-x".into(),
            format!("TRACEPARENT={traceparent}"),
            "-x".into(),
            "OTEL_SERVICE_NAME=cfd-test".into(),
            "-np".into(),
            "2".into(),
            "./bin/solver".into(),
            "--iters".into(),
            "5".into(),
        ]
    );
    // The launcher itself is not preloaded; only the ranks are.
    assert_eq!(launcher.own_env("LD_PRELOAD"), "");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[3]), ("00", "01"));
    let (trace_id, span_id) = (parts[1], parts[2]);
    assert_eq!((trace_id.len(), span_id.len()), (32, 16));

    // One line on stderr, naming the trace.
    assert_eq!(stderr, format!("hpcotel: MPI job trace {trace_id}\n"));

    // One root span for the TRACEPARENT's span id.
    let r = sink
        .wait_for("the mpirun root span", WAIT, |r| r.span_count() >= 1)
        .await;
    assert_eq!(r.span_count(), 1, "{}", r.summary());
    let span = r.spans()[0].clone();
    assert_eq!(span.name, "mpirun solver");
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(hex(&span.span_id), span_id);
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.kind, SpanKind::Internal as i32);
    assert!(span.start_time_unix_nano > 0);
    assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
    let status = span.status.clone().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "launcher exited with code 3");
    let attr = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
            .unwrap_or_else(|| panic!("no attribute {key}"))
    };
    assert_eq!(
        attr(semconv::PROCESS_EXIT_CODE).value,
        Some(Value::IntValue(3))
    );
    let Some(Value::ArrayValue(argv)) = attr(semconv::PROCESS_COMMAND_ARGS).value else {
        panic!("process.command_args is not an array");
    };
    let argv: Vec<String> = argv.values.iter().filter_map(any_value_string).collect();
    let mut expected = vec![launcher.path.display().to_string()];
    expected.extend(args);
    assert_eq!(argv, expected);
    assert_eq!(
        r.resource_attribute_values(semconv::SERVICE_NAME),
        vec!["cfd-test".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inherited_traceparent_is_passed_on_and_nothing_is_sent() {
    let sink = OtlpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_library(dir.path());
    let launcher = FakeLauncher::new(
        dir.path(),
        "HYDRA build details:\n    Version:                                 4.1.2",
        "",
        0,
    );
    let endpoint = sink.http_endpoint();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    // Everything from the environment this time.
    let out = output(hpcotel_mpirun(
        &["--", "-n", "4", "xhpl"],
        &[
            ("HPCOTEL_MPIRUN", launcher.path.to_str().unwrap()),
            ("HPCOTEL_MPI_LIBRARY", lib.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TRACEPARENT", traceparent),
        ],
    ))
    .await;
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(stderr, "", "nothing is printed on success");
    assert_eq!(
        launcher.args().expect("the launcher ran the job"),
        vec![
            "-genv".to_owned(),
            "LD_PRELOAD".into(),
            lib.display().to_string(),
            "-genv".into(),
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            endpoint.clone(),
            "-genv".into(),
            "TRACEPARENT".into(),
            traceparent.into(),
            "-n".into(),
            "4".into(),
            "xhpl".into(),
        ]
    );
    // hpcotel exits only after sending, so no request now means none at all.
    assert!(sink.requests().is_empty(), "{:?}", sink.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_forwarded_and_the_exit_code_is_128_plus_the_signal() {
    let sink = OtlpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lib = fake_library(dir.path());
    // The job announces itself on stderr (inherited through hpcotel), then waits.
    let launcher = FakeLauncher::new(
        dir.path(),
        "mpirun (Open MPI) 5.0.3",
        "echo 'fake job running' >&2\nexec sleep 300",
        0,
    );
    let cmd = hpcotel_mpirun(
        &[
            "--launcher",
            launcher.path.to_str().unwrap(),
            "--library",
            lib.to_str().unwrap(),
            "--endpoint",
            &sink.http_endpoint(),
            "--",
            "-np",
            "1",
            "sleeper",
        ],
        &[],
    );
    let config_path = dir.path().join("unused");
    let mut proc =
        tokio::task::spawn_blocking(move || Proc::spawn(cmd, "fake job running", dir, config_path))
            .await
            .expect("join");
    proc.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let status = proc.wait_exit(WAIT);
        (status, proc.stderr())
    })
    .await
    .expect("join");
    let (status, stderr) = status;
    assert_eq!(status.code(), Some(128 + 15), "stderr:\n{stderr}");

    let r = sink
        .wait_for("the mpirun root span", WAIT, |r| r.span_count() >= 1)
        .await;
    let span = r.spans()[0].clone();
    assert_eq!(span.name, "mpirun sleeper");
    let status = span.status.expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "launcher exited with code 143");
}

#[tokio::test]
async fn missing_library_exits_1_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(dir.path(), "mpirun (Open MPI) 4.1.4", "", 0);
    let missing = dir.path().join("nowhere/libhpcotel_mpi.so");
    let out = output(hpcotel_mpirun(
        &[
            "--launcher",
            launcher.path.to_str().unwrap(),
            "--library",
            missing.to_str().unwrap(),
            "--",
            "./a.out",
        ],
        &[],
    ))
    .await;
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: libhpcotel_mpi.so not found")
            && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    assert_eq!(launcher.args(), None, "the launcher must not run");
}

#[tokio::test]
async fn unknown_launcher_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(dir.path(), "srun (slurm) 23.02.7", "", 0);
    let (_, stderr) = refused_run(dir.path(), &launcher, b"not an MPI library", None).await;
    assert!(
        stderr.contains("cannot tell which MPI") && stderr.contains("srun (slurm) 23.02.7"),
        "{stderr}"
    );
}

/// `hpcotel mpirun` with `launcher` and a library file holding `library_bytes`: the exit
/// status and stderr of a run that is expected to stop before launching.
async fn refused_run(
    dir: &Path,
    launcher: &FakeLauncher,
    library_bytes: &[u8],
    endpoint: Option<&str>,
) -> (PathBuf, String) {
    let lib = dir.join("libhpcotel_mpi.so");
    std::fs::write(&lib, library_bytes).expect("write fake library");
    let mut args = vec![
        "--launcher",
        launcher.path.to_str().unwrap(),
        "--library",
        lib.to_str().unwrap(),
    ];
    if let Some(endpoint) = endpoint {
        args.extend(["--endpoint", endpoint]);
    }
    args.extend(["--", "-n", "2", "./a.out"]);
    let out = output(hpcotel_mpirun(&args, &[])).await;
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(launcher.args(), None, "the launcher must not run");
    (lib, stderr)
}

#[tokio::test]
async fn open_mpi_build_is_refused_for_a_hydra_launcher() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(
        dir.path(),
        "HYDRA build details:\n    Version:                                 4.1.2",
        "",
        0,
    );
    let (lib, stderr) = refused_run(
        dir.path(),
        &launcher,
        b"\x7fnot ELF\0libm.so.6\0libmpi.so.40\0libc.so.6\0",
        None,
    )
    .await;
    assert!(
        stderr.contains(&format!(
            "{} was built for Open MPI (it links libmpi.so.40)",
            lib.display()
        )) && stderr.contains(&format!("{} is a Hydra launcher", launcher.path.display()))
            && stderr.contains("mpi/build.sh --mpicc mpicc.mpich")
            && stderr.contains("--library"),
        "{stderr}"
    );
}

#[tokio::test]
async fn mpich_build_is_refused_for_an_open_mpi_launcher() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(dir.path(), "mpirun (Open MPI) 4.1.4", "", 0);
    let (lib, stderr) = refused_run(dir.path(), &launcher, b"\0libmpich.so.12\0", None).await;
    assert!(
        stderr.contains(&format!(
            "{} was built for MPICH (it links libmpich.so.12)",
            lib.display()
        )) && stderr.contains(&format!(
            "{} is Open MPI's launcher",
            launcher.path.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_of_the_launchers_mpi_is_preloaded() {
    let sink = OtlpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libhpcotel_mpi.so");
    std::fs::write(&lib, b"\0libmpich.so.12\0").expect("write fake library");
    let launcher = FakeLauncher::new(dir.path(), "HYDRA build details:", "", 0);
    let out = output(hpcotel_mpirun(
        &[
            "--launcher",
            launcher.path.to_str().unwrap(),
            "--library",
            lib.to_str().unwrap(),
            "--endpoint",
            &sink.http_endpoint(),
            "--",
            "./a.out",
        ],
        &[],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr_of(&out));
    let args = launcher.args().expect("the launcher ran the job");
    assert_eq!(args[..3], ["-genv", "LD_PRELOAD", lib.to_str().unwrap()]);
}

#[tokio::test]
async fn https_endpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = FakeLauncher::new(dir.path(), "mpirun (Open MPI) 4.1.4", "", 0);
    let (_, stderr) = refused_run(
        dir.path(),
        &launcher,
        b"not really a shared object",
        Some("https://otel.example:4318"),
    )
    .await;
    assert!(
        stderr.contains("https is not supported")
            && stderr.contains("https://otel.example:4318")
            && stderr.contains("plain http to the node-local collector"),
        "{stderr}"
    );
}
