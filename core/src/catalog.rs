//! The metadata Catalog: what this node knows about pods and GPUs, shared between the
//! receivers that learn it and the processors that attach it to signals.
//!
//! Writers (the gpu receiver's PodResources poller, the kubernetes receiver's watchers)
//! replace whole sections copy-on-write; readers take a [`Snapshot`] — an `Arc`, so a lookup
//! never holds a lock and never waits on a writer for longer than one pointer swap.
//!
//! [`Snapshot::correlate`] walks the design's correlation chain: pod → owner chain → Argo CD
//! Application (tracking annotation or instance label) → revision, in order of trust (pod
//! annotation, the sync history entry in effect when the pod's owner was created, the current
//! sync revision), and says which source it used.

use std::collections::{BTreeMap, HashMap};
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

/// A Kubernetes object by kind, namespace, name and UID (an owner reference, a workload).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ObjectRef {
    /// `Deployment`, `ReplicaSet`, `Job`, ...
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (empty when unknown).
    pub uid: String,
}

impl ObjectRef {
    /// The Catalog key of a workload: `Kind/namespace/name`.
    pub fn key(&self) -> String {
        workload_key(&self.kind, &self.namespace, &self.name)
    }
}

/// The Catalog key of a workload: `Kind/namespace/name`.
pub fn workload_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// What the Catalog keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    /// Namespace, name and UID (container: none).
    pub pod: PodRef,
    /// `status.podIP`.
    pub ip: Option<String>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// The controller owner reference.
    pub owner: Option<ObjectRef>,
    /// Creation time, Unix ns.
    pub created_unix_nano: Option<u64>,
    /// The annotations correlation reads: `resource.opentelemetry.io/*` and the Argo CD
    /// tracking id.
    pub annotations: BTreeMap<String, String>,
    /// The labels correlation reads (`app.kubernetes.io/version`).
    pub labels: BTreeMap<String, String>,
    /// The value of the configured Argo CD instance label (`application.instanceLabelKey`,
    /// default `app.kubernetes.io/instance`), read only for a pod without an owner.
    pub instance_label: Option<String>,
}

/// A workload in a pod's owner chain (ReplicaSet, Deployment, Job, CronJob, StatefulSet,
/// DaemonSet, MPIJob, ScaledJob).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// The object itself.
    pub object: ObjectRef,
    /// Its controller owner, if any.
    pub owner: Option<ObjectRef>,
    /// Creation time, Unix ns.
    pub created_unix_nano: Option<u64>,
    /// The API group of its kind (`apps`, `batch`, `""` for core): tracking ids name it.
    pub group: String,
    /// A ReplicaSet the Deployment controller reused for a later revision (it carries
    /// `deployment.kubernetes.io/revision-history`): its creation time is an older deploy's.
    pub reused: bool,
    /// Annotation `argocd.argoproj.io/tracking-id` (`<app>:<group>/<Kind>:<ns>/<name>`).
    pub tracking: Tracking,
}

/// What a tracked object says about the Argo CD Application that manages it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracking {
    /// Annotation `argocd.argoproj.io/tracking-id` (`<app>:<group>/<Kind>:<ns>/<name>`).
    pub tracking_id: Option<String>,
    /// Annotation `argocd.argoproj.io/installation-id` (Argo CD's `installationID`).
    pub installation_id: Option<String>,
    /// The value of the configured instance label (`application.instanceLabelKey`, default
    /// `app.kubernetes.io/instance`; Argo CD 2.x label tracking).
    pub instance_label: Option<String>,
    /// Annotation `meta.helm.sh/release-name`: written by `helm install`/`upgrade`, never by
    /// Argo CD (which renders charts with `helm template`).
    pub helm_release: Option<String>,
}

/// One entry of an Argo CD Application's `status.history[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployEntry {
    /// `id`.
    pub id: i64,
    /// `revision`, or the primary source's entry of `revisions[]`.
    pub revision: String,
    /// `deployStartedAt`, Unix ns (optional upstream).
    pub deploy_started_unix_nano: Option<u64>,
    /// `deployedAt`, Unix ns.
    pub deployed_unix_nano: u64,
}

/// An Argo CD Application, as far as correlation needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArgoApp {
    /// `metadata.namespace` (where Argo CD keeps it, e.g. `argocd`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// What tracking ids and instance labels name: `name` for an Application in the
    /// controller's namespace, `<namespace>_<name>` for one elsewhere (Argo CD's
    /// `Application.InstanceName`).
    pub instance_name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The repository of the primary source (see the README's attribution rules): `spec.source`,
    /// the first `spec.sources[]` entry that renders manifests, or the sync source of
    /// `spec.sourceHydrator`.
    pub repo_url: Option<String>,
    /// `status.sync.revision`, or the primary source's entry of `status.sync.revisions[]`.
    pub sync_revision: Option<String>,
    /// `status.history[]`, oldest first.
    pub history: Vec<DeployEntry>,
    /// The deployment environment, from the configured label or annotation.
    pub environment: Option<String>,
    /// The current (or last) sync operation, `status.operationState`.
    pub operation: Option<SyncOperation>,
    /// `spec.destination.namespace`: where it deploys, for an Application deploying into
    /// this cluster (`in-cluster`); none for one deploying into another cluster.
    pub destination_namespace: Option<String>,
}

