//! The bounded hand-over from receivers into pipelines.
//!
//! A receiver may feed several pipelines of the same signal (the Collector's fan-out). A
//! hand-over is all-or-nothing: capacity is reserved in every pipeline first, and the batch is
//! delivered only when all of them had room, so a client told "retry" has not been half
//! accepted. Every accepted or refused item is counted in the receiver's [`ComponentStats`].
//!
//! The collector revokes a receiver's [`Outputs`] once the receiver has stopped: every clone
//! (a connection task that outlived its server, say) loses its senders at once, so the
//! pipelines close and drain on shutdown whatever a straggler still holds, and a late
//! hand-over is refused as [`SendError::Closed`].

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::ack::Acks;
use crate::channel::{self, Permit, TryReserveError};
use crate::signal::{Batch, Signal};
use crate::telemetry::{ComponentStats, Counter};

/// Why a batch was not handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No pipeline of this signal lists the receiver.
    #[error("no {0} pipeline uses this receiver")]
    NoPipeline(Signal),
    /// A pipeline is full; the client should retry later.
    #[error("pipeline is full")]
    Full,
    /// The pipeline is shutting down.
    #[error("pipeline is shutting down")]
    Closed,
}

impl SendError {
    /// The reason label used for the refused-items counter.
    pub fn reason(self) -> &'static str {
        match self {
            SendError::NoPipeline(_) => "no_pipeline",
            SendError::Full => "pipeline_full",
            SendError::Closed => "shutting_down",
        }
    }
}

/// The pipelines one signal of a receiver feeds.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// (pipeline, its input, whether its first stage is a write-ahead log).
    senders: Vec<(String, channel::Sender, bool)>,
}

/// How long a hand-over to a pipeline with a write-ahead log waits for the log to have the
/// batch before the client is told to retry.
pub const LOGGED_WAIT: Duration = Duration::from_secs(10);

impl Output {
    /// Adds a pipeline (by name) to feed.
    pub fn push(&mut self, pipeline: impl Into<String>, sender: channel::Sender) {
        self.senders.push((pipeline.into(), sender, false));
    }

    /// Adds a pipeline whose first stage is a write-ahead log: a hand-over to it completes
    /// only once the log has the batch (the log's stage settles the acks it gets).
    pub fn push_logged(&mut self, pipeline: impl Into<String>, sender: channel::Sender) {
        self.senders.push((pipeline.into(), sender, true));
    }

    /// Names of the pipelines fed.
    pub fn pipelines(&self) -> impl Iterator<Item = &str> {
        self.senders.iter().map(|(n, _, _)| n.as_str())
    }

    fn logged(&self) -> bool {
        self.senders.iter().any(|(_, _, logged)| *logged)
    }

