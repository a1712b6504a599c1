//! NVML event watch: Xid critical errors, single/double-bit ECC errors and (optionally)
//! P-state changes, each turned into one log record carrying the GPU's attributes.
//!
//! Blocking: [`watch`] waits in `nvmlEventSetWait` on its own thread, at most
//! [`WAIT_MS`] at a time, so it notices `stop` within that.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::config::EventKind;
use super::device::Identity;
use super::ffi;
use super::xid::{self, Severity};

/// Longest single wait in NVML, in milliseconds: the watcher's reaction time to `stop`.
pub const WAIT_MS: u32 = 200;

/// One NVML event, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuEvent {
    /// A critical Xid error with its code (`None`: NVML could not tell the code).
    Xid(Option<u64>),
    /// A single-bit (corrected) ECC error.
    SingleBitEcc,
    /// A double-bit (uncorrected) ECC error.
    DoubleBitEcc,
    /// A performance-state change.
    PstateChange,
}

fn mask(kinds: &[EventKind]) -> EventTypes {
    kinds.iter().fold(EventTypes::empty(), |m, k| {
        m | match k {
            EventKind::Xid => EventTypes::CRITICAL_XID_ERROR,
            EventKind::SingleBitEcc => EventTypes::SINGLE_BIT_ECC_ERROR,
            EventKind::DoubleBitEcc => EventTypes::DOUBLE_BIT_ECC_ERROR,
            EventKind::PstateChange => EventTypes::PSTATE_CHANGE,
        }
    })
}

/// Registers every GPU in `gpus` (index → identity) for `kinds` and calls `on_event` for
/// each event until `stop` is set. GPUs that refuse registration are logged and skipped.
/// Returns when `stop` is set, or at once when no GPU could be registered.
pub fn watch(
    nvml: Arc<Nvml>,
    gpus: Vec<Identity>,
    kinds: Vec<EventKind>,
    stop: Arc<AtomicBool>,
    mut on_event: impl FnMut(&Identity, GpuEvent),
) {
    let wanted = mask(&kinds);
    if wanted.is_empty() {
        return;
    }
    let Some((set, by_handle)) = register(&nvml, &gpus, wanted) else {
        return;
    };
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        match set.wait(WAIT_MS) {
            Ok(data) => {
                failures = 0;
                let Some(id) = by_handle.get(&ffi::handle_id(&data.device)).or_else(|| {
                    // A MIG handle or an unexpected one: match by UUID when the device answers.
                    let uuid = data.device.uuid().ok()?;
                    by_handle.values().find(|i| i.uuid == uuid)
                }) else {
                    continue;
                };
                let t = data.event_type;
                if t.contains(EventTypes::CRITICAL_XID_ERROR) {
                    let code = match data.event_data {
                        Some(XidError::Value(v)) => Some(v),
                        _ => None,
                    };
                    on_event(id, GpuEvent::Xid(code));
                }
                if t.contains(EventTypes::DOUBLE_BIT_ECC_ERROR) {
                    on_event(id, GpuEvent::DoubleBitEcc);
                }
                if t.contains(EventTypes::SINGLE_BIT_ECC_ERROR) {
                    on_event(id, GpuEvent::SingleBitEcc);
                }
                if t.contains(EventTypes::PSTATE_CHANGE) {
                    on_event(id, GpuEvent::PstateChange);
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => {
                // NVML returns at once on some failures (a GPU fell off the bus): back off so
                // that the watcher does not spin, and keep watching the others.
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "waiting for GPU events failed; retrying");
                }
                std::thread::park_timeout(std::time::Duration::from_millis(u64::from(WAIT_MS)));
            }
        }
    }
}

