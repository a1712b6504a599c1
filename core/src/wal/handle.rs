//! The log behind a cloneable async handle. Appends, reads and commits run inline under a
//! mutex: each is a write to or a read from the page cache (microseconds), so no task waits
//! on another thread for them. Syncs — the slow part — run on a thread of their own, outside
//! the mutex, on cloned file handles: every [`Fsync::Every`] interval when something changed,
//! or, under [`Fsync::Always`], as soon as an append asks. An append under `Always` resolves
//! once a sync that covers it has finished; appends made while a sync runs share the next one
//! (group commit), so durability costs one fsync per burst, not one per request.

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::watch;

use super::{Error, Fsync, Options, Position, Record, Recovery, Result, Wal};

/// How long the sync thread sleeps when nothing asks for a sync (under `Always`), to notice
/// that every handle is gone.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// Records appended and not yet read, kept in memory (up to [`TAIL_BYTES`]) so that a reader
/// that keeps up gets them without reading the file back: (start, next, payload).
#[derive(Default)]
struct Tail {
    records: VecDeque<(Position, Position, Bytes)>,
    bytes: usize,
}

/// Most payload bytes the tail keeps; appends past it are read back from the file.
const TAIL_BYTES: usize = 8 << 20;

struct Inner {
    wal: Wal,
    tail: Tail,
}

impl Inner {
    fn append(&mut self, payload: Bytes) -> Result<Position> {
        let at = self.wal.append_unsynced(&payload)?;
        if self.tail.bytes + payload.len() <= TAIL_BYTES {
            let next = Position {
                segment: at.segment,
                offset: at.offset + (super::HEADER + payload.len()) as u64,
            };
            self.tail.bytes += payload.len();
            self.tail.records.push_back((at, next, payload));
        }
        Ok(at)
    }

    /// Up to `max` records from `at`: from the tail while it holds the very next ones, else
    /// from the file.
    fn read_at(&mut self, mut at: Position, max: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(start, next, _)) = self.tail.records.front() else {
                break;
            };
            // The next record may begin the next segment after a roll.
            let follows = start == at
                || (start
                    == Position {
                        segment: at.segment + 1,
                        offset: 0,
                    }
                    && self.wal.segments.get(&at.segment) == Some(&at.offset));
            if start < at {
                // Read from the file already (the reader fell behind the tail once).
                let (_, _, p) = self.tail.records.pop_front().expect("front");
                self.tail.bytes -= p.len();
                continue;
            }
            if !follows {
                break;
            }
            let (_, _, payload) = self.tail.records.pop_front().expect("front");
            self.tail.bytes -= payload.len();
            out.push(Record { payload, next });
            at = next;
        }
        if out.is_empty() {
            return self.wal.read_at(at, max);
        }
        Ok(out)
    }
}

struct Shared {
    wal: Mutex<Inner>,
    /// Appends durable so far (a count), or the error that stopped syncing.
    synced: watch::Sender<std::result::Result<u64, String>>,
    /// Nudges the sync thread (under `Always`).
    nudge: mpsc::Sender<()>,
    fsync: Fsync,
}

/// A cloneable async handle to a log. The sync thread ends, after a final sync, when every
/// handle is dropped.
#[derive(Clone)]
pub struct WalHandle {
    shared: Arc<Shared>,
}

