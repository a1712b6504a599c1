//! [`KubernetesReceiver`]: kube-runtime watchers (with backoff) on this node's pods and on
//! Argo CD Applications; owners fetched lazily and cached; everything published to the
//! Catalog. The pod watch also turns container status changes into lifecycle log records
//! ([`lifecycle`](super::lifecycle)) when a logs pipeline lists the receiver.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use hpcotel_core::catalog::{ObjectRef, Workload};
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{self, kv, unix_nanos};
use hpcotel_core::{Batch, Catalog, ComponentError, Outputs, Receiver, ReceiverContext, Signal};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{AuthType, Config, Mode};
use super::convert;
use super::events;
use super::keda;
use super::lease::{self, Exported, Takeover};
use super::lifecycle::Lifecycle;
use super::tracker::Tracker;
use super::{Error, Result};

/// `service.name` of rollout traces (what one searches for in Tempo).
pub const ROLLOUT_SERVICE_NAME: &str = "argocd";

/// How long the pod watch waits for room in the logs pipelines for one pod update's lifecycle
/// records before it refuses them (counted as refused, reason `pipeline_full`): the watch
/// also keeps the Catalog current for every other signal, so it must not stall.
const LIFECYCLE_SEND_WAIT: Duration = Duration::from_millis(250);

/// How long one owner read may take before the pod watch moves on.
const OWNER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Owner chains are at most this deep (Pod → ReplicaSet → Deployment is 2).
const MAX_OWNER_DEPTH: usize = 6;

/// The workload kinds whose objects are fetched to walk owner chains: kind → (group, version,
/// plural).
pub const WORKLOAD_KINDS: &[(&str, &str, &str, &str)] = &[
    ("ReplicaSet", "apps", "v1", "replicasets"),
    ("Deployment", "apps", "v1", "deployments"),
    ("StatefulSet", "apps", "v1", "statefulsets"),
    ("DaemonSet", "apps", "v1", "daemonsets"),
    ("Job", "batch", "v1", "jobs"),
    ("CronJob", "batch", "v1", "cronjobs"),
    ("MPIJob", "kubeflow.org", "v2beta1", "mpijobs"),
    ("ScaledJob", "keda.sh", "v1alpha1", "scaledjobs"),
];

fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Builds a kube client for `config`.
pub async fn client(config: &Config) -> Result<Client> {
    let mut kc = match config.auth_type {
        AuthType::ServiceAccount => kube::Config::incluster().map_err(|e| Error::Config {
            what: "the in-cluster service account (auth_type: serviceAccount)".into(),
            source: Box::new(e),
        })?,
        AuthType::KubeConfig => kube::Config::infer().await.map_err(|e| Error::Config {
            what: "the kubeconfig (auth_type: kubeConfig)".into(),
            source: Box::new(e),
        })?,
        AuthType::None => {
            let url = config.endpoint.as_deref().unwrap_or_default();
            kube::Config::new(url.parse().map_err(|e| Error::Config {
                what: format!("endpoint '{url}'"),
                source: Box::new(e),
            })?)
        }
    };
    if let (Some(url), false) = (&config.endpoint, config.auth_type == AuthType::None) {
        kc.cluster_url = url.parse().map_err(|e| Error::Config {
            what: format!("endpoint '{url}'"),
            source: Box::new(e),
        })?;
    }
    Client::try_from(kc).map_err(|e| Error::Config {
        what: "the API client".into(),
        source: Box::new(e),
    })
}

/// The kubernetes receiver; build it with [`KubernetesReceiver::new`], run it as a
/// [`Receiver`]. It fills the Catalog; a node agent listed in a logs pipeline emits pod
/// lifecycle logs, the cluster instance (or Lease holder) the cluster output.
pub struct KubernetesReceiver {
    config: Config,
    catalog: Catalog,
    client: Client,
}

impl std::fmt::Debug for KubernetesReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesReceiver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubernetesReceiver {
    /// Builds the API client (no request is made yet: an unreachable API server is retried
    /// with backoff while running, and the rest of the collector keeps working).
    pub async fn new(config: &Config, catalog: Catalog) -> Result<KubernetesReceiver> {
        Ok(KubernetesReceiver {
            client: client(config).await?,
            config: config.clone(),
            catalog,
        })
    }
}

