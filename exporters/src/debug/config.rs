//! Configuration of the `debug` exporter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for [`Config::verbosity`].
pub const DEFAULT_VERBOSITY: Verbosity = Verbosity::Basic;
/// Default for [`Config::summary_interval`]: 10 s.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// How much the debug exporter prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per interval.
    Basic,
    /// The summary lines, plus every batch as one line of OTLP JSON.
    Detailed,
}

/// `debug` exporter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `basic` (summary lines) or `detailed` (summary lines and each batch as OTLP JSON).
    /// Default: `basic`.
    pub verbosity: Verbosity,
    /// How often the summary line is printed, e.g. "10s" (more than 0). Default: 10s.
    #[serde(with = "humantime_serde")]
    pub summary_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            verbosity: DEFAULT_VERBOSITY,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
        }
    }
}
