//! The fake `libnvidia-ml.so` driven through nvml-wrapper's real dynamic-loading path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hpcotel_fake_nvml::scenario::{Device, Event, EventKind, MigInstance, Scenario, Value};
use hpcotel_fake_nvml::{SCENARIO_FILE_NAME, locate_cdylib};
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, PerformanceState, RetirementCause,
    TemperatureSensor,
};
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use tempfile::TempDir;

const FI_ECC_SBE_VOL_TOTAL: u32 = 3;
const FI_NVLINK_CRC_FLIT_TOTAL: u32 = 38;
const FI_NVLINK_CRC_DATA_TOTAL: u32 = 45;
const FI_NVLINK_REPLAY_TOTAL: u32 = 52;
const FI_NVLINK_RECOVERY_TOTAL: u32 = 59;
const FI_MEMORY_TEMP: u32 = 82;
const FI_NVLINK_TX: u32 = 138;
const FI_NVLINK_RX: u32 = 139;
const FI_REMAPPED_COR: u32 = 142;
const FI_REMAPPED_UNC: u32 = 143;
const FI_REMAPPED_PENDING: u32 = 144;
const FI_REMAPPED_FAILURE: u32 = 145;
/// `NVML_FI_DEV_POWER_INSTANT`.
const FI_POWER_INSTANT: u32 = 186;
/// The NVLink throughput `scopeId` that sums every link (UINT_MAX).
const ALL_LINKS: u32 = u32::MAX;
/// `NVML_VALUE_TYPE_UNSIGNED_LONG_LONG`.
const VALUE_TYPE_ULL: u32 = 3;
/// `NVML_ERROR_INVALID_ARGUMENT`.
const RC_INVALID_ARGUMENT: u32 = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
const RC_NOT_SUPPORTED: u32 = 3;

/// A private copy of the fake library next to its own scenario file.
struct Fake {
    dir: TempDir,
}

impl Fake {
    fn new(scenario: &Scenario) -> Fake {
        let lib = locate_cdylib().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(lib, dir.path().join("libnvidia-ml.so.1")).unwrap();
        let fake = Fake { dir };
        fake.write(scenario);
        fake
    }

    fn lib(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so.1")
    }

    fn write(&self, scenario: &Scenario) {
        write_atomic(self.dir.path(), &scenario.to_json());
    }

    fn init(&self) -> Result<Nvml, NvmlError> {
        Nvml::builder().lib_path(self.lib().as_os_str()).init()
    }
}

fn write_atomic(dir: &Path, text: &str) {
    let tmp = dir.join(".scenario.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(SCENARIO_FILE_NAME)).unwrap();
}

/// Polls `f` until it yields `Some`, failing after 10 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn c(v: &Value) -> u64 {
    v.at(0)
}

/// `nvmlFieldValue_t` as nvml-wrapper-sys 0.10 lays it out (x86_64 / aarch64 Linux), with
/// the value union read as its `unsigned long long` member: only meaningful for entries
/// whose `value_type` is [`VALUE_TYPE_ULL`] (the fake leaves the upper half of a 32-bit
/// value unwritten).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawFieldValue {
    field_id: u32,
    scope_id: u32,
    timestamp: i64,
    latency_usec: i64,
    value_type: u32,
    nvml_return: u32,
    value: u64,
}

const _: () = assert!(std::mem::size_of::<RawFieldValue>() == 40);
const _: () = assert!(std::mem::align_of::<RawFieldValue>() == 8);

/// Calls `nvmlDeviceGetFieldValues` directly with `(field id, scopeId)` entries: nvml-wrapper's
/// `field_values_for` always sends scopeId 0.
fn raw_field_values(
    nvml: &Nvml,
    d: &nvml_wrapper::Device<'_>,
    entries: &[(u32, u32)],
) -> Vec<RawFieldValue> {
    let mut buf: Vec<RawFieldValue> = entries
        .iter()
        .map(|&(field_id, scope_id)| RawFieldValue {
            field_id,
            scope_id,
            ..RawFieldValue::default()
        })
        .collect();
    let n = i32::try_from(buf.len()).unwrap();
    // SAFETY: `d` is a live handle from `nvml`, whose library this calls; `buf` holds `n`
    // initialized entries laid out as `nvmlFieldValue_t` (size and alignment asserted
    // above), which the call reads and overwrites in place while `buf` is borrowed here.
    let rc = unsafe {
        nvml.lib()
            .nvmlDeviceGetFieldValues(d.handle(), n, buf.as_mut_ptr().cast())
    };
    assert_eq!(rc, 0, "nvmlDeviceGetFieldValues");
    for (entry, &(field_id, scope_id)) in buf.iter().zip(entries) {
        assert_eq!((entry.field_id, entry.scope_id), (field_id, scope_id));
    }
    buf
}