impl WalHandle {
    /// Opens the log (see [`Wal::open`]) and starts its sync thread.
    pub fn open(opts: Options, consumers: &[&str]) -> Result<(WalHandle, Recovery)> {
        let fsync = opts.fsync;
        let (wal, recovery) = Wal::open(opts, consumers)?;
        let (nudge, nudged) = mpsc::channel();
        let (synced, _) = watch::channel(Ok(0));
        let shared = Arc::new(Shared {
            wal: Mutex::new(Inner {
                wal,
                tail: Tail::default(),
            }),
            synced,
            nudge,
            fsync,
        });
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("hpcotel-wal-sync".into())
            .spawn(move || sync_loop(weak, nudged, fsync))
            .map_err(|source| Error::Io {
                path: Default::default(),
                source,
            })?;
        Ok((WalHandle { shared }, recovery))
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `payload` now (so appends keep the order of the calls); the future resolves
    /// at once, or under [`Fsync::Always`] once a sync covers it.
    pub fn append(&self, payload: Vec<u8>) -> impl Future<Output = Result<Position>> + use<> {
        let appended = {
            let mut inner = self.wal();
            inner
                .append(Bytes::from(payload))
                .map(|at| (at, inner.wal.appended()))
        };
        let wait = self.durable(appended.as_ref().map_or(0, |(_, n)| *n));
        async move {
            let (at, _) = appended?;
            wait.await?;
            Ok(at)
        }
    }

    /// Appends each of `payloads`, in order; each append's result, once (under
    /// [`Fsync::Always`]) a sync covers them all.
    pub fn append_many(
        &self,
        payloads: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<Result<Position>>>> + use<> {
        let (results, upto) = {
            let mut inner = self.wal();
            let rs: Vec<_> = payloads
                .into_iter()
                .map(|p| inner.append(Bytes::from(p)))
                .collect();
            (rs, inner.wal.appended())
        };
        let wait = self.durable(upto);
        async move {
            wait.await?;
            Ok(results)
        }
    }

    /// Resolves once the first `upto` appends are durable per the policy (at once under
    /// [`Fsync::Every`]).
    fn durable(&self, upto: u64) -> impl Future<Output = Result<()>> + use<> {
        let mut synced = (self.shared.fsync == Fsync::Always).then(|| {
            let _ = self.shared.nudge.send(());
            self.shared.synced.subscribe()
        });
        async move {
            let Some(synced) = synced.as_mut() else {
                return Ok(());
            };
            let state = synced
                .wait_for(|s| s.as_ref().map_or(true, |n| *n >= upto))
                .await
                .map_err(|_| gone())?;
            match &*state {
                Ok(_) => Ok(()),
                Err(message) => Err(Error::Io {
                    path: Default::default(),
                    source: std::io::Error::other(message.clone()),
                }),
            }
        }
    }

    /// [`Wal::read`] (`from: None`: from `consumer`'s cursor) or [`Wal::read_at`].
    pub async fn read(
        &self,
        consumer: &str,
        from: Option<Position>,
        max: usize,
    ) -> Result<Vec<Record>> {
        let mut inner = self.wal();
        match from {
            Some(at) => inner.read_at(at, max),
            None => inner.wal.read(consumer, max),
        }
    }

    /// [`Wal::commit`].
    pub async fn commit(&self, consumer: &str, next: Position) -> Result<()> {
        self.wal().wal.commit(consumer, next)
    }

    /// Syncs done since the log was opened (fewer than appends under load: group commit).
    pub async fn syncs(&self) -> Result<u64> {
        Ok(self.wal().wal.syncs())
    }
}

/// The sync thread was stopped by an error, or the log is gone.
fn gone() -> Error {
    Error::Io {
        path: Default::default(),
        source: std::io::Error::other("write-ahead log closed"),
    }
}

fn sync_loop(shared: std::sync::Weak<Shared>, nudged: mpsc::Receiver<()>, fsync: Fsync) {
    let wait = match fsync {
        Fsync::Always => IDLE_TICK,
        Fsync::Every(d) => d,
    };
    loop {
        let asked = nudged.recv_timeout(wait);
        // Everyone who asked while the last sync ran is covered by this one.
        while nudged.try_recv().is_ok() {}
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if asked == Err(mpsc::RecvTimeoutError::Disconnected) {
            return;
        }
        let job = {
            let mut inner = shared.wal.lock().unwrap_or_else(PoisonError::into_inner);
            let wal = &mut inner.wal;
            let due = match fsync {
                Fsync::Always => asked.is_ok() || wal.dirty,
                Fsync::Every(_) => wal.dirty,
            };
            if !due {
                continue;
            }
            wal.begin_sync()
        };
        let result = job.and_then(|job| {
            let upto = job.upto;
            job.run().map(|()| upto)
        });
        match result {
            Ok(upto) => {
                shared
                    .wal
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .wal
                    .finish_sync();
                let _ = shared.synced.send_replace(Ok(upto));
            }
            Err(e) => {
                tracing::error!(error = %e, "write-ahead log sync failed");
                let _ = shared.synced.send_replace(Err(e.to_string()));
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let inner = self.wal.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = inner.wal.sync() {
            tracing::error!(error = %e, "write-ahead log final sync failed");
        }
    }
}
