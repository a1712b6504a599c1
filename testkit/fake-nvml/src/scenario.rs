//! The scripted machine a test writes as `nvml-scenario.json`.
//!
//! Every struct here rejects unknown fields and fills missing ones with their defaults, so a
//! test can write only what it cares about and a typo fails loudly at `nvmlInit` (which then
//! returns `NVML_ERROR_UNKNOWN` and prints the reason to stderr).

use serde::{Deserialize, Serialize};

/// `nvmlEventTypeSingleBitEccError`.
pub const EVENT_TYPE_SINGLE_BIT_ECC: u64 = 0x1;
/// `nvmlEventTypeDoubleBitEccError`.
pub const EVENT_TYPE_DOUBLE_BIT_ECC: u64 = 0x2;
/// `nvmlEventTypePState`.
pub const EVENT_TYPE_PSTATE: u64 = 0x4;
/// `nvmlEventTypeXidCriticalError`.
pub const EVENT_TYPE_XID: u64 = 0x8;
/// `nvmlEventTypeClock`.
pub const EVENT_TYPE_CLOCK: u64 = 0x10;
/// `nvmlEventTypePowerSourceChange`.
pub const EVENT_TYPE_POWER_SOURCE: u64 = 0x80;
/// Every event type the fake supports (what `nvmlDeviceGetSupportedEventTypes` reports).
pub const EVENT_TYPES_SUPPORTED: u64 = EVENT_TYPE_SINGLE_BIT_ECC
    | EVENT_TYPE_DOUBLE_BIT_ECC
    | EVENT_TYPE_PSTATE
    | EVENT_TYPE_XID
    | EVENT_TYPE_CLOCK
    | EVENT_TYPE_POWER_SOURCE;

/// `nvmlClocksThrottleReasonGpuIdle`.
pub const THROTTLE_GPU_IDLE: u64 = 0x1;
/// `nvmlClocksThrottleReasonApplicationsClocksSetting`.
pub const THROTTLE_APPLICATIONS_CLOCKS_SETTING: u64 = 0x2;
/// `nvmlClocksThrottleReasonSwPowerCap`.
pub const THROTTLE_SW_POWER_CAP: u64 = 0x4;
/// `nvmlClocksThrottleReasonHwSlowdown`.
pub const THROTTLE_HW_SLOWDOWN: u64 = 0x8;
/// `nvmlClocksThrottleReasonSyncBoost`.
pub const THROTTLE_SYNC_BOOST: u64 = 0x10;
/// `nvmlClocksThrottleReasonSwThermalSlowdown`.
pub const THROTTLE_SW_THERMAL_SLOWDOWN: u64 = 0x20;
/// `nvmlClocksThrottleReasonHwThermalSlowdown`.
pub const THROTTLE_HW_THERMAL_SLOWDOWN: u64 = 0x40;
/// `nvmlClocksThrottleReasonHwPowerBrakeSlowdown`.
pub const THROTTLE_HW_POWER_BRAKE_SLOWDOWN: u64 = 0x80;
/// `nvmlClocksThrottleReasonDisplayClockSetting`.
pub const THROTTLE_DISPLAY_CLOCK_SETTING: u64 = 0x100;

