//! A fake NVML driver for tests: a private copy of the `hpcotel-fake-nvml` cdylib in a temp
//! directory, next to the scenario file it serves.
//!
//! ```no_run
//! use hpcotel_testkit::nvml::{Event, FakeNvml, Scenario};
//!
//! let fake = FakeNvml::new(&Scenario::with_gpus(8));
//! // Load it through nvml-wrapper's real dynamic-loading path:
//! // let nvml = nvml_wrapper::Nvml::builder().lib_path(fake.library_path().as_os_str()).init()?;
//! fake.update(|s| s.devices[3].lost = true); // seen by the library within ~10 ms
//! fake.push_event(Event::xid(2, 79));
//! ```
//!
//! Each [`FakeNvml`] is a separate file, so `dlopen` gives it its own instance and state:
//! tests running in parallel in one process do not see each other's GPUs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::TempDir;

pub use hpcotel_fake_nvml::scenario::*;
pub use hpcotel_fake_nvml::{CDYLIB_ENV, SCENARIO_FILE_NAME, locate_cdylib};

/// The file name the library copy gets (NVML's soname).
pub const LIBRARY_FILE_NAME: &str = "libnvidia-ml.so.1";

/// A fake `libnvidia-ml.so.1` and its scenario in a temp directory (removed on drop).
#[derive(Debug)]
pub struct FakeNvml {
    dir: TempDir,
    scenario: Mutex<Scenario>,
}

impl FakeNvml {
    /// Copies the built fake library into a new temp directory and writes `scenario` there.
    ///
    /// # Panics
    ///
    /// When the built library cannot be found (run `cargo build -p hpcotel-fake-nvml`, or
    /// depend on `hpcotel-testkit`/`hpcotel-fake-nvml` so cargo builds it), when the scenario
    /// is invalid, or on I/O errors.
    pub fn new(scenario: &Scenario) -> FakeNvml {
        let lib = locate_cdylib().unwrap_or_else(|e| panic!("fake NVML: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("fake-nvml-")
            .tempdir()
            .expect("fake NVML: create temp dir");
        let copy = dir.path().join(LIBRARY_FILE_NAME);
        std::fs::copy(&lib, &copy).unwrap_or_else(|e| {
            panic!(
                "fake NVML: copy {} to {}: {e}",
                lib.display(),
                copy.display()
            )
        });
        let fake = FakeNvml {
            dir,
            scenario: Mutex::new(scenario.clone()),
        };
        fake.write(scenario);
        fake
    }

    /// The library to hand to `Nvml::builder().lib_path(..)`.
    pub fn library_path(&self) -> PathBuf {
        self.dir.path().join(LIBRARY_FILE_NAME)
    }

    /// The temp directory holding the library and the scenario.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The scenario file the library reads.
    pub fn scenario_path(&self) -> PathBuf {
        self.dir.path().join(SCENARIO_FILE_NAME)
    }

    /// The scenario as last written.
    pub fn scenario(&self) -> Scenario {
        self.lock().clone()
    }

    /// Edits the scenario and atomically rewrites the file (temp file + rename); the library
    /// picks it up on its next call after ~10 ms. Read counters persist; events are
    /// append-only (each is identified by its position).
    ///
    /// # Panics
    ///
    /// When the edited scenario is invalid (see `Scenario::validate`) or on I/O errors.
    pub fn update(&self, f: impl FnOnce(&mut Scenario)) {
        let mut scenario = self.lock();
        f(&mut scenario);
        self.write(&scenario);
    }

    /// Appends an event (delivered once to every event set registered for it).
    pub fn push_event(&self, event: Event) {
        self.update(|s| s.events.push(event));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scenario> {
        self.scenario.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, scenario: &Scenario) {
        if let Err(e) = scenario.validate() {
            panic!("fake NVML: invalid scenario: {e}");
        }
        let tmp = self.dir.path().join(".nvml-scenario.json.tmp");
        std::fs::write(&tmp, scenario.to_json()).expect("fake NVML: write scenario");
        std::fs::rename(&tmp, self.scenario_path()).expect("fake NVML: rename scenario");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use nvml_wrapper::Nvml;
    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enums::event::XidError;
    use nvml_wrapper::error::NvmlError;

    use super::*;

    #[test]
    fn nvml_fake_loads_from_another_crate() {
        let fake = FakeNvml::new(&Scenario::with_gpus(3));
        assert!(fake.library_path().is_file());
        assert!(fake.scenario_path().is_file());
        assert_eq!(fake.dir(), fake.library_path().parent().unwrap());

        let nvml = Nvml::builder()
            .lib_path(fake.library_path().as_os_str())
            .init()
            .unwrap();
        assert_eq!(nvml.device_count().unwrap(), 3);
        let gpu1 = nvml.device_by_index(1).unwrap();
        assert_eq!(gpu1.uuid().unwrap(), Device::sample(1).uuid);

        let set = nvml.create_event_set().unwrap();
        let set = gpu1
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .unwrap();
        assert!(matches!(set.wait(0), Err(NvmlError::Timeout)));
        fake.push_event(Event::xid(1, 79));
        assert_eq!(fake.scenario().events.len(), 1);
        let event = set.wait(10_000).unwrap();
        assert_eq!(event.event_data, Some(XidError::Value(79)));

        fake.update(|s| s.devices[1].lost = true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(gpu1.power_usage(), Err(NvmlError::GpuLost)) {
            assert!(Instant::now() < deadline, "GPU 1 never became lost");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(nvml.device_by_index(0).unwrap().power_usage().is_ok());
    }

    #[test]
    #[should_panic(expected = "invalid scenario")]
    fn nvml_fake_rejects_invalid_updates() {
        let fake = FakeNvml::new(&Scenario::with_gpus(1));
        fake.push_event(Event::xid(5, 79));
    }
}
