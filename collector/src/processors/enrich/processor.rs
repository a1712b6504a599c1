//! The `enrich` processor's task and its per-batch work.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hpcotel_core::catalog::{PodMeta, Snapshot, rollout_span_id, rollout_trace_id};
use hpcotel_core::channel;
use hpcotel_core::proto::common::v1::{AnyValue, KeyValue, any_value};
use hpcotel_core::proto::logs::v1::ResourceLogs;
use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::semconv;
use hpcotel_core::telemetry;
use hpcotel_core::{Batch, Catalog, ComponentError, ComponentStats, Processor, Signal};

use super::Config;

/// The enrich processor; one instance per pipeline.
pub struct EnrichProcessor {
    catalog: Catalog,
    /// The attributes it may add, as `SUPPORTED_ATTRIBUTES` spells them.
    allowed: Vec<&'static str>,
    /// How long after a sync ends its application's pod logs still join its trace (ns).
    rollout_window: u64,
}

impl EnrichProcessor {
    /// An enrich processor reading `catalog`. `config` must have passed
    /// [`Config::validate`] (names it does not support are ignored).
    pub fn new(config: &Config, catalog: Catalog) -> Self {
        Self {
            catalog,
            allowed: config.allowed(),
            rollout_window: u64::try_from(config.rollout_window.as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

#[async_trait]
impl Processor for EnrichProcessor {
    async fn run(
        self: Box<Self>,
        mut input: channel::Receiver,
        output: channel::Sender,
        _stats: Arc<ComponentStats>,
    ) -> Result<(), ComponentError> {
        while let Some((mut batch, acks)) = input.recv_acked().await {
            let snapshot = self.catalog.snapshot();
            enrich(&snapshot, &self.allowed, self.rollout_window, &mut batch);
            output
                .send_acked(batch, acks)
                .await
                .map_err(|_| "enrich processor: downstream stage closed early")?;
        }
        Ok(())
    }
}

/// Adds what `snapshot` knows to every resource of `batch` it can find a pod for.
pub(super) fn enrich(
    snapshot: &Snapshot,
    allowed: &[&'static str],
    rollout_window: u64,
    batch: &mut Batch,
) {
    if snapshot.pods.is_empty() {
        return;
    }
    if rollout_window > 0 {
        // Log records kept raw are decoded only when one of their pods' Applications is
        // rolling out (or just was): joining sets ids on the records themselves.
        if let Batch::Raw(raw) = batch
            && raw.signal() == Signal::Logs
        {
            let mut finder = Enricher::finder(snapshot);
            let joins = raw.resources.iter().any(|r| {
                r.resource
                    .as_ref()
                    .and_then(|res| finder.find_pod(&res.attributes))
                    .and_then(|uid| rollout_of(snapshot, uid, rollout_window))
                    .is_some()
            });
            if joins {
                batch.make_decoded();
            }
        }
        if let Batch::Logs(rs) = batch {
            join_rollouts(snapshot, rollout_window, rs);
        }
    }
    if allowed.is_empty() {
        return;
    }
    let mut enricher = Enricher {
        snapshot,
        allowed,
        by_name: None,
        added: HashMap::new(),
    };
    match batch {
        Batch::Traces(rs) => rs
            .iter_mut()
            .for_each(|r| enricher.resource(&mut r.resource)),
        Batch::Metrics(rs) => rs
            .iter_mut()
            .for_each(|r| enricher.resource(&mut r.resource)),
        Batch::Logs(rs) => rs
            .iter_mut()
            .for_each(|r| enricher.resource(&mut r.resource)),
        Batch::Raw(raw) => raw
            .resources
            .iter_mut()
            .for_each(|r| enricher.resource(&mut r.resource)),
    }
}

/// A rollout a pod's logs may join: its ids and time window (Unix ns).
struct RolloutWindow {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    from: u64,
    to: u64,
}

/// Sets the trace of the rollout in progress (or just ended) of the pod's Application on
/// every log record of that pod timed inside the rollout's window and without a trace id.
fn join_rollouts(snapshot: &Snapshot, window: u64, logs: &mut [ResourceLogs]) {
    let mut finder = Enricher::finder(snapshot);
    let mut windows: HashMap<&str, Option<RolloutWindow>> = HashMap::new();
    for rl in logs {
        let Some(resource) = &rl.resource else {
            continue;
        };
        let Some(uid) = finder.find_pod(&resource.attributes) else {
            continue;
        };
        let w = windows
            .entry(uid)
            .or_insert_with(|| rollout_of(snapshot, uid, window));
        let Some(w) = w else { continue };
        for record in rl
            .scope_logs
            .iter_mut()
            .flat_map(|s| s.log_records.iter_mut())
        {
            let t = if record.time_unix_nano > 0 {
                record.time_unix_nano
            } else {
                record.observed_time_unix_nano
            };
            if record.trace_id.is_empty() && (w.from..=w.to).contains(&t) {
                record.trace_id = w.trace_id.to_vec();
                record.span_id = w.span_id.to_vec();
            }
        }
    }
}

/// The rollout the logs of pod `uid` may join: its Application's operation in progress or
/// last finished, with `window` after its end.
fn rollout_of(snapshot: &Snapshot, uid: &str, window: u64) -> Option<RolloutWindow> {
    let app = snapshot.correlate(uid)?.app?;
    let op = app.operation?;
    let trace_id = rollout_trace_id(&app.uid, op.started_unix_nano);
    Some(RolloutWindow {
        span_id: rollout_span_id(&trace_id, "root"),
        trace_id,
        from: op.started_unix_nano,
        to: op
            .finished_unix_nano
            .map_or(u64::MAX, |f| f.saturating_add(window)),
    })
}

/// One batch's lookups, memoised.
struct Enricher<'s> {
    snapshot: &'s Snapshot,
    allowed: &'s [&'static str],
    /// (namespace, name) → pod UID, built on first need.
    by_name: Option<HashMap<(&'s str, &'s str), &'s str>>,
    /// Pod UID → the attributes it adds.
    added: HashMap<&'s str, Vec<KeyValue>>,
}

impl<'s> Enricher<'s> {
    /// An enricher that only finds pods.
    fn finder(snapshot: &'s Snapshot) -> Self {
        Enricher {
            snapshot,
            allowed: &[],
            by_name: None,
            added: HashMap::new(),
        }
    }

    fn resource(&mut self, resource: &mut Option<Resource>) {
        let Some(resource) = resource else { return };
        let Some(uid) = self.find_pod(&resource.attributes) else {
            return;
        };
        let (snapshot, allowed) = (self.snapshot, self.allowed);
        let attrs = self
            .added
            .entry(uid)
            .or_insert_with(|| pod_attributes(snapshot, uid, allowed));
        // Data whose pod the receiver verified from the connection gets the Catalog's
        // word over its own claims (a pod cannot claim another's workload or revision);
        // otherwise the resource's own attributes win (the workload's SDK knows better).
        let verified = telemetry::attr_str(&resource.attributes, semconv::HPCOTEL_IDENTITY_SOURCE)
            == Some("connection");
        for kv in attrs.iter() {
            match resource.attributes.iter_mut().find(|a| a.key == kv.key) {
                Some(existing) if verified => *existing = kv.clone(),
                Some(_) => {}
                None => resource.attributes.push(kv.clone()),
            }
        }
    }

    /// The Catalog's UID of the pod `attrs` name; see the module doc for the order.
    fn find_pod(&mut self, attrs: &[KeyValue]) -> Option<&'s str> {
        let pods = &self.snapshot.pods;
        if let Some(uid) = string_attr(attrs, semconv::K8S_POD_UID) {
            return pods.get_key_value(uid).map(|(k, _)| k.as_str());
        }
        if let Some(ip) = string_attr(attrs, semconv::K8S_POD_IP) {
            let uid = self.snapshot.pods_by_ip.get(ip)?;
            return pods.get_key_value(uid).map(|(k, _)| k.as_str());
        }
        let namespace = string_attr(attrs, semconv::K8S_NAMESPACE_NAME)?;
        let name = string_attr(attrs, semconv::K8S_POD_NAME)?;
        let by_name = self.by_name.get_or_insert_with(|| index_by_name(pods));
        by_name.get(&(namespace, name)).copied()
    }
}

/// (namespace, name) → UID over `pods`; of several pods of one name, the most recently
/// created (then the greatest UID, so the choice does not depend on hash order).
fn index_by_name(pods: &HashMap<String, PodMeta>) -> HashMap<(&str, &str), &str> {
    let mut index: HashMap<(&str, &str), (&str, &PodMeta)> = HashMap::with_capacity(pods.len());
    for (uid, meta) in pods {
        let key = (meta.pod.namespace.as_str(), meta.pod.name.as_str());
        let newer = |(held_uid, held): &(&str, &PodMeta)| {
            (meta.created_unix_nano, uid.as_str()) > (held.created_unix_nano, *held_uid)
        };
        match index.get(&key) {
            Some(held) if !newer(held) => {}
            _ => {
                index.insert(key, (uid.as_str(), meta));
            }
        }
    }
    index.into_iter().map(|(k, (uid, _))| (k, uid)).collect()
}

/// A resource attribute's value, when it is a non-empty string.
fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    telemetry::attr_str(attrs, key).filter(|s| !s.is_empty())
}

/// The semantic-convention attribute naming a workload of `kind`, if there is one.
fn workload_attribute(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ReplicaSet" => semconv::K8S_REPLICASET_NAME,
        "Deployment" => semconv::K8S_DEPLOYMENT_NAME,
        "Job" => semconv::K8S_JOB_NAME,
        "CronJob" => semconv::K8S_CRONJOB_NAME,
        "StatefulSet" => semconv::K8S_STATEFULSET_NAME,
        "DaemonSet" => semconv::K8S_DAEMONSET_NAME,
        _ => return None,
    })
}