/// The names `Device::unsupported` accepts. A call answers `NVML_ERROR_NOT_SUPPORTED` when a
/// scenario field it reads is listed (see the crate docs for the call → name table).
pub const UNSUPPORTED_NAMES: &[&str] = &[
    "uuid",
    "name",
    "serial",
    "index",
    "minor",
    "pci_bus_id",
    "utilization_gpu",
    "utilization_memory",
    "encoder_utilization",
    "decoder_utilization",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_reserved_bytes",
    "bar1_total_bytes",
    "bar1_used_bytes",
    "power_mw",
    "power_instant",
    "power_limit_mw",
    "energy_mj",
    "temperature_c",
    "memory_temperature_c",
    "clock_graphics_mhz",
    "clock_sm_mhz",
    "clock_memory_mhz",
    "throttle_reasons",
    "pstate",
    "pcie_tx_kbps",
    "pcie_rx_kbps",
    "pcie_link_gen",
    "pcie_link_width",
    "pcie_replay",
    "nvlink_tx_kib",
    "nvlink_rx_kib",
    "nvlink_crc_flit_errors",
    "nvlink_crc_data_errors",
    "nvlink_replay_errors",
    "nvlink_recovery_errors",
    "ecc_corrected",
    "ecc_uncorrected",
    "retired_pages_single_bit",
    "retired_pages_double_bit",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remap_pending",
    "remap_failure",
    "fan_speeds_percent",
    "processes",
    "process_utilization",
    "mig_instances",
    "events",
];

/// A sampled number: a constant, or a script indexed by how many times this field has been
/// read on this device (read `k` returns `seq[min(k, len - 1)]`; an empty script reads 0).
///
/// In JSON: `42` or `[10, 10, 95, 95, 10]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// The same value on every read.
    Const(u64),
    /// One value per read; the last one repeats.
    Seq(Vec<u64>),
}

impl Value {
    /// The value of read number `k` (0-based).
    pub fn at(&self, k: u64) -> u64 {
        match self {
            Value::Const(v) => *v,
            Value::Seq(seq) => {
                let i = usize::try_from(k).unwrap_or(usize::MAX);
                seq.get(i).or(seq.last()).copied().unwrap_or(0)
            }
        }
    }
}

impl Default for Value {
    fn default() -> Self {
        Value::Const(0)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Const(v)
    }
}

impl From<Vec<u64>> for Value {
    fn from(seq: Vec<u64>) -> Self {
        Value::Seq(seq)
    }
}

impl<const N: usize> From<[u64; N]> for Value {
    fn from(seq: [u64; N]) -> Self {
        Value::Seq(seq.to_vec())
    }
}

/// The whole scripted machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// `nvmlSystemGetDriverVersion`. At or above 580.82 nvml-wrapper renumbers field ids
    /// 251..=273 (none of which the fake serves).
    pub driver_version: String,
    /// `nvmlSystemGetNVMLVersion`.
    pub nvml_version: String,
    /// When set (and non-zero), `nvmlInit` fails with this NVML return code, e.g. 9
    /// (`NVML_ERROR_DRIVER_NOT_LOADED`). Read at each `nvmlInit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_error: Option<u32>,
    /// The GPUs; a device's index is its position.
    pub devices: Vec<Device>,
    /// Events, append-only: identity is the position, each is delivered once per event set.
    pub events: Vec<Event>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            driver_version: "550.54.15".to_owned(),
            nvml_version: "12.550.54.15".to_owned(),
            init_error: None,
            devices: Vec::new(),
            events: Vec::new(),
        }
    }
}

impl Scenario {
    /// A machine with `n` distinct H100-like GPUs ([`Device::sample`]) and no events.
    pub fn with_gpus(n: u32) -> Scenario {
        Scenario {
            devices: (0..n).map(Device::sample).collect(),
            ..Scenario::default()
        }
    }