/// Logs a watch's failures once per outage and its recovery once.
struct WatchHealth {
    what: &'static str,
    failing: bool,
}

impl WatchHealth {
    fn error(&mut self, e: &watcher::Error) {
        if !self.failing {
            tracing::warn!(watch = self.what, error = %e, "Kubernetes watch failed; retrying with backoff (the Catalog keeps its last state)");
            self.failing = true;
        } else {
            tracing::debug!(watch = self.what, error = %e, "Kubernetes watch still failing");
        }
    }

    fn ok(&mut self) {
        if self.failing {
            tracing::info!(watch = self.what, "Kubernetes watch recovered");
            self.failing = false;
        }
    }

    /// The next event of a watch, logging failures (which the backoff retries) on the way;
    /// `None` when the stream ends.
    async fn next<K>(
        &mut self,
        stream: &mut (impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Unpin),
    ) -> Option<Event<K>> {
        loop {
            match stream.next().await? {
                Ok(e) => {
                    self.ok();
                    return Some(e);
                }
                Err(e) => self.error(&e),
            }
        }
    }
}

#[async_trait]
impl Receiver for KubernetesReceiver {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let KubernetesReceiver {
            config,
            catalog,
            client,
        } = *self;
        let tracking = config.argocd.tracking_method;
        let installation_id = config.argocd.installation_id.clone();
        catalog.update(|s| {
            s.tracking = tracking;
            s.installation_id = installation_id;
        });
        let label_key: Arc<str> = Arc::from(config.argocd.instance_label_key.as_str());
        let owners = Arc::new(Owners {
            client: client.clone(),
            catalog: catalog.clone(),
            fetched: Mutex::new(HashMap::new()),
            label_key: label_key.clone(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        let cluster = config.mode == Mode::Cluster;
        if !cluster {
            let lifecycle = if !config.lifecycle_logs {
                None
            } else if ctx.outputs.handles(Signal::Logs) {
                Some((
                    Lifecycle::new(unix_nanos(SystemTime::now())),
                    ctx.outputs.clone(),
                ))
            } else {
                tracing::debug!(receiver = %ctx.id, "pod lifecycle logs off: no logs pipeline lists this receiver");
                None
            };
            tasks.spawn(watch_pods(
                client.clone(),
                config.node_name.clone(),
                catalog.clone(),
                owners,
                label_key.clone(),
                lifecycle,
            ));
        }
        // Cluster duties (rollout traces, Event logs), handed to the pipelines by this task:
        // always in cluster mode; while holding the Lease for a node agent with
        // leader_election.
        let (out_tx, mut out_rx) = mpsc::channel::<Batch>(64);
        let app = api_resource("argoproj.io", "v1alpha1", "Application", "applications");
        let app_apis: Vec<(Option<String>, Api<DynamicObject>)> =
            if config.argocd.namespaces.is_empty() {
                vec![(None, Api::<DynamicObject>::all_with(client.clone(), &app))]
            } else {
                config
                    .argocd
                    .namespaces
                    .iter()
                    .map(|ns| {
                        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &app);
                        (Some(ns.clone()), api)
                    })
                    .collect()
            };
        let apps_config = AppsConfig {
            environment_label: config.argocd.environment_label.clone(),
            controller_namespace: config.argocd.controller_namespace.clone(),
        };
        let duties = |tasks: &mut tokio::task::JoinSet<()>,
                      takeover: Option<Takeover>,
                      exported: Option<Exported>| {
            tasks.spawn(watch_events(
                client.clone(),
                catalog.clone(),
                config.rollouts.settle_timeout,
                out_tx.clone(),
            ));
            for (kind, plural) in [
                ("ScaledObject", "scaledobjects"),
                ("ScaledJob", "scaledjobs"),
            ] {
                tasks.spawn(watch_keda(
                    Api::all_with(
                        client.clone(),
                        &api_resource("keda.sh", "v1alpha1", kind, plural),
                    ),
                    kind,
                    catalog.clone(),
                    config.rollouts.settle_timeout,
                    out_tx.clone(),
                ));
            }
            // One tracker for every watched namespace: one set of exported operations, one
            // state file, one list published in the Lease.
            let mut tracker = Tracker::new(&config.rollouts, unix_nanos(SystemTime::now()));
            if let (Some(t), Some(exported)) = (takeover.clone(), exported.clone()) {
                tracker = tracker.taking_over(t.previous, t.authoritative, exported);
            }
            let tracker = Arc::new(std::sync::Mutex::new(tracker));
            for (ns, api) in &app_apis {
                tasks.spawn(watch_apps(
                    api.clone(),
                    ns.clone(),
                    catalog.clone(),
                    apps_config.clone(),
                    Some((tracker.clone(), out_tx.clone())),
                ));
            }
        };
        if cluster {
            duties(&mut tasks, None, None);
        } else {
            // Node agents keep the Applications in the Catalog for correlation.
            for (ns, api) in &app_apis {
                tasks.spawn(watch_apps(
                    api.clone(),
                    ns.clone(),
                    catalog.clone(),
                    apps_config.clone(),
                    None,
                ));
            }
        }
        let (leading_tx, mut leading_rx) = watch::channel::<Option<Takeover>>(None);
        // Not a child of the shutdown token: the elector releases the Lease only after the
        // leader's tasks have stopped, with everything they exported.
        let elector_stop = CancellationToken::new();
        let exported: Exported = Arc::default();
        let mut elector = None;
        if let (Some(le), false) = (&config.leader_election, cluster) {
            let identity = le
                .identity
                .clone()
                .or_else(|| config.node_name.clone())
                .unwrap_or_else(|| {
                    sysinfo::System::host_name().unwrap_or_else(|_| "hpcotel".into())
                });
            elector = Some(tokio::spawn(lease::run(
                client.clone(),
                le.clone(),
                identity,
                exported.clone(),
                leading_tx,
                elector_stop.clone(),
            )));
        }
        let mut leader_duties = tokio::task::JoinSet::new();
        tracing::info!(receiver = %ctx.id, mode = ?config.mode, node = ?config.node_name, "watching Kubernetes");
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                Some(batch) = out_rx.recv() => send(&ctx, batch).await,
                changed = leading_rx.changed(), if elector.is_some() => {
                    if changed.is_err() {
                        continue;
                    }
                    let now_leading = leading_rx.borrow_and_update().clone();
                    match now_leading {
                        Some(takeover) => {
                            // A missed None (the loop was busy sending) must not leave a
                            // second set of leader tasks running beside the first.
                            leader_duties.abort_all();
                            duties(&mut leader_duties, Some(takeover), Some(exported.clone()));
                        }
                        None => leader_duties.abort_all(),
                    }
                }
            }
        }
        tasks.shutdown().await;
        leader_duties.shutdown().await;
        elector_stop.cancel();
        if let Some(e) = elector {
            let _ = e.await;
        }
        drop(out_tx);
        // What was completed just before shutdown is still delivered.
        while let Ok(batch) = out_rx.try_recv() {
            send(&ctx, batch).await;
        }
        Ok(())
    }
}

