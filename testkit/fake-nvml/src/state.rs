//! The library's process-wide state: the current scenario, read counters, event sets.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, c_void};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::scenario::{Device, MigInstance, Scenario, Value};

/// `NVML_SUCCESS`.
pub(crate) const SUCCESS: u32 = 0;
/// `NVML_ERROR_UNINITIALIZED`.
pub(crate) const UNINITIALIZED: u32 = 1;
/// `NVML_ERROR_INVALID_ARGUMENT`.
pub(crate) const INVALID_ARGUMENT: u32 = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub(crate) const NOT_SUPPORTED: u32 = 3;
/// `NVML_ERROR_NOT_FOUND`.
pub(crate) const NOT_FOUND: u32 = 6;
/// `NVML_ERROR_INSUFFICIENT_SIZE`.
pub(crate) const INSUFFICIENT_SIZE: u32 = 7;
/// `NVML_ERROR_TIMEOUT`.
pub(crate) const TIMEOUT: u32 = 10;
/// `NVML_ERROR_GPU_IS_LOST`.
pub(crate) const GPU_IS_LOST: u32 = 15;
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
pub(crate) const ARGUMENT_VERSION_MISMATCH: u32 = 25;
/// `NVML_ERROR_UNKNOWN`.
pub(crate) const UNKNOWN: u32 = 999;

/// The scenario file name looked up next to the loaded library.
pub const SCENARIO_FILE_NAME: &str = "nvml-scenario.json";
/// Environment variable that overrides the scenario file path (process-wide: every loaded
/// copy of the library then reads the same file).
pub const SCENARIO_ENV: &str = "HPCOTEL_FAKE_NVML_SCENARIO";

/// How often calls look at the scenario file's metadata.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// What identifies one version of the scenario file: a rewrite by rename changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    len: u64,
}

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        len: m.len(),
    })
}

/// Which device a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub gpu: u32,
    /// `Some(j)`: MIG device `j` of `gpu`.
    pub mig: Option<u32>,
}

const DEVICE_HANDLE_BASE: usize = 0x4e56_0000_0000;
const SET_HANDLE_BASE: usize = 0x4e45_0000_0000;

impl Target {
    /// The opaque `nvmlDevice_t` value for this device. nvml-wrapper never dereferences it.
    pub fn handle(self) -> *mut c_void {
        let mig = self.mig.map_or(0, |j| j as usize + 1);
        (DEVICE_HANDLE_BASE + ((self.gpu as usize) << 12) + mig) as *mut c_void
    }

    /// Decodes a handle minted by [`Target::handle`].
    pub fn from_handle(h: *mut c_void) -> Option<Target> {
        let off = (h as usize).checked_sub(DEVICE_HANDLE_BASE)?;
        if off >= 1 << 32 {
            return None;
        }
        let mig = (off & 0xfff) as u32;
        Some(Target {
            gpu: (off >> 12) as u32,
            mig: mig.checked_sub(1),
        })
    }
}

/// The opaque `nvmlEventSet_t` for set `id`.
pub(crate) fn set_handle(id: u64) -> *mut c_void {
    (SET_HANDLE_BASE + id as usize) as *mut c_void
}

/// Decodes an event set handle.
pub(crate) fn set_id(h: *mut c_void) -> Option<u64> {
    let off = (h as usize).checked_sub(SET_HANDLE_BASE)?;
    (off < 1 << 32).then_some(off as u64)
}

/// One event set: its registrations and what it has delivered.
#[derive(Debug, Default)]
pub(crate) struct EventSetState {
    /// GPU index → registered `nvmlEventType*` mask.
    pub masks: HashMap<u32, u64>,
    /// Positions in `Scenario::events` already delivered by this set.
    pub delivered: HashSet<usize>,
}