    /// Parses and [validates](Scenario::validate) a scenario.
    pub fn from_json(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_json::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing these plain data types cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks what serde cannot: `unsupported` names, event GPU indices, MIG ids.
    pub fn validate(&self) -> Result<(), String> {
        for (i, d) in self.devices.iter().enumerate() {
            for name in &d.unsupported {
                if !UNSUPPORTED_NAMES.contains(&name.as_str()) {
                    return Err(format!(
                        "devices[{i}].unsupported: unknown name {name:?} (known: {})",
                        UNSUPPORTED_NAMES.join(", ")
                    ));
                }
            }
            if d.mig_instances.len() > 4000 {
                return Err(format!("devices[{i}]: too many MIG instances"));
            }
        }
        if self.devices.len() > 0xFFFF {
            return Err("too many devices".to_owned());
        }
        for (i, e) in self.events.iter().enumerate() {
            if e.gpu as usize >= self.devices.len() {
                return Err(format!(
                    "events[{i}].gpu = {} but there are {} devices",
                    e.gpu,
                    self.devices.len()
                ));
            }
        }
        Ok(())
    }
}

/// One GPU. Every sampled number is a [`Value`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Device {
    /// `nvmlDeviceGetUUID`, e.g. `GPU-8e1c6f0a-4b2d-7a10-9c3e-5f2a7b3c1d00`.
    pub uuid: String,
    /// `nvmlDeviceGetName`.
    pub name: String,
    /// `nvmlDeviceGetSerial`.
    pub serial: String,
    /// `nvmlDeviceGetMinorNumber`: the device minor number (`/dev/nvidia<minor>`, what
    /// NVIDIA's DRA driver names the GPU by: `gpu-<minor>`); `None` reads as the device's
    /// index, as on most real machines. [`Device::sample`] sets one that differs from the
    /// index. Real minors are distinct per node; the fake does not check. `NOT_SUPPORTED` on
    /// MIG devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
    /// `nvmlDeviceGetPciInfo_v3` bus id, `DDDDDDDD:BB:DD.F` (hex); domain/bus/device are parsed
    /// from it.
    pub pci_bus_id: String,
    /// `nvmlDeviceGetUtilizationRates().gpu`, percent.
    pub utilization_gpu: Value,
    /// `nvmlDeviceGetUtilizationRates().memory`, percent.
    pub utilization_memory: Value,
    /// `nvmlDeviceGetEncoderUtilization`, percent.
    pub encoder_utilization: Value,
    /// `nvmlDeviceGetDecoderUtilization`, percent.
    pub decoder_utilization: Value,
    /// Frame buffer size.
    pub memory_total_bytes: u64,
    /// Frame buffer used (v2 semantics: excludes reserved).
    pub memory_used_bytes: Value,
    /// Frame buffer reserved by the driver; free = total - used - reserved.
    pub memory_reserved_bytes: u64,
    /// BAR1 size.
    pub bar1_total_bytes: u64,
    /// BAR1 used; free = total - used.
    pub bar1_used_bytes: Value,
    /// `nvmlDeviceGetPowerUsage` and field `NVML_FI_DEV_POWER_INSTANT` (186, scopeId 0 = GPU),
    /// milliwatts. Both share one read counter, so a script advances on whichever of the two
    /// the caller uses. Listing `power_mw` in `unsupported` disables both; `power_instant`
    /// disables only the field. Field scopeId 1 (module: GPU + Grace CPU) answers
    /// `NOT_SUPPORTED` as on a non-Grace host, other scopes `INVALID_ARGUMENT`.
    pub power_mw: Value,
    /// `nvmlDeviceGetEnforcedPowerLimit`, milliwatts.
    pub power_limit_mw: Value,
    /// `nvmlDeviceGetTotalEnergyConsumption`, millijoules.
    pub energy_mj: Value,
    /// `nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)`, °C.
    pub temperature_c: Value,
    /// Field `NVML_FI_DEV_MEMORY_TEMP` (82), °C.
    pub memory_temperature_c: Value,
    /// `nvmlDeviceGetClockInfo(NVML_CLOCK_GRAPHICS)`, MHz.
    pub clock_graphics_mhz: Value,
    /// `nvmlDeviceGetClockInfo(NVML_CLOCK_SM)`, MHz.
    pub clock_sm_mhz: Value,
    /// `nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)`, MHz.
    pub clock_memory_mhz: Value,
    /// `nvmlDeviceGetCurrentClocksThrottleReasons`: a bitmask of the `THROTTLE_*` constants.
    pub throttle_reasons: Value,
    /// `nvmlDeviceGetPerformanceState`, 0..=15 (32 = unknown).
    pub pstate: Value,
    /// `nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_TX_BYTES)`, KB/s.
    pub pcie_tx_kbps: Value,
    /// `nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_RX_BYTES)`, KB/s.
    pub pcie_rx_kbps: Value,
    /// `nvmlDeviceGetCurrPcieLinkGeneration`.
    pub pcie_link_gen: Value,
    /// `nvmlDeviceGetCurrPcieLinkWidth`.
    pub pcie_link_width: Value,
    /// `nvmlDeviceGetPcieReplayCounter`.
    pub pcie_replay: Value,
    /// Field `NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX` (138), KiB, cumulative, summed over all
    /// links: what scopeId `0xFFFFFFFF` (UINT_MAX) reads. See [`Device::nvlink_links`] for
    /// the per-link scopes.
    pub nvlink_tx_kib: Value,
    /// Field `NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX` (139), KiB, cumulative, summed over all
    /// links; as [`Device::nvlink_tx_kib`].
    pub nvlink_rx_kib: Value,
    /// How many NVLink links the GPU has (18 on an H100 SXM). Fields 138/139 take the link
    /// in `scopeId`: `0xFFFFFFFF` reads the total, a link `< nvlink_links` reads
    /// `total / nvlink_links` (integer division, so the links may sum to a little less than
    /// the total), any other scope answers `NVML_ERROR_INVALID_ARGUMENT` in its entry.
    /// 0 means no NVLink: both fields answer `NOT_SUPPORTED` whatever the scope. Every
    /// entry that yields a value counts one read of the field's script, whatever its
    /// scope; entries that fail count none.
    pub nvlink_links: u32,
    /// Field `NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL` (38).
    pub nvlink_crc_flit_errors: Value,
    /// Field `NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL` (45).
    pub nvlink_crc_data_errors: Value,
    /// Field `NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL` (52).
    pub nvlink_replay_errors: Value,
    /// Field `NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL` (59).
    pub nvlink_recovery_errors: Value,
    /// `nvmlDeviceGetTotalEccErrors(CORRECTED, *)` and field `NVML_FI_DEV_ECC_SBE_VOL_TOTAL` (3).
    pub ecc_corrected: Value,
    /// `nvmlDeviceGetTotalEccErrors(UNCORRECTED, *)` and field `NVML_FI_DEV_ECC_DBE_VOL_TOTAL` (4).
    pub ecc_uncorrected: Value,
    /// Number of pages `nvmlDeviceGetRetiredPages_v2(MULTIPLE_SINGLE_BIT_ECC_ERRORS)` lists.
    pub retired_pages_single_bit: Value,
    /// Number of pages `nvmlDeviceGetRetiredPages_v2(DOUBLE_BIT_ECC_ERROR)` lists.
    pub retired_pages_double_bit: Value,
    /// Field `NVML_FI_DEV_REMAPPED_COR` (142) and `nvmlDeviceGetRemappedRows`.
    pub remapped_rows_correctable: Value,
    /// Field `NVML_FI_DEV_REMAPPED_UNC` (143) and `nvmlDeviceGetRemappedRows`.
    pub remapped_rows_uncorrectable: Value,
    /// Field `NVML_FI_DEV_REMAPPED_PENDING` (144) and `nvmlDeviceGetRemappedRows`.
    pub remap_pending: bool,
    /// Field `NVML_FI_DEV_REMAPPED_FAILURE` (145) and `nvmlDeviceGetRemappedRows`.
    pub remap_failure: bool,
    /// One entry per fan (`nvmlDeviceGetNumFans`, `nvmlDeviceGetFanSpeed_v2`), percent.
    pub fan_speeds_percent: Vec<Value>,
    /// Compute processes on the whole GPU (not in a MIG instance).
    pub processes: Vec<Process>,
    /// MIG devices; MIG mode is on when non-empty.
    pub mig_instances: Vec<MigInstance>,
    /// What `nvmlDeviceGetMaxMigDeviceCount` reports while MIG is on; `None` = 7 (A100/H100).
    /// Never less than the number of instances; indices past the instances are `NOT_FOUND`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_max_devices: Option<u32>,
    /// The GPU fell off the bus: every call on it (and its MIG devices), including getting
    /// its handle, returns `NVML_ERROR_GPU_IS_LOST` (15). Its pending events still deliver.
    pub lost: bool,
    /// Names (from [`UNSUPPORTED_NAMES`]: the field names above plus `power_instant`,
    /// `process_utilization` and `events`) whose calls return `NVML_ERROR_NOT_SUPPORTED` (3).
    pub unsupported: Vec<String>,
}

