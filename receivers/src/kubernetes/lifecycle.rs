//! Pod lifecycle as logs (`mode: node`, `lifecycle_logs`): what the kubelet writes into the
//! `status` of this node's pods — container terminations, restarts, waiting reasons and
//! readiness changes — becomes one log record per transition, on a resource naming the pod
//! and container (`k8s.pod.uid`, `k8s.pod.name`, `k8s.namespace.name`, `k8s.container.name`,
//! `k8s.container.restart_count`, `k8s.node.name`), so the `enrich` processor stamps the
//! workload, the Argo CD Application, the revision and — inside a sync's window — the
//! rollout's trace id on it, as on every other signal of the pod.
//!
//! Read from `status.initContainerStatuses`, `containerStatuses` and
//! `ephemeralContainerStatuses` (`k8s.io/api` `core/v1` `ContainerStatus`):
//!
//! | record (`event_name`) | when | severity | time |
//! |---|---|---|---|
//! | `hpcotel.k8s.container.terminated` | a termination not reported yet, in `state.terminated` or `lastState.terminated` (the kubelet restarts a crashed container at once the first time, so a watcher may only ever see it in `lastState`) | ERROR for `OOMKilled` and any non-zero exit (`Error`, `ContainerCannotRun`, `StartError`, ...); INFO for exit code 0 (`Completed`) and for a pod being deleted (`metadata.deletionTimestamp`: a rollout stopping it; `hpcotel.k8s.pod.deleting`), unless `OOMKilled` | `finishedAt` |
//! | `hpcotel.k8s.container.restarted` | `restartCount` went up | WARN; INFO when the run before exited 0 | the new run's `startedAt` when running, else unknown |
//! | `hpcotel.k8s.container.waiting` | `state.waiting` with a reason other than `ContainerCreating` / `PodInitializing` (the normal way up): `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`, `CreateContainerConfigError`, `CreateContainerError`, `RunContainerError`, `InvalidImageName`, ... | WARN: the kubelet keeps retrying; the failure behind it (the termination before a crash loop) is the ERROR record | unknown |
//! | `hpcotel.k8s.container.readiness` | `ready` flipped | INFO | unknown |
//!
//! Where the API gives no time for a transition, the record's `time_unix_nano` is left 0
//! (unknown, as OTLP says) and `observed_time_unix_nano` is when it was seen.
//!
//! **Transitions only.** A watcher (re)list shows every pod again; what was reported is
//! remembered per pod UID and container name:
//! - terminations by container id (`containerID` of the terminated state; without one, the
//!   run's restart count, `finishedAt` and reason), the last few per container, so one seen in
//!   `state.terminated` and then in `lastState.terminated` is one record;
//! - the restart count and the readiness last seen: a record when they change;
//! - the waiting reasons reported for the current restart count: a reason is reported once
//!   per run of the container (`ImagePullBackOff` and `ErrImagePull` alternate while a pull is
//!   retried: one record each, not one per retry; a crash loop is reported again after the
//!   next restart).
//!
//! A pod re-created under the same name is another UID, so its containers start afresh; a
//! deleted pod is forgotten, and so is one missing from a relist (deleted while the watch was
//! down). The collector's own start is the baseline: the first listing records the state
//! without logging it (a previous instance logged it), and a termination that finished before
//! the start (compared in whole seconds, as the API writes times) is never logged. After that
//! a pod first seen — new on the node, or created during a watch outage — logs its
//! waiting reasons and terminations; a restart or readiness change needs a value seen before.
//!
//! **The log's last lines.** A termination record carries the kubelet's termination message
//! (`hpcotel.k8s.container.message`; with `terminationMessagePolicy: FallbackToLogsOnError`
//! the kubelet puts the tail of the container's log there). A [`LogTail`] source — the
//! container-log receiver is to provide one — adds `hpcotel.k8s.container.log_tail`; none is
//! wired yet, and this module never reads log files itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use hpcotel_core::semconv;
use hpcotel_core::telemetry::{self, kv, kv_int};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Terminations remembered per container (the state's and the last state's are the most
/// the API shows at once).
const REMEMBERED_TERMINATIONS: usize = 4;

/// Waiting reasons on the normal way to running: not logged.
const ROUTINE_WAITING: &[&str] = &["ContainerCreating", "PodInitializing"];

/// A source of the last lines a container run wrote (its log file under
/// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`), for termination
/// records. The container-log receiver is to implement it; [`Lifecycle`] works without one.
pub trait LogTail: Send + Sync {
    /// The last lines run `restart_count` of container `container` of pod `pod_uid` wrote,
    /// oldest first and newline-separated, if known. Called on the pod watch's task: it must
    /// answer from memory, without blocking.
    fn tail(&self, pod_uid: &str, container: &str, restart_count: i32) -> Option<String>;
}

/// What was reported of one container.
#[derive(Debug, Clone, Default)]
struct Reported {
    restart_count: i32,
    ready: bool,
    /// Ids of the terminations already handled, oldest first.
    terminations: VecDeque<String>,
    /// The restart count `waiting` belongs to.
    waiting_run: i32,
    /// Waiting reasons already reported for run `waiting_run`.
    waiting: Vec<String>,
}

/// A log severity: OTLP `SeverityNumber` and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Info,
    Warn,
    Error,
}

