//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies,
//! served by hyper (HTTP/1.1 and HTTP/2, optionally over TLS) from a plain accept loop.
//!
//! Statuses, per the OTLP/HTTP specification (every error body is a `google.rpc.Status`
//! encoded like the request, JSON when the request's encoding is unknown):
//!
//! | case | status |
//! |---|---|
//! | accepted (or empty) | 200, an empty `Export*ServiceResponse` |
//! | path other than the three | 404 |
//! | method other than POST | 405, `Allow: POST` |
//! | missing or wrong bearer token | 401, `WWW-Authenticate: Bearer` |
//! | Content-Type not protobuf or JSON, Content-Encoding not gzip, zstd or identity | 415 |
//! | body (or decompressed body) over `max_request_body_size` | 413 |
//! | undecodable protobuf, invalid JSON, corrupt gzip or zstd | 400 |
//! | no pipeline of the signal uses this receiver | 501 |
//! | pipeline full after `pipeline_wait` | 429, `Retry-After` |
//! | shutting down | 503, `Retry-After` |

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hpcotel_core::{Batch, SendError, Signal};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::budget::{BodyError, Charge, MeteredBody, ReadRules};
use super::config::HttpConfig;
use super::receiver::{Outcome, Shared, refusal_message};
use super::validate::{Invalid, response};

/// `Content-Type` of OTLP/HTTP protobuf bodies.
pub(super) const PROTOBUF: &str = "application/x-protobuf";
/// `Content-Type` of OTLP/HTTP JSON bodies.
pub(super) const JSON: &str = "application/json";

