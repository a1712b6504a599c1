//! KEDA `ScaledObject`s and `ScaledJob`s (`keda.sh/v1alpha1`): every change of one of their
//! `status.conditions[]` becomes a log record (`event_name` `hpcotel.keda.condition`), joined to
//! the rollout of its namespace like Events are.
//!
//! KEDA's conditions carry `type`, `status` (True | False | Unknown), `reason` and `message`,
//! and no timestamps, so a record's time is when the change was seen. The types KEDA writes
//! (`apis/keda/v1alpha1/condition_types.go`) and the severity each state gets here:
//!
//! | type | WARN when | otherwise INFO, e.g. |
//! |---|---|---|
//! | `Ready` | `False` (`TriggerError`: every trigger fails, `ScaledObjectCheckFailed`, `ScaledJobCheckFailed`, `ErrorGettingCurrentReplicas`), or `Unknown` with a reason (`PartialTriggerError`: some triggers fail) | `True`; `Unknown` without a reason (KEDA's placeholder before its first reconcile) |
//! | `Fallback` | `True` (`FallbackExists`: replicas pinned to `fallback.replicas`) | `False` (`NoFallbackFound`) |
//! | `HPAActive` (ScaledObjects only, newer KEDA; added once the HPA reports) | `False` (the HPA's own reason, e.g. `FailedGetExternalMetric`, else `HPAMetricsUnavailable`) | `True` (`HPAActive`, or `ScalingDisabled` at zero replicas) |
//! | `Active` | never | `True` / `False` / `Unknown` (`UnknownState` beside a failed `Ready`, which carries the warning) |
//! | `Paused` | never (an operator's annotation) | `True` (`ScaledObjectPaused`, `ScaledJobPaused`) / `False` |
//!
//! A type KEDA may add later is logged at INFO. WARN (not ERROR) for trouble matches KEDA's own
//! Events about the same failures, which are `Warning` Events and logged at WARN.
//!
//! A change is a new `status` or a new `reason`: Ready can go from `False`/`TriggerError` to
//! `False`/`ScaledObjectCheckFailed`, a different failure. A change of the `message` alone is
//! not logged: KEDA rewrites messages without any change of state — a ScaledJob's `Ready`
//! alternates between "…ready to scaling" (its reconciler) and "…ready for scaling" (its scale
//! loop), and `ScaledObjectCheckFailed` embeds the error text of each reconcile — so logging
//! them would repeat one state every polling interval. The record's body carries the current
//! message. A condition that disappears is not logged. ScaledJob's `status.Paused` (capital P
//! in JSON) is not read: KEDA declares it but writes the `Paused` condition instead.
//!
//! The first listing only records the conditions (no transition was seen); after a relist —
//! a dropped watch, `410 Gone`, an API server outage — the differences to the last known
//! conditions are emitted, so a transition that happened meanwhile is not lost, and none is
//! emitted twice. Objects are told apart by UID, so one deleted and re-created under the same
//! name meanwhile logs its conditions as new; the end of a relist forgets the objects seen
//! neither in it nor since the one before (deleted while the watch was down: no delete
//! arrives for them).

use std::collections::{HashMap, HashSet};

use hpcotel_core::catalog::Snapshot;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::kv;
use kube::core::DynamicObject;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use super::events::{About, rollout_join};

/// One condition's state as KEDA writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    status: String,
    reason: String,
    message: String,
}

impl State {
    /// A transition from `before`: a new status or a new reason. See the module doc for why a
    /// new message alone is not one.
    fn changed_from(&self, before: Option<&State>) -> bool {
        before.is_none_or(|b| b.status != self.status || b.reason != self.reason)
    }
}

/// The conditions of one object: type → state.
type Conditions = HashMap<String, State>;

