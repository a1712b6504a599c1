//! `hpcotel gpus`: a one-shot view of this node's GPUs, read through the gpu receiver's own
//! sampler (one sample, one report), so the table shows exactly what the receiver exports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use hpcotel_core::semconv;
use hpcotel_core::telemetry::{self, attr_int, unix_nanos};
use hpcotel_core::{Catalog, proto};
use hpcotel_receivers::gpu::{self, podresources, sampler};
use proto::common::v1::{KeyValue, any_value};
use proto::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use serde::Serialize;

/// What `hpcotel gpus` reads and from where.
#[derive(Debug, Clone)]
pub struct Options {
    /// NVML library (soname or path).
    pub library_path: PathBuf,
    /// kubelet PodResources socket; pods are looked up when it exists.
    pub pod_resources: PathBuf,
}

/// Why `hpcotel gpus` has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NVML could not be loaded.
    #[error("no NVIDIA GPU visible: {0}")]
    Nvml(#[from] gpu::Error),
    /// NVML loaded but reports no device.
    #[error("no NVIDIA GPU found: NVML (driver {driver}) reports 0 devices")]
    NoDevices {
        /// Driver version NVML reported.
        driver: String,
    },
}

/// One GPU or MIG instance, as shown.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GpuRow {
    /// NVML index of the physical GPU.
    pub index: i64,
    /// `gpu3` or `gpu3/mig0`.
    pub name: String,
    /// Product name (MIG: the profile).
    pub model: String,
    /// UUID.
    pub uuid: String,
    /// `ok` or `failed` (GPUs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// GPU utilization, percent.
    pub utilization_percent: Option<f64>,
    /// Memory in use, MiB.
    pub memory_used_mib: Option<f64>,
    /// Memory size, MiB.
    pub memory_total_mib: Option<f64>,
    /// Power draw, W.
    pub power_watts: Option<f64>,
    /// Enforced power limit, W.
    pub power_limit_watts: Option<f64>,
    /// GPU temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// SM clock, MHz.
    pub sm_clock_mhz: Option<f64>,
    /// Memory clock, MHz.
    pub memory_clock_mhz: Option<f64>,
    /// Active throttle (clock-event) reasons.
    pub throttle_reasons: Vec<String>,
    /// `namespace/pod/container` (`namespace/pod` when the container is not known) of the one
    /// pod the device is allocated to; `None` when none is, or several are.
    pub pod: Option<String>,
    /// `namespace/pod` of every pod holding a device several pods share (time-slicing, MPS, a
    /// shared DRA claim), sorted; empty otherwise.
    pub shared_by: Vec<String>,
}

fn attr_str(attrs: &[KeyValue], key: &str) -> Option<String> {
    telemetry::attr_str(attrs, key).map(str::to_owned)
}

/// The strings of the string-array attribute `key` (empty when absent).
fn attr_strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    let Some(any_value::Value::ArrayValue(a)) = attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    else {
        return Vec::new();
    };
    a.values
        .iter()
        .filter_map(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// The POD column: the pod, or every pod of a shared device (`a/x,b/y (shared)`).
fn pod_cell(r: &GpuRow) -> String {
    match (&r.pod, r.shared_by.is_empty()) {
        (Some(p), _) => p.clone(),
        (None, false) => format!("{} (shared)", r.shared_by.join(",")),
        (None, true) => "-".to_owned(),
    }
}

/// Builds the rows from a report's metrics.
pub fn rows(metrics: &[ResourceMetrics]) -> Vec<GpuRow> {
    let mut rows: BTreeMap<(i64, String), GpuRow> = BTreeMap::new();
    for rm in metrics {
        let res = rm
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let pod = match (
            attr_str(res, semconv::K8S_NAMESPACE_NAME),
            attr_str(res, semconv::K8S_POD_NAME),
        ) {
            (Some(ns), Some(p)) => Some(match attr_str(res, semconv::K8S_CONTAINER_NAME) {
                Some(c) => format!("{ns}/{p}/{c}"),
                None => format!("{ns}/{p}"),
            }),
            _ => None,
        };
        let shared_by = attr_strings(res, semconv::HPCOTEL_GPU_PODS);
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let points = match &m.data {
                Some(Data::Gauge(g)) => &g.data_points,
                Some(Data::Sum(s)) => &s.data_points,
                _ => continue,
            };
            for p in points {
                let a = &p.attributes;
                let Some(uuid) = attr_str(a, semconv::HW_ID) else {
                    continue;
                };
                if attr_int(a, semconv::PROCESS_PID).is_some() {
                    continue;
                }
                let index = attr_int(a, semconv::HPCOTEL_GPU_INDEX).unwrap_or(-1);
                let name = attr_str(a, semconv::HW_NAME).unwrap_or_default();
                let row = rows.entry((index, name.clone())).or_insert_with(|| GpuRow {
                    index,
                    name,
                    model: attr_str(a, semconv::HPCOTEL_GPU_MIG_PROFILE)
                        .or_else(|| attr_str(a, semconv::HW_MODEL))
                        .unwrap_or_default(),
                    uuid: uuid.clone(),
                    pod: pod.clone(),
                    shared_by: shared_by.clone(),
                    ..Default::default()
                });
                let v = match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => continue,
                };
                let is = |k: &str, val: &str| attr_str(a, k).as_deref() == Some(val);
                match m.name.as_str() {
                    semconv::METRIC_HW_GPU_UTILIZATION if is(semconv::HW_GPU_TASK, "general") => {
                        row.utilization_percent = Some(v * 100.0)
                    }
                    semconv::METRIC_HW_GPU_MEMORY_USAGE => {
                        row.memory_used_mib = Some(v / 1048576.0)
                    }
                    semconv::METRIC_HW_GPU_MEMORY_LIMIT => {
                        row.memory_total_mib = Some(v / 1048576.0)
                    }
                    semconv::METRIC_HW_POWER => row.power_watts = Some(v),
                    semconv::METRIC_GPU_POWER_LIMIT => row.power_limit_watts = Some(v),
                    semconv::METRIC_HW_TEMPERATURE if is(semconv::HW_SENSOR_LOCATION, "gpu") => {
                        row.temperature_celsius = Some(v)
                    }
                    semconv::METRIC_GPU_CLOCK_FREQUENCY
                        if is(semconv::HPCOTEL_GPU_CLOCK_TYPE, "sm") =>
                    {
                        row.sm_clock_mhz = Some(v / 1e6)
                    }
                    semconv::METRIC_GPU_CLOCK_FREQUENCY
                        if is(semconv::HPCOTEL_GPU_CLOCK_TYPE, "memory") =>
                    {
                        row.memory_clock_mhz = Some(v / 1e6)
                    }
                    semconv::METRIC_GPU_THROTTLE if v > 0.0 => {
                        if let Some(r) = attr_str(a, semconv::HPCOTEL_GPU_THROTTLE_REASON) {
                            row.throttle_reasons.push(r);
                        }
                    }
                    semconv::METRIC_HW_STATUS if v > 0.0 => {
                        row.state = attr_str(a, semconv::HW_STATE)
                    }
                    _ => {}
                }
            }
        }
    }
    rows.into_values().collect()
}

