//! The metadata Catalog: what this node knows about pods and GPUs, shared between the
//! receivers that learn it and the processors that attach it to signals.
//!
//! Writers (the gpu receiver's PodResources poller; later the kubernetes receiver) replace
//! whole sections copy-on-write; readers take a [`Snapshot`] — an `Arc`, so a lookup never
//! holds a lock and never waits on a writer for longer than one pointer swap.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A pod (and, where known, the container in it) that data can be attributed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PodRef {
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name`.
    pub name: String,
    /// `k8s.container.name`, when the source names the container.
    pub container: Option<String>,
    /// `k8s.pod.uid`, when the source knows it (PodResources does not; cgroups and the API
    /// server do).
    pub uid: Option<String>,
}

/// One consistent view of the Catalog.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Device id (GPU UUID `GPU-…` or MIG UUID `MIG-…`) → the pod it is allocated to, from
    /// kubelet PodResources.
    pub gpu_allocations: HashMap<String, PodRef>,
    /// Pod UID → pod, from whichever source knows pod UIDs.
    pub pods_by_uid: HashMap<String, PodRef>,
}

impl Snapshot {
    /// The pod a GPU or MIG device is allocated to, with its UID filled in when another
    /// section of the Catalog knows it.
    pub fn pod_for_device(&self, device_id: &str) -> Option<PodRef> {
        let mut pod = self.gpu_allocations.get(device_id)?.clone();
        if pod.uid.is_none() {
            pod.uid = self
                .pods_by_uid
                .iter()
                .find(|(_, p)| p.namespace == pod.namespace && p.name == pod.name)
                .map(|(uid, _)| uid.clone());
        }
        Some(pod)
    }
}

/// A cheap, cloneable handle on the node's Catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    inner: Arc<RwLock<Arc<Snapshot>>>,
}

impl Catalog {
    /// An empty Catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current view. Cheap (one `Arc` clone); the view does not change under the reader.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A writer that panicked mid-update cannot leave a torn snapshot (updates swap whole
        // Arcs), so a poisoned lock still holds a consistent value.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies `edit` to a copy of the current view and publishes it.
    pub fn update(&self, edit: impl FnOnce(&mut Snapshot)) {
        let mut guard = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Snapshot::clone(&guard);
        edit(&mut next);
        *guard = Arc::new(next);
    }

    /// Replaces the GPU allocation section (device id → pod) wholesale.
    pub fn set_gpu_allocations(&self, allocations: HashMap<String, PodRef>) {
        self.update(|s| s.gpu_allocations = allocations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_their_view_while_writers_publish_new_ones() {
        let catalog = Catalog::new();
        let pod = PodRef {
            namespace: "ml".into(),
            name: "trainer-0".into(),
            container: Some("main".into()),
            uid: None,
        };
        catalog.set_gpu_allocations(HashMap::from([("GPU-1".to_string(), pod.clone())]));
        let before = catalog.snapshot();
        catalog.update(|s| {
            s.pods_by_uid.insert("uid-1".into(), pod.clone());
        });
        assert!(before.pods_by_uid.is_empty(), "an old view does not change");
        let found = catalog.snapshot().pod_for_device("GPU-1").unwrap();
        assert_eq!(found.uid.as_deref(), Some("uid-1"));
        assert_eq!(found.container.as_deref(), Some("main"));
        assert!(catalog.snapshot().pod_for_device("GPU-2").is_none());
    }
}
