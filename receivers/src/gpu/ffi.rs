//! The NVML calls nvml-wrapper does not wrap (MIG instance ids, field values with a scope),
//! and a device handle's identity. The only
//! `unsafe` in this crate: it stays at the NVML FFI boundary.
#![allow(unsafe_code)]

use nvml_wrapper::Device;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper_sys::bindings::{
    nvmlFieldValue_t, nvmlValueType_enum_NVML_VALUE_TYPE_DOUBLE as NVML_VALUE_TYPE_DOUBLE,
    nvmlValueType_enum_NVML_VALUE_TYPE_SIGNED_INT as NVML_VALUE_TYPE_SIGNED_INT,
    nvmlValueType_enum_NVML_VALUE_TYPE_SIGNED_LONG_LONG as NVML_VALUE_TYPE_SIGNED_LONG_LONG,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT as NVML_VALUE_TYPE_UNSIGNED_INT,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG as NVML_VALUE_TYPE_UNSIGNED_LONG,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG_LONG as NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
    nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_SHORT as NVML_VALUE_TYPE_UNSIGNED_SHORT,
};

/// `NVML_SUCCESS`.
const NVML_SUCCESS: u32 = 0;

/// The raw NVML handle of `device`, as a number, to recognise the device an event names
/// even when the device no longer answers (a lost GPU cannot report its UUID).
pub fn handle_id(device: &Device<'_>) -> usize {
    // SAFETY: the handle is only read as an opaque value and never dereferenced or passed
    // back to NVML from here.
    unsafe { device.handle() as usize }
}

/// A MIG device's GPU and compute instance ids (`None` where NVML does not tell).
pub fn mig_instance_ids(device: &Device<'_>) -> (Option<u32>, Option<u32>) {
    let lib = device.nvml().lib();
    let (Ok(get_gi), Ok(get_ci)) = (
        lib.nvmlDeviceGetGpuInstanceId.as_ref(),
        lib.nvmlDeviceGetComputeInstanceId.as_ref(),
    ) else {
        return (None, None);
    };
    let mut gi: u32 = 0;
    let mut ci: u32 = 0;
    // SAFETY: `device.handle()` is a live handle owned by `device` (which borrows the loaded
    // library), the symbols were resolved from that library, and the out-pointers are valid
    // `u32`s on this stack frame for the duration of the calls.
    let (rg, rc) = unsafe {
        let h = device.handle();
        (get_gi(h, &mut gi), get_ci(h, &mut ci))
    };
    (
        (rg == NVML_SUCCESS).then_some(gi),
        (rc == NVML_SUCCESS).then_some(ci),
    )
}

/// `scopeId` asking NVML for the sum over every NVLink (`UINT_MAX`).
pub const ALL_LINKS: u32 = u32::MAX;

/// `nvmlDeviceGetFieldValues` with a `scopeId` per field (nvml-wrapper's `field_values_for`
/// always sends scope 0, which for per-link fields means link 0 only). Each entry is `None`
/// when NVML answered that field with an error.
pub fn scoped_field_values(
    device: &Device<'_>,
    requests: &[(u32, u32)],
) -> Result<Vec<Option<f64>>, NvmlError> {
    let sym = device
        .nvml()
        .lib()
        .nvmlDeviceGetFieldValues
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut values: Vec<nvmlFieldValue_t> = requests
        .iter()
        .map(|&(field, scope)| {
            // SAFETY: nvmlFieldValue_t is a plain C struct (integers and a union of numbers);
            // all-zero bytes are a valid value of it.
            let mut v: nvmlFieldValue_t = unsafe { std::mem::zeroed() };
            v.fieldId = field;
            v.scopeId = scope;
            v
        })
        .collect();
    let count = i32::try_from(values.len()).map_err(|_| NvmlError::InvalidArg)?;
    // SAFETY: the handle is live for `device`'s lifetime, the symbol comes from the library
    // that handle belongs to, and `values` holds exactly `count` initialised entries that
    // NVML fills in place.
    let ret = unsafe { sym(device.handle(), count, values.as_mut_ptr()) };
    nvml_wrapper::error::nvml_try(ret)?;
    Ok(values.iter().map(decode).collect())
}

fn decode(v: &nvmlFieldValue_t) -> Option<f64> {
    if v.nvmlReturn != NVML_SUCCESS {
        return None;
    }
    // SAFETY: NVML set `valueType` to say which member of the union it wrote.
    unsafe {
        Some(match v.valueType {
            NVML_VALUE_TYPE_DOUBLE => v.value.dVal,
            NVML_VALUE_TYPE_UNSIGNED_INT => f64::from(v.value.uiVal),
            NVML_VALUE_TYPE_UNSIGNED_LONG => v.value.ulVal as f64,
            NVML_VALUE_TYPE_UNSIGNED_LONG_LONG => v.value.ullVal as f64,
            NVML_VALUE_TYPE_SIGNED_LONG_LONG => v.value.sllVal as f64,
            NVML_VALUE_TYPE_SIGNED_INT => f64::from(v.value.siVal),
            NVML_VALUE_TYPE_UNSIGNED_SHORT => f64::from(v.value.usVal),
            _ => return None,
        })
    }
}
