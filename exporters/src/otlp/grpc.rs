//! OTLP/gRPC: the `opentelemetry-proto` tonic clients over a lazily connected channel.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use hpcotel_core::{Batch, ExportError, ExportOutcome};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use rustls::pki_types::ServerName;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

use super::config::{Compression, Config, Scheme};
use super::exporter::{Error, Result, outcome};
use super::tls::{TlsConnector, client_config};

const USER_AGENT: &str = concat!("hpcotel/", env!("CARGO_PKG_VERSION"));

pub(super) struct GrpcExporter {
    target: String,
    endpoint: TonicEndpoint,
    tls: Option<TlsConnector>,
    channel: OnceLock<Channel>,
    gzip: bool,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    timeout: Duration,
}

impl std::fmt::Debug for GrpcExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcExporter")
            .field("endpoint", &self.target)
            .field("tls", &self.tls.is_some())
            .field("gzip", &self.gzip)
            .field("headers", &self.headers.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl GrpcExporter {
    pub(super) fn new(config: &Config) -> Result<Self> {
        let ep = config.endpoint.as_ref().ok_or(Error::MissingEndpoint {
            hint: "the otlp exporter needs host:port or http(s)://host:port",
        })?;
        for (field, set) in [
            ("traces_endpoint", &config.traces_endpoint),
            ("metrics_endpoint", &config.metrics_endpoint),
            ("logs_endpoint", &config.logs_endpoint),
        ] {
            if set.is_some() {
                return Err(Error::InvalidEndpoint {
                    field,
                    message: "only the otlphttp exporter takes per-signal endpoints".into(),
                });
            }
        }
        if !ep.path().is_empty() {
            return Err(Error::InvalidEndpoint {
                field: "endpoint",
                message: format!(
                    "expected host:port or http(s)://host:port for gRPC (no path), got '{ep}'"
                ),
            });
        }
        let use_tls = match ep.scheme() {
            Some(Scheme::Http) => false,
            Some(Scheme::Https) => true,
            None => !config.tls.insecure,
        };
        let default_port = if matches!(ep.scheme(), Some(Scheme::Http)) {
            80
        } else {
            443
        };
        // TLS, when used, is done by our own connector, so tonic sees a plain URI.
        let uri = format!("http://{}", ep.authority(default_port));
        let endpoint = TonicEndpoint::from_shared(uri)
            .map_err(|e| Error::InvalidEndpoint {
                field: "endpoint",
                message: format!("'{ep}': {e}"),
            })?
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .map_err(|e| Error::InvalidEndpoint {
                field: "endpoint",
                message: e.to_string(),
            })?;
        let tls = if use_tls {
            let name = config
                .tls
                .server_name
                .clone()
                .unwrap_or_else(|| ep.host().to_owned());
            let server_name =
                ServerName::try_from(name.clone()).map_err(|_| Error::ServerName(name))?;
            Some(TlsConnector {
                config: client_config(&config.tls, &[b"h2"])?.into(),
                server_name,
            })
        } else {
            None
        };
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| Error::HeaderName { name: name.clone() })?;
            let value = AsciiMetadataValue::try_from(value.expose())
                .map_err(|_| Error::HeaderValue { name: name.clone() })?;
            headers.push((key, value));
        }
        Ok(Self {
            target: ep.to_string(),
            endpoint,
            tls,
            channel: OnceLock::new(),
            gzip: config.compression == Compression::Gzip,
            headers,
            timeout: config.timeout,
        })
    }

    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| match &self.tls {
                Some(c) => self.endpoint.connect_with_connector_lazy(c.clone()),
                None => self.endpoint.connect_lazy(),
            })
            .clone()
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        req.set_timeout(self.timeout);
        let md = req.metadata_mut();
        for (k, v) in &self.headers {
            md.insert(k.clone(), v.clone());
        }
        req
    }

    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, ExportError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(classify_status(&status)),
            Err(_) => Err(ExportError::Retryable {
                reason: format!("no answer from {} within {:?}", self.target, self.timeout),
                retry_after: None,
            }),
        }
    }

    pub(super) async fn export(&self, batch: Batch) -> Result<ExportOutcome, ExportError> {
        let channel = self.channel();
        macro_rules! export {
            ($client:ident, $req:expr, $rejected:ident) => {{
                let mut client = $client::new(channel);
                if self.gzip {
                    client = client
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                let resp = self.call(client.export(self.request($req))).await?;
                Ok(resp
                    .partial_success
                    .map(|p| outcome(p.$rejected, p.error_message))
                    .unwrap_or_default())
            }};
        }
        match batch {
            Batch::Traces(resource_spans) => export!(
                TraceServiceClient,
                ExportTraceServiceRequest { resource_spans },
                rejected_spans
            ),
            Batch::Metrics(resource_metrics) => export!(
                MetricsServiceClient,
                ExportMetricsServiceRequest { resource_metrics },
                rejected_data_points
            ),
            Batch::Logs(resource_logs) => export!(
                LogsServiceClient,
                ExportLogsServiceRequest { resource_logs },
                rejected_log_records
            ),
        }
    }
}

/// Classifies a gRPC status per the OTLP specification: CANCELLED, DEADLINE_EXCEEDED,
/// ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED only
/// when the status carries `google.rpc.RetryInfo`; everything else is permanent. The
/// RetryInfo delay becomes `retry_after`.
pub fn classify_status(status: &Status) -> ExportError {
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let reason = format!("gRPC status {:?}: {}", status.code(), status.message());
    let retryable = match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_after.is_some(),
        _ => false,
    };
    if retryable {
        ExportError::Retryable {
            reason,
            retry_after,
        }
    } else {
        ExportError::Permanent { reason }
    }
}
