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

use hpcotel_core::HostPort;
use serde::{Deserialize, Serialize};

/// Default listen host: loopback only; probes from the kubelet need the pod IP (or
/// `0.0.0.0`), which is an explicit choice.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default listen port, the OpenTelemetry Collector's health check port.
pub const DEFAULT_PORT: u16 = 13133;

/// The `health_check` extension's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address `host:port` of `GET /healthz` and `GET /readyz` (no authentication:
    /// the answers carry no telemetry, only component ids and export errors). Default:
    /// `127.0.0.1:13133`.
    pub endpoint: HostPort,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            endpoint: HostPort::new(DEFAULT_HOST, DEFAULT_PORT),
        }
    }
}