impl Device {
    /// A plausible H100 SXM at `index`, with every value distinct per index: strings carry
    /// the index and every number is offset by it. Its minor number is `index ^ 1` (0↔1,
    /// 2↔3, …): never its index, so a test tells the two apart, and a permutation of
    /// `0..n` for an even number of GPUs, as on a real node whose minors are not in NVML
    /// (PCI) order.
    pub fn sample(index: u32) -> Device {
        let i = u64::from(index);
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        const BUSES: [u32; 8] = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];
        let bus = BUSES
            .get(index as usize)
            .copied()
            .unwrap_or(0x20 + (index % 0xc0));
        let pct = |base: u64| Value::Const((base + i).min(100));
        Device {
            uuid: format!(
                "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                0x8e1c_6f0a_u64 + i,
                (0x4b2d + i) & 0xffff,
                (0x7a10 + i) & 0xffff,
                (0x9c3e + i) & 0xffff,
                0x5f2a_7b3c_1d00_u64 + i
            ),
            name: format!("NVIDIA H100 80GB HBM3 #{index}"),
            serial: format!("165292{:07}", 1000 + i),
            minor: Some(index ^ 1),
            pci_bus_id: format!("00000000:{bus:02X}:00.0"),
            utilization_gpu: pct(40),
            utilization_memory: pct(20),
            encoder_utilization: pct(1),
            decoder_utilization: pct(2),
            memory_total_bytes: 85_520_809_984 + i * MIB,
            memory_used_bytes: Value::Const(10 * GIB + i * GIB),
            memory_reserved_bytes: 527_433_728 + i * MIB,
            bar1_total_bytes: 128 * GIB + i * MIB,
            bar1_used_bytes: Value::Const(8 * MIB + i * MIB),
            power_mw: Value::Const(250_000 + i * 1_000),
            power_limit_mw: Value::Const(700_000 + i * 1_000),
            energy_mj: Value::Const(1_000_000_000 + i * 1_000_000),
            temperature_c: Value::Const(40 + i),
            memory_temperature_c: Value::Const(50 + i),
            clock_graphics_mhz: Value::Const(1755 + i),
            clock_sm_mhz: Value::Const(1740 + i),
            clock_memory_mhz: Value::Const(2619 + i),
            throttle_reasons: Value::Const(i),
            pstate: Value::Const(i % 16),
            pcie_tx_kbps: Value::Const(1_000 + i),
            pcie_rx_kbps: Value::Const(2_000 + i),
            pcie_link_gen: Value::Const(5 - i % 4),
            pcie_link_width: Value::Const(16 - i % 16),
            pcie_replay: Value::Const(i),
            nvlink_tx_kib: Value::Const(1_000_000 + i * 1_000),
            nvlink_rx_kib: Value::Const(2_000_000 + i * 1_000),
            nvlink_links: 18,
            nvlink_crc_flit_errors: Value::Const(10 + i),
            nvlink_crc_data_errors: Value::Const(20 + i),
            nvlink_replay_errors: Value::Const(30 + i),
            nvlink_recovery_errors: Value::Const(40 + i),
            ecc_corrected: Value::Const(100 + i),
            ecc_uncorrected: Value::Const(i),
            retired_pages_single_bit: Value::Const(1 + i),
            retired_pages_double_bit: Value::Const(i),
            remapped_rows_correctable: Value::Const(2 + i),
            remapped_rows_uncorrectable: Value::Const(i),
            remap_pending: false,
            remap_failure: false,
            fan_speeds_percent: vec![Value::Const(30 + i), Value::Const(35 + i)],
            processes: vec![Process {
                pid: 10_000 + index,
                used_memory_bytes: GIB + i * MIB,
                sm_util: 30 + index,
                mem_util: 10 + index,
                enc_util: index,
                dec_util: 1 + index,
            }],
            mig_instances: Vec::new(),
            mig_max_devices: None,
            lost: false,
            unsupported: Vec::new(),
        }
    }
}