/// Per-(device, field, sub-index) read counts, kept across scenario reloads.
#[derive(Debug, Default)]
pub(crate) struct Reads(HashMap<(Target, &'static str, u32), u64>);

impl Reads {
    /// Reads `v` as read number k of this field, and counts the read.
    pub fn read(&mut self, t: Target, field: &'static str, sub: u32, v: &Value) -> u64 {
        let k = self.0.entry((t, field, sub)).or_insert(0);
        let out = v.at(*k);
        *k += 1;
        out
    }

    /// What the next read would return, without counting it.
    pub fn peek(&self, t: Target, field: &'static str, sub: u32, v: &Value) -> u64 {
        v.at(self.0.get(&(t, field, sub)).copied().unwrap_or(0))
    }
}

/// Everything behind the lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// `nvmlInit` calls minus `nvmlShutdown` calls.
    pub init_count: u32,
    /// The last successfully loaded scenario.
    pub scenario: Scenario,
    /// Read counters.
    pub reads: Reads,
    /// Live event sets by id.
    pub sets: HashMap<u64, EventSetState>,
    /// Next event set id.
    pub next_set: u64,
    path: Option<PathBuf>,
    loaded: Option<FileId>,
    last_poll: Option<Instant>,
    printed: HashSet<String>,
    pinned: bool,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| Mutex::new(State::default()));

/// Locks the state (a panic while holding it does not make it unusable).
pub(crate) fn lock() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of the loaded copy of this library, found with `dladdr` on one of its functions.
pub(crate) fn own_library_path() -> Option<PathBuf> {
    let addr = own_library_path as fn() -> Option<PathBuf> as *const c_void;
    // SAFETY: `Dl_info` is plain data for which all-zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `addr` is an address inside this object and `info` is a valid out-pointer.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: on success `dli_fname` points to a NUL-terminated string owned by the loader that
    // lives as long as the object stays loaded; we copy it out at once.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

/// Where the scenario lives: `$HPCOTEL_FAKE_NVML_SCENARIO`, else next to this library.
pub(crate) fn scenario_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(SCENARIO_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let lib = own_library_path().ok_or("dladdr could not find the fake library's own path")?;
    let dir = lib
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", lib.display()))?;
    Ok(dir.join(SCENARIO_FILE_NAME))
}

fn read_scenario(path: &Path) -> Result<(Scenario, Option<FileId>), String> {
    let before = file_id(path);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read scenario {}: {e}", path.display()))?;
    let scenario = Scenario::from_json(&text)
        .map_err(|e| format!("invalid scenario {}: {e}", path.display()))?;
    Ok((scenario, before))
}

impl State {
    /// Prints `msg` to stderr unless this copy of the library already printed it.
    pub fn complain(&mut self, msg: String) {
        if self.printed.insert(msg.clone()) {
            eprintln!("fake libnvidia-ml: {msg}");
        }
    }

    /// `nvmlInit`: (re)reads the scenario and counts the init, or says why it fails.
    pub fn init(&mut self) -> Result<(), u32> {
        let path = match scenario_path() {
            Ok(p) => p,
            Err(msg) => {
                self.complain(msg);
                return Err(UNKNOWN);
            }
        };
        let (scenario, id) = match read_scenario(&path) {
            Ok(v) => v,
            Err(msg) => {
                self.complain(msg);
                return Err(UNKNOWN);
            }
        };
        if let Some(code) = scenario.init_error.filter(|c| *c != SUCCESS) {
            return Err(code);
        }
        self.scenario = scenario;
        self.loaded = id;
        self.path = Some(path);
        self.last_poll = Some(Instant::now());
        self.init_count += 1;
        self.pin();
        Ok(())
    }

    /// Keeps this copy loaded after nvml-wrapper's `dlclose`, so counters and delivered
    /// events survive a shutdown and re-init, like a real driver's state.
    fn pin(&mut self) {
        if self.pinned {
            return;
        }
        self.pinned = true;
        let Some(lib) = own_library_path() else {
            return;
        };
        let Ok(c) = std::ffi::CString::new(lib.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: `c` is a valid C string; RTLD_NOLOAD only takes a reference to (and marks
        // NODELETE) an object that is already loaded, this one, and runs no initializers.
        unsafe {
            libc::dlopen(
                c.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            )
        };
    }

    /// Fails with `NVML_ERROR_UNINITIALIZED` outside init/shutdown, else picks up a rewritten
    /// scenario file.
    pub fn ready(&mut self) -> Result<(), u32> {
        if self.init_count == 0 {
            return Err(UNINITIALIZED);
        }
        self.poll();
        Ok(())
    }

    /// Re-reads the scenario when the file changed, at most every [`POLL`].
    pub fn poll(&mut self) {
        let now = Instant::now();
        if self.last_poll.is_some_and(|t| now.duration_since(t) < POLL) {
            return;
        }
        self.last_poll = Some(now);
        let Some(path) = self.path.clone() else {
            return;
        };
        let id = file_id(&path);
        if id.is_none() || id == self.loaded {
            return;
        }
        match read_scenario(&path) {
            Ok((scenario, id)) => {
                self.scenario = scenario;
                self.loaded = id;
            }
            Err(msg) => {
                // Keep serving the previous scenario; try again once the file changes.
                self.loaded = id;
                self.complain(format!("{msg} (keeping the previous scenario)"));
            }
        }
    }

    /// Resolves a device handle for a device call.
    pub fn device(&mut self, h: *mut c_void) -> Result<Call<'_>, u32> {
        self.ready()?;
        let t = Target::from_handle(h).ok_or(INVALID_ARGUMENT)?;
        let dev = self
            .scenario
            .devices
            .get(t.gpu as usize)
            .ok_or(INVALID_ARGUMENT)?;
        let mig = match t.mig {
            None => None,
            Some(j) => Some(dev.mig_instances.get(j as usize).ok_or(INVALID_ARGUMENT)?),
        };
        if dev.lost {
            return Err(GPU_IS_LOST);
        }
        Ok(Call {
            t,
            dev,
            mig,
            reads: &mut self.reads,
        })
    }
}

/// One device call in progress: the target, its scenario entry and the read counters.
pub(crate) struct Call<'a> {
    /// The handle's target.
    pub t: Target,
    /// The GPU (the parent, for a MIG device).
    pub dev: &'a Device,
    /// The MIG device, when the handle names one.
    pub mig: Option<&'a MigInstance>,
    reads: &'a mut Reads,
}

impl<'a> Call<'a> {
    /// `NVML_ERROR_NOT_SUPPORTED` on MIG device handles.
    pub fn gpu_only(&self) -> Result<&'a Device, u32> {
        match self.mig {
            Some(_) => Err(NOT_SUPPORTED),
            None => Ok(self.dev),
        }
    }

    /// `NVML_ERROR_NOT_SUPPORTED` when any of `names` is listed in `unsupported`.
    pub fn check(&self, names: &[&str]) -> Result<(), u32> {
        if self.is_unsupported(names) {
            Err(NOT_SUPPORTED)
        } else {
            Ok(())
        }
    }

    /// Whether any of `names` is listed in `unsupported`.
    pub fn is_unsupported(&self, names: &[&str]) -> bool {
        self.dev
            .unsupported
            .iter()
            .any(|u| names.contains(&u.as_str()))
    }

    /// A GPU-only field read: checks MIG and `unsupported`, then counts the read.
    pub fn field(&mut self, name: &'static str, v: &Value) -> Result<u64, u32> {
        self.gpu_only()?;
        self.check(&[name])?;
        Ok(self.read(name, 0, v))
    }

    /// Counts and returns read number k of `v`.
    pub fn read(&mut self, name: &'static str, sub: u32, v: &Value) -> u64 {
        self.reads.read(self.t, name, sub, v)
    }

    /// The next read of `v`, not counted.
    pub fn peek(&self, name: &'static str, sub: u32, v: &Value) -> u64 {
        self.reads.peek(self.t, name, sub, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        for t in [
            Target { gpu: 0, mig: None },
            Target { gpu: 7, mig: None },
            Target {
                gpu: 3,
                mig: Some(0),
            },
            Target {
                gpu: 65_535,
                mig: Some(4000),
            },
        ] {
            assert!(!t.handle().is_null());
            assert_eq!(Target::from_handle(t.handle()), Some(t));
        }
        assert_eq!(Target::from_handle(std::ptr::null_mut()), None);
        assert_eq!(set_id(set_handle(5)), Some(5));
        assert_eq!(set_id(Target { gpu: 0, mig: None }.handle()), None);
    }
}
