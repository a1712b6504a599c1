//! NVML's C ABI over the scenario.
//!
//! # Safety
//!
//! Every exported function has NVML's contract: each pointer argument is null or valid for
//! the reads/writes NVML documents (string buffers for `length` bytes, arrays for the count
//! passed in). Null out-pointers return `NVML_ERROR_INVALID_ARGUMENT`. No function unwinds:
//! a panic becomes `NVML_ERROR_UNKNOWN`.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_char;
use std::os::raw::c_ulong;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::state::{INSUFFICIENT_SIZE, INVALID_ARGUMENT, SUCCESS, UNKNOWN};

mod device;
mod events;
mod system;

/// Runs an API body: `Ok` → `NVML_SUCCESS`, `Err(code)` → code, panic → `NVML_ERROR_UNKNOWN`.
pub(crate) fn api(f: impl FnOnce() -> Result<(), u32>) -> u32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => UNKNOWN,
    }
}

/// A checked non-null out-pointer.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// `NVML_ERROR_INVALID_ARGUMENT` when `p` is null.
    ///
    /// # Safety
    ///
    /// `p` is null or valid for a write of `T`, until [`Out::set`] is called.
    pub unsafe fn new(p: *mut T) -> Result<Out<T>, u32> {
        if p.is_null() {
            Err(INVALID_ARGUMENT)
        } else {
            Ok(Out(p))
        }
    }

    /// Writes the result.
    pub fn set(self, v: T) {
        // SAFETY: non-null and valid for writes, as promised to `Out::new`.
        unsafe { self.0.write(v) }
    }
}

/// Copies `s` and a NUL into the caller's `length`-byte buffer.
///
/// # Safety
///
/// `buf` is null or valid for writes of `length` bytes.
pub(crate) unsafe fn write_str(buf: *mut c_char, length: u32, s: &str) -> Result<(), u32> {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let bytes = s.as_bytes();
    if bytes.len() + 1 > length as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds `length` >= len + 1 bytes (caller's contract, checked above), and
    // the source is a distinct Rust string.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        buf.add(bytes.len()).write(0);
    }
    Ok(())
}

/// Copies `items` into the caller's array.
///
/// # Safety
///
/// `p` is valid for writes of `items.len()` elements (the caller checked the capacity).
pub(crate) unsafe fn write_slice<T: Copy>(p: *mut T, items: &[T]) {
    for (i, item) in items.iter().enumerate() {
        // SAFETY: `i < items.len()`, within the capacity the caller guaranteed.
        unsafe { p.add(i).write(*item) }
    }
}

/// Microseconds since the Unix epoch (NVML's sample timestamps).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `nvmlPciInfo_t` (v3 layout).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct PciInfo {
    pub bus_id_legacy: [c_char; 16],
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub pci_device_id: u32,
    pub pci_sub_system_id: u32,
    pub bus_id: [c_char; 32],
}

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Memory {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MemoryV2 {
    pub version: u32,
    pub total: u64,
    pub reserved: u64,
    pub free: u64,
    pub used: u64,
}

/// `NVML_STRUCT_VERSION(Memory, 2)`.
pub(crate) const MEMORY_V2_VERSION: u32 = (std::mem::size_of::<MemoryV2>() | (2 << 24)) as u32;

/// `nvmlBAR1Memory_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Bar1Memory {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Utilization {
    pub gpu: u32,
    pub memory: u32,
}

/// `nvmlValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(dead_code)] // The variants document the C layout.
pub(crate) union FieldValueUnion {
    pub d: f64,
    pub si: i32,
    pub ui: u32,
    pub ul: c_ulong,
    pub ull: u64,
    pub sll: i64,
    pub us: u16,
}

/// `nvmlFieldValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FieldValue {
    pub field_id: u32,
    pub scope_id: u32,
    pub timestamp: i64,
    pub latency_usec: i64,
    pub value_type: u32,
    pub nvml_return: u32,
    pub value: FieldValueUnion,
}

/// `NVML_VALUE_TYPE_UNSIGNED_INT`.
pub(crate) const VALUE_TYPE_UINT: u32 = 1;
/// `NVML_VALUE_TYPE_UNSIGNED_LONG_LONG`.
pub(crate) const VALUE_TYPE_ULL: u32 = 3;

/// `nvmlProcessInfo_t` (`nvmlProcessInfo_v2_t`, what the `_v3` process queries fill).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ProcessInfo {
    pub pid: u32,
    pub used_gpu_memory: u64,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ProcessUtilizationSample {
    pub pid: u32,
    pub time_stamp: u64,
    pub sm_util: u32,
    pub mem_util: u32,
    pub enc_util: u32,
    pub dec_util: u32,
}

/// `nvmlEventData_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct EventData {
    pub device: *mut std::ffi::c_void,
    pub event_type: u64,
    pub event_data: u64,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
}

/// NVML's "no id" value for GPU/compute instance ids.
pub(crate) const NO_ID: u32 = 0xFFFF_FFFF;

// The layouts nvml-wrapper-sys 0.10 expects (x86_64 / aarch64 Linux).
const _: () = {
    assert!(std::mem::size_of::<PciInfo>() == 68);
    assert!(std::mem::size_of::<MemoryV2>() == 40);
    assert!(std::mem::size_of::<FieldValue>() == 40);
    assert!(std::mem::size_of::<ProcessInfo>() == 24);
    assert!(std::mem::size_of::<ProcessUtilizationSample>() == 32);
    assert!(std::mem::size_of::<EventData>() == 32);
};
