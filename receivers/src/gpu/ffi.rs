//! The two NVML calls nvml-wrapper does not wrap, and a device handle's identity. The only
//! `unsafe` in this crate: it stays at the NVML FFI boundary.
#![allow(unsafe_code)]

use nvml_wrapper::Device;

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
