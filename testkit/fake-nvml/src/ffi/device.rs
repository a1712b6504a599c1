//! Per-device queries.
//!
//! On MIG device handles only UUID, name, memory info, running processes, the GPU/compute
//! instance ids, `nvmlDeviceIsMigDeviceHandle` and the parent lookup work; everything else
//! answers `NVML_ERROR_NOT_SUPPORTED`, as real NVML does for utilization.

use std::ffi::{c_char, c_void};

use super::{
    Bar1Memory, FieldValue, FieldValueUnion, MEMORY_V2_VERSION, Memory, MemoryV2, NO_ID, Out,
    PciInfo, ProcessInfo, ProcessUtilizationSample, Utilization, VALUE_TYPE_UINT, VALUE_TYPE_ULL,
    api, now_us, write_slice, write_str,
};
use crate::scenario::{Device, EVENT_TYPES_SUPPORTED, MigInstance, Process, Value};
use crate::state::{
    ARGUMENT_VERSION_MISMATCH, Call, INSUFFICIENT_SIZE, INVALID_ARGUMENT, NOT_FOUND, NOT_SUPPORTED,
    Target, lock,
};

/// Resolves `device`, runs `f` and writes its result to `out`.
///
/// # Safety
///
/// `out` is null or valid for a write of `T`.
unsafe fn getter<T>(
    device: *mut c_void,
    out: *mut T,
    f: impl FnOnce(&mut Call<'_>) -> Result<T, u32>,
) -> u32 {
    api(|| {
        // SAFETY: forwarded from this function's contract.
        let out = unsafe { Out::new(out) }?;
        let mut st = lock();
        let mut call = st.device(device)?;
        out.set(f(&mut call)?);
        Ok(())
    })
}

/// Like [`getter`] for string queries.
///
/// # Safety
///
/// `buf` is null or valid for writes of `length` bytes.
unsafe fn string_getter(
    device: *mut c_void,
    buf: *mut c_char,
    length: u32,
    f: impl FnOnce(&Call<'_>) -> Result<String, u32>,
) -> u32 {
    api(|| {
        if buf.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mut st = lock();
        let call = st.device(device)?;
        let s = f(&call)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { write_str(buf, length, &s) }
    })
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// `nvmlDeviceGetUUID` (GPU or MIG device).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut c_void,
    uuid: *mut c_char,
    length: u32,
) -> u32 {
    // SAFETY: NVML contract for `uuid`/`length`.
    unsafe {
        string_getter(device, uuid, length, |c| {
            c.check(&["uuid"])?;
            Ok(c.mig.map_or(&c.dev.uuid, |m| &m.uuid).clone())
        })
    }
}

/// `nvmlDeviceGetName` (GPU or MIG device).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: *mut c_void,
    name: *mut c_char,
    length: u32,
) -> u32 {
    // SAFETY: NVML contract for `name`/`length`.
    unsafe {
        string_getter(device, name, length, |c| {
            c.check(&["name"])?;
            Ok(c.mig.map_or(&c.dev.name, |m| &m.name).clone())
        })
    }
}

/// `nvmlDeviceGetSerial`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSerial(
    device: *mut c_void,
    serial: *mut c_char,
    length: u32,
) -> u32 {
    // SAFETY: NVML contract for `serial`/`length`.
    unsafe {
        string_getter(device, serial, length, |c| {
            let dev = c.gpu_only()?;
            c.check(&["serial"])?;
            Ok(dev.serial.clone())
        })
    }
}

/// `nvmlDeviceGetIndex`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: *mut c_void, index: *mut u32) -> u32 {
    // SAFETY: NVML contract for `index`.
    unsafe {
        getter(device, index, |c| {
            c.gpu_only()?;
            c.check(&["index"])?;
            Ok(c.t.gpu)
        })
    }
}

/// `nvmlDeviceGetMinorNumber`: the scripted `minor`, else the index (`NOT_SUPPORTED` on MIG
/// devices).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(
    device: *mut c_void,
    minor_number: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `minor_number`.
    unsafe {
        getter(device, minor_number, |c| {
            let dev = c.gpu_only()?;
            c.check(&["minor"])?;
            Ok(dev.minor.unwrap_or(c.t.gpu))
        })
    }
}

