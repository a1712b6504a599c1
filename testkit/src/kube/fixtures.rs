//! Objects in the exact JSON shape the real APIs return, small but with upstream field names.
//!
//! Field names come from the upstream type definitions:
//! - core and workloads: `k8s.io/api` `core/v1/types.go` (Pod, ContainerStatus, Event,
//!   ObjectReference), `apps/v1/types.go` (ReplicaSet, Deployment), `batch/v1/types.go` (Job),
//!   `coordination/v1/types.go` (Lease), `apimachinery/pkg/apis/meta/v1/types.go`
//!   (ObjectMeta, OwnerReference); the k8s-openapi 0.29 types deserialize these fixtures;
//! - Argo CD: `argoproj/argo-cd` `pkg/apis/application/v1alpha1/types.go` (Application,
//!   ApplicationSpec/Source/Destination, ApplicationStatus, SyncStatus, HealthStatus,
//!   RevisionHistory, OperationState, Operation, SyncOperation, SyncOperationResult,
//!   ResourceResult, ResourceStatus);
//! - KEDA: `kedacore/keda` `apis/keda/v1alpha1/scaledobject_types.go` (ScaledObjectSpec,
//!   ScaleTarget, ScaleTriggers, ScaledObjectStatus, GroupVersionKindResource) and
//!   `condition_types.go` (Condition);
//! - MPI operator: `kubeflow/mpi-operator` `pkg/apis/kubeflow/v2beta1/types.go` (MPIJobSpec,
//!   RunPolicy, ReplicaSpec, JobStatus, JobCondition, ReplicaStatus).
//!
//! Timestamps the caller does not pass are [`FIXTURE_TIME`]. `creationTimestamp` is left out
//! (the fake server sets it on create) except where a function takes it.

use serde_json::{Map, Value, json};

use super::store::builtin_kinds;

/// The timestamp fixtures use where the caller passes none.
pub const FIXTURE_TIME: &str = "2025-01-01T00:00:00Z";

/// The apiVersion of a kind in the built-in table (`Deployment` → `apps/v1`); `v1` when
/// the kind is not in the table.
pub fn api_version_of(kind: &str) -> String {
    builtin_kinds()
        .into_iter()
        .find(|k| k.kind == kind)
        .map(|k| k.resource.api_version())
        .unwrap_or_else(|| "v1".to_string())
}

fn string_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), json!(v)))
        .collect()
}

/// ObjectMeta with the empty maps and lists left out, as the server serializes it.
fn metadata(
    ns: &str,
    name: &str,
    uid: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    owner: Option<(&str, &str, &str)>,
) -> Value {
    let mut m = json!({"name": name, "namespace": ns, "uid": uid});
    if !labels.is_empty() {
        m["labels"] = Value::Object(string_map(labels));
    }
    if !annotations.is_empty() {
        m["annotations"] = Value::Object(string_map(annotations));
    }
    if let Some(owner) = owner {
        m["ownerReferences"] = json!([owner_reference(owner)]);
    }
    m
}

/// A controller OwnerReference (`controller` and `blockOwnerDeletion` true, as controllers
/// set them).
pub fn owner_reference((kind, name, uid): (&str, &str, &str)) -> Value {
    json!({
        "apiVersion": api_version_of(kind),
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "registry.example.com/app:1.0",
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

/// A running Pod on `node` with one ready container `main`.
///
/// `owner` is (kind, name, uid) of the controller (`ReplicaSet`, `Job`, `StatefulSet`, …);
/// `ip` fills `status.podIP` and `status.podIPs`.
#[expect(clippy::too_many_arguments, reason = "mirrors the fields tests script")]
pub fn pod(
    ns: &str,
    name: &str,
    uid: &str,
    node: &str,
    owner: Option<(&str, &str, &str)>,
    ip: &str,
    annotations: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(ns, name, uid, labels, annotations, owner),
        "spec": {
            "nodeName": node,
            "containers": [container("main")],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "priority": 0,
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": FIXTURE_TIME},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": FIXTURE_TIME},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": FIXTURE_TIME},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": FIXTURE_TIME},
            ],
            "hostIP": "10.0.0.10",
            "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": FIXTURE_TIME,
            "containerStatuses": [{
                "name": "main",
                "state": {"running": {"startedAt": FIXTURE_TIME}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "registry.example.com/app:1.0",
                "imageID": "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "containerID": format!("containerd://{}", uid.replace('-', "")),
                "started": true,
            }],
            "qosClass": "BestEffort",
        },
    })
}

/// A ReplicaSet with one ready replica, owned by the Deployment (name, uid) when given.
/// The `pod-template-hash` label is the name's last `-` segment.
pub fn replicaset(
    ns: &str,
    name: &str,
    uid: &str,
    deployment: Option<(&str, &str)>,
    creation_timestamp: &str,
) -> Value {
    let hash = name.rsplit('-').next().unwrap_or(name);
    let app = deployment.map_or(name, |(d, _)| d);
    let labels = [("app", app), ("pod-template-hash", hash)];
    let mut meta = metadata(
        ns,
        name,
        uid,
        &labels,
        &[("deployment.kubernetes.io/revision", "1")],
        deployment.map(|(d, u)| ("Deployment", d, u)),
    );
    meta["creationTimestamp"] = json!(creation_timestamp);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": string_map(&labels)},
            "template": {
                "metadata": {"labels": string_map(&labels)},
                "spec": {"containers": [container("main")]},
            },
        },
        "status": {
            "replicas": 1,
            "fullyLabeledReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "observedGeneration": 1,
        },
    })
}

