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

use std::collections::{HashSet, VecDeque};

use hpcotel_core::catalog::{Snapshot, rollout_span_id, rollout_trace_id};
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int};
use k8s_openapi::api::core::v1::Event;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// Events remembered to drop repeats across relists.
pub const REMEMBERED_EVENTS: usize = 8192;

/// The time an Event last happened, Unix ns: `lastTimestamp`, else `eventTime`, else
/// `firstTimestamp`, else its creation.
pub fn event_time(e: &Event) -> Option<u64> {
    let nanos = |ts: i128| u64::try_from(ts).ok();
    e.last_timestamp
        .as_ref()
        .and_then(|t| nanos(t.0.as_nanosecond()))
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

/// Drops Events already emitted (same UID and count) and Events from before the collector
/// started (the previous instance emitted them).
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
        let key = (
            e.metadata.uid.clone().unwrap_or_default(),
            e.count.unwrap_or(1),
        );
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
}

impl RolloutJoin {
    /// Sets the rollout's trace and span ids on `record` and its revision and application
    /// on `attributes`.
    pub fn stamp(&self, record: &mut LogRecord, attributes: &mut Vec<KeyValue>) {
        record.trace_id = self.trace_id.to_vec();
        record.span_id = self.span_id.to_vec();
        attributes.push(kv(semconv::VCS_REF_HEAD_REVISION, self.revision.clone()));
        attributes.push(kv(semconv::HPCOTEL_ARGOCD_APPLICATION, self.app.clone()));
    }
}

/// The rollout in whose window (start to `settle_ns` after its end) time `t` falls, among
/// the Applications deploying into `namespace`; the latest one when several do.
pub fn rollout_join(
    snapshot: &Snapshot,
    namespace: &str,
    t: u64,
    settle_ns: u64,
) -> Option<RolloutJoin> {
    let (app, op) = snapshot
        .apps
        .values()
        .filter(|a| a.destination_namespace.as_deref() == Some(namespace))
        .filter_map(|a| Some((a, a.operation.as_ref()?)))
        .filter(|(_, op)| {
            let end = op
                .finished_unix_nano
                .map_or(u64::MAX, |f| f.saturating_add(settle_ns));
            op.started_unix_nano <= t && t <= end
        })
        .max_by_key(|(_, op)| op.started_unix_nano)?;
    let trace_id = rollout_trace_id(&app.uid, &op.revision, op.started_unix_nano);
    Some(RolloutJoin {
        span_id: rollout_span_id(&trace_id, "root"),
        trace_id,
        revision: op.revision.clone(),
        app: app.name.clone(),
    })
}

/// The log record of one Event, joined to a rollout from `snapshot` when one covers it.
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
        kv_int(semconv::K8S_EVENT_COUNT, i64::from(e.count.unwrap_or(1))),
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
    if let Some(j) = rollout_join(snapshot, &namespace, t, settle_ns) {
        j.stamp(&mut record, &mut attributes);
    }
    record.attributes = attributes;
    record
}
