//! API objects → the Catalog's types. Only what correlation and log selection read is kept
//! (a pod's labels, and of its annotations the ones they name); nothing of the raw objects
//! (and so none of their `managedFields`) is cached.

use std::collections::BTreeMap;

use hpcotel_core::PodRef;
use hpcotel_core::catalog::{
    ArgoApp, DeployEntry, HELM_RELEASE_ANNOTATION, INSTALLATION_ID_ANNOTATION, ObjectRef, PodMeta,
    SyncOperation, TRACKING_ID_ANNOTATION, Tracking, Workload, app_instance_name,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::DynamicObject;
use serde_json::Value;

/// Annotation prefix of resource attributes set on pods (OpenTelemetry convention).
pub const RESOURCE_ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";
/// What the Deployment controller writes on a ReplicaSet it reused for a later revision (the
/// revisions it ran before).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Prefix of hpcotel's own pod annotations (`hpcotel.io/logs`, read by the kubernetes_logs
/// receiver's selection).
pub const HPCOTEL_ANNOTATION_PREFIX: &str = "hpcotel.io/";

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

/// A pod as the Catalog keeps it; `None` without a UID. `instance_label_key` is Argo CD's
/// `application.instanceLabelKey`.
pub fn pod_meta(pod: &Pod, instance_label_key: &str) -> Option<PodMeta> {
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
            k.starts_with(RESOURCE_ANNOTATION_PREFIX)
                || k == TRACKING_ID_ANNOTATION
                || k == INSTALLATION_ID_ANNOTATION
                || k == HELM_RELEASE_ANNOTATION
                || k.starts_with(HPCOTEL_ANNOTATION_PREFIX)
        }),
        // Every label (a node's pods only): correlation reads `app.kubernetes.io/version`,
        // the kubernetes_logs receiver's label selectors may name any.
        labels: meta.labels.clone().unwrap_or_default(),
        instance_label: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(instance_label_key).cloned()),
    })
}

/// What an object's metadata says about the Application tracking it.
fn tracking(meta: &ObjectMeta, instance_label_key: &str) -> Tracking {
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k).cloned());
    Tracking {
        tracking_id: annotation(TRACKING_ID_ANNOTATION),
        installation_id: annotation(INSTALLATION_ID_ANNOTATION),
        instance_label: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(instance_label_key).cloned()),
        helm_release: annotation(HELM_RELEASE_ANNOTATION),
    }
}

/// A workload (any kind) as the Catalog keeps it.
pub fn workload(obj: &DynamicObject, kind: &str, instance_label_key: &str) -> Workload {
    let meta = &obj.metadata;
    let group = obj
        .types
        .as_ref()
        .and_then(|t| t.api_version.split_once('/'))
        .map(|(g, _)| g.to_owned())
        .unwrap_or_default();
    Workload {
        object: ObjectRef {
            kind: kind.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        },
        owner: controller(meta),
        created_unix_nano: meta.creation_timestamp.as_ref().and_then(unix_nanos),
        group,
        reused: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REVISION_HISTORY_ANNOTATION)),
        tracking: tracking(meta, instance_label_key),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The revision of a sync, sync result or history entry for source `primary`: `revision`,
/// else entry `primary` of `revisions[]` (multi-source Applications write `revision: ""`
/// beside `revisions[]`, one entry per source in `spec.sources[]` order, `ref`-only sources
/// included). `None` without a primary source (see [`Primary`]).
pub fn revision_of(v: &Value, primary: Option<usize>) -> Option<String> {
    let primary = primary?;
    v.get("revision")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| v.get("revisions")?.get(primary)?.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Where an Application's manifests come from, for attribution: the index of its primary
/// source (`None` when no single source can be named) and that source's repository.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Primary {
    /// Index into `revisions[]` (0 for a single source).
    pub index: Option<usize>,
    /// The source's `repoURL`.
    pub repo_url: Option<String>,
}

/// The primary source of `spec`, in Argo CD's own order of precedence
/// (`ApplicationSpec.GetSource(s)`, `types.go`): `spec.sourceHydrator`, then a non-empty
/// `spec.sources[]` (a `spec.source` beside it is ignored), then `spec.source`.
///
/// - `sourceHydrator`: Argo CD deploys the hydrated manifests of `syncSource` (its
///   `repoURL`, else the `drySource`'s), and reports the hydrated commit as the sync revision.
/// - `sources[]` (multi-source): Argo CD renders every source and merges the objects without
///   recording which source made which, so a revision names them only when exactly one
///   source renders manifests — every other being a `ref`-only values source (`ref` set, no
///   `path`, no `chart`, not an `oci://` repository). With two or more rendering sources,
///   no revision and no repository is attributed (the Application still is).
/// - `source`: that source.
pub fn primary_source(spec: Option<&Value>) -> Primary {
    let Some(spec) = spec else {
        return Primary::default();
    };
    let repo = |s: &Value| {
        str_at(s, &["repoURL"])
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    };
    if let Some(h) = spec.get("sourceHydrator").filter(|h| h.is_object()) {
        let url = str_at(h, &["syncSource", "repoURL"])
            .filter(|u| !u.is_empty())
            .or_else(|| str_at(h, &["drySource", "repoURL"]))
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        return Primary {
            index: Some(0),
            repo_url: url,
        };
    }
    if let Some(sources) = spec.get("sources").and_then(Value::as_array)
        && !sources.is_empty()
    {
        return primary_of(sources);
    }
    match spec.get("source").filter(|s| s.is_object()) {
        Some(source) => Primary {
            index: Some(0),
            repo_url: repo(source),
        },
        None => Primary::default(),
    }
}

