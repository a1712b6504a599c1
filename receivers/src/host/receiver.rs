//! [`HostReceiver`]: scrapes on an interval and hands each scrape to the metrics pipelines.

use std::time::Instant;

use async_trait::async_trait;
use hpcotel_core::{Batch, ComponentError, Receiver, ReceiverContext, SendError};
use tokio::time::MissedTickBehavior;

use super::Result;
use super::config::Config;
use super::scrape::{SLOW_SCRAPE, Scraper};

/// The host metrics receiver; build it with [`HostReceiver::new`], run it as a
/// [`Receiver`].
pub struct HostReceiver {
    config: Config,
    scraper: Scraper,
}

impl std::fmt::Debug for HostReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostReceiver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HostReceiver {
    /// Opens the system information sources the enabled scrapers need. Fails when no scraper
    /// is enabled or the platform refuses.
    pub fn new(config: &Config) -> Result<HostReceiver> {
        Ok(HostReceiver {
            config: config.clone(),
            scraper: Scraper::new(config)?,
        })
    }
}

#[async_trait]
impl Receiver for HostReceiver {
    async fn run(self: Box<Self>, ctx: ReceiverContext) -> Result<(), ComponentError> {
        let HostReceiver { config, scraper } = *self;
        let interval = config.collection_interval;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut scraper = Some(scraper);
        loop {
            let tick = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                t = ticks.tick() => t,
            };
            let Some(mut s) = scraper.take() else { break };
            let started = Instant::now();
            let job = tokio::task::spawn_blocking(move || {
                let rm = s.scrape();
                (s, rm)
            });
            let (s, rm) = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                r = job => r?,
            };
            scraper = Some(s);
            let took = started.elapsed();
            if took > SLOW_SCRAPE {
                tracing::warn!(receiver = %ctx.id, took_ms = took.as_millis() as u64, "slow host scrape");
            }
            // Hand over before the next tick or skip this scrape (counted as refused). Not
            // raced with shutdown: the wait is bounded anyway, and the scrape ends up counted
            // as accepted or refused instead of vanishing.
            let wait = (tick + interval).saturating_duration_since(tokio::time::Instant::now());
            let batch = Batch::Metrics(vec![rm]);
            let result = ctx.outputs.send_within(batch, wait).await;
            match result {
                Ok(()) => {}
                Err(SendError::Full) => {
                    tracing::warn!(receiver = %ctx.id, "metrics pipeline full until the next scrape; scrape skipped");
                }
                Err(e) => {
                    tracing::warn!(receiver = %ctx.id, error = %e, "host scrape not delivered");
                }
            }
        }
        tracing::debug!(receiver = %ctx.id, "host receiver stopped");
        Ok(())
    }
}
