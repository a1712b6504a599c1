//! hpcotel-core: what every hpcotel component shares.
//!
//! - [`signal`]: the telemetry model. Signals travel as `opentelemetry-proto` prost types in
//!   [`Batch`]es; there is no second model.
//! - [`component`]: component identities (`otlp/in`) and the lifecycle traits
//!   [`Receiver`], [`Processor`] and [`Exporter`], each with its written contract.
//! - [`channel`]: bounded channels of batches whose capacity is counted in items; every hop
//!   of a pipeline and every export queue is one.
//! - [`pipeline`]: the bounded, all-or-nothing fan-out that receivers send into.
//! - [`raw`]: spans and log records kept as the protobuf bytes they arrived as, for stages
//!   that read only resources.
//! - [`telemetry`]: per-component counters (accepted, refused, sent, failed, dropped, queue
//!   size) and their conversion to OTLP metrics.
//! - [`catalog`]: what the node knows about pods and GPUs, written by receivers and read by
//!   processors through cheap snapshots.
//! - [`metric_set`]: the builder receivers that sample use for their OTLP metrics.
//! - [`semconv`]: every attribute and metric name hpcotel emits, defined once.
//! - [`wal`]: the write-ahead log under the durable export queue: checksummed segments,
//!   one cursor per consumer, recovery that cuts torn tails and skips corruption.

pub mod ack;
pub mod catalog;
pub mod channel;
pub mod component;
pub mod config;
pub mod metric_set;
pub mod pipeline;
pub mod raw;
pub mod semconv;
pub mod server;
pub mod signal;
pub mod telemetry;
pub mod wal;

pub use ack::{AckSource, Acks, Settled};
pub use catalog::{Catalog, Correlation, PodRef};
pub use component::{
    ComponentError, ComponentId, ComponentKind, EncodedRequest, ExportError, ExportOutcome,
    Exporter, Processor, Receiver, ReceiverContext,
};
pub use config::{BearerAuthConfig, HostPort, Secret, TlsClientConfig, TlsServerConfig};
pub use opentelemetry_proto::tonic as proto;
pub use pipeline::{Output, Outputs, SendError};
pub use raw::RawBatch;
pub use signal::{Batch, Signal, metric_point_count};
pub use telemetry::{ComponentStats, Counter, ExportFailure, MemoryUse, ReasonCount, Telemetry};
