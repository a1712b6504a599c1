//! Acceptance: a real Prometheus server scrapes hpcotel's `prometheus` exporter, in the
//! default OpenTelemetry naming and in `dcgm_compatible` mode, after GPU metrics shaped like
//! the gpu receiver's output for 8 GPUs were pushed over OTLP.
//!
//! Needs `/usr/bin/prometheus` (Debian package `prometheus`; `scripts/test.sh` installs it).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::otlp::kv;
use common::{Hpcotel, Proc, free_port};
use hpcotel_core::semconv;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const GPUS: i64 = 8;
/// GPU 7 runs no pod: its series must carry no pod, namespace or container label.
const IDLE_GPU: i64 = 7;
const NODE: &str = "gpu-node-1";
const MODEL: &str = "NVIDIA H100 80GB HBM3";

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn uuid(gpu: i64) -> String {
    format!("GPU-{gpu:08x}-1111-2222-3333-444455556666")
}

fn pci_bus_id(gpu: i64) -> String {
    format!("00000000:{:02X}:00.0", 0x18 + gpu)
}

/// GPU `gpu`'s utilization in percent, as dcgm-exporter reports it.
fn util_percent(gpu: i64) -> f64 {
    (10 * (gpu + 1)) as f64
}

/// GPU `gpu`'s framebuffer use, MiB.
fn fb_used_mib(gpu: i64) -> i64 {
    1024 * (gpu + 1)
}

