//! Per-pod rate limits: a token bucket per pod for records and one for bytes (all the pod's
//! containers together), what they drop counted per pod, and at most one warning per pod per
//! [`RATE_LIMIT_WARN_INTERVAL`].
//!
//! A pod's buckets refill on a [`PodClock`]: the records' own timestamps (the runtime's,
//! taken as the container wrote each line), so what is limited is how fast the pod wrote, not
//! how fast it is read: a backlog read at full speed after a stalled backend or a restart (the
//! files are the buffer) passes at the rate it was written. A record whose timestamp does not
//! advance (out of order, or lines all stamped alike) refills by the wall-clock time since
//! the pod's previous record instead.
//!
//! Buckets count in billionths of a token, in integers: a bucket refilled for `t` holds
//! exactly `rate × t` more, so what passes in a window is exactly the burst plus the rate
//! times the window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::config::RateLimitConfig;
use super::tail::Source;

/// Longest a pod that keeps dropping goes without a warning (its first drop warns at once).
pub const RATE_LIMIT_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// The `hpcotel.reason` of records dropped over a pod's rate limit
/// (`hpcotel.receiver.refused`).
pub const RATE_LIMITED: &str = "rate_limited";

const NANO: u128 = 1_000_000_000;

/// A token bucket: `rate` tokens a second, holding at most `rate × burst` (at least one).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: u128,
    /// Most it holds, in billionths of a token.
    capacity: u128,
    /// What it holds, in billionths of a token.
    tokens: u128,
}

impl TokenBucket {
    /// A full bucket of `per_second` tokens a second holding `burst`'s worth.
    pub fn new(per_second: u64, burst: Duration) -> TokenBucket {
        let rate = u128::from(per_second);
        let capacity = (rate * burst.as_nanos()).max(NANO);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
        }
    }

    /// Adds what `elapsed` brings, up to the capacity.
    pub fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_nanos()).min(self.capacity);
    }

    /// What `cost` tokens cost here: a cost above the whole bucket costs the whole bucket
    /// (so it passes when the bucket is full).
    fn price(&self, cost: u64) -> u128 {
        (u128::from(cost) * NANO).min(self.capacity)
    }

    /// Whether `cost` tokens are there (takes nothing).
    pub fn has(&self, cost: u64) -> bool {
        self.tokens >= self.price(cost)
    }

    /// Takes `cost` tokens (after [`TokenBucket::has`] said they are there).
    pub fn take(&mut self, cost: u64) {
        self.tokens = self.tokens.saturating_sub(self.price(cost));
    }

    /// Whole tokens held.
    pub fn available(&self) -> u64 {
        u64::try_from(self.tokens / NANO).unwrap_or(u64::MAX)
    }
}

/// The time a pod's buckets run on: its records' timestamps; a record whose timestamp is not
/// past the latest one counts the wall-clock time since the pod's previous record instead.
#[derive(Debug, Clone)]
pub struct PodClock {
    /// The latest record timestamp, Unix ns.
    at: u64,
    /// When the previous record was read.
    wall: Instant,
}

impl PodClock {
    /// A clock standing at `record_time` (Unix ns) at `now`.
    pub fn new(record_time: u64, now: Instant) -> PodClock {
        PodClock {
            at: record_time,
            wall: now,
        }
    }

    /// Moves on for a record of `record_time` read at `now`; returns how far.
    pub fn advance(&mut self, record_time: u64, now: Instant) -> Duration {
        let wall = now.saturating_duration_since(self.wall);
        self.wall = self.wall.max(now);
        if record_time > self.at {
            let moved = record_time - self.at;
            self.at = record_time;
            Duration::from_nanos(moved)
        } else {
            wall
        }
    }
}

/// A warning due for a pod that dropped records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name`.
    pub pod: String,
    /// `k8s.pod.uid`.
    pub uid: String,
    /// Records dropped since its previous warning.
    pub dropped: u64,
    /// Records dropped since it was first limited (while it stays remembered).
    pub total: u64,
}

