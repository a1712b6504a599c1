//! The `kubernetes` receiver: watches the pods on this node (kube-runtime `watcher` with a
//! `spec.nodeName` field selector and backoff) and Argo CD Applications, fetches the pods'
//! owner chains lazily (ReplicaSet → Deployment, Job → CronJob / MPIJob / ScaledJob,
//! StatefulSet, DaemonSet) and keeps all of it in the Catalog, where the `enrich` processor
//! reads the pod → workload → Application → revision chain.
//!
//! A node agent runs whether or not a pipeline lists it; listed in a logs pipeline, it emits
//! the lifecycle of this node's pods — container terminations, restarts, waiting reasons and
//! readiness changes — as log records ([`lifecycle`], `lifecycle_logs`). The cluster output — rollout
//! traces ([`rollout`], [`tracker`]), Event logs ([`events`]) and KEDA condition logs
//! ([`keda`]) — comes from the `mode: cluster` instance or the node agent holding the Lease
//! ([`lease`]). Only the fields correlation
//! needs are kept, never the raw objects, so `managedFields` are never cached. A (re)list
//! replaces the Catalog's pods and Applications whole at its end, so objects deleted while a
//! watch was down disappear and none is lost; while the API server is unreachable the last
//! state stays and every other receiver keeps working.

mod config;
mod convert;
pub mod events;
pub mod keda;
pub mod lease;
pub mod lifecycle;
pub mod rbac;
mod receiver;
pub mod rollout;
pub mod tracker;

#[cfg(test)]
mod tests;

pub use config::{
    ArgoCdConfig, AuthType, Config, DEFAULT_ARGOCD_NAMESPACE, DEFAULT_SETTLE_TIMEOUT, Mode,
    NODE_NAME_ENV, RolloutsConfig, TrackingMethod,
};
pub use receiver::{KubernetesReceiver, WORKLOAD_KINDS, client};

/// Why the kubernetes receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be configured.
    #[error("kubernetes receiver: cannot use {what}: {source}")]
    Config {
        /// What was being set up.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
