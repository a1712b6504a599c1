//! A write-ahead log at the head of a pipeline (`service.pipelines.<id>.write_ahead_log`):
//! what a receiver hands over is appended to the log ([`hpcotel_core::wal`]) *before* the
//! client is answered, and only then read back into the pipeline's processors (batching
//! included) and exporters. A record is committed — and its segment deleted once every record
//! in it is — when every exporter has delivered its items or dropped them for a counted
//! reason (the acks of [`hpcotel_core::ack`]). After a crash (`kill -9`, OOM kill, power loss
//! within the `fsync` window aside) the log is replayed from the last commit, in order,
//! before new data: nothing acknowledged is lost; what was in flight is sent again (at least
//! once).
//!
//! Two tasks: the writer takes batches from the pipeline's input channel and appends them
//! (appends submitted together share one fsync), settling each batch's acks — the receiver's
//! signal to answer its client — once its append returned; a refused append (the log's
//! budget or the disk is full) drops the acks, and the client is told to retry. The reader
//! follows the log from the pipeline's cursor and feeds the processors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hpcotel_core::ack::{AckSource, Settled};
use hpcotel_core::wal::{self, Fsync, Position, WalHandle};
use hpcotel_core::{Batch, Signal, channel};
use serde::{Deserialize, Serialize};
#[cfg(test)]
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Default for [`WriteAheadLogConfig::max_size_mib`]: 1 GiB.
pub const DEFAULT_MAX_SIZE_MIB: u64 = 1024;
/// Default for [`WriteAheadLogConfig::fsync`]: every 200 ms.
pub use hpcotel_core::wal::DEFAULT_FSYNC_INTERVAL;
/// Batches the writer submits to the log at a time, at most.
const MAX_GROUP: usize = 256;
/// Records the reader takes from the log at a time.
const READ_AHEAD: usize = 64;

/// `service.pipelines.<id>.write_ahead_log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteAheadLogConfig {
    /// Directory of the log (created when missing); one per pipeline. Required.
    pub directory: PathBuf,
    /// Disk budget, MiB: when the log holds this much, receivers answer "retry later"
    /// (gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`, HTTP 429). Default: 1024.
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
    /// `always`: each append is synced before its client is answered (nothing acknowledged is
    /// lost on power loss); a duration (e.g. `200ms`): synced at most that long after, so on
    /// power loss (not on a process crash) up to that window of acknowledged data is at
    /// risk. Default: `200ms`.
    #[serde(default, with = "fsync_setting")]
    pub fsync: Fsync,
}

fn default_max_size_mib() -> u64 {
    DEFAULT_MAX_SIZE_MIB
}

mod fsync_setting {
    use std::time::Duration;

    use hpcotel_core::wal::Fsync;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &Fsync, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Fsync::Always => s.serialize_str("always"),
            Fsync::Every(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fsync, D::Error> {
        let text = String::deserialize(d)?;
        if text == "always" {
            return Ok(Fsync::Always);
        }
        match humantime::parse_duration(&text) {
            Ok(d) if d > Duration::ZERO => Ok(Fsync::Every(d)),
            _ => Err(serde::de::Error::custom(format!(
                "expected 'always' or a positive duration such as '200ms', got '{text}'"
            ))),
        }
    }
}

impl Default for WriteAheadLogConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::new(),
            max_size_mib: DEFAULT_MAX_SIZE_MIB,
            fsync: Fsync::default(),
        }
    }
}

