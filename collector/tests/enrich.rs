//! Acceptance (correlation): in the real binary, the kubernetes receiver (against testkit's
//! fake kube-apiserver) fills the Catalog, and the enrich processor stamps GPU metrics (fake
//! NVML + fake kubelet) and OTLP data from pods with their workload, Argo CD Application and
//! the Git revision that deployed them — per pod: revision A's pod keeps A while B's carries B.

mod common;

use std::time::Duration;

use common::Hpcotel;
use common::otlp::metrics_request;
use hpcotel_core::catalog::{rollout_span_id, rollout_trace_id};
use hpcotel_core::semconv;
use hpcotel_testkit::kube::{FakeApiServer, fixtures};
use hpcotel_testkit::nvml::{Event, FakeNvml, Scenario};
use hpcotel_testkit::podresources::{FakeKubelet, FakePod};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const WAIT: Duration = Duration::from_secs(30);

fn res_attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    rm.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
}

/// The resource of the latest metrics about GPU `uuid`.
fn gpu_resource<'a>(r: &'a Received, uuid: &str) -> Option<&'a ResourceMetrics> {
    r.metrics.iter().rev().find(|rm| {
        rm.scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .any(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().any(|p| {
                    p.attributes.iter().any(|kv| {
                        kv.key == semconv::HW_ID
                            && kv.value.as_ref().and_then(any_value_string).as_deref() == Some(uuid)
                    })
                }),
                _ => false,
            })
    })
}