/// What the gpu receiver reports for one GPU: one resource per GPU (the pod it runs, if
/// any), the GPU's identity on every data point.
fn gpu_resource(gpu: i64) -> ResourceMetrics {
    let mut resource = vec![
        kv(semconv::SERVICE_NAME, "hpcotel"),
        kv(semconv::SERVICE_INSTANCE_ID, NODE),
        kv(semconv::HOST_NAME, NODE),
        kv(semconv::K8S_NODE_NAME, NODE),
    ];
    if gpu != IDLE_GPU {
        resource.extend([
            kv(semconv::K8S_POD_NAME, &format!("train-{gpu}")),
            kv(semconv::K8S_NAMESPACE_NAME, "ml"),
            kv(semconv::K8S_CONTAINER_NAME, "trainer"),
        ]);
    }
    let identity = || {
        vec![
            kv(semconv::HW_ID, &uuid(gpu)),
            kv(semconv::HW_NAME, &format!("gpu{gpu}")),
            kv(semconv::HW_TYPE, "gpu"),
            kv(semconv::HW_VENDOR, "NVIDIA"),
            kv(semconv::HW_MODEL, MODEL),
            int(semconv::HPCOTEL_GPU_INDEX, gpu),
            kv(semconv::HPCOTEL_GPU_PCI_BUS_ID, &pci_bus_id(gpu)),
        ]
    };
    let with = |extra: Vec<KeyValue>| [identity(), extra].concat();
    let double = |v: f64, attributes: Vec<KeyValue>| NumberDataPoint {
        attributes,
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: semconv::METRIC_HW_GPU_UTILIZATION.into(),
            unit: "1".into(),
            description: "Fraction of time the GPU's engines were busy.".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![
                    double(
                        util_percent(gpu) / 100.0,
                        with(vec![kv(semconv::HW_GPU_TASK, "general")]),
                    ),
                    double(0.0, with(vec![kv(semconv::HW_GPU_TASK, "encoder")])),
                ],
            })),
            ..Default::default()
        },
        Metric {
            name: semconv::METRIC_HW_GPU_MEMORY_USAGE.into(),
            unit: "By".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    value: Some(number_data_point::Value::AsInt(
                        fb_used_mib(gpu) * 1024 * 1024,
                    )),
                    ..double(0.0, identity())
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: false,
            })),
            ..Default::default()
        },
    ];
    ResourceMetrics {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: semconv::SCOPE_NAME.into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Starts Prometheus on `config`, waiting until it serves queries; killed when dropped.
fn start_prometheus(config: &str, web_port: u16) -> Proc {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found: run `bash scripts/test.sh` once (it installs the Debian \
         package `prometheus`)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .current_dir(dir.path());
    Proc::spawn(
        cmd,
        "Server is ready to receive web requests",
        dir,
        config_path,
    )
}

/// One series of an instant query: its labels (`__name__` included) and value.
#[derive(Debug)]
struct Series {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Runs an instant query against Prometheus's HTTP API.
async fn query(client: &reqwest::Client, web_port: u16, promql: &str) -> Vec<Series> {
    let resp = client
        .get(format!("http://127.0.0.1:{web_port}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .expect("query Prometheus");
    assert!(resp.status().is_success(), "{promql}: {}", resp.status());
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .expect("a vector result")
        .iter()
        .map(|r| Series {
            labels: serde_json::from_value(r["metric"].clone()).unwrap(),
            value: r["value"][1].as_str().unwrap().parse().unwrap(),
        })
        .collect()
}

/// Queries until `n` series come back (Prometheus scrapes every second), panicking after
/// `timeout` with the last answer and hpcotel's log.
async fn wait_for_series(
    client: &reqwest::Client,
    web_port: u16,
    promql: &str,
    n: usize,
    hpcotel: &Hpcotel,
    prometheus: &Proc,
) -> Vec<Series> {
    let timeout = Duration::from_secs(60);
    let deadline = Instant::now() + timeout;
    loop {
        let got = query(client, web_port, promql).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{promql}: {} series after {timeout:?}, expected {n}: {got:#?}\n\
             hpcotel:\n{}\nprometheus:\n{}",
            got.len(),
            hpcotel.stderr(),
            prometheus.stderr()
        );
        // Poll the condition; the next scrape is at most a second away.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn label<'a>(s: &'a Series, name: &str) -> &'a str {
    s.labels
        .get(name)
        .unwrap_or_else(|| panic!("no label {name} on {s:?}"))
}

#[tokio::test]
async fn real_prometheus_scrapes_opentelemetry_and_dcgm_exporter_names() {
    let (otlp, otel, dcgm, web) = (free_port(), free_port(), free_port(), free_port());
    let mut hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{otlp}" }}
exporters:
  prometheus/otel:
    endpoint: "127.0.0.1:{otel}"
  prometheus/dcgm:
    endpoint: "127.0.0.1:{dcgm}"
    dcgm_compatible: true
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus/otel, prometheus/dcgm] }}
"#
    ));

    let client = reqwest::Client::new();
    let request = ExportMetricsServiceRequest {
        resource_metrics: (0..GPUS).map(gpu_resource).collect(),
    };
    let resp = client
        .post(format!("http://127.0.0.1:{otlp}/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("push OTLP metrics");
    assert_eq!(resp.status().as_u16(), 200, "{}", hpcotel.stderr());

    // `honor_labels` on the OpenTelemetry job keeps the job/instance hpcotel derives from
    // service.name/service.instance.id, as one does for a Collector's endpoint.
    let prometheus = start_prometheus(
        &format!(
            r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: otel
    honor_labels: true
    static_configs: [{{ targets: ["127.0.0.1:{otel}"] }}]
  - job_name: dcgm
    static_configs: [{{ targets: ["127.0.0.1:{dcgm}"] }}]
"#
        ),
        web,
    );

    // dcgm-exporter's names, units and labels, as its dashboards and alerts expect.
    let mut util = wait_for_series(
        &client,
        web,
        "DCGM_FI_DEV_GPU_UTIL",
        GPUS as usize,
        &hpcotel,
        &prometheus,
    )
    .await;
    assert_eq!(util.len(), GPUS as usize, "{util:#?}");
    util.sort_by_key(|s| label(s, "gpu").parse::<i64>().unwrap());
    for (gpu, s) in (0..GPUS).zip(&util) {
        assert_eq!(label(s, "gpu"), gpu.to_string());
        assert_eq!(label(s, "UUID"), uuid(gpu));
        assert_eq!(label(s, "pci_bus_id"), pci_bus_id(gpu));
        assert_eq!(label(s, "device"), format!("nvidia{gpu}"));
        assert_eq!(label(s, "modelName"), MODEL);
        assert_eq!(label(s, "Hostname"), NODE);
        assert_eq!(label(s, "job"), "dcgm");
        assert_eq!(label(s, "instance"), format!("127.0.0.1:{dcgm}"));
        let mut expected = vec![
            "Hostname",
            "UUID",
            "__name__",
            "device",
            "gpu",
            "instance",
            "job",
            "modelName",
            "pci_bus_id",
        ];
        if gpu == IDLE_GPU {
            for absent in ["pod", "namespace", "container"] {
                assert!(
                    !s.labels.contains_key(absent),
                    "idle GPU has {absent}: {s:?}"
                );
            }
        } else {
            assert_eq!(label(s, "pod"), format!("train-{gpu}"));
            assert_eq!(label(s, "namespace"), "ml");
            assert_eq!(label(s, "container"), "trainer");
            expected.extend(["container", "namespace", "pod"]);
        }
        expected.sort();
        let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(names, expected, "exactly dcgm-exporter's labels: {s:?}");
        assert!(
            (s.value - util_percent(gpu)).abs() < 1e-9,
            "GPU {gpu}: {} %, expected {}",
            s.value,
            util_percent(gpu)
        );
    }
    let fb = query(&client, web, "DCGM_FI_DEV_FB_USED").await;
    assert_eq!(fb.len(), GPUS as usize, "{fb:#?}");
    for s in &fb {
        let gpu: i64 = label(s, "gpu").parse().unwrap();
        assert_eq!(s.value, fb_used_mib(gpu) as f64, "MiB: {s:?}");
    }
    assert_eq!(
        query(&client, web, "DCGM_FI_DEV_ENC_UTIL").await.len(),
        GPUS as usize
    );
    let otel_names_in_dcgm_job =
        query(&client, web, r#"{job="dcgm", __name__=~"hw_gpu_.*"}"#).await;
    assert!(
        otel_names_in_dcgm_job.is_empty(),
        "dcgm_compatible emits mapped metrics only under DCGM names: {otel_names_in_dcgm_job:#?}"
    );

    // The OpenTelemetry names in the default mode.
    let mut ratio = wait_for_series(
        &client,
        web,
        r#"hw_gpu_utilization_ratio{hw_gpu_task="general"}"#,
        GPUS as usize,
        &hpcotel,
        &prometheus,
    )
    .await;
    assert_eq!(ratio.len(), GPUS as usize, "{ratio:#?}");
    ratio.sort_by_key(|s| label(s, "hpcotel_gpu_index").parse::<i64>().unwrap());
    for (gpu, s) in (0..GPUS).zip(&ratio) {
        assert_eq!(label(s, "hw_id"), uuid(gpu));
        assert_eq!(label(s, "hw_model"), MODEL);
        assert_eq!(label(s, "hpcotel_gpu_pci_bus_id"), pci_bus_id(gpu));
        assert_eq!(label(s, "job"), "hpcotel", "from service.name");
        assert_eq!(label(s, "instance"), NODE, "from service.instance.id");
        assert_eq!(label(s, "otel_scope_name"), semconv::SCOPE_NAME);
        assert!(
            !s.labels.contains_key("k8s_pod_name"),
            "resource attributes go to target_info"
        );
        assert!((s.value - util_percent(gpu) / 100.0).abs() < 1e-12, "{s:?}");
    }
    let bytes = query(&client, web, "hw_gpu_memory_usage_bytes").await;
    assert_eq!(bytes.len(), GPUS as usize, "{bytes:#?}");
    let targets = query(&client, web, r#"target_info{job="hpcotel"}"#).await;
    assert_eq!(
        targets.len(),
        GPUS as usize,
        "one target_info per resource: {targets:#?}"
    );
    assert!(
        targets.iter().any(
            |s| s.labels.get("k8s_pod_name").map(String::as_str) == Some("train-0")
                && s.labels.get("host_name").map(String::as_str) == Some(NODE)
        ),
        "{targets:#?}"
    );
    assert!(
        query(&client, web, r#"{job="otel", __name__=~"DCGM_.*"}"#)
            .await
            .is_empty(),
        "the default mode emits no DCGM names"
    );

    // SIGTERM while Prometheus keeps scraping (over kept-alive connections): the endpoints
    // close and hpcotel exits 0 promptly.
    hpcotel.sigterm();
    let status = hpcotel.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}; stderr:\n{}", hpcotel.stderr());
}

#[test]
fn a_taken_port_stops_hpcotel_at_start_naming_the_exporter() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hpcotel.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{otlp}" }}
exporters:
  prometheus/busy: {{ endpoint: "127.0.0.1:{port}" }}
service:
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus/busy] }}
"#,
            otlp = free_port()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run hpcotel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started although the port is taken: {stderr}"
    );
    assert!(stderr.contains("prometheus/busy"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not listen on 127.0.0.1:{port} for Prometheus scrapes"
        )),
        "{stderr}"
    );
}