/// A raw entry as its value, or its `nvmlReturn`.
fn raw_ull(entry: &RawFieldValue) -> Result<u64, u32> {
    if entry.nvml_return != 0 {
        return Err(entry.nvml_return);
    }
    assert_eq!(entry.value_type, VALUE_TYPE_ULL, "{entry:?}");
    Ok(entry.value)
}

/// Entry `i` of a field-value answer as a number, or its error's name.
fn field(values: &[Result<FieldValueSample, NvmlError>], i: usize) -> Result<u64, String> {
    let sample = values[i].as_ref().map_err(|e| format!("{e:?}"))?;
    match sample.value.as_ref().map_err(|e| format!("{e:?}"))? {
        SampleValue::U32(v) => Ok(u64::from(*v)),
        SampleValue::U64(v) => Ok(*v),
        other => panic!("unexpected sample type {other:?}"),
    }
}

#[test]
fn eight_distinct_devices_answer_every_call() {
    let scenario = Scenario::with_gpus(8);
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    assert_eq!(nvml.sys_driver_version().unwrap(), scenario.driver_version);
    assert_eq!(nvml.sys_nvml_version().unwrap(), scenario.nvml_version);
    assert_eq!(nvml.device_count().unwrap(), 8);

    let mut fingerprints = HashSet::new();
    let mut per_call: Vec<HashSet<String>> = Vec::new();
    for (i, want) in scenario.devices.iter().enumerate() {
        let i = i as u32;
        let d = nvml.device_by_index(i).unwrap();
        let by_uuid = nvml.device_by_uuid(want.uuid.as_str()).unwrap();
        assert_eq!(by_uuid.index().unwrap(), i);

        let uuid = d.uuid().unwrap();
        assert_eq!(uuid, want.uuid);
        assert_eq!(d.name().unwrap(), want.name);
        assert_eq!(d.index().unwrap(), i);
        assert_eq!(d.serial().unwrap(), want.serial);
        let minor = d.minor_number().unwrap();
        assert_eq!(Some(minor), want.minor);
        assert_ne!(minor, i, "a sample's minor number is not its index");
        let pci = d.pci_info().unwrap();
        assert_eq!(pci.bus_id, want.pci_bus_id);
        assert_eq!(
            pci.bus,
            u32::from_str_radix(&want.pci_bus_id[9..11], 16).unwrap()
        );
        let util = d.utilization_rates().unwrap();
        assert_eq!(
            (u64::from(util.gpu), u64::from(util.memory)),
            (c(&want.utilization_gpu), c(&want.utilization_memory))
        );
        let enc = d.encoder_utilization().unwrap().utilization;
        let dec = d.decoder_utilization().unwrap().utilization;
        assert_eq!(
            (u64::from(enc), u64::from(dec)),
            (c(&want.encoder_utilization), c(&want.decoder_utilization))
        );
        let mem = d.memory_info().unwrap();
        assert_eq!(mem.total, want.memory_total_bytes);
        assert_eq!(mem.used, c(&want.memory_used_bytes));
        assert_eq!(mem.reserved, want.memory_reserved_bytes);
        assert_eq!(mem.free, mem.total - mem.used - mem.reserved);
        let bar1 = d.bar1_memory_info().unwrap();
        assert_eq!(
            (bar1.total, bar1.used, bar1.free),
            (
                want.bar1_total_bytes,
                c(&want.bar1_used_bytes),
                want.bar1_total_bytes - c(&want.bar1_used_bytes)
            )
        );
        let power = d.power_usage().unwrap();
        assert_eq!(u64::from(power), c(&want.power_mw));
        assert_eq!(
            u64::from(d.enforced_power_limit().unwrap()),
            c(&want.power_limit_mw)
        );
        assert_eq!(d.total_energy_consumption().unwrap(), c(&want.energy_mj));
        assert_eq!(
            u64::from(d.temperature(TemperatureSensor::Gpu).unwrap()),
            c(&want.temperature_c)
        );

        let ids = [
            FI_MEMORY_TEMP,
            FI_NVLINK_TX,
            FI_NVLINK_RX,
            FI_NVLINK_CRC_FLIT_TOTAL,
            FI_NVLINK_CRC_DATA_TOTAL,
            FI_NVLINK_REPLAY_TOTAL,
            FI_NVLINK_RECOVERY_TOTAL,
            FI_REMAPPED_COR,
            FI_REMAPPED_UNC,
            FI_REMAPPED_PENDING,
            FI_REMAPPED_FAILURE,
            FI_ECC_SBE_VOL_TOTAL,
            9999,
        ];
        let fids: Vec<FieldId> = ids.iter().map(|id| FieldId(*id)).collect();
        let values = d.field_values_for(&fids).unwrap();
        assert_eq!(values.len(), ids.len());
        for (k, v) in values.iter().enumerate().take(ids.len() - 1) {
            assert_eq!(v.as_ref().unwrap().field, FieldId(ids[k]));
        }
        let fv: Vec<u64> = (0..ids.len() - 1)
            .map(|k| field(&values, k).unwrap())
            .collect();
        assert_eq!(
            fv,
            [
                c(&want.memory_temperature_c),
                // field_values_for sends scopeId 0: link 0 of 18.
                c(&want.nvlink_tx_kib) / u64::from(want.nvlink_links),
                c(&want.nvlink_rx_kib) / u64::from(want.nvlink_links),
                c(&want.nvlink_crc_flit_errors),
                c(&want.nvlink_crc_data_errors),
                c(&want.nvlink_replay_errors),
                c(&want.nvlink_recovery_errors),
                c(&want.remapped_rows_correctable),
                c(&want.remapped_rows_uncorrectable),
                0,
                0,
                c(&want.ecc_corrected),
            ]
        );
        assert_eq!(field(&values, ids.len() - 1), Err("NotSupported".into()));

        let clocks = [Clock::Graphics, Clock::SM, Clock::Memory]
            .map(|k| u64::from(d.clock_info(k).unwrap()));
        assert_eq!(
            clocks,
            [
                c(&want.clock_graphics_mhz),
                c(&want.clock_sm_mhz),
                c(&want.clock_memory_mhz)
            ]
        );
        let throttle = d.current_throttle_reasons().unwrap();
        assert_eq!(
            throttle,
            ThrottleReasons::from_bits_truncate(c(&want.throttle_reasons))
        );
        let pstate = d.performance_state().unwrap();
        assert_eq!(pstate as u64, c(&want.pstate));
        assert_eq!(i == 0, pstate == PerformanceState::Zero);
        let tx = d.pcie_throughput(PcieUtilCounter::Send).unwrap();
        let rx = d.pcie_throughput(PcieUtilCounter::Receive).unwrap();
        assert_eq!(
            (u64::from(tx), u64::from(rx)),
            (c(&want.pcie_tx_kbps), c(&want.pcie_rx_kbps))
        );
        assert_eq!(
            u64::from(d.current_pcie_link_gen().unwrap()),
            c(&want.pcie_link_gen)
        );
        assert_eq!(
            u64::from(d.current_pcie_link_width().unwrap()),
            c(&want.pcie_link_width)
        );
        assert_eq!(
            u64::from(d.pcie_replay_counter().unwrap()),
            c(&want.pcie_replay)
        );
        let ecc_c = d
            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
            .unwrap();
        let ecc_u = d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .unwrap();
        assert_eq!(
            (ecc_c, ecc_u),
            (c(&want.ecc_corrected), c(&want.ecc_uncorrected))
        );
        let sbe = d
            .retired_pages(RetirementCause::MultipleSingleBitEccErrors)
            .unwrap();
        let dbe = d.retired_pages(RetirementCause::DoubleBitEccError).unwrap();
        assert_eq!(
            (sbe.len() as u64, dbe.len() as u64),
            (
                c(&want.retired_pages_single_bit),
                c(&want.retired_pages_double_bit)
            )
        );
        assert_eq!(
            sbe.iter().map(|p| p.address).collect::<HashSet<_>>().len(),
            sbe.len()
        );
        assert_eq!(d.num_fans().unwrap(), 2);
        let fans = [d.fan_speed(0).unwrap(), d.fan_speed(1).unwrap()].map(u64::from);
        assert_eq!(
            fans,
            [
                c(&want.fan_speeds_percent[0]),
                c(&want.fan_speeds_percent[1])
            ]
        );
        assert!(matches!(d.fan_speed(2), Err(NvmlError::InvalidArg)));
        let procs = d.running_compute_processes().unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].pid, want.processes[0].pid);
        assert_eq!(
            procs[0].used_gpu_memory,
            UsedGpuMemory::Used(want.processes[0].used_memory_bytes)
        );
        assert_eq!(
            (procs[0].gpu_instance_id, procs[0].compute_instance_id),
            (None, None)
        );
        let putil = d.process_utilization_stats(None).unwrap();
        assert_eq!(putil.len(), 1);
        assert_eq!(
            (putil[0].pid, putil[0].sm_util, putil[0].mem_util),
            (
                want.processes[0].pid,
                want.processes[0].sm_util,
                want.processes[0].mem_util
            )
        );
        assert_eq!(d.mig_mode().unwrap().current, 0);
        assert_eq!(d.mig_device_count().unwrap(), 0);
        assert!(!d.mig_is_mig_device_handle().unwrap());
        assert!(matches!(d.mig_device_by_index(0), Err(NvmlError::NotFound)));
        let events = d.supported_event_types().unwrap();
        assert!(events.contains(EventTypes::CRITICAL_XID_ERROR | EventTypes::PSTATE_CHANGE));
        let (mut cor, mut unc, mut pend, mut fail) = (0, 0, 1, 1);
        // SAFETY: a live handle and valid out-pointers.
        let rc = unsafe {
            nvml.lib().nvmlDeviceGetRemappedRows(
                d.handle(),
                &mut cor,
                &mut unc,
                &mut pend,
                &mut fail,
            )
        };
        assert_eq!(
            (rc, u64::from(cor), u64::from(unc), pend, fail),
            (
                0,
                c(&want.remapped_rows_correctable),
                c(&want.remapped_rows_uncorrectable),
                0,
                0
            )
        );

        let calls: Vec<String> = vec![
            uuid.clone(),
            d.name().unwrap(),
            d.serial().unwrap(),
            format!("{minor}"),
            pci.bus_id.clone(),
            format!("{util:?}"),
            format!("{enc}/{dec}"),
            format!("{}", mem.used),
            format!("{}", bar1.used),
            format!("{power}"),
            format!("{:?}", fv),
            format!("{clocks:?}"),
            format!("{throttle:?}"),
            format!("{pstate:?}"),
            format!("{tx}/{rx}"),
            format!("{ecc_c}/{ecc_u}"),
            format!("{}/{}", sbe.len(), dbe.len()),
            format!("{fans:?}"),
            format!("{}", procs[0].pid),
            format!("{}", putil[0].sm_util),
        ];
        if per_call.is_empty() {
            per_call = vec![HashSet::new(); calls.len()];
        }
        for (set, v) in per_call.iter_mut().zip(&calls) {
            set.insert(v.clone());
        }
        assert!(fingerprints.insert(calls));
    }
    for (k, set) in per_call.iter().enumerate() {
        assert_eq!(
            set.len(),
            8,
            "call #{k} is not distinct across GPUs: {set:?}"
        );
    }
    assert!(matches!(
        nvml.device_by_index(8),
        Err(NvmlError::InvalidArg)
    ));
    assert!(matches!(
        nvml.device_by_uuid("GPU-nope"),
        Err(NvmlError::NotFound)
    ));
}