/// The two tasks of one pipeline's log, ready to spawn.
pub(super) struct Stage {
    pub writer: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    pub reader: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Opens `pipeline`'s log (recovering what it holds, logged) and builds its writer (from
/// `input`) and reader (into `output`).
pub(super) fn start(
    pipeline: &str,
    signal: Signal,
    cfg: &WriteAheadLogConfig,
    input: channel::Receiver,
    output: channel::Sender,
) -> wal::Result<Stage> {
    let opts = wal::Options {
        dir: cfg.directory.clone(),
        max_bytes: cfg.max_size_mib.saturating_mul(1 << 20),
        // Small enough that delivery frees space in steps of an eighth of the budget.
        segment_bytes: (cfg.max_size_mib.saturating_mul(1 << 20) / 8)
            .clamp(64 << 10, wal::DEFAULT_SEGMENT_BYTES),
        fsync: cfg.fsync,
    };
    let (log, recovery) = WalHandle::open(opts, &[pipeline])?;
    if recovery.truncated_bytes > 0 || recovery.corrupted_bytes > 0 {
        tracing::warn!(
            pipeline, directory = %cfg.directory.display(),
            truncated_bytes = recovery.truncated_bytes,
            corrupted_bytes = recovery.corrupted_bytes,
            corrupted_segments = ?recovery.corrupted_segments,
            "write-ahead log: damaged records cut or skipped; every intact record is kept"
        );
    }
    if recovery.undelivered > 0 {
        tracing::info!(
            pipeline,
            records = recovery.undelivered,
            "write-ahead log: replaying what was not delivered before the last stop"
        );
    }
    let appended = Arc::new(Notify::new());
    let written = CancellationToken::new();
    Ok(Stage {
        writer: Box::pin(write(
            input,
            log.clone(),
            appended.clone(),
            written.clone(),
            pipeline.to_owned(),
            cfg.fsync,
        )),
        reader: Box::pin(read(
            log,
            pipeline.to_owned(),
            signal,
            output,
            appended,
            written,
        )),
    })
}

/// Settles each batch's acks whose append succeeded (the receiver then answers its client);
/// the others are dropped unsettled, so their clients are told to retry.
async fn settle_appended(
    append: impl Future<Output = wal::Result<Vec<wal::Result<Position>>>>,
    acks: Vec<hpcotel_core::Acks>,
    appended: Arc<Notify>,
    pipeline: String,
) {
    match append.await {
        Ok(results) => {
            for (r, acks) in results.into_iter().zip(acks) {
                match r {
                    Ok(_) => acks.settle(),
                    Err(e) => {
                        tracing::warn!(pipeline = %pipeline, error = %e, "write-ahead log refused a batch")
                    }
                }
            }
            appended.notify_one();
        }
        Err(e) => {
            tracing::warn!(pipeline = %pipeline, error = %e, "write-ahead log refused a batch")
        }
    }
}

async fn write(
    mut input: channel::Receiver,
    log: WalHandle,
    appended: Arc<Notify>,
    written: CancellationToken,
    pipeline: String,
    fsync: Fsync,
) {
    let mut in_flight = tokio::task::JoinSet::new();
    let always = fsync == Fsync::Always;
    while let Some(first) = input.recv_acked().await {
        // What waits in the channel goes to the log as one submission (one sync).
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match input.try_recv_acked() {
                Some(next) => group.push(next),
                None => break,
            }
        }
        let payloads = group.iter().map(|(b, _)| b.encode_request()).collect();
        let acks: Vec<_> = group.into_iter().map(|(_, a)| a).collect();
        // Submitted now, in order; answered once written (and synced, per `fsync`).
        let append = log.append_many(payloads);
        let settle = settle_appended(append, acks, appended.clone(), pipeline.clone());
        if always {
            // Waiting for a sync: let the next group be written meanwhile (group commit).
            in_flight.spawn(settle);
            while in_flight.try_join_next().is_some() {}
        } else {
            // Written already: nothing to wait for.
            settle.await;
        }
    }
    while in_flight.join_next().await.is_some() {}
    written.cancel();
}

/// Records handed into the pipeline and not yet settled, by ack id: the position after each,
/// and whether it is settled. Commits advance over the settled prefix, in log order.
#[derive(Default)]
struct InFlight {
    records: BTreeMap<u64, (Position, bool)>,
}

impl InFlight {
    /// Marks `s` settled (delivered or dropped and counted: either way done with); returns
    /// the position to commit when the oldest records are all settled now.
    fn settle(&mut self, s: Settled) -> Option<Position> {
        if let Some(r) = self.records.get_mut(&s.id) {
            r.1 = true;
        }
        let mut commit = None;
        while let Some(entry) = self.records.first_entry() {
            if !entry.get().1 {
                break;
            }
            commit = Some(entry.remove().0);
        }
        commit
    }
}

