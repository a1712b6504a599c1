//! Configuration of the kubelet PodResources client, embedded by the gpu receiver as
//! `pod_resources`:
//!
//! ```yaml
//! receivers:
//!   gpu:
//!     pod_resources:
//!       endpoint: /var/lib/kubelet/pod-resources/kubelet.sock
//!       refresh_interval: 10s
//!       timeout: 5s
//!       resource_names: ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"]
//! ```
//!
//! `resource_names` replaces the default list as a whole. A GPU advertised under another name
//! — a device plugin older than v0.15 with a custom `resources.gpus[].name` or
//! `sharing.timeSlicing.resources[].rename` (v0.15 and later ignore both), or another
//! plugin — is attributed once its name is listed, e.g.
//! `resource_names: ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*",
//! "nvidia.com/a100-shared"]`. GPUs allocated through DRA need no entry (see the
//! [module docs](super)).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default `endpoint`: the kubelet's PodResources socket.
pub const DEFAULT_ENDPOINT: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// Default `refresh_interval`: 10 s.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Default `timeout`: 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `resource_names`: every name the NVIDIA device plugin (v0.15 and later) can
/// advertise: whole GPUs (`nvidia.com/gpu`, which also carries MIG devices under its `single`
/// MIG strategy), their time-slicing / MPS replicas under `sharing.*.renameByDefault: true`
/// (`nvidia.com/gpu.shared`), and every MIG profile of the `mixed` strategy, shared or not
/// (`nvidia.com/mig-1g.10gb`, `nvidia.com/mig-1g.10gb.shared`, …). Not a broad `nvidia.com/*`:
/// NVIDIA's network operator advertises NICs and RDMA devices under `nvidia.com/` too.
pub const DEFAULT_RESOURCE_NAMES: &[&str] = &[
    "nvidia.com/gpu",
    "nvidia.com/gpu.shared",
    "nvidia.com/mig-*",
];

/// Where and how often to ask the kubelet which pod holds which GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Path of the kubelet's PodResources gRPC Unix socket; mount its directory into the
    /// DaemonSet pod (`hostPath`). Default: `/var/lib/kubelet/pod-resources/kubelet.sock`.
    pub endpoint: PathBuf,
    /// Time between two `List` calls (humantime, e.g. `10s`); the first call happens at
    /// start. Must be greater than zero. A failed call keeps the last answer for up to 3
    /// intervals, then clears it. Default: `10s`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        deserialize_with = "hpcotel_core::config::positive_duration"
    )]
    pub refresh_interval: Duration,
    /// Limit on one call, connecting included (humantime, e.g. `5s`). Must be greater than
    /// zero. Default: `5s`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        deserialize_with = "hpcotel_core::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Extended resource names whose device ids are GPUs or MIG devices. An entry ending in
    /// `*` matches every name starting with what precedes it. Other resources (NICs, FPGAs,
    /// …) are ignored. Setting it replaces the whole default list. Default:
    /// `["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-*"]`.
    pub resource_names: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: PathBuf::from(DEFAULT_ENDPOINT),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            resource_names: DEFAULT_RESOURCE_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Config {
    /// Whether devices of the extended resource `resource_name` are collected.
    pub fn matches(&self, resource_name: &str) -> bool {
        self.resource_names
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => resource_name.starts_with(prefix),
                None => resource_name == pattern,
            })
    }
}
