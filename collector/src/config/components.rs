//! The component kinds hpcotel knows, one enum per component family.
//!
//! Adding a component = its folder in its crate + one variant here + one arm in `parse` and
//! one in `build`. The config key's type (`otlp` in `otlp/in`) picks the variant.

use std::sync::Arc;

use hpcotel_core::{Catalog, ComponentId, Exporter, Processor, Receiver, Signal};
use hpcotel_exporters::queue::{QueueConfig, RetryConfig};
use hpcotel_exporters::{debug, file, otlp as otlp_exporter, prometheus};
use hpcotel_receivers::{gpu, host, kubernetes, kubernetes_logs, otlp as otlp_receiver};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::extensions::{self, health_check};
use crate::processors::{batch, enrich};
use crate::service::Status;

/// Deserializes one component's section, returning (relative key path, message) on error.
fn section<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    // `otlp:` with nothing after it means "all defaults".
    let value = match value {
        Value::Null => Value::Mapping(Default::default()),
        v => v,
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

fn unknown(family: &str, kind: &str, known: &[&str]) -> (String, String) {
    (
        String::new(),
        format!(
            "unknown {family} type '{kind}'; known types: {}",
            known.join(", ")
        ),
    )
}

/// A receiver's config, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReceiverConfig {
    /// `otlp`: OTLP over gRPC and HTTP.
    Otlp(otlp_receiver::Config),
    /// `host`: host metrics.
    Host(host::Config),
    /// `gpu`: NVIDIA GPU metrics and events through NVML.
    Gpu(gpu::Config),
    /// `kubernetes`: pods, owners and Argo CD Applications, into the Catalog.
    Kubernetes(kubernetes::Config),
    /// `kubernetes_logs`: the node's container log files.
    KubernetesLogs(kubernetes_logs::Config),
}

impl ReceiverConfig {
    /// Receiver types, as written in config.
    pub const KINDS: &'static [&'static str] =
        &["otlp", "host", "gpu", "kubernetes", "kubernetes_logs"];

    /// Parses the section of a receiver of type `kind`.
    pub fn parse(kind: &str, value: Value) -> Result<Self, (String, String)> {
        Ok(match kind {
            "otlp" => Self::Otlp(section(value)?),
            "host" => Self::Host(section(value)?),
            "gpu" => {
                let c: gpu::Config = section(value)?;
                c.validate().map_err(|(k, m)| (k.to_owned(), m))?;
                Self::Gpu(c)
            }
            "kubernetes" => {
                let c: kubernetes::Config = section(value)?;
                c.validate().map_err(|(k, m)| (k.to_owned(), m))?;
                Self::Kubernetes(c)
            }
            "kubernetes_logs" => Self::KubernetesLogs(section(value)?),
            other => return Err(unknown("receiver", other, Self::KINDS)),
        })
    }

    /// The signals this receiver can produce.
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            Self::Otlp(_) => &Signal::ALL,
            Self::Host(_) => &[Signal::Metrics],
            Self::Gpu(_) => &[Signal::Metrics, Signal::Logs],
            Self::KubernetesLogs(_) => &[Signal::Logs],
            // A node agent feeds the Catalog and runs whenever defined (see `runs_unlisted`),
            // with pod lifecycle logs when a logs pipeline lists it; the cluster instance
            // emits rollout traces.
            Self::Kubernetes(c)
                if c.mode == kubernetes::Mode::Cluster || c.leader_election.is_some() =>
            {
                &[Signal::Traces, Signal::Logs]
            }
            Self::Kubernetes(c) if c.lifecycle_logs => &[Signal::Logs],
            Self::Kubernetes(_) => &[],
        }
    }

    /// True for a receiver that runs whenever it is defined, listed in a pipeline or not:
    /// one that produces no signal, and a kubernetes node agent without leader election
    /// (it fills the Catalog the enrich processor reads; its lifecycle logs go only to the
    /// logs pipelines that list it).
    pub fn runs_unlisted(&self) -> bool {
        match self {
            Self::Kubernetes(c) => c.mode == kubernetes::Mode::Node && c.leader_election.is_none(),
            other => other.signals().is_empty(),
        }
    }

    /// Builds the receiver: binds its sockets, opens what it needs. Receivers that learn
    /// metadata (the gpu receiver's PodResources) write it to `catalog`; the otlp receiver
    /// reads pod IPs from it (identity from the connection), kubernetes_logs pod labels and
    /// annotations (which pods' logs are read).
    pub async fn build(
        &self,
        catalog: &Catalog,
    ) -> Result<Box<dyn Receiver>, hpcotel_core::ComponentError> {
        Ok(match self {
            Self::Otlp(c) => Box::new(
                otlp_receiver::OtlpReceiver::bind(c)
                    .await?
                    .with_catalog(catalog.clone()),
            ),
            Self::Host(c) => Box::new(host::HostReceiver::new(c)?),
            Self::Gpu(c) => {
                // Loading and initialising NVML blocks (seconds on some nodes).
                let (c, catalog) = (c.clone(), catalog.clone());
                Box::new(
                    tokio::task::spawn_blocking(move || gpu::GpuReceiver::new(&c, catalog)).await?,
                )
            }
            Self::Kubernetes(c) => {
                Box::new(kubernetes::KubernetesReceiver::new(c, catalog.clone()).await?)
            }
            Self::KubernetesLogs(c) => Box::new(kubernetes_logs::KubernetesLogsReceiver::new(
                c,
                catalog.clone(),
            )),
        })
    }
}

