//! The running collector: turns a [`Config`] into tasks and channels, runs them, and shuts
//! them down in order.
//!
//! ```text
//! receiver ─┐                 bounded            bounded                 export queue
//! receiver ─┼─► pipeline in ─────────► processor ─────────► fan-out ─┬─► exporter A
//! self-metrics ┘   (per pipeline)                                     └─► exporter B
//! ```
//!
//! Shutdown (SIGTERM/SIGINT): receivers are cancelled and finish their in-flight requests;
//! their senders drop, so each pipeline's input closes; processors flush and finish; fan-out
//! tasks finish and drop their queue senders; export queues deliver what they hold and call
//! the exporters' `shutdown`. All of it within `service.shutdown_timeout`, after which export
//! queues are aborted and what is left is counted as dropped. Then the summary (see
//! [`summary`]): from the counters of the whole run, what was accepted, sent, and dropped per
//! component, signal and reason; the run is clean (exit 0) only when nothing was dropped.
//!
//! Extensions (`service.extensions`) start first, before any other component is built, and
//! stop last, once the pipelines have drained; they follow the collector's [`Status`]:
//! `starting` while components are built, `running` once every pipeline's tasks run,
//! `stopping` from the shutdown signal on.

pub mod durable;
mod self_telemetry;
mod status;
mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hpcotel_core::channel;
use hpcotel_core::{
    ComponentId, ComponentKind, Counter, Outputs, ReceiverContext, Signal, Telemetry,
};
use hpcotel_exporters::queue::{ExportQueue, QueueSender};
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{self, Config, SelfMetricsLevel};
use crate::extensions;

pub use status::{ExporterReport, Phase, Report, Status};
pub use summary::Dropped;

/// Why the collector could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A component could not be built (port in use, unreadable certificate, ...).
    #[error("{kind} '{id}': {source}")]
    Build {
        /// receiver, processor, exporter or extension.
        kind: &'static str,
        /// The component's config id.
        id: ComponentId,
        /// Why.
        #[source]
        source: hpcotel_core::ComponentError,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// After the shutdown deadline, how long stages and queues get to count and drop what they
/// still hold before their tasks are killed (which only a bug would make necessary).
const ABORTED_DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Every component drained in time, none failed, and nothing accepted was dropped, for
    /// any reason, over the whole run: the exit code is 0 exactly then.
    pub clean: bool,
    /// Every (component, signal, reason) that dropped items over the run, from the counters
    /// (`hpcotel.processor.dropped`, `hpcotel.exporter.dropped`); empty when nothing was.
    pub dropped: Vec<Dropped>,
    /// Items dropped because the shutdown deadline passed, summed over exporters: an item a
    /// pipeline fans out to two exporters that both drop it counts twice (it is per
    /// exporter, like `hpcotel.exporter.dropped{hpcotel.reason=shutdown}`).
    pub dropped_at_shutdown: u64,
    /// Components that ended with an error.
    pub failed: Vec<String>,
}

/// A collector whose components are built (sockets bound) but not yet running.
pub struct Collector {
    config: Config,
    telemetry: Telemetry,
    receivers: Vec<(ComponentId, Box<dyn hpcotel_core::Receiver>, Outputs)>,
    stages: JoinSet<StageEnd>,
    queues: JoinSet<(ComponentId, bool)>,
    queue_abort: CancellationToken,
    self_metrics: Option<Outputs>,
    status: Arc<Status>,
    extensions: Vec<extensions::Running>,
}

