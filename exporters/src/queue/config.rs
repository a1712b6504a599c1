//! Configuration of the export queue (`sending_queue`) and its retry policy
//! (`retry_on_failure`), with the OpenTelemetry Collector's names and defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`QueueConfig::enabled`].
pub const DEFAULT_QUEUE_ENABLED: bool = true;
/// Default for [`QueueConfig::queue_size`] with `sizer: items` (spans, metric points, log
/// records). The OTLP exporters hold them encoded and compressed (tens to hundreds of bytes
/// each); other exporters decoded (about 1 kB each).
pub const DEFAULT_QUEUE_SIZE: usize = 50_000;
/// Default for [`QueueConfig::queue_size`] with `sizer: bytes`: 16 MiB of requests as they will
/// be sent (with gzip, a few hundred thousand spans).
pub const DEFAULT_QUEUE_SIZE_BYTES: usize = 16 << 20;
/// Default for [`QueueConfig::num_consumers`].
pub const DEFAULT_NUM_CONSUMERS: usize = 4;
/// Default for [`QueueConfig::block_on_full`].
pub const DEFAULT_BLOCK_ON_FULL: bool = true;

/// Default for [`RetryConfig::enabled`].
pub const DEFAULT_RETRY_ENABLED: bool = true;
/// Default for [`RetryConfig::initial_interval`]: 5 s.
pub const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_secs(5);
/// Default for [`RetryConfig::randomization_factor`].
pub const DEFAULT_RANDOMIZATION_FACTOR: f64 = 0.5;
/// Default for [`RetryConfig::multiplier`].
pub const DEFAULT_MULTIPLIER: f64 = 1.5;
/// Default for [`RetryConfig::max_interval`]: 30 s.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Default for [`RetryConfig::max_elapsed_time`]: 300 s.
pub const DEFAULT_MAX_ELAPSED_TIME: Duration = Duration::from_secs(300);

/// `sending_queue`: the bounded in-memory queue in front of an exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "QueueInput")]
pub struct QueueConfig {
    /// Queue batches and export them from `num_consumers` background tasks. When false, the
    /// sender exports inline (with retry) in its own task. Default: true.
    pub enabled: bool,
    /// What `queue_size` counts: `items` (spans, metric points, log records) or `bytes` (of
    /// the requests held: an OTLP exporter queues each request encoded and compressed, as it
    /// will be sent, so this is the memory the queue holds; for other exporters, the batch's
    /// encoded length). The Collector's `requests` sizer is refused with an explanation.
    /// Default: `items`.
    pub sizer: Sizer,
    /// Capacity of the queue, in the sizer's unit (at least 1). A request larger than the
    /// whole queue waits for it to empty, then goes alone. Default: 50000 items, or 16777216
    /// (16 MiB) with `sizer: bytes`.
    pub queue_size: usize,
    /// Number of concurrent export tasks (at least 1). Default: 4.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub num_consumers: usize,
    /// When the queue is full: true makes the sender wait (backpressure, so receivers answer
    /// their clients RESOURCE_EXHAUSTED / 429); false drops the batch, counted as dropped with
    /// reason `queue_full`. Default: true.
    pub block_on_full: bool,
}

/// [`QueueConfig`] as written: `queue_size`'s default depends on the sizer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QueueInput {
    enabled: bool,
    sizer: Sizer,
    #[serde(deserialize_with = "at_least_one_given")]
    queue_size: Option<usize>,
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    num_consumers: usize,
    block_on_full: bool,
}

impl Default for QueueInput {
    fn default() -> Self {
        let d = QueueConfig::default();
        Self {
            enabled: d.enabled,
            sizer: d.sizer,
            queue_size: None,
            num_consumers: d.num_consumers,
            block_on_full: d.block_on_full,
        }
    }
}

impl From<QueueInput> for QueueConfig {
    fn from(i: QueueInput) -> Self {
        Self {
            enabled: i.enabled,
            sizer: i.sizer,
            queue_size: i.queue_size.unwrap_or(match i.sizer {
                Sizer::Items => DEFAULT_QUEUE_SIZE,
                Sizer::Bytes => DEFAULT_QUEUE_SIZE_BYTES,
            }),
            num_consumers: i.num_consumers,
            block_on_full: i.block_on_full,
        }
    }
}

fn at_least_one_given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    hpcotel_core::config::at_least_one(d).map(Some)
}

/// What a queue's capacity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sizer {
    /// Spans, metric data points, log records: what bounds memory whatever the batch sizes.
    #[default]
    Items,
    /// Bytes of the queued requests as they will be sent (encoded and compressed).
    Bytes,
}

impl<'de> Deserialize<'de> for Sizer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "items" => Ok(Sizer::Items),
            "bytes" => Ok(Sizer::Bytes),
            "requests" => Err(serde::de::Error::custom(
                "hpcotel does not size queues in requests (a request may hold one span or \
                 thousands); use 'items' or 'bytes'",
            )),
            other => Err(serde::de::Error::custom(format!(
                "expected 'items' or 'bytes', got '{other}'"
            ))),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_QUEUE_ENABLED,
            sizer: Sizer::Items,
            queue_size: DEFAULT_QUEUE_SIZE,
            num_consumers: DEFAULT_NUM_CONSUMERS,
            block_on_full: DEFAULT_BLOCK_ON_FULL,
        }
    }
}

/// `retry_on_failure`: exponential backoff with jitter for retryable export failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures. When false, a retryable failure drops the batch (reason
    /// `retry_disabled`). Default: true.
    pub enabled: bool,
    /// Wait before the first retry (before jitter), e.g. "5s". Default: 5s.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Jitter: each wait is drawn uniformly from `interval * [1 - f, 1 + f]`; 0 to 1.
    /// Default: 0.5.
    #[serde(deserialize_with = "unit_interval")]
    pub randomization_factor: f64,
    /// Growth of the interval after each retry (at least 1). Default: 1.5.
    #[serde(deserialize_with = "at_least_one_f64")]
    pub multiplier: f64,
    /// Upper bound of the interval before jitter, e.g. "30s". A longer delay asked for by the
    /// backend (RetryInfo / Retry-After) is still honoured. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch once retrying it would take longer than this since its first
    /// attempt, e.g. "300s"; "0s" retries forever. Default: 300s.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_RETRY_ENABLED,
            initial_interval: DEFAULT_INITIAL_INTERVAL,
            randomization_factor: DEFAULT_RANDOMIZATION_FACTOR,
            multiplier: DEFAULT_MULTIPLIER,
            max_interval: DEFAULT_MAX_INTERVAL,
            max_elapsed_time: DEFAULT_MAX_ELAPSED_TIME,
        }
    }
}

impl RetryConfig {
    /// No retries: a retryable failure drops the batch.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

fn at_least_one_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let n = f64::deserialize(d)?;
    if !(n >= 1.0 && n.is_finite()) {
        return Err(serde::de::Error::custom(format!(
            "expected a number >= 1, got {n}"
        )));
    }
    Ok(n)
}

fn unit_interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let n = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "expected a number from 0 to 1, got {n}"
        )));
    }
    Ok(n)
}
