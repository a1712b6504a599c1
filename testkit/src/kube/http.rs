//! The HTTP side: URL routing, list/get/watch/write handlers, `Status` answers and the
//! chunked watch streams.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::selector::{FieldSelector, LabelSelector};
use super::server::{RequestRecord, Shared, Verb};
use super::store::{ApiError, Filter, OpenedWatch, ResourceKey, State, WatchStart, event_line};

/// Largest request body accepted.
const BODY_LIMIT: usize = 16 << 20;

/// Serves until `stop` is cancelled.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let app = Router::new().fallback(handle).with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "fake kube-apiserver failed");
    }
}

/// A resource URL, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub res: ResourceKey,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `plus_is_space` for form-encoded query strings.
fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d` into decoded pairs.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` resource paths.
pub(crate) fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode(s, false))
        .collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 3 => ("", segs[1].as_str(), &segs[2..]),
        Some("apis") if segs.len() >= 4 => (segs[1].as_str(), segs[2].as_str(), &segs[3..]),
        _ => return None,
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !matches!(rest[2].as_str(), "status" | "finalize");
    let (namespace, rest) = if namespaced {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return None;
    }
    Some(Route {
        res: ResourceKey::new(group, version, &rest[0]),
        namespace,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned(),
    })
}

/// Decoded query parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-hpcotel-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let params = Params(parse_query(parts.uri.query().unwrap_or("")));
    let path = parts.uri.path().to_string();
    let available = shared.lock().available;
    let unavailable = || {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "the fake API server is unavailable",
        )
    };
    let Some(route) = parse_route(&path) else {
        if !available {
            return error_response(&unavailable());
        }
        if path == "/version" && parts.method == Method::GET {
            return json_response(200, &version_info());
        }
        return error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let verb = match (&parts.method, route.name.is_some()) {
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) if params.flag("watch") => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => {
            return error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ));
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) {
        match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => Some(b),
            Err(e) => {
                return error_response(&bad_request(format!("reading the request body: {e}")));
            }
        }
    } else {
        None
    };

    let response = if !available {
        Err(unavailable())
    } else {
        match verb {
            Verb::Watch => watch(&shared, &route, &params),
            Verb::List => list(&shared.lock(), &route, &params).map(|v| json_response(200, &v)),
            Verb::Get => get(&shared.lock(), &route).map(|v| json_response(200, &v)),
            Verb::Create => parse_body(body.as_deref())
                .and_then(|obj| create(&mut shared.lock(), &route, obj))
                .map(|v| json_response(201, &v)),
            Verb::Update => parse_body(body.as_deref())
                .and_then(|obj| update(&mut shared.lock(), &route, obj))
                .map(|v| json_response(200, &v)),
            Verb::Patch => parse_body(body.as_deref())
                .and_then(|p| patch(&mut shared.lock(), &route, &content_type, p))
                .map(|(code, v)| json_response(code, &v)),
            Verb::Delete => {
                let ns = route.namespace.clone().unwrap_or_default();
                let name = route.name.clone().unwrap_or_default();
                shared
                    .lock()
                    .delete(&route.res, &ns, &name)
                    .map(|v| json_response(200, &v))
            }
            Verb::DeleteCollection => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the fake API server does not support deletecollection",
            )),
        }
    };
    let response = response.unwrap_or_else(|e| error_response(&e));
    shared.lock().requests.push(RequestRecord {
        verb,
        group: route.res.group.clone(),
        version: route.res.version.clone(),
        plural: route.res.plural.clone(),
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        subresource: route.subresource.clone(),
        query: params.0,
        status: response.status().as_u16(),
    });
    shared.bump();
    response
}

fn parse_body(body: Option<&[u8]>) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(body.unwrap_or_default())
        .map_err(|e| bad_request(format!("the request body is not JSON: {e}")))?;
    if obj.is_object() {
        Ok(obj)
    } else {
        Err(bad_request("the request body is not a JSON object"))
    }
}

fn filter_for(route: &Route, params: &Params) -> Result<Filter, ApiError> {
    Ok(Filter {
        namespace: route.namespace.clone(),
        labels: LabelSelector::parse(params.get("labelSelector").unwrap_or_default())
            .map_err(bad_request)?,
        fields: FieldSelector::parse(params.get("fieldSelector").unwrap_or_default())
            .map_err(bad_request)?,
    })
}