/// One rollout trace as a batch (service `argocd`).
fn rollout_batch(spans: Vec<Span>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv(semconv::SERVICE_NAME, ROLLOUT_SERVICE_NAME)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(telemetry::scope()),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Hands a batch to the pipelines, waiting for room: rollouts and Events are rare, and each
/// rollout trace is the whole story of one deploy.
async fn send(ctx: &ReceiverContext, batch: Batch) {
    if let Err(e) = ctx.outputs.send(batch).await {
        tracing::warn!(receiver = %ctx.id, error = %e, "cluster output not delivered");
    }
}

/// One cluster-output log record as a batch, its resource the namespace it is about.
fn namespace_log(namespace: String, record: LogRecord) -> Batch {
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv(semconv::K8S_NAMESPACE_NAME, namespace)],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(telemetry::scope()),
            log_records: vec![record],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

async fn watch_keda(
    api: Api<DynamicObject>,
    kind: &'static str,
    catalog: Catalog,
    settle: Duration,
    out: mpsc::Sender<Batch>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut health = WatchHealth {
        what: "keda scaled objects and jobs",
        failing: false,
    };
    let settle_ns = u64::try_from(settle.as_nanos()).unwrap_or(u64::MAX);
    let mut transitions = keda::Transitions::default();
    while let Some(event) = health.next(&mut stream).await {
        let records = match &event {
            Event::Apply(o) | Event::InitApply(o) => transitions.observe(
                o,
                kind,
                &catalog.snapshot(),
                unix_nanos(SystemTime::now()),
                settle_ns,
            ),
            Event::Delete(o) => {
                transitions.forget(o, kind);
                Vec::new()
            }
            Event::InitDone => {
                transitions.listed();
                Vec::new()
            }
            Event::Init => Vec::new(),
        };
        for record in records {
            let namespace = telemetry::attr_str(&record.attributes, semconv::K8S_NAMESPACE_NAME)
                .unwrap_or_default()
                .to_owned();
            let batch = namespace_log(namespace, record);
            if out.send(batch).await.is_err() {
                return;
            }
        }
    }
}

async fn watch_events(
    client: Client,
    catalog: Catalog,
    settle: Duration,
    out: mpsc::Sender<Batch>,
) {
    let api: Api<CoreEvent> = Api::all(client);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut health = WatchHealth {
        what: "events",
        failing: false,
    };
    let settle_ns = u64::try_from(settle.as_nanos()).unwrap_or(u64::MAX);
    let mut dedup = events::Dedup::new(unix_nanos(SystemTime::now()));
    while let Some(event) = health.next(&mut stream).await {
        let (Event::Apply(e) | Event::InitApply(e)) = event else {
            continue;
        };
        if !dedup.first(&e) {
            continue;
        }
        let record = events::record(&e, &catalog.snapshot(), settle_ns);
        let namespace = e
            .involved_object
            .namespace
            .clone()
            .or(e.metadata.namespace.clone())
            .unwrap_or_default();
        let batch = namespace_log(namespace, record);
        if out.send(batch).await.is_err() {
            return;
        }
    }
}

/// Fetches and caches the workloads of owner chains.
struct Owners {
    client: Client,
    catalog: Catalog,
    /// Workload key → fetched (or known missing: `None`).
    fetched: Mutex<HashMap<String, Option<Workload>>>,
    /// Argo CD's instance label key.
    label_key: Arc<str>,
}

impl Owners {
    /// Makes sure every workload above `owner` is in the Catalog.
    async fn ensure(&self, mut owner: Option<ObjectRef>) {
        for _ in 0..MAX_OWNER_DEPTH {
            let Some(o) = owner.take() else {
                return;
            };
            let key = o.key();
            let cached = self.fetched.lock().await.get(&key).cloned();
            // An owner of the same name but another UID was deleted and created anew (by
            // another sync, another Application): what was cached of it is not this one.
            let cached = cached.filter(|w| {
                w.as_ref().is_none_or(|w| {
                    o.uid.is_empty() || w.object.uid.is_empty() || w.object.uid == o.uid
                })
            });
            let w = match cached {
                Some(w) => w,
                None => {
                    // A failed read is not cached: the pod's next change asks again.
                    let Ok(w) = self.fetch(&o).await else {
                        return;
                    };
                    self.fetched.lock().await.insert(key.clone(), w.clone());
                    if let Some(w) = &w {
                        let w = w.clone();
                        self.catalog.update(|s| {
                            s.workloads.insert(key.clone(), w);
                        });
                    }
                    w
                }
            };
            owner = w.and_then(|w| w.owner);
        }
    }

    /// The owner's workload (`Ok(None)`: gone, or a kind outside [`WORKLOAD_KINDS`]); `Err`
    /// when the API server did not answer within [`OWNER_READ_TIMEOUT`] or failed.
    async fn fetch(&self, o: &ObjectRef) -> Result<Option<Workload>, ()> {
        let Some((kind, group, version, plural)) =
            WORKLOAD_KINDS.iter().find(|(k, ..)| *k == o.kind)
        else {
            return Ok(None);
        };
        let ar = api_resource(group, version, kind, plural);
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), &o.namespace, &ar);
        match tokio::time::timeout(OWNER_READ_TIMEOUT, api.get_opt(&o.name)).await {
            Ok(Ok(obj)) => Ok(obj.map(|obj| convert::workload(&obj, kind, &self.label_key))),
            Ok(Err(e)) => {
                tracing::debug!(owner = %o.key(), error = %e, "cannot read owner; retried on the pod's next change");
                Err(())
            }
            Err(_) => {
                tracing::debug!(owner = %o.key(), "owner read timed out; retried on the pod's next change");
                Err(())
            }
        }
    }

    /// Forgets owners no pod references any more (keeps the cache bounded by the node's pods).
    async fn prune(&self, referenced: &HashSet<String>) {
        let mut fetched = self.fetched.lock().await;
        // Keep a whole chain when any of its members is referenced: collect reachable keys.
        let mut keep: HashSet<String> = HashSet::new();
        for start in referenced {
            let mut key = Some(start.clone());
            while let Some(k) = key.take() {
                if !keep.insert(k.clone()) {
                    break;
                }
                key = fetched
                    .get(&k)
                    .and_then(|w| w.as_ref())
                    .and_then(|w| w.owner.as_ref())
                    .map(ObjectRef::key);
            }
        }
        fetched.retain(|k, _| keep.contains(k));
        self.catalog
            .update(|s| s.workloads.retain(|k, _| keep.contains(k)));
    }
}

