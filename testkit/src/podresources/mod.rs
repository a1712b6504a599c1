//! A fake kubelet PodResources server: the real `v1.PodResourcesLister` gRPC service (built
//! from the same vendored `api.proto` as the receivers' client) on a Unix socket, answering
//! from a scripted set of pods.
//!
//! - `List`: every [`FakePod`] with its containers, their device-plugin devices (any ids:
//!   UUIDs, time-slicing replicas `<uuid>::<n>`, indices; one device may be listed in several
//!   pods) and their DRA claims (`dynamic_resources`);
//! - `GetAllocatableResources`: the devices of all pods, grouped by resource name (the fake
//!   knows no device that is not allocated);
//! - `Get`: one pod by namespace and name, `NOT_FOUND` otherwise.
//!
//! Like the kubelet, [`FakeKubelet::start`] replaces a socket file left at the path and
//! [`FakeKubelet::stop`] removes it, so stopping one fake and starting another on the same
//! path reproduces a kubelet restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Request, Response, Status};

/// The code generated from the vendored `k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`
/// (server and client), for tests that talk to a [`FakeKubelet`] directly.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("v1");
}

use proto::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};

/// The extended resource name of whole NVIDIA GPUs.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
/// The extended resource name of time-slicing / MPS replicas of NVIDIA GPUs under the device
/// plugin's `renameByDefault: true`.
pub const NVIDIA_GPU_SHARED: &str = "nvidia.com/gpu.shared";
/// The driver name of NVIDIA's GPU DRA driver.
pub const NVIDIA_DRA_DRIVER: &str = "gpu.nvidia.com";

/// A pod as the kubelet reports it in PodResources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakePod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Containers, in order.
    pub containers: Vec<FakeContainer>,
}

/// A container and the devices allocated to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeContainer {
    /// Container name.
    pub name: String,
    /// `(resource_name, device_ids)` pairs, e.g. `("nvidia.com/gpu", ["GPU-…"])`.
    pub devices: Vec<(String, Vec<String>)>,
    /// DRA claims the container uses (`ContainerResources.dynamic_resources`).
    pub claims: Vec<FakeClaim>,
}

/// A DRA ResourceClaim as a container sees it in PodResources (`DynamicResource`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeClaim {
    /// `claim_name`.
    pub name: String,
    /// `claim_namespace`.
    pub namespace: String,
    /// `claim_resources`: the devices allocated to the claim.
    pub devices: Vec<FakeClaimDevice>,
}

/// One device of a DRA claim (`ClaimResource`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeClaimDevice {
    /// `driver_name`, e.g. [`NVIDIA_DRA_DRIVER`].
    pub driver: String,
    /// `pool_name` (NVIDIA's driver: the node name).
    pub pool: String,
    /// `device_name`, e.g. `gpu-0` or `gpu-0-mig-1g10gb-19-0`.
    pub device: String,
    /// `cdi_devices[].name`, fully qualified CDI device names.
    pub cdi_devices: Vec<String>,
    /// `share_id`, for a device shared between claims (consumable capacity).
    pub share_id: Option<String>,
}

impl FakeClaimDevice {
    /// A device of NVIDIA's DRA driver in pool `node`, with the CDI device name the driver
    /// gives it (`k8s.gpu.nvidia.com/claim=<claim uid>-<device>`).
    pub fn nvidia(node: &str, claim_uid: &str, device: &str) -> Self {
        Self {
            driver: NVIDIA_DRA_DRIVER.to_string(),
            pool: node.to_string(),
            device: device.to_string(),
            cdi_devices: vec![format!("k8s.gpu.nvidia.com/claim={claim_uid}-{device}")],
            share_id: None,
        }
    }
}