/// What pod `uid` (a key of `snapshot.pods`) adds to a resource, limited to `allowed`, in
/// `SUPPORTED_ATTRIBUTES` order.
fn pod_attributes(snapshot: &Snapshot, uid: &str, allowed: &[&'static str]) -> Vec<KeyValue> {
    let Some(c) = snapshot.correlate(uid) else {
        return Vec::new();
    };
    let chain = snapshot.owner_chain(&c.pod);
    let mut found: Vec<(&'static str, String)> = vec![
        (semconv::K8S_POD_UID, uid.to_owned()),
        (semconv::K8S_POD_NAME, c.pod.pod.name.clone()),
        (semconv::K8S_NAMESPACE_NAME, c.pod.pod.namespace.clone()),
    ];
    found.extend(c.pod.node.clone().map(|n| (semconv::K8S_NODE_NAME, n)));
    // The direct owner and the top of the chain (the same object for a one-level chain).
    for owner in chain.first().into_iter().chain(chain.last()) {
        if let Some(key) = workload_attribute(&owner.kind)
            && !found.iter().any(|(k, _)| *k == key)
        {
            found.push((key, owner.name.clone()));
        }
    }
    if let Some((revision, source)) = &c.revision {
        found.push((semconv::VCS_REF_HEAD_REVISION, revision.clone()));
        found.push((semconv::HPCOTEL_REVISION_SOURCE, source.as_str().to_owned()));
    }
    if let Some(app) = &c.app {
        found.extend(
            app.repo_url
                .clone()
                .map(|u| (semconv::VCS_REPOSITORY_URL_FULL, u)),
        );
        found.push((semconv::HPCOTEL_ARGOCD_APPLICATION, app.name.clone()));
        found.push((
            semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE,
            app.namespace.clone(),
        ));
        found.extend(
            app.environment
                .clone()
                .map(|e| (semconv::DEPLOYMENT_ENVIRONMENT_NAME, e)),
        );
    }
    allowed
        .iter()
        .filter_map(|key| {
            let (_, value) = found.iter().find(|(k, v)| k == key && !v.is_empty())?;
            Some(KeyValue {
                key: (*key).to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(value.clone())),
                }),
                ..Default::default()
            })
        })
        .collect()
}
