//! hpcotel's YAML config, in the OpenTelemetry Collector's shape.
//!
//! ```yaml
//! receivers:  { otlp/in: { protocols: { grpc: , http: } } }
//! processors: { batch: }
//! exporters:  { otlp/tempo: { endpoint: "tempo:4317" } }
//! extensions: { health_check: { endpoint: "127.0.0.1:13133" } }
//! service:
//!   extensions: [health_check]
//!   pipelines:
//!     traces: { receivers: [otlp/in], processors: [batch], exporters: [otlp/tempo] }
//! ```
//!
//! Loading is: read, parse YAML, expand `${env:NAME}` / `${env:NAME:-default}` in values,
//! deserialize (unknown keys rejected), then check the topology. Every error names the file,
//! the key path and what was expected.

mod components;
mod expand;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use hpcotel_core::{ComponentId, Signal};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

pub use components::{
    BuiltExporter, ExporterConfig, ExtensionConfig, ProcessorConfig, ReceiverConfig,
};
pub use expand::{Env, ProcessEnv};

/// The configuration used when `--config` is not given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");
/// Name under which the embedded default appears in messages.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// Default for `service.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `service.pipelines.<id>.queue_size`, in items: room for two full batches of
/// the batch processor's default size at every hop.
pub const DEFAULT_PIPELINE_QUEUE_SIZE: usize = 16_384;
/// Default for `service.telemetry.metrics.interval`.
pub const DEFAULT_SELF_METRICS_INTERVAL: Duration = Duration::from_secs(10);

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: cannot read config: {source}")]
    Read {
        /// The config file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{file}{location}: invalid YAML: {message}")]
    Syntax {
        /// The config file.
        file: String,
        /// `:line:column`, when known.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// A value is wrong.
    #[error("{file}: {path}: {message}")]
    Invalid {
        /// The config file.
        file: String,
        /// Dotted key path, e.g. `exporters.otlp.endpoint`.
        path: String,
        /// What was expected and what was found.
        message: String,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Receivers by id.
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    /// Processors by id.
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    /// Exporters by id.
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
    /// Extensions by id; those listed in `service.extensions` run.
    pub extensions: BTreeMap<ComponentId, ExtensionConfig>,
    /// Pipelines and the collector's own settings.
    pub service: ServiceConfig,
}

/// The `service` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Extension ids to run (each defined under `extensions`), started before the pipelines
    /// and stopped after they have drained. Default: none.
    #[serde(default)]
    pub extensions: Vec<ComponentId>,
    /// Pipelines by id: `traces`, `metrics`, `logs`, or `<signal>/<name>`. At least one.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// The collector's own telemetry. Default: self-metrics every 10 s into every metrics
    /// pipeline.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// How long SIGTERM/SIGINT may take to drain the pipelines and flush the exporters before
    /// what is left is dropped (and counted). Default: 30s.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    DEFAULT_SHUTDOWN_TIMEOUT
}

/// One pipeline: receivers -> processors (in order) -> every exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receiver ids feeding this pipeline. At least one.
    pub receivers: Vec<ComponentId>,
    /// Processor ids, applied in order. Default: none.
    #[serde(default)]
    pub processors: Vec<ComponentId>,
    /// Exporter ids; each gets every batch (fan-out). At least one.
    pub exporters: Vec<ComponentId>,
    /// Capacity of each bounded channel in this pipeline (receivers to the first processor,
    /// and between stages), in items: spans, metric points or log records. When full,
    /// receivers answer "retry later". Default: 16384.
    #[serde(default = "default_pipeline_queue")]
    pub queue_size: usize,
    /// A write-ahead log at the head of this pipeline: receivers answer their clients only
    /// once a batch is in it, and it is replayed after a crash (see
    /// `service::durable`). Default: none (the pipeline holds data in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ahead_log: Option<crate::service::durable::WriteAheadLogConfig>,
}

fn default_pipeline_queue() -> usize {
    DEFAULT_PIPELINE_QUEUE_SIZE
}

/// `service.telemetry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's own metrics (`hpcotel.receiver.accepted`, ...).
    pub metrics: SelfMetricsConfig,
}

/// `service.telemetry.metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfMetricsConfig {
    /// `basic`: emit self-metrics into every metrics pipeline; `none`: don't. Default: basic.
    pub level: SelfMetricsLevel,
    /// How often self-metrics are emitted; more than 0. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for SelfMetricsConfig {
    fn default() -> Self {
        Self {
            level: SelfMetricsLevel::Basic,
            interval: DEFAULT_SELF_METRICS_INTERVAL,
        }
    }
}

