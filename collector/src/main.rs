//! The `hpcotel` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hpcotel::config::{Config, EMBEDDED_NAME};
use hpcotel::service::Collector;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// hpcotel: the OpenTelemetry-native collector for GPU/HPC Kubernetes clusters.
#[derive(Parser, Debug)]
#[command(name = "hpcotel", version, about)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,hpcotel_exporters=debug`.
    #[arg(long, global = true, default_value = "info", env = "HPCOTEL_LOG_LEVEL")]
    log_level: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HPCOTEL_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the collector (the default command).
    Run {
        /// Config file; without it the embedded default is used (see `print-config`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file and exit: 0 when valid, 1 with the error otherwise.
    Validate {
        /// Config file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the effective config (defaults filled in, variables expanded, secrets redacted).
    PrintConfig {
        /// Config file; without it the embedded default is printed.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show this node's GPUs once (utilization, memory, power, temperature, clocks, throttle
    /// reasons, pod) and exit; exits 1 with a one-line reason when there is no GPU.
    Gpus {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The NVML library: a soname or a path.
        #[arg(long, env = "HPCOTEL_NVML_LIBRARY", default_value = hpcotel_receivers::gpu::DEFAULT_LIBRARY_PATH)]
        nvml_library: PathBuf,
        /// kubelet PodResources socket, for the pod column.
        #[arg(long, default_value = hpcotel_receivers::gpu::podresources::DEFAULT_ENDPOINT)]
        pod_resources: PathBuf,
    },
    /// Run an MPI job with every rank traced: starts the launcher with hpcotel's PMPI library
    /// (libhpcotel_mpi.so) preloaded into each rank and exporting to the collector.
    ///
    /// The launcher's `--version` decides how variables reach the ranks: Open MPI gets
    /// `-x NAME=VALUE`, Hydra (MPICH, Intel MPI) `-genv NAME VALUE`, before your arguments.
    /// The ranks get LD_PRELOAD (the library, then any LD_PRELOAD already set),
    /// OTEL_EXPORTER_OTLP_ENDPOINT, TRACEPARENT and OTEL_SERVICE_NAME (when set).
    ///
    /// A valid TRACEPARENT in the environment is passed on unchanged. Otherwise a new trace
    /// starts: its id is printed on stderr ("hpcotel: MPI job trace <id>"), and after the
    /// launcher exits one root span, `mpirun <program>`, is sent to <endpoint>/v1/traces.
    ///
    /// Exits with the launcher's exit code (128 + N when signal N killed it); 1 when the
    /// library or the launcher is missing. SIGTERM is forwarded to the launcher; Ctrl-C
    /// (SIGINT) reaches it from the terminal directly, and hpcotel waits for it to exit.
    ///
    /// Example: hpcotel mpirun -- -np 4 ./solver input.dat
    Mpirun {
        /// The PMPI library to preload [default: libhpcotel_mpi.so next to the hpcotel
        /// executable (for a Hydra launcher, in mpich/ there first), else in ../lib/].
        #[arg(long, env = "HPCOTEL_MPI_LIBRARY")]
        library: Option<PathBuf>,
        /// OTLP/HTTP base URL of the collector the ranks export to, http:// only (/v1/traces,
        /// /v1/metrics and /v1/logs are appended): the library exports over plain http to
        /// the node-local collector, which does TLS towards the backend.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", default_value = hpcotel::mpirun::DEFAULT_ENDPOINT)]
        endpoint: String,
        /// The MPI launcher: mpirun or mpiexec of Open MPI, MPICH or Intel MPI, or a path.
        #[arg(long, env = "HPCOTEL_MPIRUN", default_value = hpcotel::mpirun::DEFAULT_LAUNCHER)]
        launcher: String,
        /// The launcher's arguments (after `--`): options, the program and its arguments.
        #[arg(last = true, required = true, value_name = "MPIRUN_ARGS")]
        args: Vec<String>,
    },
}

fn load(config: Option<&PathBuf>) -> Result<Config, hpcotel::config::Error> {
    match config {
        Some(path) => Config::load_file(path),
        None => Config::embedded_default(),
    }
}

fn init_logs(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("--log-level: invalid level or filter '{}'", cli.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// jemalloc rather than glibc's malloc: after a burst (stalled uploads released, a backend
/// back up and its queue drained) glibc keeps the peak resident — its per-thread arenas and
/// its mmap threshold, which grows with every large free, keep freed memory from the OS —
/// while jemalloc's background threads return freed pages within about a second
/// (`dirty_decay_ms`, set at build time in `.cargo/config.toml`). Measured by
/// `collector/tests/hostile_clients.rs` (RSS back within 20 % of its value before a burst).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logs(&cli) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Validate { config }) => match Config::load_file(&config) {
            Ok(c) => {
                for unused in c.unused_components() {
                    eprintln!(
                        "warning: {}: {unused} is defined but used by no pipeline",
                        config.display()
                    );
                }
                for unused in c.unused_extensions() {
                    eprintln!(
                        "warning: {}: {unused} is defined but not listed in service.extensions",
                        config.display()
                    );
                }
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::PrintConfig { config }) => match load(config.as_ref()) {
            Ok(c) => {
                print!("{}", c.to_yaml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Gpus {
            json,
            nvml_library,
            pod_resources,
        }) => gpus(
            json,
            hpcotel::gpus::Options {
                library_path: nvml_library,
                pod_resources,
            },
        ),
        Some(Command::Mpirun {
            library,
            endpoint,
            launcher,
            args,
        }) => hpcotel::mpirun::run(hpcotel::mpirun::Options {
            library,
            endpoint,
            launcher,
            args,
        }),
        Some(Command::Run { config }) => run(config),
        None => run(None),
    }
}

/// A tokio runtime (multi-threaded for `run`), or the exit code after saying why not.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn gpus(json: bool, options: hpcotel::gpus::Options) -> ExitCode {
    let runtime = match runtime(false) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(hpcotel::gpus::collect(&options)) {
        Ok((rows, note)) => {
            if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", hpcotel::gpus::table(&rows));
            }
            if let Some(n) = note {
                eprintln!("note: {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    let config = match load(config_path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = config_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| EMBEDDED_NAME.to_string());
    for unused in config.unused_components() {
        warn!(config = %source, component = %unused, "defined but used by no pipeline; not started");
    }
    for unused in config.unused_extensions() {
        warn!(config = %source, component = %unused, "defined but not listed in service.extensions; not started");
    }
    let runtime = match runtime(true) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let collector = match Collector::build(config).await {
            Ok(c) => c,
            Err(e) => {
                error!(config = %source, error = %e, "cannot start");
                eprintln!("error: {source}: {e}");
                return ExitCode::FAILURE;
            }
        };
        info!(config = %source, version = env!("CARGO_PKG_VERSION"), "starting hpcotel");
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        let report = collector.run(shutdown).await;
        if report.clean {
            ExitCode::SUCCESS
        } else {
            let dropped: u64 = report.dropped.iter().map(|d| d.items).sum();
            error!(
                dropped,
                dropped_at_shutdown = report.dropped_at_shutdown,
                failed = ?report.failed,
                "hpcotel stopped uncleanly"
            );
            ExitCode::FAILURE
        }
    })
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop hpcotel with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(
        signal = name,
        "stopping: draining pipelines (send again to exit at once)"
    );
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    warn!("second signal: exiting without draining");
    std::process::exit(130);
}
