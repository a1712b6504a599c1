//! Tests: kube-rs clients and `kube::runtime::watcher` against the fake API server.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Error as KubeError, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::fixtures::{self, ArgoOperation, ArgoResource};
use super::selector::{FieldSelector, LabelSelector};
use super::store::rfc3339;
use super::*;

/// Upper bound for anything a test waits on.
const WAIT: Duration = Duration::from_secs(20);

fn pod_on(ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Value {
    let uid = format!("uid-{ns}-{name}");
    fixtures::pod(ns, name, &uid, node, None, "10.1.0.1", &[], labels)
}

fn api_status(e: KubeError) -> Box<kube::core::Status> {
    match e {
        KubeError::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

type Received<K> = mpsc::UnboundedReceiver<Result<watcher::Event<K>, watcher::Error>>;

/// Polls a watcher stream on its own task and forwards everything it yields.
fn forward<K, S>(stream: S) -> Received<K>
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next item, within [`WAIT`].
async fn next_item<K>(rx: &mut Received<K>) -> Result<watcher::Event<K>, watcher::Error> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the watcher yields within the deadline")
        .expect("the watcher task is alive")
}

/// A watcher event in names: ("init"|"init_apply"|"init_done"|"apply"|"delete", name).
fn describe(ev: &watcher::Event<Pod>) -> (&'static str, String) {
    match ev {
        watcher::Event::Init => ("init", String::new()),
        watcher::Event::InitApply(p) => ("init_apply", p.name_any()),
        watcher::Event::InitDone => ("init_done", String::new()),
        watcher::Event::Apply(p) => ("apply", p.name_any()),
        watcher::Event::Delete(p) => ("delete", p.name_any()),
    }
}

/// The next event that is not an error, and how many errors came before it.
async fn next_event(rx: &mut Received<Pod>) -> (watcher::Event<Pod>, usize) {
    let mut errors = 0;
    loop {
        match next_item(rx).await {
            Ok(ev) => return (ev, errors),
            Err(_) => errors += 1,
        }
    }
}

/// Consumes one Init .. InitDone cycle; returns the InitApply names and the errors seen
/// before it began.
async fn expect_init_cycle(rx: &mut Received<Pod>) -> (BTreeSet<String>, usize) {
    let (first, errors) = next_event(rx).await;
    assert!(
        matches!(first, watcher::Event::Init),
        "expected Init, got {:?}",
        describe(&first)
    );
    let mut names = BTreeSet::new();
    loop {
        match next_item(rx).await.expect("no error inside an init cycle") {
            watcher::Event::InitApply(p) => {
                names.insert(p.name_any());
            }
            watcher::Event::InitDone => return (names, errors),
            other => panic!("unexpected {:?} during init", describe(&other)),
        }
    }
}

fn names(set: &[&str]) -> BTreeSet<String> {
    set.iter().map(|s| (*s).to_string()).collect()
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors_and_paginates() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on(
        "ml",
        "a-0",
        "node-1",
        &[("app", "a"), ("tier", "gpu")],
    ));
    server.apply(pod_on("ml", "a-1", "node-2", &[("app", "a")]));
    server.apply(pod_on("ml", "b-0", "node-1", &[("app", "b")]));
    server.apply(pod_on("web", "c-0", "node-1", &[]));
    server.apply(pod_on("web", "c-1", "node-3", &[("app", "c")]));
    let client = server.client();
    let all: Api<Pod> = Api::all(client.clone());
    let listed = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .iter()
            .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
            .collect()
    };

    let everything = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        everything.metadata.resource_version.as_deref(),
        Some(server.resource_version().to_string().as_str())
    );
    assert_eq!(everything.items.len(), 5);

    let cases: &[(&str, &str, &[&str])] = &[
        ("app=a", "", &["ml/a-0", "ml/a-1"]),
        ("app==a,tier", "", &["ml/a-0"]),
        ("app!=a", "", &["ml/b-0", "web/c-0", "web/c-1"]),
        ("!app", "", &["web/c-0"]),
        ("app in (b, c)", "", &["ml/b-0", "web/c-1"]),
        ("app notin (a)", "", &["ml/b-0", "web/c-0", "web/c-1"]),
        ("", "spec.nodeName=node-1", &["ml/a-0", "ml/b-0", "web/c-0"]),
        (
            "app",
            "spec.nodeName!=node-1,metadata.namespace=web",
            &["web/c-1"],
        ),
        ("", "metadata.name=b-0", &["ml/b-0"]),
        ("", "spec.nodeName=", &[]),
    ];
    for (labels, fields, want) in cases {
        let lp = ListParams::default().labels(labels).fields(fields);
        let got = listed(all.list(&lp).await.unwrap());
        assert_eq!(&got, want, "labels {labels:?} fields {fields:?}");
    }
    let ml: Api<Pod> = Api::namespaced(client.clone(), "ml");
    assert_eq!(
        listed(ml.list(&ListParams::default()).await.unwrap()),
        ["ml/a-0", "ml/a-1", "ml/b-0"]
    );

    // Pagination: pages of two, pinned to the first page's resourceVersion.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(listed(first.clone()), ["ml/a-0", "ml/a-1"]);
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    server.apply(pod_on("ml", "a-00", "node-1", &[]));
    server.delete("v1", "Pod", "web", "c-0");
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(listed(second.clone()), ["ml/b-0", "web/c-0"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = all
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(listed(third.clone()), ["web/c-1"]);
    assert_eq!(third.metadata.continue_, None);

    // A continue token from before a compaction is expired, as on a real server.
    server.compact();
    let err = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    let status = api_status(err);
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));

    // A malformed selector is a 400.
    let err = all
        .list(&ListParams::default().labels("app in (a"))
        .await
        .unwrap_err();
    assert_eq!(api_status(err).code, 400);
}