/// Parses `DDDDDDDD:BB:DD.F` (hex) into (domain, bus, device, function); zeros when malformed.
fn parse_bus_id(id: &str) -> (u32, u32, u32, u32) {
    let parse = || -> Option<(u32, u32, u32, u32)> {
        let mut parts = id.split(':');
        let domain = u32::from_str_radix(parts.next()?, 16).ok()?;
        let bus = u32::from_str_radix(parts.next()?, 16).ok()?;
        let (dev, func) = parts.next()?.split_once('.')?;
        Some((
            domain,
            bus,
            u32::from_str_radix(dev, 16).ok()?,
            u32::from_str_radix(func, 16).ok()?,
        ))
    };
    parse().unwrap_or_default()
}

fn c_chars<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *o = b as c_char;
    }
    out
}

/// `nvmlDeviceGetPciInfo_v3`: domain/bus/device parsed from `pci_bus_id`; H100 SXM ids.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: *mut c_void, pci: *mut PciInfo) -> u32 {
    // SAFETY: NVML contract for `pci`.
    unsafe {
        getter(device, pci, |c| {
            let dev = c.gpu_only()?;
            c.check(&["pci_bus_id"])?;
            let (domain, bus, device, func) = parse_bus_id(&dev.pci_bus_id);
            Ok(PciInfo {
                bus_id_legacy: c_chars(&format!("{domain:04X}:{bus:02X}:{device:02X}.{func:X}")),
                domain,
                bus,
                device,
                pci_device_id: 0x2330_10DE,
                pci_sub_system_id: 0x16C1_10DE,
                bus_id: c_chars(&dev.pci_bus_id),
            })
        })
    }
}

/// `nvmlDeviceGetUtilizationRates` (`NOT_SUPPORTED` on MIG devices).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: *mut c_void,
    utilization: *mut Utilization,
) -> u32 {
    // SAFETY: NVML contract for `utilization`.
    unsafe {
        getter(device, utilization, |c| {
            let dev = c.gpu_only()?;
            c.check(&["utilization_gpu", "utilization_memory"])?;
            Ok(Utilization {
                gpu: to_u32(c.read("utilization_gpu", 0, &dev.utilization_gpu)),
                memory: to_u32(c.read("utilization_memory", 0, &dev.utilization_memory)),
            })
        })
    }
}

/// Encoder/decoder utilization with a 1 s sampling period.
///
/// # Safety
///
/// Both pointers are null or valid for writes.
unsafe fn codec_utilization(
    device: *mut c_void,
    utilization: *mut u32,
    period_us: *mut u32,
    name: &'static str,
    pick: fn(&Device) -> &Value,
) -> u32 {
    api(|| {
        // SAFETY: forwarded from this function's contract.
        let (util, period) = unsafe { (Out::new(utilization)?, Out::new(period_us)?) };
        let mut st = lock();
        let mut c = st.device(device)?;
        let dev = c.dev;
        let v = c.field(name, pick(dev))?;
        util.set(to_u32(v));
        period.set(1_000_000);
        Ok(())
    })
}

/// `nvmlDeviceGetEncoderUtilization`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEncoderUtilization(
    device: *mut c_void,
    utilization: *mut u32,
    sampling_period_us: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for both out-pointers.
    unsafe {
        codec_utilization(
            device,
            utilization,
            sampling_period_us,
            "encoder_utilization",
            |d| &d.encoder_utilization,
        )
    }
}

/// `nvmlDeviceGetDecoderUtilization`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDecoderUtilization(
    device: *mut c_void,
    utilization: *mut u32,
    sampling_period_us: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for both out-pointers.
    unsafe {
        codec_utilization(
            device,
            utilization,
            sampling_period_us,
            "decoder_utilization",
            |d| &d.decoder_utilization,
        )
    }
}

/// (total, reserved, used) of a GPU or MIG device, counting one read of "used".
fn memory(c: &mut Call<'_>) -> Result<(u64, u64, u64), u32> {
    c.check(&[
        "memory_total_bytes",
        "memory_used_bytes",
        "memory_reserved_bytes",
    ])?;
    Ok(match c.mig {
        Some(m) => (
            m.memory_total_bytes,
            0,
            c.read("memory_used_bytes", 0, &m.memory_used_bytes),
        ),
        None => {
            let dev = c.dev;
            (
                dev.memory_total_bytes,
                dev.memory_reserved_bytes,
                c.read("memory_used_bytes", 0, &dev.memory_used_bytes),
            )
        }
    })
}

