//! Component identities and the three lifecycle traits.
//!
//! Lifecycle, for every component: the collector *builds* it from its config (binding
//! sockets, opening files — errors there stop start-up with a message naming the component),
//! then *runs* it as a task in a `JoinSet`. Shutdown is ordered so that nothing accepted is
//! lost: receivers are cancelled first and return once their in-flight requests have been
//! handed to the pipeline; processors see their input close and flush; exporter queues see
//! their input close, deliver what they hold, and call [`Exporter::shutdown`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::channel;
use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_util::sync::CancellationToken;

use crate::pipeline::Outputs;
use crate::signal::{Batch, Signal};
use crate::telemetry::ComponentStats;

/// Error a component's `run` or `shutdown` ends with.
pub type ComponentError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    /// Brings data in.
    Receiver,
    /// Transforms data between receivers and exporters.
    Processor,
    /// Sends data out.
    Exporter,
}

impl ComponentKind {
    /// `receiver`, `processor` or `exporter`.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
        }
    }
}

/// A component instance name as written in config: `type` or `type/name`, e.g. `otlp/in`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

/// Why a component id did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid component id '{id}': {why}")]
pub struct InvalidComponentId {
    id: String,
    why: &'static str,
}

impl ComponentId {
    /// A component id from its type and optional instance name.
    pub fn new(kind: impl Into<String>, name: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            name: name.map(str::to_owned),
        }
    }

    /// The component type (`otlp` in `otlp/in`).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The instance name (`in` in `otlp/in`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl FromStr for ComponentId {
    type Err = InvalidComponentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| InvalidComponentId {
            id: s.to_owned(),
            why,
        };
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        if kind.is_empty() {
            return Err(bad("the type before '/' is empty"));
        }
        if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("the type may hold only letters, digits and '_'"));
        }
        if let Some(n) = name {
            if n.is_empty() {
                return Err(bad("the name after '/' is empty"));
            }
            if n.contains('/') || n.chars().any(char::is_whitespace) {
                return Err(bad("the name may not hold '/' or spaces"));
            }
        }
        Ok(Self::new(kind, name))
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

impl Serialize for ComponentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a running receiver is given.
pub struct ReceiverContext {
    /// This receiver's id.
    pub id: ComponentId,
    /// Where to send what it receives, per signal; counts accepted and refused items.
    pub outputs: Outputs,
    /// Cancelled when the collector shuts down.
    pub shutdown: CancellationToken,
}

/// A source of telemetry.
///
/// Contract:
/// - Construction (outside this trait, in the receiver's own `new`/`bind`) does every fallible
///   set-up step, so that `hpcotel run` fails at start with a clear message (port in use,
///   socket missing) rather than later.
/// - `run` may block only by awaiting; it runs until `ctx.shutdown` is cancelled, then stops
///   accepting new work, hands every in-flight request's data to `ctx.outputs` (or refuses
///   it to its client), and returns. Dropping `ctx.outputs` on return is what lets the
///   pipelines downstream drain and finish.
/// - Data is handed over with [`Outputs::try_send`] (clients that can retry are answered
///   "retry later" when the pipeline is full) or [`Outputs::send`] (sources that can wait,
///   such as samplers, which then skip a tick rather than queue without bound).
#[async_trait]
pub trait Receiver: Send + 'static {
    /// Runs the receiver until `ctx.shutdown` is cancelled; see the trait contract.
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError>;
}

/// A pipeline stage between receivers and exporters.
///
/// Contract: `run` consumes `input` until it is closed (every sender dropped), sending what it
/// produces to `output`, awaiting `output` when it is full (that is the backpressure). Both
/// are bounded in items ([`channel`]); what the stage holds between them (a batch being
/// assembled) is its own bound, and must be documented by its config. When
/// `input` closes, it flushes anything it holds to `output` and returns. It never returns
/// early because of shutdown: shutdown reaches it as its input closing, so nothing accepted
/// upstream is lost.
#[async_trait]
pub trait Processor: Send + 'static {
    /// Runs the stage; see the trait contract.
    async fn run(
        self: Box<Self>,
        input: channel::Receiver,
        output: channel::Sender,
        stats: Arc<ComponentStats>,
    ) -> Result<(), ComponentError>;
}

/// What an export that reached the backend achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOutcome {
    /// Items the backend rejected in an OTLP partial success. They are not retried and are
    /// counted as dropped with reason `rejected`.
    pub rejected: u64,
    /// The backend's message accompanying a partial success, if any.
    pub message: String,
}