/// Continue tokens: hex of `rv/namespace/name`, opaque to clients like real ones.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    format!("{rv}/{}/{}", key.0, key.1)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    let bytes: Option<Vec<u8>> = token
        .as_bytes()
        .chunks(2)
        .map(|c| match c {
            [h, l] => Some(hex_val(*h)? << 4 | hex_val(*l)?),
            _ => None,
        })
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.splitn(3, '/');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, (parts.next()?.to_string(), parts.next()?.to_string())))
}

fn list(state: &State, route: &Route, params: &Params) -> Result<Value, ApiError> {
    let filter = filter_for(route, params)?;
    let (at, after) = if let Some(token) = params.nonempty("continue") {
        let (rv, key) = decode_continue(token).ok_or_else(|| {
            bad_request("continue key is not valid: incorrect encoded start resourceVersion")
        })?;
        (rv, Some(key))
    } else if params.get("resourceVersionMatch") == Some("Exact") {
        let rv = params
            .nonempty("resourceVersion")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad_request("resourceVersionMatch=Exact needs a resourceVersion"))?;
        (rv, None)
    } else {
        (state.resource_version(), None)
    };
    let objects = state.objects_at(&route.res, at).map_err(|e| {
        if after.is_some() {
            ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            )
        } else if params.get("resourceVersionMatch") == Some("Exact") {
            ApiError::expired("The resourceVersion for the provided list is too old.")
        } else {
            e
        }
    })?;
    let limit = params
        .nonempty("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| bad_request(format!("invalid limit {l:?}")))
        })
        .transpose()?
        .filter(|&l| l > 0);
    let selected: Vec<_> = objects
        .iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        .filter(|(_, o)| filter.matches(o))
        .collect();
    let take = limit.unwrap_or(selected.len()).min(selected.len());
    let items: Vec<Value> = selected[..take].iter().map(|(_, o)| (*o).clone()).collect();
    let remaining = selected.len() - take;
    let last = selected[..take].last().map(|(k, _)| *k);
    let mut metadata = json!({"resourceVersion": at.to_string()});
    if remaining > 0
        && let Some(last) = last
    {
        metadata["continue"] = json!(encode_continue(at, last));
        if filter.labels.is_empty() && filter.fields.is_empty() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let kind = state
        .kind_of(&route.res)
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".to_string());
    Ok(json!({
        "kind": kind,
        "apiVersion": route.res.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

fn get(state: &State, route: &Route) -> Result<Value, ApiError> {
    let ns = route.namespace.clone().unwrap_or_default();
    let name = route.name.clone().unwrap_or_default();
    state
        .get(&route.res, &ns, &name)
        .ok_or_else(|| ApiError::not_found(&route.res, &name))
}

/// Sets `kind`/`apiVersion` when missing and checks the namespace and name against the URL.
fn conform(state: &State, route: &Route, obj: &mut Value) -> Result<(), ApiError> {
    if obj.get("apiVersion").is_none_or(Value::is_null) {
        obj["apiVersion"] = json!(route.res.api_version());
    }
    if obj.get("kind").is_none_or(Value::is_null)
        && let Some(kind) = state.kind_of(&route.res)
    {
        obj["kind"] = json!(kind);
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object");
    if let Some(ns) = &route.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    }
    if let Some(name) = &route.name {
        match meta.get("name").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != name => {
                return Err(bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
    }
    Ok(())
}

fn create(state: &mut State, route: &Route, mut obj: Value) -> Result<Value, ApiError> {
    conform(state, route, &mut obj)?;
    state.create(&route.res, obj)
}

fn update(state: &mut State, route: &Route, mut obj: Value) -> Result<Value, ApiError> {
    conform(state, route, &mut obj)?;
    if route.subresource.as_deref() == Some("status") {
        // The status subresource changes only `status` (with the same rv precondition).
        let mut stored = get(state, route)?;
        stored["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
        if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
            stored["metadata"]["resourceVersion"] = rv.clone();
        }
        obj = stored;
    }
    state.replace(&route.res, obj, true)
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn patch(
    state: &mut State,
    route: &Route,
    content_type: &str,
    patch: Value,
) -> Result<(u16, Value), ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let apply = match media {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => false,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => true,
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the fake API server does not support patches of type {media:?}"),
            ));
        }
    };
    let stored = match get(state, route) {
        Ok(stored) => stored,
        Err(_) if apply && route.subresource.is_none() => {
            let mut obj = patch;
            conform(state, route, &mut obj)?;
            return state.create(&route.res, obj).map(|v| (201, v));
        }
        Err(e) => return Err(e),
    };
    let mut obj = stored;
    let patch = if route.subresource.as_deref() == Some("status") {
        json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)})
    } else {
        patch
    };
    merge_patch(&mut obj, &patch);
    conform(state, route, &mut obj)?;
    state.replace(&route.res, obj, true).map(|v| (200, v))
}

