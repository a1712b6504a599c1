//! [`Sampler`]: reads every GPU through NVML on each sample, keeps the window's last/min/max,
//! and turns a window into one report (metrics, plus logs for state changes).
//!
//! Blocking: every method calls NVML synchronously. The receiver runs it on its own thread.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hpcotel_core::Catalog;
use hpcotel_core::metric_set::MetricSet;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int, scope};
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, RetirementCause, TemperatureSensor,
};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id;
use nvml_wrapper::{Device, Nvml};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};

use super::device::{self, Identity, MigIdentity};
use super::events::{self, GpuEvent};
use super::ffi;
use super::procfs;
use super::xid::Severity;

/// Throttle (clock-event) reasons, NVML bit → attribute value.
pub const THROTTLE_REASONS: &[(u64, &str)] = &[
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// Every this many reports, readings NVML refused are asked again.
const REPROBE_EVERY_REPORTS: u32 = 30;

/// Reasons whose start is worth a log line (the rest are normal operation).
const LOGGED_THROTTLE: u64 = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;
/// Reasons that mean the GPU is being slowed by heat or a hardware signal.
const HARDWARE_THROTTLE: u64 = 0x8 | 0x40 | 0x80;

/// A reading the GPU may not support; once NVML says NOT_SUPPORTED it is not asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Field {
    Utilization,
    Encoder,
    Decoder,
    Memory,
    Power,
    Temperature,
    MemoryTemperature,
    ClockGraphics,
    ClockSm,
    ClockMemory,
    PowerInstant,
    Throttle,
    Pcie,
    PowerLimit,
    Energy,
    Pstate,
    PcieLink,
    PcieReplay,
    Bar1,
    Ecc,
    RetiredPages,
    Fields,
    Fans,
    Processes,
    ProcessUtilization,
    Mig,
}

/// Last/min/max/count of one gauge over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    /// Most recent sample.
    pub last: f64,
    /// Lowest sample.
    pub min: f64,
    /// Highest sample.
    pub max: f64,
    /// Samples taken.
    pub count: u32,
}

impl Stat {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.last = v;
        self.count += 1;
    }

    fn get(&self) -> Option<Stat> {
        (self.count > 0).then_some(*self)
    }
}

/// The fast-changing readings of one report window.
#[derive(Debug, Clone, Default)]
struct Window {
    util: [Stat; 3],
    mem_util: Stat,
    power: Stat,
    temp: [Stat; 2],
    clocks: [Stat; 3],
    throttle_any: u64,
    throttle_seen: bool,
    memory: Option<nvml_wrapper::struct_wrappers::device::MemoryInfo>,
}

/// One physical GPU's state across samples.
#[derive(Debug)]
struct Gpu {
    index: u32,
    identity: Option<Identity>,
    unsupported: u64,
    lost: bool,
    reported_lost: bool,
    window: Window,
    throttle_prev: u64,
    last_process_sample: u64,
    reports: u32,
    mig_on: Option<bool>,
}

impl Gpu {
    fn supports(&self, f: Field) -> bool {
        self.unsupported & (1 << f as u8) == 0
    }

    /// Runs one NVML read: `Some` on success; `None` when unsupported (remembered), failed,
    /// or the GPU is lost (remembered in `lost`).
    fn read<T>(&mut self, f: Field, call: impl FnOnce() -> Result<T, NvmlError>) -> Option<T> {
        if !self.supports(f) || self.lost {
            return None;
        }
        match call() {
            Ok(v) => Some(v),
            Err(NvmlError::NotSupported) => {
                self.unsupported |= 1 << f as u8;
                None
            }
            // An older driver without the symbol, or a reading that needs privileges: as
            // good as unsupported, but worth saying once (until the next re-probe).
            Err(e @ (NvmlError::FailedToLoadSymbol(_) | NvmlError::NoPermission)) => {
                self.unsupported |= 1 << f as u8;
                tracing::warn!(gpu = self.index, field = ?f, error = %e, "GPU reading unavailable; left out of the reports");
                None
            }
            Err(NvmlError::GpuLost) => {
                self.lost = true;
                None
            }
            Err(e) => {
                tracing::debug!(gpu = self.index, field = ?f, error = %e, "NVML read failed");
                None
            }
        }
    }
}

/// What one report produced.
#[derive(Debug, Default)]
pub struct Report {
    /// One `ResourceMetrics` per GPU and per MIG instance.
    pub metrics: Vec<ResourceMetrics>,
    /// State-change logs (throttling started/ended, GPU lost/recovered).
    pub logs: Vec<ResourceLogs>,
}

/// Per GPU: count by Xid code, and the last code seen.
type XidCounts = (BTreeMap<u64, u64>, u64);

/// Xid errors seen by the event watcher, per GPU UUID: shared with the sampler for
/// `hpcotel.gpu.xid.errors` / `.last`.
#[derive(Debug, Default)]
pub struct XidStats {
    inner: Mutex<HashMap<String, XidCounts>>,
}