/// Why an export did not reach the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Transient: the export queue retries it with exponential backoff, waiting at least
    /// `retry_after` when the backend said so (RetryInfo / Retry-After).
    #[error("retryable: {reason}")]
    Retryable {
        /// What went wrong, for logs.
        reason: String,
        /// How long the backend asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// Permanent: retrying cannot help (e.g. HTTP 400, gRPC INVALID_ARGUMENT). The batch is
    /// dropped and counted with reason `permanent`.
    #[error("permanent: {reason}")]
    Permanent {
        /// What went wrong, for logs.
        reason: String,
    },
    /// The backend refused the request as larger than it accepts (HTTP 413; gRPC
    /// RESOURCE_EXHAUSTED without RetryInfo saying the message is too large, as grpc-go and
    /// tonic answer). Retrying the same request cannot help, smaller ones can: the export
    /// queue sends a batch of several items again as two halves, and drops a single item,
    /// counted with reason `too_large`.
    #[error("too large: {reason}")]
    TooLarge {
        /// What went wrong, for logs.
        reason: String,
    },
}

impl ExportError {
    /// True for [`ExportError::Retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExportError::Retryable { .. })
    }
}

/// A request an exporter [encoded](Exporter::encode) from a batch: the bytes it will send
/// (serialized and, as the exporter is configured, compressed), with what the queue counts.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// The signal of the batch it was made from.
    pub signal: Signal,
    /// Spans, metric data points or log records in it.
    pub items: usize,
    /// The request as it goes out.
    pub body: bytes::Bytes,
}

/// A destination for telemetry, driven by an export queue.
///
/// Contract:
/// - `export` sends one batch once. It may await network or disk I/O and must return within
///   the exporter's own configured timeout. It does not retry: it classifies failures as
///   [`ExportError::Retryable`] or [`ExportError::Permanent`] and the queue decides.
/// - The batch is borrowed: the queue keeps it for a retry, and several exporters of one
///   pipeline share it, so nothing is copied per attempt or per exporter. An exporter that
///   needs to own data copies only what it needs (usually it encodes straight from it).
/// - `export` may be called concurrently (the queue's consumers), hence `&self`.
/// - `shutdown` is called once, after the last `export` has returned; it flushes buffers
///   (files, summaries) and releases resources. No `export` follows it.
/// - An exporter whose backend takes requests up to a size says so with
///   [`max_request_size`](Exporter::max_request_size); the queue then never hands it a batch
///   whose request is longer, except a batch of one item, which it drops instead.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Sends one batch; see the trait contract.
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError>;

    /// The longest request this exporter sends, in bytes of the encoded OTLP request
    /// ([`Batch::encoded_len`]), or `None` for no limit (the default). The export queue cuts
    /// a longer batch with [`Batch::split_to_fit`] and drops, counted with reason
    /// `too_large`, an item whose request alone is longer.
    fn max_request_size(&self) -> Option<usize> {
        None
    }

    /// The request this exporter would send for `batch`, encoded once for the queue to hold;
    /// `None` (the default) when the exporter takes batches. An error drops the batch (it is
    /// counted with the error's reason). See the trait contract.
    fn encode(&self, _batch: &Batch) -> Option<Result<EncodedRequest, ExportError>> {
        None
    }

    /// Sends one request that [`encode`](Exporter::encode) made, as `export` does a batch.
    /// Only called on exporters whose `encode` returns `Some`.
    async fn export_encoded(
        &self,
        _request: &EncodedRequest,
    ) -> Result<ExportOutcome, ExportError> {
        Err(ExportError::Permanent {
            reason: "this exporter takes batches, not encoded requests".into(),
        })
    }

    /// The batch an [`EncodedRequest`] of this exporter holds, decoded again: only needed
    /// when the backend refused it as too large, to send it as two halves. `None` (the
    /// default) drops it instead, counted `too_large`.
    fn decode(&self, _request: &EncodedRequest) -> Option<Batch> {
        None
    }

    /// Flushes and releases; see the trait contract.
    async fn shutdown(&self) -> Result<(), ComponentError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_component_ids() {
        let id: ComponentId = "otlp/in".parse().unwrap();
        assert_eq!((id.kind(), id.name()), ("otlp", Some("in")));
        assert_eq!(id.to_string(), "otlp/in");
        assert_eq!("debug".parse::<ComponentId>().unwrap().name(), None);
        for bad in ["", "/x", "otlp/", "ot-lp", "a/b/c"] {
            assert!(
                bad.parse::<ComponentId>().is_err(),
                "{bad} should not parse"
            );
        }
    }
}