/// An available Deployment with one replica; `tracking_id` sets the Argo CD annotation
/// `argocd.argoproj.io/tracking-id` (e.g. `app:apps/Deployment:ns/name`), `instance` the
/// label `app.kubernetes.io/instance` (Argo CD's label tracking).
pub fn deployment(
    ns: &str,
    name: &str,
    uid: &str,
    tracking_id: Option<&str>,
    instance: Option<&str>,
) -> Value {
    let mut labels = vec![("app", name)];
    if let Some(instance) = instance {
        labels.push(("app.kubernetes.io/instance", instance));
    }
    let mut annotations = vec![("deployment.kubernetes.io/revision", "1")];
    if let Some(id) = tracking_id {
        annotations.push(("argocd.argoproj.io/tracking-id", id));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(ns, name, uid, &labels, &annotations, None),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container("main")]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": FIXTURE_TIME, "lastTransitionTime": FIXTURE_TIME, "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": FIXTURE_TIME, "lastTransitionTime": FIXTURE_TIME, "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed.")},
            ],
        },
    })
}

/// A running Job (one active pod); `owner` is (kind, name, uid) of its controller (a
/// CronJob, an MPIJob's launcher owner, …). Labels and the selector carry the
/// `batch.kubernetes.io/controller-uid` / `job-name` labels the Job controller sets.
pub fn job(
    ns: &str,
    name: &str,
    uid: &str,
    owner: Option<(&str, &str, &str)>,
    labels: &[(&str, &str)],
) -> Value {
    let selector = json!({"batch.kubernetes.io/controller-uid": uid});
    let template_labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(ns, name, uid, labels, &[], owner),
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "suspend": false,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": template_labels},
                "spec": {"containers": [container("main")], "restartPolicy": "Never"},
            },
        },
        "status": {
            "startTime": FIXTURE_TIME,
            "active": 1,
            "ready": 1,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        },
    })
}

/// `status.operationState` of an Argo CD Application (`OperationState` upstream).
#[derive(Clone, Debug)]
pub struct ArgoOperation<'a> {
    /// `phase`: `Running`, `Succeeded`, `Failed`, `Error`, `Terminating`.
    pub phase: &'a str,
    /// `message`.
    pub message: &'a str,
    /// `startedAt`.
    pub started_at: &'a str,
    /// `finishedAt` (absent while running).
    pub finished_at: Option<&'a str>,
}

/// One synced resource (`ResourceResult` in `syncResult.resources`, and a `ResourceStatus`
/// in `status.resources`).
#[derive(Clone, Debug)]
pub struct ArgoResource<'a> {
    /// API group, "" for core.
    pub group: &'a str,
    /// API version.
    pub version: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// Sync result code (`Synced`, `SyncFailed`, `Pruned`, `PruneSkipped`).
    pub status: &'a str,
    /// Result message (e.g. `deployment.apps/web configured`).
    pub message: &'a str,
}

/// One `syncResult.resources[]` entry (`ResourceResult`), as gitops-engine's sync context
/// writes it: `hookType` only on hooks; `hookPhase` on every resource — a hook's own state
/// (`Running`, `Succeeded`, `Failed`, `Error`), and for a plain resource `Running` once
/// applied (it stays `Running` in the stored result after a successful sync, as in Argo CD's
/// `controller/testdata/diff-cache.yaml`), `Failed` when applying failed or the resource went
/// Degraded while the sync waited on it, `Succeeded` when pruned. A hook that was applied and
/// then failed keeps `status: Synced`: only `hookPhase` says `Failed`.
#[derive(Clone, Debug, Default)]
pub struct SyncedResource {
    /// API group, "" for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `status`: `Synced`, `SyncFailed`, `Pruned`, `PruneSkipped`.
    pub status: String,
    /// `message`.
    pub message: String,
    /// `hookType` (`PreSync`, `Sync`, `PostSync`, `SyncFail`, `Skip`) for hooks.
    pub hook_type: Option<String>,
    /// `hookPhase`.
    pub hook_phase: String,
    /// `syncPhase` (`PreSync`, `Sync`, `PostSync`, `SyncFail`).
    pub sync_phase: String,
}

impl SyncedResource {
    /// A plain resource applied in the `Sync` phase (`status: Synced`, `hookPhase: Running`,
    /// message `<kind>.<group>/<name> configured`).
    pub fn applied(group: &str, kind: &str, namespace: &str, name: &str) -> SyncedResource {
        let version = if group.is_empty() {
            "v1"
        } else {
            group_version(group)
        };
        let what = if group.is_empty() {
            kind.to_lowercase()
        } else {
            format!("{}.{group}", kind.to_lowercase())
        };
        SyncedResource {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            status: "Synced".into(),
            message: format!("{what}/{name} configured"),
            hook_type: None,
            hook_phase: "Running".into(),
            sync_phase: "Sync".into(),
        }
    }