// ----- watch streams -----

fn watch(shared: &Arc<Shared>, route: &Route, params: &Params) -> Result<Response, ApiError> {
    let filter = filter_for(route, params)?;
    let send_initial = params.flag("sendInitialEvents");
    let start = match params.nonempty("resourceVersion") {
        _ if send_initial => WatchStart::Current,
        None | Some("0") => WatchStart::Current,
        Some(rv) => WatchStart::After(
            rv.parse()
                .map_err(|_| bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = params
        .nonempty("timeoutSeconds")
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| bad_request(format!("invalid timeoutSeconds {t:?}")))
        })
        .transpose()?;
    let opened = shared
        .lock()
        .open_watch(&route.res, filter, start, send_initial);
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) if e.code == 410 => {
            // The real server answers 200 and sends the error as the only event.
            let line = event_line("ERROR", &e.status());
            return Ok(stream_response(Body::from(line)));
        }
        Err(e) => return Err(e),
    };
    shared.bump();
    let bookmarks = params.flag("allowWatchBookmarks").then(|| {
        let period = shared.bookmark_interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let OpenedWatch {
        id,
        backlog,
        rx,
        cancel,
    } = opened;
    let body = WatchBody {
        shared: shared.clone(),
        id,
        backlog: backlog.into(),
        rx,
        cancel,
        deadline: timeout.map(|t| Instant::now() + Duration::from_secs(t)),
        bookmarks,
        done: false,
    };
    Ok(stream_response(Body::from_stream(futures::stream::unfold(
        body, next_chunk,
    ))))
}

fn stream_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}

/// One open watch connection's body.
struct WatchBody {
    shared: Arc<Shared>,
    id: u64,
    backlog: VecDeque<Bytes>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    cancel: CancellationToken,
    deadline: Option<Instant>,
    bookmarks: Option<Interval>,
    done: bool,
}

impl Drop for WatchBody {
    fn drop(&mut self) {
        self.shared.lock().close_watch(self.id);
        self.shared.bump();
    }
}

enum Next {
    Aborted,
    TimedOut,
    Line(Option<Bytes>),
    Bookmark,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn aborted() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "watch dropped by the fake API server",
    )
}

/// The next chunk of a watch body: backlog first, then live events and bookmarks; an
/// aborted watch yields an error (hyper then cuts the connection without the final chunk),
/// an expired `timeoutSeconds` ends the body cleanly.
async fn next_chunk(mut st: WatchBody) -> Option<(Result<Bytes, std::io::Error>, WatchBody)> {
    if st.done {
        return None;
    }
    if st.cancel.is_cancelled() {
        st.done = true;
        return Some((Err(aborted()), st));
    }
    if let Some(line) = st.backlog.pop_front() {
        return Some((Ok(line), st));
    }
    loop {
        let next = tokio::select! {
            biased;
            () = st.cancel.cancelled() => Next::Aborted,
            () = sleep_until_opt(st.deadline) => Next::TimedOut,
            line = st.rx.recv() => Next::Line(line),
            () = tick_opt(&mut st.bookmarks) => Next::Bookmark,
        };
        match next {
            Next::Aborted => {
                st.done = true;
                return Some((Err(aborted()), st));
            }
            Next::TimedOut => return None,
            Next::Line(Some(line)) => return Some((Ok(line), st)),
            Next::Line(None) => {
                st.done = true;
                return st.cancel.is_cancelled().then(|| (Err(aborted()), st));
            }
            Next::Bookmark => st.shared.lock().queue_bookmark(st.id),
        }
    }
}
