//! Processors: pipeline stages between receivers and exporters, one folder each.
//!
//! - [`batch`]: groups items into larger batches by count and time, so exporters send fewer,
//!   larger requests.
//! - [`enrich`]: adds what the node's Catalog knows about a pod (workloads, Argo CD
//!   Application, revision) to the resources of the data it sent.

pub mod batch;
pub mod enrich;