/// A compute process (`nvmlDeviceGetComputeRunningProcesses_v3`,
/// `nvmlDeviceGetProcessUtilization`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Used GPU memory; `u64::MAX` reads as `NVML_VALUE_NOT_AVAILABLE`.
    pub used_memory_bytes: u64,
    /// SM utilization, percent.
    pub sm_util: u32,
    /// Frame buffer utilization, percent.
    pub mem_util: u32,
    /// Encoder utilization, percent.
    pub enc_util: u32,
    /// Decoder utilization, percent.
    pub dec_util: u32,
}

/// A MIG device (GPU instance + compute instance) of its parent [`Device`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigInstance {
    /// `MIG-…` UUID (also accepted by `nvmlDeviceGetHandleByUUID`).
    pub uuid: String,
    /// e.g. `NVIDIA A100-SXM4-40GB MIG 1g.5gb`.
    pub name: String,
    /// `nvmlDeviceGetGpuInstanceId`.
    pub gpu_instance_id: u32,
    /// `nvmlDeviceGetComputeInstanceId`.
    pub compute_instance_id: u32,
    /// The instance's memory size.
    pub memory_total_bytes: u64,
    /// The instance's used memory.
    pub memory_used_bytes: Value,
    /// Compute processes in this instance (reported with its GI/CI ids).
    pub processes: Vec<Process>,
}