/// A processor's config, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ProcessorConfig {
    /// `batch`: groups items into larger batches by size and time.
    Batch(batch::Config),
    /// `enrich`: adds what the Catalog knows about a pod (workloads, Argo CD Application,
    /// revision) to its resources.
    Enrich(enrich::Config),
}

impl ProcessorConfig {
    /// Processor types, as written in config.
    pub const KINDS: &'static [&'static str] = &["batch", "enrich"];

    /// Parses the section of a processor of type `kind`.
    pub fn parse(kind: &str, value: Value) -> Result<Self, (String, String)> {
        Ok(match kind {
            "batch" => Self::Batch(section(value)?),
            "enrich" => {
                let c: enrich::Config = section(value)?;
                c.validate().map_err(|(k, m)| (k.to_owned(), m))?;
                Self::Enrich(c)
            }
            other => return Err(unknown("processor", other, Self::KINDS)),
        })
    }

    /// Builds one instance of the processor for one pipeline; processors that read node
    /// metadata (enrich) read it from `catalog`.
    pub fn build(&self, catalog: &Catalog) -> Box<dyn Processor> {
        match self {
            Self::Batch(c) => Box::new(batch::BatchProcessor::new(c.clone())),
            Self::Enrich(c) => Box::new(enrich::EnrichProcessor::new(c, catalog.clone())),
        }
    }
}

/// An exporter's config, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExporterConfig {
    /// `otlp`: OTLP over gRPC.
    Otlp(otlp_exporter::Config),
    /// `otlphttp`: OTLP over HTTP/protobuf.
    Otlphttp(otlp_exporter::Config),
    /// `file`: OTLP JSON lines on disk.
    File(file::Config),
    /// `debug`: a summary line per interval on stderr.
    Debug(debug::Config),
    /// `prometheus`: a Prometheus scrape endpoint.
    Prometheus(prometheus::Config),
}

/// A built exporter and the queue settings it runs behind.
pub struct BuiltExporter {
    /// The exporter.
    pub exporter: Arc<dyn Exporter>,
    /// Its queue.
    pub queue: QueueConfig,
    /// Its retry policy.
    pub retry: RetryConfig,
}

impl ExporterConfig {
    /// Exporter types, as written in config.
    pub const KINDS: &'static [&'static str] = &["otlp", "otlphttp", "file", "debug", "prometheus"];

    /// Parses the section of an exporter of type `kind`.
    pub fn parse(kind: &str, value: Value) -> Result<Self, (String, String)> {
        Ok(match kind {
            "otlp" => Self::Otlp(section(value)?),
            "otlphttp" => Self::Otlphttp(section(value)?),
            "file" => Self::File(section(value)?),
            "debug" => Self::Debug(section(value)?),
            "prometheus" => Self::Prometheus(section(value)?),
            other => return Err(unknown("exporter", other, Self::KINDS)),
        })
    }

    /// Builds the exporter. Outgoing connections are made lazily; the `prometheus` exporter
    /// binds its endpoint here (inside the runtime), so a port in use is reported at start.
    pub fn build(&self) -> Result<BuiltExporter, hpcotel_core::ComponentError> {
        let local = |exporter: Arc<dyn Exporter>| BuiltExporter {
            exporter,
            queue: QueueConfig::default(),
            retry: RetryConfig::disabled(),
        };
        Ok(match self {
            Self::Otlp(c) | Self::Otlphttp(c) => {
                let protocol = if matches!(self, Self::Otlp(_)) {
                    otlp_exporter::Protocol::Grpc
                } else {
                    otlp_exporter::Protocol::HttpProtobuf
                };
                BuiltExporter {
                    exporter: Arc::new(otlp_exporter::OtlpExporter::new(c, protocol)?),
                    queue: c.sending_queue.clone(),
                    retry: c.retry_on_failure.clone(),
                }
            }
            Self::File(c) => local(Arc::new(file::FileExporter::new(c)?)),
            Self::Debug(c) => local(Arc::new(debug::DebugExporter::new(c))),
            Self::Prometheus(c) => local(Arc::new(prometheus::PrometheusExporter::new(c)?)),
        })
    }
}

/// An extension's config, by type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExtensionConfig {
    /// `health_check`: `GET /healthz` and `GET /readyz` for Kubernetes probes.
    HealthCheck(health_check::Config),
}

impl ExtensionConfig {
    /// Extension types, as written in config.
    pub const KINDS: &'static [&'static str] = &["health_check"];

    /// Parses the section of an extension of type `kind`.
    pub fn parse(kind: &str, value: Value) -> Result<Self, (String, String)> {
        Ok(match kind {
            "health_check" => Self::HealthCheck(section(value)?),
            other => return Err(unknown("extension", other, Self::KINDS)),
        })
    }

    /// Starts the extension `id`, which reads the collector's `status`. Binds its endpoint
    /// here, so a port in use is reported at start.
    pub async fn build(
        &self,
        id: ComponentId,
        status: Arc<Status>,
    ) -> Result<extensions::Running, hpcotel_core::ComponentError> {
        Ok(match self {
            Self::HealthCheck(c) => health_check::start(id, c, status).await?,
        })
    }
}
