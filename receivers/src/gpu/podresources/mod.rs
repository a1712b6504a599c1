//! kubelet PodResources v1 client: which pods (and containers) hold which GPU.
//!
//! The kubelet serves the `v1.PodResourcesLister` gRPC service on a Unix socket
//! ([`Config::endpoint`]); its `List` answer names, per container, the device ids of every
//! extended resource allocated to it and the devices of every DRA claim it uses. Each GPU or
//! MIG device found is mapped to the [`PodRef`]s holding it (namespace, pod name, container;
//! PodResources carries no pod UID), under one of these device ids:
//!
//! - Device plugin resources named in [`Config::resource_names`] (by default
//!   `nvidia.com/gpu`, `nvidia.com/gpu.shared` and `nvidia.com/mig-*`): the id as the plugin
//!   advertises it, a GPU UUID `GPU-…` or MIG UUID `MIG-…`. Time-slicing and MPS replicas
//!   are `<uuid>::<n>`; the suffix is dropped so the id is the UUID NVML reports. An id that
//!   is a GPU index (`0`) or MIG index (`<gpu>:<mig>`, the MIG device's NVML handle index on
//!   that GPU) is kept as it is and matched by the gpu receiver against each device's NVML
//!   index ([`index_id`], [`mig_index_id`]). The NVIDIA device plugin advertises UUIDs
//!   whatever its `deviceIDStrategy` (that option only changes what the container runtime is
//!   given), so index ids come from other plugins only.
//! - DRA ([`NVIDIA_DRA_DRIVER`] `gpu.nvidia.com`, NVIDIA's DRA driver): a full GPU is the
//!   device `gpu-<minor>`, `<minor>` being the GPU's device minor number (`/dev/nvidia<minor>`,
//!   NVML's minor number, not its index); its id is [`dra_gpu_id`], matched by the gpu
//!   receiver against each GPU's minor number. The driver names MIG devices by profile id
//!   and placement (`gpu-0-mig-1g10gb-19-0`, older `gpu-0-mig-19-0-1`), which the gpu
//!   receiver does not read, and VFIO passthrough GPUs (`gpu-vfio-<n>`) are invisible to the
//!   node's NVML: such devices are left unattributed, with one debug line each. Devices of
//!   other DRA drivers are ignored.
//!
//! Shared devices: a device held by several pods maps to all of them (sorted by namespace and
//! name); the gpu receiver then attributes its data to none of them alone (see
//! [`hpcotel_core::semconv::HPCOTEL_GPU_PODS`]). A device held by two containers of the same
//! pod maps to the pod with no container.
//!
//! [`list_allocations`] makes one call; [`Poller`] keeps the node's [`Catalog`] up to date:
//! it calls `List` at start and every [`Config::refresh_interval`], re-dials after any failure
//! (a kubelet restart recreates the socket), and when the kubelet stops answering keeps the
//! last mapping for up to [`STALE_AFTER_INTERVALS`] refresh intervals, then clears it: a stale
//! allocation would attribute a GPU to a pod that may have left the node, which is worse than
//! attributing it to none.
//!
//! [`Catalog`]: hpcotel_core::Catalog

mod config;
mod poller;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hpcotel_core::PodRef;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

pub use config::{
    Config, DEFAULT_ENDPOINT, DEFAULT_REFRESH_INTERVAL, DEFAULT_RESOURCE_NAMES, DEFAULT_TIMEOUT,
};
pub use poller::{Poller, STALE_AFTER_INTERVALS};

/// The code generated from the vendored `k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`.
#[allow(missing_docs, clippy::all)]
mod pb {
    tonic::include_proto!("v1");
}

use pb::pod_resources_lister_client::PodResourcesListerClient;

type Client = PodResourcesListerClient<Channel>;

/// Largest `List` answer accepted: 16 MiB, what the kubelet's own client allows (a node with
/// hundreds of pods exceeds tonic's 4 MiB default).
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Why the kubelet's PodResources could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No socket file at the configured path: not a Kubernetes node, the kubelet is not
    /// running (or restarting), or the directory is not mounted into this pod.
    #[error("no kubelet PodResources socket at {}", path.display())]
    NoSocket {
        /// The configured socket path.
        path: PathBuf,
    },
    /// The socket exists but no gRPC connection could be made (permission denied, connection
    /// refused, …).
    #[error("cannot connect to kubelet PodResources socket {}", path.display())]
    Connect {
        /// The configured socket path.
        path: PathBuf,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The kubelet answered `List` with an error.
    #[error("kubelet PodResources List on {} failed", path.display())]
    List {
        /// The configured socket path.
        path: PathBuf,
        /// The gRPC status.
        #[source]
        source: tonic::Status,
    },
    /// Connecting and `List` together took longer than [`Config::timeout`].
    #[error("kubelet PodResources List on {} timed out after {timeout:?}", path.display())]
    Timeout {
        /// The configured socket path.
        path: PathBuf,
        /// The limit that was reached.
        timeout: Duration,
    },
}

/// `Result` with the PodResources client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The DRA driver name of NVIDIA's GPU DRA driver.
pub const NVIDIA_DRA_DRIVER: &str = "gpu.nvidia.com";

/// Device id → the pods holding it, sorted by namespace and name (see the module docs).
pub type Allocations = HashMap<String, Vec<PodRef>>;

/// The device id of the GPU with NVML index `index`, as an index-strategy device plugin
/// advertises it: `3`.
pub fn index_id(index: u32) -> String {
    index.to_string()
}

