//! A fake `libnvidia-ml.so`: NVML's C ABI over a scripted scenario file, so tests exercise
//! NVML code through nvml-wrapper's real dynamic-loading path
//! (`Nvml::builder().lib_path(path).init()`) on machines without a GPU.
//!
//! # Loading and the scenario file
//!
//! Built as a cdylib (`libhpcotel_fake_nvml.so`, see [`locate_cdylib`]). At `nvmlInit` the
//! library reads `nvml-scenario.json` from the directory of the loaded `.so` (found with
//! `dladdr`), or the file named by `$HPCOTEL_FAKE_NVML_SCENARIO`. A missing or invalid file
//! makes `nvmlInit` return `NVML_ERROR_UNKNOWN` (999) and print the reason to stderr once.
//! Afterwards any call re-reads the file (at most every ~10 ms) when its inode, mtime or
//! length changed, so a test rewrites it atomically (temp file + rename) to change values,
//! lose a GPU or append events mid-run; an invalid rewrite keeps the previous scenario.
//! Tests in one process isolate themselves by loading separate copies of the `.so` (each in
//! its own temp directory next to its own scenario): `dlopen` of a different file is a
//! separate instance with separate state. A loaded copy pins itself (`RTLD_NODELETE`) so
//! its read counters and delivered events survive `nvmlShutdown` + re-init.
//!
//! # Scenario format ([`scenario::Scenario`], JSON)
//!
//! ```json
//! {
//!   "driver_version": "550.54.15", "nvml_version": "12.550.54.15",
//!   "init_error": 9,
//!   "devices": [{
//!     "uuid": "GPU-…", "name": "NVIDIA H100 80GB HBM3", "serial": "…", "minor": 1,
//!     "pci_bus_id": "00000000:18:00.0",
//!     "utilization_gpu": [10, 95, 95, 10], "power_mw": 250000, "…": "…",
//!     "fan_speeds_percent": [30, 35],
//!     "processes": [{"pid": 1, "used_memory_bytes": 1024, "sm_util": 5, "mem_util": 1,
//!                    "enc_util": 0, "dec_util": 0}],
//!     "mig_instances": [{"uuid": "MIG-…", "name": "… MIG 1g.10gb", "gpu_instance_id": 9,
//!                        "compute_instance_id": 0, "memory_total_bytes": 1,
//!                        "memory_used_bytes": 0, "processes": []}],
//!     "nvlink_tx_kib": 1000000, "nvlink_rx_kib": 2000000, "nvlink_links": 18,
//!     "lost": false, "unsupported": ["fan_speeds_percent", "power_instant"]
//!   }],
//!   "events": [{"gpu": 2, "kind": "xid", "data": 79}]
//! }
//! ```
//!
//! Every object rejects unknown fields and defaults missing ones (a device defaults to all
//! zeros, `nvlink_links` included, i.e. no NVLink; [`scenario::Device::sample`] gives a
//! plausible, per-index distinct H100 with 18 links).
//! Sampled numbers are a [`scenario::Value`]: a number, or an array indexed by how many
//! times that field was read on that device (read `k` returns `seq[min(k, len-1)]`; counters
//! survive reloads), which scripts a spike lasting N samples. Events are append-only: each
//! (identified by position) is delivered once per event set, to sets where its GPU is
//! registered for its kind (`xid` 0x8, `single_bit_ecc` 0x1, `double_bit_ecc` 0x2,
//! `pstate` 0x4, `clock` 0x10, `power_source` 0x80).
//!
//! # Behaviour
//!
//! * Before `nvmlInit` / after the last `nvmlShutdown` (they nest): `NVML_ERROR_UNINITIALIZED`.
//! * Null out-pointers: `NVML_ERROR_INVALID_ARGUMENT`. Two-call queries (processes, retired
//!   pages, process utilization) return `NVML_ERROR_INSUFFICIENT_SIZE` with the needed count.
//! * `lost: true`: every call on the GPU and its MIG devices, handle lookups included,
//!   returns `NVML_ERROR_GPU_IS_LOST`.
//! * `unsupported`: a call returns `NVML_ERROR_NOT_SUPPORTED` when a scenario field it reads is
//!   listed (field values: in that entry's own status). Extra names: `processes` (process
//!   list and utilization), `process_utilization`, `mig_instances` (MIG mode/count/handles),
//!   `events` (supported types, registration), `index`, `power_instant` (field 186 only).
//! * `nvmlDeviceGetMinorNumber` reads `minor`, or the device's index when it is unset;
//!   [`scenario::Device::sample`] sets `index ^ 1`, so a sample's minor is never its index.
//! * MIG devices (handles from `nvmlDeviceGetMigDeviceHandleByIndex`): UUID, name, memory
//!   info, processes, GPU/compute instance ids and the parent handle work; the rest
//!   (utilization included) is `NVML_ERROR_NOT_SUPPORTED`. `nvmlDeviceGetMaxMigDeviceCount`
//!   reports 7 by default like real hardware; indices past the instances are `NOT_FOUND`.
//! * `nvmlDeviceGetProcessUtilization` returns `NVML_ERROR_NOT_FOUND` when the GPU has no
//!   processes, as NVML does.
//! * Field values served: `NVML_FI_DEV_ECC_SBE/DBE_VOL_TOTAL` (3, 4), NVLink CRC FLIT /
//!   CRC DATA / REPLAY / RECOVERY `_TOTAL` (38, 45, 52, 59), `MEMORY_TEMP` (82),
//!   `NVLINK_THROUGHPUT_DATA_TX/RX` (138, 139), `REMAPPED_COR/UNC/PENDING/FAILURE`
//!   (142..=145), `POWER_INSTANT` (186); any other id gets `NOT_SUPPORTED` in its own
//!   entry. Other fields ignore `scopeId`; these do not:
//!   * 138/139 take the NVLink link in `scopeId`: `0xFFFFFFFF` (UINT_MAX) reads the
//!     device's `nvlink_tx_kib`/`nvlink_rx_kib` total, a link below `nvlink_links` (18 in
//!     [`scenario::Device::sample`]) reads `total / nvlink_links` (integer division), any
//!     other scope `NVML_ERROR_INVALID_ARGUMENT`; `nvlink_links: 0` (no NVLink) makes both
//!     `NOT_SUPPORTED`. nvml-wrapper's `field_values_for` always sends scope 0 (link 0).
//!   * 186 (`VALUE_TYPE_UNSIGNED_INT`, mW) reads `power_mw` at scope 0 (GPU) with the same
//!     read counter as `nvmlDeviceGetPowerUsage`, so a scripted spike advances on whichever
//!     call the caller makes; scope 1 (module, needs a Grace CPU) is `NOT_SUPPORTED`, other
//!     scopes `INVALID_ARGUMENT`. Unsupported name `power_instant` disables only the field,
//!     `power_mw` both.
//!
//!   Every entry that yields a value counts one read of its field's script, whatever the
//!   scope; failed entries count none.

