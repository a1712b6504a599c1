//! Acceptance scenario "failed rollout", in the real binary: app `train` moves from revision
//! `aaa` to `bbb`; `bbb`'s ReplicaSet runs a pod on this node that gets a GPU; that GPU
//! reports Xid 79 (fake NVML); the pod crash-loops and KEDA activates the scale target
//! (Events from the fake kube-apiserver); the sync ends Degraded. The exported data holds
//! exactly one trace for the `bbb` rollout (root ERROR, revision `bbb`, one child per synced
//! resource), the Xid, crash-loop and KEDA logs carry its trace id and revision `bbb`, and the
//! GPU metrics of `bbb`'s pod carry `bbb` while `aaa`'s pod still carries `aaa`.

mod common;

use std::time::{Duration, SystemTime};

use common::Hpcotel;
use common::otlp::attr_string as attr;
use common::{nanos, rfc3339};
use hpcotel_core::catalog::rollout_trace_id;
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::nvml::{Event, FakeNvml, Scenario};
use hpcotel_testkit::podresources::{FakeKubelet, FakePod};
use hpcotel_testkit::sink::{OtlpSink, Received};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);

/// The revision on the latest metrics of GPU `uuid`.
fn gpu_revision(r: &Received, uuid: &str) -> Option<String> {
    r.metrics.iter().rev().find_map(|rm| {
        let about = rm
            .scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .any(|m| match &m.data {
                Some(Data::Gauge(g)) => g
                    .data_points
                    .iter()
                    .any(|p| attr(&p.attributes, semconv::HW_ID).as_deref() == Some(uuid)),
                _ => false,
            });
        if !about {
            return None;
        }
        attr(
            &rm.resource.as_ref()?.attributes,
            semconv::VCS_REF_HEAD_REVISION,
        )
    })
}

fn application(
    started: &str,
    phase: &str,
    finished: Option<&str>,
    health: &str,
    history: &[(i64, &str, &str, &str)],
    revision: &str,
) -> Value {
    let mut app = fixtures::argocd_application(
        "argocd",
        "train",
        "uid-app",
        "https://git.example.com/ml/train.git",
        revision,
        health,
        Some(fixtures::ArgoOperation {
            phase,
            message: if phase == "Running" {
                "waiting for healthy state"
            } else {
                "successfully synced (all tasks run)"
            },
            started_at: started,
            finished_at: finished,
        }),
        history,
        &[
            fixtures::ArgoResource {
                group: "apps",
                version: "v1",
                kind: "Deployment",
                namespace: "ml",
                name: "trainer",
                status: "Synced",
                message: "deployment.apps/trainer configured",
            },
            fixtures::ArgoResource {
                group: "keda.sh",
                version: "v1alpha1",
                kind: "ScaledObject",
                namespace: "ml",
                name: "trainer",
                status: "Synced",
                message: "scaledobject.keda.sh/trainer configured",
            },
        ],
    );
    // It deploys into `ml` (the fixture puts the destination in the app's own namespace).
    app["spec"]["destination"]["namespace"] = json!("ml");
    app
}

fn event(name: &str, kind: &str, object: &str, reason: &str, type_: &str, at: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "ml", "uid": format!("uid-{name}")},
        "involvedObject": {"kind": kind, "namespace": "ml", "name": object, "uid": format!("uid-{object}")},
        "reason": reason, "message": format!("{reason}: {object}"), "type": type_, "count": 1,
        "firstTimestamp": at, "lastTimestamp": at, "source": {"component": "test"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_is_one_trace_with_its_gpu_crash_and_keda_logs() {
    let now = SystemTime::now();
    let history_a = (1, "aaa", "2026-11-25T06:00:00Z", "2026-11-25T06:00:10Z");
    let started = rfc3339(now - Duration::from_secs(60));
    let api = FakeApiServer::start().await;
    // bbb's sync is running; aaa's pod still runs, bbb's ReplicaSet has created its pod.
    api.apply(application(
        &started,
        "Running",
        None,
        "Progressing",
        &[history_a],
        "bbb",
    ));
    api.apply(fixtures::deployment(
        "ml",
        "trainer",
        "uid-dep",
        Some("train:apps/Deployment:ml/trainer"),
        None,
    ));
    api.apply(fixtures::replicaset(
        "ml",
        "trainer-a",
        "uid-trainer-a",
        Some(("trainer", "uid-dep")),
        "2026-11-25T06:00:05Z",
    ));
    api.apply(fixtures::replicaset(
        "ml",
        "trainer-b",
        "uid-trainer-b",
        Some(("trainer", "uid-dep")),
        &rfc3339(now - Duration::from_secs(30)),
    ));
    for (rs, ip) in [("trainer-a", "10.0.0.11"), ("trainer-b", "10.0.0.12")] {
        let name = format!("{rs}-1");
        api.apply(fixtures::pod(
            "ml",
            &name,
            &format!("uid-{name}"),
            "node-1",
            Some(("ReplicaSet", rs, &format!("uid-{rs}"))),
            ip,
            &[],
            &[],
        ));
    }
    let scenario = Scenario::with_gpus(2);
    let fake = FakeNvml::new(&scenario);
    let (gpu_a, gpu_b) = (
        scenario.devices[0].uuid.clone(),
        scenario.devices[1].uuid.clone(),
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "trainer-a-1", "main", &[&gpu_a]),
            FakePod::with_gpus("ml", "trainer-b-1", "main", &[&gpu_b]),
        ],
    )
    .await;
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  gpu:
    sample_interval: 100ms
    report_interval: 300ms
    library_path: "{lib}"
    pod_resources: {{ endpoint: "{sock}", refresh_interval: 1s }}
  kubernetes/node:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
  kubernetes/cluster:
    auth_type: none
    endpoint: "{api}"
    mode: cluster
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [kubernetes/cluster], exporters: [otlp] }}
    metrics: {{ receivers: [gpu], processors: [enrich], exporters: [otlp] }}
    logs: {{ receivers: [gpu, kubernetes/cluster], processors: [enrich], exporters: [otlp] }}