/// An Application's sync operation, as far as joining logs to its rollout trace needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOperation {
    /// The revision being synced (empty while a retry with `refresh` has not resolved the
    /// latest one yet).
    pub revision: String,
    /// `startedAt`, Unix ns.
    pub started_unix_nano: u64,
    /// `finishedAt`, Unix ns, once the operation has ended (none while running, including
    /// between two retry attempts, when Argo CD keeps `finishedAt` on a `Running` phase).
    pub finished_unix_nano: Option<u64>,
    /// The sync ended Failed or Error.
    pub failed: bool,
    /// [`workload_key`]s of the plain resources it applied (`syncResult.resources[]` with
    /// `status: Synced`, hooks left out).
    pub applied: Vec<String>,
    /// A partial sync (`operation.sync.resources`): it applies only what it lists.
    pub partial: bool,
}

/// FNV-1a, 64 bits, from a given offset basis: stable across builds and platforms (unlike
/// `std`'s hashers), which is what makes rollout ids the same in every collector.
fn fnv1a(basis: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(basis, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_BASIS_A: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_BASIS_B: u64 = 0x6c62_272e_07bb_0142;

/// The identity of one sync operation: `<app uid>/<startedAt ns>`. An Application runs one
/// operation at a time, and its `startedAt` stays the same across retries; the revision does
/// not (a retry with `refresh` resolves the latest one), so it is not part of the identity.
pub fn rollout_key(app_uid: &str, started_unix_nano: u64) -> String {
    format!("{app_uid}/{started_unix_nano}")
}

/// The trace id of a rollout (one Argo CD sync operation), derived from the operation alone
/// ([`rollout_key`]) so that every collector instance and restart derives the same one.
pub fn rollout_trace_id(app_uid: &str, started_unix_nano: u64) -> [u8; 16] {
    let key = rollout_key(app_uid, started_unix_nano);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv1a(FNV_BASIS_A, key.as_bytes()).to_be_bytes());
    id[8..].copy_from_slice(&fnv1a(FNV_BASIS_B, key.as_bytes()).to_be_bytes());
    id
}

/// A span id within a rollout trace, derived from the trace id and what the span is about
/// (`root`, `health`, `resource/<Kind>/<ns>/<name>`).
pub fn rollout_span_id(trace: &[u8; 16], what: &str) -> [u8; 8] {
    let mut bytes = trace.to_vec();
    bytes.extend_from_slice(what.as_bytes());
    // 0 is an invalid span id.
    fnv1a(FNV_BASIS_A, &bytes).max(1).to_be_bytes()
}

/// How Argo CD marks the resources it manages (`application.resourceTrackingMethod`); in
/// config: `annotation`, `label` or `annotation+label`. Read as Argo CD reads it
/// (`util/argo/resource_tracking.go` `GetAppName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TrackingMethod {
    /// `argocd.argoproj.io/tracking-id` (Argo CD 3.x default).
    #[default]
    #[serde(rename = "annotation")]
    Annotation,
    /// The instance label, `app.kubernetes.io/instance` unless configured (Argo CD 2.x
    /// default).
    #[serde(rename = "label")]
    Label,
    /// Argo CD writes both but tracks by the annotation alone: the label is informational
    /// (and is also Helm's standard release label), so it is never read.
    #[serde(rename = "annotation+label")]
    AnnotationAndLabel,
}

/// Where a revision came from, most trusted first (`hpcotel.revision.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionSource {
    /// The pod's `resource.opentelemetry.io/vcs.ref.head.revision` annotation.
    PodAnnotation,
    /// The Application history entry in effect when the pod's owner was created (the latest
    /// deploy started by then).
    History,
    /// The Application's current `status.sync.revision`.
    SyncStatus,
}

impl RevisionSource {
    /// `pod_annotation`, `history` or `sync_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionSource::PodAnnotation => "pod_annotation",
            RevisionSource::History => "history",
            RevisionSource::SyncStatus => "sync_status",
        }
    }
}

/// What a pod correlates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The pod.
    pub pod: PodMeta,
    /// The top of its owner chain (the Deployment, the CronJob...), if any.
    pub workload: Option<ObjectRef>,
    /// The Argo CD Application managing it, if tracked.
    pub app: Option<ArgoApp>,
    /// The revision and where it came from, if any source knows it.
    pub revision: Option<(String, RevisionSource)>,
}

/// How far apart the API server's clock (creation times) and Argo CD's (deploy starts) may be,
/// in ns: 2 s. An owner created less than this before a deploy started is of neither deploy.
pub const CLOCK_SKEW_NANOS: u64 = 2_000_000_000;

