//! [`GpuReceiver`]: loads NVML, runs the sampler and the event watcher on their own threads,
//! the PodResources poller as a task, and hands reports to the pipelines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use hpcotel_core::telemetry::unix_nanos;
use hpcotel_core::{Batch, Catalog, ComponentError, Receiver, ReceiverContext, SendError, Signal};
use nvml_wrapper::Nvml;
use tokio::sync::mpsc;

use super::config::Config;
use super::events::{self, GpuEvent};
use super::podresources::Poller;
use super::sampler::{self, Options, Sampler, XidStats};
use super::{Error, Result};

/// Reports (and event logs) waiting between the sampling threads and the pipeline.
const HANDOFF_CAPACITY: usize = 16;

/// Loads the NVML library named by `library_path` through nvml-wrapper's dynamic loading.
pub fn load_nvml(config: &Config) -> Result<Nvml> {
    Nvml::builder()
        .lib_path(config.library_path.as_os_str())
        .init()
        .map_err(|source| Error::Load {
            library: config.library_path.display().to_string(),
            source,
        })
}

/// The gpu receiver; build it with [`GpuReceiver::new`], run it as a [`Receiver`].
pub struct GpuReceiver {
    config: Config,
    catalog: Catalog,
    nvml: Option<Arc<Nvml>>,
}

impl std::fmt::Debug for GpuReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuReceiver")
            .field("config", &self.config)
            .field("nvml", &self.nvml.is_some())
            .finish_non_exhaustive()
    }
}

impl GpuReceiver {
    /// Loads NVML. Never fails: without a usable NVML library the receiver logs one line
    /// saying why and stays idle (a node without GPUs is not an error); PodResources still
    /// runs so the Catalog is filled for other components.
    pub fn new(config: &Config, catalog: Catalog) -> GpuReceiver {
        let nvml = match load_nvml(config) {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                tracing::warn!(
                    library = %config.library_path.display(),
                    error = %e,
                    "gpu receiver disabled: NVML is not available on this node (no NVIDIA driver?); the collector runs on without GPU telemetry"
                );
                None
            }
        };
        GpuReceiver {
            config: config.clone(),
            catalog,
            nvml,
        }
    }

    /// True when NVML loaded.
    pub fn enabled(&self) -> bool {
        self.nvml.is_some()
    }
}

/// Wakes a thread parked in `park_timeout` and tells it to stop.
struct StopSignal {
    flag: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl StopSignal {
    fn stop(self) -> Vec<std::thread::JoinHandle<()>> {
        self.flag.store(true, Ordering::SeqCst);
        for t in &self.threads {
            t.thread().unpark();
        }
        self.threads
    }
}

#[async_trait]
impl Receiver for GpuReceiver {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let GpuReceiver {
            config,
            catalog,
            nvml,
        } = *self;
        let poller = Poller::new(config.pod_resources.clone(), catalog.clone());
        let poller_stop = ctx.shutdown.child_token();
        let poller_task = tokio::spawn(poller.run(poller_stop.clone()));

        let Some(nvml) = nvml else {
            ctx.shutdown.cancelled().await;
            poller_stop.cancel();
            let _ = poller_task.await;
            return Ok(());
        };