"#,
        lib = fake.library_path().display(),
        sock = socket.display(),
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));

    // While bbb rolls out: each GPU's metrics carry the revision of the pod using it.
    sink.wait_for("GPU metrics with revisions", WAIT, |r| {
        gpu_revision(r, &gpu_a).as_deref() == Some("aaa")
            && gpu_revision(r, &gpu_b).as_deref() == Some("bbb")
    })
    .await;

    // bbb's GPU falls off the bus, its pod crash-loops, KEDA activates; the sync ends Degraded.
    fake.push_event(Event::xid(1, 79));
    let soon = rfc3339(now + Duration::from_secs(2));
    api.apply(event(
        "trainer-b-1.crash",
        "Pod",
        "trainer-b-1",
        "BackOff",
        "Warning",
        &soon,
    ));
    api.apply(event(
        "trainer.keda",
        "ScaledObject",
        "trainer",
        "KEDAScaleTargetActivated",
        "Normal",
        &soon,
    ));
    let finished = rfc3339(now + Duration::from_secs(3));
    let history_b = (2, "bbb", started.as_str(), finished.as_str());
    // The update that ends the sync still carries the old health; the next one shows
    // Degraded.
    for health in ["Progressing", "Degraded"] {
        api.apply(application(
            &started,
            "Succeeded",
            Some(&finished),
            health,
            &[history_a, history_b],
            "bbb",
        ));
    }

    let trace = rollout_trace_id("uid-app", nanos(&started)).to_vec();
    let r = sink
        .wait_for("the rollout trace and its logs", WAIT, |r| {
            let has = |reason: &str| {
                r.log_records().iter().any(|l| {
                    attr(&l.attributes, semconv::K8S_EVENT_REASON).as_deref() == Some(reason)
                })
            };
            r.spans().iter().any(|s| s.name == "SYNC train")
                && has("BackOff")
                && has("KEDAScaleTargetActivated")
                && r.log_records()
                    .iter()
                    .any(|l| l.event_name == "hpcotel.gpu.xid")
        })
        .await;
    let roots: Vec<_> = r
        .spans()
        .into_iter()
        .filter(|s| s.name == "SYNC train")
        .collect();
    assert_eq!(roots.len(), 1, "one trace for the bbb rollout");
    let root = roots[0];
    assert_eq!(root.trace_id, trace);
    assert_eq!(
        root.status.as_ref().unwrap().code,
        2,
        "ERROR: the app ended Degraded"
    );
    assert_eq!(
        attr(&root.attributes, semconv::VCS_REF_HEAD_REVISION).as_deref(),
        Some("bbb")
    );
    assert_eq!(
        attr(&root.attributes, semconv::CICD_PIPELINE_RESULT).as_deref(),
        Some("failure")
    );
    let children: Vec<_> = r
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == trace && s.parent_span_id == root.span_id)
        .collect();
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"Deployment trainer") && names.contains(&"ScaledObject trainer"),
        "{names:?}"
    );
    assert_eq!(
        children.len(),
        3,
        "two synced resources and the health span: {names:?}"
    );

    // Every log of the story carries the trace id and revision bbb.
    for rl in &r.logs {
        let res = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.clone())
            .unwrap_or_default();
        for l in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let reason = attr(&l.attributes, semconv::K8S_EVENT_REASON);
            let story = l.event_name == "hpcotel.gpu.xid"
                || matches!(
                    reason.as_deref(),
                    Some("BackOff" | "KEDAScaleTargetActivated")
                );
            if !story {
                continue;
            }
            assert_eq!(
                l.trace_id, trace,
                "{} {reason:?} joins the rollout trace",
                l.event_name
            );
            assert_eq!(l.span_id, root.span_id);
            let revision = attr(&l.attributes, semconv::VCS_REF_HEAD_REVISION)
                .or_else(|| attr(&res, semconv::VCS_REF_HEAD_REVISION));
            assert_eq!(
                revision.as_deref(),
                Some("bbb"),
                "{} {reason:?}",
                l.event_name
            );
        }
    }
    // aaa's pod still carries aaa.
    let r = sink.received();
    assert_eq!(gpu_revision(&r, &gpu_a).as_deref(), Some("aaa"));
    assert_eq!(gpu_revision(&r, &gpu_b).as_deref(), Some("bbb"));
    kubelet.stop().await;
}
