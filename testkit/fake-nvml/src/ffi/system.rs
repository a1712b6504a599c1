//! Library lifetime, system queries and device enumeration.

use std::ffi::{CStr, c_char, c_void};

use super::{Out, api, write_str};
use crate::state::{GPU_IS_LOST, INVALID_ARGUMENT, NOT_FOUND, Target, UNINITIALIZED, lock};

/// `nvmlInit_v2`: reads the scenario (failing with `init_error`, or `NVML_ERROR_UNKNOWN` when
/// the file is missing or invalid) and counts one initialization.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> u32 {
    init()
}

/// Shared body of the init entry points (not calling an exported symbol, which the
/// executable could interpose).
fn init() -> u32 {
    api(|| lock().init())
}

/// `nvmlInit` (the v1 name): same as `nvmlInit_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit() -> u32 {
    init()
}

/// `nvmlInitWithFlags`: same as `nvmlInit_v2`; flags are ignored.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: u32) -> u32 {
    init()
}

/// `nvmlShutdown`: undoes one initialization.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> u32 {
    api(|| {
        let mut st = lock();
        if st.init_count == 0 {
            return Err(UNINITIALIZED);
        }
        st.init_count -= 1;
        Ok(())
    })
}

/// `nvmlErrorString`: a static description of a return code.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: u32) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"The operating system has blocked the request.",
        18 => c"RM has detected an NVML/RM version mismatch.",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        25 => c"Argument version mismatch",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// `nvmlSystemGetDriverVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: u32) -> u32 {
    api(|| {
        let mut st = lock();
        st.ready()?;
        // SAFETY: NVML contract: `version` is null or holds `length` bytes.
        unsafe { write_str(version, length, &st.scenario.driver_version) }
    })
}

/// `nvmlSystemGetNVMLVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: u32) -> u32 {
    api(|| {
        let mut st = lock();
        st.ready()?;
        // SAFETY: NVML contract: `version` is null or holds `length` bytes.
        unsafe { write_str(version, length, &st.scenario.nvml_version) }
    })
}

/// `nvmlDeviceGetCount_v2`: the number of scenario devices (lost ones included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(device_count: *mut u32) -> u32 {
    api(|| {
        // SAFETY: NVML contract: null or valid for a write.
        let out = unsafe { Out::new(device_count) }?;
        let mut st = lock();
        st.ready()?;
        out.set(st.scenario.devices.len() as u32);
        Ok(())
    })
}

/// `nvmlDeviceGetHandleByIndex_v2`: `INVALID_ARGUMENT` past the end, `GPU_IS_LOST` for a lost
/// GPU.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: u32,
    device: *mut *mut c_void,
) -> u32 {
    api(|| {
        // SAFETY: NVML contract: null or valid for a write.
        let out = unsafe { Out::new(device) }?;
        let mut st = lock();
        st.ready()?;
        let dev = st
            .scenario
            .devices
            .get(index as usize)
            .ok_or(INVALID_ARGUMENT)?;
        if dev.lost {
            return Err(GPU_IS_LOST);
        }
        out.set(
            Target {
                gpu: index,
                mig: None,
            }
            .handle(),
        );
        Ok(())
    })
}

/// `nvmlDeviceGetHandleByUUID`: GPU (`GPU-…`) or MIG device (`MIG-…`) UUIDs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut *mut c_void,
) -> u32 {
    api(|| {
        // SAFETY: NVML contract: null or valid for a write.
        let out = unsafe { Out::new(device) }?;
        if uuid.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: NVML contract: a non-null `uuid` is a NUL-terminated string.
        let uuid = unsafe { CStr::from_ptr(uuid) }.to_bytes();
        let mut st = lock();
        st.ready()?;
        for (i, dev) in st.scenario.devices.iter().enumerate() {
            let gpu = i as u32;
            let target = if dev.uuid.as_bytes() == uuid {
                Some(Target { gpu, mig: None })
            } else {
                dev.mig_instances
                    .iter()
                    .position(|m| m.uuid.as_bytes() == uuid)
                    .map(|j| Target {
                        gpu,
                        mig: Some(j as u32),
                    })
            };
            if let Some(t) = target {
                if dev.lost {
                    return Err(GPU_IS_LOST);
                }
                out.set(t.handle());
                return Ok(());
            }
        }
        Err(NOT_FOUND)
    })
}