    /// A hook Job of `hook_type` (e.g. `PreSync`) whose run is in `hook_phase` (`Running`,
    /// `Succeeded`, `Failed`); `status` stays `Synced` (it was applied), the message is the
    /// Job's condition message when it failed.
    pub fn hook_job(
        namespace: &str,
        name: &str,
        hook_type: &str,
        hook_phase: &str,
    ) -> SyncedResource {
        SyncedResource {
            group: "batch".into(),
            version: "v1".into(),
            kind: "Job".into(),
            namespace: namespace.into(),
            name: name.into(),
            status: "Synced".into(),
            message: match hook_phase {
                "Failed" => "Job has reached the specified backoff limit".into(),
                "Succeeded" => "Reached expected number of succeeded pods".into(),
                _ => String::new(),
            },
            hook_type: Some(hook_type.into()),
            hook_phase: hook_phase.into(),
            sync_phase: hook_type.into(),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "group": self.group,
            "version": self.version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "status": self.status,
            "hookPhase": self.hook_phase,
            "syncPhase": self.sync_phase,
        });
        if !self.message.is_empty() {
            v["message"] = json!(self.message);
        }
        if let Some(h) = &self.hook_type {
            v["hookType"] = json!(h);
        }
        v
    }
}

fn group_version(group: &str) -> &'static str {
    match group {
        "keda.sh" | "argoproj.io" => "v1alpha1",
        "kubeflow.org" => "v2beta1",
        _ => "v1",
    }
}

/// One `spec.sources[]` (or `spec.source`) entry (`ApplicationSource`).
#[derive(Clone, Debug, Default)]
pub struct AppSource {
    /// `repoURL` (a Git URL, or a Helm repository for `chart`).
    pub repo_url: String,
    /// `path` in a Git repository (empty for a chart or a `ref`-only source).
    pub path: String,
    /// `chart`, for a Helm repository source.
    pub chart: String,
    /// `ref`: the name other sources use for this one's files (`$values/...`).
    pub ref_name: String,
    /// `targetRevision`.
    pub target_revision: String,
}

impl AppSource {
    /// A Git directory source at `path`, tracking `HEAD`.
    pub fn git(repo_url: &str, path: &str) -> AppSource {
        AppSource {
            repo_url: repo_url.into(),
            path: path.into(),
            target_revision: "HEAD".into(),
            ..Default::default()
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"repoURL": self.repo_url});
        for (k, val) in [
            ("path", &self.path),
            ("chart", &self.chart),
            ("ref", &self.ref_name),
            ("targetRevision", &self.target_revision),
        ] {
            if !val.is_empty() {
                v[k] = json!(val);
            }
        }
        v
    }
}

/// A sync operation (`status.operationState`) as the application controller writes it.
#[derive(Clone, Debug, Default)]
pub struct AppOperation {
    /// `phase`: `Running`, `Terminating`, `Succeeded`, `Failed`, `Error`.
    pub phase: String,
    /// `message`.
    pub message: String,
    /// `startedAt` (RFC 3339).
    pub started_at: String,
    /// `finishedAt`: set when the operation ended, and also on a `Running` phase between two
    /// attempts of a retry (the controller's marker that the next attempt is due).
    pub finished_at: Option<String>,
    /// `operation.sync.revision(s)`: the requested revision(s); empty after a retry with
    /// `refresh` cleared them.
    pub requested: Vec<String>,
    /// `syncResult`: `None` before the first apply and between retry attempts (the
    /// controller sets it to nil); otherwise its revision(s) and resources.
    pub result: Option<(Vec<String>, Vec<SyncedResource>)>,
    /// `retryCount`.
    pub retry_count: i64,
    /// `operation.retry` as (limit, refresh), copied from `spec.syncPolicy.retry`.
    pub retry: Option<(i64, bool)>,
}

/// An Argo CD Application (`argoproj.io/v1alpha1`, `pkg/apis/application/v1alpha1/types.go`)
/// in the shape the API server returns it: omitted-when-empty fields left out, `group: ""`
/// written in sync results, `status.controllerNamespace`, multi-source `revision: ""` beside
/// `revisions[]`, `spec.sourceHydrator` apps without `source(s)`.
#[derive(Clone, Debug)]
pub struct App {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: Vec<(String, String)>,
    /// The owning ApplicationSet (name, uid), for generated apps.
    pub application_set: Option<(String, String)>,
    /// `status.controllerNamespace`: where the controller runs (`argocd`).
    pub controller_namespace: String,
    /// One source = `spec.source`; several = `spec.sources[]`; none with `hydrator` set =
    /// `spec.sourceHydrator`.
    pub sources: Vec<AppSource>,
    /// `spec.sourceHydrator` as (drySource repoURL, syncSource targetBranch, syncSource path).
    pub hydrator: Option<(String, String, String)>,
    /// `spec.destination.namespace`.
    pub destination_namespace: String,
    /// `spec.project`.
    pub project: String,
    /// `spec.syncPolicy.retry` as (limit, refresh).
    pub retry: Option<(i64, bool)>,
    /// `status.sync.status`.
    pub sync_status: String,
    /// `status.sync.revision` (one source) or `revisions` (several).
    pub sync_revisions: Vec<String>,
    /// `status.health.status`.
    pub health: String,
    /// `status.history[]` as (id, revisions, deployStartedAt, deployedAt), oldest first.
    pub history: Vec<(i64, Vec<String>, String, String)>,
    /// `status.operationState`.
    pub operation: Option<AppOperation>,
    /// `status.resources[]` as (group, kind, namespace, name, health).
    pub resources: Vec<(String, String, String, String, String)>,
}

