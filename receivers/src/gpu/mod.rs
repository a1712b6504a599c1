//! The `gpu` receiver: NVIDIA GPU telemetry through NVML (nvml-wrapper's real dynamic
//! loading of `libnvidia-ml.so.1`), Xid/ECC events as logs, and the pod each GPU is
//! allocated to from kubelet PodResources.
//!
//! Every `sample_interval` (default 1 s, down to 100 ms) a dedicated thread reads each GPU's
//! fast-changing values (utilization, power, temperatures, clocks, throttle reasons, memory);
//! every `report_interval` (default 10 s) it emits one `ResourceMetrics` per
//! GPU and per MIG instance. A gauge's main series carries the window's **last** sample
//! under its semantic-convention name (`hw.power`, `hw.gpu.utilization`, ...) — what a scrape
//! would have seen — and the window's extremes go to `hpcotel.gpu.*.min` / `.max`, so a
//! spike or a dip shorter than the report interval survives into Prometheus/Mimir as a plain
//! gauge that `max_over_time` and alerts handle. Throttle reasons are one 0/1 series per
//! reason, 1 when active in any sample of the window. Slow-changing values (ECC, retired
//! pages, remapped rows, NVLink, PCIe link and throughput — NVML blocks 20 ms to measure it —,
//! fans, energy, processes) are read once per report.
//!
//! Data points carry `hw.id` (UUID), `hw.name` (`gpu3`), `hw.type=gpu`, `hw.vendor`,
//! `hw.model`, `hpcotel.gpu.index`, `hpcotel.gpu.pci_bus_id` (and `hw.parent`,
//! `hpcotel.gpu.mig.*` on MIG instances). The resource carries `host.name`, `k8s.node.name`
//! (from `K8S_NODE_NAME`) and, when exactly one pod holds the device, `k8s.namespace.name`,
//! `k8s.pod.name`, `k8s.container.name` (and `k8s.pod.uid` where the Catalog knows it); when
//! several do, `hpcotel.gpu.shared` = true and `hpcotel.gpu.pods` instead.
//!
//! Logs: one record per Xid (code, meaning, action, severity from the code), ECC event,
//! throttle start/end (coalesced per report) and GPU lost/recovered. A GPU that stops
//! answering (`GPU_IS_LOST`, Xid 79) reports `hw.status{hw.state=failed}` while the others keep
//! sampling. Without NVML the receiver logs one line and stays idle.

mod config;
pub mod device;
mod events;
mod ffi;
pub mod podresources;
mod procfs;
mod receiver;
pub mod sampler;
pub mod xid;

#[cfg(test)]
mod tests;

pub use crate::host_attributes;
pub use config::{
    Config, DEFAULT_LIBRARY_PATH, DEFAULT_PROC_ROOT, DEFAULT_REPORT_INTERVAL,
    DEFAULT_SAMPLE_INTERVAL, EventKind, MIN_SAMPLE_INTERVAL,
};
pub use receiver::{GpuReceiver, load_nvml};

/// Why the gpu receiver could not use NVML.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The NVML library could not be loaded or initialised.
    #[error("cannot load NVML from '{library}': {source}")]
    Load {
        /// The library path or soname tried.
        library: String,
        /// nvml-wrapper's error.
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
