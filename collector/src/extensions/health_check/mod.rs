//! The `health_check` extension: an HTTP endpoint for Kubernetes liveness and readiness
//! probes, bound before the pipelines' components are built and closed after they have
//! drained.
//!
//! | request | answer |
//! |---|---|
//! | `GET` or `HEAD /healthz` | always 200 `{"status":"ok"}` while the process runs, draining at shutdown included (a liveness failure then would only get a draining collector killed) |
//! | `GET` or `HEAD /readyz` | 200 with `"status":"ready"` when every pipeline runs and no exporter is failing or dropping; 503 with `"status":"not_ready"` while components are being built (`"phase":"starting"`), during shutdown (`"phase":"stopping"`) and while any exporter is failing or dropping |
//! | another path | 404 |
//! | another method | 405, `Allow: GET, HEAD` |
//!
//! An exporter is *failing* from the moment its export queue gives a batch up because
//! delivering it failed — the backend refused it for good (`permanent`), retrying went past
//! `max_elapsed_time` (`retries_exhausted`), a retryable error with retry disabled
//! (`retry_disabled`), or the exporter panicked (`panic`) — until the backend next accepts a
//! batch from it (a partial success included). A batch that is still being retried, a full
//! queue, a too-large item, a partial success and drops at the shutdown deadline do not make
//! it failing (the middle three make it *dropping*, below). The `/readyz` body lists every
//! pipeline and every exporter with, for a failing one, the drop reason, the last error
//! (credentials in URLs redacted), how long it has been failing and how many batches were
//! given up on since its last success:
//!
//! ```json
//! {"status":"not_ready","phase":"running","pipelines":["metrics","traces"],
//!  "exporters":{"debug":{"status":"ok"},
//!               "otlp/tempo":{"status":"failing","reason":"permanent",
//!                             "error":"gRPC status InvalidArgument: span too large",
//!                             "failing_for_seconds":12.5,"failed_batches":3}}}
//! ```
//!
//! An exporter is *dropping* for `drop_window` (60 s by default) after it last dropped
//! accepted data in a way that does not make it failing — it delivers, but loses data: a full
//! queue (`queue_full`), an item too large for `max_request_size` or for the backend
//! (`too_large`), items rejected in a partial success (`rejected`). It is then
//! `{"status":"dropping","reason":"too_large","signal":"traces","last_drop_seconds_ago":2.1,
//! "dropped":{"too_large":1}}` (`dropped`: its items dropped over the run, per reason, drops
//! at the shutdown deadline aside, also listed for an `ok` or `failing` exporter once it has
//! dropped anything), and `/readyz` is 503. A failing exporter is reported failing, whether
//! or not it is dropping too.
//!
//! There is no authentication: a probe cannot send a token, and the answers carry no
//! telemetry. The endpoint binds to loopback unless configured otherwise.

mod config;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use hpcotel_core::{ComponentId, HostPort};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_DROP_WINDOW, DEFAULT_HOST, DEFAULT_PORT};
pub use server::{HEALTHZ_PATH, READYZ_PATH};

use super::Running;
use crate::service::Status;

/// What can go wrong starting the `health_check` extension.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be bound (port in use, address not local, permission).
    #[error("endpoint: could not listen on {endpoint} for health checks: {source}")]
    Bind {
        /// The configured endpoint.
        endpoint: HostPort,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Binds `config.endpoint` and serves `/healthz` and `/readyz` from `status` until the
/// returned [`Running`] is stopped. Must be called inside a tokio runtime.
pub async fn start(id: ComponentId, config: &Config, status: Arc<Status>) -> Result<Running> {
    let endpoint = &config.endpoint;
    let bind_err = |source| Error::Bind {
        endpoint: endpoint.clone(),
        source,
    };
    let listener = TcpListener::bind((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(bind_err)?;
    let local: SocketAddr = listener.local_addr().map_err(bind_err)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        listener,
        status,
        config.drop_window,
        stop.clone(),
    ));
    tracing::info!(extension = %id, endpoint = %local, "health check serving /healthz and /readyz");
    Ok(Running::new(id, stop, task))
}
