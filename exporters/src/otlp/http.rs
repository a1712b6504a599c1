//! OTLP/HTTP with protobuf bodies: `POST <endpoint>/v1/{traces,metrics,logs}` via reqwest.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hpcotel_core::{ExportError, ExportOutcome, Signal};
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tracing::debug;

use super::config::{Compression, Config, Endpoint, Scheme};
use super::exporter::{Error, Result, outcome};
use super::tls::client_config;

const USER_AGENT: &str = concat!("hpcotel/", env!("CARGO_PKG_VERSION"));
const PROTOBUF: &str = "application/x-protobuf";
/// Longest error body quoted in a failure reason, in bytes.
const MAX_QUOTED_BODY: usize = 512;

#[derive(Debug)]
pub(super) struct HttpExporter {
    client: reqwest::Client,
    /// Per signal (index [`Signal::index`]): the URL to POST to, if any.
    urls: [Option<String>; 3],
    headers: HeaderMap,
    compression: Compression,
}

fn url_of(field: &'static str, ep: &Endpoint) -> Result<()> {
    if ep.scheme().is_none() {
        return Err(Error::InvalidEndpoint {
            field,
            message: format!("expected an http:// or https:// URL for otlphttp, got '{ep}'"),
        });
    }
    Ok(())
}

impl HttpExporter {
    pub(super) fn new(config: &Config) -> Result<Self> {
        if let Some(ep) = &config.endpoint {
            url_of("endpoint", ep)?;
        }
        let specific = [
            ("traces_endpoint", &config.traces_endpoint, "/v1/traces"),
            ("metrics_endpoint", &config.metrics_endpoint, "/v1/metrics"),
            ("logs_endpoint", &config.logs_endpoint, "/v1/logs"),
        ];
        let mut urls: [Option<String>; 3] = Default::default();
        let mut any_tls = false;
        for (i, (field, own, suffix)) in specific.into_iter().enumerate() {
            urls[i] = match (own, &config.endpoint) {
                (Some(ep), _) => {
                    url_of(field, ep)?;
                    any_tls |= ep.scheme() == Some(Scheme::Https);
                    Some(ep.as_str().to_owned())
                }
                (None, Some(base)) => {
                    any_tls |= base.scheme() == Some(Scheme::Https);
                    Some(format!("{}{suffix}", base.as_str().trim_end_matches('/')))
                }
                (None, None) => None,
            };
        }
        if urls.iter().all(Option::is_none) {
            return Err(Error::MissingEndpoint {
                hint: "the otlphttp exporter needs a base URL http(s)://host:port, \
                       or traces_endpoint / metrics_endpoint / logs_endpoint",
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::HeaderName { name: name.clone() })?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| Error::HeaderValue { name: name.clone() })?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(USER_AGENT);
        if any_tls {
            builder =
                builder.use_preconfigured_tls(client_config(&config.tls, &[b"h2", b"http/1.1"])?);
        }
        let client = builder.build().map_err(Error::HttpClient)?;
        Ok(Self {
            client,
            urls,
            headers,
            compression: config.compression,
        })
    }

    /// POSTs one request body (encoded and compressed as configured) and reads the answer.
    pub(super) async fn send(
        &self,
        signal: Signal,
        body: Bytes,
    ) -> Result<ExportOutcome, ExportError> {
        let Some(url) = &self.urls[signal.index()] else {
            return Err(ExportError::Permanent {
                reason: format!(
                    "no URL for {signal}: set endpoint or {signal}_endpoint in the otlphttp exporter"
                ),
            });
        };
        let mut req = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, PROTOBUF);
        if let Some(name) = self.compression.encoding() {
            req = req.header(CONTENT_ENCODING, name);
        }
        let req = req.body(body);
        let resp = req.send().await.map_err(|e| classify_reqwest(url, &e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if status.is_success() => {
                debug!(url = %url, error = %e, "could not read the OTLP/HTTP response body");
                return Ok(ExportOutcome::default());
            }
            Err(_) => Default::default(),
        };
        if status.is_success() {
            return Ok(partial_success(signal, &body));
        }
        let reason = format!("HTTP {status}: {}", error_message(&body));
        Err(classify_http(status.as_u16(), reason, retry_after))
    }
}

/// The partial success in a protobuf response body, if any (an empty or undecodable body
/// is a full success).
fn partial_success(signal: Signal, body: &[u8]) -> ExportOutcome {
    let decoded = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| outcome(p.rejected_log_records, p.error_message)),
    };
    decoded.unwrap_or_default()
}

/// The message of an error body: a `google.rpc.Status` when it decodes as one, else the
/// body as text (truncated).
fn error_message(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if let Ok(status) = tonic_types::Status::decode(body)
        && !status.message.is_empty()
    {
        return status.message;
    }
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(MAX_QUOTED_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// Classifies an HTTP failure per the OTLP specification: 429, 502, 503 and 504 are
/// retryable (honouring `Retry-After`), 413 (Content Too Large) is
/// [`ExportError::TooLarge`], every other status is permanent.
pub fn classify_http(status: u16, reason: String, retry_after: Option<Duration>) -> ExportError {
    match status {
        429 | 502 | 503 | 504 => ExportError::Retryable {
            reason,
            retry_after,
        },
        413 => ExportError::TooLarge { reason },
        _ => ExportError::Permanent { reason },
    }
}

fn classify_reqwest(url: &str, e: &reqwest::Error) -> ExportError {
    let reason = format!("POST {url}: {}", crate::error_chain(e));
    if e.is_builder() {
        ExportError::Permanent { reason }
    } else {
        // Connection refused/reset, timeouts, TLS handshakes: the backend may come back.
        ExportError::Retryable {
            reason,
            retry_after: None,
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds (`"120"`) or an HTTP-date (`"Wed, 21 Oct
/// 2015 07:28:00 GMT"`, relative to `now`; a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
