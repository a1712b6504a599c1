//! OTLP/gRPC: the `opentelemetry-proto` tonic clients over a lazily connected channel.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes};
use hpcotel_core::{ExportError, ExportOutcome, Signal};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, TE};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::ServiceExt as _;
use tracing::debug;

use super::compress::decompress;
use super::config::{Compression, Config, Scheme};
use super::exporter::{Error, Result, outcome};
use super::tls::{TlsConnector, client_config};

const USER_AGENT: &str = concat!("hpcotel/", env!("CARGO_PKG_VERSION"));

/// Sends each request as one gRPC message it framed itself over a tonic [`Channel`] (HTTP/2,
/// connection management, TLS): the encoded (and compressed) request goes out as the bytes
/// it already is, without the copy into tonic's encode buffer, and compression is ours
/// (zlib-rs gzip, zstd) rather than tonic's. The answer is read as grpc-go writes it: the
/// status in the trailers (or in the headers of a trailers-only answer), the message
/// compressed or not.
pub(super) struct GrpcExporter {
    target: String,
    endpoint: TonicEndpoint,
    tls: Option<TlsConnector>,
    channel: OnceLock<Channel>,
    compression: Compression,
    headers: HeaderMap,
    timeout: Duration,
    /// `grpc-timeout`, from `timeout`.
    grpc_timeout: HeaderValue,
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
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let lower = name.to_ascii_lowercase();
            // gRPC reserves `grpc-*` and binary (`-bin`) metadata takes base64: neither is a
            // plain header value.
            if lower.starts_with("grpc-") || lower.ends_with("-bin") {
                return Err(Error::HeaderName { name: name.clone() });
            }
            let key = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| Error::HeaderName { name: name.clone() })?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| Error::HeaderValue { name: name.clone() })?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        Ok(Self {
            target: ep.to_string(),
            endpoint,
            tls,
            channel: OnceLock::new(),
            compression: config.compression,
            headers,
            timeout: config.timeout,
            grpc_timeout: grpc_timeout(config.timeout),
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

    /// Sends one request message (encoded and compressed as configured) and reads the answer.
    pub(super) async fn send(
        &self,
        signal: Signal,
        message: Bytes,
    ) -> Result<ExportOutcome, ExportError> {
        let path = match signal {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        };
        let len = u32::try_from(message.len()).map_err(|_| ExportError::TooLarge {
            reason: format!(
                "a gRPC message is at most 4 GiB, this one is {} bytes",
                message.len()
            ),
        })?;
        let mut prefix = [0u8; 5];
        prefix[0] = u8::from(self.compression != Compression::None);
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        let frames = [
            Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(&prefix))),
            Ok(Frame::data(message)),
        ];
        let body = tonic::body::Body::new(StreamBody::new(futures::stream::iter(frames)));
        let mut req = http::Request::post(path)
            .body(body)
            .expect("a static path is a valid URI");
        let h = req.headers_mut();
        h.extend(self.headers.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("grpc-timeout", self.grpc_timeout.clone());
        h.insert(
            "grpc-accept-encoding",
            HeaderValue::from_static("gzip,zstd,identity"),
        );
        if let Some(name) = self.compression.encoding() {
            h.insert("grpc-encoding", HeaderValue::from_static(name));
        }
        let call = async {
            let unreachable = |e: &dyn std::fmt::Display| ExportError::Retryable {
                reason: format!("cannot reach {}: {e}", self.target),
                retry_after: None,
            };
            let resp = self
                .channel()
                .oneshot(req)
                .await
                .map_err(|e| unreachable(&crate::error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            // A trailers-only answer (every failure grpc-go sends) has its status here.
            if let Some(status) = status_of(&parts.headers) {
                return answer(signal, status, &parts.headers, Bytes::new());
            }
            if parts.status != http::StatusCode::OK {
                let status = Status::new(
                    code_of_http(parts.status),
                    format!("HTTP {} without grpc-status", parts.status),
                );
                return Err(classify_status(&status));
            }
            let collected = body.collect().await.map_err(|e| ExportError::Retryable {
                reason: format!("{}: the answer was cut off: {e}", self.target),
                retry_after: None,
            })?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let data = collected.to_bytes();
            let status = status_of(&trailers)
                .unwrap_or_else(|| Status::unknown("the answer ended without grpc-status"));
            answer(signal, status, &parts.headers, data)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ExportError::Retryable {
                reason: format!("no answer from {} within {:?}", self.target, self.timeout),
                retry_after: None,
            }),
        }
    }
}

/// The outcome of an answer with `status`: the partial success in its message when OK.
fn answer(
    signal: Signal,
    status: Status,
    headers: &HeaderMap,
    data: Bytes,
) -> Result<ExportOutcome, ExportError> {
    if status.code() != Code::Ok {
        return Err(classify_status(&status));
    }
    let message = match response_message(headers, data) {
        Ok(m) => m,
        Err(why) => {
            // The backend said OK; what it said besides cannot change that.
            debug!(error = %why, "could not read the OTLP/gRPC answer message");
            return Ok(ExportOutcome::default());
        }
    };
    let partial = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(message)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(message)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(message)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_log_records, p.error_message)),
    };
    Ok(partial.unwrap_or_default())
}

/// The first message of a gRPC answer body, decompressed per its `grpc-encoding`.
pub(super) fn response_message(headers: &HeaderMap, mut data: Bytes) -> Result<Bytes, String> {
    if data.is_empty() {
        return Ok(data);
    }
    if data.len() < 5 {
        return Err(format!("a message frame of {} bytes", data.len()));
    }
    let compressed = data.get_u8() == 1;
    let len = data.get_u32() as usize;
    if data.len() < len {
        return Err(format!("a message of {len} bytes cut at {}", data.len()));
    }
    let message = data.split_to(len);
    if !compressed {
        return Ok(message);
    }
    let encoding = headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    decompress(encoding, &message)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// The status in `grpc-status`, `grpc-message` (percent-encoded) and
/// `grpc-status-details-bin` (base64, padded or not) of `headers`, if any. Malformed details
/// are left out rather than trusted.
pub(super) fn status_of(headers: &HeaderMap) -> Option<Status> {
    let code = Code::from_bytes(headers.get("grpc-status")?.as_bytes());
    let message = headers
        .get("grpc-message")
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let details = headers.get("grpc-status-details-bin").and_then(|v| {
        let v = v.as_bytes();
        let v = v.strip_suffix(b"==").or(v.strip_suffix(b"=")).unwrap_or(v);
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(v)
            .ok()
    });
    Some(match details {
        Some(d) => Status::with_details(code, message, d.into()),
        None => Status::new(code, message),
    })
}

/// The gRPC code for an HTTP status without grpc-status, per gRPC's
/// "HTTP to gRPC Status Code Mapping".
fn code_of_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// `grpc-timeout` for `timeout`: milliseconds (at most 8 digits, as the spec allows).
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let ms = timeout.as_millis().clamp(1, 99_999_999);
    HeaderValue::from_str(&format!("{ms}m")).expect("digits and a unit are a valid header")
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
