//! [`PrometheusExporter`]: binds the scrape endpoint at build time and keeps the store that
//! exports update and scrapes read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use hpcotel_core::{Batch, ComponentError, ExportError, ExportOutcome, Exporter, HostPort, Signal};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::server::{self, Shared};
use super::store::Store;

/// What can go wrong setting up the `prometheus` exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be bound (port in use, address not local, permission).
    #[error("endpoint: could not listen on {endpoint} for Prometheus scrapes: {source}")]
    Bind {
        /// The configured endpoint.
        endpoint: HostPort,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Built outside a tokio runtime, so the endpoint cannot be served.
    #[error("the prometheus exporter must be built inside a tokio runtime")]
    NoRuntime,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exposes the metrics it is given on `GET /metrics`; see the [module docs](super).
#[derive(Debug)]
pub struct PrometheusExporter {
    store: Arc<Mutex<Store>>,
    local_addr: SocketAddr,
    stop: CancellationToken,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PrometheusExporter {
    /// Binds the endpoint and starts serving scrapes (an empty exposition until the first
    /// export). Must be called inside a tokio runtime.
    pub fn new(config: &Config) -> Result<PrometheusExporter> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let endpoint = &config.endpoint;
        let bind_err = |source| Error::Bind {
            endpoint: endpoint.clone(),
            source,
        };
        let std_listener = std::net::TcpListener::bind((endpoint.host.as_str(), endpoint.port))
            .map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = std_listener.local_addr().map_err(bind_err)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?
        };
        let store = Arc::new(Mutex::new(Store::new(config)));
        let shared = Arc::new(Shared {
            store: store.clone(),
            auth: config.auth.as_ref().map(|a| a.token.clone()),
        });
        let stop = CancellationToken::new();
        let server = runtime.spawn(server::serve(listener, shared, stop.clone()));
        tracing::info!(
            endpoint = %local_addr,
            dcgm_compatible = config.dcgm_compatible,
            "Prometheus endpoint serving /metrics"
        );
        Ok(PrometheusExporter {
            store,
            local_addr,
            stop,
            server: Mutex::new(Some(server)),
        })
    }

    /// The address actually bound (useful when the endpoint asks for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Exporter for PrometheusExporter {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let decoded;
        let batch = match batch {
            Batch::Raw(raw) if raw.signal() == Signal::Metrics => {
                decoded = raw.clone().decode();
                &decoded
            }
            other => other,
        };
        let Batch::Metrics(rm) = batch else {
            // Traces and logs have no Prometheus form: accepted and ignored.
            return Ok(ExportOutcome::default());
        };
        let (dropped, series) = {
            let mut store = self.lock();
            let dropped = store.update(rm, Instant::now());
            (dropped, store.series_count())
        };
        tracing::trace!(series, dropped, "Prometheus store updated");
        if dropped == 0 {
            return Ok(ExportOutcome::default());
        }
        Ok(ExportOutcome {
            rejected: dropped,
            message: format!(
                "{dropped} data points have no Prometheus form (no value, unspecified \
                 temporality, or bucket counts not matching the bounds)"
            ),
        })
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stop.cancel();
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            server.await?;
        }
        Ok(())
    }
}

impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        // Built but never run (another component failed to build): free the port.
        self.stop.cancel();
    }
}
