//! The scrapers: one blocking sysinfo refresh turned into OTLP metrics.

use std::time::{Duration, SystemTime};

use hpcotel_core::metric_set::MetricSet;
use hpcotel_core::semconv;
use hpcotel_core::telemetry::{kv, kv_int, scope, unix_nanos};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sysinfo::{Disks, Networks, System};

use super::config::{Config, FilesystemConfig, NetworkConfig};
use super::{Error, Result};

/// `host.arch` value per the semantic conventions (`amd64`, `arm64`, ...).
fn host_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".to_owned(),
        "aarch64" => "arm64".to_owned(),
        "x86" => "x86".to_owned(),
        "arm" => "arm32".to_owned(),
        "powerpc64" => "ppc64".to_owned(),
        "s390x" => "s390x".to_owned(),
        other => other.to_owned(),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Owns the sysinfo handles; [`Scraper::scrape`] is blocking (it reads `/proc`).
pub(crate) struct Scraper {
    config: Config,
    system: System,
    networks: Option<Networks>,
    disks: Option<Disks>,
    resource: Resource,
    start_unix_nano: u64,
}

impl Scraper {
    /// Opens the sysinfo handles the enabled scrapers need and takes a first CPU reading so
    /// that the first utilization covers the time since construction.
    pub(crate) fn new(config: &Config) -> Result<Self> {
        if config.scrapers.is_empty() {
            return Err(Error::NoScrapers);
        }
        let mut system = System::new().map_err(|e| Error::Init {
            what: "system information",
            source: e,
        })?;
        let s = &config.scrapers;
        if s.cpu.is_some() {
            system.refresh_cpu_usage();
        }
        let networks = match &s.network {
            Some(_) => Some(
                Networks::new_with_refreshed_list().map_err(|e| Error::Init {
                    what: "network interfaces",
                    source: e,
                })?,
            ),
            None => None,
        };
        let disks = match &s.filesystem {
            Some(_) => Some(Disks::new_with_refreshed_list().map_err(|e| Error::Init {
                what: "filesystems",
                source: e,
            })?),
            None => None,
        };
        let mut attributes = crate::host_attributes();
        attributes.extend([
            kv(semconv::HOST_ARCH, host_arch()),
            kv(semconv::OS_TYPE, semconv::os_type_value()),
        ]);
        let resource = Resource {
            attributes,
            ..Default::default()
        };
        // Cumulative series count from boot (the kernel's counters); fall back to now.
        let start_unix_nano = match System::boot_time() {
            Ok(secs) if secs > 0 => secs.saturating_mul(1_000_000_000),
            _ => unix_nanos(SystemTime::now()),
        };
        Ok(Self {
            config: config.clone(),
            system,
            networks,
            disks,
            resource,
            start_unix_nano,
        })
    }

