//! The receiver: the tailer on a blocking thread, selection by what the Catalog knows of
//! pods, per-pod rate limits, its records as OTLP logs, the checkpoint.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use hpcotel_core::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use hpcotel_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::telemetry::{Counter, kv, scope, unix_nanos};
use hpcotel_core::{Batch, Catalog, ComponentError, Receiver, ReceiverContext, Signal, semconv};

use super::checkpoint::{self, Offsets};
use super::commit::Committer;
use super::config::{Config, DEFAULT_READ_CHUNK};
use super::parse::{self, Record};
use super::rate::{RATE_LIMITED, RateLimiter};
use super::select::PodGate;
use super::tail::{Read, Source, Tailer};

/// How long a pod whose lines stopped being sent (no longer selected) is remembered, so
/// that it is logged once, not at every step.
const STOPPED_RETENTION: Duration = Duration::from_secs(600);
/// Longest the receiver waits at shutdown for the exporters to settle what it handed over
/// (within the half of `service.shutdown_timeout` receivers get, 15 s by default).
const SHUTDOWN_SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Most bytes one step of the tailer reads across all files (each file gets an equal share,
/// at least [`MIN_READ_CHUNK`], at most `DEFAULT_READ_CHUNK`).
const STEP_READ_BUDGET: usize = 1024 * 1024;
/// Least bytes a file may read in one step.
const MIN_READ_CHUNK: usize = 8 * 1024;

/// The `kubernetes_logs` receiver; see the module doc.
#[derive(Debug)]
pub struct KubernetesLogsReceiver {
    config: Config,
}

impl KubernetesLogsReceiver {
    /// A receiver of `config`, selecting pods by what `catalog` knows of them (labels,
    /// annotations; the `kubernetes` receiver fills it). Nothing is opened until it runs.
    pub fn new(config: &Config, catalog: Catalog) -> KubernetesLogsReceiver {
        let mut config = config.clone();
        config.gate = PodGate::new(catalog, config.pod_metadata_wait);
        KubernetesLogsReceiver { config }
    }
}

#[async_trait]
impl Receiver for KubernetesLogsReceiver {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let config = self.config;
        if !config.root.is_dir() {
            tracing::info!(receiver = %ctx.id, root = %config.root.display(), "kubernetes_logs: no pod log tree here; idle");
            ctx.shutdown.cancelled().await;
            return Ok(());
        }
        let state_dir = config.state_dir.clone();
        let offsets = checkpoint::load(&state_dir);
        tracing::info!(receiver = %ctx.id, root = %config.root.display(), resumed = offsets.files.len(), "kubernetes_logs: following container logs");
        wait_for_known_pods(&config, &ctx).await;
        let (poll, checkpoint_every) = (config.poll_interval, config.checkpoint_interval);
        // The receiver's view of the selection; it shares the tailer's gate on the Catalog.
        let selection = config.clone();
        let mut limiter = RateLimiter::new(&config.rate_limit);
        let mut stopped: HashMap<String, Instant> = HashMap::new();
        let mut committer = Committer::new(offsets.clone());
        let mut tailer = Some(Tailer::new(config, offsets));
        let mut last_scan: Option<Instant> = None;
        let mut last_checkpoint = Instant::now();
        loop {
            let stopping = ctx.shutdown.is_cancelled();
            let mut t = tailer.take().expect("tailer");
            let scan = last_scan.is_none_or(|s| s.elapsed() >= poll);
            let (mut t, step) = tokio::task::spawn_blocking(move || {
                if scan {
                    t.scan();
                }
                // Each file gets its turn, and one step reads at most STEP_READ_BUDGET in
                // all: what is decoded and handed over at once stays small however many
                // files have a backlog.
                let chunk =
                    (STEP_READ_BUDGET / t.len().max(1)).clamp(MIN_READ_CHUNK, DEFAULT_READ_CHUNK);
                let step = t.step(Instant::now(), chunk);
                (t, step)
            })
            .await
            .map_err(|e| -> ComponentError { format!("log tailer panicked: {e}").into() })?;
            committer.poll();
            for lost in t.take_lost() {
                ctx.outputs.stats().add_lost_bytes(
                    &lost.source.namespace,
                    &lost.source.pod,
                    lost.bytes,
                );
            }
            let now = Instant::now();
            if scan {
                last_scan = Some(now);
                selection.gate.prune(now);
                limiter.prune(now);
                stopped.retain(|_, t| now.saturating_duration_since(*t) < STOPPED_RETENTION);
            }
            if step.unparsed > 0 {
                tracing::debug!(
                    lines = step.unparsed,
                    "kubernetes_logs: lines not in their file's format, sent as they are"
                );
            }
            let records = unselected_dropped(&selection, step.records, &mut stopped, now);
            // Per-pod rate limits. A record dropped here is settled as it is dropped: the
            // checkpoint moves past it with the step's offsets (handed over with the records
            // that passed, or as a step that handed nothing over) and it is never read again.
            let read = records.len();
            let records: Vec<Read> = records
                .into_iter()
                .filter(|r| {
                    let (time, bytes) = (r.record.time_unix_nano, r.record.message.len());
                    limiter.admit(&r.source, time, bytes, now)
                })
                .collect();
            let limited = read - records.len();
            if limited > 0 {
                ctx.outputs.stats().add_with_reason(
                    Signal::Logs,
                    Counter::Refused,
                    RATE_LIMITED,
                    limited as u64,
                );
            }
            for w in limiter.due_warnings(now) {
                tracing::warn!(
                    receiver = %ctx.id,
                    namespace = %w.namespace,
                    pod = %w.pod,
                    uid = %w.uid,
                    dropped = w.dropped,
                    total = w.total,
                    lines_per_second = selection.rate_limit.lines_per_second,
                    bytes_per_second = selection.rate_limit.bytes_per_second,
                    "kubernetes_logs: pod over its rate limit; lines dropped"
                );
            }
            if records.is_empty() {
                committer.read_nothing(t.offsets());
            } else {
                let batch = Batch::Logs(to_resource_logs(records));
                let acks = committer.hand_over(t.offsets());
                // Waits while the pipeline is full: the files are the buffer.
                if ctx.outputs.send_acked(batch, acks).await.is_err() {
                    break;
                }
            }
            if last_checkpoint.elapsed() >= checkpoint_every || stopping {
                store(&state_dir, &mut committer);
                last_checkpoint = Instant::now();
            }
            tailer = Some(t);
            if stopping {
                break;
            }
            if !step.more {
                tokio::select! {
                    () = ctx.shutdown.cancelled() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
        // What the pipelines deliver while they drain still moves the checkpoint.
        let in_flight = committer
            .settle_all(SHUTDOWN_SETTLE_WAIT, |o| write(&state_dir, o))
            .await;
        store(&state_dir, &mut committer);
        if in_flight > 0 || committer.frozen() {
            tracing::info!(
                hand_overs = in_flight,
                frozen = committer.frozen(),
                "kubernetes_logs: records not delivered at shutdown; read again after a restart"
            );
        }
        Ok(())
    }
}

/// Before the first look at the tree: waits, at most `pod_metadata_wait`, until the Catalog
/// knows every pod already there (that the path rules select), so the first look decides
/// with their labels and annotations (files there at the first start are read from their
/// end with `start_at: end`, which a later look could not do). Pods still unknown then are
/// read without them.
async fn wait_for_known_pods(config: &Config, ctx: &ReceiverContext) {
    let started = Instant::now();
    let pods: Vec<String> = pod_uids(&config.root)
        .into_iter()
        .filter(|(ns, uid)| config.selects_path(ns, uid, None))
        .map(|(_, uid)| uid)
        .collect();
    for uid in &pods {
        config.gate.seen_at(uid, started);
    }
    let wait = config.pod_metadata_wait;
    if pods.is_empty() || wait.is_zero() {
        return;
    }
    let deadline = started + wait;
    loop {
        let unknown = config.gate.snapshot().map_or(0, |s| {
            pods.iter().filter(|u| !s.pods.contains_key(*u)).count()
        });
        if unknown == 0 {
            tracing::debug!(receiver = %ctx.id, pods = pods.len(), waited = ?started.elapsed(), "kubernetes_logs: the Catalog knows the pods already here");
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            tracing::info!(receiver = %ctx.id, pods = unknown, wait = ?wait, "kubernetes_logs: pods the Catalog does not know after pod_metadata_wait; reading them without their labels and annotations");
            return;
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(config.poll_interval.min(deadline - now)) => {}
        }
    }
}

/// (namespace, UID) of every `<root>/<namespace>_<pod>_<uid>` directory.
fn pod_uids(root: &Path) -> Vec<(String, String)> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| {
            let name = d.file_name().into_string().ok()?;
            let mut p = name.splitn(3, '_');
            let (ns, pod, uid) = (p.next()?, p.next()?, p.next()?);
            (!ns.is_empty() && !pod.is_empty() && !uid.is_empty())
                .then(|| (ns.to_owned(), uid.to_owned()))
        })
        .collect()
}

/// `records` less those of pods no longer selected (the Catalog now says they opted out,
/// or their labels changed, or they were read unknown and turn out excluded); logs each
/// such pod once.
fn unselected_dropped(
    selection: &Config,
    records: Vec<Read>,
    stopped: &mut HashMap<String, Instant>,
    now: Instant,
) -> Vec<Read> {
    let Some(snapshot) = selection.gate.snapshot() else {
        return records;
    };
    let mut keep: HashMap<&str, bool> = HashMap::new();
    for r in &records {
        keep.entry(r.source.uid.as_str())
            .or_insert_with(|| selection.still_selects(&snapshot, &r.source.uid));
    }
    if keep.values().all(|k| *k) {
        for uid in keep.keys() {
            stopped.remove(*uid);
        }
        return records;
    }
    for r in &records {
        let uid = r.source.uid.as_str();
        if keep[uid] {
            stopped.remove(uid);
        } else if stopped.insert(uid.to_owned(), now).is_none() {
            tracing::info!(namespace = %r.source.namespace, pod = %r.source.pod, uid, "kubernetes_logs: pod no longer selected (opted out, or its labels changed); its lines are not sent");
        }
    }
    let keep: HashMap<String, bool> = keep.into_iter().map(|(u, k)| (u.to_owned(), k)).collect();
    records
        .into_iter()
        .filter(|r| keep[r.source.uid.as_str()])
        .collect()
}

/// Writes the safe offsets when they moved since the last write.
fn store(dir: &std::path::Path, committer: &mut Committer) {
    if let Some(o) = committer.take_dirty() {
        write(dir, o);
    }
}

fn write(dir: &std::path::Path, offsets: &Offsets) {
    if let Err(e) = checkpoint::store(dir, offsets) {
        tracing::warn!(error = %e, "kubernetes_logs: offsets not checkpointed");
    }
}

/// Records as OTLP logs: one `ResourceLogs` per file, in the order read.
fn to_resource_logs(records: Vec<Read>) -> Vec<ResourceLogs> {
    let observed = unix_nanos(SystemTime::now());
    let mut order: Vec<Source> = Vec::new();
    let mut by_source: HashMap<Source, Vec<LogRecord>> = HashMap::new();
    for Read { source, record } in records {
        if !by_source.contains_key(&source) {
            order.push(source.clone());
        }
        by_source
            .entry(source.clone())
            .or_default()
            .push(log_record(&source, record, observed));
    }
    order
        .into_iter()
        .map(|source| {
            let log_records = by_source.remove(&source).unwrap_or_default();
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv(semconv::K8S_NAMESPACE_NAME, source.namespace.clone()),
                        kv(semconv::K8S_POD_NAME, source.pod.clone()),
                        kv(semconv::K8S_POD_UID, source.uid.clone()),
                        kv(semconv::K8S_CONTAINER_NAME, source.container.clone()),
                        int(
                            semconv::K8S_CONTAINER_RESTART_COUNT,
                            i64::from(source.restart),
                        ),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect()
}

fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

/// One record: a JSON object line keeps its structure (a map body, severity from its
/// level field); any other line is a string body (invalid UTF-8 replaced by U+FFFD) with
/// the severity its leading level word states.
fn log_record(source: &Source, record: Record, observed: u64) -> LogRecord {
    let json = (record.message.first() == Some(&b'{'))
        .then(|| serde_json::from_slice::<serde_json::Value>(&record.message).ok())
        .flatten()
        .and_then(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        });
    let (body, severity) = match json {
        Some(map) => {
            let severity = parse::json_severity(&map);
            (object(map), severity)
        }
        None => (
            any_value::Value::StringValue(String::from_utf8_lossy(&record.message).into_owned()),
            parse::text_severity(&record.message),
        ),
    };
    let mut attributes = vec![
        kv(semconv::LOG_IOSTREAM, record.stream.as_str()),
        kv(semconv::LOG_FILE_PATH, source.path.display().to_string()),
    ];
    if record.truncated > 0 {
        attributes.push(int(
            semconv::HPCOTEL_LOG_TRUNCATED_BYTES,
            i64::try_from(record.truncated).unwrap_or(i64::MAX),
        ));
    }
    LogRecord {
        time_unix_nano: record.time_unix_nano,
        observed_time_unix_nano: observed,
        severity_number: severity.map_or(0, |s| s.number),
        severity_text: severity.map_or(String::new(), |s| s.text.to_owned()),
        body: Some(AnyValue { value: Some(body) }),
        attributes,
        ..Default::default()
    }
}

fn object(map: serde_json::Map<String, serde_json::Value>) -> any_value::Value {
    any_value::Value::KvlistValue(KeyValueList {
        values: map
            .into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: Some(json_any(v)),
                ..Default::default()
            })
            .collect(),
    })
}

/// A JSON value as an OTLP `AnyValue`: `null` is the empty value; integers that fit i64
/// stay integers.
fn json_any(v: serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(any_value::Value::BoolValue(b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(any_value::Value::StringValue(s)),
        J::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.into_iter().map(json_any).collect(),
        })),
        J::Object(m) => Some(object(m)),
    };
    AnyValue { value }
}