/// `nvmlDeviceGetMemoryInfo` (v1: `used` includes the reserved memory).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: *mut c_void,
    memory_out: *mut Memory,
) -> u32 {
    // SAFETY: NVML contract for `memory_out`.
    unsafe {
        getter(device, memory_out, |c| {
            let (total, reserved, used) = memory(c)?;
            let used = used.saturating_add(reserved);
            Ok(Memory {
                total,
                free: total.saturating_sub(used),
                used,
            })
        })
    }
}

/// `nvmlDeviceGetMemoryInfo_v2`: checks `version` like NVML (`ARGUMENT_VERSION_MISMATCH`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: *mut c_void,
    memory_out: *mut MemoryV2,
) -> u32 {
    if !memory_out.is_null() {
        // SAFETY: NVML contract: a non-null pointer is a caller-initialized `nvmlMemory_v2_t`.
        let version = unsafe { std::ptr::addr_of!((*memory_out).version).read() };
        if version != MEMORY_V2_VERSION {
            return ARGUMENT_VERSION_MISMATCH;
        }
    }
    // SAFETY: NVML contract for `memory_out`.
    unsafe {
        getter(device, memory_out, |c| {
            let (total, reserved, used) = memory(c)?;
            Ok(MemoryV2 {
                version: MEMORY_V2_VERSION,
                total,
                reserved,
                free: total.saturating_sub(used).saturating_sub(reserved),
                used,
            })
        })
    }
}

/// `nvmlDeviceGetBAR1MemoryInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetBAR1MemoryInfo(
    device: *mut c_void,
    bar1: *mut Bar1Memory,
) -> u32 {
    // SAFETY: NVML contract for `bar1`.
    unsafe {
        getter(device, bar1, |c| {
            let dev = c.gpu_only()?;
            c.check(&["bar1_total_bytes"])?;
            let used = c.field("bar1_used_bytes", &dev.bar1_used_bytes)?;
            Ok(Bar1Memory {
                total: dev.bar1_total_bytes,
                free: dev.bar1_total_bytes.saturating_sub(used),
                used,
            })
        })
    }
}

