//! The log behind an async handle: one thread owns the [`Wal`] and does its file I/O, so
//! async tasks never block on a write or an fsync, and concurrent appends share one sync
//! (group commit): under [`Fsync::Always`] the thread writes every append waiting in its queue,
//! syncs once, then answers them all, so durability costs one fsync per burst, not per request.

use std::future::Future;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Error, Fsync, Options, Position, Record, Recovery, Result, Wal};

/// How long the thread waits for work before it checks whether an interval sync is due.
const IDLE_TICK: Duration = Duration::from_millis(50);

enum Command {
    Append(Vec<u8>, oneshot::Sender<Result<Position>>),
    AppendMany(Vec<Vec<u8>>, oneshot::Sender<Result<Vec<Result<Position>>>>),
    Read(
        String,
        Option<Position>,
        usize,
        oneshot::Sender<Result<Vec<Record>>>,
    ),
    Commit(String, Position, oneshot::Sender<Result<()>>),
    Syncs(oneshot::Sender<u64>),
}

/// A cloneable async handle to a log owned by its own thread. The thread ends (after a final
/// sync) when every handle is dropped.
#[derive(Clone)]
pub struct WalHandle {
    tx: mpsc::Sender<Command>,
}

/// The thread is gone: it ended on an I/O error it reported, or every handle was dropped.
fn gone() -> Error {
    Error::Io {
        path: Default::default(),
        source: std::io::Error::other("write-ahead log thread ended"),
    }
}

impl WalHandle {
    /// Opens the log (see [`Wal::open`]) and starts its thread.
    pub fn open(opts: Options, consumers: &[&str]) -> Result<(WalHandle, Recovery)> {
        let (wal, recovery) = Wal::open(opts, consumers)?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("hpcotel-wal".into())
            .spawn(move || run(wal, rx))
            .map_err(|source| Error::Io {
                path: Default::default(),
                source,
            })?;
        Ok((WalHandle { tx }, recovery))
    }

    /// Appends `payload`: queued to the log's thread at once (so appends keep the order of
    /// the calls, and appends submitted together share a sync); the future resolves once it is
    /// written, and synced under [`Fsync::Always`].
    pub fn append(&self, payload: Vec<u8>) -> impl Future<Output = Result<Position>> + use<> {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send(Command::Append(payload, reply));
        async move {
            sent.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
    }

    /// Appends each of `payloads`, in order, as one submission (one wake-up of the log's
    /// thread, one sync); the future resolves with each append's result once all are written
    /// (and synced under [`Fsync::Always`]).
    pub fn append_many(
        &self,
        payloads: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<Result<Position>>>> + use<> {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send(Command::AppendMany(payloads, reply));
        async move {
            sent.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        }
    }

    /// [`Wal::read`] (`from: None`: from `consumer`'s cursor) or [`Wal::read_at`].
    pub async fn read(
        &self,
        consumer: &str,
        from: Option<Position>,
        max: usize,
    ) -> Result<Vec<Record>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Read(consumer.to_owned(), from, max, reply))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// [`Wal::commit`].
    pub async fn commit(&self, consumer: &str, next: Position) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Commit(consumer.to_owned(), next, reply))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl WalHandle {
    /// Syncs done since the log was opened (fewer than appends under load: group commit).
    pub async fn syncs(&self) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Command::Syncs(reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

fn run(mut wal: Wal, rx: mpsc::Receiver<Command>) {
    let always = wal.opts.fsync == Fsync::Always;
    loop {
        let first = match rx.recv_timeout(IDLE_TICK) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = wal.sync_if_due() {
                    tracing::error!(error = %e, "write-ahead log sync failed");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // Everything waiting now is one group: appends are written, synced once, answered.
        let mut waiting = Vec::new();
        let mut waiting_many = Vec::new();
        let mut any_written = false;
        for command in std::iter::once(first).chain(rx.try_iter()) {
            match command {
                Command::Append(payload, reply) => {
                    // Written without a sync each; the group's one sync follows.
                    let r = wal.append_unsynced(&payload);
                    any_written |= r.is_ok();
                    waiting.push((r, reply));
                }
                Command::AppendMany(payloads, reply) => {
                    let rs: Vec<_> = payloads.iter().map(|p| wal.append_unsynced(p)).collect();
                    any_written |= rs.iter().any(Result::is_ok);
                    waiting_many.push((rs, reply));
                }
                Command::Read(consumer, from, max, reply) => {
                    let _ = reply.send(match from {
                        Some(at) => wal.read_at(at, max),
                        None => wal.read(&consumer, max),
                    });
                }
                Command::Commit(consumer, next, reply) => {
                    let _ = reply.send(wal.commit(&consumer, next));
                }
                Command::Syncs(reply) => {
                    let _ = reply.send(wal.syncs());
                }
            }
        }
        let synced = if always && any_written {
            wal.sync()
        } else {
            wal.sync_if_due().map(|_| ())
        };
        match synced {
            Ok(()) => {
                for (r, reply) in waiting {
                    let _ = reply.send(r);
                }
                for (rs, reply) in waiting_many {
                    let _ = reply.send(Ok(rs));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "write-ahead log sync failed; appends refused");
                let failed = || Error::Io {
                    path: wal.opts.dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                };
                for (_, reply) in waiting {
                    let _ = reply.send(Err(failed()));
                }
                for (_, reply) in waiting_many {
                    let _ = reply.send(Err(failed()));
                }
            }
        }
    }
    if let Err(e) = wal.sync() {
        tracing::error!(error = %e, "write-ahead log final sync failed");
    }
}
