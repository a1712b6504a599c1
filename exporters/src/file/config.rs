//! Configuration of the `file` exporter.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default for [`Config::path`].
pub const DEFAULT_PATH: &str = "./hpcotel-data";
/// Default for [`Config::max_file_size_mib`], in MiB.
pub const DEFAULT_MAX_FILE_SIZE_MIB: u64 = 64;
/// Default for [`Config::max_files`].
pub const DEFAULT_MAX_FILES: usize = 8;

/// `file` exporter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory the `traces.jsonl`, `metrics.jsonl` and `logs.jsonl` files are written to;
    /// created if missing. Default: `./hpcotel-data`.
    pub path: PathBuf,
    /// Size in MiB at which a signal's file is rotated (at least 1). Default: 64.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_file_size_mib: u64,
    /// Files kept per signal, the active one included (at least 1); the oldest rotated file
    /// is deleted beyond that. Default: 8.
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            max_file_size_mib: DEFAULT_MAX_FILE_SIZE_MIB,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}