#[test]
fn minor_numbers_are_scripted_and_fail_like_the_other_calls() {
    let mut scenario = Scenario::with_gpus(5);
    // The samples' minors swap in pairs (1, 0, 3, 2, 5); GPU 2 gets a scripted one, GPU 3
    // none (it reads its index), GPU 4 cannot tell.
    scenario.devices[2].minor = Some(7);
    scenario.devices[3].minor = None;
    scenario.devices[4].unsupported = vec!["minor".to_owned()];
    scenario.devices[1].mig_instances = vec![MigInstance::sample(1, 0)];
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let devices: Vec<_> = (0..5).map(|i| nvml.device_by_index(i).unwrap()).collect();
    let minors: Vec<_> = devices
        .iter()
        .take(4)
        .map(|d| d.minor_number().unwrap())
        .collect();
    assert_eq!(minors, [1, 0, 7, 3]);
    assert!(matches!(
        devices[4].minor_number(),
        Err(NvmlError::NotSupported)
    ));
    assert_eq!(devices[4].uuid().unwrap(), scenario.devices[4].uuid);

    // MIG devices have no minor number of their own.
    let mig = devices[1].mig_device_by_index(0).unwrap();
    assert!(matches!(mig.minor_number(), Err(NvmlError::NotSupported)));

    // A null out-pointer is an invalid argument.
    // SAFETY: a live handle from `nvml`; the library checks the null pointer before writing.
    let rc = unsafe {
        nvml.lib()
            .nvmlDeviceGetMinorNumber(devices[0].handle(), std::ptr::null_mut())
    };
    assert_eq!(rc, RC_INVALID_ARGUMENT);

    // A lost GPU answers GPU_IS_LOST; the others keep their minors.
    scenario.devices[0].lost = true;
    fake.write(&scenario);
    eventually("GPU 0 lost", || {
        matches!(devices[0].minor_number(), Err(NvmlError::GpuLost)).then_some(())
    });
    assert_eq!(devices[1].minor_number().unwrap(), 0);
}