impl App {
    /// An Application `namespace/name` deploying `repo_url` (path `.`, `HEAD`) into
    /// `destination_namespace`, Synced at `revision` and Healthy, controller in `argocd`, no
    /// history and no operation yet.
    pub fn new(
        namespace: &str,
        name: &str,
        uid: &str,
        repo_url: &str,
        destination_namespace: &str,
        revision: &str,
    ) -> App {
        App {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            labels: Vec::new(),
            application_set: None,
            controller_namespace: "argocd".into(),
            sources: vec![AppSource::git(repo_url, ".")],
            hydrator: None,
            destination_namespace: destination_namespace.into(),
            project: "default".into(),
            retry: None,
            sync_status: "Synced".into(),
            sync_revisions: vec![revision.into()],
            health: "Healthy".into(),
            history: Vec::new(),
            operation: None,
            resources: Vec::new(),
        }
    }

    fn sources_json(&self) -> (Option<Value>, Option<Value>) {
        match self.sources.as_slice() {
            [] => (None, None),
            [one] => (Some(one.to_json()), None),
            many => (
                None,
                Some(Value::Array(many.iter().map(AppSource::to_json).collect())),
            ),
        }
    }

    /// `revision` and `revisions` of a sync status, result or history entry, as Argo CD
    /// writes them for this app's number of sources (`always_revision`: the field has no
    /// `omitempty`, as in `SyncOperationResult`).
    fn revisions_json(&self, revisions: &[String], target: &mut Value, always_revision: bool) {
        if self.sources.len() > 1 {
            if always_revision {
                target["revision"] = json!("");
            }
            if !revisions.is_empty() {
                target["revisions"] = json!(revisions);
            }
        } else if let Some(r) = revisions.first().filter(|r| !r.is_empty()) {
            target["revision"] = json!(r);
        } else if always_revision {
            target["revision"] = json!("");
        }
    }

    /// The object as JSON.
    pub fn build(&self) -> Value {
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut meta = metadata(&self.namespace, &self.name, &self.uid, &labels, &[], None);
        if let Some((set, set_uid)) = &self.application_set {
            meta["ownerReferences"] = json!([{
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ApplicationSet",
                "name": set,
                "uid": set_uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }]);
        }
        meta["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
        let destination = json!({"server": "https://kubernetes.default.svc", "namespace": self.destination_namespace});
        let (source, sources) = self.sources_json();
        let mut spec = json!({"destination": destination, "project": self.project});
        if let Some(s) = &source {
            spec["source"] = s.clone();
        }
        if let Some(s) = &sources {
            spec["sources"] = s.clone();
        }
        if let Some((repo, branch, path)) = &self.hydrator {
            spec["sourceHydrator"] = json!({
                "drySource": {"repoURL": repo, "targetRevision": "HEAD", "path": path},
                "syncSource": {"targetBranch": branch, "path": path},
            });
        }
        let mut policy = json!({"automated": {"prune": true, "selfHeal": true}});
        if let Some((limit, refresh)) = self.retry {
            policy["retry"] = retry_json(limit, refresh);
        }
        spec["syncPolicy"] = policy;
        let with_sources = |v: &mut Value| {
            if let Some(s) = &source {
                v["source"] = s.clone();
            }
            if let Some(s) = &sources {
                v["sources"] = s.clone();
            }
        };
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|(id, revisions, started, deployed)| {
                let mut h = json!({
                    "id": id,
                    "deployStartedAt": started,
                    "deployedAt": deployed,
                    "initiatedBy": {"automated": true},
                });
                self.revisions_json(revisions, &mut h, false);
                with_sources(&mut h);
                h
            })
            .collect();
        let mut compared = json!({"destination": destination});
        with_sources(&mut compared);
        let mut sync = json!({"status": self.sync_status, "comparedTo": compared});
        self.revisions_json(&self.sync_revisions, &mut sync, false);
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|(group, kind, ns, name, health)| {
                let mut r = json!({
                    "version": if group.is_empty() { "v1" } else { group_version(group) },
                    "kind": kind,
                    "namespace": ns,
                    "name": name,
                    "status": "Synced",
                    "health": {"status": health},
                });
                if !group.is_empty() {
                    r["group"] = json!(group);
                }
                r
            })
            .collect();
        let mut status = json!({
            "sync": sync,
            "health": {"status": self.health, "lastTransitionTime": FIXTURE_TIME},
            "reconciledAt": FIXTURE_TIME,
            "sourceType": "Directory",
            "summary": {},
            "controllerNamespace": self.controller_namespace,
        });
        if !resources.is_empty() {
            status["resources"] = json!(resources);
        }
        if !history.is_empty() {
            status["history"] = json!(history);
        }
        if sources.is_some() {
            status["sourceTypes"] = json!(vec!["Directory"; self.sources.len()]);
        }
        if let Some((repo, branch, _)) = &self.hydrator {
            let hydrated = self.sync_revisions.first().cloned().unwrap_or_default();
            status["sourceHydrator"] = json!({
                "lastSuccessfulOperation": {
                    "drySHA": format!("dry-{hydrated}"),
                    "hydratedSHA": hydrated,
                    "sourceHydrator": {
                        "drySource": {"repoURL": repo, "targetRevision": "HEAD", "path": "."},
                        "syncSource": {"targetBranch": branch, "path": "."},
                    },
                },
            });
        }
        if let Some(op) = &self.operation {
            let mut sync_op = json!({});
            self.revisions_json(&op.requested, &mut sync_op, false);
            let mut operation = json!({"sync": sync_op, "initiatedBy": {"automated": true}});
            if let Some((limit, refresh)) = op.retry {
                operation["retry"] = retry_json(limit, refresh);
            }
            let mut state = json!({
                "operation": operation,
                "phase": op.phase,
                "startedAt": op.started_at,
            });
            if !op.message.is_empty() {
                state["message"] = json!(op.message);
            }
            if let Some(f) = &op.finished_at {
                state["finishedAt"] = json!(f);
            }
            if op.retry_count > 0 {
                state["retryCount"] = json!(op.retry_count);
            }
            if let Some((revisions, resources)) = &op.result {
                let mut result = json!({});
                if !resources.is_empty() {
                    result["resources"] =
                        Value::Array(resources.iter().map(SyncedResource::to_json).collect());
                }
                self.revisions_json(revisions, &mut result, true);
                with_sources(&mut result);
                state["syncResult"] = result;
            }
            status["operationState"] = state;
        }
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": meta,
            "spec": spec,
            "status": status,
        })
    }
}