impl XidStats {
    /// Records one Xid on `uuid`.
    pub fn record(&self, uuid: &str, code: u64) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.entry(uuid.to_owned()).or_default();
        *entry.0.entry(code).or_default() += 1;
        entry.1 = code;
    }

    fn get(&self, uuid: &str) -> Option<XidCounts> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(uuid).cloned()
    }
}

/// Reads all GPUs; see the module docs.
pub struct Sampler {
    nvml: Arc<Nvml>,
    gpus: Vec<Gpu>,
    driver_version: String,
    host: Vec<KeyValue>,
    start_unix_nano: Option<u64>,
    logs: bool,
    catalog: Catalog,
    xids: Arc<XidStats>,
    processes: bool,
    mig: bool,
    proc_root: PathBuf,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("gpus", &self.gpus.len())
            .finish_non_exhaustive()
    }
}

/// How the sampler is set up (the receiver's config, resolved).
#[derive(Debug, Clone)]
pub struct Options {
    /// Resource attributes of the host (`host.name`, `k8s.node.name`).
    pub host: Vec<KeyValue>,
    /// Build state-change logs (off when the receiver is in no logs pipeline).
    pub logs: bool,
    /// Emit per-process metrics.
    pub processes: bool,
    /// Emit MIG instance metrics.
    pub mig: bool,
    /// Host `/proc`.
    pub proc_root: PathBuf,
}

fn mhz_to_hz(v: u32) -> f64 {
    f64::from(v) * 1e6
}

