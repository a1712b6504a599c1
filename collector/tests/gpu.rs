//! Acceptance: the gpu receiver in the real `hpcotel` binary, on testkit's fake
//! `libnvidia-ml.so` and fake kubelet PodResources socket (dedicated and time-sliced GPUs);
//! `hpcotel gpus`; and a node without NVML.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Hpcotel, strip_ansi};
use hpcotel_core::semconv;
use hpcotel_testkit::nvml::{FakeNvml, Scenario};
use hpcotel_testkit::podresources::{
    FakeClaim, FakeClaimDevice, FakeContainer, FakeKubelet, FakePod, NVIDIA_GPU_SHARED,
};
use hpcotel_testkit::sink::{OtlpSink, Received, any_value_string};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

const WAIT: Duration = Duration::from_secs(30);

/// The resource attributes of the most recent metrics of GPU `uuid`.
fn latest_resource(r: &Received, uuid: &str) -> Option<Vec<KeyValue>> {
    let about_gpu = |rm: &ResourceMetrics| {
        rm.scope_metrics
            .iter()
            .flat_map(|s| &s.metrics)
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.clone(),
                Some(Data::Sum(s)) => s.data_points.clone(),
                _ => Vec::new(),
            })
            .any(|p| {
                p.attributes.iter().any(|kv| {
                    kv.key == semconv::HW_ID
                        && kv.value.as_ref().and_then(any_value_string).as_deref() == Some(uuid)
                })
            })
    };
    r.metrics
        .iter()
        .rev()
        .find(|rm| about_gpu(rm))
        .map(|rm| rm.resource.clone().unwrap_or_default().attributes)
}

/// The pods `hpcotel.gpu.pods` lists on `attrs` (`None`: no such attribute), and whether
/// `hpcotel.gpu.shared` is true.
fn shared_pods(attrs: &[KeyValue]) -> (Option<Vec<String>>, bool) {
    let value = |key: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.clone())
    };
    let pods = match value(semconv::HPCOTEL_GPU_PODS) {
        Some(any_value::Value::ArrayValue(a)) => Some(
            a.values
                .iter()
                .map(|v| any_value_string(v).unwrap_or_default())
                .collect(),
        ),
        None => None,
        Some(other) => panic!("hpcotel.gpu.pods is not an array: {other:?}"),
    };
    let shared = matches!(
        value(semconv::HPCOTEL_GPU_SHARED),
        Some(any_value::Value::BoolValue(true))
    );
    (pods, shared)
}

/// The pod (`namespace/name/container`) on the most recent metrics of GPU `uuid`.
fn latest_pod(r: &Received, uuid: &str) -> Option<Option<String>> {
    let attrs = latest_resource(r, uuid)?;
    let get = |k: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
    };
    Some(
        match (
            get(semconv::K8S_NAMESPACE_NAME),
            get(semconv::K8S_POD_NAME),
            get(semconv::K8S_CONTAINER_NAME),
        ) {
            (Some(ns), Some(p), Some(c)) => Some(format!("{ns}/{p}/{c}")),
            _ => None,
        },
    )
}

fn config(fake: &FakeNvml, socket: &std::path::Path, sink: &OtlpSink) -> String {
    format!(
        r#"
receivers:
  gpu:
    sample_interval: 100ms
    report_interval: 300ms
    library_path: "{lib}"
    pod_resources:
      endpoint: "{sock}"
      refresh_interval: 1s
exporters:
  otlp:
    endpoint: "{sink}"
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [gpu], exporters: [otlp] }}
    logs: {{ receivers: [gpu], exporters: [otlp] }}