#[test]
fn value_sequences_advance_per_read_and_per_device() {
    let mut scenario = Scenario::with_gpus(2);
    scenario.devices[0].power_mw = Value::from([100_000, 200_000, 300_000]);
    scenario.devices[0].utilization_gpu = Value::from([10, 95, 95, 10]);
    scenario.devices[1].power_mw = Value::from([1, 2]);
    scenario.devices[0].nvlink_tx_kib = Value::from([5, 6]);
    // One link: link 0 (the scope field_values_for sends) reads the whole total.
    scenario.devices[0].nvlink_links = 1;
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let d0 = nvml.device_by_index(0).unwrap();
    let d1 = nvml.device_by_index(1).unwrap();
    let p0: Vec<u32> = (0..4).map(|_| d0.power_usage().unwrap()).collect();
    assert_eq!(p0, [100_000, 200_000, 300_000, 300_000]);
    assert_eq!(d1.power_usage().unwrap(), 1);
    let u: Vec<u32> = (0..5)
        .map(|_| d0.utilization_rates().unwrap().gpu)
        .collect();
    assert_eq!(u, [10, 95, 95, 10, 10]);
    let tx: Vec<u64> = (0..3)
        .map(|_| field(&d0.field_values_for(&[FieldId(FI_NVLINK_TX)]).unwrap(), 0).unwrap())
        .collect();
    assert_eq!(tx, [5, 6, 6]);

    // Counters survive a scenario reload (a new script continues at the read count) and an
    // NVML shutdown + re-init.
    let mut next = scenario.clone();
    next.devices[1].power_mw = Value::from([7, 8, 9, 10]);
    fake.write(&next);
    eventually("reload", || (d1.power_usage().unwrap() != 2).then_some(()));
    drop(nvml);
    let nvml = fake.init().unwrap();
    let d1 = nvml.device_by_index(1).unwrap();
    let p = d1.power_usage().unwrap();
    assert!(p > 8, "read counter restarted after re-init: {p}");
}