#[tokio::test]
async fn dynamic_objects_list_and_get_and_missing_objects_are_404() {
    let server = FakeApiServer::start().await;
    let op = ArgoOperation {
        phase: "Succeeded",
        message: "successfully synced (all tasks run)",
        started_at: "2025-01-01T00:00:00Z",
        finished_at: Some("2025-01-01T00:00:05Z"),
    };
    let res = ArgoResource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        namespace: "ml",
        name: "trainer",
        status: "Synced",
        message: "deployment.apps/trainer configured",
    };
    server.apply(fixtures::argocd_application(
        "argocd",
        "trainer",
        "uid-app",
        "https://git.example.com/ml.git",
        "abc123",
        "Healthy",
        Some(op),
        &[(1, "abc123", "2025-01-01T00:00:00Z", "2025-01-01T00:00:05Z")],
        &[res],
    ));
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "applications");
    let apps: Api<DynamicObject> = Api::all_with(server.client(), &ar);
    let list = apps.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "ApplicationList");
    assert_eq!(list.types.api_version, "argoproj.io/v1alpha1");
    assert_eq!(list.items.len(), 1);
    let app = &list.items[0];
    assert_eq!(app.types.as_ref().unwrap().kind, "Application");
    assert_eq!(app.metadata.uid.as_deref(), Some("uid-app"));
    assert_eq!(
        app.data
            .pointer("/status/operationState/syncResult/revision"),
        Some(&json!("abc123"))
    );

    let one: Api<DynamicObject> = Api::namespaced_with(server.client(), "argocd", &ar);
    let got = one.get("trainer").await.unwrap();
    assert_eq!(got.metadata.resource_version, app.metadata.resource_version);
    let status = api_status(one.get("missing").await.unwrap_err());
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        status.message,
        "applications.argoproj.io \"missing\" not found"
    );
}