async fn read(
    log: WalHandle,
    consumer: String,
    signal: Signal,
    output: channel::Sender,
    appended: Arc<Notify>,
    written: CancellationToken,
) {
    let (mut source, mut settled) = AckSource::new();
    let mut in_flight = InFlight::default();
    let mut next: Option<Position> = None;
    let commit = |at: Option<Position>| {
        let log = log.clone();
        let consumer = consumer.clone();
        async move {
            if let Some(at) = at
                && let Err(e) = log.commit(&consumer, at).await
            {
                tracing::warn!(pipeline = %consumer, error = %e, "write-ahead log commit failed; records will be sent again after a restart");
            }
        }
    };
    loop {
        let records = match log.read(&consumer, next, READ_AHEAD).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(pipeline = %consumer, error = %e, "write-ahead log read failed");
                Vec::new()
            }
        };
        if records.is_empty() {
            if written.is_cancelled() {
                // The writer is done and everything it wrote was read.
                break;
            }
            tokio::select! {
                _ = appended.notified() => {}
                _ = written.cancelled() => {}
                Some(s) = settled.recv() => commit(in_flight.settle(s)).await,
            }
            continue;
        }
        for record in records {
            next = Some(record.next);
            let batch = match Batch::from_logged_request(signal, record.payload) {
                Ok(b) => b,
                Err(e) => {
                    // Checksummed, so only a record written by another version could fail.
                    tracing::warn!(pipeline = %consumer, error = %e, "write-ahead log record does not decode; skipped");
                    continue;
                }
            };
            // Wait for room, committing what settles meanwhile: a full pipeline must not
            // hold back the commits of what it already delivered.
            let items = batch.item_count();
            let permit = loop {
                tokio::select! {
                    biased;
                    Some(s) = settled.recv() => commit(in_flight.settle(s)).await,
                    p = output.reserve(items) => break p,
                }
            };
            let (id, acks) = source.hand_over();
            in_flight.records.insert(id, (record.next, false));
            if permit
                .and_then(|p| p.send_acked(batch, acks).map_err(|(c, _)| c))
                .is_err()
            {
                tracing::warn!(pipeline = %consumer, "pipeline closed before the log was replayed; the rest is kept for the next start");
                return;
            }
            while let Ok(s) = settled.try_recv() {
                commit(in_flight.settle(s)).await;
            }
        }
    }
    // Let the processors flush, then commit what the exporters settle.
    drop(output);
    drop(source);
    while !in_flight.records.is_empty() {
        match settled.recv().await {
            Some(s) => commit(in_flight.settle(s)).await,
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WriteAheadLogConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn config_reads_fsync_as_always_or_an_interval_with_defaults() {
        let c = parse("directory: /var/lib/hpcotel/wal/traces").unwrap();
        assert_eq!(c.fsync, Fsync::Every(DEFAULT_FSYNC_INTERVAL));
        assert_eq!(c.max_size_mib, DEFAULT_MAX_SIZE_MIB);
        let c = parse("directory: /d\nfsync: always\nmax_size_mib: 64").unwrap();
        assert_eq!((c.fsync, c.max_size_mib), (Fsync::Always, 64));
        let c = parse("directory: /d\nfsync: 1s").unwrap();
        assert_eq!(c.fsync, Fsync::Every(Duration::from_secs(1)));
        for (bad, why) in [
            ("directory: /d\nfsync: 0s", "positive duration"),
            ("directory: /d\nfsync: sometimes", "expected 'always'"),
            ("directory: /d\nfsnyc: always", "unknown field `fsnyc`"),
            ("fsync: always", "missing field `directory`"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // Printed as it is read.
        let printed =
            serde_yaml::to_string(&parse("directory: /d\nfsync: 250ms").unwrap()).unwrap();
        assert!(printed.contains("fsync: 250ms"), "{printed}");
    }

    #[test]
    fn commits_advance_over_the_settled_prefix_only() {
        let at = |offset| Position { segment: 1, offset };
        let mut f = InFlight::default();
        for id in 0..3 {
            f.records.insert(id, (at(10 * (id + 1)), false));
        }
        let settled = |id| Settled {
            id,
            delivered: true,
        };
        assert_eq!(f.settle(settled(1)), None, "record 0 is still in flight");
        assert_eq!(f.settle(settled(0)), Some(at(20)));
        // Dropped for a counted reason: done with too.
        assert_eq!(
            f.settle(Settled {
                id: 2,
                delivered: false
            }),
            Some(at(30))
        );
        assert!(f.records.is_empty());
    }
}
