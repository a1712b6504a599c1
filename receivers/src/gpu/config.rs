//! Configuration of the `gpu` receiver:
//!
//! ```yaml
//! receivers:
//!   gpu:
//!     sample_interval: 1s      # how often NVML is read (100ms .. report_interval)
//!     report_interval: 10s     # how often a report (last, min, max of the window) is emitted
//!     library_path: libnvidia-ml.so.1
//!     processes: true
//!     events: [xid, single_bit_ecc, double_bit_ecc]
//!     pod_resources:
//!       endpoint: /var/lib/kubelet/pod-resources/kubelet.sock
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::podresources;

/// Default `sample_interval`: 1 s.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest `sample_interval` accepted: 100 ms (NVML's own utilization counters update
/// at about that period; faster sampling reads the same value twice).
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Default `report_interval`: 10 s.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Default `library_path`: the soname, resolved by the dynamic loader like any driver library.
pub const DEFAULT_LIBRARY_PATH: &str = "libnvidia-ml.so.1";
/// Default `proc_root`: `/proc` (mount the host's `/proc` and use `hostPID: true` in a pod).
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// An NVML event kind the receiver subscribes to and turns into log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Critical Xid errors (`nvmlEventTypeXidCriticalError`).
    Xid,
    /// Single-bit (corrected) ECC errors.
    SingleBitEcc,
    /// Double-bit (uncorrected) ECC errors.
    DoubleBitEcc,
    /// Performance-state changes (noisy; off by default).
    PstateChange,
}

/// The gpu receiver's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How often every GPU is read (humantime). At least `100ms`, at most `report_interval`.
    /// Default: `1s`.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// How often the samples of the window are reported (humantime): the last sample under
    /// the semantic-convention names, plus the window's min/max (`hpcotel.gpu.*.min|max`) so a
    /// spike or dip shorter than the report interval still shows. A multiple of
    /// `sample_interval` is advised. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// The NVML library to load: a soname searched by the dynamic loader, or a path (e.g.
    /// `/home/kubernetes/bin/nvidia/lib64/libnvidia-ml.so.1` on GKE). When it cannot be
    /// loaded the receiver logs why once and stays idle; the collector runs on.
    /// Default: `libnvidia-ml.so.1`.
    pub library_path: PathBuf,
    /// Emit per-process GPU memory and utilization (`hpcotel.gpu.process.*`), with the
    /// process's pod from its cgroup. Default: `true`.
    pub processes: bool,
    /// Where `/proc` of the host is mounted, to read a process's cgroup (pod UID) and name.
    /// Default: `/proc`.
    pub proc_root: PathBuf,
    /// NVML events turned into log records: any of `xid`, `single_bit_ecc`, `double_bit_ecc`,
    /// `pstate_change`. Clock-event (throttle) changes are always logged from the samples.
    /// Default: `[xid, single_bit_ecc, double_bit_ecc]`.
    pub events: Vec<EventKind>,
    /// Emit metrics for MIG instances (memory, processes) beside their GPU. Default: `true`.
    pub mig: bool,
    /// kubelet PodResources: which pod each GPU (or MIG instance) is allocated to.
    pub pod_resources: podresources::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            report_interval: DEFAULT_REPORT_INTERVAL,
            library_path: PathBuf::from(DEFAULT_LIBRARY_PATH),
            processes: true,
            proc_root: PathBuf::from(DEFAULT_PROC_ROOT),
            events: vec![
                EventKind::Xid,
                EventKind::SingleBitEcc,
                EventKind::DoubleBitEcc,
            ],
            mig: true,
            pod_resources: podresources::Config::default(),
        }
    }
}

impl Config {
    /// Checks what serde cannot: the interval bounds. On error: (key, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.sample_interval < MIN_SAMPLE_INTERVAL {
            return Err((
                "sample_interval",
                format!(
                    "expected at least 100ms, got {}",
                    humantime::format_duration(self.sample_interval)
                ),
            ));
        }
        if self.report_interval < self.sample_interval {
            return Err((
                "report_interval",
                format!(
                    "expected at least sample_interval ({}), got {}",
                    humantime::format_duration(self.sample_interval),
                    humantime::format_duration(self.report_interval)
                ),
            ));
        }
        Ok(())
    }
}