#[tokio::test]
async fn apply_fills_metadata_and_bumps_generation_on_spec_changes() {
    let server = FakeApiServer::start().await;
    assert_eq!(server.resource_version(), 1);
    let mut dep = fixtures::deployment("ml", "web", "", Some("web:apps/Deployment:ml/web"), None);
    dep["metadata"].as_object_mut().unwrap().remove("uid");
    let created = server.apply(dep.clone());
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(!uid.is_empty());
    assert!(
        created["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["resourceVersion"], "2");

    dep["status"]["readyReplicas"] = json!(0);
    let status_only = server.apply(dep.clone());
    assert_eq!(status_only["metadata"]["generation"], 1);
    assert_eq!(status_only["metadata"]["uid"], uid.as_str());

    dep["spec"]["replicas"] = json!(3);
    let scaled = server.apply(dep.clone());
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(
        scaled["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_eq!(server.resource_version(), 4);
    assert_eq!(
        server.get("apps/v1", "Deployment", "ml", "web"),
        Some(scaled)
    );

    // A given creationTimestamp is kept.
    let rs = server.apply(fixtures::replicaset(
        "ml",
        "web-5d9c",
        "uid-rs",
        Some(("web", &uid)),
        "2024-06-01T12:00:00Z",
    ));
    assert_eq!(rs["metadata"]["creationTimestamp"], "2024-06-01T12:00:00Z");
    let deleted = server
        .delete("apps/v1", "ReplicaSet", "ml", "web-5d9c")
        .unwrap();
    assert_eq!(deleted["metadata"]["resourceVersion"], "6");
    assert_eq!(server.get("apps/v1", "ReplicaSet", "ml", "web-5d9c"), None);
    assert_eq!(
        server.delete("apps/v1", "ReplicaSet", "ml", "web-5d9c"),
        None
    );
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_in_order() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    server.apply(pod_on("ml", "other", "node-2", &[]));
    let pods: Api<Pod> = Api::all(server.client());
    let mut rx = forward(
        watcher(
            pods,
            watcher::Config::default().fields("spec.nodeName=node-1"),
        )
        .default_backoff(),
    );
    let (initial, errors) = expect_init_cycle(&mut rx).await;
    assert_eq!((initial, errors), (names(&["p1"]), 0));
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);

    server.apply(pod_on("ml", "p2", "node-1", &[]));
    server.apply(pod_on("ml", "p3", "node-2", &[])); // not selected
    server.apply(pod_on("ml", "p1", "node-1", &[("phase", "two")]));
    server.delete("v1", "Pod", "ml", "p2");
    server.delete("v1", "Pod", "ml", "other"); // not selected
    server.apply(pod_on("ml", "p4", "node-1", &[]));

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let (ev, errors) = next_event(&mut rx).await;
        assert_eq!(errors, 0);
        if let watcher::Event::Apply(p) = &ev
            && p.name_any() == "p1"
        {
            assert_eq!(p.labels().get("phase").map(String::as_str), Some("two"));
        }
        let (what, name) = describe(&ev);
        seen.push(format!("{what} {name}"));
    }
    assert_eq!(seen, ["apply p2", "apply p1", "delete p2", "apply p4"]);
}

#[tokio::test]
async fn raw_watch_replays_history_and_moves_objects_in_and_out_of_the_selection() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on("ml", "p1", "node-1", &[("app", "a")]));
    let start = server.resource_version();
    server.apply(pod_on("ml", "p1", "node-1", &[("app", "b")])); // leaves app=a
    server.apply(pod_on("ml", "p1", "node-1", &[("app", "a")])); // back in
    server.apply(pod_on("ml", "p2", "node-1", &[("app", "a")]));
    let pods: Api<Pod> = Api::namespaced(server.client(), "ml");
    let wp = WatchParams::default().labels("app=a").timeout(1);
    let events: Vec<WatchEvent<Pod>> = tokio::time::timeout(
        WAIT,
        pods.watch(&wp, &start.to_string())
            .await
            .unwrap()
            .try_collect(),
    )
    .await
    .expect("the watch ends after timeoutSeconds")
    .expect("the stream ends cleanly");
    let got: Vec<(String, String, String)> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(p) => ("ADDED".into(), p.name_any(), p.resource_version().unwrap()),
            WatchEvent::Modified(p) => (
                "MODIFIED".into(),
                p.name_any(),
                p.resource_version().unwrap(),
            ),
            WatchEvent::Deleted(p) => (
                "DELETED".into(),
                p.name_any(),
                p.resource_version().unwrap(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let rv = |n: u64| (start + n).to_string();
    assert_eq!(
        got,
        [
            ("DELETED".to_string(), "p1".to_string(), rv(1)),
            ("ADDED".to_string(), "p1".to_string(), rv(2)),
            ("ADDED".to_string(), "p2".to_string(), rv(3)),
        ]
    );

    // From "0": synthetic ADDED for what exists now.
    let events: Vec<WatchEvent<Pod>> = pods
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let added: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(p) => p.name_any(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(added, ["p1", "p2"]);
}

#[tokio::test]
async fn bookmarks_arrive_and_advance_past_unselected_writes() {
    let server = FakeApiServer::start_with(FakeApiOptions {
        bookmark_interval: Duration::from_millis(50),
    })
    .await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    let pods: Api<Pod> = Api::all(server.client());
    let wp = WatchParams::default().fields("spec.nodeName=node-1"); // bookmarks on by default
    let mut stream = pods.watch(&wp, "0").await.unwrap().boxed();
    let first = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(WatchEvent::Added(ref p)) if p.name_any() == "p1"));

    // A write the watch does not select still moves the bookmarks' resourceVersion.
    server.apply(pod_on("ml", "elsewhere", "node-2", &[]));
    let target = server.resource_version();
    let reached = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                WatchEvent::Bookmark(bm) => {
                    assert_eq!(bm.types.kind, "Pod");
                    assert_eq!(bm.types.api_version, "v1");
                    if bm.metadata.resource_version.parse::<u64>().unwrap() >= target {
                        return true;
                    }
                }
                other => panic!("only bookmarks expected, got {other:?}"),
            }
        }
        false
    })
    .await
    .expect("a bookmark at the latest resourceVersion arrives");
    assert!(reached);
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_expired() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    let old = server.resource_version();
    server.apply(pod_on("ml", "p2", "node-1", &[]));
    server.compact();
    let now = server.resource_version();
    let pods: Api<Pod> = Api::all(server.client());
    let events: Vec<WatchEvent<Pod>> = tokio::time::timeout(
        WAIT,
        pods.watch(&WatchParams::default(), &old.to_string())
            .await
            .unwrap()
            .try_collect(),
    )
    .await
    .expect("the stream ends after the error")
    .unwrap();
    assert_eq!(events.len(), 1);
    let WatchEvent::Error(status) = &events[0] else {
        panic!("expected an ERROR event, got {:?}", events[0]);
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert_eq!(
        status.message,
        format!("too old resource version: {old} ({now})")
    );
    // From the compaction point itself nothing is lost, so that works.
    let mut stream = pods
        .watch(&WatchParams::default(), &now.to_string())
        .await
        .unwrap()
        .boxed();
    server.apply(pod_on("ml", "p3", "node-1", &[]));
    let ev = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ev, Some(WatchEvent::Added(ref p)) if p.name_any() == "p3"));
}

