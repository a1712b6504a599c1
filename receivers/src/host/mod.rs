//! The host metrics receiver: CPU, memory, load, network, filesystem and paging metrics read
//! through `sysinfo`, like the OpenTelemetry Collector's `hostmetrics` receiver.
//!
//! It emits one `Batch::Metrics` per `collection_interval` (the first right at start) holding
//! one `ResourceMetrics` with resource attributes `host.name`, `host.arch`, `os.type` and scope
//! `hpcotel` (crate version). Metric names and attributes follow the OpenTelemetry `system.*`
//! semantic conventions:
//!
//! | scraper | metric | type, unit | attributes |
//! |---|---|---|---|
//! | cpu | `system.cpu.utilization` | gauge `1` | `cpu.logical_number` |
//! | cpu | `system.cpu.logical.count` | updowncounter `{cpu}` | |
//! | memory | `system.memory.usage` | updowncounter `By` | `system.memory.state` = used, free |
//! | memory | `system.memory.limit` | updowncounter `By` | |
//! | memory | `system.memory.utilization` | gauge `1` | `system.memory.state` = used, free |
//! | memory | `system.memory.linux.available` (Linux) | updowncounter `By` | |
//! | load | `system.cpu.load_average.1m` / `.5m` / `.15m` | gauge `{thread}` | |
//! | network | `system.network.io` | counter `By` | `network.interface.name`, `network.io.direction` |
//! | network | `system.network.packets` | counter `{packet}` | same |
//! | network | `system.network.errors` | counter `{error}` | same |
//! | filesystem | `system.filesystem.usage` | updowncounter `By` | `system.device`, `system.filesystem.mountpoint`, `.type`, `.mode`, `.state` = used, free |
//! | filesystem | `system.filesystem.utilization` | gauge `1` | same, without `.state` |
//! | paging | `system.paging.usage` | updowncounter `By` | `system.paging.state` = used, free |
//! | paging | `system.paging.utilization` (swap configured) | gauge `1` | `system.paging.state` |
//!
//! sysinfo gives no per-mode CPU times, so `system.cpu.time` is not emitted; utilization is
//! busy time over the interval. Sums are cumulative with `start_time_unix_nano` = boot time
//! (the kernel counts from boot). Memory `buffers`/`cached` states are not available from
//! sysinfo; `system.memory.linux.available` carries the reclaimable estimate instead.
//!
//! Sampling runs in `spawn_blocking`. A scrape that cannot be handed to the pipeline before the
//! next tick is skipped and counted as refused (`pipeline_full`); nothing queues without bound.

mod config;
mod receiver;
mod scrape;

#[cfg(test)]
mod tests;

pub use config::{
    Config, CpuConfig, DEFAULT_COLLECTION_INTERVAL, FilesystemConfig, LoadConfig, MemoryConfig,
    NetworkConfig, PagingConfig, Scrapers,
};
pub use receiver::HostReceiver;

/// Why the host receiver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config enables no scraper.
    #[error("host receiver: no scraper enabled (list at least one under 'scrapers')")]
    NoScrapers,
    /// A system information source could not be opened.
    #[error("host receiver: cannot read {what}")]
    Init {
        /// What was being opened.
        what: &'static str,
        /// sysinfo's error.
        #[source]
        source: sysinfo::Error,
    },
}

/// `Result` with the host receiver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
