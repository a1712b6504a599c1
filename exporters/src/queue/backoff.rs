//! Backoff arithmetic: pure functions, so the bounds are unit-tested without a clock.

use std::time::Duration;

use super::config::RetryConfig;

/// The interval before jitter ahead of retry number `attempt` (0 = the first retry):
/// `initial_interval * multiplier^attempt`, capped at `max_interval`.
pub fn base_interval(retry: &RetryConfig, attempt: u32) -> Duration {
    let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
    let secs = retry.initial_interval.as_secs_f64() * retry.multiplier.powi(exp);
    let capped = secs.min(retry.max_interval.as_secs_f64());
    Duration::try_from_secs_f64(capped).unwrap_or(retry.max_interval)
}

/// The smallest and largest wait [`backoff_delay`] can return for `attempt`:
/// `base * (1 - randomization_factor)` and `base * (1 + randomization_factor)`.
pub fn backoff_bounds(retry: &RetryConfig, attempt: u32) -> (Duration, Duration) {
    (
        backoff_delay(retry, attempt, 0.0),
        backoff_delay(retry, attempt, 1.0),
    )
}

/// The wait ahead of retry number `attempt`, with jitter: `random` (uniform in `[0, 1]`)
/// picks a point in `base * [1 - randomization_factor, 1 + randomization_factor]`.
pub fn backoff_delay(retry: &RetryConfig, attempt: u32, random: f64) -> Duration {
    let base = base_interval(retry, attempt).as_secs_f64();
    let factor = retry.randomization_factor.clamp(0.0, 1.0);
    let random = if random.is_nan() {
        0.5
    } else {
        random.clamp(0.0, 1.0)
    };
    let secs = base * (1.0 - factor + 2.0 * factor * random);
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

/// How long to wait before the next attempt: the jittered backoff, or the backend's
/// `retry_after` when that is longer (it is honoured even beyond `max_interval`).
pub fn next_wait(
    retry: &RetryConfig,
    attempt: u32,
    random: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let backoff = backoff_delay(retry, attempt, random);
    retry_after.map_or(backoff, |ra| ra.max(backoff))
}