#[test]
fn mig_devices() {
    let mut scenario = Scenario::with_gpus(2);
    scenario.devices[1].mig_instances = vec![MigInstance::sample(1, 0), MigInstance::sample(1, 1)];
    scenario.devices[1].mig_instances[1].compute_instance_id = 1;
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let gpu = nvml.device_by_index(1).unwrap();
    assert_eq!(gpu.mig_mode().unwrap().current, 1);
    assert_eq!(gpu.mig_device_count().unwrap(), 7);
    assert!(matches!(
        gpu.mig_device_by_index(2),
        Err(NvmlError::NotFound)
    ));
    assert_eq!(
        nvml.device_by_index(0).unwrap().mig_mode().unwrap().current,
        0
    );

    for j in 0..2u32 {
        let want = &scenario.devices[1].mig_instances[j as usize];
        let mig = gpu.mig_device_by_index(j).unwrap();
        assert!(mig.mig_is_mig_device_handle().unwrap());
        assert_eq!(mig.uuid().unwrap(), want.uuid);
        assert_eq!(mig.name().unwrap(), want.name);
        let mem = mig.memory_info().unwrap();
        assert_eq!(
            (mem.total, mem.used),
            (want.memory_total_bytes, c(&want.memory_used_bytes))
        );
        assert!(matches!(
            mig.utilization_rates(),
            Err(NvmlError::NotSupported)
        ));
        assert!(matches!(mig.power_usage(), Err(NvmlError::NotSupported)));
        let procs = mig.running_compute_processes().unwrap();
        assert_eq!(procs.len(), 1);
        assert_eq!(procs[0].pid, want.processes[0].pid);
        assert_eq!(procs[0].gpu_instance_id, Some(want.gpu_instance_id));
        assert_eq!(procs[0].compute_instance_id, Some(want.compute_instance_id));

        let (mut gi, mut ci) = (0u32, 0u32);
        // SAFETY: reading the raw handle (nvml-wrapper-sys is not a direct dependency; this
        // gives a variable of its `nvmlDevice_t` type).
        let mut parent = unsafe { gpu.handle() };
        // SAFETY: a live MIG handle and valid out-pointers.
        let rcs = unsafe {
            let lib = nvml.lib();
            (
                lib.nvmlDeviceGetGpuInstanceId(mig.handle(), &mut gi),
                lib.nvmlDeviceGetComputeInstanceId(mig.handle(), &mut ci),
                lib.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig.handle(), &mut parent),
            )
        };
        assert_eq!(rcs, (0, 0, 0));
        // SAFETY: reading the raw handle.
        assert_ne!(parent, unsafe { mig.handle() });
        assert_eq!((gi, ci), (want.gpu_instance_id, want.compute_instance_id));
        // SAFETY: the handle the library just returned.
        let parent = unsafe { nvml_wrapper::Device::new(parent, &nvml) };
        assert_eq!(parent.uuid().unwrap(), scenario.devices[1].uuid);
        assert_eq!(
            mig.mig_parent_device().unwrap().uuid().unwrap(),
            scenario.devices[1].uuid
        );

        let by_uuid = nvml.device_by_uuid(want.uuid.as_str()).unwrap();
        assert!(by_uuid.mig_is_mig_device_handle().unwrap());
    }
    let mut gi = 0u32;
    // SAFETY: a live GPU handle and a valid out-pointer.
    let rc = unsafe { nvml.lib().nvmlDeviceGetGpuInstanceId(gpu.handle(), &mut gi) };
    assert_eq!(rc, 3, "GPU handles have no GPU instance id");

    // The parent lists its own processes and its MIG devices' (with their ids).
    let procs = gpu.running_compute_processes().unwrap();
    assert_eq!(procs.len(), 3);
    assert_eq!(
        procs.iter().filter(|p| p.gpu_instance_id.is_some()).count(),
        2
    );
}