/// The pod annotation that pins a revision at render time (most trusted source).
pub const REVISION_ANNOTATION: &str = "resource.opentelemetry.io/vcs.ref.head.revision";
/// Argo CD 3.x resource tracking annotation.
pub const TRACKING_ID_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's installation id annotation (set when `installationID` is configured).
pub const INSTALLATION_ID_ANNOTATION: &str = "argocd.argoproj.io/installation-id";
/// Argo CD 2.x resource tracking label (the default `application.instanceLabelKey`).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The release annotation `helm install` writes (Argo CD never does).
pub const HELM_RELEASE_ANNOTATION: &str = "meta.helm.sh/release-name";

/// Argo CD's `Application.InstanceName`: `name` in the controller's namespace,
/// `<namespace>_<name>` elsewhere (neither may contain `_`, so the form is unambiguous).
pub fn app_instance_name(namespace: &str, name: &str, controller_namespace: &str) -> String {
    if namespace.is_empty() || namespace == controller_namespace {
        name.to_owned()
    } else {
        format!("{namespace}_{name}")
    }
}

/// A parsed tracking id, `<app>:<group>/<Kind>:<namespace>/<name>`
/// (Argo CD's `ParseAppInstanceValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingId<'a> {
    /// The Application's instance name.
    pub app: &'a str,
    /// API group (empty for core).
    pub group: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Namespace (the app's destination namespace for cluster-scoped objects).
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
}

impl<'a> TrackingId<'a> {
    /// Parses a tracking id; `None` when it is not in Argo CD's format.
    pub fn parse(value: &'a str) -> Option<TrackingId<'a>> {
        let mut parts = value.splitn(3, ':');
        let (app, gk, nn) = (parts.next()?, parts.next()?, parts.next()?);
        let (group, kind) = gk.split_once('/')?;
        let (namespace, name) = nn.split_once('/')?;
        if kind.contains('/') || name.contains('/') || app.is_empty() {
            return None;
        }
        Some(TrackingId {
            app,
            group,
            kind,
            namespace,
            name,
        })
    }

    /// Whether the id names the object itself (Argo CD's `isSelfReferencedObj`): a tracking
    /// id copied onto another object — the Deployment controller copies a Deployment's
    /// annotations onto its ReplicaSets — does not make that object tracked.
    pub fn names(&self, group: &str, kind: &str, namespace: &str, name: &str) -> bool {
        (namespace.is_empty() || self.namespace == namespace)
            && self.name == name
            && self.group == group
            && self.kind == kind
    }
}

/// One consistent view of the Catalog.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Device id → every pod it is allocated to, from kubelet PodResources: one entry per
    /// pod, sorted by namespace and name; a pod whose containers share the device has
    /// `container: None`. More than one entry: a shared device (time-slicing or MPS replicas,
    /// a DRA claim used by several pods). The ids are the gpu receiver's PodResources keys:
    /// GPU or MIG UUIDs (`GPU-…`, `MIG-…`, replica suffix `::<n>` dropped), GPU indices
    /// (`0`, MIG `0:1`), and NVIDIA DRA GPUs (`gpu.nvidia.com/gpu-<minor>`).
    pub gpu_allocations: HashMap<String, Vec<PodRef>>,
    /// Pod UID → pod, from whichever source knows pod UIDs.
    pub pods_by_uid: HashMap<String, PodRef>,
    /// Pod UID → what the kubernetes receiver knows of it.
    pub pods: HashMap<String, PodMeta>,
    /// Pod IP → pod UID (running pods only; host-network pods share the node's IP and are
    /// left out).
    pub pods_by_ip: HashMap<String, String>,
    /// [`workload_key`] → workload.
    pub workloads: HashMap<String, Workload>,
    /// Application instance name ([`ArgoApp::instance_name`]: `name`, or `<namespace>_<name>`
    /// outside the controller's namespace) → Application. Instance names are unique in a
    /// cluster where names are not: `team-a/web` and `team-b/web` are `team-a_web` and
    /// `team-b_web`.
    pub apps: HashMap<String, ArgoApp>,
    /// How tracking is read.
    pub tracking: TrackingMethod,
    /// Argo CD's `installationID`, when configured: annotation tracking then requires the
    /// object's `argocd.argoproj.io/installation-id` to equal it.
    pub installation_id: Option<String>,
}

impl Snapshot {
    /// The pods a GPU or MIG device is allocated to (empty: none; several: a shared device),
    /// in [`Snapshot::gpu_allocations`] order, each with its UID filled in when another
    /// section of the Catalog knows it.
    pub fn pods_for_device(&self, device_id: &str) -> Vec<PodRef> {
        let Some(holders) = self.gpu_allocations.get(device_id) else {
            return Vec::new();
        };
        holders
            .iter()
            .map(|pod| {
                let mut pod = pod.clone();
                if pod.uid.is_none() {
                    pod.uid = self
                        .pods_by_uid
                        .iter()
                        .find(|(_, p)| p.namespace == pod.namespace && p.name == pod.name)
                        .map(|(uid, _)| uid.clone());
                }
                pod
            })
            .collect()
    }
}

