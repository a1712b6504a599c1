//! Configuration of the `health_check` extension, shaped like the OpenTelemetry Collector's
//! `healthcheckextension`:
//!
//! ```yaml
//! extensions:
//!   health_check:
//!     endpoint: ${env:HPCOTEL_HEALTH_ENDPOINT:-127.0.0.1:13133}
//! service:
//!   extensions: [health_check]
//! ```

use std::time::Duration;

use hpcotel_core::HostPort;
use serde::{Deserialize, Serialize};

/// Default listen host: loopback only; probes from the kubelet need the pod IP (or
/// `0.0.0.0`), which is an explicit choice.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default listen port, the OpenTelemetry Collector's health check port.
pub const DEFAULT_PORT: u16 = 13133;
/// Default for [`Config::drop_window`]: 60 s.
pub const DEFAULT_DROP_WINDOW: Duration = Duration::from_secs(60);

/// The `health_check` extension's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address `host:port` of `GET /healthz` and `GET /readyz` (no authentication:
    /// the answers carry no telemetry, only component ids and export errors). Default:
    /// `127.0.0.1:13133`.
    pub endpoint: HostPort,
    /// How long after an exporter's latest drop of accepted data that does not make it
    /// failing (`queue_full`, `too_large`, `rejected`) `/readyz` stays not ready, naming the
    /// exporter `dropping`. `0s` = such drops do not affect readiness (they are still
    /// listed). Default: 60s.
    #[serde(with = "humantime_serde")]
    pub drop_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: HostPort::new(DEFAULT_HOST, DEFAULT_PORT),
            drop_window: DEFAULT_DROP_WINDOW,
        }
    }
}
