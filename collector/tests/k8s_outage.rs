//! Acceptance (resilience): the API server goes away for 30 s. GPU metrics never stop and
//! keep their pod and revision (the Catalog keeps its last state); a change made while it was
//! away (the pod pinned to another revision) shows once it is back.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Hpcotel;
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::nvml::{FakeNvml, Scenario};
use hpcotel_testkit::podresources::{FakeKubelet, FakePod};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const OUTAGE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(90);

/// (time, revision) of every GPU report (its `hw.power` point).
fn reports(r: &Received) -> Vec<(u64, Option<String>)> {
    r.metrics
        .iter()
        .flat_map(|rm| {
            let revision = rm.resource.as_ref().and_then(|res| {
                res.attributes
                    .iter()
                    .find(|kv| kv.key == semconv::VCS_REF_HEAD_REVISION)
                    .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
            });
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == semconv::METRIC_HW_POWER)
                .flat_map(move |m| match &m.data {
                    Some(Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| (p.time_unix_nano, revision.clone()))
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
        })
        .collect()
}

fn unix_nanos(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_metrics_never_stop_while_the_api_server_is_away() {
    let api = FakeApiServer::start().await;
    api.apply(fixtures::argocd_application(
        "argocd",
        "train",
        "uid-app",
        "https://git.example.com/ml/train.git",
        "aaa",
        "Healthy",
        None,
        &[(1, "aaa", "2026-11-25T06:00:00Z", "2026-11-25T06:00:10Z")],
        &[],
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
        "uid-rs",
        Some(("trainer", "uid-dep")),
        "2026-11-25T06:00:05Z",
    ));
    let pod = |annotations: &[(&str, &str)]| {
        fixtures::pod(
            "ml",
            "trainer-a-1",
            "uid-pod",
            "node-1",
            Some(("ReplicaSet", "trainer-a", "uid-rs")),
            "10.0.0.11",
            annotations,
            &[],
        )
    };
    api.apply(pod(&[]));
    let scenario = Scenario::with_gpus(1);
    let fake = FakeNvml::new(&scenario);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus(
            "ml",
            "trainer-a-1",
            "main",
            &[&scenario.devices[0].uuid],
        )],
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
    pod_resources: {{ endpoint: "{sock}" }}
  kubernetes:
    auth_type: none
    endpoint: "{api}"
    node_name: node-1
processors:
  enrich:
exporters:
  otlp: {{ endpoint: "{sink}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [gpu], processors: [enrich], exporters: [otlp] }}
"#,
        lib = fake.library_path().display(),
        sock = socket.display(),
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));
    sink.wait_for("GPU reports with revision aaa", WAIT, |r| {
        reports(r)
            .last()
            .is_some_and(|(_, rev)| rev.as_deref() == Some("aaa"))
    })
    .await;

    // The API server goes away; meanwhile the pod is pinned to another revision.
    api.set_available(false);
    let down = unix_nanos(SystemTime::now());
    api.apply(pod(&[(
        "resource.opentelemetry.io/vcs.ref.head.revision",
        "hotfix",
    )]));
    let outage_ns = u64::try_from(OUTAGE.as_nanos()).unwrap();
    let r = sink
        .wait_for(
            "30 s of GPU reports while the API server is away",
            WAIT,
            |r| reports(r).iter().any(|(t, _)| *t >= down + outage_ns),
        )
        .await;
    let during: Vec<_> = reports(&r)
        .into_iter()
        .filter(|(t, _)| *t >= down && *t < down + outage_ns)
        .collect();
    // One report every 300 ms: at least two thirds of them, however loaded the machine.
    assert!(during.len() >= 60, "{} GPU reports in 30 s", during.len());
    assert!(
        during.iter().all(|(_, rev)| rev.as_deref() == Some("aaa")),
        "the Catalog kept its state"
    );

    // Back: the change made while it was away is not lost.
    api.set_available(true);
    sink.wait_for("the revision pinned during the outage", WAIT, |r| {
        reports(r)
            .last()
            .is_some_and(|(_, rev)| rev.as_deref() == Some("hotfix"))
    })
    .await;
    kubelet.stop().await;
}
