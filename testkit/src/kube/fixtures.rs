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

/// An Argo CD Application (argoproj.io/v1alpha1) tracking `repo_url` at HEAD, synced to
/// `sync_revision`, with `status.health.status` = `health`.
///
/// `history` is (id, revision, deployStartedAt, deployedAt) oldest first;
/// `operation` fills `status.operationState` (with `syncResult.resources` =
/// `sync_result_resources` and `syncResult.revision` = `sync_revision`);
/// `sync_result_resources` also fill `status.resources`.
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
    let source = json!({"repoURL": repo_url, "path": ".", "targetRevision": "HEAD"});
    let destination = json!({"server": "https://kubernetes.default.svc", "namespace": ns});
    let history: Vec<Value> = history
        .iter()
        .map(|&(id, revision, started, deployed)| {
            json!({
                "id": id,
                "revision": revision,
                "deployStartedAt": started,
                "deployedAt": deployed,
                "source": source,
                "initiatedBy": {"automated": true},
            })
        })
        .collect();
    let resources: Vec<Value> = sync_result_resources
        .iter()
        .map(|r| {
            json!({
                "group": r.group,
                "version": r.version,
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "status": "Synced",
                "health": {"status": health},
            })
        })
        .collect();
    let mut status = json!({
        "resources": resources,
        "sync": {
            "status": "Synced",
            "comparedTo": {"source": source, "destination": destination},
            "revision": sync_revision,
        },
        "health": {"status": health, "lastTransitionTime": FIXTURE_TIME},
        "history": history,
        "reconciledAt": FIXTURE_TIME,
        "sourceType": "Directory",
        "summary": {},
        "controllerNamespace": "argocd",
    });
    if let Some(op) = operation {
        let results: Vec<Value> = sync_result_resources
            .iter()
            .map(|r| {
                json!({
                    "group": r.group,
                    "version": r.version,
                    "kind": r.kind,
                    "namespace": r.namespace,
                    "name": r.name,
                    "status": r.status,
                    "message": r.message,
                    "hookPhase": op.phase,
                    "syncPhase": "Sync",
                })
            })
            .collect();
        let mut state = json!({
            "operation": {
                "sync": {"revision": sync_revision},
                "initiatedBy": {"automated": true},
                "retry": {},
            },
            "phase": op.phase,
            "message": op.message,
            "syncResult": {"resources": results, "revision": sync_revision, "source": source},
            "startedAt": op.started_at,
        });
        if let Some(finished) = op.finished_at {
            state["finishedAt"] = json!(finished);
        }
        status["operationState"] = state;
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata(ns, name, uid, &[], &[], None),
        "spec": {
            "source": source,
            "destination": destination,
            "project": "default",
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
        "status": status,
    })
}

/// A KEDA ScaledObject (keda.sh/v1alpha1) scaling `target` = (kind, name) with one
/// prometheus trigger. `conditions` are (type, status, reason, message), e.g.
/// `("Active", "True", "ScalerActive", "Scaling is performed because triggers are active")`;
/// `last_active_time` fills `status.lastActiveTime`.
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
    let (kind, inv_ns, inv_name, inv_uid) = involved;
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "kind": kind,
            "namespace": inv_ns,
            "name": inv_name,
            "uid": inv_uid,
            "apiVersion": api_version_of(kind),
        },
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
