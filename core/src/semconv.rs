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
/// `k8s.node.name` (stable).
pub const K8S_NODE_NAME: &str = "k8s.node.name";

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