pub mod scenario;

mod ffi;
mod state;

use std::path::{Path, PathBuf};

pub use state::{SCENARIO_ENV, SCENARIO_FILE_NAME};

/// File name of the built fake library.
pub const CDYLIB_FILE_NAME: &str = "libhpcotel_fake_nvml.so";

/// Environment variable naming the built fake library explicitly.
pub const CDYLIB_ENV: &str = "HPCOTEL_FAKE_NVML_LIB";

/// Finds the built `libhpcotel_fake_nvml.so`: `$HPCOTEL_FAKE_NVML_LIB`, else the newest of
/// the copies next to the running executable, in its parent and `deps/` directories, and
/// under `$CARGO_TARGET_DIR/{debug,release}[/deps]`. Cargo builds it into
/// `target/<profile>/deps/` whenever a crate depending on `hpcotel-fake-nvml` is built.
pub fn locate_cdylib() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(CDYLIB_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("${CDYLIB_ENV} = {} is not a file", p.display()))
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("deps"));
        if let Some(parent) = exe_dir.parent() {
            dirs.push(parent.to_path_buf());
            dirs.push(parent.join("deps"));
        }
        dirs.push(exe_dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        for profile in ["debug", "release"] {
            dirs.push(target.join(profile));
            dirs.push(target.join(profile).join("deps"));
        }
    }
    dirs.iter()
        .map(|d| d.join(CDYLIB_FILE_NAME))
        .filter_map(|p| {
            let modified = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((modified, p))
        })
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p)
        .ok_or_else(|| {
            format!(
                "{CDYLIB_FILE_NAME} not found (looked in {}); run `cargo build -p hpcotel-fake-nvml` \
                 or set ${CDYLIB_ENV}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}