async fn watch_pods(
    client: Client,
    node: Option<String>,
    catalog: Catalog,
    owners: Arc<Owners>,
    label_key: Arc<str>,
    mut lifecycle: Option<(Lifecycle, Outputs)>,
) {
    let api: Api<Pod> = Api::all(client);
    let mut cfg = watcher::Config::default();
    if let Some(node) = &node {
        cfg = cfg.fields(&format!("spec.nodeName={node}"));
    }
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut health = WatchHealth {
        what: "pods",
        failing: false,
    };
    // During a (re)list: the pods seen so far; swapped in whole at InitDone, so pods deleted
    // while the watch was down disappear and none is lost.
    let mut relist: Option<Vec<hpcotel_core::catalog::PodMeta>> = None;
    // Lifecycle records of a (re)list, sent once the Catalog knows its pods (so the enrich
    // processor finds them).
    let mut relisted: Vec<ResourceLogs> = Vec::new();
    while let Some(event) = health.next(&mut stream).await {
        let records = match event {
            Event::Init => {
                relist = Some(Vec::new());
                relisted.clear();
                if let Some((l, _)) = &mut lifecycle {
                    l.relisting();
                }
                Vec::new()
            }
            Event::InitApply(p) => {
                relisted.extend(observe(&mut lifecycle, &p));
                if let Some(meta) = convert::pod_meta(&p, &label_key) {
                    owners.ensure(meta.owner.clone()).await;
                    relist.get_or_insert_with(Vec::new).push(meta);
                }
                Vec::new()
            }
            Event::InitDone => {
                let pods = relist.take().unwrap_or_default();
                let referenced: HashSet<String> = pods
                    .iter()
                    .filter_map(|p| p.owner.as_ref())
                    .map(ObjectRef::key)
                    .collect();
                catalog.update(|s| {
                    s.pods.clear();
                    s.pods_by_ip.clear();
                    s.pods_by_uid.clear();
                    for p in pods {
                        insert_pod(s, p);
                    }
                });
                owners.prune(&referenced).await;
                if let Some((l, _)) = &mut lifecycle {
                    l.listed();
                }
                std::mem::take(&mut relisted)
            }
            Event::Apply(p) => {
                if let Some(meta) = convert::pod_meta(&p, &label_key) {
                    owners.ensure(meta.owner.clone()).await;
                    catalog.update(|s| insert_pod(s, meta));
                }
                observe(&mut lifecycle, &p)
            }
            Event::Delete(p) => {
                // Its last status may still show a termination not seen before.
                let records = observe(&mut lifecycle, &p);
                if let Some((l, _)) = &mut lifecycle {
                    l.forget(&p);
                }
                if let Some(uid) = p.metadata.uid {
                    catalog.update(|s| remove_pod(s, &uid));
                }
                records
            }
        };
        if let (false, Some((_, outputs))) = (records.is_empty(), &lifecycle) {
            let n = records.len();
            if let Err(e) = outputs
                .send_within(Batch::Logs(records), LIFECYCLE_SEND_WAIT)
                .await
            {
                tracing::warn!(records = n, error = %e, "pod lifecycle records not delivered");
            }
        }
    }
}