fn sample_value(v: &SampleValue) -> f64 {
    match *v {
        SampleValue::F64(x) => x,
        SampleValue::U32(x) => f64::from(x),
        SampleValue::U64(x) => x as f64,
        SampleValue::I64(x) => x as f64,
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Sampler {
    /// Enumerates the GPUs and reads their identities. A GPU whose identity cannot be read
    /// yet is retried at every report.
    pub fn new(nvml: Arc<Nvml>, catalog: Catalog, xids: Arc<XidStats>, options: Options) -> Self {
        let count = nvml.device_count().unwrap_or(0);
        let driver_version = nvml.sys_driver_version().unwrap_or_default();
        let gpus = (0..count)
            .map(|index| {
                let identity = nvml
                    .device_by_index(index)
                    .and_then(|d| Identity::read(&d, index));
                if let Err(e) = &identity {
                    tracing::warn!(gpu = index, error = %e, "cannot identify GPU; retrying at each report");
                }
                Gpu {
                    index,
                    lost: matches!(identity, Err(NvmlError::GpuLost)),
                    identity: identity.ok(),
                    unsupported: 0,
                    reported_lost: false,
                    window: Window::default(),
                    throttle_prev: 0,
                    last_process_sample: 0,
                    reports: 0,
                    mig_on: None,
                }
            })
            .collect();
        Sampler {
            nvml,
            gpus,
            driver_version,
            host: options.host,
            start_unix_nano: None,
            logs: options.logs,
            catalog,
            xids,
            processes: options.processes,
            mig: options.mig,
            proc_root: options.proc_root,
        }
    }

    /// Number of GPUs NVML reported at start.
    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }

    /// The identities known so far (GPUs only).
    pub fn identities(&self) -> Vec<Identity> {
        self.gpus
            .iter()
            .filter_map(|g| g.identity.clone())
            .collect()
    }

    /// The NVIDIA driver version.
    pub fn driver_version(&self) -> &str {
        &self.driver_version
    }

    /// Reads the fast-changing values of every GPU into the window.
    pub fn sample(&mut self) {
        let nvml = Arc::clone(&self.nvml);
        for gpu in &mut self.gpus {
            if gpu.lost {
                continue;
            }
            let device = match nvml.device_by_index(gpu.index) {
                Ok(d) => d,
                Err(e) => {
                    gpu.lost |= matches!(e, NvmlError::GpuLost);
                    continue;
                }
            };
            sample_gpu(gpu, &device);
        }
    }

    /// Reads the slow-changing values, turns the window into metrics, and starts a new window.
    pub fn report(&mut self, now_unix_nano: u64) -> Report {
        let nvml = Arc::clone(&self.nvml);
        let snapshot = self.catalog.snapshot();
        // Counters NVML keeps since the driver loaded have no known start: per the OTLP data
        // model their first point is stamped start == time, and later ones keep that start.
        let start = *self.start_unix_nano.get_or_insert(now_unix_nano);
        let mut report = Report::default();
        let n = self.gpus.len();
        for i in 0..n {
            let device = nvml.device_by_index(self.gpus[i].index);
            let gpu = &mut self.gpus[i];
            gpu.reports += 1;
            if gpu.reports.is_multiple_of(REPROBE_EVERY_REPORTS) {
                // Readings once refused are asked again now and then: a MIG reconfiguration,
                // a GPU reset or a driver update can make them available.
                gpu.unsupported = 0;
            }
            if gpu.identity.is_none()
                && let Ok(d) = &device
                && let Ok(id) = Identity::read(d, gpu.index)
            {
                gpu.identity = Some(id);
                gpu.lost = false;
            }
            // A GPU lost before it could be identified still reports its state, under a
            // placeholder identity (`hw.id` = `gpu<index>`), so that alerts on hw.status fire.
            let identity = gpu
                .identity
                .clone()
                .unwrap_or_else(|| Identity::unidentified(gpu.index));
            let holders = device::holders_of(&snapshot, &identity);
            let resource = device::resource(&self.host, &holders);
            let mut set = MetricSet::new(now_unix_nano, start);
            let mut logs = Vec::new();

            // A lost GPU may come back after a reset: probe it once per report.
            if gpu.lost
                && let Ok(d) = &device
                && d.uuid().is_ok()
            {
                gpu.lost = false;
                gpu.unsupported = 0;
            }
            let mut migs = Vec::new();
            if !gpu.lost
                && gpu.identity.is_some()
                && let Ok(d) = &device
            {
                let mig_on = gpu
                    .read(Field::Mig, || d.mig_mode())
                    .is_some_and(|m| m.current == 1);
                if gpu.mig_on != Some(mig_on) {
                    if gpu.mig_on.is_some() {
                        gpu.unsupported = 0;
                    }
                    gpu.mig_on = Some(mig_on);
                }
                // With MIG on, the parent's process list holds every instance's processes:
                // they are reported per instance instead, not twice.
                let processes = self.processes && !mig_on;
                report_slow(
                    gpu,
                    d,
                    &identity,
                    &mut set,
                    &self.proc_root,
                    processes,
                    &snapshot,
                );
                if self.mig && mig_on {
                    migs = read_migs(d, &identity, self.processes);
                }
            } else if gpu.identity.is_none() && matches!(device, Err(NvmlError::GpuLost)) {
                gpu.lost = true;
            }
            let window = std::mem::take(&mut gpu.window);
            report_window(&window, &identity, &mut set);
            let lost = gpu.lost;
            // Throttle transitions, coalesced per report.
            if window.throttle_seen {
                let started = window.throttle_any & !gpu.throttle_prev & LOGGED_THROTTLE;
                let ended = gpu.throttle_prev & !window.throttle_any & LOGGED_THROTTLE;
                if started != 0 || ended != 0 {
                    logs.push(throttle_log(&identity, started, ended, now_unix_nano));
                }
                gpu.throttle_prev = window.throttle_any;
            }
            if lost != gpu.reported_lost {
                logs.push(lost_log(&identity, lost, now_unix_nano));
                gpu.reported_lost = lost;
            }
            if gpu.identity.is_none() && !lost {
                // Neither identified nor lost (a transient failure): nothing honest to say yet.
                continue;
            }
            self.status(&mut set, &identity, lost);
            self.xid_metrics(&mut set, &identity);
            report.metrics.push(resource_metrics(resource.clone(), set));
            if self.logs && !logs.is_empty() {
                report.logs.push(ResourceLogs {
                    resource: Some(resource),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: logs,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            for (mig_identity, mig_set) in migs {
                let mig_holders = device::holders_of(&snapshot, &mig_identity);
                let mut set = MetricSet::new(now_unix_nano, start);
                fill_mig(&mut set, &mig_identity, mig_set, &self.proc_root, &snapshot);
                report.metrics.push(resource_metrics(
                    device::resource(&self.host, &mig_holders),
                    set,
                ));
            }
        }
        report
    }

    fn status(&self, set: &mut MetricSet, identity: &Identity, lost: bool) {
        let state = if lost { "failed" } else { "ok" };
        let mut base = identity.attributes();
        if !self.driver_version.is_empty() {
            base.push(kv(semconv::HW_DRIVER_VERSION, self.driver_version.clone()));
        }
        if let Some(s) = &identity.serial {
            base.push(kv(semconv::HW_SERIAL_NUMBER, s.clone()));
        }
        let points = ["ok", "degraded", "failed"]
            .iter()
            .map(|s| {
                let mut a = base.clone();
                a.push(kv(semconv::HW_STATE, *s));
                (a, i64::from(*s == state))
            })
            .collect();
        set.sum_int(
            semconv::METRIC_HW_STATUS,
            "1 for the GPU's current state (ok, degraded, failed), 0 for the others.",
            "1",
            false,
            points,
        );
    }

    fn xid_metrics(&self, set: &mut MetricSet, identity: &Identity) {
        let (counts, last) = self.xids.get(&identity.uuid).unwrap_or_default();
        let points = counts
            .iter()
            .map(|(code, n)| {
                (
                    identity.with([kv_int(semconv::HPCOTEL_GPU_XID, clamp_i64(*code))]),
                    clamp_i64(*n),
                )
            })
            .collect();
        set.sum_int(
            semconv::METRIC_GPU_XID_ERRORS,
            "Xid errors seen since the collector started, by code.",
            "{error}",
            true,
            points,
        );
        set.gauge(
            semconv::METRIC_GPU_XID_LAST,
            "Code of the last Xid error seen (0: none since the collector started).",
            "1",
            vec![(identity.attributes(), last as f64)],
        );
    }
}

fn resource_metrics(
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    set: MetricSet,
) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(resource),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics: set.into_metrics(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One sample of the fast-changing values.
fn sample_gpu(gpu: &mut Gpu, d: &Device<'_>) {
    if let Some(u) = gpu.read(Field::Utilization, || d.utilization_rates()) {
        gpu.window.util[0].add(f64::from(u.gpu) / 100.0);
        gpu.window.mem_util.add(f64::from(u.memory) / 100.0);
    }
    if let Some(u) = gpu.read(Field::Encoder, || d.encoder_utilization()) {
        gpu.window.util[1].add(f64::from(u.utilization) / 100.0);
    }
    if let Some(u) = gpu.read(Field::Decoder, || d.decoder_utilization()) {
        gpu.window.util[2].add(f64::from(u.utilization) / 100.0);
    }
    if let Some(m) = gpu.read(Field::Memory, || d.memory_info()) {
        gpu.window.memory = Some(m);
    }
    // The instantaneous power field where the driver has it: `power_usage` is a 1 s average
    // on Ampere (but GA100) and later, which would flatten the spikes the window keeps.
    let instant = gpu.read(Field::PowerInstant, || {
        field_value(d, field_id::NVML_FI_DEV_POWER_INSTANT)
    });
    if let Some(mw) = instant {
        gpu.window.power.add(mw / 1000.0);
    } else if let Some(p) = gpu.read(Field::Power, || d.power_usage()) {
        gpu.window.power.add(f64::from(p) / 1000.0);
    }
    if let Some(t) = gpu.read(Field::Temperature, || d.temperature(TemperatureSensor::Gpu)) {
        gpu.window.temp[0].add(f64::from(t));
    }
    if let Some(v) = gpu.read(Field::MemoryTemperature, || {
        field_value(d, field_id::NVML_FI_DEV_MEMORY_TEMP)
    }) {
        gpu.window.temp[1].add(v);
    }
    for (i, (field, clock)) in [
        (Field::ClockGraphics, Clock::Graphics),
        (Field::ClockSm, Clock::SM),
        (Field::ClockMemory, Clock::Memory),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(c) = gpu.read(field, || d.clock_info(clock)) {
            gpu.window.clocks[i].add(mhz_to_hz(c));
        }
    }
    if let Some(t) = gpu.read(Field::Throttle, || d.current_throttle_reasons()) {
        gpu.window.throttle_any |= t.bits();
        gpu.window.throttle_seen = true;
    }
}

/// One field value, as a number.
fn field_value(d: &Device<'_>, id: u32) -> Result<f64, NvmlError> {
    let mut r = d.field_values_for(&[FieldId(id)])?;
    match r.pop() {
        Some(Ok(s)) => s.value.map(|v| sample_value(&v)),
        Some(Err(e)) => Err(e),
        None => Err(NvmlError::NotSupported),
    }
}

const TASKS: [&str; 3] = ["general", "encoder", "decoder"];
const CLOCKS: [&str; 3] = ["graphics", "sm", "memory"];
const SENSORS: [&str; 2] = ["gpu", "memory"];
const DIRECTIONS: [&str; 2] = ["transmit", "receive"];

/// The window's gauges: last sample under the main name, extremes under `hpcotel.gpu.*`.
fn report_window(w: &Window, id: &Identity, set: &mut MetricSet) {
    let by = |stats: &[Stat], key: &str, values: &[&str], pick: fn(&Stat) -> f64| {
        stats
            .iter()
            .zip(values)
            .filter_map(|(s, v)| s.get().map(|s| (id.with([kv(key, *v)]), pick(&s))))
            .collect::<Vec<_>>()
    };
    let last = |s: &Stat| s.last;
    let min = |s: &Stat| s.min;
    let max = |s: &Stat| s.max;
    set.gauge(
        semconv::METRIC_HW_GPU_UTILIZATION,
        "Fraction of time the GPU's engines were busy, by task; last sample of the window.",
        "1",
        by(&w.util, semconv::HW_GPU_TASK, &TASKS, last),
    );
    set.gauge(
        semconv::METRIC_GPU_UTILIZATION_MIN,
        "Lowest utilization sample of the report window, by task.",
        "1",
        by(&w.util, semconv::HW_GPU_TASK, &TASKS, min),
    );
    set.gauge(
        semconv::METRIC_GPU_UTILIZATION_MAX,
        "Highest utilization sample of the report window, by task.",
        "1",
        by(&w.util, semconv::HW_GPU_TASK, &TASKS, max),
    );
    let single = |s: &Stat, pick: fn(&Stat) -> f64| {
        s.get()
            .map(|s| vec![(id.attributes(), pick(&s))])
            .unwrap_or_default()
    };
    set.gauge(
        semconv::METRIC_HW_GPU_MEMORY_UTILIZATION,
        "Fraction of time device memory was read or written; last sample of the window.",
        "1",
        single(&w.mem_util, last),
    );
    set.gauge(
        semconv::METRIC_HW_POWER,
        "Power draw; last sample of the window.",
        "W",
        single(&w.power, last),
    );
    set.gauge(
        semconv::METRIC_GPU_POWER_MIN,
        "Lowest power sample of the report window.",
        "W",
        single(&w.power, min),
    );
    set.gauge(
        semconv::METRIC_GPU_POWER_MAX,
        "Highest power sample of the report window.",
        "W",
        single(&w.power, max),
    );
    set.gauge(
        semconv::METRIC_HW_TEMPERATURE,
        "Temperature by sensor; last sample of the window.",
        "Cel",
        by(&w.temp, semconv::HW_SENSOR_LOCATION, &SENSORS, last),
    );
    set.gauge(
        semconv::METRIC_GPU_TEMPERATURE_MAX,
        "Highest temperature sample of the report window, by sensor.",
        "Cel",
        by(&w.temp, semconv::HW_SENSOR_LOCATION, &SENSORS, max),
    );
    set.gauge(
        semconv::METRIC_GPU_CLOCK_FREQUENCY,
        "Clock frequency by clock domain; last sample of the window.",
        "Hz",
        by(&w.clocks, semconv::HPCOTEL_GPU_CLOCK_TYPE, &CLOCKS, last),
    );
    set.gauge(
        semconv::METRIC_GPU_CLOCK_FREQUENCY_MIN,
        "Lowest clock sample of the report window (a throttling dip), by clock domain.",
        "Hz",
        by(&w.clocks, semconv::HPCOTEL_GPU_CLOCK_TYPE, &CLOCKS, min),
    );
    if w.throttle_seen {
        let points = THROTTLE_REASONS
            .iter()
            .map(|(bit, name)| {
                (
                    id.with([kv(semconv::HPCOTEL_GPU_THROTTLE_REASON, *name)]),
                    if w.throttle_any & bit != 0 { 1.0 } else { 0.0 },
                )
            })
            .collect();
        set.gauge(
            semconv::METRIC_GPU_THROTTLE,
            "1 when the clock-event (throttle) reason was active in any sample of the window.",
            "1",
            points,
        );
    }
    if let Some(m) = &w.memory {
        memory_metrics(set, id, m.used, m.total, Some((m.free, m.reserved)));
    }
}

fn memory_metrics(
    set: &mut MetricSet,
    id: &Identity,
    used: u64,
    total: u64,
    rest: Option<(u64, u64)>,
) {
    set.sum_int(
        semconv::METRIC_HW_GPU_MEMORY_USAGE,
        "Framebuffer memory in use.",
        "By",
        false,
        vec![(id.attributes(), clamp_i64(used))],
    );
    set.sum_int(
        semconv::METRIC_HW_GPU_MEMORY_LIMIT,
        "Framebuffer memory size.",
        "By",
        false,
        vec![(id.attributes(), clamp_i64(total))],
    );
    if let Some((free, reserved)) = rest {
        set.sum_int(
            semconv::METRIC_GPU_MEMORY_FREE,
            "Framebuffer memory free.",
            "By",
            false,
            vec![(id.attributes(), clamp_i64(free))],
        );
        set.sum_int(
            semconv::METRIC_GPU_MEMORY_RESERVED,
            "Framebuffer memory reserved by the driver.",
            "By",
            false,
            vec![(id.attributes(), clamp_i64(reserved))],
        );
    }
}

/// The slow-changing values, read once per report.
fn report_slow(
    gpu: &mut Gpu,
    d: &Device<'_>,
    id: &Identity,
    set: &mut MetricSet,
    proc_root: &std::path::Path,
    processes: bool,
    snapshot: &hpcotel_core::catalog::Snapshot,
) {
    if let Some(l) = gpu.read(Field::PowerLimit, || d.enforced_power_limit()) {
        set.gauge(
            semconv::METRIC_GPU_POWER_LIMIT,
            "Enforced power limit.",
            "W",
            vec![(id.attributes(), f64::from(l) / 1000.0)],
        );
    }
    if let Some(e) = gpu.read(Field::Energy, || d.total_energy_consumption()) {
        set.sum_double(
            semconv::METRIC_HW_ENERGY,
            "Energy consumed since the driver was loaded.",
            "J",
            true,
            vec![(id.attributes(), e as f64 / 1000.0)],
        );
    }
    if let Some(p) = gpu.read(Field::Pstate, || d.performance_state()) {
        let n = p.as_c();
        if n <= 15 {
            set.gauge(
                semconv::METRIC_GPU_PERFORMANCE_STATE,
                "Performance state: 0 (P0, fastest) to 15.",
                "1",
                vec![(id.attributes(), f64::from(n))],
            );
        }
    }
    if gpu.supports(Field::PcieLink) {
        if let Some(g) = gpu.read(Field::PcieLink, || d.current_pcie_link_gen()) {
            set.gauge(
                semconv::METRIC_GPU_PCIE_LINK_GENERATION,
                "Current PCIe link generation.",
                "1",
                vec![(id.attributes(), f64::from(g))],
            );
        }
        if let Some(w) = gpu.read(Field::PcieLink, || d.current_pcie_link_width()) {
            set.gauge(
                semconv::METRIC_GPU_PCIE_LINK_WIDTH,
                "Current PCIe link width.",
                "{lane}",
                vec![(id.attributes(), f64::from(w))],
            );
        }
    }
    // NVML measures PCIe throughput over 20 ms and blocks meanwhile: read once per report,
    // not per sample (8 GPUs × 2 directions would otherwise take 320 ms of every sample).
    let pcie: Vec<_> = [
        (PcieUtilCounter::Send, "transmit"),
        (PcieUtilCounter::Receive, "receive"),
    ]
    .into_iter()
    .filter_map(|(counter, dir)| {
        gpu.read(Field::Pcie, || d.pcie_throughput(counter))
            .map(|kb| {
                (
                    id.with([kv(semconv::NETWORK_IO_DIRECTION, dir)]),
                    f64::from(kb) * 1024.0,
                )
            })
    })
    .collect();
    set.gauge(
        semconv::METRIC_GPU_PCIE_THROUGHPUT,
        "PCIe throughput by direction, measured by NVML over 20 ms at report time.",
        "By/s",
        pcie,
    );
    if let Some(r) = gpu.read(Field::PcieReplay, || d.pcie_replay_counter()) {
        set.sum_int(
            semconv::METRIC_GPU_PCIE_REPLAYS,
            "PCIe replays since the driver was loaded.",
            "{replay}",
            true,
            vec![(id.attributes(), i64::from(r))],
        );
    }
    if let Some(b) = gpu.read(Field::Bar1, || d.bar1_memory_info()) {
        set.sum_int(
            semconv::METRIC_GPU_BAR1_USAGE,
            "BAR1 memory in use.",
            "By",
            false,
            vec![(id.attributes(), clamp_i64(b.used))],
        );
        set.sum_int(
            semconv::METRIC_GPU_BAR1_LIMIT,
            "BAR1 memory size.",
            "By",
            false,
            vec![(id.attributes(), clamp_i64(b.total))],
        );
    }
    if gpu.supports(Field::Ecc) {
        let corrected = gpu.read(Field::Ecc, || {
            d.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
        });
        let uncorrected = gpu.read(Field::Ecc, || {
            d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
        });
        let points = [("corrected", corrected), ("uncorrected", uncorrected)]
            .into_iter()
            .filter_map(|(t, v)| v.map(|v| (id.with([kv(semconv::ERROR_TYPE, t)]), clamp_i64(v))))
            .collect();
        set.sum_int(
            semconv::METRIC_HW_ERRORS,
            "ECC errors since the driver was loaded, by error type.",
            "{error}",
            true,
            points,
        );
    }
    if gpu.supports(Field::RetiredPages) {
        let sbe = gpu.read(Field::RetiredPages, || {
            d.retired_pages(RetirementCause::MultipleSingleBitEccErrors)
        });
        let dbe = gpu.read(Field::RetiredPages, || {
            d.retired_pages(RetirementCause::DoubleBitEccError)
        });
        let points = [("single_bit_ecc", sbe), ("double_bit_ecc", dbe)]
            .into_iter()
            .filter_map(|(c, v)| {
                v.map(|v| {
                    (
                        id.with([kv(semconv::HPCOTEL_GPU_RETIREMENT_CAUSE, c)]),
                        v.len() as i64,
                    )
                })
            })
            .collect();
        set.sum_int(
            semconv::METRIC_GPU_RETIRED_PAGES,
            "Retired memory pages, by cause.",
            "{page}",
            false,
            points,
        );
    }
    // NVLink throughput takes the link in scopeId; UINT_MAX sums every link (nvml-wrapper's
    // field_values_for cannot set a scope, hence the raw call).
    if let Some(v) = gpu.read(Field::Fields, || {
        ffi::scoped_field_values(
            d,
            &[
                (
                    field_id::NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
                    ffi::ALL_LINKS,
                ),
                (
                    field_id::NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
                    ffi::ALL_LINKS,
                ),
                (field_id::NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, 0),
                (field_id::NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL, 0),
                (field_id::NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL, 0),
                (field_id::NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL, 0),
                (field_id::NVML_FI_DEV_REMAPPED_COR, 0),
                (field_id::NVML_FI_DEV_REMAPPED_UNC, 0),
                (field_id::NVML_FI_DEV_REMAPPED_PENDING, 0),
                (field_id::NVML_FI_DEV_REMAPPED_FAILURE, 0),
            ],
        )
    }) {
        let get = |i: usize| v.get(i).copied().flatten();
        let io: Vec<_> = DIRECTIONS
            .iter()
            .enumerate()
            .filter_map(|(i, dir)| {
                get(i).map(|kib| {
                    (
                        id.with([kv(semconv::NETWORK_IO_DIRECTION, *dir)]),
                        clamp_i64((kib * 1024.0) as u64),
                    )
                })
            })
            .collect();
        set.sum_int(
            semconv::METRIC_GPU_NVLINK_IO,
            "NVLink data transferred, all links, by direction.",
            "By",
            true,
            io,
        );
        let errors: Vec<_> = ["crc_flit", "crc_data", "replay", "recovery"]
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                get(2 + i).map(|n| (id.with([kv(semconv::ERROR_TYPE, *t)]), n as i64))
            })
            .collect();
        set.sum_int(
            semconv::METRIC_GPU_NVLINK_ERRORS,
            "NVLink errors, all links, by error type.",
            "{error}",
            true,
            errors,
        );
        let rows: Vec<_> = ["corrected", "uncorrected"]
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                get(6 + i).map(|n| (id.with([kv(semconv::ERROR_TYPE, *t)]), n as i64))
            })
            .collect();
        set.sum_int(
            semconv::METRIC_GPU_REMAPPED_ROWS,
            "Memory rows remapped, by error type.",
            "{row}",
            false,
            rows,
        );
        if let Some(p) = get(8) {
            set.gauge(
                semconv::METRIC_GPU_ROW_REMAP_PENDING,
                "1 when a row remap awaits a GPU reset.",
                "1",
                vec![(id.attributes(), if p > 0.0 { 1.0 } else { 0.0 })],
            );
        }
        if let Some(f) = get(9) {
            set.gauge(
                semconv::METRIC_GPU_ROW_REMAP_FAILED,
                "1 when a row remap has failed.",
                "1",
                vec![(id.attributes(), if f > 0.0 { 1.0 } else { 0.0 })],
            );
        }
    }
    if gpu.supports(Field::Fans)
        && let Some(n) = gpu.read(Field::Fans, || d.num_fans())
    {
        {
            let points: Vec<_> = (0..n)
                .filter_map(|i| {
                    gpu.read(Field::Fans, || d.fan_speed(i)).map(|s| {
                        (
                            id.with([kv_int(semconv::HPCOTEL_GPU_FAN_INDEX, i64::from(i))]),
                            f64::from(s) / 100.0,
                        )
                    })
                })
                .collect();
            set.gauge(
                semconv::METRIC_GPU_FAN_SPEED,
                "Fan speed as a fraction of its maximum.",
                "1",
                points,
            );
        }
    }
    if processes {
        let procs = gpu
            .read(Field::Processes, || d.running_compute_processes())
            .unwrap_or_default();
        let since = gpu.last_process_sample;
        // NOT_FOUND: NVML holds no sample since `since`, i.e. every process was idle.
        let utils = gpu.read(Field::ProcessUtilization, || {
            match d.process_utilization_stats(since) {
                Err(NvmlError::NotFound) => Ok(Vec::new()),
                other => other,
            }
        });
        if let Some(ts) = utils.iter().flatten().map(|u| u.timestamp).max() {
            gpu.last_process_sample = ts;
        }
        process_metrics(set, id, &procs, utils.as_deref(), proc_root, snapshot);
    }
}

fn process_attributes(
    id: &Identity,
    pid: u32,
    proc_root: &std::path::Path,
    snapshot: &hpcotel_core::catalog::Snapshot,
) -> Vec<KeyValue> {
    let mut a = id.with([kv_int(semconv::PROCESS_PID, i64::from(pid))]);
    if let Some(name) = procfs::command_name(proc_root, pid) {
        a.push(kv(semconv::PROCESS_EXECUTABLE_NAME, name));
    }
    if let Some(uid) = procfs::pod_uid(proc_root, pid) {
        if let Some(p) = snapshot.pods_by_uid.get(&uid) {
            a.push(kv(semconv::K8S_NAMESPACE_NAME, p.namespace.clone()));
            a.push(kv(semconv::K8S_POD_NAME, p.name.clone()));
        }
        a.push(kv(semconv::K8S_POD_UID, uid));
    }
    a
}

fn process_metrics(
    set: &mut MetricSet,
    id: &Identity,
    procs: &[nvml_wrapper::struct_wrappers::device::ProcessInfo],
    utils: Option<&[nvml_wrapper::struct_wrappers::device::ProcessUtilizationSample]>,
    proc_root: &std::path::Path,
    snapshot: &hpcotel_core::catalog::Snapshot,
) {
    let memory: Vec<_> = procs
        .iter()
        .filter_map(|p| match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => Some((
                process_attributes(id, p.pid, proc_root, snapshot),
                clamp_i64(b),
            )),
            UsedGpuMemory::Unavailable => None,
        })
        .collect();
    set.sum_int(
        semconv::METRIC_GPU_PROCESS_MEMORY_USAGE,
        "GPU memory a process holds.",
        "By",
        false,
        memory,
    );
    // NVML has no per-process utilization on MIG instances: no series rather than a false 0.
    let Some(utils) = utils else {
        return;
    };
    // Mean SM share per process over the samples NVML kept since the last report. NVML keeps
    // samples only for busy processes: a running process without any is idle (0), not gone.
    let mut by_pid: BTreeMap<u32, (f64, u32)> = procs.iter().map(|p| (p.pid, (0.0, 0))).collect();
    for u in utils {
        let e = by_pid.entry(u.pid).or_default();
        e.0 += f64::from(u.sm_util);
        e.1 += 1;
    }
    let points = by_pid
        .into_iter()
        .map(|(pid, (sum, n))| {
            (
                process_attributes(id, pid, proc_root, snapshot),
                sum / f64::from(n.max(1)) / 100.0,
            )
        })
        .collect();
    set.gauge(
        semconv::METRIC_GPU_PROCESS_UTILIZATION,
        "A process's share of SM time, mean over the report window.",
        "1",
        points,
    );
}

