//! Attribute and metric names hpcotel emits, each defined once.
//!
//! OpenTelemetry semantic-convention names are spelled exactly as upstream; names hpcotel
//! invents live under `hpcotel.*` and are listed in the README's attribute reference.

// --- OpenTelemetry semantic conventions: resource ---

/// `service.name` (stable).
pub const SERVICE_NAME: &str = "service.name";
/// `service.version` (stable).
pub const SERVICE_VERSION: &str = "service.version";
/// `service.instance.id`.
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `host.name`.
pub const HOST_NAME: &str = "host.name";
/// `host.arch`.
pub const HOST_ARCH: &str = "host.arch";
/// `os.type`.
pub const OS_TYPE: &str = "os.type";

// --- hpcotel's own ---

/// Instrumentation scope name of everything hpcotel itself produces.
pub const SCOPE_NAME: &str = "hpcotel";
/// The `service.name` hpcotel reports for its own telemetry.
pub const SELF_SERVICE_NAME: &str = "hpcotel";
/// `hpcotel.component.id`: the config id of the component a self-metric is about (`otlp/in`).
pub const HPCOTEL_COMPONENT_ID: &str = "hpcotel.component.id";
/// `hpcotel.signal`: traces, metrics or logs.
pub const HPCOTEL_SIGNAL: &str = "hpcotel.signal";
/// `hpcotel.reason`: why items were refused or dropped (`pipeline_full`, `permanent`, ...).
pub const HPCOTEL_REASON: &str = "hpcotel.reason";

// --- hpcotel's own metrics (self-telemetry, `service.telemetry.metrics`) ---

/// `hpcotel.receiver.accepted` (counter, `{item}`): items a receiver handed to its pipelines.
pub const METRIC_HPCOTEL_RECEIVER_ACCEPTED: &str = "hpcotel.receiver.accepted";
/// `hpcotel.receiver.refused` (counter, `{item}`): items a receiver turned away, by reason.
pub const METRIC_HPCOTEL_RECEIVER_REFUSED: &str = "hpcotel.receiver.refused";
/// `hpcotel.processor.dropped` (counter, `{item}`): items a processor discarded, by reason.
pub const METRIC_HPCOTEL_PROCESSOR_DROPPED: &str = "hpcotel.processor.dropped";
/// `hpcotel.exporter.sent` (counter, `{item}`): items an exporter delivered.
pub const METRIC_HPCOTEL_EXPORTER_SENT: &str = "hpcotel.exporter.sent";
/// `hpcotel.exporter.send_failed` (counter, `{item}`): items in failed export attempts
/// (retried or not), by reason.
pub const METRIC_HPCOTEL_EXPORTER_SEND_FAILED: &str = "hpcotel.exporter.send_failed";
/// `hpcotel.exporter.dropped` (counter, `{item}`): items an exporter gave up on, by reason.
pub const METRIC_HPCOTEL_EXPORTER_DROPPED: &str = "hpcotel.exporter.dropped";
/// `hpcotel.exporter.queue.size` (gauge, `{item}`): items waiting in an export queue.
pub const METRIC_HPCOTEL_EXPORTER_QUEUE_SIZE: &str = "hpcotel.exporter.queue.size";
/// `hpcotel.exporter.queue.capacity` (gauge, `{item}`): an export queue's capacity.
pub const METRIC_HPCOTEL_EXPORTER_QUEUE_CAPACITY: &str = "hpcotel.exporter.queue.capacity";

// --- OpenTelemetry semantic conventions: system metrics (host receiver) ---

/// `os.type` value for this build's operating system (`linux`, `darwin`, `windows`, ...).
pub fn os_type_value() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// `cpu.logical_number`: the logical CPU a data point is about.
pub const CPU_LOGICAL_NUMBER: &str = "cpu.logical_number";
/// `system.memory.state`: used | free | buffers | cached.
pub const SYSTEM_MEMORY_STATE: &str = "system.memory.state";
/// `system.paging.state`: used | free.
pub const SYSTEM_PAGING_STATE: &str = "system.paging.state";
/// `system.device`: device identifier (e.g. `/dev/sda1`).
pub const SYSTEM_DEVICE: &str = "system.device";
/// `system.filesystem.mountpoint`.
pub const SYSTEM_FILESYSTEM_MOUNTPOINT: &str = "system.filesystem.mountpoint";
/// `system.filesystem.type` (e.g. `ext4`).
pub const SYSTEM_FILESYSTEM_TYPE: &str = "system.filesystem.type";
/// `system.filesystem.state`: used | free | reserved.
pub const SYSTEM_FILESYSTEM_STATE: &str = "system.filesystem.state";
/// `system.filesystem.mode`: rw | ro.
pub const SYSTEM_FILESYSTEM_MODE: &str = "system.filesystem.mode";
/// `network.interface.name`.
pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
/// `network.io.direction`: receive | transmit.
pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";

/// `system.cpu.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_CPU_UTILIZATION: &str = "system.cpu.utilization";
/// `system.cpu.logical.count` (updowncounter, `{cpu}`).
pub const METRIC_SYSTEM_CPU_LOGICAL_COUNT: &str = "system.cpu.logical.count";
/// `system.cpu.load_average.1m` (gauge, `{thread}`; Collector hostmetrics naming).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_1M: &str = "system.cpu.load_average.1m";
/// `system.cpu.load_average.5m` (gauge, `{thread}`).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_5M: &str = "system.cpu.load_average.5m";
/// `system.cpu.load_average.15m` (gauge, `{thread}`).
pub const METRIC_SYSTEM_CPU_LOAD_AVERAGE_15M: &str = "system.cpu.load_average.15m";
/// `system.memory.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_MEMORY_USAGE: &str = "system.memory.usage";
/// `system.memory.limit` (updowncounter, `By`).
pub const METRIC_SYSTEM_MEMORY_LIMIT: &str = "system.memory.limit";
/// `system.memory.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_MEMORY_UTILIZATION: &str = "system.memory.utilization";
/// `system.memory.linux.available` (updowncounter, `By`; Linux only).
pub const METRIC_SYSTEM_MEMORY_LINUX_AVAILABLE: &str = "system.memory.linux.available";
/// `system.paging.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_PAGING_USAGE: &str = "system.paging.usage";
/// `system.paging.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_PAGING_UTILIZATION: &str = "system.paging.utilization";
/// `system.network.io` (counter, `By`).
pub const METRIC_SYSTEM_NETWORK_IO: &str = "system.network.io";
/// `system.network.packets` (counter, `{packet}`).
pub const METRIC_SYSTEM_NETWORK_PACKETS: &str = "system.network.packets";
/// `system.network.errors` (counter, `{error}`).
pub const METRIC_SYSTEM_NETWORK_ERRORS: &str = "system.network.errors";
/// `system.filesystem.usage` (updowncounter, `By`).
pub const METRIC_SYSTEM_FILESYSTEM_USAGE: &str = "system.filesystem.usage";
/// `system.filesystem.utilization` (gauge, `1`).
pub const METRIC_SYSTEM_FILESYSTEM_UTILIZATION: &str = "system.filesystem.utilization";
