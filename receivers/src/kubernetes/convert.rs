//! API objects → the Catalog's types. Only what correlation reads is kept; nothing of the
//! raw objects (and so none of their `managedFields`) is cached.

use std::collections::BTreeMap;

use hpcotel_core::PodRef;
use hpcotel_core::catalog::{
    ArgoApp, DeployEntry, INSTANCE_LABEL, ObjectRef, PodMeta, SyncOperation,
    TRACKING_ID_ANNOTATION, Workload,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::DynamicObject;
use serde_json::Value;

/// Annotation prefix of resource attributes set on pods (OpenTelemetry convention).
pub const RESOURCE_ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";
/// Label carrying a workload's version (`service.version` fallback).
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

fn unix_nanos(t: &Time) -> Option<u64> {
    u64::try_from(t.0.as_nanosecond()).ok()
}

/// Parses an RFC 3339 time as the API serves it (`2026-11-25T06:00:00Z`).
pub fn rfc3339_nanos(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// The controller owner (or the first owner when none is marked controller).
pub fn controller(meta: &ObjectMeta) -> Option<ObjectRef> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
        .map(|o: &OwnerReference| ObjectRef {
            kind: o.kind.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        })
}

fn kept(
    map: Option<&BTreeMap<String, String>>,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    map.map(|m| {
        m.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// A pod as the Catalog keeps it; `None` without a UID.
pub fn pod_meta(pod: &Pod) -> Option<PodMeta> {
    let meta = &pod.metadata;
    let uid = meta.uid.clone()?;
    Some(PodMeta {
        pod: PodRef {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            container: None,
            uid: Some(uid),
        },
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|_| {
                // Host-network pods share the node's IP: it identifies no single pod.
                !pod.spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false)
            }),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        owner: controller(meta),
        created_unix_nano: meta.creation_timestamp.as_ref().and_then(unix_nanos),
        annotations: kept(meta.annotations.as_ref(), |k| {
            k.starts_with(RESOURCE_ANNOTATION_PREFIX) || k == TRACKING_ID_ANNOTATION
        }),
        labels: kept(meta.labels.as_ref(), |k| {
            k == INSTANCE_LABEL || k == VERSION_LABEL
        }),
    })
}

/// A workload (any kind) as the Catalog keeps it.
pub fn workload(obj: &DynamicObject, kind: &str) -> Workload {
    let meta = &obj.metadata;
    Workload {
        object: ObjectRef {
            kind: kind.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        },
        owner: controller(meta),
        created_unix_nano: meta.creation_timestamp.as_ref().and_then(unix_nanos),
        tracking_id: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRACKING_ID_ANNOTATION).cloned()),
        instance_label: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(INSTANCE_LABEL).cloned()),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The revision of a sync or history entry: `revision`, else the first of `revisions[]`
/// (multi-source Applications).
fn revision_of(v: &Value) -> Option<String> {
    v.get("revision")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| v.get("revisions")?.get(0)?.as_str())
        .map(str::to_owned)
}

/// An Argo CD Application (`argoproj.io/v1alpha1`) as the Catalog keeps it.
pub fn argo_app(obj: &DynamicObject, environment_label: Option<&str>) -> ArgoApp {
    let meta = &obj.metadata;
    let data = &obj.data;
    let repo_url = str_at(data, &["spec", "source", "repoURL"])
        .or_else(|| {
            data.get("spec")?
                .get("sources")?
                .get(0)?
                .get("repoURL")?
                .as_str()
        })
        .map(str::to_owned);
    let history = data
        .get("status")
        .and_then(|s| s.get("history"))
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|h| {
                    Some(DeployEntry {
                        id: h.get("id").and_then(Value::as_i64).unwrap_or_default(),
                        revision: revision_of(h)?,
                        deploy_started_unix_nano: h
                            .get("deployStartedAt")
                            .and_then(Value::as_str)
                            .and_then(rfc3339_nanos),
                        deployed_unix_nano: rfc3339_nanos(h.get("deployedAt")?.as_str()?)?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    ArgoApp {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        repo_url,
        sync_revision: data
            .get("status")
            .and_then(|s| s.get("sync"))
            .and_then(revision_of),
        history,
        environment: environment_label.and_then(|l| meta.labels.as_ref()?.get(l).cloned()),
        destination_namespace: str_at(data, &["spec", "destination", "namespace"])
            .map(str::to_owned),
        operation: super::rollout::operation(obj).map(|op| SyncOperation {
            failed: op.failed(),
            revision: op.revision,
            started_unix_nano: op.started_unix_nano,
            finished_unix_nano: op.finished_unix_nano,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_application_in_argo_cd_s_shape() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "train", "namespace": "argocd", "uid": "u1", "labels": {"env": "prod"}},
            "spec": {"sources": [{"repoURL": "https://git.example.com/ml.git"}]},
            "status": {
                "sync": {"status": "Synced", "revisions": ["b0b"]},
                "history": [
                    {"id": 1, "revision": "a1a", "deployStartedAt": "2026-11-25T06:00:00Z", "deployedAt": "2026-11-25T06:00:10Z"},
                    {"id": 2, "revisions": ["b0b"], "deployedAt": "2026-11-25T07:00:10Z"},
                    {"id": 3, "deployedAt": "2026-11-25T07:00:10Z"}
                ]
            }
        }))
        .unwrap();
        let app = argo_app(&obj, Some("env"));
        assert_eq!(
            app.repo_url.as_deref(),
            Some("https://git.example.com/ml.git")
        );
        assert_eq!(app.sync_revision.as_deref(), Some("b0b"));
        assert_eq!(app.environment.as_deref(), Some("prod"));
        assert_eq!(
            app.history.len(),
            2,
            "the entry without a revision is skipped"
        );
        assert_eq!(app.history[0].revision, "a1a");
        assert_eq!(
            app.history[0].deployed_unix_nano - app.history[0].deploy_started_unix_nano.unwrap(),
            10_000_000_000
        );
        assert_eq!(app.history[1].deploy_started_unix_nano, None);
    }
}
