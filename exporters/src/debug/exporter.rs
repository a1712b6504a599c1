//! [`DebugExporter`]: counts what passes and prints a summary line per interval.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hpcotel_core::{Batch, ComponentError, ExportError, ExportOutcome, Exporter, Signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::{Config, Verbosity};

/// The summary line: `exported 42 metric points, 1200 spans, 3 log records`.
pub fn summary_line(metric_points: u64, spans: u64, log_records: u64) -> String {
    format!(
        "exported {metric_points} {}, {spans} {}, {log_records} {}",
        Signal::Metrics.item_name(),
        Signal::Traces.item_name(),
        Signal::Logs.item_name()
    )
}

struct Shared {
    /// Items since the last summary line, per signal.
    counts: [AtomicU64; 3],
    writer: Mutex<Box<dyn Write + Send>>,
    detailed: bool,
}

impl Shared {
    fn write_line(&self, line: &[u8]) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.write_all(line).and_then(|()| w.flush()) {
            debug!(error = %e, "debug exporter could not write");
        }
    }

    fn summary(&self) -> bool {
        let take = |s: Signal| self.counts[s.index()].swap(0, Ordering::Relaxed);
        let (m, t, l) = (
            take(Signal::Metrics),
            take(Signal::Traces),
            take(Signal::Logs),
        );
        if m + t + l == 0 {
            return false;
        }
        let mut line = summary_line(m, t, l);
        line.push('\n');
        self.write_line(line.as_bytes());
        true
    }
}

/// Prints what it exports; see the [module docs](super).
pub struct DebugExporter {
    shared: Arc<Shared>,
    stop: CancellationToken,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DebugExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugExporter")
            .field("detailed", &self.shared.detailed)
            .finish_non_exhaustive()
    }
}

impl DebugExporter {
    /// A debug exporter printing on stderr. Call it inside a Tokio runtime: it spawns the
    /// task that prints the summary every `summary_interval` (outside a runtime only the
    /// final summary, at shutdown, is printed).
    pub fn new(config: &Config) -> DebugExporter {
        Self::new_with_writer(config, Box::new(std::io::stderr()))
    }

    /// Like [`DebugExporter::new`], printing to `writer` instead of stderr.
    pub fn new_with_writer(config: &Config, writer: Box<dyn Write + Send>) -> DebugExporter {
        let shared = Arc::new(Shared {
            counts: Default::default(),
            writer: Mutex::new(writer),
            detailed: config.verbosity == Verbosity::Detailed,
        });
        let stop = CancellationToken::new();
        let period = config.summary_interval.max(Duration::from_millis(1));
        let ticker = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                Some(rt.spawn(async move {
                    let start = tokio::time::Instant::now() + period;
                    let mut every = tokio::time::interval_at(start, period);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = every.tick() => { shared.summary(); }
                        }
                    }
                }))
            }
            Err(_) => {
                warn!("debug exporter built outside a Tokio runtime: no periodic summaries");
                None
            }
        };
        DebugExporter {
            shared,
            stop,
            ticker: Mutex::new(ticker),
        }
    }

    /// Prints the summary of what was exported since the previous line now, unless nothing
    /// was; returns whether a line was printed.
    pub fn print_summary(&self) -> bool {
        self.shared.summary()
    }
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let signal = batch.signal();
        let items = batch.item_count() as u64;
        if self.shared.detailed {
            match crate::file::encode_line(batch) {
                Ok(line) => self.shared.write_line(&line),
                Err(e) => {
                    warn!(error = %crate::error_chain(&e), "debug exporter could not encode a batch")
                }
            }
        }
        self.shared.counts[signal.index()].fetch_add(items, Ordering::Relaxed);
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stop.cancel();
        let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = ticker
            && let Err(e) = t.await
        {
            warn!(error = %e, "debug exporter summary task failed");
        }
        self.shared.summary();
        Ok(())
    }
}
