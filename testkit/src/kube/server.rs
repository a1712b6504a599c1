//! [`FakeApiServer`]: the handle tests hold, and its script API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{KindInfo, ResourceKey, State, split_api_version};

/// What a request did, in RBAC terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection (answered 405 by the fake).
    DeleteCollection,
}

impl Verb {
    /// The RBAC verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource request the fake answered (discovery paths such as `/version` are not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The RBAC verb.
    pub verb: Verb,
    /// API group, "" for core.
    pub group: String,
    /// API version (`v1`, `v1alpha1`).
    pub version: String,
    /// Resource plural (`pods`, `leases`).
    pub plural: String,
    /// Namespace from the URL; None for cluster-wide and cluster-scoped requests.
    pub namespace: Option<String>,
    /// Object name from the URL; None for collection requests.
    pub name: Option<String>,
    /// Subresource (`status`), when the URL names one.
    pub subresource: Option<String>,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// The HTTP status answered (a watch counts as 200 when its stream started).
    pub status: u16,
}

impl RequestRecord {
    /// The first value of a query parameter.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Options for [`FakeApiServer::start_with`].
#[derive(Clone, Debug)]
pub struct FakeApiOptions {
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (default 1 s).
    pub bookmark_interval: Duration,
}

impl Default for FakeApiOptions {
    fn default() -> Self {
        FakeApiOptions {
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// State shared between the handle and the HTTP handlers.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Notify,
    pub bookmark_interval: Duration,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes [`FakeApiServer::wait_until`] callers.
    pub(crate) fn bump(&self) {
        self.changed.notify_waiters();
    }
}

/// Stops the server when the last handle goes.
struct Running {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.lock().drop_watches();
    }
}

/// A fake kube-apiserver on `127.0.0.1` over plain HTTP; see the [module docs](super).
///
/// Clones share the same server; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApiServer {
    running: Arc<Running>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.running.addr)
            .finish_non_exhaustive()
    }
}

/// The kind-table entry for `apiVersion` + `kind`; panics on an unknown kind.
fn resolve(state: &State, api_version: &str, kind: &str) -> KindInfo {
    state.kind_info(api_version, kind).unwrap_or_else(|| {
        panic!(
            "FakeApiServer: unknown kind {kind} in {api_version}; register it with register_kind"
        )
    })
}