#[derive(Debug)]
struct PodLimit {
    namespace: String,
    pod: String,
    clock: PodClock,
    lines: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    total: u64,
    unwarned: u64,
    last_warn: Option<Instant>,
    last_seen: Instant,
}

/// The buckets of every pod that sent lately.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    pods: HashMap<String, PodLimit>,
}

impl RateLimiter {
    /// Limits of `config`.
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        RateLimiter {
            config: config.clone(),
            pods: HashMap::new(),
        }
    }

    /// Whether neither records nor bytes are limited.
    pub fn is_off(&self) -> bool {
        self.config.lines_per_second == 0 && self.config.bytes_per_second == 0
    }

    /// Whether a record of `bytes` bytes, timed `record_time` (Unix ns, the runtime's
    /// timestamp), from `source`'s pod passes when read at `now`; when it does not, it is
    /// counted as dropped for that pod.
    pub fn admit(&mut self, source: &Source, record_time: u64, bytes: usize, now: Instant) -> bool {
        if self.is_off() {
            return true;
        }
        if !self.pods.contains_key(&source.uid) {
            let c = &self.config;
            let limit = PodLimit {
                namespace: source.namespace.clone(),
                pod: source.pod.clone(),
                clock: PodClock::new(record_time, now),
                lines: (c.lines_per_second > 0)
                    .then(|| TokenBucket::new(c.lines_per_second, c.burst)),
                bytes: (c.bytes_per_second > 0)
                    .then(|| TokenBucket::new(c.bytes_per_second, c.burst)),
                total: 0,
                unwarned: 0,
                last_warn: None,
                last_seen: now,
            };
            self.pods.insert(source.uid.clone(), limit);
        }
        let Some(p) = self.pods.get_mut(&source.uid) else {
            return true;
        };
        p.last_seen = now;
        let elapsed = p.clock.advance(record_time, now);
        for b in p.lines.iter_mut().chain(p.bytes.iter_mut()) {
            b.refill(elapsed);
        }
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let lines_ok = p.lines.as_ref().is_none_or(|b| b.has(1));
        let bytes_ok = p.bytes.as_ref().is_none_or(|b| b.has(bytes));
        if lines_ok && bytes_ok {
            if let Some(b) = &mut p.lines {
                b.take(1);
            }
            if let Some(b) = &mut p.bytes {
                b.take(bytes);
            }
            true
        } else {
            p.total += 1;
            p.unwarned += 1;
            false
        }
    }

    /// The warnings due at `now`: each pod that dropped records since its last warning, if
    /// it had none in the last [`RATE_LIMIT_WARN_INTERVAL`]. Sorted by namespace and pod.
    pub fn due_warnings(&mut self, now: Instant) -> Vec<Warning> {
        let mut due: Vec<Warning> = self
            .pods
            .iter_mut()
            .filter(|(_, p)| {
                p.unwarned > 0
                    && p.last_warn.is_none_or(|t| {
                        now.saturating_duration_since(t) >= RATE_LIMIT_WARN_INTERVAL
                    })
            })
            .map(|(uid, p)| {
                let w = Warning {
                    namespace: p.namespace.clone(),
                    pod: p.pod.clone(),
                    uid: uid.clone(),
                    dropped: p.unwarned,
                    total: p.total,
                };
                p.unwarned = 0;
                p.last_warn = Some(now);
                w
            })
            .collect();
        due.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        due
    }

    /// Forgets pods that sent nothing for the longer of the burst and the warning interval
    /// (their buckets would be full again) and whose drops were all warned of: they start
    /// afresh.
    pub fn prune(&mut self, now: Instant) {
        let quiet = self.config.burst.max(RATE_LIMIT_WARN_INTERVAL);
        self.pods.retain(|_, p| {
            let forget = now.saturating_duration_since(p.last_seen) >= quiet
                && p.unwarned == 0
                && p.last_warn
                    .is_none_or(|t| now.saturating_duration_since(t) >= RATE_LIMIT_WARN_INTERVAL);
            !forget
        });
    }

    /// Pods remembered.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod is remembered.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}