"#,
        lib = fake.library_path().display(),
        sock = socket.display(),
        sink = sink.grpc_endpoint(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_metrics_carry_their_pods_and_follow_a_kubelet_restart() {
    let scenario = Scenario::with_gpus(8);
    let fake = FakeNvml::new(&scenario);
    let uuid = |i: usize| scenario.devices[i].uuid.clone();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("research", "trainer-0", "pytorch", &[&uuid(0), &uuid(1)]),
            FakePod::with_gpus("serving", "llm-7f9c", "vllm", &[&uuid(2)]),
        ],
    )
    .await;
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&config(&fake, &socket, &sink));

    let r = sink
        .wait_for("all 8 GPUs reported with their pods", WAIT, |r| {
            (0..8).all(|i| latest_pod(r, &uuid(i)).is_some())
                && latest_pod(r, &uuid(2)) == Some(Some("serving/llm-7f9c/vllm".into()))
        })
        .await;
    assert_eq!(
        latest_pod(&r, &uuid(0)),
        Some(Some("research/trainer-0/pytorch".into()))
    );
    assert_eq!(
        latest_pod(&r, &uuid(1)),
        Some(Some("research/trainer-0/pytorch".into()))
    );
    for i in 3..8 {
        assert_eq!(
            latest_pod(&r, &uuid(i)),
            Some(None),
            "GPU {i} is not allocated"
        );
    }

    // kubelet restarts (the socket is removed and recreated) with a new allocation.
    kubelet.stop().await;
    let kubelet = FakeKubelet::start(
        &socket,
        vec![FakePod::with_gpus(
            "research",
            "trainer-1",
            "pytorch",
            &[&uuid(0)],
        )],
    )
    .await;
    let restarted = Instant::now();
    sink.wait_for("GPU 0 moved to trainer-1", WAIT, |r| {
        latest_pod(r, &uuid(0)) == Some(Some("research/trainer-1/pytorch".into()))
            && latest_pod(r, &uuid(2)) == Some(None)
    })
    .await;
    // The poller re-dialled at its next tick, not after a backoff: its first List on the new
    // socket came within one refresh interval (1 s, plus scheduling slack) of the restart.
    let first = kubelet
        .first_list_at()
        .expect("the restarted kubelet was asked");
    let after = first.saturating_duration_since(restarted);
    println!(
        "kubelet restart: first List {after:?} after the new socket came up; new mapping exported {:?} after it",
        restarted.elapsed()
    );
    assert!(
        after <= Duration::from_secs(1) + Duration::from_millis(900),
        "first List on the restarted kubelet {after:?} after it came up"
    );
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_sliced_gpu_shared_by_two_namespaces_names_both_pods_and_neither_alone() {
    let scenario = Scenario::with_gpus(3);
    let fake = FakeNvml::new(&scenario);
    let uuid = |i: usize| scenario.devices[i].uuid.clone();
    let replica = |i: usize, n: u32| format!("{}::{n}", uuid(i));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    // The device plugin with `sharing.timeSlicing.renameByDefault: true`: GPU 0's replicas in
    // two pods of two teams, GPU 1's first replica in one pod; `resource_names` at its default.
    let shared = |ns: &str, pod: &str, c: &str, id: &str| {
        FakePod::with_devices(ns, pod, c, NVIDIA_GPU_SHARED, &[id])
    };
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            shared("team-b", "infer-1", "server", &replica(0, 1)),
            shared("team-a", "notebook-0", "jupyter", &replica(0, 0)),
            shared("team-c", "solo-0", "main", &replica(1, 0)),
        ],
    )
    .await;
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&config(&fake, &socket, &sink));

    let r = sink
        .wait_for(
            "GPU 0 reported as shared and GPU 1 with its pod",
            WAIT,
            |r| {
                latest_resource(r, &uuid(0)).is_some_and(|a| shared_pods(&a).1)
                    && latest_pod(r, &uuid(1)) == Some(Some("team-c/solo-0/main".into()))
                    && latest_resource(r, &uuid(2)).is_some()
            },
        )
        .await;

    let gpu0 = latest_resource(&r, &uuid(0)).unwrap();
    for key in [
        semconv::K8S_NAMESPACE_NAME,
        semconv::K8S_POD_NAME,
        semconv::K8S_CONTAINER_NAME,
        semconv::K8S_POD_UID,
    ] {
        assert!(
            gpu0.iter().all(|kv| kv.key != key),
            "a GPU two pods hold carries no single {key}: {gpu0:?}"
        );
    }
    assert_eq!(
        shared_pods(&gpu0),
        (
            Some(vec![
                "team-a/notebook-0".to_string(),
                "team-b/infer-1".to_string()
            ]),
            true
        ),
        "both pods, sorted"
    );
    let gpu1 = latest_resource(&r, &uuid(1)).unwrap();
    assert_eq!(shared_pods(&gpu1), (None, false), "one holder: not shared");
    assert_eq!(
        latest_pod(&r, &uuid(2)),
        Some(None),
        "GPU 2 is not allocated"
    );
    // No report of GPU 0 was ever given to one of its pods' namespaces.
    let single: Vec<_> = r
        .metrics
        .iter()
        .filter_map(|rm| rm.resource.as_ref())
        .filter(|res| {
            res.attributes.iter().any(|kv| {
                kv.key == semconv::K8S_NAMESPACE_NAME
                    && matches!(
                        kv.value.as_ref().and_then(any_value_string).as_deref(),
                        Some("team-a" | "team-b")
                    )
            })
        })
        .collect();
    assert!(single.is_empty(), "GPU 0 given to one team: {single:?}");
    kubelet.stop().await;
}