impl Snapshot {
    /// The Application an object is tracked by, read as Argo CD reads it under the
    /// configured method (see [`TrackingMethod`]); `object` is (group, kind, namespace,
    /// name) of the object itself.
    fn tracked_app(&self, object: (&str, &str, &str, &str), t: &Tracking) -> Option<&ArgoApp> {
        let (group, kind, namespace, name) = object;
        let by_annotation = || {
            if let Some(id) = &self.installation_id
                && t.installation_id.as_ref() != Some(id)
            {
                return None;
            }
            let id = TrackingId::parse(t.tracking_id.as_deref()?)?;
            if !id.names(group, kind, namespace, name) {
                return None;
            }
            self.apps.get(id.app)
        };
        let by_label = || {
            // `helm install` wrote this object: its instance label is Helm's release name,
            // which Argo CD cannot tell from its own; claiming it could be a wrong answer.
            if t.helm_release.is_some() {
                return None;
            }
            self.apps.get(t.instance_label.as_deref()?)
        };
        match self.tracking {
            TrackingMethod::Annotation | TrackingMethod::AnnotationAndLabel => by_annotation(),
            TrackingMethod::Label => by_label(),
        }
    }

    /// The correlation chain of pod `uid`: owners, Application, revision. `None` when the pod
    /// is unknown.
    pub fn correlate(&self, uid: &str) -> Option<Correlation> {
        let pod = self.pods.get(uid)?.clone();
        // Walk the owner chain (bounded: owner references can form no cycle in a sane
        // cluster, but the Catalog must not trust that).
        let mut chain: Vec<&Workload> = Vec::new();
        let mut next = pod.owner.clone();
        while let Some(o) = next.take() {
            if chain.len() >= 8 {
                break;
            }
            let Some(w) = self.workloads.get(&o.key()) else {
                break;
            };
            next = w.owner.clone();
            chain.push(w);
        }
        let top = chain
            .last()
            .map(|w| w.object.clone())
            .or_else(|| pod.owner.clone());
        // Tracking counts on the root object only, as Argo CD assigns an Application only to
        // objects without owner references (`controller/cache`): the top of the chain when
        // the chain reaches one (not when an owner could not be read or is of a kind not
        // followed), or the pod itself when it has no owner (a bare Pod in the manifests).
        // A controller's ReplicaSets and pods carry labels from their template and
        // annotations copied from their owner, which say nothing of tracking.
        let root = chain.last().filter(|w| w.owner.is_none());
        let app = root
            .and_then(|w| {
                let o = &w.object;
                self.tracked_app((&w.group, &o.kind, &o.namespace, &o.name), &w.tracking)
            })
            .or_else(|| {
                if pod.owner.is_some() {
                    return None;
                }
                let a = &pod.annotations;
                let tracking = Tracking {
                    tracking_id: a.get(TRACKING_ID_ANNOTATION).cloned(),
                    installation_id: a.get(INSTALLATION_ID_ANNOTATION).cloned(),
                    instance_label: pod.instance_label.clone(),
                    helm_release: a.get(HELM_RELEASE_ANNOTATION).cloned(),
                };
                self.tracked_app(("", "Pod", &pod.pod.namespace, &pod.pod.name), &tracking)
            })
            .cloned();
        let revision = if let Some(r) = pod.annotations.get(REVISION_ANNOTATION) {
            Some((r.clone(), RevisionSource::PodAnnotation))
        } else if let Some(app) = &app {
            // The pod's direct owner (a ReplicaSet, a Job) is created by the sync that rolled
            // the revision out; the pod itself may come much later (a restart, a scale-up).
            // Only ReplicaSets and Jobs are created anew by a rollout; a StatefulSet's or a
            // DaemonSet's pods are replaced in place, so their own creation is what counts.
            // A ReplicaSet the Deployment controller reused (a rollback to an earlier
            // template scales the old one up again: it then carries
            // `deployment.kubernetes.io/revision-history`) was created by an older deploy;
            // its pods, created when it was scaled up, tell the deploy that runs them.
            let created = chain
                .first()
                .filter(|w| matches!(w.object.kind.as_str(), "ReplicaSet" | "Job"))
                .filter(|w| !w.reused)
                .and_then(|w| w.created_unix_nano)
                .or(pod.created_unix_nano);
            // The revision in effect when it was created: the latest deploy that had started
            // by then. (A ReplicaSet is created while its sync runs, i.e. inside the
            // [deployStartedAt, deployedAt] window, or right after it when the controller lags.)
            // The last operation counts as the newest deploy: Argo CD writes its history entry
            // only when it ends (and a failed one writes none), but the ReplicaSets it created
            // run its revision. A running sync counts for every workload of the app (it
            // applies them as it goes); a failed or partial one only for the workload it
            // applied (a failed sync may have stopped before, a partial one lists what it
            // touches).
            let top_key = top.as_ref().map(ObjectRef::key);
            let in_flight = app
                .operation
                .as_ref()
                .filter(|op| !op.revision.is_empty())
                .filter(|op| {
                    !(op.failed || op.partial)
                        || top_key.as_ref().is_some_and(|k| op.applied.contains(k))
                })
                .map(|op| (op.started_unix_nano, &op.revision));
            let starts = || {
                app.history
                    .iter()
                    .map(|h| {
                        (
                            h.deploy_started_unix_nano.unwrap_or(h.deployed_unix_nano),
                            &h.revision,
                        )
                    })
                    .chain(in_flight)
            };
            // Creation times come from the API server's clock and deploy starts from Argo
            // CD's, both in whole seconds: an owner created just before a deploy started
            // (within CLOCK_SKEW) may have been created by it. Neither answer is safe.
            let ambiguous = created.is_some_and(|t| {
                starts().any(|(start, _)| t < start && start - t <= CLOCK_SKEW_NANOS)
            });
            let from_history = created.filter(|_| !ambiguous).and_then(|t| {
                starts()
                    .filter(|(start, _)| *start <= t)
                    .max_by_key(|(start, _)| *start)
                    .map(|(_, r)| (r.clone(), RevisionSource::History))
            });
            // The current sync revision only when the history cannot answer: no entry (or no
            // creation time) to go by. An owner created before every recorded deploy (adopted
            // by Argo CD, or older than `revisionHistoryLimit` entries) runs a revision the
            // history no longer names: unknown, not the current one.
            let history_known =
                created.is_some() && (!app.history.is_empty() || in_flight.is_some());
            match from_history {
                Some(r) => Some(r),
                None if history_known => None,
                None => app
                    .sync_revision
                    .clone()
                    .map(|r| (r, RevisionSource::SyncStatus)),
            }
        } else {
            None
        };
        Some(Correlation {
            pod,
            workload: top,
            app,
            revision,
        })
    }