/// What is read from a MIG instance.
struct MigReading {
    memory: Option<nvml_wrapper::struct_wrappers::device::MemoryInfo>,
    processes: Vec<nvml_wrapper::struct_wrappers::device::ProcessInfo>,
}

fn read_migs(d: &Device<'_>, parent: &Identity, processes: bool) -> Vec<(Identity, MigReading)> {
    let max = d.mig_device_count().unwrap_or(0);
    (0..max)
        .filter_map(|i| {
            let m = d.mig_device_by_index(i).ok()?;
            let uuid = m.uuid().ok()?;
            let name = m.name().unwrap_or_default();
            let (gi, ci) = ffi::mig_instance_ids(&m);
            let identity = Identity {
                uuid,
                model: parent.model.clone(),
                index: parent.index,
                minor: None,
                pci_bus_id: parent.pci_bus_id.clone(),
                serial: None,
                mig: Some(MigIdentity {
                    parent_uuid: parent.uuid.clone(),
                    position: i,
                    profile: device::mig_profile(&name),
                    gpu_instance_id: gi,
                    compute_instance_id: ci,
                }),
            };
            let reading = MigReading {
                memory: m.memory_info().ok(),
                processes: if processes {
                    m.running_compute_processes().unwrap_or_default()
                } else {
                    Vec::new()
                },
            };
            Some((identity, reading))
        })
        .collect()
}