impl Severity {
    fn number(self) -> i32 {
        match self {
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }
}

/// Remembers what was reported of the containers of this node's pods and turns each pod
/// update into the log records of its transitions (see the module doc).
pub struct Lifecycle {
    /// Terminations that finished before this (Unix ns, whole seconds) are not logged.
    since_unix_nano: u64,
    /// Pod UID → container name → what was reported.
    pods: HashMap<String, HashMap<String, Reported>>,
    /// Pods seen since the current (re)list began.
    observed: HashSet<String>,
    /// Whether a listing has ended: before that, what is seen is the baseline.
    listed_once: bool,
    log_tail: Option<Arc<dyn LogTail>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("since_unix_nano", &self.since_unix_nano)
            .field("pods", &self.pods.len())
            .field("listed_once", &self.listed_once)
            .field("log_tail", &self.log_tail.is_some())
            .finish()
    }
}

/// Unix ns of an API timestamp.
fn nanos(t: &Time) -> Option<u64> {
    u64::try_from(t.0.as_nanosecond()).ok()
}

fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

fn text(s: String) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    })
}

/// `running`, `waiting` or `terminated` (a state without any member is waiting, as the API
/// defines it).
fn state_name(state: Option<&ContainerState>) -> &'static str {
    match state {
        Some(s) if s.running.is_some() => "running",
        Some(s) if s.terminated.is_some() => "terminated",
        _ => "waiting",
    }
}

/// The reason of a termination (`Error` where the runtime gave none for a non-zero exit,
/// `Completed` for exit code 0, as the kubelet names them).
fn termination_reason(t: &ContainerStateTerminated) -> String {
    t.reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| {
            if t.exit_code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .to_owned()
        })
}

/// `containerd://abc` → `abc`.
fn bare_container_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, bare)| bare)
}

/// One record on its own resource (pod and container identity, the run's restart count).
struct Emit<'p> {
    pod_uid: &'p str,
    namespace: &'p str,
    pod_name: &'p str,
    node: Option<&'p str>,
    container: &'p str,
    now: u64,
}