#[tokio::test]
async fn watcher_relists_after_compaction_and_dropped_watches_without_losing_objects() {
    // Bookmarks far apart, so the watcher's resourceVersion stays at its last event.
    let server = FakeApiServer::start_with(FakeApiOptions {
        bookmark_interval: Duration::from_secs(3600),
    })
    .await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    server.apply(pod_on("ml", "p2", "node-2", &[]));
    let pods: Api<Pod> = Api::all(server.client());
    let mut rx = forward(
        watcher(
            pods,
            watcher::Config::default().fields("spec.nodeName=node-1"),
        )
        .default_backoff(),
    );
    assert_eq!(expect_init_cycle(&mut rx).await, (names(&["p1"]), 0));
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);
    server.apply(pod_on("ml", "p3", "node-1", &[]));
    let (ev, _) = next_event(&mut rx).await;
    assert_eq!(describe(&ev), ("apply", "p3".to_string()));
    let resumed_from = server.resource_version();

    // No await between these: the watcher cannot reconnect before the history is gone.
    server.drop_watches();
    server.apply(pod_on("ml", "p4", "node-1", &[]));
    server.delete("v1", "Pod", "ml", "p1");
    server.apply(pod_on("ml", "p2", "node-2", &[("touched", "yes")]));
    server.compact();
    assert_eq!(server.watch_count(), 0);

    let (relisted, errors) = expect_init_cycle(&mut rx).await;
    assert_eq!(relisted, names(&["p3", "p4"]));
    assert!(errors >= 1, "the 410 surfaces as a watcher error");
    // It resumed from its last resourceVersion, got 410 in the stream, and listed again.
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.verb == Verb::Watch
        && r.query_param("resourceVersion") == Some(resumed_from.to_string().as_str())));
    assert_eq!(requests.iter().filter(|r| r.verb == Verb::List).count(), 2);

    // And it is live again.
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);
    server.apply(pod_on("ml", "p5", "node-1", &[]));
    let (ev, errors) = next_event(&mut rx).await;
    assert_eq!((describe(&ev), errors), (("apply", "p5".to_string()), 0));
}