fn fill_mig(
    set: &mut MetricSet,
    id: &Identity,
    r: MigReading,
    proc_root: &std::path::Path,
    snapshot: &hpcotel_core::catalog::Snapshot,
) {
    if let Some(m) = r.memory {
        memory_metrics(set, id, m.used, m.total, None);
    }
    if !r.processes.is_empty() {
        process_metrics(set, id, &r.processes, None, proc_root, snapshot);
    }
}

fn throttle_log(id: &Identity, started: u64, ended: u64, now: u64) -> LogRecord {
    let names = |bits: u64| {
        THROTTLE_REASONS
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let severity = if started & HARDWARE_THROTTLE != 0 {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut parts = Vec::new();
    if started != 0 {
        parts.push(format!("throttling started: {}", names(started)));
    }
    if ended != 0 {
        parts.push(format!("throttling ended: {}", names(ended)));
    }
    let body = format!("GPU {} ({}): {}", id.index, id.uuid, parts.join("; "));
    let mut attrs = id.with([kv(semconv::HPCOTEL_GPU_EVENT, "clock_event")]);
    for (_, n) in THROTTLE_REASONS.iter().filter(|(b, _)| started & b != 0) {
        attrs.push(kv(semconv::HPCOTEL_GPU_THROTTLE_REASON, *n));
    }
    events::log_record(now, severity, "hpcotel.gpu.clock_event", body, attrs)
}

fn lost_log(id: &Identity, lost: bool, now: u64) -> LogRecord {
    let (event, severity, body) = if lost {
        (
            "gpu_lost",
            Severity::Fatal,
            format!(
                "GPU {} ({}) is lost: NVML cannot reach it. The other GPUs keep reporting. Drain the node and reboot it.",
                id.index, id.uuid
            ),
        )
    } else {
        (
            "gpu_recovered",
            Severity::Info,
            format!("GPU {} ({}) answers NVML again.", id.index, id.uuid),
        )
    };
    events::log_record(
        now,
        severity,
        &format!("hpcotel.gpu.{event}"),
        body,
        id.with([kv(semconv::HPCOTEL_GPU_EVENT, event)]),
    )
}

/// A GPU event from the watcher, with its device's identity, as a `ResourceLogs`.
pub fn event_logs(
    host: &[KeyValue],
    catalog: &Catalog,
    identity: &Identity,
    event: &GpuEvent,
    now: u64,
) -> ResourceLogs {
    let holders = device::holders_of(&catalog.snapshot(), identity);
    ResourceLogs {
        resource: Some(device::resource(host, &holders)),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope()),
            log_records: vec![events::event_record(identity, event, now)],
            ..Default::default()
        }],
        ..Default::default()
    }
}