/// Serves OTLP/HTTP on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish (at most [`super::receiver::SHUTDOWN_GRACE`]).
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cfg: &HttpConfig,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let state = Arc::new(State {
        max_body: cfg.max_request_body_size,
        rules: ReadRules::from(&shared.limits),
        shared,
    });
    let l = hpcotel_core::server::Listener {
        what: "OTLP/HTTP",
        listener,
        tls,
        versions: hpcotel_core::server::Versions::Both,
        limits: state.shared.limits.connections(),
        grace: super::receiver::SHUTDOWN_GRACE,
    };
    hpcotel_core::server::serve(l, shutdown, move |peer| {
        let state = state.clone();
        hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(state.handle(req, peer).await) }
        })
    })
    .await;
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn from_content_type(value: Option<&HeaderValue>) -> Option<Encoding> {
        let value = value?.to_str().ok()?;
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(PROTOBUF) {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case(JSON) {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// An error answer: HTTP status, the matching gRPC code for the `google.rpc.Status` body,
/// and the message.
struct Refusal {
    status: StatusCode,
    code: Code,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    fn too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!("request body exceeds the limit of {max} bytes (max_request_body_size)"),
        )
    }
}

struct State {
    shared: Arc<Shared>,
    max_body: usize,
    rules: ReadRules,
}

impl State {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let encoding = Encoding::from_content_type(req.headers().get(header::CONTENT_TYPE));
        match self.process(req, peer).await {
            Ok((signal, enc, refused)) => {
                if let Some(i) = &refused {
                    tracing::debug!(%peer, %signal, refused = i.items, reason = %i.message, "OTLP/HTTP request partly refused: malformed ids");
                }
                success(signal, enc, refused.as_ref())
            }
            Err(r) => {
                let status = r.status.as_u16();
                if r.status == StatusCode::NOT_IMPLEMENTED {
                    // A configuration mistake rather than a client's: worth seeing.
                    tracing::warn!(%peer, status, message = %r.message, "OTLP/HTTP request refused");
                } else {
                    tracing::debug!(%peer, status, message = %r.message, "OTLP/HTTP request refused");
                }
                self.error_response(r, encoding.unwrap_or(Encoding::Json))
            }
        }
    }

    /// Validates, decodes, checks ids and hands over one request; returns its signal, the
    /// encoding to answer in and what was refused of a partly accepted request.
    async fn process(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<(Signal, Encoding, Option<Invalid>), Refusal> {
        let signal = match req.uri().path() {
            "/v1/traces" => Signal::Traces,
            "/v1/metrics" => Signal::Metrics,
            "/v1/logs" => Signal::Logs,
            other => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    Code::NotFound,
                    format!(
                        "no such path '{other}'; OTLP/HTTP paths are /v1/traces, /v1/metrics \
                         and /v1/logs"
                    ),
                ));
            }
        };
        if req.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unimplemented,
                format!("method {} not allowed; use POST", req.method()),
            ));
        }
        let headers = req.headers();
        if !self.shared.authorized(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        ) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
            ));
        }
        let Some(encoding) = Encoding::from_content_type(headers.get(header::CONTENT_TYPE)) else {
            let given = headers
                .get(header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                match given {
                    Some(t) => format!("unsupported Content-Type '{t}'; use {PROTOBUF} or {JSON}"),
                    None => format!("missing Content-Type; use {PROTOBUF} or {JSON}"),
                },
            ));
        };
        let coding = match headers.get(header::CONTENT_ENCODING) {
            None => None,
            Some(v) => {
                let v = String::from_utf8_lossy(v.as_bytes());
                let v = v.trim();
                if v.eq_ignore_ascii_case("gzip") {
                    Some(ContentCoding::Gzip)
                } else if v.eq_ignore_ascii_case("zstd") {
                    Some(ContentCoding::Zstd)
                } else if v.is_empty() || v.eq_ignore_ascii_case("identity") {
                    None
                } else {
                    return Err(Refusal::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        Code::InvalidArgument,
                        format!("unsupported Content-Encoding '{v}'; use gzip, zstd or none"),
                    ));
                }
            }
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            return Err(Refusal::too_large(self.max_body));
        }

        // Everything this request holds is charged to the memory budget before it is
        // held: the declared length up front (so an upload that cannot fit is refused
        // before it is read), the rest as it arrives, then its decompressed and decoded
        // forms. The charge is given back when the answer is sent.
        let charge = Charge::new(self.shared.budget.clone(), peer.ip());
        let prepaid = declared.map_or(0, |n| n as usize);
        charge.add(prepaid).map_err(|e| self.exhausted(e))?;
        let body = MeteredBody::new(
            req.into_body(),
            charge.clone(),
            prepaid,
            self.max_body,
            self.rules,
        );
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(BodyError::TooLarge(_)) => return Err(Refusal::too_large(self.max_body)),
            Err(BodyError::Exhausted(e)) => return Err(self.exhausted(e)),
            Err(e @ (BodyError::TimedOut(_) | BodyError::TooSlow { .. })) => {
                return Err(Refusal::new(
                    StatusCode::REQUEST_TIMEOUT,
                    Code::DeadlineExceeded,
                    e.to_string(),
                ));
            }
            Err(e @ BodyError::Read(_)) => return Err(Refusal::bad_request(e.to_string())),
        };
        let body = match coding {
            Some(coding) => {
                decompress(coding, &body, self.max_body, &charge).map_err(|e| match e {
                    Inflate::Refused(r) => r,
                    Inflate::Exhausted(e) => self.exhausted(e),
                })?
            }
            None => body,
        };
        let batch = decode(signal, encoding, &body).map_err(Refusal::bad_request)?;
        let encoded_len = body.len();
        drop(body);
        match self.shared.admit(batch, peer, &charge, encoded_len).await {
            Ok(Outcome::Accepted) => Ok((signal, encoding, None)),
            Ok(Outcome::Partial(i)) => Ok((signal, encoding, Some(i))),
            Ok(Outcome::Invalid(i)) => Err(Refusal::bad_request(format!(
                "every item was refused ({} in all); first: {}",
                i.items, i.message
            ))),
            Err(super::receiver::AdmitError::Exhausted(e)) => Err(self.exhausted(e)),
            Err(super::receiver::AdmitError::Send(e)) => Err(self.refusal(e, signal)),
        }
    }

    /// The answer to a request the memory budget has no room for: retryable (429 with
    /// `Retry-After`), as a full pipeline.
    fn exhausted(&self, e: super::budget::Exhausted) -> Refusal {
        self.shared.note_exhausted(e);
        Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::ResourceExhausted,
            e.to_string(),
        )
    }

    fn refusal(&self, e: SendError, signal: Signal) -> Refusal {
        let message = refusal_message(e);
        match e {
            SendError::NoPipeline(_) => {
                Refusal::new(StatusCode::NOT_IMPLEMENTED, Code::Unimplemented, message)
            }
            SendError::Full => Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                format!("{message} ({signal})"),
            ),
            SendError::Closed => {
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, message)
            }
        }
    }

    fn error_response(&self, r: Refusal, encoding: Encoding) -> Response<Full<Bytes>> {
        let body: Bytes = match encoding {
            Encoding::Protobuf => tonic_types::Status {
                code: r.code as i32,
                message: r.message,
                details: Vec::new(),
            }
            .encode_to_vec()
            .into(),
            Encoding::Json => serde_json::json!({ "code": r.code as i32, "message": r.message })
                .to_string()
                .into(),
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = r.status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        );
        match r.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.shared.retry_after_secs()),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        resp
    }
}

