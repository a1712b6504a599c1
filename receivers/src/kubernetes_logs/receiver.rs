//! The receiver: the tailer on a blocking thread, its records as OTLP logs, the checkpoint.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use hpcotel_core::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use hpcotel_core::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::telemetry::{kv, scope, unix_nanos};
use hpcotel_core::{Batch, ComponentError, Receiver, ReceiverContext, semconv};

use super::checkpoint;
use super::config::{Config, DEFAULT_READ_CHUNK};
use super::parse::{self, Record};
use super::tail::{Read, Source, Tailer};

/// The `kubernetes_logs` receiver; see the module doc.
#[derive(Debug)]
pub struct KubernetesLogsReceiver {
    config: Config,
}

impl KubernetesLogsReceiver {
    /// A receiver of `config`. Nothing is opened until it runs.
    pub fn new(config: &Config) -> KubernetesLogsReceiver {
        KubernetesLogsReceiver {
            config: config.clone(),
        }
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
        let (poll, checkpoint_every) = (config.poll_interval, config.checkpoint_interval);
        let mut tailer = Some(Tailer::new(config, offsets));
        let mut last_scan: Option<Instant> = None;
        let mut last_checkpoint = Instant::now();
        loop {
            let stopping = ctx.shutdown.is_cancelled();
            let mut t = tailer.take().expect("tailer");
            let scan = last_scan.is_none_or(|s| s.elapsed() >= poll);
            let (t, step) = tokio::task::spawn_blocking(move || {
                if scan {
                    t.scan();
                }
                let step = t.step(Instant::now(), DEFAULT_READ_CHUNK);
                (t, step)
            })
            .await
            .map_err(|e| -> ComponentError { format!("log tailer panicked: {e}").into() })?;
            if scan {
                last_scan = Some(Instant::now());
            }
            if step.unparsed > 0 {
                tracing::debug!(
                    lines = step.unparsed,
                    "kubernetes_logs: lines not in their file's format, sent as they are"
                );
            }
            if !step.records.is_empty() {
                let batch = Batch::Logs(to_resource_logs(step.records));
                // Waits while the pipeline is full: the files are the buffer.
                if ctx.outputs.send(batch).await.is_err() {
                    break;
                }
            }
            if last_checkpoint.elapsed() >= checkpoint_every || stopping {
                store(&state_dir, &t);
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
        if let Some(t) = &tailer {
            store(&state_dir, t);
        }
        Ok(())
    }
}

fn store(dir: &std::path::Path, t: &Tailer) {
    if let Err(e) = checkpoint::store(dir, &t.offsets()) {
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