#[tokio::test]
async fn watcher_retries_while_unavailable_and_catches_up_afterwards() {
    let server = FakeApiServer::start_with(FakeApiOptions {
        bookmark_interval: Duration::from_secs(3600),
    })
    .await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    let pods: Api<Pod> = Api::all(server.client());
    let mut rx = forward(
        watcher(
            pods,
            watcher::Config::default().fields("spec.nodeName=node-1"),
        )
        .default_backoff(),
    );
    assert_eq!(expect_init_cycle(&mut rx).await, (names(&["p1"]), 0));
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);

    server.set_available(false);
    assert_eq!(server.watch_count(), 0);
    server.apply(pod_on("ml", "p1", "node-1", &[("v", "2")]));
    server.apply(pod_on("ml", "p2", "node-1", &[]));
    // The watcher comes back and is refused; kube-rs clients retry a 503 themselves (with
    // exponential backoff from 5 ms) before the watcher would see an error.
    let resume = server.requests().last().unwrap().clone();
    assert_eq!(resume.verb, Verb::Watch);
    let refused = |s: &FakeApiServer| {
        s.requests()
            .iter()
            .filter(|r| r.status == 503 && r.verb == Verb::Watch && r.query == resume.query)
            .count()
    };
    assert!(server.wait_until(WAIT, |s| refused(s) >= 3).await);

    server.set_available(true);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (ev, _) = next_event(&mut rx).await;
        if let watcher::Event::Apply(p) = &ev
            && p.name_any() == "p1"
        {
            assert_eq!(p.labels().get("v").map(String::as_str), Some("2"));
        }
        seen.push(describe(&ev));
    }
    assert_eq!(
        seen,
        [("apply", "p1".to_string()), ("apply", "p2".to_string())]
    );

    // Without the client's own retries the 503 and its Status are visible.
    server.set_available(false);
    let mut config = kube::Config::new(server.url().parse().unwrap());
    config.default_retry = false;
    let pods: Api<Pod> = Api::all(kube::Client::try_from(config).unwrap());
    let status = api_status(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        (status.code, status.reason.as_str()),
        (503, "ServiceUnavailable")
    );
}

