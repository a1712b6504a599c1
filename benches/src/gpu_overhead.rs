//! `gpu-overhead`: the whole collector's CPU and memory while the gpu receiver samples 8 GPUs
//! (testkit's fake NVML) at 10 Hz, next to an idle rotel as a peer measured in the same run.
//!
//! ```sh
//! cargo build --release -p hpcotel -p hpcotel-benches --bin gpu-overhead
//! target/release/gpu-overhead --hpcotel target/release/hpcotel --duration 60s \
//!     [--rotel .venv/lib/python3.11/site-packages/rotel/rotel-agent]
//! ```
//!
//! hpcotel runs the gpu receiver (`sample_interval: 100ms`, `report_interval: 10s`) into the
//! debug exporter; rotel runs with its OTLP receiver and the blackhole exporter. For each
//! process it reads `/proc/<pid>/stat` (user + system CPU time) after a warm-up and at the
//! end, and `/proc/<pid>/status` (`VmRSS`, `VmHWM`), and prints one JSON line per process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hpcotel_testkit::nvml::{FakeNvml, Scenario};

#[derive(Parser, Debug)]
struct Args {
    /// The hpcotel binary (build it with --release).
    #[arg(long)]
    hpcotel: PathBuf,
    /// A rotel-agent binary to measure idle beside it (the peer).
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Measurement time after warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// GPUs in the fake machine.
    #[arg(long, default_value_t = 8)]
    gpus: u32,
    /// Sampling interval.
    #[arg(long, default_value = "100ms")]
    sample_interval: String,
}

const WARMUP: Duration = Duration::from_secs(3);

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of `pid`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f[11].parse()?;
    let stime: f64 = f[12].parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// (`VmRSS`, `VmHWM`) of `pid`, in MiB.
fn memory_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .with_context(|| format!("{key} missing"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .context("no value")?
            .parse::<f64>()?)
    };
    Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

struct Measured {
    name: &'static str,
    child: Child,
}

fn measure(procs: &mut [Measured], duration: Duration) -> Result<()> {
    std::thread::park_timeout(WARMUP);
    let start: Vec<f64> = procs
        .iter()
        .map(|p| cpu_seconds(p.child.id()))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let deadline = t0 + duration;
    while Instant::now() < deadline {
        for p in procs.iter_mut() {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited early ({status}); its log is kept", p.name);
            }
        }
        std::thread::park_timeout(Duration::from_millis(500));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    for (p, s0) in procs.iter().zip(start) {
        let cpu = cpu_seconds(p.child.id())? - s0;
        let (rss, hwm) = memory_mib(p.child.id())?;
        println!(
            "{{\"process\":\"{}\",\"seconds\":{elapsed:.1},\"cpu_percent_of_one_core\":{:.3},\"rss_mib\":{rss:.1},\"peak_rss_mib\":{hwm:.1}}}",
            p.name,
            100.0 * cpu / elapsed
        );
    }
    Ok(())
}

fn hpcotel(args: &Args, fake: &FakeNvml, dir: &Path) -> Result<Child> {
    let config = dir.join("hpcotel.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  gpu:\n    sample_interval: {}\n    report_interval: 10s\n    library_path: \"{}\"\n    pod_resources: {{ endpoint: \"{}\" }}\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics: {{ receivers: [gpu], exporters: [debug] }}\n    logs: {{ receivers: [gpu], exporters: [debug] }}\n",
            args.sample_interval,
            fake.library_path().display(),
            dir.join("no-kubelet.sock").display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("hpcotel.log"))?;
    Ok(Command::new(&args.hpcotel)
        .args(["--log-level", "warn", "run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let fake = FakeNvml::new(&Scenario::with_gpus(args.gpus));
    let dir = tempfile::tempdir()?;
    let mut procs = vec![Measured {
        name: "hpcotel",
        child: hpcotel(&args, &fake, dir.path())?,
    }];
    if let Some(rotel) = &args.rotel {
        let child = Command::new(rotel)
            .args(["start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", "127.0.0.1:34317"])
            .args(["--otlp-http-endpoint", "127.0.0.1:34318"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        procs.push(Measured {
            name: "rotel (idle peer)",
            child,
        });
    }
    let result = measure(&mut procs, args.duration);
    if result.is_err() {
        let log = std::fs::read_to_string(dir.path().join("hpcotel.log")).unwrap_or_default();
        eprintln!("hpcotel's log:\n{log}");
    }
    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    result
}