fn ns_for(info: &KindInfo, ns: &str) -> String {
    if info.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

impl FakeApiServer {
    /// Starts a server with default [`FakeApiOptions`] on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the listener cannot be bound.
    pub async fn start() -> FakeApiServer {
        Self::start_with(FakeApiOptions::default()).await
    }

    /// Starts a server with the given options on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When the listener cannot be bound.
    pub async fn start_with(options: FakeApiOptions) -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server on 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            changed: Notify::new(),
            bookmark_interval: options.bookmark_interval,
        });
        let stop = CancellationToken::new();
        tokio::spawn(super::http::serve(listener, shared.clone(), stop.clone()));
        tracing::debug!(%addr, "fake kube-apiserver started");
        FakeApiServer {
            running: Arc::new(Running { shared, addr, stop }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.running.shared
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// A kube-rs client for this server (plain HTTP, no auth, default namespace `default`).
    /// Like any kube-rs 5 client it retries 429/503/504 answers itself (up to 15 times,
    /// exponential backoff from 5 ms) before a caller sees the error; build one from
    /// `kube::Config` with `default_retry = false` to see a 503 at once.
    ///
    /// # Panics
    /// When kube-rs cannot build a client (it can for a plain-HTTP URL).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("a valid URL"));
        kube::Client::try_from(config).expect("a kube client for the fake API server")
    }

    /// Adds (or replaces) a kind-table entry: how `apiVersion` + `kind` map to a URL plural
    /// and whether objects are namespaced. The built-in table covers core Pod, Event, Node,
    /// Namespace, Service, ConfigMap, Secret, ServiceAccount; apps ReplicaSet, Deployment,
    /// StatefulSet, DaemonSet; batch Job, CronJob; events.k8s.io Event; coordination.k8s.io
    /// Lease; argoproj.io Application; keda.sh ScaledObject, ScaledJob; kubeflow.org MPIJob.
    pub fn register_kind(&self, api_version: &str, kind: &str, plural: &str, namespaced: bool) {
        let (group, version) = split_api_version(api_version);
        self.shared().lock().register_kind(KindInfo {
            resource: ResourceKey::new(group, version, plural),
            kind: kind.to_string(),
            namespaced,
        });
    }

    /// Creates or replaces an object; returns it as stored (uid, resourceVersion,
    /// creationTimestamp, generation filled in). The resource comes from `apiVersion`/`kind`
    /// through the kind table; a namespaced object without `metadata.namespace` goes to
    /// `default`. A replace ignores any `metadata.resourceVersion` given; a replace whose
    /// `metadata.uid` differs from the stored one is a re-creation (DELETED then ADDED).
    ///
    /// # Panics
    /// On an unknown kind or a missing `metadata.name`.
    pub fn apply(&self, mut obj: Value) -> Value {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let out = {
            let mut state = self.shared().lock();
            let info = resolve(&state, &api_version, &kind);
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("FakeApiServer::apply: {kind} without metadata.name"))
                .to_string();
            let given_ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ns = if info.namespaced && given_ns.is_empty() {
                "default".to_string()
            } else {
                ns_for(&info, &given_ns)
            };
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
                if info.namespaced {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                } else {
                    meta.remove("namespace");
                }
            }
            let res = &info.resource;
            let result = match state.get(res, &ns, &name) {
                None => state.create(res, obj),
                Some(old) => {
                    let old_uid = old.pointer("/metadata/uid").and_then(Value::as_str);
                    let new_uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                    if new_uid.is_some_and(|u| !u.is_empty() && Some(u) != old_uid) {
                        state
                            .delete(res, &ns, &name)
                            .and_then(|_| state.create(res, obj))
                    } else {
                        state.replace(res, obj, false)
                    }
                }
            };
            result.unwrap_or_else(|e| panic!("FakeApiServer::apply: {}", e.message))
        };
        self.shared().bump();
        out
    }

    /// Deletes an object (`ns` is ignored for cluster-scoped kinds); returns it as it was,
    /// or None when there was none.
    ///
    /// # Panics
    /// On an unknown kind.
    pub fn delete(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let out = {
            let mut state = self.shared().lock();
            let info = resolve(&state, api_version, kind);
            state.delete(&info.resource, &ns_for(&info, ns), name).ok()
        };
        self.shared().bump();
        out
    }

    /// The stored object, if any (`ns` is ignored for cluster-scoped kinds).
    ///
    /// # Panics
    /// On an unknown kind.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let state = self.shared().lock();
        let info = resolve(&state, api_version, kind);
        state.get(&info.resource, &ns_for(&info, ns), name)
    }

    /// The cluster-wide resourceVersion of the latest write (1 before any).
    pub fn resource_version(&self) -> u64 {
        self.shared().lock().resource_version()
    }

    /// Forgets the event history up to now: a watch (or an exact/continued list) from an older
    /// resourceVersion gets 410 Expired, and kube-runtime watchers relist.
    pub fn compact(&self) {
        self.shared().lock().compact();
        self.shared().bump();
    }

    /// Aborts every open watch connection mid-stream (the chunked body ends without its
    /// terminating chunk), as a restarting API server or a broken network does.
    pub fn drop_watches(&self) {
        self.shared().lock().drop_watches();
        self.shared().bump();
    }

    /// While false every request gets HTTP 503 with a `Status` body (reason
    /// `ServiceUnavailable`, no `Retry-After`); switching to false also aborts the open
    /// watches. Connections are still accepted (not refused).
    pub fn set_available(&self, available: bool) {
        {
            let mut state = self.shared().lock();
            state.available = available;
            if !available {
                state.drop_watches();
            }
        }
        self.shared().bump();
    }

    /// Every resource request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared().lock().requests.clone()
    }

    /// Open watch connections now.
    pub fn watch_count(&self) -> usize {
        self.shared().lock().watch_count()
    }

    /// Waits until `condition` holds, re-checking after every request, write and watch
    /// open/close; false when `timeout` passes first.
    pub async fn wait_until<F>(&self, timeout: Duration, mut condition: F) -> bool
    where
        F: FnMut(&FakeApiServer) -> bool,
    {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared().changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if condition(self) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}