fn retry_json(limit: i64, refresh: bool) -> Value {
    let mut r =
        json!({"limit": limit, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}});
    if refresh {
        r["refresh"] = json!(true);
    }
    r
}

/// An Argo CD Application (argoproj.io/v1alpha1) in namespace `ns` (also its destination),
/// controller in `argocd`, tracking `repo_url` at HEAD, synced to `sync_revision`, with
/// `status.health.status` = `health`; a shorthand for [`App`].
///
/// `history` is (id, revision, deployStartedAt, deployedAt) oldest first;
/// `operation` fills `status.operationState` (with `syncResult.resources` =
/// `sync_result_resources`, plain resources of the `Sync` phase — `hookPhase` `Failed` for a
/// `SyncFailed` one, `Running` otherwise, as gitops-engine writes them — and
/// `syncResult.revision` = `sync_revision`); `sync_result_resources` also fill
/// `status.resources`.
#[expect(clippy::too_many_arguments, reason = "mirrors the fields tests script")]
pub fn argocd_application(
    ns: &str,
    name: &str,
    uid: &str,
    repo_url: &str,
    sync_revision: &str,
    health: &str,
    operation: Option<ArgoOperation<'_>>,
    history: &[(i64, &str, &str, &str)],
    sync_result_resources: &[ArgoResource<'_>],
) -> Value {
    let mut app = App::new(ns, name, uid, repo_url, ns, sync_revision);
    app.health = health.into();
    app.history = history
        .iter()
        .map(|&(id, r, s, d)| (id, vec![r.to_owned()], s.to_owned(), d.to_owned()))
        .collect();
    app.resources = sync_result_resources
        .iter()
        .map(|r| {
            (
                r.group.to_owned(),
                r.kind.to_owned(),
                r.namespace.to_owned(),
                r.name.to_owned(),
                health.to_owned(),
            )
        })
        .collect();
    app.operation = operation.map(|op| AppOperation {
        phase: op.phase.into(),
        message: op.message.into(),
        started_at: op.started_at.into(),
        finished_at: op.finished_at.map(str::to_owned),
        requested: vec![sync_revision.to_owned()],
        result: Some((
            vec![sync_revision.to_owned()],
            sync_result_resources
                .iter()
                .map(|r| SyncedResource {
                    group: r.group.into(),
                    version: r.version.into(),
                    kind: r.kind.into(),
                    namespace: r.namespace.into(),
                    name: r.name.into(),
                    status: r.status.into(),
                    message: r.message.into(),
                    hook_type: None,
                    hook_phase: if r.status == "SyncFailed" {
                        "Failed"
                    } else {
                        "Running"
                    }
                    .into(),
                    sync_phase: "Sync".into(),
                })
                .collect(),
        )),
        ..Default::default()
    });
    app.build()
}

/// A KEDA ScaledObject (keda.sh/v1alpha1) scaling `target` = (kind, name) with one
/// prometheus trigger. `conditions` are (type, status, reason, message), e.g.
/// `("Active", "True", "ScalerActive", "Scaling is performed because triggers are active")`;
/// `last_active_time` fills `status.lastActiveTime`. The status also holds what KEDA's
/// operator writes beside them: `authenticationsTypes` (`""`: no TriggerAuthentication) and
/// `triggersActivity` (the trigger active when the `Active` condition is True).
pub fn scaled_object(
    ns: &str,
    name: &str,
    uid: &str,
    target: (&str, &str),
    conditions: &[(&str, &str, &str, &str)],
    last_active_time: Option<&str>,
) -> Value {
    let (kind, target_name) = target;
    let api_version = api_version_of(kind);
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let resource = builtin_kinds()
        .into_iter()
        .find(|k| k.kind == kind)
        .map(|k| k.resource.plural)
        .unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
    let active = conditions
        .iter()
        .any(|&(t, s, _, _)| t == "Active" && s == "True");
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|&(t, s, reason, message)| {
            json!({"type": t, "status": s, "reason": reason, "message": message})
        })
        .collect();
    let mut status = json!({
        "scaleTargetKind": format!("{group}/{version}.{kind}"),
        "scaleTargetGVKR": {"group": group, "version": version, "kind": kind, "resource": resource},
        "originalReplicaCount": 1,
        "externalMetricNames": ["s0-prometheus"],
        "conditions": conditions,
        "health": {"s0-prometheus": {"numberOfFailures": 0, "status": "Happy"}},
        "hpaName": format!("keda-hpa-{name}"),
        "triggersTypes": "prometheus",
        "authenticationsTypes": "",
        "triggersActivity": {"s0-prometheus": {"isActive": active}},
    });
    if let Some(t) = last_active_time {
        status["lastActiveTime"] = json!(t);
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(ns, name, uid, &[("scaledobject.keda.sh/name", name)], &[], None),
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target_name},
            "pollingInterval": 30,
            "cooldownPeriod": 300,
            "minReplicaCount": 0,
            "maxReplicaCount": 10,
            "triggers": [{
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "query": "sum(rate(http_requests_total[1m]))",
                    "threshold": "100",
                },
            }],
        },
        "status": status,
    })
}