/// `nvmlDeviceGetPowerUsage`, mW. Shares the `power_mw` read counter with field
/// `NVML_FI_DEV_POWER_INSTANT` (186).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: *mut c_void, power: *mut u32) -> u32 {
    // SAFETY: NVML contract for `power`.
    unsafe {
        getter(device, power, |c| {
            let dev = c.dev;
            c.field("power_mw", &dev.power_mw).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetEnforcedPowerLimit`, mW.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: *mut c_void,
    limit: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `limit`.
    unsafe {
        getter(device, limit, |c| {
            let dev = c.dev;
            c.field("power_limit_mw", &dev.power_limit_mw).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetTotalEnergyConsumption`, mJ.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: *mut c_void,
    energy: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for `energy`.
    unsafe {
        getter(device, energy, |c| {
            let dev = c.dev;
            c.field("energy_mj", &dev.energy_mj)
        })
    }
}

/// `nvmlDeviceGetTemperature`: only `NVML_TEMPERATURE_GPU` (0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: *mut c_void,
    sensor: u32,
    temp: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `temp`.
    unsafe {
        getter(device, temp, |c| {
            if sensor != 0 {
                return Err(INVALID_ARGUMENT);
            }
            let dev = c.dev;
            c.field("temperature_c", &dev.temperature_c).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetClockInfo`: graphics (0), SM (1), memory (2); video (3) is `NOT_SUPPORTED`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: *mut c_void,
    clock_type: u32,
    clock: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `clock`.
    unsafe {
        getter(device, clock, |c| {
            let dev = c.dev;
            let (name, v) = match clock_type {
                0 => ("clock_graphics_mhz", &dev.clock_graphics_mhz),
                1 => ("clock_sm_mhz", &dev.clock_sm_mhz),
                2 => ("clock_memory_mhz", &dev.clock_memory_mhz),
                3 => return Err(NOT_SUPPORTED),
                _ => return Err(INVALID_ARGUMENT),
            };
            c.field(name, v).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetCurrentClocksThrottleReasons`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: *mut c_void,
    reasons: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for `reasons`.
    unsafe { throttle_reasons(device, reasons) }
}

/// Shared body of the two throttle/event reason names.
///
/// # Safety
///
/// `reasons` is null or valid for a write.
unsafe fn throttle_reasons(device: *mut c_void, reasons: *mut u64) -> u32 {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        getter(device, reasons, |c| {
            let dev = c.dev;
            c.field("throttle_reasons", &dev.throttle_reasons)
        })
    }
}

/// `nvmlDeviceGetCurrentClocksEventReasons` (the newer name of the throttle reasons).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrentClocksEventReasons(
    device: *mut c_void,
    reasons: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for `reasons`.
    unsafe { throttle_reasons(device, reasons) }
}

/// `nvmlDeviceGetPerformanceState`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPerformanceState(
    device: *mut c_void,
    pstate: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `pstate`.
    unsafe {
        getter(device, pstate, |c| {
            let dev = c.dev;
            c.field("pstate", &dev.pstate).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetPcieThroughput`: TX (0) / RX (1), KB/s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPcieThroughput(
    device: *mut c_void,
    counter: u32,
    value: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `value`.
    unsafe {
        getter(device, value, |c| {
            let dev = c.dev;
            let (name, v) = match counter {
                0 => ("pcie_tx_kbps", &dev.pcie_tx_kbps),
                1 => ("pcie_rx_kbps", &dev.pcie_rx_kbps),
                _ => return Err(INVALID_ARGUMENT),
            };
            c.field(name, v).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetCurrPcieLinkGeneration`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrPcieLinkGeneration(
    device: *mut c_void,
    gen_out: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `gen_out`.
    unsafe {
        getter(device, gen_out, |c| {
            let dev = c.dev;
            c.field("pcie_link_gen", &dev.pcie_link_gen).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetCurrPcieLinkWidth`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCurrPcieLinkWidth(
    device: *mut c_void,
    width: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `width`.
    unsafe {
        getter(device, width, |c| {
            let dev = c.dev;
            c.field("pcie_link_width", &dev.pcie_link_width).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetPcieReplayCounter`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPcieReplayCounter(
    device: *mut c_void,
    value: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `value`.
    unsafe {
        getter(device, value, |c| {
            let dev = c.dev;
            c.field("pcie_replay", &dev.pcie_replay).map(to_u32)
        })
    }
}

/// `nvmlDeviceGetTotalEccErrors`: corrected (0) / uncorrected (1); volatile and aggregate
/// counters both read the scenario total.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: *mut c_void,
    error_type: u32,
    counter_type: u32,
    ecc_counts: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for `ecc_counts`.
    unsafe {
        getter(device, ecc_counts, |c| {
            if counter_type > 1 {
                return Err(INVALID_ARGUMENT);
            }
            let dev = c.dev;
            match error_type {
                0 => c.field("ecc_corrected", &dev.ecc_corrected),
                1 => c.field("ecc_uncorrected", &dev.ecc_uncorrected),
                _ => Err(INVALID_ARGUMENT),
            }
        })
    }
}

/// Shared body of the retired-pages queries. `count_only` peeks at the page count (the
/// count query must not advance a scripted sequence before the fill query reads it).
///
/// # Safety
///
/// `count` is null or valid for reads and writes; `addresses` / `timestamps` are null or hold
/// `*count` elements.
unsafe fn retired_pages(
    device: *mut c_void,
    cause: u32,
    count: *mut u32,
    addresses: *mut u64,
    timestamps: *mut u64,
    count_only: bool,
) -> u32 {
    api(|| {
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mut st = lock();
        let mut c = st.device(device)?;
        let dev = c.gpu_only()?;
        let (name, v) = match cause {
            0 => ("retired_pages_single_bit", &dev.retired_pages_single_bit),
            1 => ("retired_pages_double_bit", &dev.retired_pages_double_bit),
            _ => return Err(INVALID_ARGUMENT),
        };
        c.check(&[name])?;
        let n = to_u32(if count_only {
            c.peek(name, 0, v)
        } else {
            c.read(name, 0, v)
        });
        // SAFETY: `count` is non-null and valid (contract).
        let capacity = unsafe { count.read() };
        // SAFETY: as above.
        unsafe { count.write(n) };
        if capacity < n {
            return Err(INSUFFICIENT_SIZE);
        }
        if n > 0 && addresses.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let base = (u64::from(cause) + 1) << 32 | u64::from(c.t.gpu) << 24;
        let addrs: Vec<u64> = (0..u64::from(n)).map(|k| base + k * 0x1000).collect();
        let stamps: Vec<u64> = (0..u64::from(n)).map(|k| 1_700_000_000 + k).collect();
        // SAFETY: both arrays hold `capacity >= n` elements (contract); timestamps optional.
        unsafe {
            write_slice(addresses, &addrs);
            if !timestamps.is_null() {
                write_slice(timestamps, &stamps);
            }
        }
        Ok(())
    })
}

/// `nvmlDeviceGetRetiredPages`: count query (does not advance the scripted count).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPages(
    device: *mut c_void,
    cause: u32,
    page_count: *mut u32,
    addresses: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for the pointers.
    unsafe {
        retired_pages(
            device,
            cause,
            page_count,
            addresses,
            std::ptr::null_mut(),
            true,
        )
    }
}

/// `nvmlDeviceGetRetiredPages_v2`: `*page_count` synthetic addresses and timestamps.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetRetiredPages_v2(
    device: *mut c_void,
    cause: u32,
    page_count: *mut u32,
    addresses: *mut u64,
    timestamps: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for the pointers.
    unsafe { retired_pages(device, cause, page_count, addresses, timestamps, false) }
}

/// `nvmlDeviceGetRemappedRows`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetRemappedRows(
    device: *mut c_void,
    corr_rows: *mut u32,
    unc_rows: *mut u32,
    is_pending: *mut u32,
    failure_occurred: *mut u32,
) -> u32 {
    api(|| {
        // SAFETY: NVML contract for the four out-pointers.
        let outs = unsafe {
            (
                Out::new(corr_rows)?,
                Out::new(unc_rows)?,
                Out::new(is_pending)?,
                Out::new(failure_occurred)?,
            )
        };
        let mut st = lock();
        let mut c = st.device(device)?;
        let dev = c.gpu_only()?;
        c.check(&[
            "remapped_rows_correctable",
            "remapped_rows_uncorrectable",
            "remap_pending",
            "remap_failure",
        ])?;
        outs.0.set(to_u32(c.read(
            "remapped_rows_correctable",
            0,
            &dev.remapped_rows_correctable,
        )));
        outs.1.set(to_u32(c.read(
            "remapped_rows_uncorrectable",
            0,
            &dev.remapped_rows_uncorrectable,
        )));
        outs.2.set(u32::from(dev.remap_pending));
        outs.3.set(u32::from(dev.remap_failure));
        Ok(())
    })
}

/// `nvmlDeviceGetNumFans`: `fan_speeds_percent.len()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNumFans(device: *mut c_void, num_fans: *mut u32) -> u32 {
    // SAFETY: NVML contract for `num_fans`.
    unsafe {
        getter(device, num_fans, |c| {
            let dev = c.gpu_only()?;
            c.check(&["fan_speeds_percent"])?;
            Ok(dev.fan_speeds_percent.len() as u32)
        })
    }
}

/// `nvmlDeviceGetFanSpeed_v2`: `INVALID_ARGUMENT` past the last fan.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetFanSpeed_v2(
    device: *mut c_void,
    fan: u32,
    speed: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `speed`.
    unsafe {
        getter(device, speed, |c| {
            let dev = c.gpu_only()?;
            c.check(&["fan_speeds_percent"])?;
            let v = dev
                .fan_speeds_percent
                .get(fan as usize)
                .ok_or(INVALID_ARGUMENT)?;
            Ok(to_u32(c.read("fan_speeds_percent", fan, v)))
        })
    }
}

fn process_info(p: &Process, mig: Option<&MigInstance>) -> ProcessInfo {
    ProcessInfo {
        pid: p.pid,
        used_gpu_memory: p.used_memory_bytes,
        gpu_instance_id: mig.map_or(NO_ID, |m| m.gpu_instance_id),
        compute_instance_id: mig.map_or(NO_ID, |m| m.compute_instance_id),
    }
}

/// `nvmlDeviceGetComputeRunningProcesses_v3`: on a GPU its own processes then those of its
/// MIG devices (with their instance ids); on a MIG device that instance's processes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: *mut c_void,
    info_count: *mut u32,
    infos: *mut ProcessInfo,
) -> u32 {
    api(|| {
        if info_count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mut st = lock();
        let c = st.device(device)?;
        c.check(&["processes"])?;
        let list: Vec<ProcessInfo> = match c.mig {
            Some(m) => m
                .processes
                .iter()
                .map(|p| process_info(p, Some(m)))
                .collect(),
            None => {
                let own = c.dev.processes.iter().map(|p| process_info(p, None));
                let mig = c
                    .dev
                    .mig_instances
                    .iter()
                    .flat_map(|m| m.processes.iter().map(move |p| process_info(p, Some(m))));
                own.chain(mig).collect()
            }
        };
        // SAFETY: `info_count` is non-null and valid for reads and writes (contract).
        let capacity = unsafe { info_count.read() };
        // SAFETY: as above.
        unsafe { info_count.write(list.len() as u32) };
        if (capacity as usize) < list.len() {
            return Err(INSUFFICIENT_SIZE);
        }
        if !list.is_empty() && infos.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: `infos` holds `capacity >= list.len()` elements (contract).
        unsafe { write_slice(infos, &list) };
        Ok(())
    })
}

/// `nvmlDeviceGetProcessUtilization`: one sample per GPU-level process, stamped now;
/// `NOT_FOUND` when there is none (as NVML), `NOT_SUPPORTED` on MIG devices.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    device: *mut c_void,
    utilization: *mut ProcessUtilizationSample,
    process_samples_count: *mut u32,
    _last_seen_time_stamp: u64,
) -> u32 {
    api(|| {
        if process_samples_count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mut st = lock();
        let c = st.device(device)?;
        let dev = c.gpu_only()?;
        c.check(&["processes", "process_utilization"])?;
        let now = now_us();
        let list: Vec<ProcessUtilizationSample> = dev
            .processes
            .iter()
            .map(|p| ProcessUtilizationSample {
                pid: p.pid,
                time_stamp: now,
                sm_util: p.sm_util,
                mem_util: p.mem_util,
                enc_util: p.enc_util,
                dec_util: p.dec_util,
            })
            .collect();
        // SAFETY: non-null and valid for reads and writes (contract).
        let capacity = unsafe { process_samples_count.read() };
        // SAFETY: as above.
        unsafe { process_samples_count.write(list.len() as u32) };
        if list.is_empty() {
            return Err(NOT_FOUND);
        }
        if utilization.is_null() || (capacity as usize) < list.len() {
            return Err(INSUFFICIENT_SIZE);
        }
        // SAFETY: `utilization` holds `capacity >= list.len()` elements (contract).
        unsafe { write_slice(utilization, &list) };
        Ok(())
    })
}

/// `nvmlDeviceGetMigMode`: enabled (1) when the GPU has MIG instances, current = pending.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: *mut c_void,
    current_mode: *mut u32,
    pending_mode: *mut u32,
) -> u32 {
    api(|| {
        // SAFETY: NVML contract for both out-pointers.
        let (cur, pend) = unsafe { (Out::new(current_mode)?, Out::new(pending_mode)?) };
        let mut st = lock();
        let c = st.device(device)?;
        let dev = c.gpu_only()?;
        c.check(&["mig_instances"])?;
        let mode = u32::from(!dev.mig_instances.is_empty());
        cur.set(mode);
        pend.set(mode);
        Ok(())
    })
}

