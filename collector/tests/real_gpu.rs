//! Opt-in, on a machine with an NVIDIA GPU and driver: the same checks against the real
//! `libnvidia-ml.so.1`, compared with `nvidia-smi`. CI has no GPU, so these are ignored by
//! default:
//!
//! ```sh
//! cargo test -p hpcotel --test real_gpu -- --ignored --nocapture
//! ```

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::Hpcotel;
use hpcotel_core::semconv;
use hpcotel_testkit::sink::{OtlpSink, any_value_string};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug)]
struct Smi {
    index: i64,
    name: String,
    uuid: String,
    memory_used_mib: f64,
    memory_total_mib: f64,
    power_watts: Option<f64>,
}

fn nvidia_smi() -> Vec<Smi> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,uuid,memory.used,memory.total,power.draw",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .expect("nvidia-smi runs (this test needs an NVIDIA GPU and driver)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            Smi {
                index: f[0].parse().unwrap(),
                name: f[1].to_owned(),
                uuid: f[2].to_owned(),
                memory_used_mib: f[3].parse().unwrap(),
                memory_total_mib: f[4].parse().unwrap(),
                power_watts: f[5].parse().ok(),
            }
        })
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU: cargo test -p hpcotel --test real_gpu -- --ignored"]
fn hpcotel_gpus_agrees_with_nvidia_smi() {
    let smi = nvidia_smi();
    assert!(!smi.is_empty(), "nvidia-smi lists no GPU");
    let out = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .args(["gpus", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let table = Command::new(env!("CARGO_BIN_EXE_hpcotel"))
        .arg("gpus")
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&table.stdout));
    let gpus: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| !n.contains("/mig")))
        .collect();
    assert_eq!(
        gpus.len(),
        smi.len(),
        "same GPU count as nvidia-smi: {rows:#?}"
    );
    for s in &smi {
        let r = gpus
            .iter()
            .find(|r| r["uuid"] == s.uuid.as_str())
            .unwrap_or_else(|| panic!("hpcotel gpus has no {}", s.uuid));
        assert_eq!(r["index"].as_i64(), Some(s.index), "{}", s.uuid);
        assert_eq!(r["model"], s.name.as_str(), "{}", s.uuid);
        let total = r["memory_total_mib"].as_f64().unwrap();
        assert!(
            (total - s.memory_total_mib).abs() <= 1.0,
            "{}: total {total} vs {}",
            s.uuid,
            s.memory_total_mib
        );
        // Used memory and power move between the two reads: compare loosely.
        let used = r["memory_used_mib"].as_f64().unwrap();
        assert!(
            (used - s.memory_used_mib).abs() <= 64.0 + 0.02 * s.memory_total_mib,
            "{}: used {used} vs {}",
            s.uuid,
            s.memory_used_mib
        );
        if let (Some(p), Some(want)) = (r["power_watts"].as_f64(), s.power_watts) {
            assert!(
                (p - want).abs() <= 15.0_f64.max(0.15 * want),
                "{}: power {p} vs {want}",
                s.uuid
            );
        }
        println!(
            "{} agrees with nvidia-smi: {} MiB total, {used:.0} MiB used",
            s.uuid, total
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an NVIDIA GPU: cargo test -p hpcotel --test real_gpu -- --ignored"]
async fn the_receiver_reports_every_gpu_of_the_real_driver() {
    let smi = nvidia_smi();
    let sink = OtlpSink::start().await;
    let _hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  gpu:
    sample_interval: 100ms
    report_interval: 1s
exporters:
  otlp: {{ endpoint: "{}" }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    metrics: {{ receivers: [gpu], exporters: [otlp] }}
    logs: {{ receivers: [gpu], exporters: [otlp] }}
"#,
        sink.grpc_endpoint()
    ));
    let wanted = [
        semconv::METRIC_HW_GPU_UTILIZATION,
        semconv::METRIC_HW_GPU_MEMORY_USAGE,
        semconv::METRIC_HW_GPU_MEMORY_LIMIT,
        semconv::METRIC_HW_POWER,
        semconv::METRIC_HW_TEMPERATURE,
        semconv::METRIC_GPU_CLOCK_FREQUENCY,
        semconv::METRIC_HW_STATUS,
    ];
    let per_gpu = |r: &hpcotel_testkit::sink::Received| {
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for m in r.metrics_list() {
            let points = match &m.data {
                Some(Data::Gauge(g)) => &g.data_points,
                Some(Data::Sum(s)) => &s.data_points,
                _ => continue,
            };
            for p in points {
                if let Some(id) = p.attributes.iter().find(|kv| kv.key == semconv::HW_ID) {
                    let id = id
                        .value
                        .as_ref()
                        .and_then(any_value_string)
                        .unwrap_or_default();
                    seen.entry(id).or_default().push(m.name.clone());
                }
            }
        }
        seen
    };
    let r = sink
        .wait_for("every GPU reported", Duration::from_secs(30), |r| {
            let seen = per_gpu(r);
            smi.iter().all(|s| {
                seen.get(&s.uuid)
                    .is_some_and(|names| wanted.iter().all(|w| names.iter().any(|n| n == w)))
            })
        })
        .await;
    let seen = per_gpu(&r);
    for s in &smi {
        let mut names = seen[&s.uuid].clone();
        names.sort();
        names.dedup();
        println!(
            "{} ({}): {} metrics: {}",
            s.uuid,
            s.name,
            names.len(),
            names.join(", ")
        );
    }
}
