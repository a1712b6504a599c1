//! Configuration of the `kubernetes_logs` receiver:
//!
//! ```yaml
//! receivers:
//!   kubernetes_logs:
//!     root: /var/log/pods
//!     state_dir: /var/lib/hpcotel/kubernetes_logs
//!     start_at: end
//!     exclude_namespaces: [kube-system]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::multiline::MultilineConfig;

/// Default root of the kubelet's pod log tree.
pub const DEFAULT_ROOT: &str = "/var/log/pods";
/// Default directory of the offsets checkpoint.
pub const DEFAULT_STATE_DIR: &str = "./hpcotel-data/kubernetes_logs";
/// Default time between looks at the tree and at files that had nothing new.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Default largest record, bytes: longer lines are cut (and marked).
pub const DEFAULT_MAX_RECORD_SIZE: usize = 1024 * 1024;
/// Default time a partial line or a multi-line block may wait for its end.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time between checkpoint writes.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Default most bytes read from one file before the next file gets its turn.
pub const DEFAULT_READ_CHUNK: usize = 256 * 1024;

/// Where reading starts in a file the checkpoint does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// From its first byte.
    Beginning,
    /// From its end, for files present at the first start (a node's history is not
    /// replayed); files that appear later are read from their first byte.
    End,
}

/// The `kubernetes_logs` receiver's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of the kubelet's pod log tree
    /// (`<root>/<namespace>_<pod>_<uid>/<container>/<restart>.log`). When it does not
    /// exist the receiver logs one line and stays idle. Default `/var/log/pods`.
    pub root: PathBuf,
    /// Directory of the offsets checkpoint (`offsets.json`, written atomically), so a
    /// restarted collector resumes where it left. Default `./hpcotel-data/kubernetes_logs`
    /// (the chart: `/var/lib/hpcotel/kubernetes_logs` on the node).
    pub state_dir: PathBuf,
    /// Where reading starts in a file the checkpoint does not know: `end` (default) for
    /// files present at the first start, `beginning` for all. Files that appear while
    /// running are always read from their first byte.
    pub start_at: StartAt,
    /// Time between looks for new, rotated and grown files. Duration, default `250ms`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Largest record in bytes; a longer line (its partial parts joined) is cut there and
    /// carries `hpcotel.log.truncated_bytes`. At least 1. Default 1048576 (1 MiB).
    #[serde(deserialize_with = "hpcotel_core::config::at_least_one")]
    pub max_record_size: usize,
    /// Longest a partial line may wait for its end before it is sent as it is (the last
    /// line of a container that died mid-line). Duration, default `1s`.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// Time between checkpoint writes (and one at shutdown). Duration, default `1s`.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Only these namespaces; empty (default) = all.
    pub include_namespaces: Vec<String>,
    /// Never these namespaces. Default: none.
    pub exclude_namespaces: Vec<String>,
    /// Never containers of these names. Default: none.
    pub exclude_containers: Vec<String>,
    /// Never the pod of this UID: the collector's own (the chart sets it from the downward
    /// API), so its logs do not loop back through it. Default `${env:HPCOTEL_POD_UID}`
    /// when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_pod_uid: Option<String>,
    /// Stack traces and error blocks as one record: built-in rules (Python, JVM, Go, CUDA,
    /// NCCL), each on by default, and your own; see the README.
    pub multiline: MultilineConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            start_at: StartAt::End,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            exclude_containers: Vec::new(),
            exclude_pod_uid: std::env::var("HPCOTEL_POD_UID")
                .ok()
                .filter(|s| !s.is_empty()),
            multiline: MultilineConfig::default(),
        }
    }
}

impl Config {
    /// Whether a container's logs are read.
    pub fn selects(&self, namespace: &str, pod_uid: &str, container: &str) -> bool {
        (self.include_namespaces.is_empty()
            || self.include_namespaces.iter().any(|n| n == namespace))
            && !self.exclude_namespaces.iter().any(|n| n == namespace)
            && !self.exclude_containers.iter().any(|c| c == container)
            && self.exclude_pod_uid.as_deref() != Some(pod_uid)
    }
}
