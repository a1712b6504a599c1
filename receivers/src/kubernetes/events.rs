//! Kubernetes Events (core/v1) as log records, in the shape of the OpenTelemetry Collector's
//! `k8s_events` receiver, joined to the Argo CD rollout they happened in.
//!
//! Emitted by the `mode: cluster` instance only (Events are cluster-wide: one emitter). An
//! Event joins a rollout when an Application deploying into the Event's namespace has a sync
//! whose window (start to `settle_timeout` after its end) holds the Event's time: the record
//! then carries the rollout's trace id and root span id, and the revision. KEDA's reasons
//! (`KEDAScaleTargetActivated`, `KEDAScalerFailed`, `ScaledObjectFallbackActivated`, ...),
//! Argo CD's (`OperationStarted`, `OperationCompleted`) and pod failures (`BackOff` of a crash
//! loop, `OOMKilling`, `FailedScheduling`, image pull `Failed`) are ordinary Events here.
//!
//! Events come in two shapes, both read through the core/v1 API. Writers of core/v1 (the
//! legacy `record` recorder) repeat an Event by raising `count` and `lastTimestamp`. Writers of
//! `events.k8s.io/v1` (client-go's `tools/events`: kube-scheduler, newer controllers, KEDA's
//! operator) set `eventTime` (the first occurrence, a MicroTime), `action`, `reportingComponent`
//! and `reportingInstance`, leave `firstTimestamp`/`lastTimestamp` null and `count` absent, and
//! repeat through `series{count, lastObservedTime}` — written at the first repeat (count 2),
//! then only on the reporter's heartbeat (every 30 minutes) and once more when the series ends
//! (6 minutes without an occurrence), so the count may jump. One record is emitted per
//! occurrence count the API shows ([`occurrences`]), at the time of the latest occurrence
//! ([`event_time`]); a heartbeat that rewrites the same count is no new record.

use std::collections::{HashSet, VecDeque};

use hpcotel_core::catalog::{ArgoApp, Snapshot, rollout_span_id, rollout_trace_id, workload_key};
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use k8s_openapi::api::core::v1::Event;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// Events remembered to drop repeats across relists.
pub const REMEMBERED_EVENTS: usize = 8192;

/// The time an Event last happened, Unix ns: `series.lastObservedTime`, else `lastTimestamp`,
/// else `eventTime` (an `events.k8s.io/v1` Event's first occurrence), else `firstTimestamp`,
/// else its creation.
pub fn event_time(e: &Event) -> Option<u64> {
    let nanos = |ts: i128| u64::try_from(ts).ok();
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .and_then(|t| nanos(t.0.as_nanosecond()))
        .or_else(|| {
            e.last_timestamp
                .as_ref()
                .and_then(|t| nanos(t.0.as_nanosecond()))
        })
        .or_else(|| {
            e.event_time
                .as_ref()
                .and_then(|t| nanos(t.0.as_nanosecond()))
        })
        .or_else(|| {
            e.first_timestamp
                .as_ref()
                .and_then(|t| nanos(t.0.as_nanosecond()))
        })
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| nanos(t.0.as_nanosecond()))
        })
}

/// How many times an Event has happened so far: `series.count` when it has a series
/// (`events.k8s.io/v1` writers), else `count` (core/v1 writers), else 1 (a first occurrence:
/// a singleton of either shape may show no count or 0).
pub fn occurrences(e: &Event) -> i32 {
    e.series
        .as_ref()
        .and_then(|s| s.count)
        .filter(|c| *c > 0)
        .or(e.count.filter(|c| *c > 0))
        .unwrap_or(1)
}

/// Drops Events already emitted (same UID and [`occurrences`]) and Events that last happened
/// before the collector started (the previous instance emitted them).
#[derive(Debug)]
pub struct Dedup {
    since_unix_nano: u64,
    seen: HashSet<(String, i32)>,
    order: VecDeque<(String, i32)>,
}