impl Emit<'_> {
    fn batch(
        &self,
        run: i32,
        event_name: &str,
        severity: Severity,
        time: u64,
        body: String,
        attributes: Vec<KeyValue>,
    ) -> ResourceLogs {
        let mut resource = vec![
            kv(semconv::K8S_NAMESPACE_NAME, self.namespace),
            kv(semconv::K8S_POD_NAME, self.pod_name),
            kv(semconv::K8S_POD_UID, self.pod_uid),
            kv(semconv::K8S_CONTAINER_NAME, self.container),
            kv_int(semconv::K8S_CONTAINER_RESTART_COUNT, i64::from(run)),
        ];
        if let Some(node) = self.node {
            resource.push(kv(semconv::K8S_NODE_NAME, node));
        }
        ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(telemetry::scope()),
                log_records: vec![LogRecord {
                    time_unix_nano: time,
                    observed_time_unix_nano: self.now,
                    severity_number: severity.number(),
                    severity_text: severity.text().to_owned(),
                    event_name: event_name.to_owned(),
                    body: text(body),
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

impl Lifecycle {
    /// Logs transitions from `since_unix_nano` (the collector's start) on; see the module doc.
    pub fn new(since_unix_nano: u64) -> Lifecycle {
        // The API writes times in whole seconds: a termination in the start's second counts.
        let since_unix_nano = since_unix_nano - since_unix_nano % 1_000_000_000;
        Lifecycle {
            since_unix_nano,
            pods: HashMap::new(),
            observed: HashSet::new(),
            listed_once: false,
            log_tail: None,
        }
    }

    /// Takes termination records' last log lines from `tail`.
    pub fn with_log_tail(mut self, tail: Arc<dyn LogTail>) -> Lifecycle {
        self.log_tail = Some(tail);
        self
    }

    /// A (re)list begins: the pods it shows are the live ones.
    pub fn relisting(&mut self) {
        self.observed.clear();
    }

    /// The (re)list ended: pods it did not show were deleted while the watch was down (no
    /// delete arrives for them) and are forgotten; from now on a new pod's state is news.
    pub fn listed(&mut self) {
        let observed = std::mem::take(&mut self.observed);
        self.pods.retain(|uid, _| observed.contains(uid));
        self.listed_once = true;
    }

    /// Forgets a deleted pod.
    pub fn forget(&mut self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid {
            self.observed.remove(uid);
            self.pods.remove(uid);
        }
    }

    /// The records of what changed in `pod`'s container statuses since it was last seen
    /// (`now`: Unix ns), each on its own resource, in the order they happened per container
    /// (termination, restart, waiting, readiness).
    pub fn observe(&mut self, pod: &Pod, now: u64) -> Vec<ResourceLogs> {
        let meta = &pod.metadata;
        let Some(uid) = meta.uid.as_deref() else {
            return Vec::new();
        };
        self.observed.insert(uid.to_owned());
        let Some(status) = &pod.status else {
            return Vec::new();
        };
        let emit = |container| Emit {
            pod_uid: uid,
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            pod_name: meta.name.as_deref().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            container,
            now,
        };
        let deleting = meta.deletion_timestamp.is_some();
        let statuses = [
            &status.init_container_statuses,
            &status.container_statuses,
            &status.ephemeral_container_statuses,
        ];
        let listed_once = self.listed_once;
        let since = self.since_unix_nano;
        let tail = self.log_tail.clone();
        let known = self.pods.entry(uid.to_owned()).or_default();
        let mut out = Vec::new();
        for cs in statuses.into_iter().flatten().flatten() {
            let previous = known.get(&cs.name).cloned();
            let mut reported = previous.clone().unwrap_or_else(|| Reported {
                restart_count: cs.restart_count,
                ready: cs.ready,
                waiting_run: cs.restart_count,
                ..Default::default()
            });
            let container = Container {
                cs,
                emit: emit(&cs.name),
                deleting,
                baseline: previous.is_none() && !listed_once,
                since,
                tail: tail.as_deref(),
            };
            container.transitions(previous.as_ref(), &mut reported, &mut out);
            known.insert(cs.name.clone(), reported);
        }
        out
    }
}

/// One container status being compared with what was reported of it.
struct Container<'a> {
    cs: &'a ContainerStatus,
    emit: Emit<'a>,
    /// The pod is being deleted.
    deleting: bool,
    /// Seen for the first time in the collector's first listing: only remembered.
    baseline: bool,
    since: u64,
    tail: Option<&'a dyn LogTail>,
}

impl Container<'_> {
    fn transitions(
        &self,
        previous: Option<&Reported>,
        reported: &mut Reported,
        out: &mut Vec<ResourceLogs>,
    ) {
        let cs = self.cs;
        let state = cs.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref());
        let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        // The run `lastState` is about: the current one while the kubelet has not started
        // the next (waiting, e.g. in back-off), the one before otherwise.
        let last_run = if state_name(state) == "waiting" {
            cs.restart_count
        } else {
            (cs.restart_count - 1).max(0)
        };
        let current = state.and_then(|s| s.terminated.as_ref());
        for (t, run) in [(last, last_run), (current, cs.restart_count)] {
            let Some(t) = t else { continue };
            let id = t
                .container_id
                .clone()
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| {
                    let finished = t.finished_at.as_ref().map(|f| f.0.to_string());
                    format!(
                        "{run}/{}/{}",
                        finished.unwrap_or_default(),
                        termination_reason(t)
                    )
                });
            if reported.terminations.contains(&id) {
                continue;
            }
            reported.terminations.push_back(id);
            while reported.terminations.len() > REMEMBERED_TERMINATIONS {
                reported.terminations.pop_front();
            }
            let report = match t.finished_at.as_ref().and_then(nanos) {
                Some(finished) => finished >= self.since,
                None => !self.baseline,
            };
            if report {
                out.push(self.terminated(t, run));
            }
        }
        if let Some(p) = previous
            && cs.restart_count > p.restart_count
        {
            out.push(self.restarted(last));
        }
        if cs.restart_count != reported.waiting_run {
            reported.waiting_run = cs.restart_count;
            reported.waiting.clear();
        }
        if let Some(w) = waiting
            && let Some(reason) = w.reason.as_deref().filter(|r| !r.is_empty())
            && !ROUTINE_WAITING.contains(&reason)
            && !reported.waiting.iter().any(|r| r == reason)
        {
            reported.waiting.push(reason.to_owned());
            if !self.baseline {
                out.push(self.waiting(reason, w.message.as_deref(), last));
            }
        }
        if let Some(p) = previous
            && p.ready != cs.ready
        {
            out.push(self.readiness());
        }
        reported.restart_count = cs.restart_count;
        reported.ready = cs.ready;
    }

    fn terminated(&self, t: &ContainerStateTerminated, run: i32) -> ResourceLogs {
        let name = &self.cs.name;
        let reason = termination_reason(t);
        let oom = reason == "OOMKilled";
        let severity = if oom || (t.exit_code != 0 && !self.deleting) {
            Severity::Error
        } else {
            Severity::Info
        };
        let mut attributes = vec![
            kv(semconv::K8S_CONTAINER_STATUS_STATE, "terminated"),
            kv(semconv::K8S_CONTAINER_STATUS_REASON, reason.clone()),
            kv_int(
                semconv::HPCOTEL_K8S_CONTAINER_EXIT_CODE,
                i64::from(t.exit_code),
            ),
        ];
        let mut body = format!(
            "container {name} terminated: {reason}, exit code {}",
            t.exit_code
        );
        if let Some(signal) = t.signal {
            attributes.push(kv_int(
                semconv::HPCOTEL_K8S_CONTAINER_SIGNAL,
                i64::from(signal),
            ));
            body.push_str(&format!(", signal {signal}"));
        }
        body.push_str(&format!(" (restart {run})"));
        if self.deleting {
            attributes.push(kv_bool(semconv::HPCOTEL_K8S_POD_DELETING, true));
            body.push_str(", the pod being deleted");
        }
        if let Some(s) = &t.started_at {
            attributes.push(kv(
                semconv::HPCOTEL_K8S_CONTAINER_STARTED_AT,
                s.0.to_string(),
            ));
        }
        if let Some(f) = &t.finished_at {
            attributes.push(kv(
                semconv::HPCOTEL_K8S_CONTAINER_FINISHED_AT,
                f.0.to_string(),
            ));
        }
        if let Some(id) = t.container_id.as_deref().filter(|id| !id.is_empty()) {
            attributes.push(kv(semconv::CONTAINER_ID, bare_container_id(id)));
        }
        if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
            attributes.push(kv(semconv::HPCOTEL_K8S_CONTAINER_MESSAGE, m));
        }
        if let Some(lines) = self
            .tail
            .and_then(|tail| tail.tail(self.emit.pod_uid, name, run))
        {
            attributes.push(kv(semconv::HPCOTEL_K8S_CONTAINER_LOG_TAIL, lines));
        }
        let time = t.finished_at.as_ref().and_then(nanos).unwrap_or(0);
        self.emit.batch(
            run,
            semconv::EVENT_K8S_CONTAINER_TERMINATED,
            severity,
            time,
            body,
            attributes,
        )
    }

    fn restarted(&self, last: Option<&ContainerStateTerminated>) -> ResourceLogs {
        let cs = self.cs;
        let state = cs.state.as_ref();
        let mut attributes = vec![kv(semconv::K8S_CONTAINER_STATUS_STATE, state_name(state))];
        let mut body = format!(
            "container {} restarted (restart {})",
            cs.name, cs.restart_count
        );
        let mut severity = Severity::Warn;
        if let Some(t) = last {
            let reason = termination_reason(t);
            body.push_str(&format!(" after {reason}, exit code {}", t.exit_code));
            if t.exit_code == 0 {
                severity = Severity::Info;
            }
            attributes.push(kv(
                semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON,
                reason,
            ));
        }
        let time = state
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .and_then(nanos)
            .unwrap_or(0);
        self.emit.batch(
            cs.restart_count,
            semconv::EVENT_K8S_CONTAINER_RESTARTED,
            severity,
            time,
            body,
            attributes,
        )
    }

    fn waiting(
        &self,
        reason: &str,
        message: Option<&str>,
        last: Option<&ContainerStateTerminated>,
    ) -> ResourceLogs {
        let cs = self.cs;
        let mut attributes = vec![
            kv(semconv::K8S_CONTAINER_STATUS_STATE, "waiting"),
            kv(semconv::K8S_CONTAINER_STATUS_REASON, reason),
        ];
        let mut body = format!(
            "container {} waiting: {reason} (restart {})",
            cs.name, cs.restart_count
        );
        if let Some(m) = message.filter(|m| !m.is_empty()) {
            attributes.push(kv(semconv::HPCOTEL_K8S_CONTAINER_MESSAGE, m));
            body.push_str(&format!(": {m}"));
        }
        if let Some(t) = last {
            attributes.push(kv(
                semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON,
                termination_reason(t),
            ));
        }
        self.emit.batch(
            cs.restart_count,
            semconv::EVENT_K8S_CONTAINER_WAITING,
            Severity::Warn,
            0,
            body,
            attributes,
        )
    }

    fn readiness(&self) -> ResourceLogs {
        let cs = self.cs;
        let body = if cs.ready {
            format!(
                "container {} is ready (restart {})",
                cs.name, cs.restart_count
            )
        } else {
            format!(
                "container {} is not ready (restart {})",
                cs.name, cs.restart_count
            )
        };
        let attributes = vec![
            kv(
                semconv::K8S_CONTAINER_STATUS_STATE,
                state_name(cs.state.as_ref()),
            ),
            kv_bool(semconv::HPCOTEL_K8S_CONTAINER_READY, cs.ready),
        ];
        self.emit.batch(
            cs.restart_count,
            semconv::EVENT_K8S_CONTAINER_READINESS,
            Severity::Info,
            0,
            body,
            attributes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcotel_core::telemetry::{attr, attr_int, attr_str};
    use hpcotel_testkit::kube::fixtures;
    use serde_json::Value;
    use std::sync::Mutex;

    const START: &str = "2026-12-07T10:00:00Z";
    /// The collector started half a second into START's second.
    const STARTED_NS: u64 = 1_796_637_600_500_000_000;
    const UID: &str = "uid-trainer-b-1";
    const MESSAGE: &str =
        "back-off 10s restarting failed container=main pod=trainer-b-1_ml(uid-trainer-b-1)";

    fn at(seconds_after_start: u64) -> String {
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(STARTED_NS / 1_000_000_000 + seconds_after_start);
        humantime::format_rfc3339_seconds(t).to_string()
    }

    fn cid(run: i32) -> String {
        format!("containerd://{run:064x}")
    }

    /// Pod `ml/trainer-b-1` with container `main` in `status` (a
    /// [`fixtures::container_status`]).
    fn pod(status: Value) -> Pod {
        let base = fixtures::pod(
            "ml",
            "trainer-b-1",
            UID,
            "node-1",
            Some(("ReplicaSet", "trainer-b", "uid-trainer-b")),
            "10.0.0.12",
            &[],
            &[],
        );
        serde_json::from_value(fixtures::with_container_status(base, status)).unwrap()
    }

    fn running(run: i32, started: &str, last: Option<Value>) -> Pod {
        pod(fixtures::container_status(
            "main",
            fixtures::running_state(started),
            last,
            true,
            run,
            &cid(run),
        ))
    }

    fn oom(run: i32, started: &str, finished: &str) -> Value {
        fixtures::terminated_state(137, "OOMKilled", None, started, finished, &cid(run))
    }

    fn oom_killed(run: i32, started: &str, finished: &str, last: Option<Value>) -> Pod {
        pod(fixtures::container_status(
            "main",
            oom(run, started, finished),
            last,
            false,
            run,
            &cid(run),
        ))
    }

    fn crash_loop(run: i32, last: Value) -> Pod {
        pod(fixtures::container_status(
            "main",
            fixtures::waiting_state("CrashLoopBackOff", Some(MESSAGE)),
            Some(last),
            false,
            run,
            &cid(run),
        ))
    }

    /// (event_name, severity, body) of each record.
    fn summary(batches: &[ResourceLogs]) -> Vec<(String, String, String)> {
        records(batches)
            .map(|(_, r)| {
                let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                };
                (r.event_name.clone(), r.severity_text.clone(), body)
            })
            .collect()
    }

    fn records(batches: &[ResourceLogs]) -> impl Iterator<Item = (&Resource, &LogRecord)> {
        batches.iter().flat_map(|rl| {
            let res = rl.resource.as_ref().unwrap();
            rl.scope_logs
                .iter()
                .flat_map(move |s| s.log_records.iter().map(move |r| (res, r)))
        })
    }

    fn names(batches: &[ResourceLogs]) -> Vec<String> {
        records(batches)
            .map(|(_, r)| r.event_name.clone())
            .collect()
    }

    /// A Lifecycle that listed `first` at the start.
    fn listed(first: &Pod) -> Lifecycle {
        let mut l = Lifecycle::new(STARTED_NS);
        l.relisting();
        assert!(l.observe(first, STARTED_NS).is_empty(), "the baseline");
        l.listed();
        l
    }

    #[test]
    fn oom_kill_then_crash_loop_is_one_termination_and_one_waiting_record() {
        // The collector starts while `main` runs its second run after an OOM kill (that
        // kill is the previous instance's to report).
        let before = "2026-12-07T09:59:30Z";
        let killed = "2026-12-07T09:59:44Z";
        let first = fixtures::terminated_state(137, "OOMKilled", None, before, killed, &cid(0));
        let mut l = listed(&running(1, "2026-12-07T09:59:45Z", Some(first.clone())));

        // The second run is OOM-killed; the kubelet then backs off.
        let second = oom(1, "2026-12-07T09:59:45Z", &at(3));
        let out = l.observe(
            &oom_killed(1, "2026-12-07T09:59:45Z", &at(3), Some(first)),
            STARTED_NS + 3_000_000_000,
        );
        assert_eq!(
            summary(&out),
            vec![
                (
                    semconv::EVENT_K8S_CONTAINER_TERMINATED.to_owned(),
                    "ERROR".to_owned(),
                    "container main terminated: OOMKilled, exit code 137 (restart 1)".to_owned()
                ),
                (
                    semconv::EVENT_K8S_CONTAINER_READINESS.to_owned(),
                    "INFO".to_owned(),
                    "container main is not ready (restart 1)".to_owned()
                ),
            ]
        );
        let (res, r) = records(&out).next().unwrap();
        assert_eq!(attr_str(&res.attributes, semconv::K8S_POD_UID), Some(UID));
        assert_eq!(
            attr_str(&res.attributes, semconv::K8S_POD_NAME),
            Some("trainer-b-1")
        );
        assert_eq!(
            attr_str(&res.attributes, semconv::K8S_NAMESPACE_NAME),
            Some("ml")
        );
        assert_eq!(
            attr_str(&res.attributes, semconv::K8S_CONTAINER_NAME),
            Some("main")
        );
        assert_eq!(
            attr_int(&res.attributes, semconv::K8S_CONTAINER_RESTART_COUNT),
            Some(1)
        );
        assert_eq!(
            attr_str(&r.attributes, semconv::K8S_CONTAINER_STATUS_REASON),
            Some("OOMKilled")
        );
        assert_eq!(
            attr_int(&r.attributes, semconv::HPCOTEL_K8S_CONTAINER_EXIT_CODE),
            Some(137)
        );
        assert_eq!(
            attr_str(&r.attributes, semconv::HPCOTEL_K8S_CONTAINER_STARTED_AT),
            Some("2026-12-07T09:59:45Z")
        );
        assert_eq!(
            attr_str(&r.attributes, semconv::HPCOTEL_K8S_CONTAINER_FINISHED_AT),
            Some(at(3).as_str())
        );
        assert_eq!(
            attr_str(&r.attributes, semconv::CONTAINER_ID),
            Some(format!("{:064x}", 1).as_str())
        );
        assert_eq!(
            r.time_unix_nano,
            (STARTED_NS / 1_000_000_000 + 3) * 1_000_000_000,
            "at finishedAt"
        );
        assert_eq!(
            attr(&r.attributes, semconv::HPCOTEL_K8S_CONTAINER_SIGNAL),
            None
        );

        let out = l.observe(&crash_loop(1, second.clone()), STARTED_NS + 4_000_000_000);
        assert_eq!(
            summary(&out),
            vec![(
                semconv::EVENT_K8S_CONTAINER_WAITING.to_owned(),
                "WARN".to_owned(),
                format!("container main waiting: CrashLoopBackOff (restart 1): {MESSAGE}")
            )],
            "the termination now in lastState is the one already reported"
        );
        let (_, r) = records(&out).next().unwrap();
        assert_eq!(
            attr_str(&r.attributes, semconv::K8S_CONTAINER_STATUS_REASON),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            attr_str(
                &r.attributes,
                semconv::K8S_CONTAINER_STATUS_LAST_TERMINATED_REASON
            ),
            Some("OOMKilled")
        );
        assert_eq!(
            r.time_unix_nano, 0,
            "the API gives no time for a waiting state"
        );
        assert_eq!(r.observed_time_unix_nano, STARTED_NS + 4_000_000_000);

        // The kubelet rewrites the back-off (a later status update, same state) and the
        // watch relists: nothing new.
        assert!(
            l.observe(&crash_loop(1, second.clone()), STARTED_NS + 5_000_000_000)
                .is_empty()
        );
        l.relisting();
        assert!(
            l.observe(&crash_loop(1, second), STARTED_NS + 6_000_000_000)
                .is_empty()
        );
        l.listed();
    }

    #[test]
    fn each_restart_is_one_record_and_a_relist_repeats_none() {
        let mut l = listed(&running(0, &at(0), None));
        let mut seen = Vec::new();
        // Three crash-loop cycles: OOM kill, back-off, restart, readiness.
        let mut last = None;
        for run in 0..3 {
            let started = at(10 * run as u64);
            let finished = at(10 * run as u64 + 5);
            let t = oom(run, &started, &finished);
            let updates = [
                oom_killed(run, &started, &finished, last.clone()),
                crash_loop(run, t.clone()),
                running(run + 1, &at(10 * run as u64 + 10), Some(t.clone())),
            ];
            for (i, p) in updates.iter().enumerate() {
                let now = STARTED_NS + (10 * run as u64 + 5 + i as u64) * 1_000_000_000;
                let out = l.observe(p, now);
                seen.extend(names(&out));
                // A relist after every update changes nothing.
                l.relisting();
                assert!(
                    l.observe(p, now).is_empty(),
                    "relist after run {run} update {i}"
                );
                l.listed();
            }
            last = Some(t);
        }
        let count = |name: &str| seen.iter().filter(|n| *n == name).count();
        assert_eq!(count(semconv::EVENT_K8S_CONTAINER_TERMINATED), 3);
        assert_eq!(
            count(semconv::EVENT_K8S_CONTAINER_WAITING),
            3,
            "one per run"
        );
        assert_eq!(
            count(semconv::EVENT_K8S_CONTAINER_RESTARTED),
            3,
            "one per restart"
        );
        assert_eq!(
            count(semconv::EVENT_K8S_CONTAINER_READINESS),
            6,
            "down and up"
        );
    }

    #[test]
    fn a_restart_seen_only_through_last_state_is_still_logged_once() {
        // The kubelet restarted the container before any status showed it terminated.
        let mut l = listed(&running(0, &at(0), None));
        let t = oom(0, &at(0), &at(5));
        let out = l.observe(
            &running(1, &at(6), Some(t.clone())),
            STARTED_NS + 6_000_000_000,
        );
        assert_eq!(
            summary(&out),
            vec![
                (
                    semconv::EVENT_K8S_CONTAINER_TERMINATED.to_owned(),
                    "ERROR".to_owned(),
                    "container main terminated: OOMKilled, exit code 137 (restart 0)".to_owned()
                ),
                (
                    semconv::EVENT_K8S_CONTAINER_RESTARTED.to_owned(),
                    "WARN".to_owned(),
                    "container main restarted (restart 1) after OOMKilled, exit code 137"
                        .to_owned()
                ),
            ],
            "the run that ended is restart 0; readiness did not change (ready again)"
        );
        let (res, r) = records(&out).nth(1).unwrap();
        assert_eq!(
            attr_int(&res.attributes, semconv::K8S_CONTAINER_RESTART_COUNT),
            Some(1)
        );
        assert_eq!(
            r.time_unix_nano,
            (STARTED_NS / 1_000_000_000 + 6) * 1_000_000_000
        );
        assert!(
            l.observe(&running(1, &at(6), Some(t)), STARTED_NS + 7_000_000_000)
                .is_empty()
        );
    }

    #[test]
    fn what_the_first_listing_shows_is_the_previous_instances_to_report() {
        // Already crash-looping when the collector starts, the last kill a minute earlier.
        let t = oom(4, "2026-12-07T09:58:50Z", "2026-12-07T09:59:00Z");
        let mut l = listed(&crash_loop(4, t.clone()));
        // The back-off message grows; still the same state.
        assert!(
            l.observe(&crash_loop(4, t.clone()), STARTED_NS + 1)
                .is_empty()
        );
        // A termination in the start's own second counts (the API writes whole seconds).
        let mut l = Lifecycle::new(STARTED_NS);
        l.relisting();
        let out = l.observe(&oom_killed(0, &at(0), START, None), STARTED_NS);
        assert_eq!(names(&out), vec![semconv::EVENT_K8S_CONTAINER_TERMINATED]);
        l.listed();
    }

    #[test]
    fn a_new_pod_that_cannot_pull_logs_each_reason_once() {
        let mut l = Lifecycle::new(STARTED_NS);
        l.relisting();
        l.listed();
        let pulling = |reason: &str, message: &str| {
            pod(fixtures::container_status(
                "main",
                fixtures::waiting_state(reason, Some(message)),
                None,
                false,
                0,
                "",
            ))
        };
        let mut seen = Vec::new();
        for (reason, message) in [
            ("ContainerCreating", ""),
            (
                "ErrImagePull",
                "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/app:1.1\": not found",
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image \"registry.example.com/app:1.1\"",
            ),
            (
                "ErrImagePull",
                "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/app:1.1\": not found",
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image \"registry.example.com/app:1.1\"",
            ),
        ] {
            let p = if message.is_empty() {
                pod(fixtures::container_status(
                    "main",
                    fixtures::waiting_state(reason, None),
                    None,
                    false,
                    0,
                    "",
                ))
            } else {
                pulling(reason, message)
            };
            for (_, r) in records(&l.observe(&p, STARTED_NS + 1)) {
                seen.push((
                    attr_str(&r.attributes, semconv::K8S_CONTAINER_STATUS_REASON)
                        .unwrap()
                        .to_owned(),
                    r.severity_text.clone(),
                ));
            }
        }
        assert_eq!(
            seen,
            vec![
                ("ErrImagePull".to_owned(), "WARN".to_owned()),
                ("ImagePullBackOff".to_owned(), "WARN".to_owned()),
            ]
        );
    }

    #[test]
    fn a_rollout_stopping_a_pod_is_info_and_forgotten_on_delete() {
        let mut l = listed(&running(0, &at(0), None));
        let stopped = fixtures::terminated_state(143, "Error", None, &at(0), &at(8), &cid(0));
        let mut p: Value = serde_json::to_value(pod(fixtures::container_status(
            "main",
            stopped,
            None,
            false,
            0,
            &cid(0),
        )))
        .unwrap();
        p["metadata"]["deletionTimestamp"] = Value::String(at(38));
        p["metadata"]["deletionGracePeriodSeconds"] = Value::from(30);
        let p: Pod = serde_json::from_value(p).unwrap();
        let out = l.observe(&p, STARTED_NS + 8_000_000_000);
        let (_, r) = records(&out).next().unwrap();
        assert_eq!(r.severity_text, "INFO");
        assert_eq!(
            attr(&r.attributes, semconv::HPCOTEL_K8S_POD_DELETING),
            Some(&any_value::Value::BoolValue(true))
        );
        l.forget(&p);
        assert!(l.pods.is_empty());
    }

    #[test]
    fn a_pod_gone_from_a_relist_is_forgotten() {
        let mut l = listed(&running(0, &at(0), None));
        l.relisting();
        l.listed();
        assert!(l.pods.is_empty(), "deleted while the watch was down");
    }

    #[test]
    fn the_log_tail_hook_adds_the_last_lines_of_the_run_that_ended() {
        struct Tail(Mutex<Vec<(String, String, i32)>>);
        impl LogTail for Tail {
            fn tail(&self, pod_uid: &str, container: &str, restart_count: i32) -> Option<String> {
                self.0.lock().unwrap().push((
                    pod_uid.to_owned(),
                    container.to_owned(),
                    restart_count,
                ));
                Some("CUDA out of memory\nKilled".to_owned())
            }
        }
        let tail = Arc::new(Tail(Mutex::default()));
        let mut l = Lifecycle::new(STARTED_NS).with_log_tail(tail.clone());
        l.relisting();
        l.observe(&running(2, &at(0), None), STARTED_NS);
        l.listed();
        let out = l.observe(
            &oom_killed(2, &at(0), &at(4), None),
            STARTED_NS + 4_000_000_000,
        );
        let (_, r) = records(&out).next().unwrap();
        assert_eq!(
            attr_str(&r.attributes, semconv::HPCOTEL_K8S_CONTAINER_LOG_TAIL),
            Some("CUDA out of memory\nKilled")
        );
        assert_eq!(
            *tail.0.lock().unwrap(),
            vec![(UID.to_owned(), "main".to_owned(), 2)]
        );
    }
}