/// The acceptance run proper: the gpu receiver on testkit's fake NVML (8 GPUs) and fake
/// kubelet, scraped by a real Prometheus in both naming modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_scrapes_eight_fake_gpus_from_the_gpu_receiver() {
    use hpcotel_testkit::nvml::{FakeNvml, Scenario};
    use hpcotel_testkit::podresources::{FakeKubelet, FakePod};

    let scenario = Scenario::with_gpus(8);
    let fake = FakeNvml::new(&scenario);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kubelet.sock");
    let d = &scenario.devices;
    let kubelet = FakeKubelet::start(
        &socket,
        vec![
            FakePod::with_gpus(
                "research",
                "trainer-0",
                "pytorch",
                &[&d[0].uuid, &d[1].uuid],
            ),
            FakePod::with_gpus("serving", "llm-7f9c", "vllm", &[&d[5].uuid]),
        ],
    )
    .await;
    let (otel, dcgm, web) = (free_port(), free_port(), free_port());
    let hpcotel = Hpcotel::start_with_env(
        &format!(
            r#"
receivers:
  gpu:
    sample_interval: 100ms
    report_interval: 500ms
    library_path: "{lib}"
    pod_resources: {{ endpoint: "{sock}", refresh_interval: 1s }}
exporters:
  prometheus/otel:
    endpoint: "127.0.0.1:{otel}"
  prometheus/dcgm:
    endpoint: "127.0.0.1:{dcgm}"
    dcgm_compatible: true
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [gpu], exporters: [prometheus/otel, prometheus/dcgm] }}
"#,
            lib = fake.library_path().display(),
            sock = socket.display(),
        ),
        &[("K8S_NODE_NAME", "gpu-node-7")],
    );
    let prometheus = start_prometheus(
        &format!(
            r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: otel
    honor_labels: true
    static_configs: [{{ targets: ["127.0.0.1:{otel}"] }}]
  - job_name: dcgm
    static_configs: [{{ targets: ["127.0.0.1:{dcgm}"] }}]
"#
        ),
        web,
    );
    let client = reqwest::Client::new();
    // dcgm-exporter's Hostname is the node (NODE_NAME), not the collector pod's host name.
    let host = "gpu-node-7";
    // Wait until every GPU shows with its pod (PodResources may answer after the first report).
    let promql = "DCGM_FI_DEV_GPU_UTIL{pod!=\"\"}";
    wait_for_series(&client, web, promql, 3, &hpcotel, &prometheus).await;
    let util = wait_for_series(
        &client,
        web,
        "DCGM_FI_DEV_GPU_UTIL",
        8,
        &hpcotel,
        &prometheus,
    )
    .await;
    assert_eq!(util.len(), 8, "{util:#?}");
    for (i, dev) in d.iter().enumerate() {
        let s = util
            .iter()
            .find(|s| s.labels.get("UUID") == Some(&dev.uuid))
            .unwrap_or_else(|| panic!("no DCGM_FI_DEV_GPU_UTIL for GPU {i}: {util:#?}"));
        assert_eq!(label(s, "gpu"), i.to_string());
        assert_eq!(label(s, "device"), format!("nvidia{i}"));
        assert_eq!(label(s, "modelName"), dev.name);
        assert_eq!(label(s, "pci_bus_id"), dev.pci_bus_id);
        assert_eq!(label(s, "Hostname"), host);
        assert_eq!(s.value, dev.utilization_gpu.at(0) as f64, "GPU {i} percent");
        let pod = match i {
            0 | 1 => Some(("research", "trainer-0", "pytorch")),
            5 => Some(("serving", "llm-7f9c", "vllm")),
            _ => None,
        };
        match pod {
            Some((ns, p, c)) => {
                assert_eq!(label(s, "namespace"), ns);
                assert_eq!(label(s, "pod"), p);
                assert_eq!(label(s, "container"), c);
            }
            None => assert!(!s.labels.contains_key("pod"), "GPU {i} has no pod: {s:?}"),
        }
    }
    let power = query(&client, web, "DCGM_FI_DEV_POWER_USAGE").await;
    assert_eq!(power.len(), 8);
    for s in &power {
        let dev = d
            .iter()
            .find(|g| s.labels.get("UUID") == Some(&g.uuid))
            .unwrap();
        assert_eq!(s.value, dev.power_mw.at(0) as f64 / 1000.0, "watts");
    }
    // The default mode: OpenTelemetry names with hw_id, in the other job.
    let otel_util = wait_for_series(
        &client,
        web,
        "hw_gpu_utilization_ratio{hw_gpu_task=\"general\"}",
        8,
        &hpcotel,
        &prometheus,
    )
    .await;
    for dev in d {
        let s = otel_util
            .iter()
            .find(|s| s.labels.get("hw_id") == Some(&dev.uuid))
            .unwrap_or_else(|| panic!("no hw_gpu_utilization_ratio for {}", dev.uuid));
        assert_eq!(s.value, dev.utilization_gpu.at(0) as f64 / 100.0);
    }
    // In dcgm mode a metric with a DCGM equivalent appears only under the DCGM name; the
    // others (e.g. hw.status) keep their OpenTelemetry names.
    for mapped in [
        "hw_gpu_utilization_ratio",
        "hw_power_watts",
        "hw_temperature_celsius",
    ] {
        let q = format!("{mapped}{{job=\"dcgm\"}}");
        assert!(query(&client, web, &q).await.is_empty(), "{q}");
    }
    assert_eq!(
        query(&client, web, "hw_status{job=\"dcgm\", hw_state=\"ok\"}")
            .await
            .len(),
        8
    );
    kubelet.stop().await;
}