/// The GPUs (`hw.id`) whose metrics were ever exported under namespace `namespace`.
fn gpus_of_namespace(r: &Received, namespace: &str) -> BTreeSet<String> {
    r.metrics
        .iter()
        .filter(|rm| {
            rm.resource.as_ref().is_some_and(|res| {
                res.attributes.iter().any(|kv| {
                    kv.key == semconv::K8S_NAMESPACE_NAME
                        && kv.value.as_ref().and_then(any_value_string).as_deref()
                            == Some(namespace)
                })
            })
        })
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .flat_map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.clone(),
            Some(Data::Sum(s)) => s.data_points.clone(),
            _ => Vec::new(),
        })
        .filter_map(|p| {
            p.attributes
                .iter()
                .find(|kv| kv.key == semconv::HW_ID)
                .and_then(|kv| kv.value.as_ref().and_then(any_value_string))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dra_claimed_gpu_carries_its_pod_matched_by_minor_number_not_index() {
    // NVIDIA's DRA driver names a GPU `gpu-<minor>`. No GPU's minor is its NVML index here,
    // so a match by index would land on another GPU.
    let mut scenario = Scenario::with_gpus(4);
    for (d, minor) in scenario.devices.iter_mut().zip([2, 0, 3, 1]) {
        d.minor = Some(minor);
    }
    let fake = FakeNvml::new(&scenario);
    let uuid = |i: usize| scenario.devices[i].uuid.clone();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    // Another vendor's DRA driver whose device happens to be named like NVIDIA's GPU with
    // minor 1 (index 3).
    let other_driver = FakePod {
        namespace: "other-team".into(),
        name: "accel-0".into(),
        containers: vec![FakeContainer {
            name: "main".into(),
            claims: vec![FakeClaim {
                name: "accel".into(),
                namespace: "other-team".into(),
                devices: vec![FakeClaimDevice {
                    driver: "gpu.example.com".into(),
                    pool: "node-1".into(),
                    device: "gpu-1".into(),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        }],
    };
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            // Minor 3: the GPU at index 2.
            FakePod::with_dra_gpus(
                "research",
                "trainer-0",
                "pytorch",
                "node-1",
                "one-gpu",
                &["gpu-3"],
            ),
            // Minor 0: the GPU at index 1.
            FakePod::with_dra_gpus(
                "serving",
                "llm-0",
                "vllm",
                "node-1",
                "infer-gpu",
                &["gpu-0"],
            ),
            // A MIG device of the GPU with minor 2 (index 0): its name does not say which of
            // that GPU's NVML MIG devices it is, so it attributes nothing.
            FakePod::with_dra_gpus(
                "mig-team",
                "mig-0",
                "main",
                "node-1",
                "mig",
                &["gpu-2-mig-1g10gb-19-0"],
            ),
            other_driver,
        ],
    )
    .await;
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&config(&fake, &socket, &sink));

    let r = sink
        .wait_for("the DRA-claimed GPUs reported with their pods", WAIT, |r| {
            (0..4).all(|i| latest_pod(r, &uuid(i)).is_some())
                && latest_pod(r, &uuid(2)) == Some(Some("research/trainer-0/pytorch".into()))
                && latest_pod(r, &uuid(1)) == Some(Some("serving/llm-0/vllm".into()))
        })
        .await;
    assert_eq!(
        latest_pod(&r, &uuid(0)),
        Some(None),
        "GPU 0 (minor 2) is claimed only as a MIG device"
    );
    assert_eq!(
        latest_pod(&r, &uuid(3)),
        Some(None),
        "GPU 3 (minor 1) is claimed by no NVIDIA DRA device"
    );
    let one_gpu = |ns: &str, i: usize| {
        assert_eq!(
            gpus_of_namespace(&r, ns),
            BTreeSet::from([uuid(i)]),
            "only GPU {i}'s metrics carry namespace {ns}"
        );
    };
    one_gpu("research", 2);
    one_gpu("serving", 1);
    for ns in ["mig-team", "other-team"] {
        assert!(
            gpus_of_namespace(&r, ns).is_empty(),
            "{ns} holds no NVML GPU through DRA"
        );
    }
    let gpu2 = latest_resource(&r, &uuid(2)).unwrap();
    assert_eq!(shared_pods(&gpu2), (None, false), "one holder: not shared");

    // `hpcotel gpus` reads the same mapping.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(["gpus", "--json", "--pod-resources"])
        .arg(&socket)
        .arg("--nvml-library")
        .arg(fake.library_path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let pods: Vec<_> = rows.iter().map(|row| row["pod"].clone()).collect();
    assert_eq!(
        pods,
        [
            serde_json::Value::Null,
            "serving/llm-0/vllm".into(),
            "research/trainer-0/pytorch".into(),
            serde_json::Value::Null,
        ]
    );
    kubelet.stop().await;
}

#[test]
fn hpcotel_gpus_prints_every_gpu_as_a_table_and_as_json() {
    let scenario = Scenario::with_gpus(8);
    let fake = FakeNvml::new(&scenario);
    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args([
            "gpus",
            "--pod-resources",
            "/nonexistent/kubelet.sock",
            "--nvml-library",
        ])
        .arg(fake.library_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 9, "header + 8 GPUs:\n{table}");
    assert!(lines[0].starts_with("GPU"), "{table}");
    for (i, d) in scenario.devices.iter().enumerate() {
        let line = lines[i + 1];
        assert!(line.starts_with(&format!("gpu{i} ")), "{line}");
        assert!(line.contains(&d.uuid) && line.contains(&d.name), "{line}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args([
            "gpus",
            "--json",
            "--pod-resources",
            "/nonexistent/kubelet.sock",
        ])
        .env("HPCOTEL_NVML_LIBRARY", fake.library_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 8);
    for (row, d) in rows.iter().zip(&scenario.devices) {
        assert_eq!(row["uuid"], d.uuid.as_str());
        assert_eq!(row["model"], d.name.as_str());
        assert_eq!(
            row["power_watts"].as_f64(),
            Some(d.power_mw.at(0) as f64 / 1000.0)
        );
        assert_eq!(
            row["memory_used_mib"].as_f64(),
            Some(d.memory_used_bytes.at(0) as f64 / 1048576.0)
        );
        assert_eq!(
            row["temperature_celsius"].as_f64(),
            Some(d.temperature_c.at(0) as f64)
        );
        assert_eq!(row["state"], "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpcotel_gpus_shows_the_pod_each_gpu_is_allocated_to() {
    let scenario = Scenario::with_gpus(3);
    let fake = FakeNvml::new(&scenario);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let shared = |ns: &str, pod: &str, n: u32| {
        let id = format!("{}::{n}", scenario.devices[2].uuid);
        FakePod::with_devices(ns, pod, "main", NVIDIA_GPU_SHARED, &[&id])
    };
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus("ml", "bert-0", "train", &[&scenario.devices[1].uuid]),
            shared("team-b", "infer-1", 1),
            shared("team-a", "notebook-0", 0),
        ],
    )
    .await;
    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hpcotel"));
        cmd.arg("gpus");
        if json {
            cmd.arg("--json");
        }
        cmd.arg("--pod-resources")
            .arg(&socket)
            .arg("--nvml-library")
            .arg(fake.library_path());
        async move {
            let out = cmd.output().await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run(true).await).unwrap();
    assert_eq!(rows[0]["pod"], serde_json::Value::Null);
    assert_eq!(rows[0]["shared_by"], serde_json::json!([]));
    assert_eq!(rows[1]["pod"], "ml/bert-0/train");
    assert_eq!(
        rows[2]["pod"],
        serde_json::Value::Null,
        "shared: no one pod"
    );
    assert_eq!(
        rows[2]["shared_by"],
        serde_json::json!(["team-a/notebook-0", "team-b/infer-1"])
    );
    let table = run(false).await;
    println!("{table}");
    let line = table.lines().find(|l| l.starts_with("gpu2 ")).unwrap();
    assert!(
        line.ends_with("team-a/notebook-0,team-b/infer-1 (shared)"),
        "{line}"
    );
    kubelet.stop().await;
}

#[test]
fn without_nvml_hpcotel_gpus_fails_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(["gpus", "--nvml-library", "/nonexistent/libnvidia-ml.so.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: no NVIDIA GPU visible:"), "{err}");
    assert!(err.contains("/nonexistent/libnvidia-ml.so.1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nvml_hpcotel_run_logs_one_line_and_exports_host_metrics() {
    let sink = OtlpSink::start().await;
    let mut hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  gpu:
    library_path: /nonexistent/libnvidia-ml.so.1
    pod_resources: {{ endpoint: /nonexistent/kubelet.sock }}
  host:
    collection_interval: 200ms
exporters:
  otlp: {{ endpoint: "{}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [gpu, host], exporters: [otlp] }}
"#,
        sink.grpc_endpoint()
    ));
    sink.wait_for("host metrics", WAIT, |r| {
        r.metric_names()
            .iter()
            .any(|n| n == semconv::METRIC_SYSTEM_CPU_UTILIZATION)
    })
    .await;
    hpcotel.wait_for_log("gpu receiver disabled", WAIT);
    let log = hpcotel.stderr();
    let disabled: Vec<String> = log
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("gpu receiver disabled"))
        .collect();
    assert_eq!(disabled.len(), 1, "{log}");
    assert!(
        disabled[0].contains("/nonexistent/libnvidia-ml.so.1"),
        "{}",
        disabled[0]
    );
    assert!(!log.contains("ERROR"), "{log}");
    hpcotel.sigterm();
    assert!(hpcotel.wait_exit(WAIT).success());
}