impl FakePod {
    /// A pod with one container holding the GPUs `uuids` as `nvidia.com/gpu`.
    pub fn with_gpus(namespace: &str, name: &str, container: &str, uuids: &[&str]) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            containers: vec![FakeContainer {
                name: container.to_string(),
                devices: vec![(
                    NVIDIA_GPU.to_string(),
                    uuids.iter().map(|u| u.to_string()).collect(),
                )],
                claims: Vec::new(),
            }],
        }
    }

    /// A pod with one container holding the device plugin ids `ids` (e.g. replicas
    /// `GPU-…::0`) of the extended resource `resource` (e.g. [`NVIDIA_GPU_SHARED`]).
    pub fn with_devices(
        namespace: &str,
        name: &str,
        container: &str,
        resource: &str,
        ids: &[&str],
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            containers: vec![FakeContainer {
                name: container.to_string(),
                devices: vec![(
                    resource.to_string(),
                    ids.iter().map(|u| u.to_string()).collect(),
                )],
                claims: Vec::new(),
            }],
        }
    }

    /// A pod with one container using the DRA claim `claim` (in the pod's namespace) of
    /// NVIDIA's driver with the devices `devices` (e.g. `gpu-0`) of pool `node`.
    pub fn with_dra_gpus(
        namespace: &str,
        name: &str,
        container: &str,
        node: &str,
        claim: &str,
        devices: &[&str],
    ) -> Self {
        let claim_uid = format!("uid-{claim}");
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            containers: vec![FakeContainer {
                name: container.to_string(),
                devices: Vec::new(),
                claims: vec![FakeClaim {
                    name: claim.to_string(),
                    namespace: namespace.to_string(),
                    devices: devices
                        .iter()
                        .map(|d| FakeClaimDevice::nvidia(node, &claim_uid, d))
                        .collect(),
                }],
            }],
        }
    }

    // `..Default::default()` keeps this compiling when a newer api.proto adds fields.
    #[allow(clippy::needless_update)]
    fn to_proto(&self) -> proto::PodResources {
        proto::PodResources {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            containers: self
                .containers
                .iter()
                .map(|c| proto::ContainerResources {
                    name: c.name.clone(),
                    devices: c
                        .devices
                        .iter()
                        .map(|(resource, ids)| container_devices(resource, ids.clone()))
                        .collect(),
                    dynamic_resources: c.claims.iter().map(FakeClaim::to_proto).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

impl FakeClaim {
    // `..Default::default()` keeps this compiling when a newer api.proto adds fields.
    #[allow(clippy::needless_update)]
    fn to_proto(&self) -> proto::DynamicResource {
        proto::DynamicResource {
            claim_name: self.name.clone(),
            claim_namespace: self.namespace.clone(),
            claim_resources: self
                .devices
                .iter()
                .map(|d| proto::ClaimResource {
                    cdi_devices: d
                        .cdi_devices
                        .iter()
                        .map(|name| proto::CdiDevice { name: name.clone() })
                        .collect(),
                    driver_name: d.driver.clone(),
                    pool_name: d.pool.clone(),
                    device_name: d.device.clone(),
                    share_id: d.share_id.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

fn container_devices(resource_name: &str, device_ids: Vec<String>) -> proto::ContainerDevices {
    proto::ContainerDevices {
        resource_name: resource_name.to_string(),
        device_ids,
        topology: None,
    }
}

#[derive(Debug, Default)]
struct Shared {
    pods: Mutex<Vec<FakePod>>,
    list_calls: AtomicUsize,
    /// When this server instance handled its first `List` call.
    first_list_at: OnceLock<Instant>,
}

impl Shared {
    fn pods(&self) -> Vec<FakePod> {
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl PodResourcesLister for Service {
    async fn list(
        &self,
        _: Request<proto::ListPodResourcesRequest>,
    ) -> Result<Response<proto::ListPodResourcesResponse>, Status> {
        self.0.first_list_at.get_or_init(Instant::now);
        self.0.list_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(proto::ListPodResourcesResponse {
            pod_resources: self.0.pods().iter().map(FakePod::to_proto).collect(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<proto::AllocatableResourcesRequest>,
    ) -> Result<Response<proto::AllocatableResourcesResponse>, Status> {
        let mut by_resource: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pod in self.0.pods() {
            for container in pod.containers {
                for (resource, ids) in container.devices {
                    let all = by_resource.entry(resource).or_default();
                    for id in ids {
                        if !all.contains(&id) {
                            all.push(id);
                        }
                    }
                }
            }
        }
        Ok(Response::new(proto::AllocatableResourcesResponse {
            devices: by_resource
                .into_iter()
                .map(|(resource, ids)| container_devices(&resource, ids))
                .collect(),
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        request: Request<proto::GetPodResourcesRequest>,
    ) -> Result<Response<proto::GetPodResourcesResponse>, Status> {
        let want = request.into_inner();
        self.0
            .pods()
            .iter()
            .find(|p| p.namespace == want.pod_namespace && p.name == want.pod_name)
            .map(|p| {
                Response::new(proto::GetPodResourcesResponse {
                    pod_resources: Some(p.to_proto()),
                })
            })
            .ok_or_else(|| {
                Status::not_found(format!(
                    "pod {} in namespace {} not found",
                    want.pod_name, want.pod_namespace
                ))
            })
    }
}

/// A fake kubelet serving PodResources v1 on a Unix socket; see the [module docs](self).
///
/// Dropping it stops the server but leaves the socket file (like a crashed kubelet);
/// [`FakeKubelet::stop`] also waits for the server and removes the file.
pub struct FakeKubelet {
    shared: Arc<Shared>,
    socket_path: PathBuf,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for FakeKubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKubelet")
            .field("socket_path", &self.socket_path)
            .finish_non_exhaustive()
    }
}

impl FakeKubelet {
    /// Serves `pods` on a Unix socket at `socket_path`, replacing a file already there.
    ///
    /// # Panics
    /// When the socket cannot be bound (it is a test double).
    pub async fn start(socket_path: &Path, pods: Vec<FakePod>) -> FakeKubelet {
        match std::fs::remove_file(socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("FakeKubelet: cannot remove {}: {e}", socket_path.display()),
        }
        let listener = UnixListener::bind(socket_path)
            .unwrap_or_else(|e| panic!("FakeKubelet: cannot bind {}: {e}", socket_path.display()));
        let shared = Arc::new(Shared {
            pods: Mutex::new(pods),
            list_calls: AtomicUsize::new(0),
            first_list_at: OnceLock::new(),
        });
        let shutdown = CancellationToken::new();
        let server = tonic::transport::Server::builder()
            .add_service(PodResourcesListerServer::new(Service(shared.clone())))
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                shutdown.clone().cancelled_owned(),
            );
        let path = socket_path.display().to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::warn!(socket = %path, error = %e, "fake kubelet server failed");
            }
        });
        tracing::debug!(socket = %socket_path.display(), "fake kubelet started");
        FakeKubelet {
            shared,
            socket_path: socket_path.to_path_buf(),
            task,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
        }
    }

    /// The socket path it serves on.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Replaces the pods every later answer is made from.
    pub fn set_pods(&self, pods: Vec<FakePod>) {
        *self
            .shared
            .pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = pods;
    }

    /// How many `List` calls it has answered.
    pub fn list_calls(&self) -> usize {
        self.shared.list_calls.load(Ordering::SeqCst)
    }

    /// When this server instance received its first `List` call (taken as the call is
    /// handled, before the answer is sent); `None` until one arrives. A new
    /// [`FakeKubelet::start`] on the same path starts again from `None`.
    pub fn first_list_at(&self) -> Option<Instant> {
        self.shared.first_list_at.get().copied()
    }

    /// Stops serving (open connections are closed), waits for the server to finish, and
    /// removes the socket file like the kubelet does on exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let task = self.task;
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "fake kubelet server task failed");
        }
        if let Err(e) = std::fs::remove_file(&self.socket_path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.socket_path.display(), error = %e, "cannot remove fake kubelet socket");
        }
    }
}

#[cfg(test)]
mod tests;
