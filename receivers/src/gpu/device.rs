//! What identifies a GPU or MIG instance in every signal: its `hw.*` attributes and the
//! resource (host, and the pods it is allocated to).
//!
//! Attribution ([`holders_of`], [`resource`]): a device's data carries the pod that holds it
//! (`k8s.namespace.name`, `k8s.pod.name`, and where known `k8s.container.name` and
//! `k8s.pod.uid`) only when exactly one pod does. A device several pods hold (time-slicing or
//! MPS replicas, a shared DRA claim) is nobody's alone: its resource carries no `k8s.pod.*`
//! attribute but [`semconv::HPCOTEL_GPU_SHARED`] = `true` and [`semconv::HPCOTEL_GPU_PODS`] =
//! every holder as `namespace/pod`, sorted. Its data is not repeated per pod: power,
//! utilization and memory are the physical device's, and a copy per pod would count them
//! once per pod in any sum by namespace. What each pod uses of a shared GPU is in the
//! per-process metrics, which carry the process's own pod from its cgroup.

use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use hpcotel_core::{PodRef, catalog};
use nvml_wrapper::Device;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::podresources;

/// `hw.vendor` of every device NVML reports.
pub const VENDOR: &str = "NVIDIA";

/// A MIG instance's place on its GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigIdentity {
    /// The parent GPU's UUID (`hw.parent`).
    pub parent_uuid: String,
    /// Position among the parent's MIG devices.
    pub position: u32,
    /// Profile (`1g.10gb`), from the MIG device name.
    pub profile: String,
    /// GPU instance id, where NVML tells it.
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id, where NVML tells it.
    pub compute_instance_id: Option<u32>,
}

/// A GPU's or MIG instance's identity, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `hw.id`: UUID (`GPU-…` or `MIG-…`).
    pub uuid: String,
    /// `hw.model`: product name.
    pub model: String,
    /// NVML index of the physical GPU.
    pub index: u32,
    /// Device minor number (`/dev/nvidia<minor>`) of a physical GPU, where NVML tells it;
    /// `None` on MIG instances. How NVIDIA's DRA driver names GPUs (`gpu-<minor>`).
    pub minor: Option<u32>,
    /// PCI bus id of the physical GPU.
    pub pci_bus_id: String,
    /// Board serial number, where reported.
    pub serial: Option<String>,
    /// Set on MIG instances.
    pub mig: Option<MigIdentity>,
}

impl Identity {
    /// Reads a physical GPU's identity.
    pub fn read(
        device: &Device<'_>,
        index: u32,
    ) -> Result<Identity, nvml_wrapper::error::NvmlError> {
        Ok(Identity {
            uuid: device.uuid()?,
            model: device.name()?,
            index,
            minor: device.minor_number().ok(),
            pci_bus_id: device.pci_info().map(|p| p.bus_id).unwrap_or_default(),
            serial: device.serial().ok().filter(|s| !s.is_empty()),
            mig: None,
        })
    }

    /// The placeholder of a GPU NVML cannot identify (lost before its UUID was read):
    /// `hw.id` = `hw.name` = `gpu<index>`, model `unknown`.
    pub fn unidentified(index: u32) -> Identity {
        Identity {
            uuid: format!("gpu{index}"),
            model: "unknown".to_owned(),
            index,
            minor: None,
            pci_bus_id: String::new(),
            serial: None,
            mig: None,
        }
    }

    /// `hw.name`: `gpu<index>`, or `gpu<index>/mig<position>`.
    pub fn hw_name(&self) -> String {
        match &self.mig {
            Some(m) => format!("gpu{}/mig{}", self.index, m.position),
            None => format!("gpu{}", self.index),
        }
    }