/// The lifecycle records of a pod update, when lifecycle logs are on.
fn observe(lifecycle: &mut Option<(Lifecycle, Outputs)>, p: &Pod) -> Vec<ResourceLogs> {
    match lifecycle {
        Some((l, _)) => l.observe(p, unix_nanos(SystemTime::now())),
        None => Vec::new(),
    }
}

fn insert_pod(s: &mut hpcotel_core::catalog::Snapshot, p: hpcotel_core::catalog::PodMeta) {
    let Some(uid) = p.pod.uid.clone() else {
        return;
    };
    remove_pod(s, &uid);
    if let Some(ip) = &p.ip {
        s.pods_by_ip.insert(ip.clone(), uid.clone());
    }
    s.pods_by_uid.insert(uid.clone(), p.pod.clone());
    s.pods.insert(uid, p);
}

fn remove_pod(s: &mut hpcotel_core::catalog::Snapshot, uid: &str) {
    if let Some(old) = s.pods.remove(uid)
        && let Some(ip) = old.ip
        && s.pods_by_ip.get(&ip).map(String::as_str) == Some(uid)
    {
        s.pods_by_ip.remove(&ip);
    }
    s.pods_by_uid.remove(uid);
}

/// The shared tracker; a panic while it was held leaves a consistent value (every method
/// finishes its updates before it returns), so a poisoned lock is taken as it is.
fn lock(tracker: &std::sync::Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    tracker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the Application watch needs of the receiver's configuration.
#[derive(Debug, Clone)]
struct AppsConfig {
    environment_label: Option<String>,
    controller_namespace: String,
}

async fn watch_apps(
    api: Api<DynamicObject>,
    namespace: Option<String>,
    catalog: Catalog,
    config: AppsConfig,
    rollouts: Option<(Arc<std::sync::Mutex<Tracker>>, mpsc::Sender<Batch>)>,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut health = WatchHealth {
        what: "argocd applications",
        failing: false,
    };
    let mut relist: Option<Vec<hpcotel_core::catalog::ArgoApp>> = None;
    let in_scope = |ns: &str| namespace.as_deref().is_none_or(|n| n == ns);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let convert = |o: &DynamicObject| {
        convert::argo_app(
            o,
            config.environment_label.as_deref(),
            &config.controller_namespace,
        )
    };
    loop {
        let event = tokio::select! {
            e = health.next(&mut stream) => match e {
                Some(e) => e,
                None => return,
            },
            _ = tick.tick() => {
                if let Some((tracker, tx)) = &rollouts {
                    let done = lock(tracker).tick(unix_nanos(SystemTime::now()));
                    for spans in done {
                        let _ = tx.send(rollout_batch(spans)).await;
                    }
                }
                continue;
            }
        };
        // An Application another Argo CD controller reconciles (another instance in another
        // namespace) names its resources in that instance's terms: its instance names may
        // equal this one's. Left out.
        let foreign = match &event {
            Event::InitApply(o) | Event::Apply(o) | Event::Delete(o) => {
                convert::controller_namespace(o).is_some_and(|n| n != config.controller_namespace)
            }
            Event::Init | Event::InitDone => false,
        };
        if foreign {
            tracing::debug!("Argo CD Application of another controller namespace left out");
            continue;
        }
        if let Some((tracker, tx)) = &rollouts {
            let now = unix_nanos(SystemTime::now());
            let done = match &event {
                Event::InitApply(o) | Event::Apply(o) => lock(tracker).observe(o, now),
                Event::Delete(o) => lock(tracker).deleted(o, now),
                Event::InitDone => {
                    let present = relist.iter().flatten().map(|a| a.uid.clone()).collect();
                    lock(tracker).relisted(in_scope, &present, now)
                }
                Event::Init => Vec::new(),
            };
            for spans in done {
                let _ = tx.send(rollout_batch(spans)).await;
            }
        }
        match event {
            Event::Init => relist = Some(Vec::new()),
            Event::InitApply(o) => relist.get_or_insert_with(Vec::new).push(convert(&o)),
            Event::InitDone => {
                let apps = relist.take().unwrap_or_default();
                catalog.update(|s| {
                    s.apps.retain(|_, a| !in_scope(&a.namespace));
                    for a in apps {
                        s.apps.insert(a.instance_name.clone(), a);
                    }
                });
            }
            Event::Apply(o) => {
                let a = convert(&o);
                catalog.update(|s| {
                    s.apps.insert(a.instance_name.clone(), a);
                });
            }
            Event::Delete(o) => {
                let a = convert(&o);
                catalog.update(|s| {
                    // Only this Application: another of the same name in another
                    // namespace has another instance name.
                    if s.apps
                        .get(&a.instance_name)
                        .is_some_and(|held| held.uid == a.uid)
                    {
                        s.apps.remove(&a.instance_name);
                    }
                });
            }
        }
    }
}