impl Collector {
    /// Builds every component the pipelines use and wires the channels. Receivers bind here,
    /// so a port in use is reported now. Must be called inside a tokio runtime.
    pub async fn build(config: Config) -> Result<Self> {
        let telemetry = Telemetry::default();
        // The node's metadata, written by receivers (gpu: PodResources; kubernetes: watches)
        // and read by processors (enrich).
        let catalog = hpcotel_core::Catalog::new();
        let queue_abort = CancellationToken::new();
        let mut queues = JoinSet::new();
        let mut stages = JoinSet::new();
        let pipelines = &config.service.pipelines;

        // Extensions first, so that a health check answers (not ready) while the other
        // components are being built, which can take seconds (NVML, Kubernetes watches).
        let used_exporters: BTreeSet<ComponentId> = pipelines
            .values()
            .flat_map(|p| p.exporters.iter().cloned())
            .collect();
        let status = Status::new(
            pipelines.keys().cloned().collect(),
            used_exporters.into_iter().collect(),
            telemetry.clone(),
        );
        let mut running_extensions = Vec::new();
        for id in &config.service.extensions {
            let running = config.extensions[id]
                .build(id.clone(), status.clone())
                .await
                .map_err(|source| Error::Build {
                    kind: "extension",
                    id: id.clone(),
                    source,
                })?;
            running_extensions.push(running);
        }

        // Exporters used by any pipeline, each behind its own queue.
        let mut exporter_queues: BTreeMap<ComponentId, QueueSender> = BTreeMap::new();
        for id in pipelines.values().flat_map(|p| &p.exporters) {
            if exporter_queues.contains_key(id) {
                continue;
            }
            let built = config.exporters[id]
                .build()
                .map_err(|source| Error::Build {
                    kind: "exporter",
                    id: id.clone(),
                    source,
                })?;
            let stats = telemetry.register(ComponentKind::Exporter, id.clone());
            let (sender, handle) = ExportQueue::start(
                id.clone(),
                built.exporter,
                built.queue,
                built.retry,
                stats,
                queue_abort.clone(),
            );
            let qid = id.clone();
            queues.spawn(async move {
                let ok = match handle.await {
                    Ok(()) => true,
                    Err(e) => {
                        error!(exporter = %qid, error = %e, "export queue task failed");
                        false
                    }
                };
                (qid, ok)
            });
            exporter_queues.insert(id.clone(), sender);
        }

        // Pipelines: input channel -> processors -> fan-out to exporter queues.
        let mut receiver_outputs: BTreeMap<ComponentId, Outputs> = BTreeMap::new();
        let mut self_metrics = None;
        let self_level = config.service.telemetry.metrics.level;
        for (name, p) in pipelines {
            let signal = config::pipeline_signal(name).expect("validated pipeline id");
            let (input_tx, mut rx) = channel::channel(p.queue_size);
            if let Some(w) = &p.write_ahead_log {
                let (tx, next_rx) = channel::channel(p.queue_size);
                let stage = durable::start(name, signal, w, rx, tx).map_err(|e| Error::Build {
                    kind: "pipeline",
                    id: ComponentId::new(name.as_str(), None),
                    source: format!("write_ahead_log: {e}").into(),
                })?;
                let (writer, reader) = (stage.writer, stage.reader);
                let at = format!("{name}/write_ahead_log");
                let at2 = at.clone();
                stages.spawn(async move {
                    writer.await;
                    (at, Ok(()))
                });
                stages.spawn(async move {
                    reader.await;
                    (at2, Ok(()))
                });
                rx = next_rx;
            }
            for pid in &p.processors {
                let (tx, next_rx) = channel::channel(p.queue_size);
                let processor = config.processors[pid].build(&catalog);
                let stats = telemetry.register(ComponentKind::Processor, pid.clone());
                let stage = format!("{name}/{pid}");
                stages.spawn(async move {
                    let r = processor.run(rx, tx, stats).await;
                    (stage, r)
                });
                rx = next_rx;
            }
            let targets: Vec<(ComponentId, QueueSender)> = p
                .exporters
                .iter()
                .map(|e| (e.clone(), exporter_queues[e].clone()))
                .collect();
            let stage = format!("{name}/fan-out");
            stages.spawn(async move {
                fan_out(rx, targets).await;
                (stage, Ok(()))
            });
            for rid in &p.receivers {
                receiver_outputs
                    .entry(rid.clone())
                    .or_insert_with(|| {
                        Outputs::new(telemetry.register(ComponentKind::Receiver, rid.clone()))
                    })
                    .add_logged_if(
                        p.write_ahead_log.is_some(),
                        signal,
                        name.clone(),
                        input_tx.clone(),
                    );
            }
            if signal == Signal::Metrics && self_level == SelfMetricsLevel::Basic {
                // Self-metrics are not counted as any receiver's.
                self_metrics
                    .get_or_insert_with(|| {
                        Outputs::new(Telemetry::default().register(
                            ComponentKind::Receiver,
                            ComponentId::new("hpcotel_self", None),
                        ))
                    })
                    .add(signal, name.clone(), input_tx.clone());
            }
        }
        drop(exporter_queues);
        // Receivers that feed the Catalog (a kubernetes node agent) run whenever they are
        // defined, in a pipeline or not.
        for (id, r) in &config.receivers {
            if r.runs_unlisted() {
                receiver_outputs.entry(id.clone()).or_insert_with(|| {
                    Outputs::new(telemetry.register(ComponentKind::Receiver, id.clone()))
                });
            }
        }

        let mut receivers = Vec::new();
        for (id, outputs) in receiver_outputs {
            let receiver = config.receivers[&id]
                .build(&catalog)
                .await
                .map_err(|source| Error::Build {
                    kind: "receiver",
                    id: id.clone(),
                    source,
                })?;
            receivers.push((id, receiver, outputs));
        }

        Ok(Self {
            config,
            telemetry,
            receivers,
            stages,
            queues,
            queue_abort,
            self_metrics,
            status,
            extensions: running_extensions,
        })
    }