impl MigInstance {
    /// A plausible H100 `1g.10gb` instance `mig` of GPU `parent`, distinct per (parent, mig).
    pub fn sample(parent: u32, mig: u32) -> MigInstance {
        let (p, m) = (u64::from(parent), u64::from(mig));
        const MIB: u64 = 1 << 20;
        MigInstance {
            uuid: format!(
                "MIG-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                0x3f7a_9c21_u64 + p,
                (0x51e0 + m) & 0xffff,
                (0x6b42 + p) & 0xffff,
                (0x8d13 + m) & 0xffff,
                0x2c4e_6a8b_0000_u64 + (p << 8) + m
            ),
            name: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".to_owned(),
            gpu_instance_id: 9 + mig,
            compute_instance_id: 0,
            memory_total_bytes: 9_856 * MIB,
            memory_used_bytes: Value::Const(100 * MIB + p * MIB + m),
            processes: vec![Process {
                pid: 20_000 + parent * 100 + mig,
                used_memory_bytes: 64 * MIB + m * MIB,
                sm_util: 5 + mig,
                mem_util: 3 + mig,
                enc_util: 0,
                dec_util: 0,
            }],
        }
    }
}

/// A scripted NVML event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Event {
    /// Index of the GPU it happens on.
    pub gpu: u32,
    /// The event type.
    pub kind: EventKind,
    /// `eventData`: the XID for `xid`, otherwise free-form.
    pub data: u64,
    /// GPU instance id (MIG); the event's device is the MIG device with this id when there
    /// is one, else the GPU. `None` reads as 0xFFFFFFFF, as in NVML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id (MIG); `None` reads as 0xFFFFFFFF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_instance_id: Option<u32>,
}

impl Event {
    /// An XID critical error `xid` on GPU `gpu`.
    pub fn xid(gpu: u32, xid: u64) -> Event {
        Event {
            gpu,
            kind: EventKind::Xid,
            data: xid,
            ..Event::default()
        }
    }
}

