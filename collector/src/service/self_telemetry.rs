//! Emits the collector's own counters as OTLP metrics into its metrics pipelines.

use std::time::{Duration, SystemTime};

use hpcotel_core::proto::resource::v1::Resource;
use hpcotel_core::telemetry::{kv, unix_nanos};
use hpcotel_core::{Batch, Outputs, Telemetry, semconv};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The resource self-metrics are reported under.
pub fn resource() -> Resource {
    let host = sysinfo_free_hostname();
    Resource {
        attributes: vec![
            kv(semconv::SERVICE_NAME, semconv::SELF_SERVICE_NAME),
            kv(semconv::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
            kv(
                semconv::SERVICE_INSTANCE_ID,
                format!("{host}/{}", std::process::id()),
            ),
            kv(semconv::HOST_NAME, host),
        ],
        ..Default::default()
    }
}

fn sysinfo_free_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Every `interval`, sends a snapshot of `telemetry` into `outputs`, until `stop`.
pub async fn run(
    telemetry: Telemetry,
    outputs: Outputs,
    interval: Duration,
    stop: CancellationToken,
) {
    let start = unix_nanos(SystemTime::now());
    let resource = resource();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; report after one interval
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let batch = Batch::Metrics(vec![telemetry.to_resource_metrics(resource.clone(), start)]);
        if let Err(e) = outputs.try_send(batch) {
            debug!(error = %e, "self-metrics skipped this interval");
        }
    }
}