    /// The counters of every component (for tests and the self-metrics).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The collector's phase and exporter failures, as extensions see them.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Runs until `shutdown` is cancelled (or a receiver fails), then drains.
    pub async fn run(self, shutdown: CancellationToken) -> RunReport {
        let Collector {
            config,
            telemetry,
            receivers,
            mut stages,
            mut queues,
            queue_abort,
            self_metrics,
            status,
            extensions,
        } = self;
        let mut failed = Vec::new();
        let receiver_stop = CancellationToken::new();
        let mut running: JoinSet<(
            ComponentId,
            std::result::Result<(), hpcotel_core::ComponentError>,
        )> = JoinSet::new();
        // Handles to revoke every receiver's outputs once it has stopped (see shutdown below).
        let mut handed_out: Vec<Outputs> = Vec::new();
        for (id, receiver, outputs) in receivers {
            handed_out.push(outputs.clone());
            let ctx = ReceiverContext {
                id: id.clone(),
                outputs,
                shutdown: receiver_stop.clone(),
            };
            running.spawn(async move { (id, receiver.run(ctx).await) });
        }
        if let Some(outputs) = self_metrics {
            handed_out.push(outputs.clone());
            let t = telemetry.clone();
            let interval = config.service.telemetry.metrics.interval;
            let stop = receiver_stop.clone();
            running.spawn(async move {
                self_telemetry::run(t, outputs, interval, stop).await;
                (ComponentId::new("hpcotel_self", None), Ok(()))
            });
        }
        status.set_phase(Phase::Running);
        info!(
            receivers = running.len(),
            pipelines = config.service.pipelines.len(),
            extensions = extensions.len(),
            "hpcotel is running"
        );

        // Run until told to stop, or until a receiver ends on its own (a failure). When every
        // receiver has ended `join_next` yields `None`, that branch is disabled and only the
        // shutdown token remains.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            Some(done) = running.join_next() => match done {
                Ok((id, Err(e))) => {
                    error!(receiver = %id, error = %e, "receiver failed; shutting down");
                    failed.push(id.to_string());
                }
                Ok((id, Ok(()))) => {
                    warn!(receiver = %id, "receiver stopped on its own; shutting down")
                }
                Err(e) => {
                    error!(error = %e, "receiver task panicked; shutting down");
                    failed.push("receiver task".into());
                }
            },
        }

        // Shutdown, within `shutdown_timeout`:
        // 1. Receivers stop accepting and finish their in-flight requests, for at most half of
        //    the budget; then they are aborted. Either way their outputs are revoked, so no
        //    straggler (a connection task outliving its server) keeps a pipeline open.
        // 2. Pipelines drain: processors flush, fan-outs hand over, export queues deliver.
        // 3. At the deadline the export queues are aborted: from then on every batch still
        //    flowing through a stage or waiting in a queue is counted as dropped with reason
        //    `shutdown` on its way out, rather than lost uncounted with an aborted task.
        status.set_phase(Phase::Stopping);
        let budget = config.service.shutdown_timeout;
        let started = tokio::time::Instant::now();
        let deadline = started + budget;
        info!(timeout = ?budget, "shutting down: draining pipelines");
        receiver_stop.cancel();
        let receivers_done = tokio::time::timeout_at(started + budget / 2, async {
            while let Some(done) = running.join_next().await {
                if let Ok((id, Err(e))) = done {
                    error!(receiver = %id, error = %e, "receiver ended with an error");
                    failed.push(id.to_string());
                }
            }
        })
        .await;
        if receivers_done.is_err() {
            warn!(
                receivers = running.len(),
                "receivers still finishing requests after half the shutdown budget; stopping them"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        for outputs in &handed_out {
            outputs.revoke();
        }
        drop(handed_out);

        let drain = async {
            while let Some(done) = stages.join_next().await {
                stage_ended(done, &mut failed);
            }
            while let Some(done) = queues.join_next().await {
                queue_ended(done, &mut failed);
            }
        };
        let in_time = tokio::time::timeout_at(deadline, drain).await.is_ok();
        if !in_time {
            warn!("shutdown deadline passed; dropping what is still in the pipelines (counted)");
            queue_abort.cancel();
            // With the queues aborted nothing waits on a backend any more: stages flush into
            // queues that count and drop, so this ends promptly.
            let flushed = tokio::time::timeout(ABORTED_DRAIN_LIMIT, async {
                while let Some(done) = stages.join_next().await {
                    stage_ended(done, &mut failed);
                }
                while let Some(done) = queues.join_next().await {
                    queue_ended(done, &mut failed);
                }
            })
            .await;
            if flushed.is_err() {
                error!(
                    stages = stages.len(),
                    queues = queues.len(),
                    "pipeline tasks did not finish after the export queues were aborted; killing them"
                );
                failed.push("shutdown".into());
                stages.abort_all();
                queues.abort_all();
            }
        }
        let dropped_at_shutdown: u64 = telemetry
            .components()
            .iter()
            .flat_map(|c| {
                Signal::ALL.into_iter().flat_map(move |s| {
                    c.reasons(s, Counter::Dropped)
                        .into_iter()
                        .filter(|(r, _)| r == "shutdown")
                        .map(|(_, n)| n)
                })
            })
            .sum();
        // Last, the extensions: a health check answers (`/readyz` not ready) until here.
        for extension in extensions.into_iter().rev() {
            extension.stop().await;
        }
        let dropped = summary::dropped(&telemetry);
        summary::log(&telemetry, &dropped);
        let clean = in_time && failed.is_empty() && dropped.is_empty();
        if clean {
            info!("shutdown complete: everything accepted was delivered");
        } else if !dropped.is_empty() {
            let items: u64 = dropped.iter().map(|d| d.items).sum();
            error!(
                dropped = items,
                "shutdown complete with drops: {items} accepted items were dropped (one line \
                 per component, signal and reason above)"
            );
        }
        RunReport {
            clean,
            dropped,
            dropped_at_shutdown,
            failed,
        }
    }
}