    /// The owner chain of `pod`, nearest first: its controller owner reference, that
    /// workload's controller owner, and so on, as far as the Catalog's workloads lead (the
    /// last entry may be an owner the Catalog holds no workload for: its reference is still
    /// known). Empty for a pod without an owner. Bounded like [`Snapshot::correlate`]'s walk.
    pub fn owner_chain(&self, pod: &PodMeta) -> Vec<ObjectRef> {
        let mut chain = Vec::new();
        let mut next = pod.owner.clone();
        while let Some(o) = next.take() {
            if chain.len() >= 8 {
                break;
            }
            next = self.workloads.get(&o.key()).and_then(|w| w.owner.clone());
            chain.push(o);
        }
        chain
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

    /// Replaces the GPU allocation section (device id → the pods holding it) wholesale.
    pub fn set_gpu_allocations(&self, allocations: HashMap<String, Vec<PodRef>>) {
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
        let other = PodRef {
            namespace: "serving".into(),
            name: "llm-0".into(),
            container: Some("vllm".into()),
            uid: None,
        };
        catalog.set_gpu_allocations(HashMap::from([
            ("GPU-1".to_string(), vec![pod.clone()]),
            ("GPU-3".to_string(), vec![pod.clone(), other.clone()]),
        ]));
        let before = catalog.snapshot();
        catalog.update(|s| {
            s.pods_by_uid.insert("uid-1".into(), pod.clone());
        });
        assert!(before.pods_by_uid.is_empty(), "an old view does not change");
        let found = catalog.snapshot().pods_for_device("GPU-1");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].uid.as_deref(), Some("uid-1"));
        assert_eq!(found[0].container.as_deref(), Some("main"));
        assert!(catalog.snapshot().pods_for_device("GPU-2").is_empty());
        let shared = catalog.snapshot().pods_for_device("GPU-3");
        let uids: Vec<_> = shared.iter().map(|p| p.uid.as_deref()).collect();
        assert_eq!(
            uids,
            [Some("uid-1"), None],
            "every holder, in order, UIDs where known"
        );
    }

    const S: u64 = 1_000_000_000;

    fn obj(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            namespace: "ml".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    /// App `train`: revision A deployed in [100 s, 110 s], B in [200 s, 215 s]; Deployment
    /// `trainer` with ReplicaSets `trainer-a` (created 105 s) and `trainer-b` (created 216 s,
    /// just after B's sync ended); one pod per ReplicaSet.
    fn cluster(tracking_annotation: bool, tracking_label: bool) -> Snapshot {
        let mut s = Snapshot::default();
        s.apps.insert(
            "train".into(),
            ArgoApp {
                namespace: "argocd".into(),
                name: "train".into(),
                instance_name: "train".into(),
                uid: "app-uid".into(),
                repo_url: Some("https://git.example.com/ml/train.git".into()),
                sync_revision: Some("B".into()),
                history: vec![
                    DeployEntry {
                        id: 1,
                        revision: "A".into(),
                        deploy_started_unix_nano: Some(100 * S),
                        deployed_unix_nano: 110 * S,
                    },
                    DeployEntry {
                        id: 2,
                        revision: "B".into(),
                        deploy_started_unix_nano: Some(200 * S),
                        deployed_unix_nano: 215 * S,
                    },
                ],
                environment: Some("prod".into()),
                operation: None,
                destination_namespace: None,
            },
        );
        let deployment = Workload {
            object: obj("Deployment", "trainer"),
            owner: None,
            created_unix_nano: Some(50 * S),
            group: "apps".into(),
            tracking: Tracking {
                tracking_id: tracking_annotation.then(|| "train:apps/Deployment:ml/trainer".into()),
                instance_label: tracking_label.then(|| "train".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        s.workloads.insert(deployment.object.key(), deployment);
        for (rs, created) in [("trainer-a", 105), ("trainer-b", 216)] {
            let w = Workload {
                object: obj("ReplicaSet", rs),
                owner: Some(obj("Deployment", "trainer")),
                created_unix_nano: Some(created * S),
                ..Default::default()
            };
            s.workloads.insert(w.object.key(), w);
            let pod = PodMeta {
                pod: PodRef {
                    namespace: "ml".into(),
                    name: format!("{rs}-x"),
                    container: None,
                    uid: Some(format!("pod-{rs}")),
                },
                owner: Some(obj("ReplicaSet", rs)),
                created_unix_nano: Some(300 * S),
                ..Default::default()
            };
            s.pods.insert(format!("pod-{rs}"), pod);
        }
        s
    }

    #[test]
    fn each_pod_gets_the_revision_its_replicaset_was_created_under() {
        let s = cluster(true, false);
        let a = s.correlate("pod-trainer-a").unwrap();
        assert_eq!(a.revision, Some(("A".into(), RevisionSource::History)));
        assert_eq!(a.app.as_ref().unwrap().name, "train");
        assert_eq!(a.workload.unwrap().key(), "Deployment/ml/trainer");
        let b = s.correlate("pod-trainer-b").unwrap();
        assert_eq!(b.revision, Some(("B".into(), RevisionSource::History)));
        assert!(s.correlate("no-such-pod").is_none());
    }

    #[test]
    fn both_tracking_methods_resolve_and_the_method_is_honoured() {
        for (annotation, label, method, found) in [
            (true, false, TrackingMethod::Annotation, true),
            (false, true, TrackingMethod::Label, true),
            (true, false, TrackingMethod::AnnotationAndLabel, true),
            // Argo CD tracks by the annotation alone in this mode: the label is informational.
            (false, true, TrackingMethod::AnnotationAndLabel, false),
            (false, true, TrackingMethod::Annotation, false),
            (true, false, TrackingMethod::Label, false),
        ] {
            let mut s = cluster(annotation, label);
            s.tracking = method;
            let c = s.correlate("pod-trainer-b").unwrap();
            assert_eq!(c.app.is_some(), found, "{annotation} {label} {method:?}");
            assert_eq!(c.revision.is_some(), found);
        }
    }

    #[test]
    fn a_replicaset_created_by_a_sync_in_progress_runs_its_revision() {
        let mut s = cluster(true, false);
        let app = s.apps.get_mut("train").unwrap();
        app.history.pop(); // B's entry is written only when its sync ends
        app.operation = Some(SyncOperation {
            revision: "B".into(),
            started_unix_nano: 200 * S,
            finished_unix_nano: None,
            failed: false,
            ..Default::default()
        });
        let b = s.correlate("pod-trainer-b").unwrap();
        assert_eq!(b.revision, Some(("B".into(), RevisionSource::History)));
        let a = s.correlate("pod-trainer-a").unwrap();
        assert_eq!(a.revision, Some(("A".into(), RevisionSource::History)));
    }

    #[test]
    fn the_pod_annotation_wins_and_sync_status_is_the_last_resort() {
        let mut s = cluster(true, false);
        s.pods
            .get_mut("pod-trainer-a")
            .unwrap()
            .annotations
            .insert(REVISION_ANNOTATION.into(), "pinned".into());
        let c = s.correlate("pod-trainer-a").unwrap();
        assert_eq!(
            c.revision,
            Some(("pinned".into(), RevisionSource::PodAnnotation))
        );
        assert_eq!(RevisionSource::PodAnnotation.as_str(), "pod_annotation");
        // No history: the current sync revision.
        s.apps.get_mut("train").unwrap().history.clear();
        let c = s.correlate("pod-trainer-b").unwrap();
        assert_eq!(c.revision, Some(("B".into(), RevisionSource::SyncStatus)));
    }

    #[test]
    fn the_owner_chain_runs_from_the_direct_owner_to_the_top() {
        let mut s = cluster(true, false);
        let pod = s.pods["pod-trainer-a"].clone();
        let keys = |chain: Vec<ObjectRef>| chain.iter().map(ObjectRef::key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.owner_chain(&pod)),
            ["ReplicaSet/ml/trainer-a", "Deployment/ml/trainer"]
        );
        assert!(s.owner_chain(&PodMeta::default()).is_empty());
        // An owner the Catalog has no workload for still ends the chain by its reference.
        s.workloads.remove("Deployment/ml/trainer");
        assert_eq!(
            keys(s.owner_chain(&pod)),
            ["ReplicaSet/ml/trainer-a", "Deployment/ml/trainer"]
        );
        // A cycle does not loop forever.
        s.workloads.insert(
            "Deployment/ml/trainer".into(),
            Workload {
                object: obj("Deployment", "trainer"),
                owner: Some(obj("ReplicaSet", "trainer-a")),
                ..Default::default()
            },
        );
        assert_eq!(s.owner_chain(&pod).len(), 8);
    }

    /// Two teams each with an Application `web` in their own namespace (apps in any
    /// namespace, controller in `argocd`), each tracking its own Deployment `web`.
    fn two_teams() -> Snapshot {
        let mut s = Snapshot::default();
        for (team, rev) in [("team-a", "a1"), ("team-b", "b1")] {
            let instance = app_instance_name(team, "web", "argocd");
            s.apps.insert(
                instance.clone(),
                ArgoApp {
                    namespace: team.into(),
                    name: "web".into(),
                    instance_name: instance.clone(),
                    uid: format!("uid-app-{team}"),
                    repo_url: Some(format!("https://git.example.com/{team}/web.git")),
                    sync_revision: Some(rev.into()),
                    ..Default::default()
                },
            );
            let object = ObjectRef {
                kind: "Deployment".into(),
                namespace: team.into(),
                name: "web".into(),
                uid: format!("uid-dep-{team}"),
            };
            s.workloads.insert(
                object.key(),
                Workload {
                    object: object.clone(),
                    group: "apps".into(),
                    tracking: Tracking {
                        tracking_id: Some(format!("{instance}:apps/Deployment:{team}/web")),
                        instance_label: Some(instance.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            );
            s.pods.insert(
                format!("pod-{team}"),
                PodMeta {
                    pod: PodRef {
                        namespace: team.into(),
                        name: "web-0".into(),
                        container: None,
                        uid: Some(format!("pod-{team}")),
                    },
                    owner: Some(object),
                    ..Default::default()
                },
            );
        }
        s
    }

    #[test]
    fn same_named_apps_in_two_namespaces_keep_their_own_pods_and_revisions() {
        for method in [TrackingMethod::Annotation, TrackingMethod::Label] {
            let mut s = two_teams();
            s.tracking = method;
            for (team, rev) in [("team-a", "a1"), ("team-b", "b1")] {
                let c = s.correlate(&format!("pod-{team}")).unwrap();
                let app = c.app.expect("tracked");
                assert_eq!((app.namespace.as_str(), app.name.as_str()), (team, "web"));
                assert_eq!(
                    app.repo_url.as_deref(),
                    Some(format!("https://git.example.com/{team}/web.git").as_str())
                );
                assert_eq!(c.revision.unwrap().0, rev, "{method:?}");
            }
            // Deleting one leaves the other.
            s.apps.remove(&app_instance_name("team-b", "web", "argocd"));
            assert!(s.correlate("pod-team-b").unwrap().app.is_none());
            assert!(s.correlate("pod-team-a").unwrap().app.is_some());
        }
        assert_eq!(app_instance_name("argocd", "web", "argocd"), "web");
        assert_eq!(app_instance_name("team-a", "web", "argocd"), "team-a_web");
    }

    #[test]
    fn a_tracking_id_counts_only_on_the_object_it_names_and_for_this_installation() {
        let mut s = cluster(true, false);
        // The Deployment controller copies the Deployment's annotations onto its ReplicaSets;
        // a copy names another object and is not tracking.
        let key = "Deployment/ml/trainer";
        let copied = "train:apps/Deployment:ml/other";
        s.workloads.get_mut(key).unwrap().tracking.tracking_id = Some(copied.into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_none());
        let id = TrackingId::parse("train:apps/Deployment:ml/trainer").unwrap();
        assert!(id.names("apps", "Deployment", "ml", "trainer"));
        assert!(!id.names("apps", "ReplicaSet", "ml", "trainer"));
        assert!(!id.names("", "Deployment", "ml", "trainer"));
        assert_eq!(TrackingId::parse("cm:/ConfigMap:ml/x").unwrap().group, "");
        for bad in [
            "train",
            "train:apps/Deployment",
            "train:Deployment:ml/x",
            ":a/B:c/d",
        ] {
            assert!(TrackingId::parse(bad).is_none(), "{bad}");
        }
        // With an installation id configured, only objects carrying it are this Argo CD's.
        let mut s = cluster(true, false);
        s.installation_id = Some("prod-argo".into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_none());
        s.workloads.get_mut(key).unwrap().tracking.installation_id = Some("prod-argo".into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_some());
    }

    #[test]
    fn a_helm_release_named_like_an_app_is_not_claimed_and_pod_labels_do_not_track() {
        // Label tracking: a Deployment installed by `helm install train` carries
        // app.kubernetes.io/instance=train like the app's own would.
        let mut s = cluster(false, true);
        s.tracking = TrackingMethod::Label;
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_some());
        let key = "Deployment/ml/trainer";
        s.workloads.get_mut(key).unwrap().tracking.helm_release = Some("train".into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_none());
        // A controller's pod inherits its template's labels: they do not track it.
        let mut s = cluster(false, false);
        s.tracking = TrackingMethod::Label;
        s.pods.get_mut("pod-trainer-b").unwrap().instance_label = Some("train".into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_none());
        // A bare Pod (no owner) is a top-level manifest: its own tracking counts.
        let pod = s.pods.get_mut("pod-trainer-b").unwrap();
        pod.owner = None;
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_some());
    }

    #[test]
    fn an_owner_older_than_every_recorded_deploy_has_no_revision() {
        let mut s = cluster(true, false);
        // trainer-a was created at 105 s; keep only B's entry (200 s): the history no longer
        // says what trainer-a runs, and the current revision B would be a wrong answer.
        s.apps.get_mut("train").unwrap().history.remove(0);
        let a = s.correlate("pod-trainer-a").unwrap();
        assert!(a.app.is_some());
        assert_eq!(a.revision, None);
        let b = s.correlate("pod-trainer-b").unwrap();
        assert_eq!(b.revision, Some(("B".into(), RevisionSource::History)));
    }

    #[test]
    fn a_failed_or_partial_sync_counts_only_for_what_it_applied() {
        // B's sync failed after applying the Deployment (a PostSync hook failed): its
        // ReplicaSet trainer-b (created 216 s) runs B, though no history entry says so.
        let mut s = cluster(true, false);
        let app = s.apps.get_mut("train").unwrap();
        app.history.pop();
        app.sync_revision = None;
        let op = |applied: Vec<String>, failed, partial| SyncOperation {
            revision: "B".into(),
            started_unix_nano: 200 * S,
            finished_unix_nano: Some(230 * S),
            failed,
            applied,
            partial,
        };
        let deployment = vec![workload_key("Deployment", "ml", "trainer")];
        for (applied, failed, partial, expected) in [
            (deployment.clone(), true, false, "B"),
            (Vec::new(), true, false, "A"),
            (deployment.clone(), false, true, "B"),
            (
                vec![workload_key("Deployment", "ml", "other")],
                false,
                true,
                "A",
            ),
        ] {
            s.apps.get_mut("train").unwrap().operation = Some(op(applied.clone(), failed, partial));
            let b = s.correlate("pod-trainer-b").unwrap();
            assert_eq!(
                b.revision,
                Some((expected.into(), RevisionSource::History)),
                "applied {applied:?} failed {failed} partial {partial}"
            );
        }
    }

    #[test]
    fn only_the_root_of_the_owner_chain_is_tracked() {
        // The Deployment could not be read: the chain stops at the ReplicaSet, whose
        // template-inherited instance label says nothing of tracking.
        let mut s = cluster(false, false);
        s.tracking = TrackingMethod::Label;
        s.workloads.remove("Deployment/ml/trainer");
        s.workloads
            .get_mut("ReplicaSet/ml/trainer-b")
            .unwrap()
            .tracking
            .instance_label = Some("train".into());
        assert!(s.correlate("pod-trainer-b").unwrap().app.is_none());
    }

    #[test]
    fn a_reused_replicaset_goes_by_its_pods_and_a_skewed_clock_by_nothing() {
        // trainer-a (created 105 s, under A) is scaled up again by a rollback deployed as B
        // (200 s): the Deployment controller marks it reused; its new pod (300 s) runs B.
        let mut s = cluster(true, false);
        s.workloads
            .get_mut("ReplicaSet/ml/trainer-a")
            .unwrap()
            .reused = true;
        let a = s.correlate("pod-trainer-a").unwrap();
        assert_eq!(a.revision, Some(("B".into(), RevisionSource::History)));
        // A ReplicaSet created one second before B's sync started (by the API server's
        // clock) may be B's own: no answer rather than A.
        let mut s = cluster(true, false);
        s.workloads
            .get_mut("ReplicaSet/ml/trainer-b")
            .unwrap()
            .created_unix_nano = Some(199 * S);
        assert_eq!(s.correlate("pod-trainer-b").unwrap().revision, None);
        s.workloads
            .get_mut("ReplicaSet/ml/trainer-b")
            .unwrap()
            .created_unix_nano = Some(190 * S);
        assert_eq!(
            s.correlate("pod-trainer-b").unwrap().revision,
            Some(("A".into(), RevisionSource::History)),
            "well before B: A's"
        );
    }
}
