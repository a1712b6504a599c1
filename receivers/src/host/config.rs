//! Configuration of the host metrics receiver, in the Collector's `hostmetrics` shape:
//!
//! ```yaml
//! receivers:
//!   host:
//!     collection_interval: 10s
//!     scrapers:          # absent: every scraper on; present: only the listed ones
//!       cpu:
//!       memory:
//!       network:
//!         exclude_interfaces: [lo]
//! ```

use std::time::Duration;

use hpcotel_core::config::present_means_enabled;
use serde::{Deserialize, Serialize};

/// Default `collection_interval`: 10 s.
pub const DEFAULT_COLLECTION_INTERVAL: Duration = Duration::from_secs(10);

/// The host receiver's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Time between two scrapes (humantime, e.g. `10s`); the first scrape happens at start.
    /// Must be greater than zero. Values under 200 ms repeat the previous CPU utilization.
    /// Default: `10s`.
    #[serde(
        serialize_with = "humantime_serde::serialize",
        deserialize_with = "hpcotel_core::config::positive_duration"
    )]
    pub collection_interval: Duration,
    /// Which scrapers run. Absent: all of them, with defaults. Present: only those listed.
    /// Default: all enabled.
    pub scrapers: Scrapers,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            collection_interval: DEFAULT_COLLECTION_INTERVAL,
            scrapers: Scrapers::all(),
        }
    }
}

/// The scrapers, each on when its key is present (even empty: `cpu:`), off when absent.
///
/// Unlike other config structs this one has no struct-level `default`: when the `scrapers`
/// section is written, unlisted scrapers are off (the Collector's rule); when the whole
/// section is absent, [`Config::default`] turns every scraper on ([`Scrapers::all`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scrapers {
    /// Per-CPU utilization and the logical CPU count. Default: on (when `scrapers` is absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<CpuConfig>,
    /// Memory usage, limit and utilization. Default: on (when `scrapers` is absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<MemoryConfig>,
    /// 1, 5 and 15 minute load averages (not on Windows). Default: on (when `scrapers` is
    /// absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub load: Option<LoadConfig>,
    /// Per-interface bytes, packets and errors. Default: on (when `scrapers` is absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub network: Option<NetworkConfig>,
    /// Per-mount usage and utilization. Default: on (when `scrapers` is absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub filesystem: Option<FilesystemConfig>,
    /// Swap usage and utilization. Default: on (when `scrapers` is absent).
    #[serde(
        default,
        deserialize_with = "present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub paging: Option<PagingConfig>,
}

impl Scrapers {
    /// Every scraper on, with its defaults.
    pub fn all() -> Self {
        Self {
            cpu: Some(CpuConfig::default()),
            memory: Some(MemoryConfig::default()),
            load: Some(LoadConfig::default()),
            network: Some(NetworkConfig::default()),
            filesystem: Some(FilesystemConfig::default()),
            paging: Some(PagingConfig::default()),
        }
    }

    /// Every scraper off.
    pub fn none() -> Self {
        Self {
            cpu: None,
            memory: None,
            load: None,
            network: None,
            filesystem: None,
            paging: None,
        }
    }

    /// True when no scraper is on.
    pub fn is_empty(&self) -> bool {
        self == &Self::none()
    }
}

impl Default for Scrapers {
    fn default() -> Self {
        Self::all()
    }
}

/// The CPU scraper (no options yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuConfig {}

/// The memory scraper (no options yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {}

/// The load-average scraper (no options yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {}

/// The paging (swap) scraper (no options yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagingConfig {}

/// The network scraper.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Interface names to leave out, matched exactly (e.g. `[lo]`). Default: none.
    pub exclude_interfaces: Vec<String>,
}

/// The filesystem scraper.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// Mount points to leave out, matched exactly (e.g. `[/boot/efi]`). Default: none.
    pub exclude_mount_points: Vec<String>,
    /// Filesystem types to leave out (e.g. `[tmpfs, overlay]`). Default: none.
    pub exclude_fs_types: Vec<String>,
}
