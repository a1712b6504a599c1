//! The kubernetes receiver against testkit's fake kube-apiserver (real list + watch).

use std::time::{Duration, Instant};

use hpcotel_core::catalog::RevisionSource;
use hpcotel_core::{
    Catalog, ComponentId, ComponentKind, Outputs, Receiver, ReceiverContext, Telemetry,
};
use hpcotel_testkit::kube::FakeApiServer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;

const WAIT: Duration = Duration::from_secs(30);

fn deployment(name: &str, tracking: Option<&str>, instance: Option<&str>) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(t) = tracking {
        annotations.insert("argocd.argoproj.io/tracking-id".into(), json!(t));
    }
    let mut labels = serde_json::Map::new();
    if let Some(i) = instance {
        labels.insert("app.kubernetes.io/instance".into(), json!(i));
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"),
                      "creationTimestamp": "2026-11-25T05:00:00Z",
                      "annotations": annotations, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "trainer:1"}]}}}
    })
}

fn replicaset(name: &str, deployment: &str, created: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"),
                      "creationTimestamp": created,
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                                           "uid": format!("uid-{deployment}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": deployment}}}
    })
}

fn pod(name: &str, node: &str, rs: &str, ip: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}"),
                      "creationTimestamp": "2026-11-25T08:00:00Z", "annotations": annotations,
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                           "uid": format!("uid-{rs}"), "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "trainer:1"}]},
        "status": {"phase": "Running", "podIP": ip}
    })
}

/// App `train`: revision `aaa` deployed 06:00–06:00:10, `bbb` from 07:00 to 07:00:12.
fn train() -> hpcotel_testkit::kube::fixtures::App {
    use hpcotel_testkit::kube::fixtures::{App, AppSource};
    let mut app = App::new(
        "argocd",
        "train",
        "uid-app-train",
        "https://git.example.com/ml/train.git",
        "ml",
        "bbb",
    );
    app.labels = vec![("env".into(), "prod".into())];
    app.sources = vec![AppSource {
        target_revision: "main".into(),
        ..AppSource::git("https://git.example.com/ml/train.git", "deploy")
    }];
    app.history = vec![
        (
            1,
            vec!["aaa".into()],
            "2026-11-25T06:00:00Z".into(),
            "2026-11-25T06:00:10Z".into(),
        ),
        (
            2,
            vec!["bbb".into()],
            "2026-11-25T07:00:00Z".into(),
            "2026-11-25T07:00:12Z".into(),
        ),
    ];
    app
}

fn application() -> Value {
    train().build()
}

/// Two ReplicaSets of `trainer` (one per revision), a pod of each on node-1, one on node-2.
async fn cluster(tracking: Option<&str>, instance: Option<&str>) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.apply(application());
    api.apply(deployment("trainer", tracking, instance));
    api.apply(replicaset("trainer-a", "trainer", "2026-11-25T06:00:05Z"));
    api.apply(replicaset("trainer-b", "trainer", "2026-11-25T07:00:13Z"));
    api.apply(pod(
        "trainer-a-1",
        "node-1",
        "trainer-a",
        "10.0.0.11",
        json!({}),
    ));
    api.apply(pod(
        "trainer-b-1",
        "node-1",
        "trainer-b",
        "10.0.0.12",
        json!({}),
    ));
    api.apply(pod(
        "trainer-b-2",
        "node-2",
        "trainer-b",
        "10.0.1.12",
        json!({}),
    ));
    api
}

