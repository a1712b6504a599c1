//! OTLP/gRPC: the `opentelemetry-proto` tonic clients over a lazily connected channel.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use hpcotel_core::{Batch, ExportError, ExportOutcome};
use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use rustls::pki_types::ServerName;
use tonic::codec::CompressionEncoding;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstDecoder;
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
    compression: Option<CompressionEncoding>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    timeout: Duration,
}

impl std::fmt::Debug for GrpcExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcExporter")
            .field("endpoint", &self.target)
            .field("tls", &self.tls.is_some())
            .field("compression", &self.compression)
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
            compression: match config.compression {
                Compression::None => None,
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
            },
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

    pub(super) async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let mut grpc = tonic::client::Grpc::new(self.channel())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        if let Some(encoding) = self.compression {
            grpc = grpc.send_compressed(encoding);
        }
        grpc.ready().await.map_err(|e| ExportError::Retryable {
            reason: format!("cannot reach {}: {e}", self.target),
            retry_after: None,
        })?;
        // The request is encoded straight from the borrowed batch and sent as is.
        let request = self.request(Bytes::from(batch.encode_request()));
        macro_rules! export {
            ($path:literal, $response:ty, $rejected:ident) => {{
                let path = PathAndQuery::from_static($path);
                let codec = EncodedRequestCodec::<$response>::default();
                let resp = self.call(grpc.unary(request, path, codec)).await?;
                Ok(resp
                    .partial_success
                    .map(|p| outcome(p.$rejected, p.error_message))
                    .unwrap_or_default())
            }};
        }
        match batch {
            Batch::Traces(_) => export!(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                ExportTraceServiceResponse,
                rejected_spans
            ),
            Batch::Metrics(_) => export!(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                ExportMetricsServiceResponse,
                rejected_data_points
            ),
            Batch::Logs(_) => export!(
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                ExportLogsServiceResponse,
                rejected_log_records
            ),
        }
    }
}

/// The gRPC codec of an export call: the request message goes out as the bytes it was
/// already encoded to ([`Batch::encode_request`]), the response is decoded with prost.
struct EncodedRequestCodec<R>(PhantomData<R>);

impl<R> Default for EncodedRequestCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for EncodedRequestCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = EncodedEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Writes an already encoded message.
struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

/// Classifies a gRPC status per the OTLP specification: CANCELLED, DEADLINE_EXCEEDED,
/// ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable, RESOURCE_EXHAUSTED only
/// when the status carries `google.rpc.RetryInfo`; everything else is permanent. The
/// RetryInfo delay becomes `retry_after`.
///
/// A server refusing the request message as too large is
/// [`ExportError::TooLarge`]: RESOURCE_EXHAUSTED without RetryInfo (grpc-go: "grpc: received
/// message larger than max (N vs. M)"; grpc-java: "... exceeds maximum size ...") or
/// OUT_OF_RANGE (tonic: "decoded message length too large: ..."), when the message says so
/// ([`says_too_large`]). RESOURCE_EXHAUSTED without RetryInfo for anything else (a quota)
/// stays permanent, and a plain tonic server's OUT_OF_RANGE for anything else retryable.
///
/// A status tonic made up locally from a transport failure (connection reset or closed
/// mid-call: tonic reports these as UNKNOWN "transport error") is retryable whatever its
/// code: the backend never answered. Such a status carries the transport error as its
/// `source()`; a status the server sent never does.
pub fn classify_status(status: &Status) -> ExportError {
    let retry_after = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay);
    let transport = std::error::Error::source(status);
    let reason = match transport {
        Some(cause) => format!(
            "gRPC status {:?}: {} ({cause})",
            status.code(),
            status.message()
        ),
        None => format!("gRPC status {:?}: {}", status.code(), status.message()),
    };
    if transport.is_some() {
        return ExportError::Retryable {
            reason,
            retry_after,
        };
    }
    if matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange)
        && retry_after.is_none()
        && says_too_large(status.message())
    {
        return ExportError::TooLarge { reason };
    }
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

/// Whether a gRPC status message says the request message was over the server's size limit,
/// as grpc-go ("larger than max"), grpc-java ("exceeds maximum size") and tonic ("too large")
/// word it.
fn says_too_large(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["larger than max", "exceeds maximum", "too large"]
        .iter()
        .any(|needle| m.contains(needle))
}