/// `nvmlDeviceGetMaxMigDeviceCount`: 0 with MIG off, else `mig_max_devices` (default 7, at
/// least the number of instances).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: *mut c_void,
    count: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `count`.
    unsafe {
        getter(device, count, |c| {
            let dev = c.gpu_only()?;
            c.check(&["mig_instances"])?;
            let n = dev.mig_instances.len() as u32;
            Ok(if n == 0 {
                0
            } else {
                dev.mig_max_devices.unwrap_or(7).max(n)
            })
        })
    }
}

/// `nvmlDeviceGetMigDeviceHandleByIndex`: `NOT_FOUND` past the last instance.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: *mut c_void,
    index: u32,
    mig_device: *mut *mut c_void,
) -> u32 {
    // SAFETY: NVML contract for `mig_device`.
    unsafe {
        getter(device, mig_device, |c| {
            let dev = c.gpu_only()?;
            c.check(&["mig_instances"])?;
            if index as usize >= dev.mig_instances.len() {
                return Err(NOT_FOUND);
            }
            Ok(Target {
                gpu: c.t.gpu,
                mig: Some(index),
            }
            .handle())
        })
    }
}

/// `nvmlDeviceIsMigDeviceHandle`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: *mut c_void,
    is_mig_device: *mut u32,
) -> u32 {
    // SAFETY: NVML contract for `is_mig_device`.
    unsafe { getter(device, is_mig_device, |c| Ok(u32::from(c.mig.is_some()))) }
}

