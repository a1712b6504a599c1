//! The `prometheus` exporter: a pull endpoint serving every metric of its pipelines to
//! Prometheus.
//!
//! The exporter binds `endpoint` when it is built (a port in use stops `hpcotel run` at
//! start) and answers `GET /metrics` with the text exposition format 0.0.4 (`Content-Type:
//! text/plain; version=0.0.4; charset=utf-8`, gzip when asked for); other paths are 404.
//! Each exported batch updates an in-memory store: a gauge or cumulative sum keeps its last
//! value, a delta sum is accumulated, histograms become `_bucket`/`_sum`/`_count` (delta
//! ones accumulated while their bounds stay the same), exponential histograms are converted
//! exactly to explicit buckets, summaries become quantiles/`_sum`/`_count`. A series not
//! updated for `metric_expiration` disappears; a point flagged "no recorded value" removes
//! its series at once. Traces and logs are accepted and ignored. Data points that cannot be
//! represented (no value, unspecified temporality, bucket counts not matching the bounds)
//! are reported as rejected, so they show in `hpcotel.exporter.dropped{hpcotel.reason=rejected}`.
//!
//! Names follow the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification:
//! characters outside `[a-zA-Z0-9_:]` become `_`; the unit is appended (`By` → `_bytes`,
//! `s` → `_seconds`, `W` → `_watts`, `J` → `_joules`, `Cel` → `_celsius`, `Hz` → `_hertz`,
//! `By/s` → `_bytes_per_second`, `1` on a gauge → `_ratio`, `{…}` annotations dropped) and
//! monotonic counters end in `_total` (both unless `add_metric_suffixes: false`);
//! `namespace` is prepended. Attribute keys become label names the same way (a leading
//! digit gets `key_`); empty values are left out. Each series gets `otel_scope_name` and
//! `otel_scope_version`, `job` (`service.namespace/service.name`) and `instance`
//! (`service.instance.id`); the other resource attributes go to one `target_info` series
//! per resource, or onto every series with `resource_to_telemetry_conversion`. Points with
//! the same name and labels from different resources make one series: the one with the
//! latest time stamp wins. No time stamps are written: Prometheus assigns the scrape's.
//!
//! With `dcgm_compatible: true`, data points that have a dcgm-exporter equivalent
//! ([`dcgm::DCGM_MAPPINGS`]) are emitted only under dcgm-exporter's name, unit, type and
//! labels (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`, `GPU_I_PROFILE`,
//! `GPU_I_ID`, `DCGM_FI_DRIVER_VERSION`, `pod`, `namespace`, `container`), so
//! dcgm-exporter's dashboards and alerts keep working; every other point keeps its
//! OpenTelemetry-derived name. As in dcgm-exporter, a GPU's series follows its current pod:
//! the series under the previous pod goes as soon as the GPU reports under another.

mod config;
mod convert;
pub mod dcgm;
mod exporter;
mod server;
mod store;

#[cfg(test)]
mod tests;

pub use config::{
    Config, DEFAULT_ADD_METRIC_SUFFIXES, DEFAULT_DCGM_COMPATIBLE, DEFAULT_HOST,
    DEFAULT_METRIC_EXPIRATION, DEFAULT_PORT, ResourceToTelemetryConversion,
};
pub use convert::{NameKind, metric_name, sanitize_label_name, sanitize_metric_name, unit_suffix};
pub use exporter::{Error, PrometheusExporter, Result};
pub use server::{CONTENT_TYPE, METRICS_PATH};
