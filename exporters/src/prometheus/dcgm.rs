//! dcgm-exporter compatibility (`dcgm_compatible: true`): which hpcotel metrics have a
//! dcgm-exporter equivalent, under which name, unit, type and help text, and the labels
//! dcgm-exporter puts on them.
//!
//! [`DCGM_MAPPINGS`] is the one table; the README's migration table is generated from it
//! ([`migration_table`]). Help texts are dcgm-exporter's own (`etc/default-counters.csv`,
//! `etc/dcp-metrics-included.csv`) where it ships one; for fields it has no CSV line for
//! they are written in the same style. Types are the CSVs' (`counter` without `_total`, as
//! dcgm-exporter prints them).

use std::fmt::Write as _;

use hpcotel_core::semconv;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::convert::{Label, attr_string};

/// The Prometheus type dcgm-exporter gives a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromType {
    /// `# TYPE … gauge`.
    Gauge,
    /// `# TYPE … counter` (the name keeps dcgm-exporter's spelling, no `_total`).
    Counter,
}

impl PromType {
    /// `gauge` or `counter`.
    pub fn as_str(self) -> &'static str {
        match self {
            PromType::Gauge => "gauge",
            PromType::Counter => "counter",
        }
    }
}

/// One hpcotel metric (optionally one value of one attribute) and its dcgm-exporter field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DcgmMapping {
    /// dcgm-exporter's metric name (`DCGM_FI_DEV_GPU_UTIL`).
    pub dcgm_name: &'static str,
    /// hpcotel's OpenTelemetry metric name (`hw.gpu.utilization`).
    pub metric: &'static str,
    /// The data point attribute and value this field covers (`hw.gpu.task` = `general`);
    /// `None`: every data point of the metric.
    pub filter: Option<(&'static str, &'static str)>,
    /// Factor from hpcotel's unit to dcgm-exporter's (`100` for a fraction to percent).
    pub scale: f64,
    /// dcgm-exporter's unit after scaling, for documentation (`%`, `MiB`; empty: a count).
    pub unit: &'static str,
    /// dcgm-exporter's Prometheus type.
    pub prom_type: PromType,
    /// The `# HELP` text.
    pub help: &'static str,
}

const MIB: f64 = 1.0 / (1024.0 * 1024.0);
const MHZ: f64 = 1e-6;

const fn map(
    dcgm_name: &'static str,
    metric: &'static str,
    filter: Option<(&'static str, &'static str)>,
    scale: f64,
    unit: &'static str,
    prom_type: PromType,
    help: &'static str,
) -> DcgmMapping {
    DcgmMapping {
        dcgm_name,
        metric,
        filter,
        scale,
        unit,
        prom_type,
        help,
    }
}

use PromType::{Counter, Gauge};
use semconv::{
    ERROR_TYPE, HPCOTEL_GPU_CLOCK_TYPE, HPCOTEL_GPU_FAN_INDEX, HPCOTEL_GPU_RETIREMENT_CAUSE,
    HW_GPU_TASK, HW_SENSOR_LOCATION, NETWORK_IO_DIRECTION,
};