/// A core/v1 `ObjectReference` to (kind, namespace, name, uid), as Events' `involvedObject`.
fn object_reference((kind, ns, name, uid): (&str, &str, &str, &str)) -> Value {
    json!({"kind": kind, "namespace": ns, "name": name, "uid": uid, "apiVersion": api_version_of(kind)})
}

/// A core v1 Event about `involved` = (kind, namespace, name, uid), as kubelet and
/// controllers write them (`source.component` and `reportingComponent` both set to
/// `reporting_component`). `type_` is `Normal` or `Warning`.
#[expect(clippy::too_many_arguments, reason = "mirrors the fields tests script")]
pub fn event(
    ns: &str,
    name: &str,
    involved: (&str, &str, &str, &str),
    reason: &str,
    message: &str,
    type_: &str,
    reporting_component: &str,
    first_timestamp: &str,
    last_timestamp: &str,
    count: i32,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": object_reference(involved),
        "reason": reason,
        "message": message,
        "source": {"component": reporting_component},
        "firstTimestamp": first_timestamp,
        "lastTimestamp": last_timestamp,
        "count": count,
        "type": type_,
        "eventTime": null,
        "reportingComponent": reporting_component,
        "reportingInstance": "",
    })
}

/// A running kubeflow MPIJob (kubeflow.org/v2beta1) with one launcher and `workers` workers.
pub fn mpi_job(ns: &str, name: &str, uid: &str, workers: i32) -> Value {
    let replica = |replicas: i32, role: &str| {
        json!({
            "replicas": replicas,
            "restartPolicy": "Never",
            "template": {"spec": {"containers": [{"name": role, "image": "registry.example.com/mpi:1.0"}]}},
        })
    };
    json!({
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": metadata(ns, name, uid, &[], &[], None),
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running", "suspend": false},
            "mpiReplicaSpecs": {"Launcher": replica(1, "launcher"), "Worker": replica(workers, "worker")},
            "sshAuthMountPath": "/root/.ssh",
            "mpiImplementation": "OpenMPI",
        },
        "status": {
            "conditions": [
                {"type": "Created", "status": "True", "reason": "MPIJobCreated", "message": format!("MPIJob {ns}/{name} is created."), "lastUpdateTime": FIXTURE_TIME, "lastTransitionTime": FIXTURE_TIME},
                {"type": "Running", "status": "True", "reason": "MPIJobRunning", "message": format!("MPIJob {ns}/{name} is running."), "lastUpdateTime": FIXTURE_TIME, "lastTransitionTime": FIXTURE_TIME},
            ],
            "replicaStatuses": {"Launcher": {"active": 1}, "Worker": {"active": workers}},
            "startTime": FIXTURE_TIME,
        },
    })
}