/// 200 with the `Export*ServiceResponse` of `signal`, encoded as asked: empty, or with the
/// partial success of what was `refused`.
fn success(signal: Signal, encoding: Encoding, refused: Option<&Invalid>) -> Response<Full<Bytes>> {
    // An empty response message encodes to zero protobuf bytes and to `{}` in JSON.
    let body = match (refused, encoding) {
        (None, Encoding::Protobuf) => Bytes::new(),
        (None, Encoding::Json) => Bytes::from_static(b"{}"),
        (Some(i), Encoding::Protobuf) => match signal {
            Signal::Traces => response::traces(Some(i)).encode_to_vec(),
            Signal::Metrics => response::metrics(Some(i)).encode_to_vec(),
            Signal::Logs => response::logs(Some(i)).encode_to_vec(),
        }
        .into(),
        (Some(i), Encoding::Json) => partial_success_json(signal, i).into(),
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    resp
}

/// The JSON of a partial success (`{"partialSuccess":{"rejectedSpans":"2","errorMessage":..}}`,
/// int64 as a string, as the protobuf JSON mapping writes it).
fn partial_success_json(signal: Signal, i: &Invalid) -> String {
    let field = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Metrics => "rejectedDataPoints",
        Signal::Logs => "rejectedLogRecords",
    };
    serde_json::json!({"partialSuccess": {field: i.items.to_string(), "errorMessage": i.message}})
        .to_string()
}

/// A request body's `Content-Encoding`.
#[derive(Debug, Clone, Copy)]
enum ContentCoding {
    Gzip,
    Zstd,
}

impl ContentCoding {
    fn name(self) -> &'static str {
        match self {
            ContentCoding::Gzip => "gzip",
            ContentCoding::Zstd => "zstd",
        }
    }
}

/// Largest zstd window a request body may use: 2^24 bytes (16 MiB), twice what zstd's
/// highest levels and the Collector's encoder use; more than any body up to the size limit
/// needs.
const ZSTD_MAX_WINDOW_LOG: u32 = 24;

/// Why a compressed body was not decompressed.
enum Inflate {
    Refused(Refusal),
    Exhausted(super::budget::Exhausted),
}