    /// Refreshes what the enabled scrapers read and returns one `ResourceMetrics`.
    pub(crate) fn scrape(&mut self) -> ResourceMetrics {
        let mut set = MetricSet::new(unix_nanos(SystemTime::now()), self.start_unix_nano);
        let scrapers = self.config.scrapers.clone();
        if scrapers.cpu.is_some() {
            self.cpu(&mut set);
        }
        if scrapers.memory.is_some() {
            self.memory(&mut set);
        }
        if scrapers.load.is_some() {
            load(&mut set);
        }
        if let Some(cfg) = &scrapers.network {
            self.network(cfg, &mut set);
        }
        if let Some(cfg) = &scrapers.filesystem {
            self.filesystem(cfg, &mut set);
        }
        if scrapers.paging.is_some() {
            self.paging(&mut set);
        }
        ResourceMetrics {
            resource: Some(self.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: set.into_metrics(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn cpu(&mut self, set: &mut MetricSet) {
        self.system.refresh_cpu_usage();
        let cpus = self.system.cpus();
        let points = cpus
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    vec![kv_int(semconv::CPU_LOGICAL_NUMBER, i as i64)],
                    (f64::from(c.usage()) / 100.0).clamp(0.0, 1.0),
                )
            })
            .collect();
        set.gauge(
            semconv::METRIC_SYSTEM_CPU_UTILIZATION,
            "Fraction of time each logical CPU was busy (not idle) since the previous scrape.",
            "1",
            points,
        );
        set.sum_int(
            semconv::METRIC_SYSTEM_CPU_LOGICAL_COUNT,
            "Number of logical CPUs.",
            "{cpu}",
            false,
            vec![(Vec::new(), cpus.len() as i64)],
        );
    }

    fn memory(&mut self, set: &mut MetricSet) {
        self.system.refresh_memory();
        let total = self.system.total_memory();
        if total == 0 {
            tracing::debug!("memory totals unavailable on this platform");
            return;
        }
        let used = self.system.used_memory().min(total);
        let free = self.system.free_memory().min(total);
        let state = |s: &str| vec![kv(semconv::SYSTEM_MEMORY_STATE, s)];
        set.sum_int(
            semconv::METRIC_SYSTEM_MEMORY_USAGE,
            "Memory in use by state.",
            "By",
            false,
            vec![
                (state("used"), clamp_i64(used)),
                (state("free"), clamp_i64(free)),
            ],
        );
        set.sum_int(
            semconv::METRIC_SYSTEM_MEMORY_LIMIT,
            "Total memory available in the system.",
            "By",
            false,
            vec![(Vec::new(), clamp_i64(total))],
        );
        set.gauge(
            semconv::METRIC_SYSTEM_MEMORY_UTILIZATION,
            "Fraction of memory in each state.",
            "1",
            vec![
                (state("used"), ratio(used, total)),
                (state("free"), ratio(free, total)),
            ],
        );
        if cfg!(target_os = "linux") {
            set.sum_int(
                semconv::METRIC_SYSTEM_MEMORY_LINUX_AVAILABLE,
                "Estimate of memory available for new applications without swapping (MemAvailable).",
                "By",
                false,
                vec![(Vec::new(), clamp_i64(self.system.available_memory()))],
            );
        }
    }

    fn network(&mut self, cfg: &NetworkConfig, set: &mut MetricSet) {
        let Some(networks) = self.networks.as_mut() else {
            return;
        };
        networks.refresh(true);
        let mut names: Vec<(String, &sysinfo::NetworkData)> = networks
            .iter()
            .map(|(n, d)| (n.to_string_lossy().into_owned(), d))
            .filter(|(n, _)| !cfg.exclude_interfaces.contains(n))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut io = Vec::new();
        let mut packets = Vec::new();
        let mut errors = Vec::new();
        for (name, d) in names {
            let attrs = |dir: &str| {
                vec![
                    kv(semconv::NETWORK_INTERFACE_NAME, name.as_str()),
                    kv(semconv::NETWORK_IO_DIRECTION, dir),
                ]
            };
            io.push((attrs("receive"), clamp_i64(d.total_received())));
            io.push((attrs("transmit"), clamp_i64(d.total_transmitted())));
            packets.push((attrs("receive"), clamp_i64(d.total_packets_received())));
            packets.push((attrs("transmit"), clamp_i64(d.total_packets_transmitted())));
            errors.push((attrs("receive"), clamp_i64(d.total_errors_on_received())));
            errors.push((
                attrs("transmit"),
                clamp_i64(d.total_errors_on_transmitted()),
            ));
        }
        set.sum_int(
            semconv::METRIC_SYSTEM_NETWORK_IO,
            "Bytes received and transmitted per interface.",
            "By",
            true,
            io,
        );
        set.sum_int(
            semconv::METRIC_SYSTEM_NETWORK_PACKETS,
            "Packets received and transmitted per interface.",
            "{packet}",
            true,
            packets,
        );
        set.sum_int(
            semconv::METRIC_SYSTEM_NETWORK_ERRORS,
            "Network errors detected per interface.",
            "{error}",
            true,
            errors,
        );
    }

    fn filesystem(&mut self, cfg: &FilesystemConfig, set: &mut MetricSet) {
        let Some(disks) = self.disks.as_mut() else {
            return;
        };
        disks.refresh(true);
        let mut usage = Vec::new();
        let mut utilization = Vec::new();
        for disk in disks.iter() {
            let total = disk.total_space();
            let mount = disk.mount_point().to_string_lossy().into_owned();
            let fs_type = disk.file_system().to_string_lossy().into_owned();
            if total == 0
                || cfg.exclude_mount_points.contains(&mount)
                || cfg.exclude_fs_types.contains(&fs_type)
            {
                continue;
            }
            let free = disk.available_space().min(total);
            let used = total - free;
            let device = disk.name().to_string_lossy().into_owned();
            let mode = if disk.is_read_only() { "ro" } else { "rw" };
            let attrs = |state: Option<&str>| {
                let mut a = vec![
                    kv(semconv::SYSTEM_DEVICE, device.as_str()),
                    kv(semconv::SYSTEM_FILESYSTEM_MOUNTPOINT, mount.as_str()),
                    kv(semconv::SYSTEM_FILESYSTEM_TYPE, fs_type.as_str()),
                    kv(semconv::SYSTEM_FILESYSTEM_MODE, mode),
                ];
                if let Some(s) = state {
                    a.push(kv(semconv::SYSTEM_FILESYSTEM_STATE, s));
                }
                a
            };
            usage.push((attrs(Some("used")), clamp_i64(used)));
            usage.push((attrs(Some("free")), clamp_i64(free)));
            utilization.push((attrs(None), ratio(used, total)));
        }
        set.sum_int(
            semconv::METRIC_SYSTEM_FILESYSTEM_USAGE,
            "Filesystem space by state (free is the space available to unprivileged users).",
            "By",
            false,
            usage,
        );
        set.gauge(
            semconv::METRIC_SYSTEM_FILESYSTEM_UTILIZATION,
            "Fraction of filesystem space used.",
            "1",
            utilization,
        );
    }

    fn paging(&mut self, set: &mut MetricSet) {
        self.system.refresh_memory();
        let total = self.system.total_swap();
        let free = self.system.free_swap().min(total);
        let used = total - free;
        let state = |s: &str| vec![kv(semconv::SYSTEM_PAGING_STATE, s)];
        set.sum_int(
            semconv::METRIC_SYSTEM_PAGING_USAGE,
            "Swap space in use by state.",
            "By",
            false,
            vec![
                (state("used"), clamp_i64(used)),
                (state("free"), clamp_i64(free)),
            ],
        );
        if total > 0 {
            set.gauge(
                semconv::METRIC_SYSTEM_PAGING_UTILIZATION,
                "Fraction of swap space in each state.",
                "1",
                vec![
                    (state("used"), ratio(used, total)),
                    (state("free"), ratio(free, total)),
                ],
            );
        }
    }
}

fn load(set: &mut MetricSet) {
    match System::load_average() {
        Ok(l) => {
            for (name, v) in [
                (semconv::METRIC_SYSTEM_CPU_LOAD_AVERAGE_1M, l.one),
                (semconv::METRIC_SYSTEM_CPU_LOAD_AVERAGE_5M, l.five),
                (semconv::METRIC_SYSTEM_CPU_LOAD_AVERAGE_15M, l.fifteen),
            ] {
                set.gauge(
                    name,
                    "Average CPU load (runnable threads).",
                    "{thread}",
                    vec![(Vec::new(), v)],
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "load average unavailable"),
    }
}

/// How long a scrape may take before it is logged as slow.
pub(crate) const SLOW_SCRAPE: Duration = Duration::from_secs(1);