fn revision_of(rm: Option<&ResourceMetrics>) -> Option<String> {
    res_attr(rm?, semconv::VCS_REF_HEAD_REVISION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_and_otlp_data_carry_the_revision_of_the_pod_that_produced_them() {
    // The cluster: app `train` deployed revision aaa, then bbb; a ReplicaSet per revision,
    // one pod each on this node.
    let api = FakeApiServer::start().await;
    // Revision bbb's sync is still running: it started a minute ago.
    let started = common::apply_train_app(&api);
    for (rs, created) in [
        ("trainer-a", "2026-11-25T06:00:05Z"),
        ("trainer-b", "2026-11-25T07:00:13Z"),
    ] {
        api.apply(fixtures::replicaset(
            "ml",
            rs,
            &format!("uid-{rs}"),
            Some(("trainer", "uid-dep")),
            created,
        ));
    }
    let ips = [("trainer-a", "10.0.0.11"), ("trainer-b", "10.0.0.12")];
    for (rs, ip) in ips {
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
    // GPU 0 runs the A pod, GPU 1 the B pod.
    let scenario = Scenario::with_gpus(2);
    let fake = FakeNvml::new(&scenario);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "trainer-a-1", "main", &[&scenario.devices[0].uuid]),
            FakePod::with_gpus("ml", "trainer-b-1", "main", &[&scenario.devices[1].uuid]),
        ],
    )
    .await;
    let sink = OtlpSink::start().await;
    let otlp = common::free_port();
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{otlp}" }}
  gpu:
    sample_interval: 100ms
    report_interval: 300ms
    library_path: "{lib}"
    pod_resources: {{ endpoint: "{sock}", refresh_interval: 1s }}
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
    metrics: {{ receivers: [otlp, gpu], processors: [enrich], exporters: [otlp] }}
    logs: {{ receivers: [gpu], processors: [enrich], exporters: [otlp] }}
"#,
        lib = fake.library_path().display(),
        sock = socket.display(),
        api = api.url(),
        sink = sink.grpc_endpoint(),
    ));

    let (a, b) = (&scenario.devices[0].uuid, &scenario.devices[1].uuid);
    let r = sink
        .wait_for("GPU metrics with revisions", WAIT, |r| {
            revision_of(gpu_resource(r, a)).is_some() && revision_of(gpu_resource(r, b)).is_some()
        })
        .await;
    let ra = gpu_resource(&r, a).unwrap();
    let rb = gpu_resource(&r, b).unwrap();
    assert_eq!(
        revision_of(Some(ra)).as_deref(),
        Some("aaa"),
        "A's pod keeps A"
    );
    assert_eq!(
        revision_of(Some(rb)).as_deref(),
        Some("bbb"),
        "B's pod carries B"
    );
    for (rm, pod, rs) in [
        (ra, "trainer-a-1", "trainer-a"),
        (rb, "trainer-b-1", "trainer-b"),
    ] {
        assert_eq!(res_attr(rm, semconv::K8S_POD_NAME).as_deref(), Some(pod));
        assert_eq!(
            res_attr(rm, semconv::K8S_POD_UID),
            Some(format!("uid-{pod}"))
        );
        assert_eq!(
            res_attr(rm, semconv::K8S_REPLICASET_NAME).as_deref(),
            Some(rs)
        );
        assert_eq!(
            res_attr(rm, semconv::K8S_DEPLOYMENT_NAME).as_deref(),
            Some("trainer")
        );
        assert_eq!(
            res_attr(rm, semconv::HPCOTEL_ARGOCD_APPLICATION).as_deref(),
            Some("train")
        );
        assert_eq!(
            res_attr(rm, semconv::HPCOTEL_REVISION_SOURCE).as_deref(),
            Some("history")
        );
        assert_eq!(
            res_attr(rm, semconv::VCS_REPOSITORY_URL_FULL).as_deref(),
            Some("https://git.example.com/ml/train.git")
        );
    }

    // A workload's own OTLP metrics, identified by its pod IP.
    let mut client = MetricsServiceClient::connect(format!("http://127.0.0.1:{otlp}"))
        .await
        .unwrap();
    let mut req = metrics_request("from-pod-b", 0, 1);
    req.resource_metrics[0]
        .resource
        .get_or_insert_with(Default::default)
        .attributes
        .push(KeyValue {
            key: semconv::K8S_POD_IP.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("10.0.0.12".into())),
            }),
            ..Default::default()
        });
    client.export(req).await.unwrap();
    let r = sink
        .wait_for("the workload's metric", WAIT, |r| {
            r.metric_names().iter().any(|n| n == "from-pod-b.g0")
        })
        .await;
    let rm = r
        .metrics
        .iter()
        .find(|rm| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "from-pod-b.g0")
        })
        .unwrap();
    assert_eq!(
        res_attr(rm, semconv::K8S_POD_NAME).as_deref(),
        Some("trainer-b-1")
    );
    assert_eq!(revision_of(Some(rm)).as_deref(), Some("bbb"));

    // GPU 1 (the bbb pod's) falls off the bus during the rollout: the Xid log joins the
    // rollout's trace and carries the revision.
    fake.push_event(Event::xid(1, 79));
    let r = sink
        .wait_for("the Xid log", WAIT, |r| {
            r.log_records()
                .iter()
                .any(|l| l.event_name == "hpcotel.gpu.xid")
        })
        .await;
    let rl = r
        .logs
        .iter()
        .find(|rl| {
            rl.scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .any(|l| l.event_name == "hpcotel.gpu.xid")
        })
        .unwrap();
    let xid = rl
        .scope_logs
        .iter()
        .flat_map(|s| &s.log_records)
        .find(|l| l.event_name == "hpcotel.gpu.xid")
        .unwrap();
    let started_ns = u64::try_from(
        humantime::parse_rfc3339(&started)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap();
    let trace = rollout_trace_id("uid-app", started_ns);
    assert_eq!(
        xid.trace_id,
        trace.to_vec(),
        "the Xid opens the rollout trace"
    );
    assert_eq!(xid.span_id, rollout_span_id(&trace, "root").to_vec());
    let attrs = &rl.resource.as_ref().unwrap().attributes;
    let revision = attrs
        .iter()
        .find(|kv| kv.key == semconv::VCS_REF_HEAD_REVISION)
        .and_then(|kv| kv.value.as_ref().and_then(any_value_string));
    assert_eq!(revision.as_deref(), Some("bbb"));
    kubelet.stop().await;
}