/// What a pipeline stage task returns: its name and how it ended.
type StageEnd = (
    String,
    std::result::Result<(), hpcotel_core::ComponentError>,
);

/// Notes how a stage ended: an error or a panic makes the run unclean (a panicked stage
/// loses what it held, which is then reported by the failure, not counted per item).
fn stage_ended(done: std::result::Result<StageEnd, JoinError>, failed: &mut Vec<String>) {
    match done {
        Ok((_, Ok(()))) => {}
        Ok((stage, Err(e))) => {
            error!(stage = %stage, error = %e, "pipeline stage failed");
            failed.push(stage);
        }
        Err(e) => {
            error!(error = %e, "pipeline stage task panicked or was killed; what it held is lost");
            failed.push("pipeline stage".into());
        }
    }
}

/// Notes how an export queue ended: a failed or panicked queue task makes the run unclean.
fn queue_ended(
    done: std::result::Result<(ComponentId, bool), JoinError>,
    failed: &mut Vec<String>,
) {
    match done {
        Ok((_, true)) => {}
        Ok((id, false)) => failed.push(format!("exporter {id}")),
        Err(e) => {
            error!(error = %e, "export queue task panicked or was killed");
            failed.push("export queue".into());
        }
    }
}

/// Sends every batch from `rx` to every exporter queue. The exporters share the batch (an
/// `Arc`): none of them copies it. Each gets its own clone of the batch's acks.
async fn fan_out(mut rx: channel::Receiver, targets: Vec<(ComponentId, QueueSender)>) {
    while let Some((batch, acks)) = rx.recv_acked().await {
        let batch = std::sync::Arc::new(batch);
        for (_, q) in &targets {
            q.send_acked(batch.clone(), acks.clone()).await;
        }
        // Every exporter holds its own claim now; this one is done.
        acks.settle();
    }
}