fn config(api: &FakeApiServer) -> Config {
    Config {
        auth_type: AuthType::None,
        endpoint: Some(api.url()),
        node_name: Some("node-1".into()),
        argocd: ArgoCdConfig {
            environment_label: Some("env".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

struct Running {
    catalog: Catalog,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), hpcotel_core::ComponentError>>,
}

async fn start(config: &Config) -> Running {
    let catalog = Catalog::new();
    let receiver = KubernetesReceiver::new(config, catalog.clone())
        .await
        .unwrap();
    let stats = Telemetry::default().register(
        ComponentKind::Receiver,
        ComponentId::new("kubernetes", None),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(receiver).run(ReceiverContext {
        id: ComponentId::new("kubernetes", None),
        outputs: Outputs::new(stats),
        shutdown: stop.clone(),
    }));
    Running {
        catalog,
        stop,
        task,
    }
}

/// Waits until `pred` holds on the Catalog.
async fn wait_for(
    catalog: &Catalog,
    what: &str,
    pred: impl Fn(&hpcotel_core::catalog::Snapshot) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        if pred(&catalog.snapshot()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; catalog: {:?}",
            catalog.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn revision(catalog: &Catalog, pod_uid: &str) -> Option<(String, RevisionSource)> {
    catalog.snapshot().correlate(pod_uid)?.revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_this_node_correlate_through_their_owners_to_the_revision() {
    let api = cluster(Some("train:apps/Deployment:ml/trainer"), None).await;
    let r = start(&config(&api)).await;
    wait_for(&r.catalog, "both node-1 pods correlated", |s| {
        s.pods.len() == 2
            && s.correlate("uid-trainer-b-1")
                .is_some_and(|c| c.revision.is_some())
    })
    .await;
    assert_eq!(
        revision(&r.catalog, "uid-trainer-a-1"),
        Some(("aaa".into(), RevisionSource::History))
    );
    assert_eq!(
        revision(&r.catalog, "uid-trainer-b-1"),
        Some(("bbb".into(), RevisionSource::History))
    );
    let snap = r.catalog.snapshot();
    assert!(
        !snap.pods.contains_key("uid-trainer-b-2"),
        "a pod of another node is not watched"
    );
    assert_eq!(
        snap.pods_by_ip.get("10.0.0.12").map(String::as_str),
        Some("uid-trainer-b-1")
    );
    let c = snap.correlate("uid-trainer-b-1").unwrap();
    assert_eq!(c.workload.unwrap().key(), "Deployment/ml/trainer");
    let app = c.app.unwrap();
    assert_eq!(
        app.repo_url.as_deref(),
        Some("https://git.example.com/ml/train.git")
    );
    assert_eq!(app.environment.as_deref(), Some("prod"));
    // The field selector was sent: only node-1's pods were listed.
    assert!(
        api.requests().iter().any(|q| q.plural == "pods"
            && q.query_param("fieldSelector") == Some("spec.nodeName=node-1"))
    );
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_tracking_and_the_pod_annotation_resolve_too() {
    let api = cluster(None, Some("train")).await;
    api.apply(pod(
        "trainer-a-2",
        "node-1",
        "trainer-a",
        "10.0.0.13",
        json!({"resource.opentelemetry.io/vcs.ref.head.revision": "pinned"}),
    ));
    let mut cfg = config(&api);
    cfg.argocd.tracking_method = TrackingMethod::Label;
    let r = start(&cfg).await;
    wait_for(&r.catalog, "three pods correlated", |s| {
        s.pods.len() == 3
            && s.correlate("uid-trainer-a-1")
                .is_some_and(|c| c.revision.is_some())
    })
    .await;
    assert_eq!(
        revision(&r.catalog, "uid-trainer-a-1"),
        Some(("aaa".into(), RevisionSource::History))
    );
    assert_eq!(
        revision(&r.catalog, "uid-trainer-a-2"),
        Some(("pinned".into(), RevisionSource::PodAnnotation))
    );
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_410_and_an_outage_lose_no_transition() {
    let api = cluster(Some("train:apps/Deployment:ml/trainer"), None).await;
    let r = start(&config(&api)).await;
    wait_for(&r.catalog, "initial pods", |s| s.pods.len() == 2).await;

    // The watch drops mid-stream and the history is compacted: the next watch from the old
    // resourceVersion gets 410 Gone and the receiver relists.
    api.compact();
    api.apply(pod(
        "trainer-b-3",
        "node-1",
        "trainer-b",
        "10.0.0.14",
        json!({}),
    ));
    api.drop_watches();
    wait_for(&r.catalog, "pod added around the drop", |s| {
        s.pods.contains_key("uid-trainer-b-3")
    })
    .await;

    // The API server goes away; the Catalog keeps its state meanwhile.
    api.set_available(false);
    api.delete("v1", "Pod", "ml", "trainer-a-1");
    api.apply(pod(
        "trainer-b-4",
        "node-1",
        "trainer-b",
        "10.0.0.15",
        json!({}),
    ));
    let during = r.catalog.snapshot();
    assert!(
        during.pods.contains_key("uid-trainer-a-1"),
        "last state kept while away"
    );
    api.set_available(true);
    wait_for(&r.catalog, "changes made during the outage", |s| {
        !s.pods.contains_key("uid-trainer-a-1") && s.pods.contains_key("uid-trainer-b-4")
    })
    .await;
    let s = r.catalog.snapshot();
    assert_eq!(
        s.pods.len(),
        3,
        "b-1, b-3, b-4: {:?}",
        s.pods.keys().collect::<Vec<_>>()
    );
    assert!(
        !s.pods_by_ip.contains_key("10.0.0.11"),
        "the deleted pod's IP is gone too"
    );
    assert_eq!(
        revision(&r.catalog, "uid-trainer-b-4"),
        Some(("bbb".into(), RevisionSource::History))
    );
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}

type Permission = (String, String, String);

/// The README's RBAC table for the kubernetes receiver: (group, resource, verb) → the row's
/// condition note (`""`, `mode: cluster or leader_election`, `leader_election`).
fn readme_rbac() -> std::collections::BTreeMap<Permission, String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("### receivers.kubernetes").unwrap()..];
    let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
    let section = &section[section.find("\nRBAC").expect("the RBAC table")..];
    // Rows: | `group` | `res`, `res` | `verb`, `verb` (`condition` or `condition`) |
    let mut table = std::collections::BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let ticks = |c: &str| {
            c.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let group = ticks(cells[1])
            .first()
            .cloned()
            .unwrap_or_default()
            .replace("\"\"", "");
        let (verbs, condition) = cells[3].split_once('(').unwrap_or((cells[3], ""));
        let condition = condition.trim_end_matches(')').replace('`', "");
        for res in ticks(cells[2]) {
            for verb in ticks(verbs) {
                table.insert((group.clone(), res.clone(), verb), condition.clone());
            }
        }
    }
    table
}

/// (group, resource, verb) that `rbac::RULES` grants an instance with `config`.
fn allowed(config: &Config) -> std::collections::BTreeSet<Permission> {
    rbac::rules_for(config)
        .flat_map(rbac::Rule::permissions)
        .map(|(g, r, v)| (g.to_owned(), r.to_owned(), v.to_owned()))
        .collect()
}

/// Every request the fake answered is allowed by `rbac::RULES` for the receiver's `config`.
fn assert_rbac_covers(api: &FakeApiServer, config: &Config) {
    let allowed = allowed(config);
    let requests = api.requests();
    assert!(!requests.is_empty());
    for q in requests {
        let key = (
            q.group.clone(),
            q.plural.clone(),
            q.verb.as_str().to_owned(),
        );
        assert!(
            allowed.contains(&key),
            "{key:?} is not in rbac::RULES for mode {:?}, leader_election {}",
            config.mode,
            config.leader_election.is_some()
        );
    }
}

/// RBAC: every request a node agent made is allowed by `rbac::RULES`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_covered_by_the_rbac_rules() {
    let api = cluster(Some("train:apps/Deployment:ml/trainer"), None).await;
    let cfg = config(&api);
    assert!(
        allowed(&cfg).contains(&(String::new(), "pods".into(), "watch".into())),
        "{:?}",
        allowed(&cfg)
    );
    let r = start(&cfg).await;
    wait_for(&r.catalog, "correlated", |s| {
        s.correlate("uid-trainer-b-1")
            .is_some_and(|c| c.revision.is_some())
    })
    .await;
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
    assert_rbac_covers(&api, &cfg);
}

/// The README's RBAC table lists exactly `rbac::RULES`, with their conditions.
#[test]
fn the_readme_rbac_table_equals_the_rules() {
    let table = readme_rbac();
    let mut rules = std::collections::BTreeMap::new();
    for rule in rbac::RULES {
        let condition = match rule.when {
            rbac::When::Always | rbac::When::NodeMode => "",
            rbac::When::ClusterOutput => "mode: cluster or leader_election",
            rbac::When::LeaderElection => "leader_election",
        };
        for (g, r, v) in rule.permissions() {
            let old = rules.insert((g.to_owned(), r.to_owned(), v.to_owned()), condition);
            assert!(old.is_none(), "({g:?}, {r}, {v}) is granted twice");
        }
    }
    let table: std::collections::BTreeMap<_, _> =
        table.iter().map(|(k, c)| (k.clone(), c.as_str())).collect();
    assert_eq!(table, rules, "README table (left) vs rbac::RULES (right)");
}

/// Owner chains are walked with `get` on exactly the workload kinds the receiver knows; the
/// conditions match what each mode starts.
#[test]
fn rbac_rules_cover_every_workload_kind_and_follow_the_modes() {
    use rbac::When;
    let node_gets: std::collections::BTreeSet<(&str, &str)> = rbac::RULES
        .iter()
        .filter(|r| r.when == When::NodeMode && r.verbs == ["get"])
        .flat_map(|r| r.resources.iter().map(move |res| (r.group, *res)))
        .collect();
    let kinds: std::collections::BTreeSet<(&str, &str)> = WORKLOAD_KINDS
        .iter()
        .map(|(_, group, _, plural)| (*group, *plural))
        .collect();
    assert_eq!(node_gets, kinds);
    let le = lease::LeaderElectionConfig::default();
    let node = Config::default();
    let node_le = Config {
        leader_election: Some(le),
        ..Config::default()
    };
    let cluster = Config {
        mode: Mode::Cluster,
        ..Config::default()
    };
    let has = |c: &Config, g: &str, r: &str, v: &str| {
        allowed(c).contains(&(g.to_owned(), r.to_owned(), v.to_owned()))
    };
    assert!(has(&node, "", "pods", "watch") && !has(&cluster, "", "pods", "watch"));
    assert!(!has(&node, "", "events", "watch") && has(&cluster, "", "events", "watch"));
    assert!(has(&node_le, "", "events", "watch") && has(&node_le, "", "pods", "list"));
    assert!(has(&node_le, "coordination.k8s.io", "leases", "update"));
    assert!(!has(&cluster, "coordination.k8s.io", "leases", "get"));
    assert!(has(&cluster, "argoproj.io", "applications", "watch"));
    assert!(
        rbac::RULES
            .iter()
            .all(|r| r.namespaced() == (r.group == "coordination.k8s.io"))
    );
}

#[test]
fn config_needs_an_endpoint_without_auth() {
    let c: Config = serde_yaml::from_str("auth_type: none\n").unwrap();
    assert_eq!(c.validate().unwrap_err().0, "endpoint");
    let c: Config = serde_yaml::from_str(
        "auth_type: kubeConfig\nargocd: { tracking_method: label, namespaces: [] }\n",
    )
    .unwrap();
    assert!(c.validate().is_ok());
    assert_eq!(c.argocd.tracking_method, TrackingMethod::Label);
    let bad = serde_yaml::from_str::<Config>("argocd: { tracking: label }\n").unwrap_err();
    assert!(bad.to_string().contains("tracking"), "{bad}");
}

/// The receiver running on `cfg` with its traces output into a channel: the Catalog it
/// fills, the traces, the shutdown token and the task.
async fn start_with_traces(
    cfg: &Config,
) -> (
    Catalog,
    hpcotel_core::channel::Receiver,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), hpcotel_core::ComponentError>>,
) {
    let catalog = Catalog::new();
    let receiver = KubernetesReceiver::new(cfg, catalog.clone()).await.unwrap();
    let stats = Telemetry::default().register(
        ComponentKind::Receiver,
        ComponentId::new("kubernetes", None),
    );
    let (tx, rx) = hpcotel_core::channel::channel(10_000);
    let mut outputs = Outputs::new(stats);
    outputs.add(hpcotel_core::Signal::Traces, "traces", tx);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(receiver).run(ReceiverContext {
        id: ComponentId::new("kubernetes", None),
        outputs,
        shutdown: stop.clone(),
    }));
    (catalog, rx, stop, task)
}

/// `train` with a sync of `ccc` (the Deployment applied) in `phase`.
fn synced_app(started: &str, phase: &str, finished: Option<&str>, health: &str) -> Value {
    use hpcotel_testkit::kube::fixtures::{AppOperation, SyncedResource};
    let mut app = train();
    app.health = health.into();
    app.operation = Some(AppOperation {
        phase: phase.into(),
        started_at: started.into(),
        finished_at: finished.map(str::to_owned),
        requested: vec!["ccc".into()],
        result: Some((
            vec!["ccc".into()],
            vec![SyncedResource::applied(
                "apps",
                "Deployment",
                "ml",
                "trainer",
            )],
        )),
        ..Default::default()
    });
    app.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_instance_emits_one_trace_per_sync_when_it_settles() {
    // Times relative to now: a sync first seen already finished counts only if it ended
    // after the collector started.
    let now = std::time::SystemTime::now();
    let at = |secs: i64| {
        let t = if secs >= 0 {
            now + Duration::from_secs(secs.unsigned_abs())
        } else {
            now - Duration::from_secs(secs.unsigned_abs())
        };
        humantime::format_rfc3339_seconds(t).to_string()
    };
    use hpcotel_core::Batch;
    let api = FakeApiServer::start().await;
    api.apply(synced_app(&at(-60), "Running", None, "Healthy"));
    let mut cfg = config(&api);
    cfg.mode = Mode::Cluster;
    let (catalog, mut rx, stop, task) = start_with_traces(&cfg).await;
    wait_for(&catalog, "the app listed", |s| s.apps.contains_key("train")).await;
    // The sync ends (health still the old one), the app progresses, then becomes Healthy.
    api.apply(synced_app(&at(-60), "Succeeded", Some(&at(-48)), "Healthy"));
    api.apply(synced_app(
        &at(-60),
        "Succeeded",
        Some(&at(-48)),
        "Progressing",
    ));
    api.apply(synced_app(&at(-60), "Succeeded", Some(&at(-48)), "Healthy"));
    let batch = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a rollout trace")
        .unwrap();
    let Batch::Traces(rs) = batch else {
        panic!("expected traces")
    };
    let spans = &rs[0].scope_spans[0].spans;
    assert_eq!(spans[0].name, "SYNC train");
    assert_eq!(spans.len(), 3, "root, the Deployment, health");
    assert_eq!(
        spans[0].status.as_ref().unwrap().code,
        1,
        "OK: synced and Healthy"
    );
    assert!(
        spans
            .iter()
            .skip(1)
            .all(|s| s.status.as_ref().is_none_or(|st| st.code != 2)),
        "no error in a successful rollout"
    );
    // A second sync of the same revision is a second trace, with another id.
    api.apply(synced_app(&at(1), "Failed", Some(&at(5)), "Healthy"));
    let batch = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a second rollout trace")
        .unwrap();
    let Batch::Traces(rs2) = batch else {
        panic!("expected traces")
    };
    let second = &rs2[0].scope_spans[0].spans[0];
    assert_ne!(second.trace_id, spans[0].trace_id);
    assert_eq!(
        second.status.as_ref().unwrap().code,
        2,
        "ERROR: the sync failed"
    );
    // Further updates of an exported operation emit nothing more: the next trace out is the
    // third sync's (events are handled in order).
    api.apply(synced_app(&at(1), "Failed", Some(&at(5)), "Degraded"));
    api.apply(synced_app(&at(6), "Error", Some(&at(7)), "Healthy"));
    let batch = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a third rollout trace")
        .unwrap();
    let Batch::Traces(rs3) = batch else {
        panic!("expected traces")
    };
    let third = &rs3[0].scope_spans[0].spans[0];
    assert_ne!(
        third.trace_id, second.trace_id,
        "no duplicate of the second sync"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(rx.recv().await.is_none(), "nothing else");
    assert_rbac_covers(&api, &cfg);
}

fn core_event(
    name: &str,
    ns: &str,
    kind: &str,
    object: &str,
    reason: &str,
    type_: &str,
    at: &str,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "involvedObject": {"kind": kind, "namespace": ns, "name": object, "uid": format!("uid-{object}"), "apiVersion": "v1"},
        "reason": reason, "message": format!("{reason} on {object}"), "type": type_, "count": 1,
        "firstTimestamp": at, "lastTimestamp": at,
        "source": {"component": "kubelet"}, "reportingComponent": "kubelet"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_join_the_rollout_of_their_namespace_once_each() {
    use hpcotel_core::catalog::rollout_trace_id;
    use hpcotel_core::{Batch, Signal, channel};
    let now = std::time::SystemTime::now();
    let fmt = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let started = fmt(now - Duration::from_secs(60));
    let soon = fmt(now + Duration::from_secs(5));
    let api = FakeApiServer::start().await;
    api.apply(synced_app(&started, "Running", None, "Progressing"));
    // From before the collector started: the previous instance emitted it.
    api.apply(core_event(
        "old",
        "ml",
        "Pod",
        "trainer-b-1",
        "BackOff",
        "Warning",
        &fmt(now - Duration::from_secs(3600)),
    ));
    let mut cfg = config(&api);
    cfg.mode = Mode::Cluster;
    let catalog = Catalog::new();
    let receiver = KubernetesReceiver::new(&cfg, catalog.clone())
        .await
        .unwrap();
    let stats = Telemetry::default().register(
        ComponentKind::Receiver,
        ComponentId::new("kubernetes", None),
    );
    let (tx, mut rx) = channel::channel(10_000);
    let mut outputs = Outputs::new(stats);
    outputs.add(Signal::Logs, "logs", tx);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(receiver).run(ReceiverContext {
        id: ComponentId::new("kubernetes", None),
        outputs,
        shutdown: stop.clone(),
    }));
    wait_for(&catalog, "the app listed", |s| {
        s.apps.get("train").is_some_and(|a| a.operation.is_some())
    })
    .await;
    api.apply(core_event(
        "crash",
        "ml",
        "Pod",
        "trainer-b-1",
        "BackOff",
        "Warning",
        &soon,
    ));
    api.apply(core_event(
        "keda",
        "ml",
        "ScaledObject",
        "trainer",
        "KEDAScaleTargetActivated",
        "Normal",
        &soon,
    ));
    api.apply(core_event(
        "elsewhere",
        "web",
        "Pod",
        "nginx-1",
        "Pulled",
        "Normal",
        &soon,
    ));
    let mut got = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("event logs")
        {
            Some(Batch::Logs(rl)) => got.extend(
                rl.into_iter()
                    .flat_map(|r| r.scope_logs)
                    .flat_map(|s| s.log_records),
            ),
            other => panic!("expected logs, got {other:?}"),
        }
    }
    let started_ns = convert::rfc3339_nanos(&started).unwrap();
    let trace = rollout_trace_id("uid-app-train", started_ns).to_vec();
    let reason = |l: &opentelemetry_proto::tonic::logs::v1::LogRecord| {
        l.attributes
            .iter()
            .find(|kv| kv.key == "k8s.event.reason")
            .and_then(|kv| hpcotel_testkit::sink::any_value_string(kv.value.as_ref()?))
    };
    for l in &got {
        match reason(l).as_deref() {
            Some("BackOff") | Some("KEDAScaleTargetActivated") => {
                assert_eq!(l.trace_id, trace, "joined to the rollout");
                assert!(
                    l.attributes
                        .iter()
                        .any(|kv| kv.key == "vcs.ref.head.revision")
                );
            }
            Some("Pulled") => assert!(l.trace_id.is_empty(), "no rollout in namespace web"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(
        got.iter()
            .find(|l| reason(l).as_deref() == Some("BackOff"))
            .unwrap()
            .severity_number,
        13
    );
    // A relist (dropped watch, 410) repeats none of them: the next log out is a new Event's.
    api.compact();
    api.drop_watches();
    api.apply(core_event(
        "later",
        "ml",
        "Pod",
        "trainer-b-1",
        "OOMKilling",
        "Warning",
        &soon,
    ));
    match tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the next event log")
    {
        Some(Batch::Logs(rl)) => {
            let l = &rl[0].scope_logs[0].log_records[0];
            assert_eq!(reason(l).as_deref(), Some("OOMKilling"));
        }
        other => panic!("expected logs, got {other:?}"),
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_rbac_covers(&api, &cfg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_one_lease_emit_once_and_the_survivor_takes_over_without_repeats() {
    use hpcotel_core::Batch;
    let fmt = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let now = std::time::SystemTime::now();
    let first = fmt(now - Duration::from_secs(60));
    let api = FakeApiServer::start().await;
    api.apply(synced_app(&first, "Running", None, "Progressing"));
    let agent = |identity: &str| {
        let mut cfg = config(&api);
        cfg.node_name = Some(format!("node-{identity}"));
        cfg.leader_election = Some(lease::LeaderElectionConfig {
            lease_namespace: "default".into(),
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(200),
            identity: Some(identity.into()),
            ..Default::default()
        });
        cfg
    };
    let start_agent = |cfg: Config| async move {
        let (_, rx, stop, task) = start_with_traces(&cfg).await;
        (rx, stop, task)
    };
    let holder = |api: &FakeApiServer| {
        api.get(
            "coordination.k8s.io/v1",
            "Lease",
            "default",
            lease::DEFAULT_LEASE_NAME,
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let (mut rx_a, stop_a, task_a) = start_agent(agent("a")).await;
    assert!(
        api.wait_until(WAIT, |api| holder(api).as_deref() == Some("a"))
            .await,
        "a leads"
    );
    let (mut rx_b, stop_b, task_b) = start_agent(agent("b")).await;

    // The first sync fails: a emits its trace, b (a follower) nothing.
    api.apply(synced_app(&first, "Failed", Some(&fmt(now)), "Healthy"));
    let Some(Batch::Traces(t1)) = tokio::time::timeout(WAIT, rx_a.recv())
        .await
        .expect("a's trace")
    else {
        panic!("expected traces")
    };
    let trace1 = t1[0].scope_spans[0].spans[0].trace_id.clone();
    assert!(
        api.wait_until(WAIT, |api| {
            api.get(
                "coordination.k8s.io/v1",
                "Lease",
                "default",
                lease::DEFAULT_LEASE_NAME,
            )
            .is_some_and(|l| {
                l["metadata"]["annotations"][lease::EXPORTED_ANNOTATION]
                    .as_str()
                    .is_some_and(|v| v.contains("uid-app-train"))
            })
        })
        .await,
        "the export is published in the Lease"
    );

    // a stops: it releases the Lease and b takes over well within the lease duration.
    stop_a.cancel();
    task_a.await.unwrap().unwrap();
    let stopped = std::time::Instant::now();
    assert!(
        api.wait_until(WAIT, |api| holder(api).as_deref() == Some("b"))
            .await,
        "b takes over"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "took {:?}",
        stopped.elapsed()
    );
    // a emitted exactly that one trace.
    assert!(rx_a.recv().await.is_none());

    // A second sync: b emits it, and its first trace is not a repeat of the first sync.
    let second = fmt(now + Duration::from_secs(1));
    api.apply(synced_app(
        &second,
        "Failed",
        Some(&fmt(now + Duration::from_secs(2))),
        "Healthy",
    ));
    let Some(Batch::Traces(t2)) = tokio::time::timeout(WAIT, rx_b.recv())
        .await
        .expect("b's trace")
    else {
        panic!("expected traces")
    };
    assert_ne!(
        t2[0].scope_spans[0].spans[0].trace_id, trace1,
        "no repeat of a's export"
    );
    stop_b.cancel();
    task_b.await.unwrap().unwrap();
    assert!(
        rx_b.recv().await.is_none(),
        "b emitted only the second sync"
    );
    assert_rbac_covers(&api, &agent("a"));
}

fn scaled_object(active: &str, fallback: &str) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "trainer", "namespace": "ml", "uid": "uid-so"},
        "spec": {"scaleTargetRef": {"name": "trainer"}, "triggers": [{"type": "prometheus", "metadata": {"threshold": "10"}}]},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ScaledObject is defined correctly and is ready for scaling"},
            {"type": "Active", "status": active, "reason": "ScalerActive", "message": "Scaling is performed because triggers are active"},
            {"type": "Fallback", "status": fallback, "reason": "FallbackExists", "message": "At least one trigger is falling back"}
        ]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_condition_changes_join_the_rollout_and_survive_a_relist() {
    use hpcotel_core::catalog::rollout_trace_id;
    use hpcotel_core::{Signal, channel};
    let fmt = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let started = fmt(std::time::SystemTime::now() - Duration::from_secs(60));
    let api = FakeApiServer::start().await;
    api.apply(synced_app(&started, "Running", None, "Progressing"));
    api.apply(scaled_object("False", "False"));
    let mut cfg = config(&api);
    cfg.mode = Mode::Cluster;
    let catalog = Catalog::new();
    let receiver = KubernetesReceiver::new(&cfg, catalog.clone())
        .await
        .unwrap();
    let stats = Telemetry::default().register(
        ComponentKind::Receiver,
        ComponentId::new("kubernetes", None),
    );
    let (tx, mut rx) = channel::channel(10_000);
    let mut outputs = Outputs::new(stats);
    outputs.add(Signal::Logs, "logs", tx);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(receiver).run(ReceiverContext {
        id: ComponentId::new("kubernetes", None),
        outputs,
        shutdown: stop.clone(),
    }));
    wait_for(&catalog, "the app listed", |s| {
        s.apps.get("train").is_some_and(|a| a.operation.is_some())
    })
    .await;
    assert!(
        api.wait_until(WAIT, |api| api
            .requests()
            .iter()
            .any(|q| q.plural == "scaledobjects" && q.verb.as_str() == "watch"))
            .await,
        "the ScaledObject watch is up"
    );
    let condition = |l: &opentelemetry_proto::tonic::logs::v1::LogRecord, key: &str| {
        l.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| hpcotel_testkit::sink::any_value_string(kv.value.as_ref()?))
    };
    // KEDA activates the scale target during the rollout.
    api.apply(scaled_object("True", "False"));
    let l = next_log(&mut rx).await;
    assert_eq!(condition(&l, semconv_keys::TYPE).as_deref(), Some("Active"));
    assert_eq!(condition(&l, semconv_keys::STATUS).as_deref(), Some("True"));
    let trace =
        rollout_trace_id("uid-app-train", convert::rfc3339_nanos(&started).unwrap()).to_vec();
    assert_eq!(l.trace_id, trace);
    // The watch drops and history is compacted; meanwhile the scaler falls back. After the
    // relist exactly that transition is logged (not Active again).
    api.compact();
    api.drop_watches();
    api.apply(scaled_object("True", "True"));
    let l = next_log(&mut rx).await;
    assert_eq!(
        condition(&l, semconv_keys::TYPE).as_deref(),
        Some("Fallback")
    );
    assert_eq!(l.severity_number, 13);
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(rx.recv().await.is_none(), "nothing repeated");
    assert_rbac_covers(&api, &cfg);
}

async fn next_log(
    rx: &mut hpcotel_core::channel::Receiver,
) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    match tokio::time::timeout(WAIT, rx.recv()).await.expect("a log") {
        Some(hpcotel_core::Batch::Logs(rl)) => rl[0].scope_logs[0].log_records[0].clone(),
        other => panic!("expected logs, got {other:?}"),
    }
}

mod semconv_keys {
    pub const TYPE: &str = hpcotel_core::semconv::HPCOTEL_KEDA_CONDITION_TYPE;
    pub const STATUS: &str = hpcotel_core::semconv::HPCOTEL_KEDA_CONDITION_STATUS;
}

/// A Failed sync of `ns/web` (controller in `controller`) started `started`, ended `finished`.
fn failed_web(ns: &str, controller: &str, started: &str, finished: Option<&str>) -> Value {
    use hpcotel_testkit::kube::fixtures::{App, AppOperation, SyncedResource};
    let mut app = App::new(
        ns,
        "web",
        &format!("uid-{ns}-web"),
        &format!("https://git.example.com/{ns}/web.git"),
        &format!("{ns}-web"),
        "w1",
    );
    app.controller_namespace = controller.into();
    let mut deployment = SyncedResource::applied("apps", "Deployment", &format!("{ns}-web"), "web");
    if finished.is_some() {
        deployment.status = "SyncFailed".into();
        deployment.hook_phase = "Failed".into();
    }
    app.operation = Some(AppOperation {
        phase: if finished.is_some() {
            "Failed"
        } else {
            "Running"
        }
        .into(),
        message: "one or more objects failed to apply".into(),
        started_at: started.into(),
        finished_at: finished.map(str::to_owned),
        requested: vec!["w1".into()],
        result: Some((vec!["w1".into()], vec![deployment])),
        ..Default::default()
    });
    app.build()
}

/// The next rollout trace's root: its Application namespace and trace id.
async fn next_root(rx: &mut hpcotel_core::channel::Receiver) -> (String, Vec<u8>) {
    let hpcotel_core::Batch::Traces(rs) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a trace")
        .unwrap()
    else {
        panic!("expected traces")
    };
    let root = rs[0].scope_spans[0].spans[0].clone();
    let ns = root
        .attributes
        .iter()
        .find(|kv| kv.key == hpcotel_core::semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE)
        .and_then(|kv| hpcotel_testkit::sink::any_value_string(kv.value.as_ref()?))
        .unwrap();
    (ns, root.trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_share_one_state_file_and_another_controllers_apps_are_left_out() {
    let now = std::time::SystemTime::now();
    let at =
        |secs: u64| humantime::format_rfc3339_seconds(now + Duration::from_secs(secs)).to_string();
    let api = FakeApiServer::start().await;
    // argocd/web and team-a/web are this Argo CD's; other-argocd/web is another instance's,
    // whose instance name (`web`, in its own controller's namespace) equals argocd/web's.
    for (ns, controller) in [
        ("argocd", "argocd"),
        ("team-a", "argocd"),
        ("other-argocd", "other-argocd"),
    ] {
        api.apply(failed_web(ns, controller, &at(0), None));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&api);
    cfg.mode = Mode::Cluster;
    cfg.argocd.namespaces = vec!["argocd".into(), "team-a".into(), "other-argocd".into()];
    cfg.rollouts.state_file = Some(dir.path().join("rollouts.json"));

    let (catalog, mut rx, stop, task) = start_with_traces(&cfg).await;
    wait_for(&catalog, "both of this Argo CD's apps listed", |s| {
        s.apps.contains_key("web") && s.apps.contains_key("team-a_web")
    })
    .await;
    assert_eq!(
        catalog.snapshot().apps["web"].namespace,
        "argocd",
        "not the other instance's"
    );
    assert_eq!(catalog.snapshot().apps.len(), 2);
    // team-a's sync fails first, then argocd's (and the other instance's).
    api.apply(failed_web("team-a", "argocd", &at(0), Some(&at(1))));
    assert_eq!(next_root(&mut rx).await.0, "team-a");
    api.apply(failed_web("argocd", "argocd", &at(0), Some(&at(2))));
    api.apply(failed_web(
        "other-argocd",
        "other-argocd",
        &at(0),
        Some(&at(2)),
    ));
    assert_eq!(next_root(&mut rx).await.0, "argocd");
    stop.cancel();
    task.await.unwrap().unwrap();
    // Restarted on the same state file: both are remembered. The next trace out is a new
    // sync's, not a repeat of either.
    let (_catalog, mut rx, stop, task) = start_with_traces(&cfg).await;
    api.apply(failed_web("team-a", "argocd", &at(10), Some(&at(11))));
    let (ns, trace) = next_root(&mut rx).await;
    assert_eq!(ns, "team-a");
    assert_eq!(
        trace,
        hpcotel_core::catalog::rollout_trace_id(
            "uid-team-a-web",
            convert::rfc3339_nanos(&at(10)).unwrap()
        )
        .to_vec(),
        "the new sync, not a repeat"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(rx.recv().await.is_none(), "nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_recreated_under_its_name_is_read_anew() {
    let api = cluster(Some("train:apps/Deployment:ml/trainer"), None).await;
    let r = start(&config(&api)).await;
    wait_for(&r.catalog, "trainer-a-1 correlated", |s| {
        s.correlate("uid-trainer-a-1")
            .is_some_and(|c| c.revision.is_some())
    })
    .await;
    assert_eq!(revision(&r.catalog, "uid-trainer-a-1").unwrap().0, "aaa");
    // The Deployment is replaced (`Replace=true`) after bbb's sync: its ReplicaSet comes back
    // under the same name (same pod template hash) with a new UID, and runs bbb.
    api.delete("v1", "Pod", "ml", "trainer-a-1");
    api.delete("apps/v1", "ReplicaSet", "ml", "trainer-a");
    let mut rs = replicaset("trainer-a", "trainer", "2026-11-25T07:00:30Z");
    rs["metadata"]["uid"] = json!("uid-trainer-a-new");
    api.apply(rs);
    let mut p = pod("trainer-a-2", "node-1", "trainer-a", "10.0.0.21", json!({}));
    p["metadata"]["ownerReferences"][0]["uid"] = json!("uid-trainer-a-new");
    api.apply(p);
    wait_for(&r.catalog, "the new pod correlated", |s| {
        s.correlate("uid-trainer-a-2")
            .is_some_and(|c| c.revision.is_some())
    })
    .await;
    assert_eq!(
        revision(&r.catalog, "uid-trainer-a-2"),
        Some(("bbb".into(), RevisionSource::History)),
        "the new ReplicaSet's creation, not the cached old one's"
    );
    r.stop.cancel();
    r.task.await.unwrap().unwrap();
}
