//! What the running collector says about itself to extensions: whether its pipelines have
//! started, are running or are shutting down, which exporters are failing, and which are
//! dropping data.
//!
//! The service moves the [`Phase`] forward (`starting` → `running` → `stopping`); the
//! exporters' failures are the ones their export queues record in their
//! [`ComponentStats`](hpcotel_core::ComponentStats) (see
//! [`ComponentStats::export_failed`](hpcotel_core::ComponentStats::export_failed)), and their
//! drops the `hpcotel.exporter.dropped` counts, each with when it last grew
//! ([`ComponentStats::reason_counts`](hpcotel_core::ComponentStats::reason_counts)). A
//! [`Report`] is a consistent-enough snapshot of all three, taken per request: a few atomic
//! loads and two locks per exporter. Receivers with a memory budget (`otlp`) report its use
//! and when it last refused a request ([`ComponentStats::memory`](hpcotel_core::ComponentStats::memory));
//! one that refused within [`MEMORY_PRESSURE_WINDOW`] is "at its memory budget" and the
//! collector not ready, so that a Service sends new clients elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use hpcotel_core::{
    ComponentId, ComponentKind, Counter, ExportFailure, MemoryUse, ReasonCount, Telemetry,
};
use hpcotel_exporters::queue::{
    REASON_PANIC, REASON_PERMANENT, REASON_RETRIES_EXHAUSTED, REASON_RETRY_DISABLED,
    REASON_SHUTDOWN,
};

/// Drop reasons that also mark the exporter failing until its next delivery (see
/// [`ExportFailure`]): readiness follows the failure for those, not the drop window.
const FAILING_REASONS: [&str; 4] = [
    REASON_PERMANENT,
    REASON_RETRIES_EXHAUSTED,
    REASON_RETRY_DISABLED,
    REASON_PANIC,
];

/// How long after a receiver last refused a request for want of memory it counts as at its
/// memory budget (not ready). Short: such refusals are retried by clients, not data lost.
pub const MEMORY_PRESSURE_WINDOW: Duration = Duration::from_secs(5);

/// One receiver with a memory budget in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The receiver's config id.
    pub id: ComponentId,
    /// Its budget's use.
    pub memory: MemoryUse,
}

impl ReceiverReport {
    /// Whether it refused a request for want of memory less than
    /// [`MEMORY_PRESSURE_WINDOW`] ago.
    pub fn at_memory_budget(&self) -> bool {
        self.memory
            .last_refusal
            .is_some_and(|t| t.elapsed() < MEMORY_PRESSURE_WINDOW)
    }
}

/// Where the collector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Components are being built (sockets bound, NVML loaded, ...); nothing flows yet.
    Starting,
    /// Every pipeline's receivers, processors and exporters run.
    Running,
    /// Shutting down: receivers have stopped or are stopping, pipelines drain.
    Stopping,
}

impl Phase {
    /// `starting`, `running` or `stopping`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Phase::Starting,
            1 => Phase::Running,
            _ => Phase::Stopping,
        }
    }
}

/// The collector's state as extensions see it. Cheap to share: clone the `Arc`.
#[derive(Debug)]
pub struct Status {
    phase: AtomicU8,
    pipelines: Vec<String>,
    exporters: Vec<ComponentId>,
    telemetry: Telemetry,
}

/// One exporter in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterReport {
    /// The exporter's config id.
    pub id: ComponentId,
    /// Why it is failing, if it is.
    pub failure: Option<ExportFailure>,
    /// What it dropped over the run, per signal and reason, with when the latest of each
    /// was. Drops at the shutdown deadline (reason `shutdown`) are left out: the shutdown
    /// summary reports those.
    pub dropped: Vec<ReasonCount>,
}

impl ExporterReport {
    /// Its latest drop of a kind that does not mark it failing (`queue_full`, `too_large`,
    /// `rejected`, ...), if that was less than `window` ago (never, for a zero window): the
    /// exporter delivers, but loses data. Drops that mark it failing (`permanent`,
    /// `retries_exhausted`, `retry_disabled`, `panic`) are reported by
    /// [`failure`](Self::failure), until its next delivery.
    pub fn recent_drop(&self, window: Duration) -> Option<&ReasonCount> {
        self.dropped
            .iter()
            .filter(|d| !FAILING_REASONS.contains(&d.reason.as_str()))
            .filter(|d| d.last.elapsed() < window)
            .max_by_key(|d| d.last)
    }
}

/// A snapshot of [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where the collector is.
    pub phase: Phase,
    /// Pipeline ids, sorted.
    pub pipelines: Vec<String>,
    /// Every exporter a pipeline uses, sorted by id.
    pub exporters: Vec<ExporterReport>,
    /// Every receiver with a memory budget, in registration order.
    pub receivers: Vec<ReceiverReport>,
}

impl Report {
    /// Ready: every pipeline runs, no exporter is failing, none dropped data less than
    /// `drop_window` ago (see [`ExporterReport::recent_drop`]), and no receiver is at its
    /// memory budget ([`ReceiverReport::at_memory_budget`]).
    pub fn ready(&self, drop_window: Duration) -> bool {
        self.phase == Phase::Running
            && self
                .exporters
                .iter()
                .all(|e| e.failure.is_none() && e.recent_drop(drop_window).is_none())
            && !self.receivers.iter().any(ReceiverReport::at_memory_budget)
    }
}

