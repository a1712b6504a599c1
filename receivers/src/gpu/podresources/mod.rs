//! kubelet PodResources v1 client: which pod (and container) holds which GPU.
//!
//! The kubelet serves the `v1.PodResourcesLister` gRPC service on a Unix socket
//! ([`Config::endpoint`]); its `List` answer names, per container, the device ids of every
//! extended resource allocated to it. For the resources named in [`Config::resource_names`]
//! (by default `nvidia.com/gpu` and `nvidia.com/mig-*`) each device id — a GPU UUID `GPU-…`
//! or MIG UUID `MIG-…` with the NVIDIA device plugin's default `deviceIDStrategy: uuid` — is
//! mapped to a [`PodRef`] with namespace, pod name and container name (PodResources carries
//! no pod UID).
//!
//! Shared GPUs: the NVIDIA device plugin's time-slicing and MPS replicas are reported as
//! `<uuid>::<n>`; the suffix is dropped so the key is the UUID NVML reports. A device held by
//! more than one pod is left out of the mapping (its data cannot be attributed to one pod);
//! one held by two containers of the same pod maps to the pod with no container.
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

use std::collections::HashMap;
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

/// Asks the kubelet once (a fresh connection) which pod holds which GPU: device id (`GPU-…`,
/// `MIG-…`) → pod, for the resources in [`Config::resource_names`].
pub async fn list_allocations(config: &Config) -> Result<HashMap<String, PodRef>> {
    fetch(&mut None, config).await
}

/// Lists through `client`, dialing first when there is none; after a failure the client is
/// dropped so the next call dials again (the kubelet may have recreated its socket).
async fn fetch(client: &mut Option<Client>, config: &Config) -> Result<HashMap<String, PodRef>> {
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

/// Device id → pod for the configured resources; see the module docs for shared devices.
fn allocations(config: &Config, response: pb::ListPodResourcesResponse) -> HashMap<String, PodRef> {
    // `None`: held by several pods.
    let mut claims: HashMap<String, Option<PodRef>> = HashMap::new();
    for pod in response.pod_resources {
        for container in pod.containers {
            let devices = container
                .devices
                .iter()
                .filter(|d| config.matches(&d.resource_name))
                .flat_map(|d| &d.device_ids);
            for id in devices {
                let holder = PodRef {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    container: Some(container.name.clone()),
                    uid: None,
                };
                let device = device_key(id);
                let claim = claims
                    .entry(device.to_string())
                    .or_insert(Some(holder.clone()));
                match claim {
                    Some(prev)
                        if !(prev.namespace == holder.namespace && prev.name == holder.name) =>
                    {
                        tracing::debug!(%device, "GPU shared by several pods; left unattributed");
                        *claim = None;
                    }
                    // Two containers of one pod: the pod is known, the container is not.
                    Some(prev) if prev.container != holder.container => prev.container = None,
                    _ => {}
                }
            }
        }
    }
    claims
        .into_iter()
        .filter_map(|(id, pod)| Some((id, pod?)))
        .collect()
}

/// The device UUID of a device plugin id: `GPU-x::3` (a time-slicing / MPS replica) → `GPU-x`.
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