#[tokio::test]
async fn lease_update_with_a_stale_resource_version_conflicts() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "hpcotel");
    let lease: Lease =
        serde_json::from_value(fixtures::lease("hpcotel", "leader", "pod-a", 15)).unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let again = api_status(
        leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let updated = leases
        .replace("leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(updated.resource_version(), created.resource_version());
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // `created` carries the old resourceVersion now.
    let stale = api_status(
        leases
            .replace("leader", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    // A merge patch and a server-side apply go through.
    let patched = leases
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "pod-c"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec.unwrap().holder_identity.as_deref(),
        Some("pod-c")
    );
    let applied = leases
        .patch(
            "other",
            &PatchParams::apply("hpcotel"),
            &Patch::Apply(fixtures::lease("hpcotel", "other", "pod-z", 10)),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.spec.unwrap().holder_identity.as_deref(),
        Some("pod-z")
    );
    leases.delete("leader", &Default::default()).await.unwrap();
    assert_eq!(
        server.get("coordination.k8s.io/v1", "Lease", "hpcotel", "leader"),
        None
    );
}

#[tokio::test]
async fn requests_record_verbs_and_resources() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ml");
    pods.list(&ListParams::default().labels("app=a"))
        .await
        .unwrap();
    pods.get("p1").await.unwrap();
    let _ = pods
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    events.list(&ListParams::default()).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client, "hpcotel");
    let lease: Lease = serde_json::from_value(fixtures::lease("hpcotel", "l", "me", 15)).unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    leases
        .replace("l", &PostParams::default(), &created)
        .await
        .unwrap();
    leases.delete("l", &Default::default()).await.unwrap();

    let got: Vec<String> = server
        .requests()
        .into_iter()
        .map(|r| {
            format!(
                "{} {}/{} ns={} name={}",
                r.verb,
                r.group,
                r.plural,
                r.namespace.as_deref().unwrap_or("-"),
                r.name.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "list /pods ns=ml name=-",
            "get /pods ns=ml name=p1",
            "watch /pods ns=ml name=-",
            "list events.k8s.io/events ns=- name=-",
            "create coordination.k8s.io/leases ns=hpcotel name=-",
            "update coordination.k8s.io/leases ns=hpcotel name=l",
            "delete coordination.k8s.io/leases ns=hpcotel name=l",
        ]
    );
    let first = &server.requests()[0];
    assert_eq!(first.query_param("labelSelector"), Some("app=a"));
    assert_eq!(first.status, 200);
}

#[tokio::test]
async fn fixtures_have_the_shapes_the_real_types_read() {
    let owner = ("ReplicaSet", "web-5d9c", "uid-rs");
    let pod: Pod = serde_json::from_value(fixtures::pod(
        "ml",
        "web-5d9c-x",
        "uid-pod",
        "node-1",
        Some(owner),
        "10.1.2.3",
        &[("a", "b")],
        &[("app", "web")],
    ))
    .unwrap();
    let spec = pod.spec.unwrap();
    let status = pod.status.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node-1"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.container_statuses.unwrap()[0].ready);
    let oref = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (
            oref.api_version.as_str(),
            oref.kind.as_str(),
            oref.uid.as_str(),
            oref.controller
        ),
        ("apps/v1", "ReplicaSet", "uid-rs", Some(true))
    );

    let rs: ReplicaSet = serde_json::from_value(fixtures::replicaset(
        "ml",
        "web-5d9c",
        "uid-rs",
        Some(("web", "uid-dep")),
        "2024-06-01T12:00:00Z",
    ))
    .unwrap();
    assert_eq!(rs.metadata.owner_references.unwrap()[0].kind, "Deployment");
    assert_eq!(rs.metadata.labels.unwrap()["pod-template-hash"], "5d9c");
    assert!(rs.metadata.creation_timestamp.is_some());

    let dep: Deployment = serde_json::from_value(fixtures::deployment(
        "ml",
        "web",
        "uid-dep",
        Some("app:apps/Deployment:ml/web"),
        Some("app"),
    ))
    .unwrap();
    assert_eq!(
        dep.metadata.annotations.unwrap()["argocd.argoproj.io/tracking-id"],
        "app:apps/Deployment:ml/web"
    );
    assert_eq!(
        dep.metadata.labels.unwrap()["app.kubernetes.io/instance"],
        "app"
    );

    let job: Job = serde_json::from_value(fixtures::job(
        "ml",
        "train",
        "uid-job",
        Some(("MPIJob", "train", "uid-mpi")),
        &[],
    ))
    .unwrap();
    assert_eq!(
        job.metadata.owner_references.unwrap()[0].api_version,
        "kubeflow.org/v2beta1"
    );
    assert_eq!(job.status.unwrap().active, Some(1));

    let ev: CoreEvent = serde_json::from_value(fixtures::event(
        "ml",
        "web.1",
        ("Pod", "ml", "web-5d9c-x", "uid-pod"),
        "BackOff",
        "Back-off restarting failed container",
        "Warning",
        "kubelet",
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:05:00Z",
        7,
    ))
    .unwrap();
    assert_eq!(ev.involved_object.uid.as_deref(), Some("uid-pod"));
    assert_eq!(ev.count, Some(7));
    assert_eq!(ev.reporting_component.as_deref(), Some("kubelet"));
    let _: Lease = serde_json::from_value(fixtures::lease("ns", "l", "me", 15)).unwrap();

    let app = fixtures::argocd_application(
        "argocd",
        "app",
        "uid-app",
        "https://git.example.com/r.git",
        "deadbeef",
        "Progressing",
        Some(ArgoOperation {
            phase: "Running",
            message: "waiting for healthy state",
            started_at: "2025-01-01T00:00:00Z",
            finished_at: None,
        }),
        &[(3, "cafe", "2024-12-31T00:00:00Z", "2024-12-31T00:01:00Z")],
        &[ArgoResource {
            group: "apps",
            version: "v1",
            kind: "Deployment",
            namespace: "ml",
            name: "web",
            status: "Synced",
            message: "deployment.apps/web configured",
        }],
    );
    for (pointer, want) in [
        (
            "/spec/source/repoURL",
            json!("https://git.example.com/r.git"),
        ),
        ("/status/sync/revision", json!("deadbeef")),
        ("/status/health/status", json!("Progressing")),
        ("/status/history/0/id", json!(3)),
        (
            "/status/history/0/deployStartedAt",
            json!("2024-12-31T00:00:00Z"),
        ),
        (
            "/status/history/0/deployedAt",
            json!("2024-12-31T00:01:00Z"),
        ),
        ("/status/operationState/phase", json!("Running")),
        (
            "/status/operationState/operation/sync/revision",
            json!("deadbeef"),
        ),
        (
            "/status/operationState/syncResult/resources/0/kind",
            json!("Deployment"),
        ),
        ("/status/resources/0/name", json!("web")),
    ] {
        assert_eq!(app.pointer(pointer), Some(&want), "{pointer}");
    }
    assert_eq!(app.pointer("/status/operationState/finishedAt"), None);

    let so = fixtures::scaled_object(
        "ml",
        "web",
        "uid-so",
        ("Deployment", "web"),
        &[(
            "Active",
            "True",
            "ScalerActive",
            "Scaling is performed because triggers are active",
        )],
        Some("2025-01-01T00:10:00Z"),
    );
    for (pointer, want) in [
        ("/spec/scaleTargetRef/name", json!("web")),
        ("/spec/scaleTargetRef/apiVersion", json!("apps/v1")),
        ("/status/scaleTargetKind", json!("apps/v1.Deployment")),
        ("/status/scaleTargetGVKR/resource", json!("deployments")),
        ("/status/lastActiveTime", json!("2025-01-01T00:10:00Z")),
        ("/status/conditions/0/type", json!("Active")),
        ("/status/conditions/0/status", json!("True")),
    ] {
        assert_eq!(so.pointer(pointer), Some(&want), "{pointer}");
    }
    let mpi = fixtures::mpi_job("ml", "train", "uid-mpi", 4);
    assert_eq!(
        mpi.pointer("/spec/mpiReplicaSpecs/Worker/replicas"),
        Some(&json!(4))
    );
}