/// Every hpcotel metric with a dcgm-exporter equivalent. A data point matching an entry is
/// emitted only under the entry's name in `dcgm_compatible` mode; the others keep their
/// OpenTelemetry-derived names.
pub const DCGM_MAPPINGS: &[DcgmMapping] = &[
    map(
        "DCGM_FI_DEV_GPU_UTIL",
        semconv::METRIC_HW_GPU_UTILIZATION,
        Some((HW_GPU_TASK, "general")),
        100.0,
        "%",
        Gauge,
        "GPU utilization (in %).",
    ),
    map(
        "DCGM_FI_DEV_ENC_UTIL",
        semconv::METRIC_HW_GPU_UTILIZATION,
        Some((HW_GPU_TASK, "encoder")),
        100.0,
        "%",
        Gauge,
        "Encoder utilization (in %).",
    ),
    map(
        "DCGM_FI_DEV_DEC_UTIL",
        semconv::METRIC_HW_GPU_UTILIZATION,
        Some((HW_GPU_TASK, "decoder")),
        100.0,
        "%",
        Gauge,
        "Decoder utilization (in %).",
    ),
    map(
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        semconv::METRIC_HW_GPU_MEMORY_UTILIZATION,
        None,
        100.0,
        "%",
        Gauge,
        "Memory utilization (in %).",
    ),
    map(
        "DCGM_FI_DEV_FB_USED",
        semconv::METRIC_HW_GPU_MEMORY_USAGE,
        None,
        MIB,
        "MiB",
        Gauge,
        "Framebuffer memory used (in MiB).",
    ),
    map(
        "DCGM_FI_DEV_FB_FREE",
        semconv::METRIC_GPU_MEMORY_FREE,
        None,
        MIB,
        "MiB",
        Gauge,
        "Framebuffer memory free (in MiB).",
    ),
    map(
        "DCGM_FI_DEV_FB_RESERVED",
        semconv::METRIC_GPU_MEMORY_RESERVED,
        None,
        MIB,
        "MiB",
        Gauge,
        "Framebuffer memory reserved (in MiB).",
    ),
    map(
        "DCGM_FI_DEV_FB_TOTAL",
        semconv::METRIC_HW_GPU_MEMORY_LIMIT,
        None,
        MIB,
        "MiB",
        Gauge,
        "Total framebuffer memory (in MiB).",
    ),
    map(
        "DCGM_FI_DEV_SM_CLOCK",
        semconv::METRIC_GPU_CLOCK_FREQUENCY,
        Some((HPCOTEL_GPU_CLOCK_TYPE, "sm")),
        MHZ,
        "MHz",
        Gauge,
        "SM clock frequency (in MHz).",
    ),
    map(
        "DCGM_FI_DEV_MEM_CLOCK",
        semconv::METRIC_GPU_CLOCK_FREQUENCY,
        Some((HPCOTEL_GPU_CLOCK_TYPE, "memory")),
        MHZ,
        "MHz",
        Gauge,
        "Memory clock frequency (in MHz).",
    ),
    map(
        "DCGM_FI_DEV_GPU_TEMP",
        semconv::METRIC_HW_TEMPERATURE,
        Some((HW_SENSOR_LOCATION, "gpu")),
        1.0,
        "C",
        Gauge,
        "GPU temperature (in C).",
    ),
    map(
        "DCGM_FI_DEV_MEMORY_TEMP",
        semconv::METRIC_HW_TEMPERATURE,
        Some((HW_SENSOR_LOCATION, "memory")),
        1.0,
        "C",
        Gauge,
        "Memory temperature (in C).",
    ),
    map(
        "DCGM_FI_DEV_POWER_USAGE",
        semconv::METRIC_HW_POWER,
        None,
        1.0,
        "W",
        Gauge,
        "Power draw (in W).",
    ),
    map(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        semconv::METRIC_HW_ENERGY,
        None,
        1000.0,
        "mJ",
        Counter,
        "Total energy consumption since boot (in mJ).",
    ),
    map(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        semconv::METRIC_GPU_POWER_LIMIT,
        None,
        1.0,
        "W",
        Gauge,
        "Power management limit (in W).",
    ),
    map(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        semconv::METRIC_GPU_PCIE_REPLAYS,
        None,
        1.0,
        "",
        Counter,
        "Total number of PCIe retries.",
    ),
    map(
        "DCGM_FI_DEV_PCIE_LINK_GEN",
        semconv::METRIC_GPU_PCIE_LINK_GENERATION,
        None,
        1.0,
        "",
        Gauge,
        "PCIe current link generation.",
    ),
    map(
        "DCGM_FI_DEV_PCIE_LINK_WIDTH",
        semconv::METRIC_GPU_PCIE_LINK_WIDTH,
        None,
        1.0,
        "",
        Gauge,
        "PCIe current link width.",
    ),
    map(
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        semconv::METRIC_GPU_PCIE_THROUGHPUT,
        Some((NETWORK_IO_DIRECTION, "transmit")),
        1.0,
        "B/s",
        Gauge,
        "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
    ),
    map(
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        semconv::METRIC_GPU_PCIE_THROUGHPUT,
        Some((NETWORK_IO_DIRECTION, "receive")),
        1.0,
        "B/s",
        Gauge,
        "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
    ),
    map(
        "DCGM_FI_DEV_XID_ERRORS",
        semconv::METRIC_GPU_XID_LAST,
        None,
        1.0,
        "",
        Gauge,
        "Value of the last XID error encountered.",
    ),
    map(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        semconv::METRIC_HW_ERRORS,
        Some((ERROR_TYPE, "corrected")),
        1.0,
        "",
        Counter,
        "Total number of single-bit volatile ECC errors.",
    ),
    map(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        semconv::METRIC_HW_ERRORS,
        Some((ERROR_TYPE, "uncorrected")),
        1.0,
        "",
        Counter,
        "Total number of double-bit volatile ECC errors.",
    ),
    map(
        "DCGM_FI_DEV_RETIRED_SBE",
        semconv::METRIC_GPU_RETIRED_PAGES,
        Some((HPCOTEL_GPU_RETIREMENT_CAUSE, "single_bit_ecc")),
        1.0,
        "",
        Counter,
        "Total number of retired pages due to single-bit errors.",
    ),
    map(
        "DCGM_FI_DEV_RETIRED_DBE",
        semconv::METRIC_GPU_RETIRED_PAGES,
        Some((HPCOTEL_GPU_RETIREMENT_CAUSE, "double_bit_ecc")),
        1.0,
        "",
        Counter,
        "Total number of retired pages due to double-bit errors.",
    ),
    map(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        semconv::METRIC_GPU_REMAPPED_ROWS,
        Some((ERROR_TYPE, "corrected")),
        1.0,
        "",
        Counter,
        "Number of remapped rows for correctable errors",
    ),
    map(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        semconv::METRIC_GPU_REMAPPED_ROWS,
        Some((ERROR_TYPE, "uncorrected")),
        1.0,
        "",
        Counter,
        "Number of remapped rows for uncorrectable errors",
    ),
    map(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        semconv::METRIC_GPU_ROW_REMAP_FAILED,
        None,
        1.0,
        "",
        Gauge,
        "Whether remapping of rows has failed",
    ),
    map(
        "DCGM_FI_DEV_PSTATE",
        semconv::METRIC_GPU_PERFORMANCE_STATE,
        None,
        1.0,
        "",
        Gauge,
        "Performance state (P-State) 0-15.",
    ),
    map(
        "DCGM_FI_DEV_FAN_SPEED",
        semconv::METRIC_GPU_FAN_SPEED,
        Some((HPCOTEL_GPU_FAN_INDEX, "0")),
        100.0,
        "%",
        Gauge,
        "Fan speed (in %).",
    ),
];