/// `nvmlDeviceGetGpuInstanceId`: MIG devices only (`NOT_SUPPORTED` on a GPU).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: *mut c_void, id: *mut u32) -> u32 {
    // SAFETY: NVML contract for `id`.
    unsafe {
        getter(device, id, |c| {
            c.mig.map(|m| m.gpu_instance_id).ok_or(NOT_SUPPORTED)
        })
    }
}

/// `nvmlDeviceGetComputeInstanceId`: MIG devices only (`NOT_SUPPORTED` on a GPU).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(device: *mut c_void, id: *mut u32) -> u32 {
    // SAFETY: NVML contract for `id`.
    unsafe {
        getter(device, id, |c| {
            c.mig.map(|m| m.compute_instance_id).ok_or(NOT_SUPPORTED)
        })
    }
}

/// `nvmlDeviceGetDeviceHandleFromMigDeviceHandle`: the parent GPU (`NOT_SUPPORTED` on a GPU).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: *mut c_void,
    device: *mut *mut c_void,
) -> u32 {
    // SAFETY: NVML contract for `device`.
    unsafe {
        getter(mig_device, device, |c| match c.mig {
            Some(_) => Ok(Target {
                gpu: c.t.gpu,
                mig: None,
            }
            .handle()),
            None => Err(NOT_SUPPORTED),
        })
    }
}