/// A coordination.k8s.io/v1 Lease held by `holder`.
pub fn lease(ns: &str, name: &str, holder: &str, duration_seconds: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": "2025-01-01T00:00:00.000000Z",
            "renewTime": "2025-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        },
    })
}

/// A KEDA ScaledJob (keda.sh/v1alpha1, `apis/keda/v1alpha1/scaledjob_types.go`) running a
/// one-container Job per unit of work from one prometheus trigger, with the status KEDA's
/// operator writes: `conditions` as (type, status, reason, message), e.g.
/// `("Ready", "Unknown", "PartialTriggerError", "Some triggers defined in ScaledJob are not
/// working correctly")`, `triggersTypes`, `authenticationsTypes` (`""`: no
/// TriggerAuthentication), `externalMetricNames`; `last_active_time` fills
/// `status.lastActiveTime`. KEDA declares `status.Paused` (capital P in JSON) but writes the
/// `Paused` condition instead, so the field is absent, as on a real cluster.
pub fn scaled_job(
    ns: &str,
    name: &str,
    uid: &str,
    conditions: &[(&str, &str, &str, &str)],
    last_active_time: Option<&str>,
) -> Value {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|&(t, s, reason, message)| {
            json!({"type": t, "status": s, "reason": reason, "message": message})
        })
        .collect();
    let mut status = json!({
        "conditions": conditions,
        "triggersTypes": "prometheus",
        "authenticationsTypes": "",
        "externalMetricNames": ["s0-prometheus"],
    });
    if let Some(t) = last_active_time {
        status["lastActiveTime"] = json!(t);
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": metadata(ns, name, uid, &[], &[], None),
        "spec": {
            "jobTargetRef": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "template": {"spec": {"containers": [container("main")], "restartPolicy": "Never"}},
            },
            "pollingInterval": 30,
            "successfulJobsHistoryLimit": 5,
            "failedJobsHistoryLimit": 5,
            "maxReplicaCount": 100,
            "triggers": [{
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "query": "sum(queue_depth)",
                    "threshold": "5",
                },
            }],
        },
        "status": status,
    })
}

/// An Event written through `events.k8s.io/v1` (client-go's `tools/events` recorder: the
/// scheduler, KEDA's operator, newer controllers), as it reads through the core/v1 API that
/// hpcotel watches (`k8s.io/api` `core/v1/types.go` Event and EventSeries; `events/v1` maps
/// `regarding` → `involvedObject`, `note` → `message`, `reportingController` →
/// `reportingComponent`, `deprecated*` → the legacy fields).
///
/// `involved` is (kind, namespace, name, uid) of the regarding object; `event_time` is the
/// first occurrence as a MicroTime (`2026-01-01T00:00:00.123456Z`); `series` is (count,
/// lastObservedTime), `None` for a singleton (the recorder writes a series from the second
/// occurrence on, count 2). As the server serializes it: `firstTimestamp`/`lastTimestamp` are
/// `null`, `count` is absent (0, omitempty), `source` is `{}`; `action`, `reportingComponent`
/// and `reportingInstance` are set. `name` is the recorder's `<regarding name>.<hex unix ns>`.
#[expect(clippy::too_many_arguments, reason = "mirrors the fields tests script")]
pub fn events_v1_event(
    ns: &str,
    name: &str,
    involved: (&str, &str, &str, &str),
    reason: &str,
    action: &str,
    note: &str,
    type_: &str,
    reporting: (&str, &str),
    event_time: &str,
    series: Option<(i32, &str)>,
) -> Value {
    let (controller, instance) = reporting;
    let mut e = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": object_reference(involved),
        "reason": reason,
        "message": note,
        "source": {},
        "firstTimestamp": null,
        "lastTimestamp": null,
        "type": type_,
        "eventTime": event_time,
        "action": action,
        "reportingComponent": controller,
        "reportingInstance": instance,
    });
    if let Some((count, last_observed_time)) = series {
        e["series"] = json!({"count": count, "lastObservedTime": last_observed_time});
    }
    e
}

/// A container's `state` (or `lastState`) while running, as the kubelet writes it
/// (`core/v1` `ContainerStateRunning`).
pub fn running_state(started_at: &str) -> Value {
    json!({"running": {"startedAt": started_at}})
}

/// A container's `state` while waiting (`ContainerStateWaiting`): `reason` as the kubelet
/// names it (`ContainerCreating`, `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`,
/// `CreateContainerConfigError`, `RunContainerError`, ...) and its `message` — for a crash
/// loop the kubelet's `back-off <delay> restarting failed container=<name>
/// pod=<pod>_<namespace>(<uid>)` (`kuberuntime_manager.go` `doBackOff`); none for
/// `ContainerCreating`.
pub fn waiting_state(reason: &str, message: Option<&str>) -> Value {
    let mut w = json!({"reason": reason});
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    json!({"waiting": w})
}

