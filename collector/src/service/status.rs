//! What the running collector says about itself to extensions: whether its pipelines have
//! started, are running or are shutting down, and which exporters are failing.
//!
//! The service moves the [`Phase`] forward (`starting` → `running` → `stopping`); the
//! exporters' failures are the ones their export queues record in their
//! [`ComponentStats`](hpcotel_core::ComponentStats) (see
//! [`ComponentStats::export_failed`](hpcotel_core::ComponentStats::export_failed)). A
//! [`Report`] is a consistent-enough snapshot of both, taken per request: a few atomic loads
//! and one lock per failing exporter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use hpcotel_core::{ComponentId, ComponentKind, ExportFailure, Telemetry};

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
}

impl Report {
    /// Ready: every pipeline runs and no exporter is failing.
    pub fn ready(&self) -> bool {
        self.phase == Phase::Running && self.exporters.iter().all(|e| e.failure.is_none())
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

    /// A snapshot: the phase, the pipelines, and each exporter's failure.
    pub fn report(&self) -> Report {
        let components = self.telemetry.components();
        let exporters = self
            .exporters
            .iter()
            .map(|id| ExporterReport {
                id: id.clone(),
                failure: components
                    .iter()
                    .find(|c| c.kind() == ComponentKind::Exporter && c.id() == id)
                    .and_then(|c| c.export_failure()),
            })
            .collect();
        Report {
            phase: self.phase(),
            pipelines: self.pipelines.clone(),
            exporters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_running_with_no_failing_exporter() {
        let telemetry = Telemetry::default();
        let otlp: ComponentId = "otlp/tempo".parse().unwrap();
        let stats = telemetry.register(ComponentKind::Exporter, otlp.clone());
        let status = Status::new(vec!["traces".into()], vec![otlp.clone()], telemetry);
        assert_eq!(status.phase(), Phase::Starting);
        assert!(!status.report().ready());
        status.set_phase(Phase::Running);
        let report = status.report();
        assert!(report.ready(), "{report:?}");
        assert_eq!(report.exporters[0].id, otlp);

        stats.export_failed("permanent", "HTTP 400");
        let report = status.report();
        assert!(!report.ready());
        assert_eq!(
            report.exporters[0]
                .failure
                .as_ref()
                .map(|f| f.reason.as_str()),
            Some("permanent")
        );
        stats.export_succeeded();
        assert!(status.report().ready());

        status.set_phase(Phase::Stopping);
        assert!(!status.report().ready());
    }
}