/// `nvmlDeviceGetSupportedEventTypes`: the six event kinds the fake scripts.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: *mut c_void,
    event_types: *mut u64,
) -> u32 {
    // SAFETY: NVML contract for `event_types`.
    unsafe {
        getter(device, event_types, |c| {
            c.gpu_only()?;
            c.check(&["events"])?;
            Ok(EVENT_TYPES_SUPPORTED)
        })
    }
}

/// `scopeId` of the NVLink throughput fields that sums over all links (UINT_MAX).
const ALL_NVLINKS: u32 = u32::MAX;
/// `scopeId` of the power fields for the GPU alone.
const POWER_SCOPE_GPU: u32 = 0;
/// `scopeId` of the power fields for the whole module (GPU + Grace CPU).
const POWER_SCOPE_MODULE: u32 = 1;

/// `NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX`: `scope` is the link id, or [`ALL_NVLINKS`].
/// A link reads `total / nvlink_links` (integer division). Only entries that yield a value
/// count a read.
fn nvlink_throughput(
    c: &mut Call<'_>,
    name: &'static str,
    v: &Value,
    scope: u32,
) -> Result<u64, u32> {
    c.check(&[name])?;
    let links = c.dev.nvlink_links;
    if links == 0 {
        return Err(NOT_SUPPORTED);
    }
    if scope != ALL_NVLINKS && scope >= links {
        return Err(INVALID_ARGUMENT);
    }
    let total = c.read(name, 0, v);
    Ok(if scope == ALL_NVLINKS {
        total
    } else {
        total / u64::from(links)
    })
}

