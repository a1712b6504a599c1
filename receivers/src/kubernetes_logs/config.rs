//! Configuration of the `kubernetes_logs` receiver:
//!
//! ```yaml
//! receivers:
//!   kubernetes_logs:
//!     root: /var/log/pods
//!     state_dir: /var/lib/hpcotel/kubernetes_logs
//!     start_at: end
//!     exclude_namespaces: [kube-system]
//!     include_pod_labels: ["app.kubernetes.io/part-of=training"]
//!     exclude_pod_labels: ["logging=off", "tier in (debug, canary)"]
//!     rate_limit: { lines_per_second: 10000, bytes_per_second: 16777216, burst: 2s }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::multiline::MultilineConfig;
use super::select::{LabelSelector, PodGate};

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
/// Default longest wait for the Catalog to know a pod before its logs are read without its
/// labels and annotations.
pub const DEFAULT_POD_METADATA_WAIT: Duration = Duration::from_secs(5);
/// Default most records (lines; a joined stack trace counts once) per second per pod.
pub const DEFAULT_RATE_LIMIT_LINES_PER_SECOND: u64 = 10_000;
/// Default most bytes of records per second per pod (16 MiB/s).
pub const DEFAULT_RATE_LIMIT_BYTES_PER_SECOND: u64 = 16 * 1024 * 1024;
/// Default burst: a pod's bucket holds this long's worth of its rate.
pub const DEFAULT_RATE_LIMIT_BURST: Duration = Duration::from_secs(2);

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
    /// Only containers of these names; empty (default) = all.
    pub include_containers: Vec<String>,
    /// Never containers of these names. Default: none.
    pub exclude_containers: Vec<String>,
    /// Only pods whose labels match one of these selectors (Kubernetes label selector
    /// syntax: `key=value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`, `!key`,
    /// requirements joined by `,` all holding). Empty (default) = all pods. A pod the Catalog
    /// does not know (no `kubernetes` receiver, or the API server unreachable) matches none,
    /// so it is not read until it is known — then from its files' first byte.
    pub include_pod_labels: Vec<LabelSelector>,
    /// Never pods whose labels match one of these selectors (syntax as
    /// `include_pod_labels`). Default: none.
    pub exclude_pod_labels: Vec<LabelSelector>,
    /// Never pods labelled `app.kubernetes.io/name: hpcotel`: every pod the chart runs (the
    /// node agents and the cluster Deployment), so no hpcotel reads another's logs and none
    /// loops back. A chart installed with `nameOverride` labels its pods with that name: add
    /// it to `exclude_pod_labels`. Default `true`.
    pub exclude_hpcotel_pods: bool,
    /// Longest the receiver waits for the Catalog (filled by the `kubernetes` receiver in
    /// node mode) to know a pod before reading its logs without its labels and annotations:
    /// a new pod's files are left unopened meanwhile and read from their first byte once it
    /// is known or the wait is over (nothing of a starting pod is lost, and a pod that opted
    /// out is not read); at start, the first look at the tree waits as long for the pods
    /// already there. A pod read unknown that turns out to be excluded has its lines dropped
    /// from then on. While the Catalog holds no pod at all (no `kubernetes` receiver) new pods
    /// are read at once; set `0s` without a `kubernetes` receiver to skip the wait at start
    /// too. Duration, default `5s`.
    #[serde(with = "humantime_serde")]
    pub pod_metadata_wait: Duration,
    /// Per-pod rate limit (a token bucket per pod, all its containers together); records
    /// over it are dropped and counted in `hpcotel.receiver.refused{hpcotel.reason=rate_limited}`,
    /// with one warning per pod per minute naming it.
    pub rate_limit: RateLimitConfig,
    /// Never the pod of this UID: the collector's own (the chart sets it from the downward
    /// API), so its logs do not loop back through it. Default `${env:HPCOTEL_POD_UID}`
    /// when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_pod_uid: Option<String>,
    /// Stack traces and error blocks as one record: built-in rules (Python, JVM, Go, CUDA,
    /// NCCL), each on by default, and your own; see the README.
    pub multiline: MultilineConfig,
    /// Runtime, not configuration: what the Catalog says of pods, read by
    /// [`Config::selects`]. Attached by the receiver; equal to any other.
    #[serde(skip)]
    pub(crate) gate: PodGate,
}

/// `rate_limit`: the most each pod may send, as a token bucket per pod. Time is the records'
/// own (the runtime's timestamps): what is limited is how fast a pod writes, so a backlog
/// read after a stalled backend or a restart passes at the rate it was written; records
/// whose timestamps stand still count by the wall clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Most records per second per pod (a record is a line, or a joined stack trace); `0`
    /// = no limit on records. Default 10000.
    pub lines_per_second: u64,
    /// Most bytes of record bodies per second per pod; `0` = no limit on bytes. Default
    /// 16777216 (16 MiB/s).
    pub bytes_per_second: u64,
    /// How much a pod may send at once after being quiet: each bucket holds this long's
    /// worth of its rate (a record longer than a whole bucket passes when the bucket is
    /// full). More than 0. Duration, default `2s`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        deserialize_with = "more_than_zero"
    )]
    pub burst: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            lines_per_second: DEFAULT_RATE_LIMIT_LINES_PER_SECOND,
            bytes_per_second: DEFAULT_RATE_LIMIT_BYTES_PER_SECOND,
            burst: DEFAULT_RATE_LIMIT_BURST,
        }
    }
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
            include_containers: Vec::new(),
            exclude_containers: Vec::new(),
            include_pod_labels: Vec::new(),
            exclude_pod_labels: Vec::new(),
            exclude_hpcotel_pods: true,
            pod_metadata_wait: DEFAULT_POD_METADATA_WAIT,
            rate_limit: RateLimitConfig::default(),
            exclude_pod_uid: std::env::var("HPCOTEL_POD_UID")
                .ok()
                .filter(|s| !s.is_empty()),
            multiline: MultilineConfig::default(),
            gate: PodGate::default(),
        }
    }
}

/// A duration written as humantime (`2s`, `500ms`) that must be more than zero.
fn more_than_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v: Duration = humantime_serde::deserialize(d)?;
    if v.is_zero() {
        return Err(serde::de::Error::custom("expected more than 0s"));
    }
    Ok(v)
}
