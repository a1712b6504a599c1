//! The receiver-wide memory budget for requests in flight, and [`MeteredBody`], the request
//! body that charges it and enforces the read deadlines.
//!
//! Every byte a request makes the receiver hold — its body as read, its decompressed form,
//! its decoded form — is charged to one [`Budget`] shared by both protocols, through the
//! request's [`Charge`], before it is held; the charge is given back when the request is
//! answered (every clone of the `Charge` dropped). A charge that does not fit is refused:
//! the request is answered with the retryable status and its memory released at once.
//! Requests from one client address may hold at most `per_client_percent` of the budget,
//! so that one pod's stalled uploads leave room for the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hpcotel_core::ComponentStats;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::config::{Limits, MIN_READ_RATE_GRACE};

/// The memory budget of one receiver.
#[derive(Debug)]
pub(super) struct Budget {
    limit: usize,
    per_client: usize,
    state: Mutex<Held>,
    /// Where its use is published (`/readyz`), if anywhere.
    stats: Option<Arc<ComponentStats>>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A charge that did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exhausted {
    /// The receiver's budget is full.
    Receiver {
        /// The budget, bytes.
        limit: usize,
    },
    /// This client holds its share.
    Client {
        /// The share, bytes.
        share: usize,
    },
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exhausted::Receiver { limit } => write!(
                f,
                "the receiver's memory budget for requests in flight ({} MiB) is full; retry later",
                mib(*limit)
            ),
            Exhausted::Client { share } => write!(
                f,
                "this client's requests in flight hold its share of the receiver's memory \
                 budget ({} MiB); retry later",
                mib(*share)
            ),
        }
    }
}

fn mib(bytes: usize) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

impl Budget {
    /// A budget of `limit` bytes, of which one client may hold `per_client_percent` %,
    /// its use published to `stats`.
    pub fn new(
        limit: usize,
        per_client_percent: u8,
        stats: Option<Arc<ComponentStats>>,
    ) -> Arc<Budget> {
        let per_client = (limit / 100).saturating_mul(usize::from(per_client_percent.min(100)));
        if let Some(s) = &stats {
            s.set_memory(0, limit);
        }
        Arc::new(Budget {
            limit,
            per_client: per_client.max(1),
            state: Mutex::new(Held::default()),
            stats,
        })
    }

    fn publish(&self, total: usize) {
        if let Some(s) = &self.stats {
            s.set_memory(total, self.limit);
        }
    }

    /// The budget, bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_take(&self, client: IpAddr, n: usize) -> Result<(), Exhausted> {
        let mut held = self.lock();
        if held.total.saturating_add(n) > self.limit {
            return Err(Exhausted::Receiver { limit: self.limit });
        }
        let mine = held.by_client.get(&client).copied().unwrap_or(0);
        if mine.saturating_add(n) > self.per_client {
            return Err(Exhausted::Client {
                share: self.per_client,
            });
        }
        held.total += n;
        *held.by_client.entry(client).or_insert(0) += n;
        self.publish(held.total);
        Ok(())
    }

    fn give_back(&self, client: IpAddr, n: usize) {
        if n == 0 {
            return;
        }
        let mut held = self.lock();
        held.total = held.total.saturating_sub(n);
        if let Some(mine) = held.by_client.get_mut(&client) {
            *mine = mine.saturating_sub(n);
            if *mine == 0 {
                held.by_client.remove(&client);
            }
        }
        self.publish(held.total);
    }
}

/// What one request holds against the [`Budget`]; given back when the last clone is
/// dropped. Cheap to clone (an `Arc`): the body holds one, the handler another.
#[derive(Debug, Clone)]
pub(super) struct Charge(Arc<ChargeInner>);

#[derive(Debug)]
struct ChargeInner {
    budget: Arc<Budget>,
    client: IpAddr,
    held: AtomicUsize,
}

impl Charge {
    /// An empty charge of `client`'s.
    pub fn new(budget: Arc<Budget>, client: IpAddr) -> Charge {
        Charge(Arc::new(ChargeInner {
            budget,
            client,
            held: AtomicUsize::new(0),
        }))
    }