/// The device id of the MIG device at NVML handle index `mig` on GPU `gpu`: `3:1`.
pub fn mig_index_id(gpu: u32, mig: u32) -> String {
    format!("{gpu}:{mig}")
}

/// The device id of the full GPU with device minor number `minor` allocated through
/// [`NVIDIA_DRA_DRIVER`]: `gpu.nvidia.com/gpu-3`.
pub fn dra_gpu_id(minor: u32) -> String {
    format!("{NVIDIA_DRA_DRIVER}/gpu-{minor}")
}

/// Adds `holder` to the holders of one device: a pod already there through another
/// container keeps the pod and forgets the container; the list stays sorted by namespace and
/// name.
pub fn add_holder(holders: &mut Vec<PodRef>, holder: PodRef) {
    match holders
        .binary_search_by(|p| (&p.namespace, &p.name).cmp(&(&holder.namespace, &holder.name)))
    {
        Ok(i) => {
            let prev = &mut holders[i];
            if prev.container != holder.container {
                // Two containers of one pod: the pod is known, the container is not.
                prev.container = None;
            }
            if prev.uid.is_none() {
                prev.uid = holder.uid;
            }
        }
        Err(i) => holders.insert(i, holder),
    }
}

/// Asks the kubelet once (a fresh connection) which pods hold which GPU: device id → pods
/// (see the module docs for the ids).
pub async fn list_allocations(config: &Config) -> Result<Allocations> {
    let listed = fetch(&mut None, config).await?;
    for device in &listed.unmapped {
        tracing::debug!(%device, "DRA GPU device cannot be matched to an NVML device; left unattributed");
    }
    Ok(listed.devices)
}

/// What one `List` answer says.
#[derive(Debug, Default)]
struct Listed {
    /// The GPUs and MIG devices found.
    devices: Allocations,
    /// DRA devices of [`NVIDIA_DRA_DRIVER`] that cannot be matched to an NVML device, as
    /// `<driver>/<pool>/<device>`.
    unmapped: BTreeSet<String>,
}

/// Lists through `client`, dialing first when there is none; after a failure the client is
/// dropped so the next call dials again (the kubelet may have recreated its socket).
async fn fetch(client: &mut Option<Client>, config: &Config) -> Result<Listed> {
    let path = &config.endpoint;
    let call = async {
        let c = match client {
            Some(c) => c,
            None => client.insert(dial(path).await?),
        };
        let response = c
            .list(pb::ListPodResourcesRequest {})
            .await
            .map_err(|source| {
                // The channel re-dials a lost connection itself; a socket gone by then is
                // reported like one missing at the first dial.
                if is_not_found(&source) {
                    Error::NoSocket { path: path.clone() }
                } else {
                    Error::List {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
        Ok(allocations(config, response.into_inner()))
    };
    let result = match tokio::time::timeout(config.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            path: path.clone(),
            timeout: config.timeout,
        }),
    };
    if result.is_err() {
        *client = None;
    }
    result
}

async fn dial(path: &Path) -> Result<Client> {
    let socket = path.to_path_buf();
    let connector = tower::service_fn(move |_: http::Uri| {
        let socket = socket.clone();
        async move { UnixStream::connect(socket).await.map(TokioIo::new) }
    });
    // HTTP/2 needs an authority; it is never resolved: the connector dials the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|source| {
            if is_not_found(&source) {
                Error::NoSocket {
                    path: path.to_path_buf(),
                }
            } else {
                Error::Connect {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    Ok(PodResourcesListerClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE))
}

/// Whether connecting failed because the socket file does not exist.
fn is_not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::NotFound;
        }
        cur = err.source();
    }
    false
}

/// Device id → pods for the configured resources and NVIDIA DRA GPUs; see the module docs.
fn allocations(config: &Config, response: pb::ListPodResourcesResponse) -> Listed {
    let mut listed = Listed::default();
    for pod in response.pod_resources {
        for container in pod.containers {
            let plugin_ids = container
                .devices
                .iter()
                .filter(|d| config.matches(&d.resource_name))
                .flat_map(|d| &d.device_ids)
                .map(|id| device_key(id).to_owned());
            let dra_ids = container
                .dynamic_resources
                .iter()
                .flat_map(|claim| &claim.claim_resources)
                .filter(|r| r.driver_name == NVIDIA_DRA_DRIVER)
                .filter_map(|r| match dra_minor(&r.device_name) {
                    Some(minor) => Some(dra_gpu_id(minor)),
                    None => {
                        listed.unmapped.insert(format!(
                            "{}/{}/{}",
                            r.driver_name, r.pool_name, r.device_name
                        ));
                        None
                    }
                })
                .collect::<Vec<_>>();
            for device in plugin_ids.chain(dra_ids) {
                let holder = PodRef {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    container: Some(container.name.clone()),
                    uid: None,
                };
                add_holder(listed.devices.entry(device).or_default(), holder);
            }
        }
    }
    listed
}

/// The device UUID (or index) of a device plugin id: `GPU-x::3` (a time-slicing / MPS
/// replica) → `GPU-x`.
fn device_key(id: &str) -> &str {
    match id.rsplit_once("::") {
        Some((uuid, replica))
            if !replica.is_empty() && replica.bytes().all(|b| b.is_ascii_digit()) =>
        {
            uuid
        }
        _ => id,
    }
}

/// The minor number in an NVIDIA DRA full-GPU device name: `gpu-3` → 3. `None` for MIG
/// (`gpu-3-mig-…`), VFIO (`gpu-vfio-3`) and any other name.
fn dra_minor(device_name: &str) -> Option<u32> {
    let n = device_name.strip_prefix("gpu-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// An error and its sources on one line, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}
