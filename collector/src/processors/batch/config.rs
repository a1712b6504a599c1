//! Config of the `batch` processor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for `send_batch_size`, in items.
pub const DEFAULT_SEND_BATCH_SIZE: usize = 8192;
/// Default for `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

/// `processors.batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Items (spans, metric points, log records) that trigger sending a batch at once.
    /// 0 = send on `timeout` only. Default: 8192.
    pub send_batch_size: usize,
    /// How long the first item of a batch may wait before the batch is sent regardless of
    /// size. 0 = no waiting: batches pass straight through. Default: 200ms.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            send_batch_size: DEFAULT_SEND_BATCH_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}