impl Dedup {
    /// Emits Events that happened at or after `since_unix_nano`.
    pub fn new(since_unix_nano: u64) -> Dedup {
        Dedup {
            since_unix_nano,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time an occurrence of `e` is seen.
    pub fn first(&mut self, e: &Event) -> bool {
        if event_time(e).is_none_or(|t| t < self.since_unix_nano) {
            return false;
        }
        let key = (e.metadata.uid.clone().unwrap_or_default(), occurrences(e));
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > REMEMBERED_EVENTS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// A rollout a cluster-scoped record joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutJoin {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    revision: String,
    app: String,
    app_namespace: String,
}

impl RolloutJoin {
    /// Sets the rollout's trace and span ids on `record` and its revision (when resolved:
    /// a retry with `refresh` clears it for a while) and application on `attributes`.
    pub fn stamp(&self, record: &mut LogRecord, attributes: &mut Vec<KeyValue>) {
        record.trace_id = self.trace_id.to_vec();
        record.span_id = self.span_id.to_vec();
        if !self.revision.is_empty() {
            attributes.push(kv(semconv::VCS_REF_HEAD_REVISION, self.revision.clone()));
        }
        attributes.push(kv(semconv::HPCOTEL_ARGOCD_APPLICATION, self.app.clone()));
        attributes.push(kv(
            semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE,
            self.app_namespace.clone(),
        ));
    }
}

/// What a cluster-scoped record is about: its namespace and, when known, the object
/// (`kind`, `name`, and for an Argo CD Application its API group).
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// The object's namespace.
    pub namespace: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its `apiVersion` (`argoproj.io/v1alpha1` for an Application).
    pub api_version: &'a str,
}

/// The rollout a record about `about` at time `t` belongs to, if one can be named:
///
/// - about an Argo CD Application itself (Argo CD's own `OperationStarted`,
///   `OperationCompleted`, … Events): that Application's rollout;
/// - otherwise, among the Applications deploying into the object's namespace in this
///   cluster: the one, if there is exactly one; with several, only one whose operation
///   applied the object itself (a pod's Event then joins none: which app's rollout it belongs
///   to cannot be told from the namespace).
///
/// In either case only while `t` falls in the rollout's window (start to `settle_ns` after
/// its end).
pub fn rollout_join(
    snapshot: &Snapshot,
    about: About<'_>,
    t: u64,
    settle_ns: u64,
) -> Option<RolloutJoin> {
    let app = if about.kind == "Application" && about.api_version.starts_with("argoproj.io/") {
        snapshot
            .apps
            .values()
            .find(|a| a.namespace == about.namespace && a.name == about.name)?
    } else {
        let deploying: Vec<&ArgoApp> = snapshot
            .apps
            .values()
            .filter(|a| a.destination_namespace.as_deref() == Some(about.namespace))
            .collect();
        match deploying.as_slice() {
            [one] => *one,
            many => {
                let key = workload_key(about.kind, about.namespace, about.name);
                let mut applied = many.iter().filter(|a| {
                    a.operation
                        .as_ref()
                        .is_some_and(|op| op.applied.contains(&key))
                });
                match (applied.next(), applied.next()) {
                    (Some(a), None) => *a,
                    _ => return None,
                }
            }
        }
    };
    let op = app.operation.as_ref()?;
    let end = op
        .finished_unix_nano
        .map_or(u64::MAX, |f| f.saturating_add(settle_ns));
    if !(op.started_unix_nano <= t && t <= end) {
        return None;
    }
    let trace_id = rollout_trace_id(&app.uid, op.started_unix_nano);
    Some(RolloutJoin {
        span_id: rollout_span_id(&trace_id, "root"),
        trace_id,
        revision: op.revision.clone(),
        app: app.name.clone(),
        app_namespace: app.namespace.clone(),
    })
}

/// The log record of one Event at [`event_time`], `k8s.event.count` its [`occurrences`],
/// joined to a rollout from `snapshot` when one covers it.
pub fn record(e: &Event, snapshot: &Snapshot, settle_ns: u64) -> LogRecord {
    let t = event_time(e).unwrap_or_default();
    let o = &e.involved_object;
    let namespace = o
        .namespace
        .clone()
        .or_else(|| e.metadata.namespace.clone())
        .unwrap_or_default();
    let mut attributes = vec![
        kv(
            semconv::K8S_EVENT_REASON,
            e.reason.clone().unwrap_or_default(),
        ),
        kv(
            semconv::K8S_EVENT_NAME,
            e.metadata.name.clone().unwrap_or_default(),
        ),
        kv(
            semconv::K8S_EVENT_UID,
            e.metadata.uid.clone().unwrap_or_default(),
        ),
        kv_int(semconv::K8S_EVENT_COUNT, i64::from(occurrences(e))),
        kv(semconv::K8S_NAMESPACE_NAME, namespace.clone()),
        kv(semconv::K8S_OBJECT_KIND, o.kind.clone().unwrap_or_default()),
        kv(semconv::K8S_OBJECT_NAME, o.name.clone().unwrap_or_default()),
        kv(semconv::K8S_OBJECT_UID, o.uid.clone().unwrap_or_default()),
    ];
    if let Some(a) = &e.action {
        attributes.push(kv(semconv::K8S_EVENT_ACTION, a.clone()));
    }
    if let Some(f) = &o.field_path {
        attributes.push(kv(semconv::K8S_OBJECT_FIELDPATH, f.clone()));
    }
    if let Some(v) = &o.api_version {
        attributes.push(kv(semconv::K8S_OBJECT_API_VERSION, v.clone()));
    }
    let warning = e.type_.as_deref() == Some("Warning");
    let mut record = LogRecord {
        time_unix_nano: t,
        observed_time_unix_nano: t,
        severity_number: if warning { 13 } else { 9 },
        severity_text: if warning { "WARN" } else { "INFO" }.to_owned(),
        event_name: "k8s.event".to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(
                e.message.clone().unwrap_or_default(),
            )),
        }),
        ..Default::default()
    };
    let about = About {
        namespace: &namespace,
        kind: o.kind.as_deref().unwrap_or_default(),
        name: o.name.as_deref().unwrap_or_default(),
        api_version: o.api_version.as_deref().unwrap_or_default(),
    };
    if let Some(j) = rollout_join(snapshot, about, t, settle_ns) {
        j.stamp(&mut record, &mut attributes);
    }
    record.attributes = attributes;
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcotel_testkit::kube::fixtures;
    use serde_json::{Value, json};

    const FIRST: &str = "2026-03-02T10:00:00.250000Z";
    const SECOND: &str = "2026-03-02T10:00:40.500000Z";
    const THIRD: &str = "2026-03-02T10:30:40.750000Z";

    fn nanos(rfc3339: &str) -> u64 {
        let t = humantime::parse_rfc3339(rfc3339).unwrap();
        u64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
    }

    /// KEDA's operator reporting a failing scaler through `events.k8s.io/v1`, as the API
    /// server returns it through core/v1 (the server fills uid and creationTimestamp).
    fn keda_event(series: Option<(i32, &str)>) -> Event {
        let mut e = fixtures::events_v1_event(
            "ml",
            "trainer.1899a2b3c4d5e6f7",
            ("ScaledObject", "ml", "trainer", "uid-so"),
            "KEDAScalerFailed",
            "KEDAScalerFailed",
            "error requesting metrics endpoint: connection refused",
            "Warning",
            (
                "keda-operator",
                "keda-operator-keda-operator-7c9d8f6b5-x2x9k",
            ),
            FIRST,
            series,
        );
        e["metadata"]["uid"] = json!("uid-ev");
        e["metadata"]["creationTimestamp"] = json!("2026-03-02T10:00:00Z");
        serde_json::from_value(e).unwrap()
    }

    fn attr(r: &LogRecord, key: &str) -> Option<any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    #[test]
    fn an_events_v1_series_is_one_record_per_count_at_its_last_observed_time() {
        let mut dedup = Dedup::new(nanos(FIRST) - 1);
        let occurrences = [
            (keda_event(None), 1, FIRST),
            (keda_event(Some((2, SECOND))), 2, SECOND),
            (keda_event(Some((3, THIRD))), 3, THIRD),
        ];
        for (e, count, at) in &occurrences {
            assert!(dedup.first(e), "occurrence {count} is new");
            let r = record(e, &Snapshot::default(), 0);
            assert_eq!(
                attr(&r, semconv::K8S_EVENT_COUNT),
                Some(any_value::Value::IntValue(i64::from(*count)))
            );
            assert_eq!(r.time_unix_nano, nanos(at), "occurrence {count} at {at}");
            assert_eq!(r.severity_text, "WARN");
            assert_eq!(
                attr(&r, semconv::K8S_EVENT_ACTION),
                Some(any_value::Value::StringValue("KEDAScalerFailed".into()))
            );
        }
        // The recorder's heartbeat rewrites the series unchanged; a relist lists it again.
        assert!(!dedup.first(&keda_event(Some((3, THIRD)))), "no repeat");
        assert!(
            !dedup.first(&occurrences[1].0),
            "an old occurrence stays dropped"
        );
    }

    #[test]
    fn a_series_that_began_before_the_start_is_logged_when_it_repeats_after() {
        // This instance started between the first occurrence and the second.
        let mut dedup = Dedup::new(nanos(SECOND) - 1);
        assert!(!dedup.first(&keda_event(None)), "the previous instance's");
        assert!(dedup.first(&keda_event(Some((2, SECOND)))));
    }

    #[test]
    fn event_time_and_occurrences_read_either_shape() {
        let e = keda_event(Some((7, THIRD)));
        assert!(e.last_timestamp.is_none() && e.first_timestamp.is_none() && e.count.is_none());
        assert_eq!(event_time(&e), Some(nanos(THIRD)));
        assert_eq!(occurrences(&e), 7);
        // A singleton events.k8s.io Event: its eventTime (microseconds kept).
        let e = keda_event(None);
        assert_eq!(event_time(&e), Some(nanos(FIRST)));
        assert_eq!(occurrences(&e), 1);
        // A zero count is no count (core/v1 leaves 0 out; a client may write it).
        let mut v: Value = serde_json::to_value(&e).unwrap();
        v["count"] = json!(0);
        assert_eq!(occurrences(&serde_json::from_value(v).unwrap()), 1);
        // The core/v1 shape: count and lastTimestamp.
        let legacy: Event = serde_json::from_value(fixtures::event(
            "ml",
            "trainer-b-1.1899a2b3c4d5e6f7",
            ("Pod", "ml", "trainer-b-1", "uid-pod"),
            "BackOff",
            "Back-off restarting failed container main",
            "Warning",
            "kubelet",
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:05:00Z",
            9,
        ))
        .unwrap();
        assert_eq!(event_time(&legacy), Some(nanos("2026-03-02T10:05:00Z")));
        assert_eq!(occurrences(&legacy), 9);
    }

    /// Apps `trainer` and `notebook` both deploy into `ml`; `trainer`'s sync (applied
    /// Deployment `ml/trainer`) ran from 100 s to 110 s.
    fn two_apps_one_namespace() -> Snapshot {
        use hpcotel_core::catalog::SyncOperation;
        let mut s = Snapshot::default();
        for (name, op) in [
            (
                "trainer",
                Some(SyncOperation {
                    revision: "t2".into(),
                    started_unix_nano: 100_000_000_000,
                    finished_unix_nano: Some(110_000_000_000),
                    applied: vec![workload_key("Deployment", "ml", "trainer")],
                    ..Default::default()
                }),
            ),
            ("notebook", None),
        ] {
            s.apps.insert(
                name.into(),
                ArgoApp {
                    namespace: "argocd".into(),
                    name: name.into(),
                    instance_name: name.into(),
                    uid: format!("uid-{name}"),
                    destination_namespace: Some("ml".into()),
                    operation: op,
                    ..Default::default()
                },
            );
        }
        s
    }

    #[test]
    fn with_two_apps_in_a_namespace_only_what_a_rollout_applied_joins_it() {
        let s = two_apps_one_namespace();
        let about = |kind, name, api_version| About {
            namespace: "ml",
            kind,
            name,
            api_version,
        };
        let t = 105_000_000_000;
        // A pod of the namespace may be notebook's: which rollout it belongs to is unknown.
        assert!(rollout_join(&s, about("Pod", "notebook-0", "v1"), t, 0).is_none());
        // The Deployment trainer's sync applied joins it.
        let j = rollout_join(&s, about("Deployment", "trainer", "apps/v1"), t, 0).unwrap();
        assert_eq!(j.app, "trainer");
        assert_eq!(j.revision, "t2");
        // Argo CD's own Event about an Application joins that Application's rollout.
        let own = About {
            namespace: "argocd",
            kind: "Application",
            name: "trainer",
            api_version: "argoproj.io/v1alpha1",
        };
        assert_eq!(rollout_join(&s, own, t, 0).unwrap().app, "trainer");
        // Outside the window: nothing.
        assert!(rollout_join(&s, own, 200_000_000_000, 0).is_none());
        // With notebook gone, the namespace is trainer's alone: its pods join.
        let mut s = s;
        s.apps.remove("notebook");
        assert_eq!(
            rollout_join(&s, about("Pod", "trainer-0", "v1"), t, 0)
                .unwrap()
                .app,
            "trainer"
        );
    }
}