#[tokio::test]
async fn custom_kinds_and_version_endpoint() {
    let server = FakeApiServer::start().await;
    server.register_kind("example.com/v1", "Widget", "widgets", false);
    server.apply(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
    );
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::all_with(server.client(), &ar);
    let w = widgets.get("w").await.unwrap();
    assert_eq!(w.metadata.namespace, None);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .types
            .kind,
        "WidgetList"
    );
    let version = server.client().apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
}

#[test]
fn selectors_parse_and_match() {
    let obj = json!({"metadata": {"name": "x", "labels": {"app": "a", "tier": "gpu"}}, "spec": {"nodeName": "n1", "replicas": 3}});
    let yes = [
        "app=a",
        "app==a",
        "app!=b",
        "tier",
        "!missing",
        "app in (a,b)",
        "app notin (b)",
        "app=a,tier=gpu",
        "",
    ];
    for s in yes {
        assert!(LabelSelector::parse(s).unwrap().matches(&obj), "{s}");
    }
    for s in [
        "app=b",
        "app!=a",
        "missing",
        "!app",
        "app in (b)",
        "app notin (a, b)",
    ] {
        assert!(!LabelSelector::parse(s).unwrap().matches(&obj), "{s}");
    }
    for s in ["app in (a", "=a", "a b=c"] {
        assert!(LabelSelector::parse(s).is_err(), "{s}");
    }
    for s in [
        "spec.nodeName=n1",
        "spec.replicas=3",
        "metadata.namespace=",
        "spec.nodeName!=n2",
    ] {
        assert!(FieldSelector::parse(s).unwrap().matches(&obj), "{s}");
    }
    assert!(
        !FieldSelector::parse("spec.nodeName=n2")
            .unwrap()
            .matches(&obj)
    );
    assert!(FieldSelector::parse("novalue").is_err());
}