    /// Sends `batch` through every permit. A pipeline whose stage went away after its room
    /// was reserved (only a stage killed at the end of a failed shutdown) makes the whole
    /// hand-over [`SendError::Closed`], so the client is told to retry and nothing is
    /// counted as accepted that a pipeline did not get.
    /// Each pipeline gets a clone of `acks`; pipelines with a write-ahead log a clone of
    /// `logged` too.
    fn deliver(
        &self,
        permits: Vec<Permit>,
        batch: Batch,
        acks: Acks,
        logged: &Acks,
    ) -> Result<(), SendError> {
        let n = permits.len();
        let mut delivered = true;
        let mut batch = Some((batch, acks));
        for (i, (permit, (_, _, is_logged))) in permits.into_iter().zip(&self.senders).enumerate() {
            let (b, mut a) = if i + 1 == n {
                batch.take().expect("one batch per hand-over")
            } else {
                batch.clone().expect("one batch per hand-over")
            };
            if *is_logged {
                a.merge(logged.clone());
            }
            delivered &= permit.send_acked(b, a).is_ok();
        }
        if delivered {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    fn try_send(&self, batch: Batch, items: usize, logged: &Acks) -> Result<(), SendError> {
        let mut permits = Vec::with_capacity(self.senders.len());
        for (_, s, _) in &self.senders {
            match s.try_reserve(items) {
                Ok(p) => permits.push(p),
                Err(TryReserveError::Full) => return Err(SendError::Full),
                Err(TryReserveError::Closed) => return Err(SendError::Closed),
            }
        }
        self.deliver(permits, batch, Acks::none(), logged)
    }

    async fn send(
        &self,
        batch: Batch,
        items: usize,
        acks: Acks,
        logged: &Acks,
    ) -> Result<(), SendError> {
        let mut permits = Vec::with_capacity(self.senders.len());
        for (_, s, _) in &self.senders {
            permits.push(s.reserve(items).await.map_err(|_| SendError::Closed)?);
        }
        self.deliver(permits, batch, acks, logged)
    }
}

/// What a hand-over to pipelines with a write-ahead log waits on: the acks those pipelines'
/// logs settle once they hold the batch.
struct LoggedWait {
    acks: Acks,
    settled: tokio::sync::mpsc::UnboundedReceiver<crate::ack::Settled>,
}

impl LoggedWait {
    /// `None` when no pipeline of `output` has a log (then nothing is waited for).
    fn new(output: &Output) -> (Option<LoggedWait>, Acks) {
        if !output.logged() {
            return (None, Acks::none());
        }
        let (mut source, settled) = crate::ack::AckSource::new();
        let (_, acks) = source.hand_over();
        (
            Some(LoggedWait {
                acks: acks.clone(),
                settled,
            }),
            acks,
        )
    }

    /// Waits until every log has the batch: `Full` (retry later) when one could not take it
    /// (its budget is full, its disk failed) or did not within [`LOGGED_WAIT`].
    async fn wait(self) -> Result<(), SendError> {
        let LoggedWait { acks, mut settled } = self;
        // Our own clone: settled here, so only the logs' clones are waited on.
        acks.settle();
        match tokio::time::timeout(LOGGED_WAIT, settled.recv()).await {
            Ok(Some(s)) if s.delivered => Ok(()),
            _ => Err(SendError::Full),
        }
    }
}

/// Everything a receiver sends into: one [`Output`] per signal, plus its counters. Clones
/// share the pipelines: [`Outputs::revoke`] on one revokes them all.
#[derive(Debug, Clone)]
pub struct Outputs {
    pipelines: Arc<RwLock<Pipelines>>,
    stats: Arc<ComponentStats>,
}

#[derive(Debug, Default)]
struct Pipelines {
    per_signal: [Option<Arc<Output>>; 3],
    revoked: bool,
}

impl Outputs {
    /// Outputs with no pipelines yet, counting into `stats`.
    pub fn new(stats: Arc<ComponentStats>) -> Self {
        Self {
            pipelines: Arc::default(),
            stats,
        }
    }

    /// Adds pipeline `name` (fed through `sender`) to `signal`'s output.
    pub fn add(&mut self, signal: Signal, name: impl Into<String>, sender: channel::Sender) {
        let mut p = self
            .pipelines
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let output = p.per_signal[signal.index()].get_or_insert_with(Arc::default);
        Arc::make_mut(output).push(name, sender);
    }

    /// [`add_logged`](Self::add_logged) when `logged`, else [`add`](Self::add).
    pub fn add_logged_if(
        &mut self,
        logged: bool,
        signal: Signal,
        name: impl Into<String>,
        sender: channel::Sender,
    ) {
        if logged {
            self.add_logged(signal, name, sender)
        } else {
            self.add(signal, name, sender)
        }
    }

    /// Adds pipeline `name` whose first stage is a write-ahead log ([`Output::push_logged`]):
    /// hand-overs to it complete once the log holds the batch.
    pub fn add_logged(&mut self, signal: Signal, name: impl Into<String>, sender: channel::Sender) {
        let mut p = self
            .pipelines
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let output = p.per_signal[signal.index()].get_or_insert_with(Arc::default);
        Arc::make_mut(output).push_logged(name, sender);
    }

    /// The output for `signal`: [`SendError::NoPipeline`] when no pipeline of that signal
    /// uses this receiver, [`SendError::Closed`] once revoked. A hand-over in progress keeps
    /// its `Arc` (and so its channels) until it completes.
    fn output(&self, signal: Signal) -> Result<Arc<Output>, SendError> {
        let p = self
            .pipelines
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if p.revoked {
            return Err(SendError::Closed);
        }
        p.per_signal[signal.index()]
            .clone()
            .ok_or(SendError::NoPipeline(signal))
    }

    /// True when some pipeline of `signal` uses this receiver (and it is not revoked).
    pub fn handles(&self, signal: Signal) -> bool {
        self.output(signal).is_ok()
    }

    /// Drops this receiver's senders, for this and every clone: once hand-overs in progress
    /// finish, the receiver no longer keeps any pipeline open. Later hand-overs are refused
    /// with [`SendError::Closed`]. Idempotent.
    pub fn revoke(&self) {
        let mut p = self
            .pipelines
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        p.revoked = true;
        p.per_signal = [None, None, None];
    }

    /// The receiver's counters.
    pub fn stats(&self) -> &Arc<ComponentStats> {
        &self.stats
    }

    fn count(&self, signal: Signal, items: usize, result: &Result<(), SendError>) {
        match result {
            Ok(()) => self.stats.add(signal, Counter::Accepted, items as u64),
            Err(e) => {
                self.stats
                    .add_with_reason(signal, Counter::Refused, e.reason(), items as u64)
            }
        }
    }

    /// Hands `batch` over without waiting. [`SendError::Full`] means the client should be
    /// told to retry (gRPC RESOURCE_EXHAUSTED, HTTP 429 + Retry-After).
    ///
    /// Pipelines with a write-ahead log get the batch but are not waited on.
    pub fn try_send(&self, batch: Batch) -> Result<(), SendError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        let result = self.output(signal).and_then(|o| {
            let (_, logged) = LoggedWait::new(&o);
            let r = o.try_send(batch, items, &logged);
            logged.settle();
            r
        });
        self.count(signal, items, &result);
        result
    }

    /// Hands `batch` over, waiting up to `wait` for room before answering
    /// [`SendError::Full`] (a zero `wait`: not at all). When a pipeline has a write-ahead log,
    /// this returns once the log holds the batch (at most [`LOGGED_WAIT`] more), so a client
    /// answered "accepted" has its data on disk.
    pub async fn send_within(&self, batch: Batch, wait: Duration) -> Result<(), SendError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        let result = match self.output(signal) {
            Err(e) => Err(e),
            Ok(o) => {
                let (waiter, logged) = LoggedWait::new(&o);
                let handed = if wait.is_zero() {
                    o.try_send(batch, items, &logged)
                } else {
                    match tokio::time::timeout(wait, o.send(batch, items, Acks::none(), &logged))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(SendError::Full),
                    }
                };
                // Ours is settled: only the logs' clones decide.
                logged.settle();
                match (handed, waiter) {
                    (Ok(()), Some(w)) => w.wait().await,
                    (r, _) => r,
                }
            }
        };
        self.count(signal, items, &result);
        result
    }

    /// Hands `batch` over, waiting as long as it takes for room in every pipeline.
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        self.send_acked(batch, Acks::none()).await
    }

    /// [`Outputs::send`] for a source that can read its data again: `acks` travel with the
    /// batch to the exporters, which settle them once it is delivered ([`crate::ack`]). On
    /// an error they are dropped, so the hand-over is reported lost.
    pub async fn send_acked(&self, batch: Batch, acks: Acks) -> Result<(), SendError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        let result = match self.output(signal) {
            Err(e) => Err(e),
            Ok(o) => {
                let (waiter, logged) = LoggedWait::new(&o);
                let handed = o.send(batch, items, acks, &logged).await;
                // Ours is settled: only the logs' clones decide.
                logged.settle();
                match (handed, waiter) {
                    (Ok(()), Some(w)) => w.wait().await,
                    (r, _) => r,
                }
            }
        };
        self.count(signal, items, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{ComponentId, ComponentKind};
    use crate::telemetry::Telemetry;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(n: usize) -> Batch {
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[tokio::test]
    async fn fan_out_is_all_or_nothing_and_counted() {
        let telemetry = Telemetry::default();
        let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("otlp", None));
        // Capacities in items: a holds 10, b holds 5.
        let (a_tx, mut a_rx) = channel::channel(10);
        let (b_tx, mut b_rx) = channel::channel(5);
        let mut out = Outputs::new(stats.clone());
        out.add(Signal::Logs, "logs/a", a_tx);
        out.add(Signal::Logs, "logs/b", b_tx);

        out.try_send(logs(3)).unwrap();
        // b has room for 2 more items, a for 7: the 5-record batch must reach neither.
        assert_eq!(out.try_send(logs(5)), Err(SendError::Full));
        assert_eq!(a_rx.len(), 3, "a's reservation was given back");
        assert_eq!(a_rx.recv().await.unwrap().item_count(), 3);
        assert_eq!(b_rx.recv().await.unwrap().item_count(), 3);
        assert!(
            a_rx.try_recv().is_none(),
            "refused batch leaked into pipeline a"
        );
        assert_eq!(
            out.try_send(Batch::Traces(vec![])),
            Err(SendError::NoPipeline(Signal::Traces))
        );
        assert_eq!(stats.get(Signal::Logs, Counter::Accepted), 3);
        assert_eq!(stats.get(Signal::Logs, Counter::Refused), 5);
        assert_eq!(
            stats.reasons(Signal::Logs, Counter::Refused),
            vec![("pipeline_full".to_string(), 5)]
        );
    }

    #[tokio::test]
    async fn revoking_closes_the_pipelines_for_every_clone() {
        let telemetry = Telemetry::default();
        let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("otlp", None));
        let (tx, mut rx) = channel::channel(100);
        let mut out = Outputs::new(stats.clone());
        out.add(Signal::Logs, "logs", tx);
        // A clone held elsewhere (a connection task that outlives its server).
        let straggler = out.clone();
        straggler.try_send(logs(2)).unwrap();
        out.revoke();
        assert_eq!(straggler.try_send(logs(1)), Err(SendError::Closed));
        assert!(!straggler.handles(Signal::Logs));
        // The pipeline drains what was accepted, then sees its input closed although the
        // straggler still exists.
        assert_eq!(rx.recv().await.unwrap().item_count(), 2);
        assert!(
            rx.recv().await.is_none(),
            "the pipeline input did not close"
        );
        assert_eq!(
            stats.reasons(Signal::Logs, Counter::Refused),
            vec![("shutting_down".to_string(), 1)]
        );
        drop(straggler);
    }

    #[tokio::test]
    async fn send_within_refuses_after_the_wait() {
        let telemetry = Telemetry::default();
        let stats = telemetry.register(ComponentKind::Receiver, ComponentId::new("otlp", None));
        let (tx, _rx) = channel::channel(4);
        let mut out = Outputs::new(stats);
        out.add(Signal::Logs, "logs", tx);
        out.send_within(logs(3), Duration::from_millis(5))
            .await
            .unwrap();
        assert_eq!(
            out.send_within(logs(2), Duration::from_millis(5)).await,
            Err(SendError::Full)
        );
    }
}