        let (tx, mut rx) = mpsc::channel::<Batch>(HANDOFF_CAPACITY);
        let host = crate::host_attributes();
        let xids = Arc::new(XidStats::default());
        // In no logs pipeline (a metrics-only setup such as gpu -> prometheus), logs are not
        // built at all rather than refused one by one; Xid counters still count.
        let logs = ctx.outputs.handles(Signal::Logs);
        let options = Options {
            host: host.clone(),
            logs,
            processes: config.processes,
            mig: config.mig,
            proc_root: config.proc_root.clone(),
        };
        // Enumerating and identifying GPUs calls NVML, which can take seconds without
        // persistence mode: off the async workers.
        let sampler = {
            let (nvml, catalog, xids) = (Arc::clone(&nvml), catalog.clone(), Arc::clone(&xids));
            tokio::task::spawn_blocking(move || Sampler::new(nvml, catalog, xids, options)).await?
        };
        tracing::info!(
            receiver = %ctx.id,
            gpus = sampler.gpu_count(),
            driver = %sampler.driver_version(),
            sample_interval = ?config.sample_interval,
            report_interval = ?config.report_interval,
            "gpu receiver sampling"
        );
        let identities = sampler.identities();
        let flag = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let flag = Arc::clone(&flag);
            let tx = tx.clone();
            let id = ctx.id.to_string();
            let (sample_every, report_every) = (config.sample_interval, config.report_interval);
            threads.push(
                std::thread::Builder::new()
                    .name("hpcotel-gpu-sampler".into())
                    .spawn(move || {
                        sample_loop(sampler, sample_every, report_every, &flag, &tx, &id)
                    })?,
            );
        }
        if !config.events.is_empty() {
            let flag = Arc::clone(&flag);
            let tx = tx.clone();
            let kinds = config.events.clone();
            let nvml = Arc::clone(&nvml);
            let catalog = catalog.clone();
            let id = ctx.id.to_string();
            threads.push(
                std::thread::Builder::new()
                    .name("hpcotel-gpu-events".into())
                    .spawn(move || {
                        events::watch(nvml, identities, kinds, Arc::clone(&flag), |gpu, event| {
                            if let GpuEvent::Xid(Some(code)) = event {
                                xids.record(&gpu.uuid, code);
                            }
                            if !logs {
                                return;
                            }
                            let now = unix_nanos(SystemTime::now());
                            let logs = sampler::event_logs(&host, &catalog, gpu, &event, now);
                            // Events are rare and must not be lost: wait for room.
                            if tx.blocking_send(Batch::Logs(vec![logs])).is_err() {
                                tracing::warn!(receiver = %id, gpu = %gpu.uuid, "GPU event log lost: receiver stopped");
                            }
                        })
                    })?,
            );
        }
        drop(tx);
        let stop = StopSignal { flag, threads };

        let report_interval = config.report_interval;
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                batch = rx.recv() => match batch {
                    Some(b) => forward(&ctx, b, report_interval).await,
                    None => break,
                },
            }
        }
        // Stop the threads (the sampler emits its last partial window) and deliver what they
        // hand over: the channel closes when the last thread has exited.
        let threads = stop.stop();
        while let Some(b) = rx.recv().await {
            forward(&ctx, b, report_interval).await;
        }
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await?;
        poller_stop.cancel();
        let _ = poller_task.await;
        tracing::debug!(receiver = %ctx.id, "gpu receiver stopped");
        Ok(())
    }
}

async fn forward(ctx: &ReceiverContext, batch: Batch, within: std::time::Duration) {
    match ctx.outputs.send_within(batch, within).await {
        Ok(()) => {}
        Err(SendError::Full) => {
            tracing::warn!(receiver = %ctx.id, "pipeline full for a whole report interval; GPU report skipped");
        }
        Err(e) => tracing::warn!(receiver = %ctx.id, error = %e, "GPU report not delivered"),
    }
}

fn sample_loop(
    mut sampler: Sampler,
    sample_every: std::time::Duration,
    report_every: std::time::Duration,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Batch>,
    id: &str,
) {
    let send = |report: sampler::Report| {
        let mut batches = vec![Batch::Metrics(report.metrics)];
        if !report.logs.is_empty() {
            batches.push(Batch::Logs(report.logs));
        }
        for b in batches {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(b) {
                tracing::warn!(receiver = %id, "GPU report skipped: the pipeline has not taken the previous ones");
            }
        }
    };
    let mut next_sample = Instant::now();
    let mut next_report = next_sample + report_every;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next_sample {
            sampler.sample();
            next_sample += sample_every;
            if next_sample <= now {
                next_sample = now + sample_every;
            }
        }
        if now >= next_report {
            send(sampler.report(unix_nanos(SystemTime::now())));
            next_report += report_every;
            if next_report <= now {
                next_report = now + report_every;
            }
        }
        let wake = next_sample.min(next_report);
        std::thread::park_timeout(wake.saturating_duration_since(Instant::now()));
    }
    send(sampler.report(unix_nanos(SystemTime::now())));
}
