//! The fake cluster's state: objects, the resourceVersion counter, the event history, the
//! open watches and the request log. Everything sits behind one mutex in
//! [`super::FakeApiServer`]; every method here runs with that lock held, so a write, its
//! history entry and its fan-out to open watches are one atomic step.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::selector::{FieldSelector, LabelSelector};
use super::server::RequestRecord;

/// A resource as the URL names it: API group ("" for core), version and plural.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ResourceKey {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceKey {
    pub(crate) fn new(group: &str, version: &str, plural: &str) -> Self {
        ResourceKey {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    /// `pods` or `leases.coordination.k8s.io`, as real error messages name a resource.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `v1` or `apps/v1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One entry of the kind table: how an apiVersion + kind maps to a URL resource.
#[derive(Clone, Debug)]
pub(crate) struct KindInfo {
    pub resource: ResourceKey,
    pub kind: String,
    pub namespaced: bool,
}

/// The kinds the fake knows without [`super::FakeApiServer::register_kind`].
pub(crate) fn builtin_kinds() -> Vec<KindInfo> {
    const TABLE: &[(&str, &str, &str, &str, bool)] = &[
        ("", "v1", "Pod", "pods", true),
        ("", "v1", "Event", "events", true),
        ("", "v1", "Node", "nodes", false),
        ("", "v1", "Namespace", "namespaces", false),
        ("", "v1", "Service", "services", true),
        ("", "v1", "ConfigMap", "configmaps", true),
        ("", "v1", "Secret", "secrets", true),
        ("", "v1", "ServiceAccount", "serviceaccounts", true),
        ("apps", "v1", "ReplicaSet", "replicasets", true),
        ("apps", "v1", "Deployment", "deployments", true),
        ("apps", "v1", "StatefulSet", "statefulsets", true),
        ("apps", "v1", "DaemonSet", "daemonsets", true),
        ("batch", "v1", "Job", "jobs", true),
        ("batch", "v1", "CronJob", "cronjobs", true),
        ("events.k8s.io", "v1", "Event", "events", true),
        ("coordination.k8s.io", "v1", "Lease", "leases", true),
        (
            "argoproj.io",
            "v1alpha1",
            "Application",
            "applications",
            true,
        ),
        ("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", true),
        ("keda.sh", "v1alpha1", "ScaledJob", "scaledjobs", true),
        ("kubeflow.org", "v2beta1", "MPIJob", "mpijobs", true),
    ];
    TABLE
        .iter()
        .map(|&(group, version, kind, plural, namespaced)| KindInfo {
            resource: ResourceKey::new(group, version, plural),
            kind: kind.to_string(),
            namespaced,
        })
        .collect()
}

/// Splits `apps/v1` into ("apps", "v1") and `v1` into ("", "v1").
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// What happened to an object, as a watch event names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write in the cluster's history.
#[derive(Clone, Debug)]
struct HistoryEvent {
    rv: u64,
    resource: ResourceKey,
    event: EventType,
    /// The object after the write (for a delete: as it was, carrying the deletion's rv).
    object: Value,
    /// The object before the write (None for a create).
    prev: Option<Value>,
}

/// An error answered as a `Status` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// (name, resource) for `details`.
    pub details: Option<Box<(String, ResourceKey)>>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, name: &str, res: &ResourceKey) -> Self {
        self.details = Some(Box::new((name.to_string(), res.clone())));
        self
    }

    pub(crate) fn not_found(res: &ResourceKey, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified()),
        )
        .about(name, res)
    }

    pub(crate) fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// The `Status` object real servers send.
    pub(crate) fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let (name, res) = details.as_ref();
            let mut d = json!({"name": name, "kind": res.plural});
            if !res.group.is_empty() {
                d["group"] = json!(res.group);
            }
            s["details"] = d;
        }
        s
    }
}

/// Which objects a list or watch selects.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// An open watch connection as the store sees it.
struct WatchEntry {
    resource: ResourceKey,
    filter: Filter,
    tx: mpsc::UnboundedSender<Bytes>,
    cancel: CancellationToken,
}