impl Status {
    /// The status of a collector with `pipelines` feeding `exporters`, whose counters (and
    /// failures) are registered in `telemetry`. Starts in [`Phase::Starting`].
    pub fn new(
        pipelines: Vec<String>,
        exporters: Vec<ComponentId>,
        telemetry: Telemetry,
    ) -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            pipelines,
            exporters,
            telemetry,
        })
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// A snapshot: the phase, the pipelines, and each exporter's failure and drops.
    pub fn report(&self) -> Report {
        let components = self.telemetry.components();
        let exporters = self
            .exporters
            .iter()
            .map(|id| {
                let stats = components
                    .iter()
                    .find(|c| c.kind() == ComponentKind::Exporter && c.id() == id);
                ExporterReport {
                    id: id.clone(),
                    failure: stats.and_then(|c| c.export_failure()),
                    dropped: stats
                        .map(|c| c.reason_counts(Counter::Dropped))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|d| d.reason != REASON_SHUTDOWN)
                        .collect(),
                }
            })
            .collect();
        let receivers = components
            .iter()
            .filter(|c| c.kind() == ComponentKind::Receiver)
            .filter_map(|c| {
                Some(ReceiverReport {
                    id: c.id().clone(),
                    memory: c.memory()?,
                })
            })
            .collect();
        Report {
            phase: self.phase(),
            pipelines: self.pipelines.clone(),
            exporters,
            receivers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drop window for the tests: the health check's default.
    const DROP_WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn a_receiver_that_refused_for_memory_just_now_is_not_ready() {
        let telemetry = Telemetry::default();
        let otlp: ComponentId = "otlp".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Receiver, otlp.clone());
        let status = Status::new(vec!["traces".into()], vec![], telemetry);
        status.set_phase(Phase::Running);
        assert!(status.report().receivers.is_empty(), "no budget, no report");
        stats.set_memory(1 << 20, 64 << 20);
        let report = status.report();
        assert!(report.ready(DROP_WINDOW));
        assert_eq!(report.receivers[0].id, otlp);
        assert_eq!(
            (
                report.receivers[0].memory.used,
                report.receivers[0].memory.limit
            ),
            (1 << 20, 64 << 20)
        );
        stats.memory_refused();
        let report = status.report();
        assert!(report.receivers[0].at_memory_budget());
        assert!(!report.ready(DROP_WINDOW), "{report:?}");
    }

    #[test]
    fn ready_only_while_running_with_no_failing_exporter() {
        let telemetry = Telemetry::default();
        let otlp: ComponentId = "otlp/tempo".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Exporter, otlp.clone());
        let status = Status::new(vec!["traces".into()], vec![otlp.clone()], telemetry);
        assert_eq!(status.phase(), Phase::Starting);
        assert!(!status.report().ready(DROP_WINDOW));
        status.set_phase(Phase::Running);
        let report = status.report();
        assert!(report.ready(DROP_WINDOW), "{report:?}");
        assert_eq!(report.exporters[0].id, otlp);

        stats.export_failed("permanent", "HTTP 400");
        let report = status.report();
        assert!(!report.ready(DROP_WINDOW));
        assert_eq!(
            report.exporters[0]
                .failure
                .as_ref()
                .map(|f| f.reason.as_str()),
            Some("permanent")
        );
        stats.export_succeeded();
        assert!(status.report().ready(DROP_WINDOW));

        status.set_phase(Phase::Stopping);
        assert!(!status.report().ready(DROP_WINDOW));
    }

    #[test]
    fn an_exporter_that_dropped_data_recently_is_not_ready_and_says_why() {
        use hpcotel_core::Signal;
        let telemetry = Telemetry::default();
        let otlp: ComponentId = "otlp/tempo".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Exporter, otlp.clone());
        let status = Status::new(vec!["traces".into()], vec![otlp], telemetry);
        status.set_phase(Phase::Running);
        stats.add(Signal::Traces, Counter::Sent, 5);
        assert!(status.report().ready(DROP_WINDOW));

        stats.add_with_reason(Signal::Traces, Counter::Dropped, "too_large", 1);
        let report = status.report();
        assert!(!report.ready(DROP_WINDOW), "{report:?}");
        let drop = report.exporters[0]
            .recent_drop(DROP_WINDOW)
            .expect("recent");
        assert_eq!(
            (drop.signal, drop.reason.as_str(), drop.items),
            (Signal::Traces, "too_large", 1)
        );
        // Not a failure: the exporter delivers; it lost an item it could never send.
        assert_eq!(report.exporters[0].failure, None);
        // A zero window: drops are listed but do not make it unready.
        assert!(report.ready(Duration::ZERO));
        assert_eq!(report.exporters[0].dropped.len(), 1);

        // A failure's drops make it failing, until the next delivery; not dropping after.
        stats.add_with_reason(Signal::Traces, Counter::Dropped, REASON_PERMANENT, 4);
        stats.export_failed(REASON_PERMANENT, "HTTP 400");
        let report = status.report();
        assert_eq!(
            report.exporters[0]
                .recent_drop(DROP_WINDOW)
                .map(|d| d.reason.as_str()),
            Some("too_large")
        );
        stats.export_succeeded();
        let report = status.report();
        assert_eq!(report.exporters[0].dropped.len(), 2, "{report:?}");
        assert_eq!(
            report.exporters[0]
                .recent_drop(DROP_WINDOW)
                .map(|d| d.reason.as_str()),
            Some("too_large"),
            "the permanent drop is not a recent drop"
        );

        // Drops at the shutdown deadline are the summary's business, not readiness's.
        let t = Telemetry::default();
        let id: ComponentId = "otlp".parse().unwrap();
        let s = t.register(ComponentKind::Exporter, id.clone());
        s.add_with_reason(Signal::Logs, Counter::Dropped, REASON_SHUTDOWN, 3);
        let status = Status::new(vec!["logs".into()], vec![id], t);
        status.set_phase(Phase::Running);
        assert!(status.report().ready(DROP_WINDOW));
        assert!(status.report().exporters[0].dropped.is_empty());
    }
}
