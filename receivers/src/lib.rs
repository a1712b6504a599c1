//! hpcotel-receivers: one folder per receiver.
//!
//! - [`otlp`]: OTLP over gRPC and HTTP (protobuf and JSON), spans, metrics and logs.
//! - [`host`]: host metrics (CPU, memory, load, network, filesystem, paging) named per the
//!   OpenTelemetry `system.*` semantic conventions.

pub mod gpu;
pub mod host;
pub mod kubernetes;
pub mod kubernetes_logs;
pub mod otlp;

use hpcotel_core::semconv;
use hpcotel_core::telemetry::kv;
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// The node's resource attributes, for what describes the node (host and GPU metrics):
/// `host.name` and, under Kubernetes, `k8s.node.name`. With `K8S_NODE_NAME` set (the
/// downward API's `spec.nodeName` in a DaemonSet) both are the node's name, because a pod's
/// own host name is the pod's name, which changes with every rollout; otherwise `host.name`
/// is the system's host name.
pub fn host_attributes() -> Vec<KeyValue> {
    match std::env::var("K8S_NODE_NAME") {
        Ok(node) if !node.is_empty() => vec![
            kv(semconv::HOST_NAME, node.clone()),
            kv(semconv::K8S_NODE_NAME, node),
        ],
        _ => vec![kv(
            semconv::HOST_NAME,
            sysinfo::System::host_name().unwrap_or_else(|_| "unknown".to_owned()),
        )],
    }
}