    /// The attributes every GPU data point and event carries.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut a = vec![
            kv(semconv::HW_ID, self.uuid.clone()),
            kv(semconv::HW_NAME, self.hw_name()),
            kv(semconv::HW_TYPE, "gpu"),
            kv(semconv::HW_VENDOR, VENDOR),
            kv(semconv::HW_MODEL, self.model.clone()),
            kv_int(semconv::HPCOTEL_GPU_INDEX, i64::from(self.index)),
        ];
        if !self.pci_bus_id.is_empty() {
            a.push(kv(semconv::HPCOTEL_GPU_PCI_BUS_ID, self.pci_bus_id.clone()));
        }
        if let Some(m) = &self.mig {
            a.push(kv(semconv::HW_PARENT, m.parent_uuid.clone()));
            a.push(kv(semconv::HPCOTEL_GPU_MIG_PROFILE, m.profile.clone()));
            if let Some(gi) = m.gpu_instance_id {
                a.push(kv_int(
                    semconv::HPCOTEL_GPU_MIG_GPU_INSTANCE_ID,
                    i64::from(gi),
                ));
            }
            if let Some(ci) = m.compute_instance_id {
                a.push(kv_int(
                    semconv::HPCOTEL_GPU_MIG_COMPUTE_INSTANCE_ID,
                    i64::from(ci),
                ));
            }
        }
        a
    }

    /// The ids kubelet PodResources may know this device by (see
    /// [`podresources`]): its UUID; its index (`3`, MIG `3:1`); for a
    /// physical GPU whose minor number is known, its NVIDIA DRA name.
    pub fn device_ids(&self) -> Vec<String> {
        let mut ids = vec![self.uuid.clone()];
        match &self.mig {
            Some(m) => ids.push(podresources::mig_index_id(self.index, m.position)),
            None => {
                ids.push(podresources::index_id(self.index));
                ids.extend(self.minor.map(podresources::dra_gpu_id));
            }
        }
        ids
    }

    /// `attributes` plus `extra`.
    pub fn with(&self, extra: impl IntoIterator<Item = KeyValue>) -> Vec<KeyValue> {
        let mut a = self.attributes();
        a.extend(extra);
        a
    }
}

/// The MIG profile in a MIG device name (`NVIDIA A100-SXM4-40GB MIG 1g.5gb` → `1g.5gb`).
pub fn mig_profile(name: &str) -> String {
    name.rsplit_once("MIG ")
        .map(|(_, p)| p.trim().to_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// The resource of a device's signals: the host, and the pods the device is allocated to
/// (see the module docs: one holder → its `k8s.*` attributes; several → none of those, but
/// `hpcotel.gpu.shared` and `hpcotel.gpu.pods`).
pub fn resource(host: &[KeyValue], holders: &[PodRef]) -> Resource {
    let mut attributes = host.to_vec();
    match holders {
        [] => {}
        [pod] => attributes.extend(pod_attributes(pod)),
        several => attributes.extend(shared_attributes(several)),
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// `k8s.namespace.name`, `k8s.pod.name`, and where known `k8s.container.name`, `k8s.pod.uid`.
pub fn pod_attributes(p: &PodRef) -> Vec<KeyValue> {
    let mut a = vec![
        kv(semconv::K8S_NAMESPACE_NAME, p.namespace.clone()),
        kv(semconv::K8S_POD_NAME, p.name.clone()),
    ];
    if let Some(c) = &p.container {
        a.push(kv(semconv::K8S_CONTAINER_NAME, c.clone()));
    }
    if let Some(u) = &p.uid {
        a.push(kv(semconv::K8S_POD_UID, u.clone()));
    }
    a
}

/// `hpcotel.gpu.shared` = `true` and `hpcotel.gpu.pods` = `["namespace/pod", …]` (sorted,
/// each pod once).
pub fn shared_attributes(holders: &[PodRef]) -> Vec<KeyValue> {
    let mut pods: Vec<String> = holders
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    pods.sort();
    pods.dedup();
    let values = pods
        .into_iter()
        .map(|p| AnyValue {
            value: Some(any_value::Value::StringValue(p)),
        })
        .collect();
    vec![
        KeyValue {
            key: semconv::HPCOTEL_GPU_SHARED.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        },
        KeyValue {
            key: semconv::HPCOTEL_GPU_PODS.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            }),
            ..Default::default()
        },
    ]
}

/// Every pod `snapshot` says holds the device `identity`, under any of its
/// [`Identity::device_ids`], sorted by namespace and name.
pub fn holders_of(snapshot: &catalog::Snapshot, identity: &Identity) -> Vec<PodRef> {
    let mut holders = Vec::new();
    for id in identity.device_ids() {
        for pod in snapshot.pods_for_device(&id) {
            podresources::add_holder(&mut holders, pod);
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profile_comes_from_the_device_name() {
        assert_eq!(mig_profile("NVIDIA A100-SXM4-40GB MIG 1g.5gb"), "1g.5gb");
        assert_eq!(mig_profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb"), "3g.40gb");
        assert_eq!(mig_profile("odd"), "odd");
    }
}
