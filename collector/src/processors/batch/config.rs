//! Config of the `batch` processor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for `send_batch_size`, in items.
pub const DEFAULT_SEND_BATCH_SIZE: usize = 8192;
/// Default for `send_batch_max_size`, in items, when `send_batch_size` is left at its default
/// too: `send_batch_max_size` follows `send_batch_size` when not set (see
/// [`Config::send_batch_max_size`]).
pub const DEFAULT_SEND_BATCH_MAX_SIZE: usize = DEFAULT_SEND_BATCH_SIZE;
/// Default for `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
/// Default for `send_batch_max_bytes`: 3.5 MiB, an eighth under the 4 MiB that grpc-go and
/// the OpenTelemetry Collector's OTLP gRPC receiver take by default (and the `otlp`
/// exporters' `max_request_size`), so that a default batch fits a default downstream
/// collector with room for what it adds (resource attributes) before its own next hop.
pub const DEFAULT_SEND_BATCH_MAX_BYTES: usize = 4 * 1024 * 1024 - 512 * 1024;

/// `processors.batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawConfig")]
pub struct Config {
    /// Items (spans, metric points, log records) that trigger sending a batch at once.
    /// 0 = send on `timeout` only. Default: 8192.
    pub send_batch_size: usize,
    /// Most items (spans, metric points, log records) in one batch sent on: larger ones,
    /// whether merged here or received whole, are cut into batches of exactly this many
    /// items, in order, and the remainder is held (or sent, when it alone reaches
    /// `send_batch_size`). 0 = no upper bound (the OpenTelemetry Collector's default).
    /// Must be 0 or at least `send_batch_size`.
    ///
    /// Default: the same as `send_batch_size` (so 8192 by default, and no bound when
    /// `send_batch_size` is 0). Unlike the Collector, hpcotel bounds batches unless told
    /// otherwise: an unbounded merge (8000 items held + a 5000-item request = 13000) can
    /// exceed a backend's message limit (4 MiB by default on Mimir's and Tempo's gRPC) and be
    /// refused permanently. Following `send_batch_size` rather than a fixed number keeps
    /// valid every config that sets only `send_batch_size`, and no batch is sent larger
    /// than the size that triggers sending.
    pub send_batch_max_size: usize,
    /// Longest batch sent on, in bytes of its encoded OTLP request (uncompressed protobuf,
    /// what a backend's message limit is checked against): a batch that would be longer,
    /// merged here or received whole, is cut into batches that fit, in order, packed
    /// greedily, and the remainder is held like the remainder of an item cut. An item whose
    /// request alone is longer goes on in a batch of its own (the exporter then refuses it,
    /// counted). 0 = no bound in bytes. Default: 3670016 (3.5 MiB, under the 4 MiB default
    /// message limit of grpc-go and the OpenTelemetry Collector).
    pub send_batch_max_bytes: usize,
    /// How long the first item of a batch may wait before the batch is sent regardless of
    /// size. 0 = no waiting: batches pass straight through, only cut to
    /// `send_batch_max_size`. Default: 200ms.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            send_batch_size: DEFAULT_SEND_BATCH_SIZE,
            send_batch_max_size: DEFAULT_SEND_BATCH_MAX_SIZE,
            send_batch_max_bytes: DEFAULT_SEND_BATCH_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `processors.batch` as written, before `send_batch_max_size` is defaulted and checked
/// against `send_batch_size`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    send_batch_size: usize,
    send_batch_max_size: Option<usize>,
    send_batch_max_bytes: usize,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            send_batch_size: DEFAULT_SEND_BATCH_SIZE,
            send_batch_max_size: None,
            send_batch_max_bytes: DEFAULT_SEND_BATCH_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let send_batch_max_size = raw.send_batch_max_size.unwrap_or(raw.send_batch_size);
        if send_batch_max_size != 0 && send_batch_max_size < raw.send_batch_size {
            return Err(format!(
                "send_batch_max_size ({send_batch_max_size}) must be 0 or at least \
                 send_batch_size ({})",
                raw.send_batch_size
            ));
        }
        Ok(Self {
            send_batch_size: raw.send_batch_size,
            send_batch_max_size,
            send_batch_max_bytes: raw.send_batch_max_bytes,
            timeout: raw.timeout,
        })
    }
}