    /// Charges `n` more bytes, or refuses them (nothing charged).
    pub fn add(&self, n: usize) -> Result<(), Exhausted> {
        self.0.budget.try_take(self.0.client, n)?;
        self.0.held.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for ChargeInner {
    fn drop(&mut self) {
        self.budget.give_back(self.client, *self.held.get_mut());
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// The budget has no room for it.
    Exhausted(Exhausted),
    /// It did not arrive within `read_timeout`.
    TimedOut(Duration),
    /// It arrived slower than `min_read_rate` on average.
    TooSlow {
        /// Bytes received.
        received: usize,
        /// Time taken so far.
        elapsed: Duration,
        /// The minimum rate, bytes per second.
        min_rate: u64,
    },
    /// It is larger than the request size limit.
    TooLarge(usize),
    /// The connection failed while reading it.
    Read(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Exhausted(e) => e.fmt(f),
            BodyError::TimedOut(t) => write!(
                f,
                "the request body did not arrive within {} (read_timeout)",
                humantime::format_duration(*t)
            ),
            BodyError::TooSlow {
                received,
                elapsed,
                min_rate,
            } => write!(
                f,
                "the request body arrives too slowly: {received} bytes in {:.1} s, under \
                 the minimum of {min_rate} bytes/s (min_read_rate)",
                elapsed.as_secs_f64()
            ),
            BodyError::TooLarge(max) => write!(f, "request body exceeds the limit of {max} bytes"),
            BodyError::Read(e) => write!(f, "could not read the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The read deadlines of a body.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadRules {
    /// Whole-body deadline.
    pub timeout: Duration,
    /// Minimum average rate, bytes/s; 0: none.
    pub min_rate: u64,
}

impl From<&Limits> for ReadRules {
    fn from(l: &Limits) -> Self {
        ReadRules {
            timeout: l.read_timeout,
            min_rate: l.min_read_rate,
        }
    }
}

/// A request body that charges every data frame to its request's [`Charge`] (beyond what
/// was charged up front), refuses to grow past `max` bytes, and fails once the body is
/// late by [`ReadRules`] — checked on a timer, so a body that stalls fails without the
/// client sending anything more.
pub(super) struct MeteredBody<B> {
    inner: B,
    charge: Charge,
    prepaid: usize,
    received: usize,
    max: usize,
    rules: ReadRules,
    started: Instant,
    timer: Pin<Box<Sleep>>,
    failed: bool,
}

impl<B> MeteredBody<B> {
    /// Meters `inner`; `prepaid` bytes were already charged to `charge` (a declared
    /// `Content-Length`).
    pub fn new(inner: B, charge: Charge, prepaid: usize, max: usize, rules: ReadRules) -> Self {
        let started = Instant::now();
        let mut body = MeteredBody {
            inner,
            charge,
            prepaid,
            received: 0,
            max,
            rules,
            started,
            timer: Box::pin(tokio::time::sleep_until(started)),
            failed: false,
        };
        let next = body.next_check();
        body.timer.as_mut().reset(next);
        body
    }

    /// When the body is next late, if nothing more arrives: at the whole-body deadline or
    /// when its average rate drops under the minimum, whichever comes first.
    fn next_check(&self) -> Instant {
        let hard = self.started + self.rules.timeout;
        if self.rules.min_rate == 0 {
            return hard;
        }
        let allowed = Duration::from_secs_f64(self.received as f64 / self.rules.min_rate as f64)
            .max(MIN_READ_RATE_GRACE);
        // A little past the instant the average crosses the minimum, so the check fails.
        (self.started + allowed + Duration::from_millis(1)).min(hard)
    }

    /// Whether the body is late now.
    fn late(&self, now: Instant) -> Option<BodyError> {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.rules.timeout {
            return Some(BodyError::TimedOut(self.rules.timeout));
        }
        if self.rules.min_rate > 0
            && elapsed >= MIN_READ_RATE_GRACE
            && (self.received as f64) < self.rules.min_rate as f64 * elapsed.as_secs_f64()
        {
            return Some(BodyError::TooSlow {
                received: self.received,
                elapsed,
                min_rate: self.rules.min_rate,
            });
        }
        None
    }

    fn fail(&mut self, e: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.failed = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let before = this.received;
                    this.received = this.received.saturating_add(data.len());
                    if this.received > this.max {
                        return this.fail(BodyError::TooLarge(this.max));
                    }
                    let unpaid = this.received.saturating_sub(this.prepaid.max(before));
                    if unpaid > 0
                        && let Err(e) = this.charge.add(unpaid)
                    {
                        return this.fail(BodyError::Exhausted(e));
                    }
                    let next = this.next_check();
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(BodyError::Read(e.into())),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => loop {
                ready!(this.timer.as_mut().poll(cx));
                let now = Instant::now();
                if let Some(e) = this.late(now) {
                    return this.fail(e);
                }
                let next = this.next_check().max(now + Duration::from_millis(1));
                this.timer.as_mut().reset(next);
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The process's cgroup memory limit, bytes, if it has one (cgroup v2 `memory.max`, else
/// v1 `memory.limit_in_bytes`; v1's "unlimited" is a huge number and reads as none).
pub(super) fn cgroup_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    if let Some(v2) = read("/sys/fs/cgroup/memory.max") {
        return v2.trim().parse::<u64>().ok();
    }
    let v1 = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?;
    v1.trim().parse::<u64>().ok().filter(|&n| n < (1 << 62))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn charges_are_bounded_per_receiver_and_per_client_and_given_back_on_drop() {
        let budget = Budget::new(1000, 50, None);
        let a = Charge::new(budget.clone(), ip(1));
        a.add(400).unwrap();
        assert_eq!(a.add(200), Err(Exhausted::Client { share: 500 }));
        let b = Charge::new(budget.clone(), ip(2));
        b.add(500).unwrap();
        let c = Charge::new(budget.clone(), ip(3));
        assert_eq!(c.add(200), Err(Exhausted::Receiver { limit: 1000 }));
        assert_eq!(budget.used(), 900);
        let a2 = a.clone();
        drop(a);
        assert_eq!(budget.used(), 900, "a clone still holds the charge");
        drop(a2);
        assert_eq!(budget.used(), 500);
        c.add(100).unwrap();
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert!(budget.lock().by_client.is_empty());
    }

    #[test]
    fn messages_say_which_limit_and_its_size() {
        assert_eq!(
            Exhausted::Receiver { limit: 64 << 20 }.to_string(),
            "the receiver's memory budget for requests in flight (64 MiB) is full; retry later"
        );
        assert!(
            Exhausted::Client { share: 48 << 19 }
                .to_string()
                .contains("(24 MiB)")
        );
    }
}