#[test]
fn lost_gpu_returns_gpu_lost_while_others_work() {
    let mut scenario = Scenario::with_gpus(4);
    scenario.devices[3].lost = true;
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    assert_eq!(nvml.device_count().unwrap(), 4);
    assert!(matches!(nvml.device_by_index(3), Err(NvmlError::GpuLost)));
    assert!(matches!(
        nvml.device_by_uuid(scenario.devices[3].uuid.as_str()),
        Err(NvmlError::GpuLost)
    ));

    let d1 = nvml.device_by_index(1).unwrap();
    let d2 = nvml.device_by_index(2).unwrap();
    assert!(d1.power_usage().is_ok());
    scenario.devices[1].lost = true;
    fake.write(&scenario);
    eventually("GPU 1 lost", || {
        matches!(d1.power_usage(), Err(NvmlError::GpuLost)).then_some(())
    });
    assert!(matches!(d1.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(d1.memory_info(), Err(NvmlError::GpuLost)));
    assert!(matches!(
        d1.field_values_for(&[FieldId(FI_MEMORY_TEMP)]),
        Err(NvmlError::GpuLost)
    ));
    assert_eq!(d2.uuid().unwrap(), scenario.devices[2].uuid);
    assert!(d2.power_usage().is_ok());
}

#[test]
fn unsupported_fields_return_not_supported() {
    let mut scenario = Scenario::with_gpus(2);
    scenario.devices[1].unsupported = [
        "fan_speeds_percent",
        "memory_temperature_c",
        "nvlink_tx_kib",
        "power_mw",
        "utilization_memory",
    ]
    .map(String::from)
    .to_vec();
    scenario.devices[1].processes.clear();
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let d = nvml.device_by_index(1).unwrap();
    assert!(matches!(d.num_fans(), Err(NvmlError::NotSupported)));
    assert!(matches!(d.fan_speed(0), Err(NvmlError::NotSupported)));
    assert!(matches!(d.power_usage(), Err(NvmlError::NotSupported)));
    assert!(matches!(
        d.utilization_rates(),
        Err(NvmlError::NotSupported)
    ));
    let values = d
        .field_values_for(&[
            FieldId(FI_MEMORY_TEMP),
            FieldId(FI_NVLINK_TX),
            FieldId(FI_NVLINK_RX),
        ])
        .unwrap();
    assert_eq!(field(&values, 0), Err("NotSupported".into()));
    assert_eq!(field(&values, 1), Err("NotSupported".into()));
    assert_eq!(
        field(&values, 2).unwrap(),
        c(&scenario.devices[1].nvlink_rx_kib) / u64::from(scenario.devices[1].nvlink_links)
    );
    // `power_mw` covers the instant power field too.
    let values = d.field_values_for(&[FieldId(FI_POWER_INSTANT)]).unwrap();
    assert_eq!(field(&values, 0), Err("NotSupported".into()));
    assert!(d.temperature(TemperatureSensor::Gpu).is_ok());
    assert_eq!(d.running_compute_processes().unwrap(), vec![]);
    assert!(matches!(
        d.process_utilization_stats(None),
        Err(NvmlError::NotFound)
    ));

    let d0 = nvml.device_by_index(0).unwrap();
    assert_eq!(d0.num_fans().unwrap(), 2);
    assert!(d0.power_usage().is_ok());
}

#[test]
fn nvlink_throughput_takes_the_link_in_scope_id() {
    let mut scenario = Scenario::with_gpus(2);
    let links = scenario.devices[0].nvlink_links;
    assert_eq!(links, 18, "Device::sample is an H100 SXM");
    // Reads 0, 1, 2, …: 1800, 3600, 5400, then 7200 repeats.
    scenario.devices[0].nvlink_tx_kib = Value::from([1_800, 3_600, 5_400, 7_200]);
    scenario.devices[1].nvlink_links = 0;
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let d0 = nvml.device_by_index(0).unwrap();
    let rx = c(&scenario.devices[0].nvlink_rx_kib);

    let got = raw_field_values(
        &nvml,
        &d0,
        &[
            (FI_NVLINK_TX, ALL_LINKS),
            (FI_NVLINK_TX, 0),
            (FI_NVLINK_TX, 99),
            (FI_NVLINK_RX, ALL_LINKS),
            (FI_NVLINK_RX, links - 1),
            (FI_NVLINK_RX, links),
        ],
    );
    let got: Vec<_> = got.iter().map(raw_ull).collect();
    assert_eq!(
        got,
        [
            Ok(1_800),
            Ok(3_600 / 18),
            Err(RC_INVALID_ARGUMENT),
            Ok(rx),
            Ok(rx / 18),
            Err(RC_INVALID_ARGUMENT),
        ]
    );
    assert_ne!(rx % 18, 0, "the per-link share is an integer division");

    // The rejected scope counted no read: the next entry reads script value #2.
    let got = raw_field_values(&nvml, &d0, &[(FI_NVLINK_TX, 5), (FI_NVLINK_TX, ALL_LINKS)]);
    assert_eq!(
        got.iter().map(raw_ull).collect::<Vec<_>>(),
        [Ok(5_400 / 18), Ok(7_200)]
    );

    // No NVLink: every scope is NOT_SUPPORTED, through nvml-wrapper too.
    let d1 = nvml.device_by_index(1).unwrap();
    let got = raw_field_values(
        &nvml,
        &d1,
        &[
            (FI_NVLINK_TX, ALL_LINKS),
            (FI_NVLINK_RX, ALL_LINKS),
            (FI_NVLINK_TX, 0),
            (FI_MEMORY_TEMP, 0),
        ],
    );
    assert_eq!(
        got.iter().map(|e| e.nvml_return).collect::<Vec<_>>(),
        [RC_NOT_SUPPORTED, RC_NOT_SUPPORTED, RC_NOT_SUPPORTED, 0]
    );
    let values = d1
        .field_values_for(&[FieldId(FI_NVLINK_TX), FieldId(FI_NVLINK_RX)])
        .unwrap();
    assert_eq!(field(&values, 0), Err("NotSupported".into()));
    assert_eq!(field(&values, 1), Err("NotSupported".into()));
}

#[test]
fn power_instant_field_shares_the_power_usage_script() {
    let mut scenario = Scenario::with_gpus(3);
    scenario.devices[0].power_mw = Value::from([100_000, 200_000, 300_000, 400_000, 500_000]);
    scenario.devices[2].unsupported = vec!["power_instant".to_owned()];
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();

    let instant = |d: &nvml_wrapper::Device<'_>| -> Result<u32, String> {
        let values = d.field_values_for(&[FieldId(FI_POWER_INSTANT)]).unwrap();
        let sample = values[0].as_ref().unwrap();
        assert_eq!(sample.field, FieldId(FI_POWER_INSTANT));
        match sample.value.as_ref().map_err(|e| format!("{e:?}"))? {
            SampleValue::U32(mw) => Ok(*mw),
            other => panic!("POWER_INSTANT is an unsigned int, got {other:?}"),
        }
    };

    // Device 1: the constant milliwatt value, on both paths.
    let d1 = nvml.device_by_index(1).unwrap();
    let want = c(&scenario.devices[1].power_mw);
    assert_eq!(u64::from(instant(&d1).unwrap()), want);
    assert_eq!(u64::from(d1.power_usage().unwrap()), want);

    // Device 0: one read sequence, advanced by whichever call is made.
    let d0 = nvml.device_by_index(0).unwrap();
    assert_eq!(d0.power_usage().unwrap(), 100_000);
    assert_eq!(instant(&d0).unwrap(), 200_000);
    assert_eq!(instant(&d0).unwrap(), 300_000);
    assert_eq!(d0.power_usage().unwrap(), 400_000);
    assert_eq!(instant(&d0).unwrap(), 500_000);
    assert_eq!(d0.power_usage().unwrap(), 500_000);

    // Module scope (GPU + Grace CPU) is not supported on this host; unknown scopes are
    // invalid.
    let d0_raw = raw_field_values(&nvml, &d0, &[(FI_POWER_INSTANT, 1), (FI_POWER_INSTANT, 7)]);
    assert_eq!(
        d0_raw.iter().map(|e| e.nvml_return).collect::<Vec<_>>(),
        [RC_NOT_SUPPORTED, RC_INVALID_ARGUMENT]
    );

    // `power_instant` listed: only the field is NOT_SUPPORTED, power usage still works.
    let d2 = nvml.device_by_index(2).unwrap();
    assert_eq!(instant(&d2), Err("NotSupported".into()));
    assert_eq!(
        u64::from(d2.power_usage().unwrap()),
        c(&scenario.devices[2].power_mw)
    );
}