/// Decompresses a gzip (one or more members) or zstd (one or more frames) body in steps,
/// charging each step's output to `charge` and refusing output beyond `max` bytes, so that
/// a small "zip bomb" can neither exhaust memory nor outgrow the budget.
fn decompress(
    coding: ContentCoding,
    body: &[u8],
    max: usize,
    charge: &Charge,
) -> Result<Bytes, Inflate> {
    let corrupt = |e: std::io::Error| {
        Inflate::Refused(Refusal::bad_request(format!(
            "could not decompress the {} body: {e}",
            coding.name()
        )))
    };
    let limit = max as u64 + 1;
    let mut decoder: Box<dyn Read + '_> = match coding {
        ContentCoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body).take(limit)),
        ContentCoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            // A frame may ask for a window of up to 128 MiB by default; a client's body never
            // needs more than ZSTD_MAX_WINDOW_LOG (frames asking more are refused, 400).
            d.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(corrupt)?;
            Box::new(d.take(limit))
        }
    };
    // Read in steps, each charged before it is held. The buffer grows by doubling but never
    // past `max + 1` bytes, so one request holds at most that (and, while growing, the old
    // and the new buffer).
    const STEP: usize = 64 * 1024;
    let cap_max = max.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(STEP.min(cap_max));
    let mut charged = 0usize;
    loop {
        if out.len() == out.capacity() {
            let mut want = (out.capacity() * 2).clamp(STEP, cap_max.max(STEP));
            // Close to the limit: go straight to it rather than grow twice more.
            if cap_max.saturating_sub(want) < want / 4 {
                want = cap_max.max(want);
            }
            out.reserve_exact(want - out.len());
        }
        let len = out.len();
        let room = out.capacity() - len;
        if len + room > charged {
            charge
                .add(len + room - charged)
                .map_err(Inflate::Exhausted)?;
            charged = len + room;
        }
        out.resize(len + room, 0);
        let n = read_full(&mut decoder, &mut out[len..]).map_err(corrupt)?;
        out.truncate(len + n);
        if n < room || out.len() >= cap_max {
            break;
        }
    }
    if out.len() > max {
        return Err(Inflate::Refused(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            format!(
                "decompressed request body exceeds the limit of {max} bytes \
                 (max_request_body_size)"
            ),
        )));
    }
    Ok(out.into())
}

/// Reads until `buf` is full or the reader ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decodes an `Export*ServiceRequest` of `signal` into the batch it carries: protobuf spans
/// and log records kept as received where they can be ([`Batch::from_request`]).
fn decode(signal: Signal, encoding: Encoding, body: &Bytes) -> Result<Batch, String> {
    if encoding == Encoding::Protobuf {
        return Batch::from_request(signal, body.clone())
            .map_err(|e| format!("could not decode {} protobuf: {e}", request_name(signal)));
    }
    Ok(match signal {
        Signal::Traces => Batch::Traces(
            decode_message::<ExportTraceServiceRequest>(encoding, body, request_name(signal))?
                .resource_spans,
        ),
        Signal::Metrics => Batch::Metrics(
            decode_message::<ExportMetricsServiceRequest>(encoding, body, request_name(signal))?
                .resource_metrics,
        ),
        Signal::Logs => Batch::Logs(
            decode_message::<ExportLogsServiceRequest>(encoding, body, request_name(signal))?
                .resource_logs,
        ),
    })
}

/// The OTLP request message of `signal`, as errors name it.
fn request_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "ExportTraceServiceRequest",
        Signal::Metrics => "ExportMetricsServiceRequest",
        Signal::Logs => "ExportLogsServiceRequest",
    }
}

/// JSON goes through [`super::json::decode`], which reads what the protobuf JSON mapping
/// allows and opentelemetry-proto's mapping cannot: proto field names as keys, enum names,
/// `null`, members protobuf's printer leaves out (`{"arrayValue":{}}`), integers and doubles
/// written as strings (`"NaN"`, `"Infinity"`).
fn decode_message<T: Message + Default + super::json::Repair>(
    encoding: Encoding,
    body: &[u8],
    name: &str,
) -> Result<T, String> {
    match encoding {
        Encoding::Protobuf => {
            T::decode(body).map_err(|e| format!("could not decode {name} protobuf: {e}"))
        }
        Encoding::Json => super::json::decode(body, name),
    }
}