fn conditions(obj: &DynamicObject) -> Conditions {
    obj.data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let field = |k: &str| {
                        c.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let t = field("type");
                    (!t.is_empty()).then(|| {
                        (
                            t,
                            State {
                                status: field("status"),
                                reason: field("reason"),
                                message: field("message"),
                            },
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A log severity: OTLP `SeverityNumber` and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Info,
    Warn,
}

impl Severity {
    fn number(self) -> i32 {
        match self {
            Severity::Info => 9,
            Severity::Warn => 13,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
        }
    }
}

/// How bad condition `t` in `state` is: WARN where KEDA says scaling is (partly) broken (the
/// table in the module doc), INFO otherwise.
fn severity(t: &str, state: &State) -> Severity {
    let trouble = match (t, state.status.as_str()) {
        ("Ready", "False") => true,
        // KEDA writes Unknown with a reason only for PartialTriggerError; its initial
        // placeholder is Unknown without one.
        ("Ready", "Unknown") => !state.reason.is_empty(),
        ("Fallback", "True") | ("HPAActive", "False") => true,
        _ => false,
    };
    if trouble {
        Severity::Warn
    } else {
        Severity::Info
    }
}

/// Remembers each object's conditions and says what changed.
#[derive(Debug, Default)]
pub struct Transitions {
    known: HashMap<String, Conditions>,
    /// Objects observed since the last (re)list ended; each relist observes every live one.
    observed: HashSet<String>,
    listed_once: bool,
}

/// `kind/namespace/name/uid`: a re-created object is another one.
fn key(obj: &DynamicObject, kind: &str) -> String {
    let m = &obj.metadata;
    format!(
        "{kind}/{}/{}/{}",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

impl Transitions {
    /// The end of a (re)list: from now on, new objects' conditions are transitions too, and
    /// objects not seen since the previous one ended (deleted while the watch was down, when
    /// no delete arrives) are forgotten.
    pub fn listed(&mut self) {
        let observed = std::mem::take(&mut self.observed);
        self.known.retain(|k, _| observed.contains(k));
        self.listed_once = true;
    }

    /// The log records of `obj`'s condition changes since it was last seen.
    pub fn observe(
        &mut self,
        obj: &DynamicObject,
        kind: &str,
        snapshot: &Snapshot,
        now: u64,
        settle_ns: u64,
    ) -> Vec<LogRecord> {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let key = key(obj, kind);
        self.observed.insert(key.clone());
        let current = conditions(obj);
        let previous = self.known.insert(key, current.clone());
        let Some(previous) = previous.or_else(|| self.listed_once.then(HashMap::new)) else {
            return Vec::new();
        };
        let mut types: Vec<&String> = current.keys().collect();
        types.sort();
        types
            .into_iter()
            .filter(|t| current[*t].changed_from(previous.get(*t)))
            .map(|t| {
                let state = &current[t];
                let State {
                    status,
                    reason,
                    message,
                } = state;
                let mut attributes = vec![
                    kv(semconv::K8S_NAMESPACE_NAME, ns.clone()),
                    kv(semconv::K8S_OBJECT_KIND, kind),
                    kv(semconv::K8S_OBJECT_NAME, name.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_TYPE, t.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_STATUS, status.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_REASON, reason.clone()),
                ];
                let severity = severity(t, state);
                let because = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                let mut record = LogRecord {
                    time_unix_nano: now,
                    observed_time_unix_nano: now,
                    severity_number: severity.number(),
                    severity_text: severity.text().to_owned(),
                    event_name: "hpcotel.keda.condition".to_owned(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            format!("{kind} {ns}/{name}: {t} is {status}{because} {message}")
                                .trim_end()
                                .to_owned(),
                        )),
                    }),
                    ..Default::default()
                };
                let about = About {
                    namespace: &ns,
                    kind,
                    name: &name,
                    api_version: "keda.sh/v1alpha1",
                };
                if let Some(j) = rollout_join(snapshot, about, now, settle_ns) {
                    j.stamp(&mut record, &mut attributes);
                }
                record.attributes = attributes;
                record
            })
            .collect()
    }

    /// Forgets a deleted object.
    pub fn forget(&mut self, obj: &DynamicObject, kind: &str) {
        let key = key(obj, kind);
        self.observed.remove(&key);
        self.known.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcotel_testkit::kube::fixtures;
    use serde_json::json;

    fn scaled_object(active: &str, fallback: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "trainer", "namespace": "ml", "uid": "so-1"},
            "spec": {"scaleTargetRef": {"name": "trainer"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ScaledObject is defined correctly and is ready for scaling"},
                {"type": "Active", "status": active, "reason": "ScalerActive", "message": "Scaling is performed because triggers are active"},
                {"type": "Fallback", "status": fallback, "reason": "NoFallbackFound", "message": "No fallbacks are active on this scaled object"}
            ]}
        }))
        .unwrap()
    }

    const READY: (&str, &str, &str, &str) = (
        "Ready",
        "True",
        "ScaledObjectReady",
        "ScaledObject is defined correctly and is ready for scaling",
    );
    const ACTIVE: (&str, &str, &str, &str) = (
        "Active",
        "True",
        "ScalerActive",
        "Scaling is performed because triggers are active",
    );
    const NO_FALLBACK: (&str, &str, &str, &str) = (
        "Fallback",
        "False",
        "NoFallbackFound",
        "No fallbacks are active on this scaled object",
    );
    const UNPAUSED: (&str, &str, &str, &str) = ("Paused", "False", "", "");

    /// ScaledObject `ml/trainer` (uid `uid-so`) as KEDA writes it, with `ready` as its Ready
    /// condition and `extra` conditions after the four KEDA always writes.
    fn so(ready: (&str, &str, &str, &str), extra: &[(&str, &str, &str, &str)]) -> DynamicObject {
        let mut conditions = vec![ready, ACTIVE, NO_FALLBACK, UNPAUSED];
        conditions.extend_from_slice(extra);
        serde_json::from_value(fixtures::scaled_object(
            "ml",
            "trainer",
            "uid-so",
            ("Deployment", "trainer"),
            &conditions,
            None,
        ))
        .unwrap()
    }

    /// A Transitions that has seen the first listing of `first`.
    fn listed(first: &DynamicObject, kind: &str) -> Transitions {
        let mut t = Transitions::default();
        assert!(
            t.observe(first, kind, &Snapshot::default(), 1, 0)
                .is_empty()
        );
        t.listed();
        t
    }

    fn attr(r: &LogRecord, key: &str) -> String {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| hpcotel_testkit::sink::any_value_string(kv.value.as_ref()?))
            .unwrap_or_default()
    }

    /// (type, status, reason, severity text) of each record.
    fn summary(records: &[LogRecord]) -> Vec<(String, String, String, String)> {
        records
            .iter()
            .map(|r| {
                (
                    attr(r, semconv::HPCOTEL_KEDA_CONDITION_TYPE),
                    attr(r, semconv::HPCOTEL_KEDA_CONDITION_STATUS),
                    attr(r, semconv::HPCOTEL_KEDA_CONDITION_REASON),
                    r.severity_text.clone(),
                )
            })
            .collect()
    }

    fn row(t: &str, status: &str, reason: &str, sev: &str) -> (String, String, String, String) {
        (t.into(), status.into(), reason.into(), sev.into())
    }

    #[test]
    fn only_changes_after_the_first_listing_are_logged() {
        let s = Snapshot::default();
        let mut t = Transitions::default();
        assert!(
            t.observe(&scaled_object("False", "False"), "ScaledObject", &s, 1, 0)
                .is_empty(),
            "first sight: no transition"
        );
        t.listed();
        let out = t.observe(&scaled_object("True", "False"), "ScaledObject", &s, 2, 0);
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .attributes
                .iter()
                .any(|kv| kv.key == semconv::HPCOTEL_KEDA_CONDITION_TYPE
                    && format!("{:?}", kv.value).contains("Active"))
        );
        assert!(
            t.observe(&scaled_object("True", "False"), "ScaledObject", &s, 3, 0)
                .is_empty(),
            "no repeat"
        );
        let out = t.observe(&scaled_object("True", "True"), "ScaledObject", &s, 4, 0);
        assert_eq!(out[0].severity_number, 13, "a fallback is a warning");
    }

    #[test]
    fn a_partial_trigger_error_is_a_warning() {
        // KEDA's scale loop: some triggers are active, others fail
        // (`pkg/scaling/executor/scale_scaledobjects.go`).
        let s = Snapshot::default();
        let mut t = listed(&so(READY, &[]), "ScaledObject");
        let partial = (
            "Ready",
            "Unknown",
            "PartialTriggerError",
            "Some triggers defined in ScaledObject are not working correctly",
        );
        let out = t.observe(&so(partial, &[]), "ScaledObject", &s, 2, 0);
        assert_eq!(
            summary(&out),
            [row("Ready", "Unknown", "PartialTriggerError", "WARN")]
        );
        assert_eq!(out[0].severity_number, 13);
        let out = t.observe(&so(READY, &[]), "ScaledObject", &s, 3, 0);
        assert_eq!(
            summary(&out),
            [row("Ready", "True", "ScaledObjectReady", "INFO")],
            "recovered"
        );
    }

    #[test]
    fn a_new_reason_with_the_same_status_is_logged_and_a_new_message_alone_is_not() {
        let s = Snapshot::default();
        let mut t = listed(&so(READY, &[]), "ScaledObject");
        let trigger_error = (
            "Ready",
            "False",
            "TriggerError",
            "Triggers defined in ScaledObject are not working correctly",
        );
        let out = t.observe(&so(trigger_error, &[]), "ScaledObject", &s, 2, 0);
        assert_eq!(
            summary(&out),
            [row("Ready", "False", "TriggerError", "WARN")]
        );
        // Still not ready, for another reason: the reconciler's check now fails.
        let check_failed = |err: &str| {
            (
                "Ready",
                "False",
                "ScaledObjectCheckFailed",
                // The reconciler writes `<what failed>: <error>`, the error text of this pass.
                format!("failed to ensure HPA is correctly created for ScaledObject: {err}"),
            )
        };
        let (ty, st, re, msg) =
            check_failed("the server is currently unable to handle the request");
        let out = t.observe(&so((ty, st, re, &msg), &[]), "ScaledObject", &s, 3, 0);
        assert_eq!(
            summary(&out),
            [row("Ready", "False", "ScaledObjectCheckFailed", "WARN")],
            "a new reason is a transition"
        );
        assert!(
            body(&out[0]).contains("unable to handle the request"),
            "{}",
            body(&out[0])
        );
        // The next reconcile fails the same way with another error text: same state.
        let (ty, st, re, msg) = check_failed("context deadline exceeded");
        let out = t.observe(&so((ty, st, re, &msg), &[]), "ScaledObject", &s, 4, 0);
        assert!(out.is_empty(), "a new message alone: {:?}", summary(&out));
    }

    fn body(r: &LogRecord) -> String {
        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("body {other:?}"),
        }
    }

    #[test]
    fn hpa_active_is_known_and_false_is_a_warning() {
        // Newer KEDA adds HPAActive once the HPA reports its ScalingActive condition.
        let s = Snapshot::default();
        let mut t = listed(&so(READY, &[]), "ScaledObject");
        let hpa = |status: &'static str, reason: &'static str, message: &'static str| {
            ("HPAActive", status, reason, message)
        };
        let out = t.observe(
            &so(
                READY,
                &[hpa("True", "HPAActive", "HPA is actively scaling")],
            ),
            "ScaledObject",
            &s,
            2,
            0,
        );
        assert_eq!(
            summary(&out),
            [row("HPAActive", "True", "HPAActive", "INFO")]
        );
        let out = t.observe(
            &so(
                READY,
                &[hpa(
                    "False",
                    "FailedGetExternalMetric",
                    "HPA is not actively scaling: the HPA was unable to compute the replica count: unable to get external metric ml/s0-prometheus",
                )],
            ),
            "ScaledObject",
            &s,
            3,
            0,
        );
        assert_eq!(
            summary(&out),
            [row("HPAActive", "False", "FailedGetExternalMetric", "WARN")]
        );
        // Scaled to zero: the HPA disables itself, KEDA keeps HPAActive True with a new reason.
        let out = t.observe(
            &so(
                READY,
                &[hpa(
                    "True",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                )],
            ),
            "ScaledObject",
            &s,
            4,
            0,
        );
        assert_eq!(
            summary(&out),
            [row("HPAActive", "True", "ScalingDisabled", "INFO")]
        );
    }

    #[test]
    fn each_keda_state_gets_its_severity() {
        let state = |status: &str, reason: &str| State {
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
        };
        for (t, status, reason, want) in [
            ("Ready", "True", "ScaledObjectReady", Severity::Info),
            ("Ready", "Unknown", "", Severity::Info),
            ("Ready", "Unknown", "PartialTriggerError", Severity::Warn),
            ("Ready", "False", "TriggerError", Severity::Warn),
            (
                "Ready",
                "False",
                "ErrorGettingCurrentReplicas",
                Severity::Warn,
            ),
            ("Ready", "False", "ScaledJobCheckFailed", Severity::Warn),
            ("Active", "True", "ScalerActive", Severity::Info),
            ("Active", "False", "ScalerCooldown", Severity::Info),
            ("Active", "Unknown", "UnknownState", Severity::Info),
            ("Fallback", "True", "FallbackExists", Severity::Warn),
            ("Fallback", "False", "NoFallbackFound", Severity::Info),
            ("Fallback", "Unknown", "", Severity::Info),
            ("Paused", "True", "ScaledObjectPaused", Severity::Info),
            ("Paused", "False", "ScaledJobUnpaused", Severity::Info),
            ("HPAActive", "True", "ScalingDisabled", Severity::Info),
            (
                "HPAActive",
                "False",
                "HPAMetricsUnavailable",
                Severity::Warn,
            ),
            ("SomethingNew", "False", "Whatever", Severity::Info),
        ] {
            assert_eq!(
                severity(t, &state(status, reason)),
                want,
                "{t} {status} {reason}"
            );
        }
    }

    #[test]
    fn a_scaled_job_with_failing_triggers_warns() {
        // KEDA's ScaledJob executor (`pkg/scaling/executor/scale_jobs.go`); its Ready message
        // alternates between the reconciler's and the scale loop's wording.
        let s = Snapshot::default();
        let job = |ready: (&str, &str, &str, &str), paused: (&str, &str, &str, &str)| {
            let conditions = [
                ready,
                (
                    "Active",
                    "False",
                    "ScalerNotActive",
                    "Scaling is not performed because triggers are not active",
                ),
                ("Fallback", "Unknown", "", ""),
                paused,
            ];
            serde_json::from_value::<DynamicObject>(fixtures::scaled_job(
                "ml",
                "ingest",
                "uid-sj",
                &conditions,
                None,
            ))
            .unwrap()
        };
        let ready = |message| ("Ready", "True", "ScaledJobReady", message);
        let unpaused = (
            "Paused",
            "False",
            "ScaledJobUnpaused",
            "ScaledJob is unpaused",
        );
        let mut t = listed(
            &job(
                ready("ScaledJob is defined correctly and is ready to scaling"),
                unpaused,
            ),
            "ScaledJob",
        );
        let out = t.observe(
            &job(
                ready("ScaledJob is defined correctly and is ready for scaling"),
                unpaused,
            ),
            "ScaledJob",
            &s,
            2,
            0,
        );
        assert!(out.is_empty(), "KEDA's rewording: {:?}", summary(&out));
        for (ready, want) in [
            (
                (
                    "Ready",
                    "Unknown",
                    "PartialTriggerError",
                    "Some triggers defined in ScaledJob are not working correctly",
                ),
                row("Ready", "Unknown", "PartialTriggerError", "WARN"),
            ),
            (
                (
                    "Ready",
                    "False",
                    "TriggerError",
                    "Triggers defined in ScaledJob are not working correctly",
                ),
                row("Ready", "False", "TriggerError", "WARN"),
            ),
        ] {
            let out = t.observe(&job(ready, unpaused), "ScaledJob", &s, 3, 0);
            assert_eq!(summary(&out), [want]);
            assert_eq!(attr(&out[0], semconv::K8S_OBJECT_KIND), "ScaledJob");
        }
        // Paused by annotation: a choice, not trouble.
        let paused = ("Paused", "True", "ScaledJobPaused", "ScaledJob is paused");
        let out = t.observe(
            &job(
                ready("ScaledJob is paused, skipping reconcile loop"),
                paused,
            ),
            "ScaledJob",
            &s,
            4,
            0,
        );
        assert_eq!(
            summary(&out),
            [
                row("Paused", "True", "ScaledJobPaused", "INFO"),
                row("Ready", "True", "ScaledJobReady", "INFO"),
            ]
        );
    }

    #[test]
    fn a_relist_forgets_deleted_objects_and_tells_a_recreated_one_by_uid() {
        let s = Snapshot::default();
        let obj = |name: &str, uid: &str, ready: (&str, &str, &str, &str)| {
            let mut o = so(ready, &[]);
            o.metadata.name = Some(name.into());
            o.metadata.uid = Some(uid.into());
            o
        };
        let mut t = Transitions::default();
        for o in [obj("a", "uid-a", READY), obj("b", "uid-b", READY)] {
            assert!(t.observe(&o, "ScaledObject", &s, 1, 0).is_empty());
        }
        t.listed();
        // The watch is down: `a` is deleted (no delete arrives), `b` is deleted and re-created.
        // The relist lists only the new `b`.
        let out = t.observe(&obj("b", "uid-b2", READY), "ScaledObject", &s, 2, 0);
        assert_eq!(
            summary(&out),
            [
                row("Active", "True", "ScalerActive", "INFO"),
                row("Fallback", "False", "NoFallbackFound", "INFO"),
                row("Paused", "False", "", "INFO"),
                row("Ready", "True", "ScaledObjectReady", "INFO"),
            ],
            "a new object's conditions are all new"
        );
        t.listed();
        assert_eq!(t.known.len(), 1, "only the listed object is remembered");
    }
}