/// The one source of `sources` that renders manifests (see [`primary_source`]).
fn primary_of(sources: &[Value]) -> Primary {
    let ref_only = |s: &Value| {
        str_at(s, &["ref"]).is_some_and(|r| !r.is_empty())
            && str_at(s, &["path"]).is_none_or(str::is_empty)
            && str_at(s, &["chart"]).is_none_or(str::is_empty)
            && !str_at(s, &["repoURL"]).is_some_and(|u| u.starts_with("oci://"))
    };
    let mut rendering = sources.iter().enumerate().filter(|(_, s)| !ref_only(s));
    match (rendering.next(), rendering.next()) {
        (Some((i, s)), None) => Primary {
            index: Some(i),
            repo_url: str_at(s, &["repoURL"])
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
        },
        _ => Primary::default(),
    }
}

/// The primary source index of a history entry or sync result, which records the sources
/// it was made from (`sources[]`): an entry from before `spec.sources[]` changed is read
/// with its own; without them, `current`.
pub fn entry_primary(entry: &Value, current: Option<usize>) -> Option<usize> {
    match entry.get("sources").and_then(Value::as_array) {
        Some(sources) if !sources.is_empty() => primary_of(sources).index,
        _ => current,
    }
}

/// Argo CD's own name and address for the cluster it runs in (`in-cluster`).
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// `spec.destination.namespace` of an Application deploying into this cluster (`server`
/// `https://kubernetes.default.svc` or `name` `in-cluster`); `None` for one deploying
/// elsewhere (a hub's app for another cluster): its rollouts cannot own this cluster's
/// Events of a namespace of the same name.
pub fn in_cluster_destination(data: &Value) -> Option<String> {
    let d = data.get("spec")?.get("destination")?;
    let server = str_at(d, &["server"]).filter(|s| !s.is_empty());
    let name = str_at(d, &["name"]).filter(|s| !s.is_empty());
    let here = match (server, name) {
        (Some(s), _) => s.trim_end_matches('/') == IN_CLUSTER_SERVER,
        (None, Some(n)) => n == "in-cluster",
        (None, None) => true,
    };
    str_at(d, &["namespace"])
        .filter(|_| here)
        .map(str::to_owned)
}

/// The namespace of the Argo CD controller that reconciles `obj` (`status.controllerNamespace`),
/// when it says.
pub fn controller_namespace(obj: &DynamicObject) -> Option<&str> {
    str_at(obj.data.get("status")?, &["controllerNamespace"]).filter(|n| !n.is_empty())
}

