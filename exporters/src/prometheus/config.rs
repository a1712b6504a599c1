//! Configuration of the `prometheus` exporter, shaped like the OpenTelemetry Collector's
//! `prometheusexporter`:
//!
//! ```yaml
//! exporters:
//!   prometheus:
//!     endpoint: 0.0.0.0:9464        # default 127.0.0.1:9464 (loopback only)
//!     namespace: hpc
//!     const_labels: { cluster: gpu-a }
//!     metric_expiration: 5m
//!     resource_to_telemetry_conversion: { enabled: false }
//!     add_metric_suffixes: true
//!     dcgm_compatible: true
//!     auth: { token: ${env:SCRAPE_TOKEN} }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use hpcotel_core::{BearerAuthConfig, HostPort};
use serde::{Deserialize, Deserializer, Serialize};

/// Default listen host: loopback only; exposing the endpoint is an explicit choice.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default listen port, the OpenTelemetry SDKs' Prometheus exporter port.
pub const DEFAULT_PORT: u16 = 9464;
/// Default [`Config::metric_expiration`]: a series not updated for this long disappears.
pub const DEFAULT_METRIC_EXPIRATION: Duration = Duration::from_secs(5 * 60);
/// Default [`Config::add_metric_suffixes`].
pub const DEFAULT_ADD_METRIC_SUFFIXES: bool = true;
/// Default [`Config::dcgm_compatible`].
pub const DEFAULT_DCGM_COMPATIBLE: bool = false;

/// The `prometheus` exporter's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address `host:port` of the scrape endpoint (`GET /metrics`); `0.0.0.0:9464`
    /// to accept scrapes from the network. Default: `127.0.0.1:9464`.
    pub endpoint: HostPort,
    /// Prefix added, with `_`, to every OpenTelemetry-derived metric name (`hpc` turns
    /// `hw.power` into `hpc_hw_power_watts`); never to `target_info` nor to dcgm-exporter
    /// names. Default: unset, no prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels added to every series (names sanitized like attribute names); a data point's
    /// own attributes win on a clash. Default: none.
    pub const_labels: BTreeMap<String, String>,
    /// How long a series stays on the endpoint after its last update; at least `1s`.
    /// Duration, default `5m`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        deserialize_with = "at_least_one_second"
    )]
    pub metric_expiration: Duration,
    /// Whether resource attributes become labels of every series. Default: off, they are
    /// the labels of one `target_info` series per resource (`service.name` and
    /// `service.instance.id` always become `job` and `instance`).
    pub resource_to_telemetry_conversion: ResourceToTelemetryConversion,
    /// Whether names get their unit suffix (`_bytes`, `_seconds`, `_ratio` on a gauge of
    /// unit `1`, ...) and monotonic counters `_total`. Default: `true`.
    pub add_metric_suffixes: bool,
    /// Emit the metrics that have a dcgm-exporter equivalent only under dcgm-exporter's
    /// names, units and labels (`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",…}`), so its
    /// dashboards and alerts keep working; other metrics keep their OpenTelemetry names.
    /// Default: `false`.
    pub dcgm_compatible: bool,
    /// Bearer-token authentication demanded of scrapers (`Authorization: Bearer <token>`;
    /// Prometheus: `authorization: { credentials: ... }` in the scrape config).
    /// Default: unset, no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BearerAuthConfig>,
}

/// `resource_to_telemetry_conversion` (the Collector's shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetryConversion {
    /// Copy every resource attribute onto every series as a label. Default: `false`.
    pub enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: HostPort::new(DEFAULT_HOST, DEFAULT_PORT),
            namespace: None,
            const_labels: BTreeMap::new(),
            metric_expiration: DEFAULT_METRIC_EXPIRATION,
            resource_to_telemetry_conversion: ResourceToTelemetryConversion::default(),
            add_metric_suffixes: DEFAULT_ADD_METRIC_SUFFIXES,
            dcgm_compatible: DEFAULT_DCGM_COMPATIBLE,
            auth: None,
        }
    }
}

fn at_least_one_second<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = humantime_serde::deserialize(d)?;
    if v < Duration::from_secs(1) {
        return Err(serde::de::Error::custom(format!(
            "expected a duration of at least 1s, got {}",
            humantime_serde::re::humantime::format_duration(v)
        )));
    }
    Ok(v)
}