/// Where a new watch starts.
pub(crate) enum WatchStart {
    /// `resourceVersion` absent or "0": synthetic ADDED for the current objects, then live.
    Current,
    /// Every history event after this resourceVersion, then live.
    After(u64),
}

/// A watch the store accepted.
pub(crate) struct OpenedWatch {
    pub id: u64,
    /// Lines to send before live events.
    pub backlog: Vec<Bytes>,
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    pub cancel: CancellationToken,
}

/// Object key inside a resource: (namespace or "", name).
type ObjKey = (String, String);

/// The whole fake cluster.
pub(crate) struct State {
    rv: u64,
    compacted: u64,
    next_uid: u64,
    next_watch: u64,
    objects: BTreeMap<ResourceKey, BTreeMap<ObjKey, Value>>,
    history: VecDeque<HistoryEvent>,
    watches: HashMap<u64, WatchEntry>,
    kinds: Vec<KindInfo>,
    pub requests: Vec<RequestRecord>,
    pub available: bool,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn obj_key(obj: &Value) -> ObjKey {
    (
        meta_str(obj, "namespace").unwrap_or_default().to_string(),
        meta_str(obj, "name").unwrap_or_default().to_string(),
    )
}

fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

fn set_rv(obj: &mut Value, rv: u64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
}

/// Everything but metadata and status: what bumps `metadata.generation` when it changes.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// One `{"type":…,"object":…}` line, `type` first as the real server writes it.
pub(crate) fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = format!(r#"{{"type":"{event_type}","object":"#).into_bytes();
    serde_json::to_writer(&mut line, object).expect("JSON values serialize");
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// The watch event a filtered watch sees for a write: a write that moves an object into the
/// selection reads as ADDED, out of it as DELETED (the previous object at the new rv), as the
/// real watch cache does.
fn filtered_event(filter: &Filter, ev: &HistoryEvent) -> Option<Bytes> {
    let now = filter.matches(&ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
    match ev.event {
        EventType::Added => now.then(|| event_line("ADDED", &ev.object)),
        EventType::Deleted => (now || before).then(|| event_line("DELETED", &ev.object)),
        EventType::Modified => match (before, now) {
            (true, true) => Some(event_line(EventType::Modified.as_str(), &ev.object)),
            (false, true) => Some(event_line("ADDED", &ev.object)),
            (true, false) => {
                let mut gone = ev.prev.clone().expect("before implies prev");
                set_rv(&mut gone, ev.rv);
                Some(event_line("DELETED", &gone))
            }
            (false, false) => None,
        },
    }
}

/// Seconds since the epoch as RFC 3339 UTC with second precision (`2025-01-01T00:00:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    rfc3339(i64::try_from(secs).unwrap_or(i64::MAX))
}

impl State {
    pub(crate) fn new() -> Self {
        State {
            rv: 1,
            compacted: 0,
            next_uid: 1,
            next_watch: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            watches: HashMap::new(),
            kinds: builtin_kinds(),
            requests: Vec::new(),
            available: true,
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    // ----- kinds -----

    pub(crate) fn register_kind(&mut self, info: KindInfo) {
        self.kinds.retain(|k| {
            !(k.resource == info.resource
                || k.kind == info.kind
                    && k.resource.group == info.resource.group
                    && k.resource.version == info.resource.version)
        });
        self.kinds.push(info);
    }

    /// The table entry for an apiVersion + kind.
    pub(crate) fn kind_info(&self, api_version: &str, kind: &str) -> Option<KindInfo> {
        let (group, version) = split_api_version(api_version);
        self.kinds
            .iter()
            .find(|k| k.kind == kind && k.resource.group == group && k.resource.version == version)
            .cloned()
    }

    /// The kind served at a URL resource, when the table knows it.
    pub(crate) fn kind_of(&self, res: &ResourceKey) -> Option<String> {
        self.kinds
            .iter()
            .find(|k| &k.resource == res)
            .map(|k| k.kind.clone())
    }

    // ----- reads -----

    pub(crate) fn get(&self, res: &ResourceKey, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The objects of a resource as they were at `at` (the current ones when `at` is now):
    /// writes after `at` are undone from the history. 410 when `at` is before the compaction.
    pub(crate) fn objects_at(
        &self,
        res: &ResourceKey,
        at: u64,
    ) -> Result<BTreeMap<ObjKey, Value>, ApiError> {
        let mut objects = self.objects.get(res).cloned().unwrap_or_default();
        if at >= self.rv {
            return Ok(objects);
        }
        if at < self.compacted {
            return Err(ApiError::expired(format!(
                "too old resource version: {at} ({})",
                self.compacted
            )));
        }
        for ev in self.history.iter().rev().take_while(|e| e.rv > at) {
            if &ev.resource != res {
                continue;
            }
            match &ev.prev {
                Some(p) => {
                    objects.insert(obj_key(p), p.clone());
                }
                None => {
                    objects.remove(&obj_key(&ev.object));
                }
            }
        }
        Ok(objects)
    }

    // ----- writes -----

    fn fresh_uid(&mut self) -> String {
        let n = self.next_uid;
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    /// Creates an object; 409 AlreadyExists when one of that name is there.
    pub(crate) fn create(&mut self, res: &ResourceKey, mut obj: Value) -> Result<Value, ApiError> {
        if meta_str(&obj, "name").is_none_or(str::is_empty) {
            let Some(prefix) = meta_str(&obj, "generateName").map(str::to_string) else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} is invalid: metadata.name: Required value: name or generateName is required",
                        res.qualified()
                    ),
                ));
            };
            let suffix = self.fresh_uid();
            let name = format!("{prefix}{}", &suffix[suffix.len() - 5..]);
            metadata_mut(&mut obj).insert("name".into(), json!(name));
        }
        let key = obj_key(&obj);
        if self.get(res, &key.0, &key.1).is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", res.qualified(), key.1),
            )
            .about(&key.1, res));
        }
        self.rv += 1;
        let rv = self.rv;
        let uid = match meta_str(&obj, "uid") {
            Some(u) if !u.is_empty() => None,
            _ => Some(self.fresh_uid()),
        };
        let meta = metadata_mut(&mut obj);
        if let Some(uid) = uid {
            meta.insert("uid".into(), json!(uid));
        }
        if meta
            .get("creationTimestamp")
            .is_none_or(|t| t.is_null() || t.as_str() == Some(""))
        {
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
        if !meta.get("generation").is_some_and(Value::is_i64) {
            meta.insert("generation".into(), json!(1));
        }
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.record(rv, res, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces an object. With `check_rv`, a `metadata.resourceVersion` that is not the
    /// stored one is a 409 Conflict (optimistic concurrency); a `metadata.uid` that is not the
    /// stored one always is.
    pub(crate) fn replace(
        &mut self,
        res: &ResourceKey,
        mut obj: Value,
        check_rv: bool,
    ) -> Result<Value, ApiError> {
        let key = obj_key(&obj);
        let Some(old) = self.get(res, &key.0, &key.1) else {
            return Err(ApiError::not_found(res, &key.1));
        };
        let conflict = |why: &str| {
            ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {:?}: {why}",
                    res.qualified(),
                    key.1
                ),
            )
            .about(&key.1, res)
        };
        if check_rv
            && let Some(given) = meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty())
            && Some(given) != meta_str(&old, "resourceVersion")
        {
            return Err(conflict(
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let old_uid = meta_str(&old, "uid").unwrap_or_default().to_string();
        if let Some(given) = meta_str(&obj, "uid").filter(|s| !s.is_empty())
            && given != old_uid
        {
            return Err(conflict(&format!(
                "Precondition failed: UID in precondition: {given}, UID in object meta: {old_uid}"
            )));
        }
        self.rv += 1;
        let rv = self.rv;
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            + i64::from(spec_part(&old) != spec_part(&obj));
        let old_created = old.pointer("/metadata/creationTimestamp").cloned();
        let meta = metadata_mut(&mut obj);
        meta.insert("uid".into(), json!(old_uid));
        if meta
            .get("creationTimestamp")
            .is_none_or(|t| t.is_null() || t.as_str() == Some(""))
            && let Some(created) = old_created
        {
            meta.insert("creationTimestamp".into(), created);
        }
        meta.insert("generation".into(), json!(generation));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .entry(res.clone())
            .or_default()
            .insert(key, obj.clone());
        self.record(rv, res, EventType::Modified, obj.clone(), Some(old));
        Ok(obj)
    }

    /// Deletes an object; the answer (and the DELETED event) carries the deletion's rv.
    pub(crate) fn delete(
        &mut self,
        res: &ResourceKey,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = (ns.to_string(), name.to_string());
        let Some(old) = self.objects.get_mut(res).and_then(|m| m.remove(&key)) else {
            return Err(ApiError::not_found(res, name));
        };
        self.rv += 1;
        let rv = self.rv;
        let mut gone = old.clone();
        set_rv(&mut gone, rv);
        self.record(rv, res, EventType::Deleted, gone.clone(), Some(old));
        Ok(gone)
    }

    /// Appends to the history and fans the event out to every open watch that selects it.
    fn record(
        &mut self,
        rv: u64,
        res: &ResourceKey,
        event: EventType,
        object: Value,
        prev: Option<Value>,
    ) {
        let ev = HistoryEvent {
            rv,
            resource: res.clone(),
            event,
            object,
            prev,
        };
        self.watches.retain(|_, w| {
            if &w.resource != res {
                return true;
            }
            match filtered_event(&w.filter, &ev) {
                Some(line) => w.tx.send(line).is_ok(),
                None => true,
            }
        });
        self.history.push_back(ev);
    }

    /// Forgets the history up to now: a watch or list at an older resourceVersion gets 410.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    // ----- watches -----

    /// Opens a watch: the backlog (history after `start`, or synthetic ADDED for the current
    /// objects) and the registration for live events are taken under the same lock, so no
    /// event is lost or doubled. 410 Expired when `start` is before the compaction.
    pub(crate) fn open_watch(
        &mut self,
        res: &ResourceKey,
        filter: Filter,
        start: WatchStart,
        initial_events_end: bool,
    ) -> Result<OpenedWatch, ApiError> {
        let mut backlog = Vec::new();
        match start {
            WatchStart::After(from) => {
                if from < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {from} ({})",
                        self.compacted
                    )));
                }
                backlog.extend(
                    self.history
                        .iter()
                        .filter(|e| e.rv > from && &e.resource == res)
                        .filter_map(|e| filtered_event(&filter, e)),
                );
            }
            WatchStart::Current => {
                if let Some(objects) = self.objects.get(res) {
                    backlog.extend(
                        objects
                            .values()
                            .filter(|o| filter.matches(o))
                            .map(|o| event_line("ADDED", o)),
                    );
                }
            }
        }
        if initial_events_end {
            let mut bm = self.bookmark_object(res);
            bm["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            backlog.push(event_line("BOOKMARK", &bm));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let id = self.next_watch;
        self.next_watch += 1;
        self.watches.insert(
            id,
            WatchEntry {
                resource: res.clone(),
                filter,
                tx,
                cancel: cancel.clone(),
            },
        );
        Ok(OpenedWatch {
            id,
            backlog,
            rx,
            cancel,
        })
    }

    fn bookmark_object(&self, res: &ResourceKey) -> Value {
        json!({
            "kind": self.kind_of(res).unwrap_or_default(),
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": self.rv.to_string()},
        })
    }

    /// Queues a BOOKMARK at the current resourceVersion behind the events already queued
    /// for this watch (so a bookmark never overtakes an event it covers).
    pub(crate) fn queue_bookmark(&mut self, id: u64) {
        let Some(res) = self.watches.get(&id).map(|w| w.resource.clone()) else {
            return;
        };
        let line = event_line("BOOKMARK", &self.bookmark_object(&res));
        if let Some(w) = self.watches.get(&id)
            && w.tx.send(line).is_err()
        {
            self.watches.remove(&id);
        }
    }

    /// Forgets a watch whose connection ended.
    pub(crate) fn close_watch(&mut self, id: u64) {
        self.watches.remove(&id);
    }

    /// Aborts every open watch connection.
    pub(crate) fn drop_watches(&mut self) {
        for (_, w) in self.watches.drain() {
            w.cancel.cancel();
        }
    }

    pub(crate) fn watch_count(&self) -> usize {
        self.watches.len()
    }
}