/// A container's `state` (or `lastState`) once terminated (`ContainerStateTerminated`), as
/// the kubelet fills it from the runtime (`kubelet_pods.go` `convertContainerStatus`):
/// `exitCode`, `reason` (`OOMKilled`, `Error`, `Completed`, `ContainerCannotRun`, ...), the
/// termination `message` when there is one, `startedAt`, `finishedAt` and the dead
/// container's `containerID`. `signal` is left out: the kubelet never sets it (an OOM kill
/// shows as exit code 137 = 128 + SIGKILL).
pub fn terminated_state(
    exit_code: i32,
    reason: &str,
    message: Option<&str>,
    started_at: &str,
    finished_at: &str,
    container_id: &str,
) -> Value {
    let mut t = json!({
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": finished_at,
        "containerID": container_id,
    });
    if let Some(m) = message {
        t["message"] = json!(m);
    }
    json!({"terminated": t})
}

/// One `status.containerStatuses[]` entry as the kubelet writes it (`core/v1`
/// `ContainerStatus`): `state`, `lastState` (`{}` until a run has ended), `ready`,
/// `restartCount`, `started` (true only while running), and the latest container's
/// `containerID` — in a crash-loop back-off still the dead one's, which `lastState` names
/// too. An empty `container_id` is a container never created (waiting for its image): no
/// `containerID`, and `imageID` is `""`.
pub fn container_status(
    name: &str,
    state: Value,
    last_state: Option<Value>,
    ready: bool,
    restart_count: i32,
    container_id: &str,
) -> Value {
    let running = state.get("running").is_some();
    let mut s = json!({
        "name": name,
        "state": state,
        "lastState": last_state.unwrap_or_else(|| json!({})),
        "ready": ready,
        "restartCount": restart_count,
        "image": "registry.example.com/app:1.0",
        "imageID": "",
        "started": running,
    });
    if !container_id.is_empty() {
        s["imageID"] = json!(
            "registry.example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        );
        s["containerID"] = json!(container_id);
    }
    s
}

/// `pod` (a [`pod`] fixture) with a graceful deletion under way, as the API server writes
/// it on a DELETE with the default grace period: `deletionTimestamp` (when the grace period
/// ends) and `deletionGracePeriodSeconds: 30`. Pass the result to [`with_container_status`]
/// for the kubelet's status once the container stopped.
pub fn being_deleted(mut pod: Value, deletion_timestamp: &str) -> Value {
    pod["metadata"]["deletionTimestamp"] = json!(deletion_timestamp);
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    pod
}

/// `pod` (a [`pod`] fixture, one container) with `status` (a [`container_status`]) as its
/// container's, and the pod status the kubelet derives from it (`pkg/kubelet/status`
/// `generate.go`, `kubelet_pods.go` `getPhase`):
/// - ready: `Ready` and `ContainersReady` `True`;
/// - not ready: both `False`, reason `ContainersNotReady`, message `containers with unready
///   status: [<name>]`, since the termination that ended readiness (else since the state's
///   start);
/// - phase `Pending` while the container never ran, else `Running` (a crash loop stays
///   `Running`); for a pod being deleted ([`being_deleted`]) whose container terminated, the
///   terminal phase — `Succeeded` for exit code 0, else `Failed` — with both conditions
///   `False`, reason `PodCompleted` / `PodFailed`.
pub fn with_container_status(mut pod: Value, status: Value) -> Value {
    let name = status["name"].as_str().unwrap_or_default().to_string();
    let ready = status["ready"].as_bool().unwrap_or(false);
    let terminated = status.pointer("/state/terminated").cloned();
    let last_terminated = status.pointer("/lastState/terminated").cloned();
    let ever_ran = status.pointer("/state/running").is_some()
        || terminated.is_some()
        || last_terminated.is_some();
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    let since = terminated
        .as_ref()
        .or(last_terminated.as_ref().filter(|_| !ready))
        .and_then(|t| t["finishedAt"].as_str())
        .or_else(|| {
            status
                .pointer("/state/running/startedAt")
                .and_then(Value::as_str)
        })
        .unwrap_or(FIXTURE_TIME)
        .to_string();
    let (phase, reason, message) = match (&terminated, deleting) {
        (Some(t), true) if t["exitCode"].as_i64() == Some(0) => {
            ("Succeeded", Some("PodCompleted"), None)
        }
        (Some(_), true) => ("Failed", Some("PodFailed"), None),
        _ if ready => ("Running", None, None),
        _ => (
            if ever_ran { "Running" } else { "Pending" },
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{name}]")),
        ),
    };
    let st = &mut pod["status"];
    st["phase"] = json!(phase);
    st["containerStatuses"] = json!([status]);
    if let Some(conditions) = st["conditions"].as_array_mut() {
        for c in conditions.iter_mut() {
            let t = c["type"].as_str().unwrap_or_default();
            if t != "Ready" && t != "ContainersReady" {
                continue;
            }
            let c = c.as_object_mut().expect("a condition is an object");
            c.remove("reason");
            c.remove("message");
            match reason {
                None => {
                    c.insert("status".into(), json!("True"));
                }
                Some(r) => {
                    c.insert("status".into(), json!("False"));
                    c.insert("reason".into(), json!(r));
                    c.insert("lastTransitionTime".into(), json!(since));
                    if let Some(m) = &message {
                        c.insert("message".into(), json!(m));
                    }
                }
            }
        }
    }
    pod
}