/// Reads every GPU once. Pods come from PodResources when its socket answers (a device
/// several pods share shows them all, see [`GpuRow::shared_by`]); otherwise the pod column
/// stays empty (and a reason is returned beside the rows).
pub async fn collect(options: &Options) -> Result<(Vec<GpuRow>, Option<String>), Error> {
    let config = gpu::Config {
        library_path: options.library_path.clone(),
        ..Default::default()
    };
    let nvml = Arc::new(gpu::load_nvml(&config)?);
    let catalog = Catalog::new();
    let pr = podresources::Config {
        endpoint: options.pod_resources.clone(),
        ..Default::default()
    };
    let pod_note = match podresources::list_allocations(&pr).await {
        Ok(map) => {
            catalog.set_gpu_allocations(map);
            None
        }
        Err(podresources::Error::NoSocket { .. }) => None,
        Err(e) => Some(format!("pods unknown: {e}")),
    };
    let metrics = tokio::task::spawn_blocking(move || {
        let mut s = sampler::Sampler::new(
            nvml,
            catalog,
            Arc::new(sampler::XidStats::default()),
            sampler::Options {
                host: Vec::new(),
                logs: false,
                processes: false,
                mig: true,
                proc_root: PathBuf::from(gpu::DEFAULT_PROC_ROOT),
            },
        );
        let driver = s.driver_version().to_owned();
        if s.gpu_count() == 0 {
            return Err(Error::NoDevices { driver });
        }
        s.sample();
        Ok(s.report(unix_nanos(SystemTime::now())).metrics)
    })
    .await
    .expect("the GPU sampling task does not panic")?;
    Ok((rows(&metrics), pod_note))
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".to_owned())
}

/// The terminal table.
pub fn table(rows: &[GpuRow]) -> String {
    let header = [
        "GPU", "NAME", "UUID", "UTIL%", "MEM MiB", "POWER W", "TEMP C", "SM MHz", "MEM MHz",
        "THROTTLE", "POD",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let memory = match (r.memory_used_mib, r.memory_total_mib) {
            (Some(u), Some(t)) => format!("{u:.0}/{t:.0}"),
            _ => "-".to_owned(),
        };
        let power = match (r.power_watts, r.power_limit_watts) {
            (Some(p), Some(l)) => format!("{p:.0}/{l:.0}"),
            (Some(p), None) => format!("{p:.0}"),
            _ => "-".to_owned(),
        };
        let label = match r.state.as_deref() {
            Some("failed") => format!("{} LOST", r.name),
            _ => r.name.clone(),
        };
        lines.push(vec![
            label,
            r.model.clone(),
            r.uuid.clone(),
            num(r.utilization_percent, 0),
            memory,
            power,
            num(r.temperature_celsius, 0),
            num(r.sm_clock_mhz, 0),
            num(r.memory_clock_mhz, 0),
            if r.throttle_reasons.is_empty() {
                "-".to_owned()
            } else {
                r.throttle_reasons.join(",")
            },
            pod_cell(r),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