/// The mappings of metric `metric` (none for most metrics).
pub fn mappings_for(metric: &str) -> Vec<&'static DcgmMapping> {
    DCGM_MAPPINGS
        .iter()
        .filter(|m| m.metric == metric)
        .collect()
}

/// Among `candidates` (the mappings of one metric), the one a data point with attributes
/// `attrs` falls under.
pub fn find<'a>(candidates: &[&'a DcgmMapping], attrs: &[KeyValue]) -> Option<&'a DcgmMapping> {
    candidates.iter().copied().find(|m| match m.filter {
        None => true,
        Some((key, value)) => attr_string(attrs, key).as_deref() == Some(value),
    })
}

/// The labels dcgm-exporter takes from the pod a GPU is allocated to.
pub const POD_LABELS: [&str; 3] = ["pod", "namespace", "container"];

/// dcgm-exporter's labels for a data point: `gpu`, `UUID` (for a MIG instance its physical
/// GPU's, as dcgm-exporter), `pci_bus_id`, `device` (`nvidia<gpu>`), `modelName`,
/// `Hostname`, `GPU_I_PROFILE` and `GPU_I_ID` for a MIG instance, `DCGM_FI_DRIVER_VERSION`,
/// and `pod`, `namespace`, `container`. Each is read from the data point's attributes, else
/// the resource's; a missing or empty one is left out.
pub fn labels(point: &[KeyValue], resource: &[KeyValue]) -> Vec<Label> {
    let get = |key: &str| {
        attr_string(point, key)
            .filter(|v| !v.is_empty())
            .or_else(|| attr_string(resource, key).filter(|v| !v.is_empty()))
    };
    let gpu = get(semconv::HPCOTEL_GPU_INDEX);
    let device = gpu.as_ref().map(|g| format!("nvidia{g}"));
    let pairs = [
        ("gpu", gpu),
        (
            "UUID",
            get(semconv::HW_PARENT).or_else(|| get(semconv::HW_ID)),
        ),
        ("pci_bus_id", get(semconv::HPCOTEL_GPU_PCI_BUS_ID)),
        ("device", device),
        ("modelName", get(semconv::HW_MODEL)),
        // The node, as dcgm-exporter (NODE_NAME first): in a pod without hostNetwork,
        // host.name is the pod's name, which changes with every rollout.
        (
            "Hostname",
            get(semconv::K8S_NODE_NAME).or_else(|| get(semconv::HOST_NAME)),
        ),
        ("GPU_I_PROFILE", get(semconv::HPCOTEL_GPU_MIG_PROFILE)),
        ("GPU_I_ID", get(semconv::HPCOTEL_GPU_MIG_GPU_INSTANCE_ID)),
        ("DCGM_FI_DRIVER_VERSION", get(semconv::HW_DRIVER_VERSION)),
        ("pod", get(semconv::K8S_POD_NAME)),
        ("namespace", get(semconv::K8S_NAMESPACE_NAME)),
        ("container", get(semconv::K8S_CONTAINER_NAME)),
    ];
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
}