/// Registers every GPU that accepts `wanted` on one event set. nvml-wrapper frees the set
/// when a registration fails, so a refusal starts over on a new set without that GPU.
fn register<'n>(
    nvml: &'n Nvml,
    gpus: &[Identity],
    wanted: EventTypes,
) -> Option<(EventSet<'n>, HashMap<usize, Identity>)> {
    let mut skipped = vec![false; gpus.len()];
    'attempt: loop {
        let mut set = match nvml.create_event_set() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create an NVML event set; GPU events (Xid, ECC) will not be logged");
                return None;
            }
        };
        let mut by_handle = HashMap::new();
        for (i, id) in gpus.iter().enumerate() {
            if skipped[i] {
                continue;
            }
            let Ok(device) = nvml.device_by_index(id.index) else {
                skipped[i] = true;
                continue;
            };
            let types = wanted & device.supported_event_types().unwrap_or(EventTypes::all());
            if types.is_empty() {
                tracing::info!(gpu = %id.uuid, "GPU supports none of the configured events");
                skipped[i] = true;
                continue;
            }
            set = match device.register_events(types, set) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(gpu = %id.uuid, error = %e.error, "GPU refused event registration; its events will not be logged");
                    skipped[i] = true;
                    continue 'attempt;
                }
            };
            by_handle.insert(ffi::handle_id(&device), id.clone());
        }
        return (!by_handle.is_empty()).then_some((set, by_handle));
    }
}

/// An OTLP log record.
pub fn log_record(
    now: u64,
    severity: Severity,
    event_name: &str,
    body: String,
    attributes: Vec<KeyValue>,
) -> LogRecord {
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: severity.number(),
        severity_text: severity.text().to_owned(),
        event_name: event_name.to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes,
        ..Default::default()
    }
}

/// The log record of one NVML event on `id`.
pub fn event_record(id: &Identity, event: &GpuEvent, now: u64) -> LogRecord {
    match event {
        GpuEvent::Xid(code) => {
            let triage = code.map(xid::lookup);
            let mut attrs = id.with([kv(semconv::HPCOTEL_GPU_EVENT, "xid")]);
            let body = match triage {
                Some(x) => {
                    attrs.push(kv_int(
                        semconv::HPCOTEL_GPU_XID,
                        i64::try_from(x.code).unwrap_or(i64::MAX),
                    ));
                    attrs.push(kv(semconv::HPCOTEL_GPU_XID_MEANING, x.meaning));
                    attrs.push(kv(semconv::HPCOTEL_GPU_XID_ACTION, x.action));
                    format!(
                        "Xid {} on GPU {} ({}): {}. {}",
                        x.code, id.index, id.uuid, x.meaning, x.action
                    )
                }
                None => format!(
                    "Xid error of unknown code on GPU {} ({}); see the kernel log (dmesg) for NVRM: Xid lines.",
                    id.index, id.uuid
                ),
            };
            let severity = triage.map_or(Severity::Warn, |x| x.severity);
            log_record(now, severity, "hpcotel.gpu.xid", body, attrs)
        }
        GpuEvent::SingleBitEcc => log_record(
            now,
            Severity::Info,
            "hpcotel.gpu.ecc",
            format!(
                "Single-bit (corrected) ECC error on GPU {} ({}).",
                id.index, id.uuid
            ),
            id.with([kv(semconv::HPCOTEL_GPU_EVENT, "ecc_single_bit")]),
        ),
        GpuEvent::DoubleBitEcc => log_record(
            now,
            Severity::Error,
            "hpcotel.gpu.ecc",
            format!(
                "Double-bit (uncorrected) ECC error on GPU {} ({}). {}",
                id.index,
                id.uuid,
                xid::lookup(48).action
            ),
            id.with([kv(semconv::HPCOTEL_GPU_EVENT, "ecc_double_bit")]),
        ),
        GpuEvent::PstateChange => log_record(
            now,
            Severity::Info,
            "hpcotel.gpu.pstate_change",
            format!(
                "Performance state changed on GPU {} ({}).",
                id.index, id.uuid
            ),
            id.with([kv(semconv::HPCOTEL_GPU_EVENT, "pstate_change")]),
        ),
    }
}
