//! The receiver itself: binding, the state both protocols share, and the run loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hpcotel_core::{
    Batch, Catalog, ComponentError, Counter, HostPort, Outputs, Receiver, ReceiverContext, Secret,
    SendError,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, Charge, Exhausted};
use super::config::{Config, Identity, Limits};
use super::{grpc, http, identity, tls};

/// Bytes charged to the memory budget for a request's decoded form, per byte of its
/// (decompressed) protobuf encoding. Decoded OTLP is larger than its encoding (every
/// attribute becomes a `KeyValue` with its own allocations); 2 is an estimate for typical
/// spans, logs and metric points, not a bound.
pub(super) const DECODED_BYTES_PER_ENCODED_BYTE: usize = 2;
/// At most one "memory budget full" warning per this long.
const EXHAUSTED_WARN_EVERY: Duration = Duration::from_secs(10);

/// How long `run` waits, after shutdown was asked for, for in-flight requests to finish
/// before it gives up on them and returns. The collector bounds it further: receivers get
/// half of `service.shutdown_timeout`, then are stopped and their outputs revoked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What can go wrong setting up or running the OTLP receiver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not be bound (port in use, address not local, permission).
    #[error("could not listen on {endpoint} for OTLP/{protocol}: {source}")]
    Bind {
        /// `gRPC` or `HTTP`.
        protocol: &'static str,
        /// The configured endpoint.
        endpoint: HostPort,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("could not read TLS file '{}': {source}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material is unusable (no certificate in the file, key not matching, ...).
    #[error("invalid TLS setup for OTLP/{protocol}: {reason}")]
    Tls {
        /// `gRPC` or `HTTP`.
        protocol: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The gRPC server stopped with an error.
    #[error("OTLP/gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A bound, not yet serving, OTLP receiver. Build it with [`OtlpReceiver::bind`], then run
/// it through [`hpcotel_core::Receiver::run`].
pub struct OtlpReceiver {
    config: Config,
    grpc: Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    http: Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    catalog: Catalog,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (grpc, http) = self.local_addrs();
        f.debug_struct("OtlpReceiver")
            .field("grpc", &grpc)
            .field("http", &http)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Loads the TLS material and binds the enabled protocols' listeners; serves nothing
    /// until run. Errors name the endpoint or file at fault.
    pub async fn bind(config: &Config) -> Result<OtlpReceiver> {
        let grpc = match &config.protocols.grpc {
            None => None,
            Some(g) => {
                let tls = g.tls.as_ref().map(tls::grpc_acceptor).transpose()?;
                Some((listen("gRPC", &g.endpoint).await?, tls))
            }
        };
        let http = match &config.protocols.http {
            None => None,
            Some(h) => {
                let tls = h.tls.as_ref().map(tls::http_acceptor).transpose()?;
                Some((listen("HTTP", &h.endpoint).await?, tls))
            }
        };
        Ok(OtlpReceiver {
            config: config.clone(),
            grpc,
            http,
            catalog: Catalog::new(),
        })
    }

    /// Reads pod identities from `catalog` (see `identity` in the config): without one,
    /// the receiver knows no pods and stamps no identity.
    pub fn with_catalog(mut self, catalog: Catalog) -> OtlpReceiver {
        self.catalog = catalog;
        self
    }

    /// The addresses actually bound, `(grpc, http)`; `None` for a protocol not enabled.
    /// Useful when an endpoint asks for port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.grpc.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            self.http.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        )
    }
}

async fn listen(protocol: &'static str, endpoint: &HostPort) -> Result<TcpListener> {
    TcpListener::bind((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| Error::Bind {
            protocol,
            endpoint: endpoint.clone(),
            source,
        })
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let OtlpReceiver {
            config,
            grpc,
            http,
            catalog,
        } = *self;
        let largest = [
            config
                .protocols
                .grpc
                .as_ref()
                .map(|g| g.max_recv_msg_size_bytes()),
            config
                .protocols
                .http
                .as_ref()
                .map(|h| h.max_request_body_size),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0);
        let cgroup = super::budget::cgroup_memory_limit();
        let limit = config.limits.memory_budget_bytes(cgroup, largest);
        tracing::info!(
            receiver = %ctx.id,
            memory_budget_mib = limit / (1024 * 1024),
            cgroup_memory_limit = ?cgroup,
            "otlp receiver memory budget for requests in flight"
        );
        let budget = Budget::new(
            limit,
            config.limits.per_client_percent,
            Some(ctx.outputs.stats().clone()),
        );
        let shared = Arc::new(Shared {
            outputs: ctx.outputs,
            auth: config.auth.as_ref().map(|a| a.token.clone()),
            pipeline_wait: config.pipeline_wait,
            retry_after: config.retry_after,
            budget,
            limits: config.limits.clone(),
            identity: config.identity.clone(),
            catalog,
            last_exhausted_warning: std::sync::Mutex::new(None),
        });
        // A child token: when one protocol stops on its own (an error), the other stops too,
        // without cancelling anything beyond this receiver.
        let stop: CancellationToken = ctx.shutdown.child_token();
        tracing::debug!(receiver = %ctx.id, "otlp receiver serving");

        let grpc_task = async {
            let r = match (grpc, &config.protocols.grpc) {
                (Some((listener, tls)), Some(cfg)) => {
                    grpc::serve(listener, tls, cfg, shared.clone(), stop.clone()).await
                }
                _ => Ok(()),
            };
            if r.is_err() {
                stop.cancel();
            }
            r
        };
        let http_task = async {
            if let (Some((listener, tls)), Some(cfg)) = (http, &config.protocols.http) {
                http::serve(listener, tls, cfg, shared.clone(), stop.clone()).await;
            }
            Ok(())
        };
        let (g, h): (Result<()>, Result<()>) = tokio::join!(grpc_task, http_task);
        tracing::debug!(receiver = %ctx.id, "otlp receiver stopped");
        g?;
        h?;
        Ok(())
    }
}

/// What both protocol front-ends share while running.
pub(super) struct Shared {
    /// The pipelines, per signal.
    pub outputs: Outputs,
    /// The bearer token clients must present, if any.
    pub auth: Option<Secret>,
    /// How long to wait for room in a full pipeline.
    pub pipeline_wait: Duration,
    /// Delay suggested to clients told to retry.
    pub retry_after: Duration,
    /// The memory budget for requests in flight.
    pub budget: Arc<Budget>,
    /// Connection and request limits.
    pub limits: Limits,
    /// Where pod identity comes from.
    pub identity: Identity,
    /// Pod IPs of this node.
    pub catalog: Catalog,
    /// When the last "memory budget full" warning was logged.
    last_exhausted_warning: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Why [`Shared::admit`] did not hand a request over.
#[derive(Debug)]
pub(super) enum AdmitError {
    /// The memory budget has no room for its decoded form.
    Exhausted(Exhausted),
    /// The pipeline refused it.
    Send(SendError),
}

/// What became of a request's items that were not all handed over.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Everything was handed over.
    Accepted,
    /// Some items had malformed ids and were refused; the rest was handed over (answer with
    /// a partial success).
    Partial(super::validate::Invalid),
    /// Every item had a malformed id (answer INVALID_ARGUMENT / 400).
    Invalid(super::validate::Invalid),
}

impl Shared {
    /// Admits a decoded request from `peer`: charges its decoded form to the memory budget
    /// (`encoded_len`: its protobuf size), checks its ids ([`super::validate`]; what is
    /// refused is counted, reason `invalid`), sets its pod identity from the connection
    /// ([`super::identity`]; corrections and refusals counted, reason `identity`), and
    /// hands the rest to the pipelines.
    pub async fn admit(
        &self,
        mut batch: Batch,
        peer: SocketAddr,
        charge: &Charge,
        encoded_len: usize,
    ) -> Result<Outcome, AdmitError> {
        // A raw batch holds the (decompressed) request's own buffer, not a decoded copy of
        // it: charged once its length rather than the decoded estimate.
        let per_byte = if matches!(batch, Batch::Raw(_)) {
            1
        } else {
            DECODED_BYTES_PER_ENCODED_BYTE
        };
        charge
            .add(encoded_len.saturating_mul(per_byte))
            .map_err(AdmitError::Exhausted)?;
        let signal = batch.signal();
        let stats = self.outputs.stats();
        let invalid = super::validate::retain_valid(&mut batch);
        if let Some(i) = &invalid {
            stats.add_with_reason(signal, Counter::Refused, "invalid", i.items);
        }
        if let Some(i) = invalid.as_ref().filter(|i| i.kept == 0) {
            return Ok(Outcome::Invalid(i.clone()));
        }
        let applied = identity::apply(
            &mut batch,
            &self.catalog.snapshot(),
            peer.ip(),
            &self.identity,
        );
        if applied.corrected > 0 {
            stats.add_with_reason(signal, Counter::Corrected, "identity", applied.corrected);
        }
        if applied.refused > 0 {
            stats.add_with_reason(signal, Counter::Refused, "identity", applied.refused);
        }
        if let Some((claimed, actual)) = &applied.example {
            tracing::debug!(
                %peer, %signal, claimed = %claimed, pod = %actual,
                corrected = applied.corrected, refused = applied.refused,
                "OTLP data claimed another pod than the connection's"
            );
        }
        let refused = match (invalid, applied.refused) {
            (i, 0) => i,
            (i, n) => {
                let message = format!(
                    "{n} items claimed another pod than the connection's ({}; \
                     identity.on_conflict: refuse)",
                    applied.example.map(|(c, _)| c).unwrap_or_default()
                );
                Some(super::validate::Invalid {
                    items: n + i.as_ref().map_or(0, |i| i.items),
                    kept: batch.item_count() as u64,
                    message: i.map_or(message, |i| i.message),
                })
            }
        };
        if let Some(i) = refused.as_ref().filter(|i| i.kept == 0) {
            return Ok(Outcome::Invalid(i.clone()));
        }
        self.hand_over(batch).await.map_err(AdmitError::Send)?;
        Ok(match refused {
            Some(i) => Outcome::Partial(i),
            None => Outcome::Accepted,
        })
    }

    /// Notes a request refused for want of memory: a warning at most every
    /// [`EXHAUSTED_WARN_EVERY`].
    pub fn note_exhausted(&self, e: Exhausted) {
        self.outputs.stats().memory_refused();
        let mut last = self
            .last_exhausted_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= EXHAUSTED_WARN_EVERY) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(
                in_use = self.budget.used(),
                limit = self.budget.limit(),
                "OTLP request refused, retry asked: {e}"
            );
        }
    }

    /// Hands a request's data to the pipelines. A request without items (no resources, or
    /// resources and scopes without spans, data points or log records) succeeds without
    /// touching them, as the Collector's OTLP receiver answers it.
    pub async fn hand_over(&self, batch: Batch) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.outputs.send_within(batch, self.pipeline_wait).await
    }

    /// Whether an `Authorization` header value satisfies the configured bearer token
    /// (always true when no token is configured). Compares in constant time.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        hpcotel_core::config::bearer_authorized(self.auth.as_ref(), authorization)
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The text of an answer to a refused hand-over, for logs and clients.
pub(super) fn refusal_message(e: SendError) -> String {
    match e {
        SendError::NoPipeline(signal) => {
            format!("this receiver is not part of any {signal} pipeline")
        }
        SendError::Full => "the pipeline is full; retry later".to_owned(),
        SendError::Closed => "the collector is shutting down; retry later".to_owned(),
    }
}
