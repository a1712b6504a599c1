//! Pod identity from the connection: the node agent knows which pod owns each source
//! address on its node (the Catalog's pod IPs: running, non-host-network pods), so data
//! that arrives from a pod carries that pod's `k8s.pod.uid`, `k8s.pod.name` and
//! `k8s.namespace.name`, whatever it claims. A pod cannot speak for another.
//!
//! Each resource gets `hpcotel.identity.source`: `connection` when the peer is a pod of
//! this node (its identity set from the Catalog), `attributes` when it is not (the data's
//! claim stands, unverified: a host-network pod, a process on the node, a client whose
//! address a CNI rewrote). Nothing is stamped while the Catalog knows no pods (no
//! `kubernetes` receiver: hpcotel off Kubernetes). A client's own `hpcotel.identity.source`
//! is always replaced.

use std::net::IpAddr;

use hpcotel_core::catalog::{PodMeta, Snapshot};
use hpcotel_core::proto::common::v1::KeyValue;
use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::{Batch, semconv};

use super::config::{Identity, IdentitySource, OnConflict};

/// `hpcotel.identity.source` when the connection's pod set the identity.
pub(super) const FROM_CONNECTION: &str = "connection";
/// `hpcotel.identity.source` when the data's own claim stands.
pub(super) const FROM_ATTRIBUTES: &str = "attributes";

/// What [`apply`] did to a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Applied {
    /// Items whose claimed pod was replaced by the connection's.
    pub corrected: u64,
    /// Items refused because their claimed pod was not the connection's.
    pub refused: u64,
    /// The first conflict, for the log: (claimed, actual) as `namespace/name`.
    pub example: Option<(String, String)>,
}

/// Sets the identity of every resource of `batch` from the connection's `peer`, per `cfg`.
pub(super) fn apply(
    batch: &mut Batch,
    snapshot: &Snapshot,
    peer: IpAddr,
    cfg: &Identity,
) -> Applied {
    let mut applied = Applied::default();
    if snapshot.pods.is_empty() {
        return applied;
    }
    let pod = match cfg.source {
        IdentitySource::Attributes => None,
        IdentitySource::Connection => snapshot
            .pods_by_ip
            .get(&peer.to_canonical().to_string())
            .and_then(|uid| Some((uid.as_str(), snapshot.pods.get(uid)?))),
    };
    let mut resource = |r: &mut Option<Resource>, items: u64| -> bool {
        let attrs = &mut r.get_or_insert_with(Resource::default).attributes;
        attrs.retain(|kv| kv.key != semconv::HPCOTEL_IDENTITY_SOURCE);
        let Some((uid, meta)) = pod else {
            attrs.push(string(semconv::HPCOTEL_IDENTITY_SOURCE, FROM_ATTRIBUTES));
            return true;
        };
        if let Some(claimed) = conflict(attrs, uid, meta) {
            if applied.example.is_none() {
                applied.example =
                    Some((claimed, format!("{}/{}", meta.pod.namespace, meta.pod.name)));
            }
            if cfg.on_conflict == OnConflict::Refuse {
                applied.refused += items;
                return false;
            }
            applied.corrected += items;
        }
        for (key, value) in [
            (semconv::K8S_POD_UID, uid),
            (semconv::K8S_POD_NAME, meta.pod.name.as_str()),
            (semconv::K8S_NAMESPACE_NAME, meta.pod.namespace.as_str()),
            (semconv::HPCOTEL_IDENTITY_SOURCE, FROM_CONNECTION),
        ] {
            set(attrs, key, value);
        }
        true
    };
    match batch {
        Batch::Raw(raw) => raw.resources.retain_mut(|r| {
            let n = r.item_count() as u64;
            resource(&mut r.resource, n)
        }),
        Batch::Traces(rs) => rs.retain_mut(|r| {
            let n = r.scope_spans.iter().map(|s| s.spans.len() as u64).sum();
            resource(&mut r.resource, n)
        }),
        Batch::Metrics(rs) => rs.retain_mut(|r| {
            let n = r
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(|m| hpcotel_core::metric_point_count(m) as u64)
                .sum();
            resource(&mut r.resource, n)
        }),
        Batch::Logs(rs) => rs.retain_mut(|r| {
            let n = r
                .scope_logs
                .iter()
                .map(|s| s.log_records.len() as u64)
                .sum();
            resource(&mut r.resource, n)
        }),
    }
    applied
}

/// The pod `attrs` claim (`namespace/name`, or the UID) when it is not `uid`/`meta`.
fn conflict(attrs: &[KeyValue], uid: &str, meta: &PodMeta) -> Option<String> {
    let claim = |key: &str| hpcotel_core::telemetry::attr_str(attrs, key).filter(|v| !v.is_empty());
    let (c_uid, c_name, c_ns) = (
        claim(semconv::K8S_POD_UID),
        claim(semconv::K8S_POD_NAME),
        claim(semconv::K8S_NAMESPACE_NAME),
    );
    let wrong = c_uid.is_some_and(|v| v != uid)
        || c_name.is_some_and(|v| v != meta.pod.name)
        || c_ns.is_some_and(|v| v != meta.pod.namespace);
    wrong.then(|| match (c_ns, c_name, c_uid) {
        (ns, Some(name), _) => format!("{}/{name}", ns.unwrap_or(&meta.pod.namespace)),
        (Some(ns), None, _) => format!("{ns}/{}", meta.pod.name),
        (None, None, uid) => format!("uid {}", uid.unwrap_or_default()),
    })
}

fn string(key: &str, value: &str) -> KeyValue {
    hpcotel_core::telemetry::kv(key, value)
}

/// Sets `key` to `value`, replacing every existing entry of that key.
fn set(attrs: &mut Vec<KeyValue>, key: &str, value: &str) {
    attrs.retain(|kv| kv.key != key);
    attrs.push(string(key, value));
}
