//! The `enrich` processor: attaches what the node's Catalog knows about a pod — its identity,
//! its workloads, the Argo CD Application that deploys it and the revision it runs — to the
//! resource of every `ResourceSpans`, `ResourceMetrics` and `ResourceLogs` that comes from
//! that pod.
//!
//! **Finding the pod.** From the resource's own attributes, the first of these present (a
//! non-empty string) decides:
//! 1. `k8s.pod.uid`, looked up among the Catalog's pods;
//! 2. `k8s.pod.ip`, through the Catalog's pod IP index (running, non-host-network pods);
//! 3. `k8s.namespace.name` + `k8s.pod.name` together (what the gpu receiver's PodResources
//!    data carries); when the Catalog holds several pods of that name (a StatefulSet pod
//!    being replaced), the most recently created.
//!
//! An identifier that is present but unknown to the Catalog ends the search — a resource
//! that names one pod is never attributed to another — and the resource passes unchanged, as
//! does a resource with none of them.
//!
//! **What is added**, each only when known, only when listed in `attributes`, and never over
//! an attribute the resource already has (the workload's own SDK knows better) — except on
//! a resource the otlp receiver marked `hpcotel.identity.source=connection` (its pod
//! verified from the connection's peer address), where the Catalog's values replace the
//! data's own claims, so that a pod cannot claim another's workload or revision:
//! `k8s.pod.uid`, `k8s.pod.name`, `k8s.namespace.name`, `k8s.node.name`; the workload names
//! of the pod's direct owner and of the top of its owner chain (`k8s.replicaset.name`,
//! `k8s.deployment.name`, `k8s.job.name`, `k8s.cronjob.name`, `k8s.statefulset.name`,
//! `k8s.daemonset.name`, by the owner's kind; other kinds add nothing); and, from
//! [`Snapshot::correlate`](hpcotel_core::catalog::Snapshot::correlate),
//! `vcs.ref.head.revision` with `hpcotel.revision.source` (which source gave it),
//! `vcs.repository.url.full`, `hpcotel.argocd.application` and
//! `deployment.environment.name`.
//!
//! **Cost.** One Catalog snapshot (an `Arc` clone) per batch; each pod is correlated once per
//! batch however many resources name it; a batch passes through untouched while the Catalog
//! knows no pods. Nothing is held between batches and nothing is dropped or counted: every
//! batch is sent on, enriched, in order, awaiting the output when it is full.
//!
//! **Identity.** The otlp receiver sets `k8s.pod.*` from the connection's peer address when
//! it is a pod of this node (see its `identity` setting), so OTLP data is found by its
//! verified `k8s.pod.uid` first.

mod config;
mod processor;
#[cfg(test)]
mod tests;

pub use config::{Config, DEFAULT_ATTRIBUTES, SUPPORTED_ATTRIBUTES};
pub use processor::EnrichProcessor;
