//! The sink's OTLP/HTTP endpoints: `POST /v1/traces|metrics|logs`, protobuf or JSON, gzip or zstd.

use std::io::Read as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hpcotel_core::{Batch, Signal};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::state::{Answer, Protocol, Shared};

/// Largest body the sink accepts, compressed or not.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

fn header_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads the body per `Content-Type` and `Content-Encoding`: the request, its encoding and
/// the uncompressed body's length; `Err((status, reason))` if it cannot.
fn decode<Req: Message + Default + DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Req, Encoding, usize), (StatusCode, String)> {
    let content_type = header_str(headers, header::CONTENT_TYPE);
    let encoding = if content_type.starts_with(JSON) {
        Encoding::Json
    } else if content_type.starts_with(PROTOBUF) || content_type.starts_with("application/protobuf")
    {
        Encoding::Protobuf
    } else {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content-type '{content_type}'"),
        ));
    };
    let inflated;
    let body = match header_str(headers, header::CONTENT_ENCODING) {
        "" | "identity" => body,
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad gzip body: {e}")))?;
            inflated = out;
            &inflated[..]
        }
        "zstd" => {
            inflated = zstd::stream::decode_all(body)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad zstd body: {e}")))?;
            &inflated[..]
        }
        other => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content-encoding '{other}'"),
            ));
        }
    };
    let req = match encoding {
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))?,
        Encoding::Protobuf => Req::decode(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad protobuf body: {e}")))?,
    };
    Ok((req, encoding, body.len()))
}

fn body_response<T: Message + Serialize>(
    status: StatusCode,
    encoding: Encoding,
    msg: &T,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_default(),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

/// An error answer: a `google.rpc.Status` body (protobuf, or its JSON form for JSON
/// requests) and `Retry-After` when given.
fn error_response(
    status: StatusCode,
    encoding: Encoding,
    code: tonic::Code,
    message: String,
    retry_after: Option<std::time::Duration>,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => tonic_types::Status {
            code: code as i32,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response();
    if let Some(delay) = retry_after {
        let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

async fn export<Req, Resp>(
    shared: Arc<Shared>,
    signal: Signal,
    headers: HeaderMap,
    body: Bytes,
    into_batch: fn(Req) -> Batch,
    response: fn(Option<(i64, String)>) -> Resp,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Serialize,
{
    let list = header_list(&headers);
    let (req, encoding, bytes) = match decode::<Req>(&headers, &body) {
        Ok(r) => r,
        Err((status, reason)) => {
            shared.invalid(Protocol::Http, signal, list, reason.clone());
            let encoding = if header_str(&headers, header::CONTENT_TYPE).starts_with(JSON) {
                Encoding::Json
            } else {
                Encoding::Protobuf
            };
            return error_response(status, encoding, tonic::Code::InvalidArgument, reason, None);
        }
    };
    match shared
        .handle(Protocol::Http, signal, list, into_batch(req), bytes)
        .await
    {
        Answer::Accepted => body_response(StatusCode::OK, encoding, &response(None)),
        Answer::PartialSuccess { rejected, message } => body_response(
            StatusCode::OK,
            encoding,
            &response(Some((rejected, message))),
        ),
        Answer::Failed {
            grpc,
            http,
            retry_after,
            message,
        } => {
            let status = StatusCode::from_u16(http).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            error_response(status, encoding, grpc, message, retry_after)
        }
        Answer::Invalid { reason } => error_response(
            StatusCode::BAD_REQUEST,
            encoding,
            tonic::Code::InvalidArgument,
            reason,
            None,
        ),
        Answer::TooLarge { bytes, limit } => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            encoding,
            tonic::Code::ResourceExhausted,
            format!("request body larger than max ({bytes} vs. {limit})"),
            None,
        ),
        Answer::ShuttingDown => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            encoding,
            tonic::Code::Unavailable,
            "sink is shutting down".to_owned(),
            None,
        ),
    }
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        shared,
        Signal::Traces,
        headers,
        body,
        |r: ExportTraceServiceRequest| Batch::Traces(r.resource_spans),
        |p| ExportTraceServiceResponse {
            partial_success: p.map(
                |(rejected_spans, error_message)| ExportTracePartialSuccess {
                    rejected_spans,
                    error_message,
                },
            ),
        },
    )
    .await
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        shared,
        Signal::Metrics,
        headers,
        body,
        |r: ExportMetricsServiceRequest| Batch::Metrics(r.resource_metrics),
        |p| ExportMetricsServiceResponse {
            partial_success: p.map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess {
                    rejected_data_points,
                    error_message,
                }
            }),
        },
    )
    .await
}

async fn logs(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        shared,
        Signal::Logs,
        headers,
        body,
        |r: ExportLogsServiceRequest| Batch::Logs(r.resource_logs),
        |p| ExportLogsServiceResponse {
            partial_success: p.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        },
    )
    .await
}

/// Serves the OTLP/HTTP endpoints on `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "otlp sink HTTP server failed");
    }
}
