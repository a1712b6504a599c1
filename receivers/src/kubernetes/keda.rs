//! KEDA `ScaledObject`s and `ScaledJob`s (`keda.sh/v1alpha1`): every change of one of their
//! status conditions (`Ready`, `Active`, `Fallback`, `Paused`) becomes a log record, joined to
//! the rollout of its namespace like Events are.
//!
//! The first listing only records the conditions (no transition was seen); after a relist —
//! a dropped watch, `410 Gone`, an API server outage — the differences to the last known
//! conditions are emitted, so a transition that happened meanwhile is not lost, and none is
//! emitted twice.

use std::collections::HashMap;

use hpcotel_core::catalog::Snapshot;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::kv;
use kube::core::DynamicObject;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use super::events::rollout_join;

/// The conditions worth a log: type → (status, reason, message).
type Conditions = HashMap<String, (String, String, String)>;

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
                    (!t.is_empty())
                        .then(|| (t, (field("status"), field("reason"), field("message"))))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Remembers each object's conditions and says what changed.
#[derive(Debug, Default)]
pub struct Transitions {
    known: HashMap<String, Conditions>,
    listed_once: bool,
}

impl Transitions {
    /// The end of a (re)list: from now on, new objects' conditions are transitions too.
    pub fn listed(&mut self) {
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
        let key = format!("{kind}/{ns}/{name}");
        let current = conditions(obj);
        let previous = self.known.insert(key, current.clone());
        let Some(previous) = previous.or_else(|| self.listed_once.then(HashMap::new)) else {
            return Vec::new();
        };
        let mut types: Vec<&String> = current.keys().collect();
        types.sort();
        types
            .into_iter()
            .filter(|t| previous.get(*t).map(|p| &p.0) != current.get(*t).map(|c| &c.0))
            .map(|t| {
                let (status, reason, message) = &current[t];
                let mut attributes = vec![
                    kv(semconv::K8S_NAMESPACE_NAME, ns.clone()),
                    kv(semconv::K8S_OBJECT_KIND, kind),
                    kv(semconv::K8S_OBJECT_NAME, name.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_TYPE, t.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_STATUS, status.clone()),
                    kv(semconv::HPCOTEL_KEDA_CONDITION_REASON, reason.clone()),
                ];
                let warning =
                    (t == "Fallback" && status == "True") || (t == "Ready" && status == "False");
                let mut record = LogRecord {
                    time_unix_nano: now,
                    observed_time_unix_nano: now,
                    severity_number: if warning { 13 } else { 9 },
                    severity_text: if warning { "WARN" } else { "INFO" }.to_owned(),
                    event_name: "hpcotel.keda.condition".to_owned(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "{kind} {ns}/{name}: {t} is {status} ({reason}) {message}"
                        ))),
                    }),
                    ..Default::default()
                };
                if let Some(j) = rollout_join(snapshot, &ns, now, settle_ns) {
                    j.stamp(&mut record, &mut attributes);
                }
                record.attributes = attributes;
                record
            })
            .collect()
    }

    /// Forgets a deleted object.
    pub fn forget(&mut self, obj: &DynamicObject, kind: &str) {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        self.known.remove(&format!("{kind}/{ns}/{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