#[test]
fn events_deliver_once_per_set_then_time_out() {
    let mut scenario = Scenario::with_gpus(8);
    scenario.events = vec![Event::xid(2, 79), Event::xid(5, 48)];
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let devices: Vec<_> = (0..8).map(|i| nvml.device_by_index(i).unwrap()).collect();
    let mut set = nvml.create_event_set().unwrap();
    for d in &devices {
        set = d
            .register_events(
                EventTypes::CRITICAL_XID_ERROR | EventTypes::PSTATE_CHANGE,
                set,
            )
            .unwrap();
    }
    let first = set.wait(1_000).unwrap();
    assert_eq!(first.device.uuid().unwrap(), scenario.devices[2].uuid);
    assert_eq!(first.event_type, EventTypes::CRITICAL_XID_ERROR);
    assert_eq!(first.event_data, Some(XidError::Value(79)));
    let second = set.wait(1_000).unwrap();
    assert_eq!(second.device.uuid().unwrap(), scenario.devices[5].uuid);
    assert_eq!(second.event_data, Some(XidError::Value(48)));
    let started = Instant::now();
    assert!(matches!(set.wait(50), Err(NvmlError::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(50));

    // Appended by rewriting the file while the test waits: delivered, and only it.
    scenario.events.push(Event::xid(1, 31));
    scenario.events.push(Event {
        gpu: 4,
        kind: EventKind::Clock,
        data: 7,
        ..Event::default()
    });
    scenario.devices[6].lost = true;
    scenario.events.push(Event {
        gpu: 6,
        kind: EventKind::Pstate,
        data: 2,
        ..Event::default()
    });
    fake.write(&scenario);
    let third = set.wait(10_000).unwrap();
    assert_eq!(third.device.uuid().unwrap(), scenario.devices[1].uuid);
    assert_eq!(third.event_data, Some(XidError::Value(31)));
    // The clock event on GPU 4 is not registered; the lost GPU's event still delivers.
    let fourth = set.wait(1_000).unwrap();
    assert_eq!(fourth.event_type, EventTypes::PSTATE_CHANGE);
    assert!(matches!(fourth.device.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(set.wait(20), Err(NvmlError::Timeout)));

    // A second set only registered on GPU 5 sees GPU 5's event.
    let other = nvml.create_event_set().unwrap();
    let other = devices[5]
        .register_events(EventTypes::CRITICAL_XID_ERROR, other)
        .unwrap();
    assert_eq!(
        other.wait(1_000).unwrap().event_data,
        Some(XidError::Value(48))
    );
    assert!(matches!(other.wait(0), Err(NvmlError::Timeout)));
    other.release_events().unwrap();
}

#[test]
fn mig_events_name_the_mig_device() {
    let mut scenario = Scenario::with_gpus(1);
    scenario.devices[0].mig_instances = vec![MigInstance::sample(0, 0), MigInstance::sample(0, 1)];
    let gi = scenario.devices[0].mig_instances[1].gpu_instance_id;
    scenario.events = vec![Event {
        gpu_instance_id: Some(gi),
        compute_instance_id: Some(0),
        ..Event::xid(0, 94)
    }];
    let fake = Fake::new(&scenario);
    let nvml = fake.init().unwrap();
    let set = nvml
        .device_by_index(0)
        .unwrap()
        .register_events(
            EventTypes::CRITICAL_XID_ERROR,
            nvml.create_event_set().unwrap(),
        )
        .unwrap();
    let e = set.wait(1_000).unwrap();
    assert_eq!(
        e.device.uuid().unwrap(),
        scenario.devices[0].mig_instances[1].uuid
    );
}

#[test]
fn init_error_and_missing_or_invalid_scenario_fail_init() {
    let mut scenario = Scenario::with_gpus(1);
    scenario.init_error = Some(9);
    let fake = Fake::new(&scenario);
    assert!(matches!(fake.init(), Err(NvmlError::DriverNotLoaded)));
    scenario.init_error = None;
    fake.write(&scenario);
    assert_eq!(fake.init().unwrap().device_count().unwrap(), 1);

    std::fs::remove_file(fake.dir.path().join(SCENARIO_FILE_NAME)).unwrap();
    assert!(matches!(fake.init(), Err(NvmlError::Unknown)));
    write_atomic(fake.dir.path(), r#"{"devices": [{"no_such_field": 1}]}"#);
    assert!(matches!(fake.init(), Err(NvmlError::Unknown)));
}

#[test]
fn init_and_shutdown_nest() {
    let fake = Fake::new(&Scenario::with_gpus(1));
    let a = fake.init().unwrap();
    let b = fake.init().unwrap();
    drop(a);
    assert_eq!(b.device_count().unwrap(), 1);
    // SAFETY: plain call into the loaded library.
    assert_eq!(unsafe { b.lib().nvmlShutdown() }, 0);
    assert!(matches!(b.device_count(), Err(NvmlError::Uninitialized)));
    // SAFETY: as above.
    assert_eq!(unsafe { b.lib().nvmlShutdown() }, 1);
}

#[test]
fn copies_in_one_process_are_independent() {
    let a = Fake::new(&Scenario::with_gpus(2));
    let b = Fake::new(&Scenario::with_gpus(5));
    let na = a.init().unwrap();
    let nb = b.init().unwrap();
    assert_eq!(
        (na.device_count().unwrap(), nb.device_count().unwrap()),
        (2, 5)
    );
    let mut changed = Scenario::with_gpus(3);
    changed.devices[0] = Device::sample(9);
    a.write(&changed);
    eventually("reload of copy a", || {
        (na.device_count().unwrap() == 3).then_some(())
    });
    assert_eq!(
        na.device_by_index(0).unwrap().uuid().unwrap(),
        Device::sample(9).uuid
    );
    assert_eq!(nb.device_count().unwrap(), 5);
}