/// An Argo CD Application (`argoproj.io/v1alpha1`) as the Catalog keeps it.
/// `controller_namespace` is where the Argo CD controller runs, used when the Application's
/// `status.controllerNamespace` does not say it.
pub fn argo_app(
    obj: &DynamicObject,
    environment_label: Option<&str>,
    controller_namespace: &str,
) -> ArgoApp {
    let meta = &obj.metadata;
    let data = &obj.data;
    let Primary {
        index: primary,
        repo_url,
    } = primary_source(data.get("spec"));
    let status = data.get("status");
    let history = status
        .and_then(|s| s.get("history"))
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|h| {
                    Some(DeployEntry {
                        id: h.get("id").and_then(Value::as_i64).unwrap_or_default(),
                        revision: revision_of(h, entry_primary(h, primary))?,
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
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let controller_namespace = self::controller_namespace(obj).unwrap_or(controller_namespace);
    let sync = status.and_then(|s| s.get("sync"));
    ArgoApp {
        instance_name: app_instance_name(&namespace, &name, controller_namespace),
        namespace,
        name,
        uid: meta.uid.clone().unwrap_or_default(),
        repo_url,
        // Only a Synced status names what runs: OutOfSync/Unknown carry the target (and on
        // a comparison error the unresolved `targetRevision`, e.g. `main`).
        sync_revision: sync
            .filter(|s| str_at(s, &["status"]) == Some("Synced"))
            .and_then(|s| revision_of(s, primary)),
        history,
        environment: environment_label.and_then(|l| meta.labels.as_ref()?.get(l).cloned()),
        destination_namespace: in_cluster_destination(data),
        operation: super::rollout::operation(obj).map(|op| SyncOperation {
            failed: op.failed(),
            finished_unix_nano: op.finished_unix_nano.filter(|_| op.finished()),
            applied: op
                .resources
                .iter()
                .filter(|r| r.hook_type.is_none() && r.status == "Synced")
                .map(|r| hpcotel_core::catalog::workload_key(&r.kind, &r.namespace, &r.name))
                .collect(),
            partial: op.partial,
            revision: op.revision,
            started_unix_nano: op.started_unix_nano,
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
        let app = argo_app(&obj, Some("env"), "argocd");
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

    #[test]
    fn only_an_in_cluster_destination_is_a_namespace_of_this_cluster() {
        let app = |destination: Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "web", "namespace": "argocd", "uid": "u"},
                "spec": {"destination": destination}
            }))
            .unwrap()
        };
        for (d, here) in [
            (
                serde_json::json!({"server": IN_CLUSTER_SERVER, "namespace": "ml"}),
                true,
            ),
            (
                serde_json::json!({"name": "in-cluster", "namespace": "ml"}),
                true,
            ),
            (
                serde_json::json!({"server": "https://gpu-west.example.com:6443", "namespace": "ml"}),
                false,
            ),
            (
                serde_json::json!({"name": "gpu-west", "namespace": "ml"}),
                false,
            ),
        ] {
            let a = argo_app(&app(d.clone()), None, "argocd");
            assert_eq!(a.destination_namespace.is_some(), here, "{d}");
        }
    }

    fn spec(v: Value) -> Primary {
        primary_source(Some(&v))
    }

    #[test]
    fn the_primary_source_follows_argo_cd_s_precedence_and_is_never_guessed() {
        let git = |url: &str, path: &str| serde_json::json!({"repoURL": url, "path": path});
        let values =
            serde_json::json!({"repoURL": "https://git.example.com/values.git", "ref": "values"});
        // A `source` left beside `sources` is ignored by Argo CD.
        let p = spec(
            serde_json::json!({"source": git("https://old.example.com", "."), "sources": [values, git("https://git.example.com/app.git", "deploy")]}),
        );
        assert_eq!(p.index, Some(1));
        assert_eq!(
            p.repo_url.as_deref(),
            Some("https://git.example.com/app.git")
        );
        // Two sources render manifests: which one made a workload is not recorded.
        let p = spec(
            serde_json::json!({"sources": [git("https://git.example.com/infra.git", "base"), git("https://git.example.com/app.git", "deploy")]}),
        );
        assert_eq!(p, Primary::default());
        // An OCI source with `ref` and no path renders manifests.
        let p = spec(
            serde_json::json!({"sources": [{"repoURL": "oci://registry.example.com/charts/app", "ref": "chart"}, values]}),
        );
        assert_eq!(p.index, Some(0));
        // sourceHydrator wins over a leftover source.
        let p = spec(
            serde_json::json!({"source": git("https://old.example.com", "."),
            "sourceHydrator": {"drySource": {"repoURL": "https://git.example.com/dry.git", "targetRevision": "HEAD", "path": "."},
                               "syncSource": {"targetBranch": "env/prod", "path": "."}}}),
        );
        assert_eq!(
            p.repo_url.as_deref(),
            Some("https://git.example.com/dry.git")
        );
        // A history entry is read with the sources it was made from.
        let entry = serde_json::json!({"revision": "", "revisions": ["v1", "a1"], "sources": [values, git("https://git.example.com/app.git", "deploy")]});
        assert_eq!(
            revision_of(&entry, entry_primary(&entry, Some(0))).as_deref(),
            Some("a1")
        );
        assert_eq!(revision_of(&entry, None), None);
    }

    #[test]
    fn only_a_synced_status_names_the_running_revision_and_dry_runs_are_no_operation() {
        let app = |status: &str, dry_run: bool| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "web", "namespace": "argocd", "uid": "u"},
                "spec": {"source": {"repoURL": "https://git.example.com/web.git", "path": "."},
                         "destination": {"server": IN_CLUSTER_SERVER, "namespace": "web"}},
                "status": {"sync": {"status": status, "revision": "main"},
                           "operationState": {"phase": "Succeeded", "startedAt": "2026-11-25T07:00:00Z",
                               "finishedAt": "2026-11-25T07:00:01Z",
                               "operation": {"sync": {"revision": "c0ffee", "dryRun": dry_run}},
                               "syncResult": {"revision": "c0ffee", "resources": []}}}
            }))
            .unwrap()
        };
        assert_eq!(
            argo_app(&app("Synced", false), None, "argocd")
                .sync_revision
                .as_deref(),
            Some("main")
        );
        for status in ["OutOfSync", "Unknown"] {
            assert_eq!(
                argo_app(&app(status, false), None, "argocd").sync_revision,
                None,
                "{status}"
            );
        }
        assert!(
            argo_app(&app("Synced", false), None, "argocd")
                .operation
                .is_some()
        );
        assert!(
            argo_app(&app("Synced", true), None, "argocd")
                .operation
                .is_none()
        );
        assert!(super::super::rollout::operation(&app("Synced", true)).is_none());
    }
}