impl DcgmMapping {
    /// `value` in dcgm-exporter's unit, without the noise scaling adds in binary floating
    /// point (0.57 × 100 is 56.99999999999999; this gives 57): rounded to 15 significant
    /// digits, all a double holds reliably.
    pub fn convert(&self, value: f64) -> f64 {
        if self.scale == 1.0 || !value.is_finite() {
            return value;
        }
        let scaled = value * self.scale;
        format!("{scaled:.14e}").parse().unwrap_or(scaled)
    }

    /// The hpcotel side as written in the README: `hw.gpu.utilization{hw.gpu.task=general}`.
    pub fn source(&self) -> String {
        match self.filter {
            None => self.metric.to_owned(),
            Some((k, v)) => format!("{}{{{k}={v}}}", self.metric),
        }
    }

    /// The value conversion in words: `× 100 (fraction → %)`, `÷ 1048576 (bytes → MiB)`, ...
    pub fn conversion(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.unit)
        };
        if self.scale == 1.0 {
            format!("none{unit}")
        } else if self.scale == 100.0 {
            "× 100 (fraction → %)".to_owned()
        } else if self.scale == 1000.0 {
            "× 1000 (J → mJ)".to_owned()
        } else if self.scale == MIB {
            "÷ 1048576 (bytes → MiB)".to_owned()
        } else if self.scale == MHZ {
            "÷ 10⁶ (Hz → MHz)".to_owned()
        } else {
            format!("× {}{unit}", self.scale)
        }
    }
}

/// The README's migration table, in Markdown: dcgm-exporter name | hpcotel name |
/// conversion | type.
pub fn migration_table() -> String {
    let mut out = String::from(
        "| dcgm-exporter | hpcotel (OpenTelemetry) | conversion | type |\n|---|---|---|---|\n",
    );
    for m in DCGM_MAPPINGS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {} |",
            m.dcgm_name,
            m.source(),
            m.conversion(),
            m.prom_type.as_str()
        );
    }
    out
}
