//! Processors: pipeline stages between receivers and exporters, one folder each.
//!
//! - [`batch`]: groups items into larger batches by count and time, so exporters send fewer,
//!   larger requests.

pub mod batch;