#[test]
fn rfc3339_formats_epoch_seconds() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_827_696), "2000-02-29T12:34:56Z");
}

/// Sends a raw HTTP/1.1 GET and returns the connection.
async fn raw_get(server: &FakeApiServer, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    conn
}

/// Reads until `buf` contains `needle`, within [`WAIT`].
async fn read_until(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, needle: &str) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(buf).contains(needle) {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "EOF before {needle:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("the expected bytes arrive");
}

async fn read_to_eof(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, conn.read_to_end(buf))
        .await
        .expect("the server closes the connection")
        .unwrap();
}

#[tokio::test]
async fn watch_bodies_are_chunked_and_drop_watches_cuts_them_without_the_last_chunk() {
    let server = FakeApiServer::start().await;
    server.apply(pod_on("ml", "p1", "node-1", &[]));

    // A watch that reaches timeoutSeconds ends with the terminating chunk.
    let mut conn = raw_get(
        &server,
        "/api/v1/namespaces/ml/pods?watch=1&timeoutSeconds=1",
    )
    .await;
    let mut clean = Vec::new();
    read_to_eof(&mut conn, &mut clean).await;
    let clean = String::from_utf8(clean).unwrap();
    let head = clean.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{clean}");
    assert!(head.contains("transfer-encoding: chunked"), "{clean}");
    assert!(head.contains("content-type: application/json"), "{clean}");
    assert!(clean.contains(r#"{"type":"ADDED","object":{"#), "{clean}");
    assert!(clean.ends_with("0\r\n\r\n"), "{clean:?}");

    // A dropped watch does not.
    let mut conn = raw_get(&server, "/api/v1/pods?watch=true").await;
    let mut cut = Vec::new();
    read_until(&mut conn, &mut cut, "\"ADDED\"").await;
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);
    server.drop_watches();
    read_to_eof(&mut conn, &mut cut).await;
    let cut = String::from_utf8(cut).unwrap();
    assert!(!cut.ends_with("0\r\n\r\n"), "{cut:?}");
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 0).await);
}