/// One field entry (id, scopeId) → (value type, value), reading it.
fn field_value(c: &mut Call<'_>, id: u32, scope: u32) -> Result<(u32, u64), u32> {
    let dev = c.dev;
    let (name, ty, v): (&'static str, u32, &Value) = match id {
        3 => ("ecc_corrected", VALUE_TYPE_ULL, &dev.ecc_corrected),
        4 => ("ecc_uncorrected", VALUE_TYPE_ULL, &dev.ecc_uncorrected),
        38 => (
            "nvlink_crc_flit_errors",
            VALUE_TYPE_ULL,
            &dev.nvlink_crc_flit_errors,
        ),
        45 => (
            "nvlink_crc_data_errors",
            VALUE_TYPE_ULL,
            &dev.nvlink_crc_data_errors,
        ),
        52 => (
            "nvlink_replay_errors",
            VALUE_TYPE_ULL,
            &dev.nvlink_replay_errors,
        ),
        59 => (
            "nvlink_recovery_errors",
            VALUE_TYPE_ULL,
            &dev.nvlink_recovery_errors,
        ),
        82 => (
            "memory_temperature_c",
            VALUE_TYPE_UINT,
            &dev.memory_temperature_c,
        ),
        138 => {
            let v = nvlink_throughput(c, "nvlink_tx_kib", &dev.nvlink_tx_kib, scope)?;
            return Ok((VALUE_TYPE_ULL, v));
        }
        139 => {
            let v = nvlink_throughput(c, "nvlink_rx_kib", &dev.nvlink_rx_kib, scope)?;
            return Ok((VALUE_TYPE_ULL, v));
        }
        142 => (
            "remapped_rows_correctable",
            VALUE_TYPE_UINT,
            &dev.remapped_rows_correctable,
        ),
        143 => (
            "remapped_rows_uncorrectable",
            VALUE_TYPE_UINT,
            &dev.remapped_rows_uncorrectable,
        ),
        144 | 145 => {
            let (name, flag) = if id == 144 {
                ("remap_pending", dev.remap_pending)
            } else {
                ("remap_failure", dev.remap_failure)
            };
            c.check(&[name])?;
            return Ok((VALUE_TYPE_UINT, u64::from(flag)));
        }
        // NVML_FI_DEV_POWER_INSTANT, mW: the same script and read counter as
        // nvmlDeviceGetPowerUsage.
        186 => {
            c.check(&["power_mw", "power_instant"])?;
            return match scope {
                POWER_SCOPE_GPU => Ok((VALUE_TYPE_UINT, c.read("power_mw", 0, &dev.power_mw))),
                POWER_SCOPE_MODULE => Err(NOT_SUPPORTED),
                _ => Err(INVALID_ARGUMENT),
            };
        }
        _ => return Err(NOT_SUPPORTED),
    };
    c.check(&[name])?;
    Ok((ty, c.read(name, 0, v)))
}

/// `nvmlDeviceGetFieldValues`: serves the field ids documented on [`crate::scenario::Device`];
/// other ids (and `unsupported` ones) get `NOT_SUPPORTED` in their own `nvmlReturn`. NVLink
/// throughput (138/139) and instant power (186) honour `scopeId`; the other fields ignore it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: *mut c_void,
    values_count: i32,
    values: *mut FieldValue,
) -> u32 {
    api(|| {
        let n = usize::try_from(values_count).map_err(|_| INVALID_ARGUMENT)?;
        if values.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mut st = lock();
        let mut c = st.device(device)?;
        c.gpu_only()?;
        let now = now_us() as i64;
        for i in 0..n {
            // SAFETY: `values` holds `values_count` caller-initialized entries (contract).
            let entry = unsafe { values.add(i) };
            // SAFETY: as above; reads one plain field without forming a reference.
            let (field_id, scope_id) = unsafe {
                (
                    std::ptr::addr_of!((*entry).field_id).read(),
                    std::ptr::addr_of!((*entry).scope_id).read(),
                )
            };
            let (value_type, ret, value) = match field_value(&mut c, field_id, scope_id) {
                Ok((VALUE_TYPE_UINT, v)) => (VALUE_TYPE_UINT, 0, FieldValueUnion { ui: to_u32(v) }),
                Ok((ty, v)) => (ty, 0, FieldValueUnion { ull: v }),
                Err(code) => (0, code, FieldValueUnion { ull: 0 }),
            };
            let out = FieldValue {
                field_id,
                scope_id,
                timestamp: now,
                latency_usec: 0,
                value_type,
                nvml_return: ret,
                value,
            };
            // SAFETY: `entry` is within the caller's array and valid for writes.
            unsafe { entry.write(out) };
        }
        Ok(())
    })
}