/// NVML event types the fake can deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `nvmlEventTypeXidCriticalError` (0x8).
    #[default]
    Xid,
    /// `nvmlEventTypeSingleBitEccError` (0x1).
    SingleBitEcc,
    /// `nvmlEventTypeDoubleBitEccError` (0x2).
    DoubleBitEcc,
    /// `nvmlEventTypePState` (0x4).
    Pstate,
    /// `nvmlEventTypeClock` (0x10).
    Clock,
    /// `nvmlEventTypePowerSourceChange` (0x80).
    PowerSource,
}

impl EventKind {
    /// The `nvmlEventType*` bit.
    pub fn mask(self) -> u64 {
        match self {
            EventKind::Xid => EVENT_TYPE_XID,
            EventKind::SingleBitEcc => EVENT_TYPE_SINGLE_BIT_ECC,
            EventKind::DoubleBitEcc => EVENT_TYPE_DOUBLE_BIT_ECC,
            EventKind::Pstate => EVENT_TYPE_PSTATE,
            EventKind::Clock => EVENT_TYPE_CLOCK,
            EventKind::PowerSource => EVENT_TYPE_POWER_SOURCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_sequence_repeats_last() {
        let v = Value::from([1, 2, 3]);
        assert_eq!((0..5).map(|k| v.at(k)).collect::<Vec<_>>(), [1, 2, 3, 3, 3]);
        assert_eq!(Value::Seq(vec![]).at(3), 0);
        assert_eq!(Value::Const(7).at(100), 7);
    }

    #[test]
    fn json_round_trip_and_shapes() {
        let mut s = Scenario::with_gpus(2);
        s.devices[1].power_mw = Value::from([100, 200]);
        s.devices[0].mig_instances.push(MigInstance::sample(0, 0));
        s.events.push(Event::xid(1, 79));
        let back = Scenario::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);

        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["devices"][1]["power_mw"], serde_json::json!([100, 200]));
        assert_eq!(v["devices"][0]["power_mw"], serde_json::json!(250_000));
        assert_eq!(v["events"][0]["kind"], "xid");
    }

    #[test]
    fn defaults_unknown_fields_and_names() {
        let s = Scenario::from_json(r#"{"devices": [{"uuid": "GPU-x"}]}"#).unwrap();
        assert_eq!(s.driver_version, "550.54.15");
        assert_eq!(s.devices[0].uuid, "GPU-x");
        assert_eq!(
            s.devices[0].minor, None,
            "a default device's minor is its index"
        );
        assert_eq!(
            s.devices[0].nvlink_links, 0,
            "a default device has no NVLink"
        );
        assert_eq!(Device::sample(3).nvlink_links, 18);
        assert!(
            Scenario::from_json(r#"{"devices": [{"unsupported": ["power_instant"]}]}"#).is_ok()
        );
        assert!(Scenario::from_json(r#"{"devices": [{"uuidd": "x"}]}"#).is_err());
        let err =
            Scenario::from_json(r#"{"devices": [{"unsupported": ["fan_speed"]}]}"#).unwrap_err();
        assert!(err.contains("fan_speed"), "{err}");
        assert!(Scenario::from_json(r#"{"events": [{"gpu": 0, "kind": "xid"}]}"#).is_err());
    }

    #[test]
    fn samples_are_distinct() {
        let a = Device::sample(0);
        let b = Device::sample(1);
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.name, b.name);
        assert_ne!(a.serial, b.serial);
        assert_ne!(a.pci_bus_id, b.pci_bus_id);
        assert_eq!(
            (a.minor, b.minor),
            (Some(1), Some(0)),
            "minors swap in pairs"
        );
        assert!((0..64).all(|i| Device::sample(i).minor != Some(i)));
        assert_eq!(
            a.uuid.len(),
            "GPU-8e1c6f0a-4b2d-7a10-9c3e-5f2a7b3c1d00".len()
        );
    }
}