/// How much the collector reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfMetricsLevel {
    /// Nothing.
    None,
    /// Per-component item counters and queue gauges.
    Basic,
}

/// A pipeline id split into its signal and optional name.
pub fn pipeline_signal(id: &str) -> std::result::Result<Signal, String> {
    let kind = id.split_once('/').map_or(id, |(k, _)| k);
    match kind {
        "traces" => Ok(Signal::Traces),
        "metrics" => Ok(Signal::Metrics),
        "logs" => Ok(Signal::Logs),
        other => Err(format!(
            "pipeline type must be traces, metrics or logs (optionally followed by /name), got '{other}'"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, Value>,
    #[serde(default)]
    processors: BTreeMap<String, Value>,
    #[serde(default)]
    exporters: BTreeMap<String, Value>,
    #[serde(default)]
    extensions: BTreeMap<String, Value>,
    service: ServiceConfig,
}

impl Config {
    /// Loads and validates the file at `path`, expanding variables from the process
    /// environment.
    pub fn load_file(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file, &ProcessEnv)
    }

    /// Loads the embedded default config.
    pub fn embedded_default() -> Result<Self> {
        Self::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME, &ProcessEnv)
    }

    /// Parses and validates config `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str, env: &dyn Env) -> Result<Self> {
        let invalid = |path: String, message: String| Error::Invalid {
            file: file.to_owned(),
            path,
            message,
        };
        let mut value: Value = serde_yaml::from_str(text).map_err(|e| Error::Syntax {
            file: file.to_owned(),
            location: e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            return Err(invalid(
                "service".into(),
                "the config is empty; at least service.pipelines is required".into(),
            ));
        }
        expand::expand_value(&mut value, env, &mut Vec::new()).map_err(|(p, m)| invalid(p, m))?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            invalid(
                if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                e.into_inner().to_string(),
            )
        })?;

        fn sections<T>(
            family: &str,
            raw: BTreeMap<String, Value>,
            parse: impl Fn(&str, Value) -> std::result::Result<T, (String, String)>,
            invalid: &impl Fn(String, String) -> Error,
        ) -> Result<BTreeMap<ComponentId, T>> {
            let mut out = BTreeMap::new();
            for (key, value) in raw {
                let at = format!("{family}.{key}");
                let id: ComponentId = key
                    .parse()
                    .map_err(|e| invalid(at.clone(), format!("{e}")))?;
                let cfg = parse(id.kind(), value).map_err(|(p, m)| {
                    invalid(
                        if p.is_empty() {
                            at.clone()
                        } else {
                            format!("{at}.{p}")
                        },
                        m,
                    )
                })?;
                out.insert(id, cfg);
            }
            Ok(out)
        }
        let config = Config {
            receivers: sections("receivers", raw.receivers, ReceiverConfig::parse, &invalid)?,
            processors: sections(
                "processors",
                raw.processors,
                ProcessorConfig::parse,
                &invalid,
            )?,
            exporters: sections("exporters", raw.exporters, ExporterConfig::parse, &invalid)?,
            extensions: sections(
                "extensions",
                raw.extensions,
                ExtensionConfig::parse,
                &invalid,
            )?,
            service: raw.service,
        };
        config.check_topology().map_err(|(p, m)| invalid(p, m))?;
        Ok(config)
    }

    fn check_topology(&self) -> std::result::Result<(), (String, String)> {
        if self.service.pipelines.is_empty() {
            return Err((
                "service.pipelines".into(),
                "at least one pipeline (traces, metrics or logs) is required".into(),
            ));
        }
        check_list("service", "extensions", &self.service.extensions, |e| {
            self.extensions
                .get(e)
                .map(|_| ())
                .ok_or_else(|| undefined("extension", e, self.extensions.keys()))
        })?;
        if self.service.telemetry.metrics.interval.is_zero() {
            return Err((
                "service.telemetry.metrics.interval".into(),
                "expected a positive duration, got 0s".into(),
            ));
        }
        for (id, p) in &self.service.pipelines {
            let at = format!("service.pipelines.{id}");
            let signal = pipeline_signal(id).map_err(|m| (at.clone(), m))?;
            if let Some((_, name)) = id.split_once('/')
                && (name.is_empty() || name.contains('/'))
            {
                return Err((
                    at,
                    format!("invalid pipeline id '{id}': expected <signal>[/<name>]"),
                ));
            }
            if p.queue_size == 0 {
                return Err((
                    format!("{at}.queue_size"),
                    "expected a positive number of items, got 0".into(),
                ));
            }
            if let Some(w) = &p.write_ahead_log {
                if w.directory.as_os_str().is_empty() {
                    return Err((
                        format!("{at}.write_ahead_log.directory"),
                        "expected a directory for the log, got an empty path".into(),
                    ));
                }
                if w.max_size_mib == 0 {
                    return Err((
                        format!("{at}.write_ahead_log.max_size_mib"),
                        "expected a positive size in MiB, got 0".into(),
                    ));
                }
                // Two logs in one directory would write each other's segments.
                if let Some((other, _)) = self.service.pipelines.iter().find(|(o, q)| {
                    *o < id
                        && q.write_ahead_log
                            .as_ref()
                            .is_some_and(|x| x.directory == w.directory)
                }) {
                    return Err((
                        format!("{at}.write_ahead_log.directory"),
                        format!(
                            "'{}' is already the write-ahead log of pipeline '{other}'; each pipeline needs its own",
                            w.directory.display()
                        ),
                    ));
                }
            }
            check_list(&at, "receivers", &p.receivers, |r| {
                let cfg = self
                    .receivers
                    .get(r)
                    .ok_or_else(|| undefined("receiver", r, self.receivers.keys()))?;
                if cfg.signals().is_empty() {
                    return Err(format!(
                        "receiver '{r}' produces no signal: it fills the metadata the enrich \
                         processor reads and runs without being listed in a pipeline"
                    ));
                }
                if !cfg.signals().contains(&signal) {
                    return Err(format!("receiver '{r}' does not produce {signal}"));
                }
                Ok(())
            })?;
            check_list(&at, "processors", &p.processors, |r| {
                self.processors
                    .get(r)
                    .map(|_| ())
                    .ok_or_else(|| undefined("processor", r, self.processors.keys()))
            })?;
            check_list(&at, "exporters", &p.exporters, |r| {
                self.exporters
                    .get(r)
                    .map(|_| ())
                    .ok_or_else(|| undefined("exporter", r, self.exporters.keys()))
            })?;
            if p.receivers.is_empty() {
                return Err((
                    format!("{at}.receivers"),
                    "a pipeline needs at least one receiver".into(),
                ));
            }
            if p.exporters.is_empty() {
                return Err((
                    format!("{at}.exporters"),
                    "a pipeline needs at least one exporter".into(),
                ));
            }
        }
        Ok(())
    }

    /// Components that are configured but used by no pipeline (they are not started).
    pub fn unused_components(&self) -> Vec<String> {
        let p = &self.service.pipelines;
        let used = |pick: fn(&PipelineConfig) -> &Vec<ComponentId>| -> BTreeSet<ComponentId> {
            p.values().flat_map(|pl| pick(pl).iter().cloned()).collect()
        };
        let (r, pr, e) = (
            used(|p| &p.receivers),
            used(|p| &p.processors),
            used(|p| &p.exporters),
        );
        let mut out = Vec::new();
        out.extend(
            self.receivers
                .iter()
                .filter(|(k, c)| !r.contains(k) && !c.runs_unlisted())
                .map(|(k, _)| format!("receivers.{k}")),
        );
        out.extend(
            self.processors
                .keys()
                .filter(|k| !pr.contains(k))
                .map(|k| format!("processors.{k}")),
        );
        out.extend(
            self.exporters
                .keys()
                .filter(|k| !e.contains(k))
                .map(|k| format!("exporters.{k}")),
        );
        out
    }

    /// Extensions that are defined but not listed in `service.extensions` (they are not
    /// started), as `extensions.<id>`.
    pub fn unused_extensions(&self) -> Vec<String> {
        self.extensions
            .keys()
            .filter(|id| !self.service.extensions.contains(id))
            .map(|id| format!("extensions.{id}"))
            .collect()
    }

    /// The effective config as YAML (defaults filled in, variables expanded, secrets
    /// redacted).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn undefined<'a>(
    family: &str,
    id: &ComponentId,
    defined: impl Iterator<Item = &'a ComponentId>,
) -> String {
    let defined: Vec<String> = defined.map(|d| d.to_string()).collect();
    format!(
        "{family} '{id}' is not defined under {family}s (defined: {})",
        if defined.is_empty() {
            "none".to_string()
        } else {
            defined.join(", ")
        }
    )
}

fn check_list(
    at: &str,
    field: &str,
    ids: &[ComponentId],
    check: impl Fn(&ComponentId) -> std::result::Result<(), String>,
) -> std::result::Result<(), (String, String)> {
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err((format!("{at}.{field}"), format!("'{id}' is listed twice")));
        }
        check(id).map_err(|m| (format!("{at}.{field}"), m))?;
    }
    Ok(())
}
