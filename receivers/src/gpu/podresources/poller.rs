//! [`Poller`]: keeps the Catalog's GPU → pod section current.

use std::collections::{BTreeSet, HashMap};

use hpcotel_core::Catalog;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Allocations, Client, Config, Error, error_chain, fetch};

/// After this many refresh intervals without an answer from the kubelet the published
/// mapping is cleared.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// What the last call found, to log changes once rather than every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Up,
    /// No socket file.
    Absent,
    /// Any other failure.
    Failing,
}

/// Polls the kubelet's PodResources and publishes device id → pods into a [`Catalog`] with
/// [`Catalog::set_gpu_allocations`]; see the [module docs](super).
#[derive(Debug)]
pub struct Poller {
    config: Config,
    catalog: Catalog,
}

impl Poller {
    /// A poller that will publish into `catalog`. Nothing happens until [`Poller::run`].
    pub fn new(config: Config, catalog: Catalog) -> Self {
        Self { config, catalog }
    }

    /// Lists at once and then every `refresh_interval` until `shutdown` is cancelled (an
    /// in-flight call is abandoned). Never fails: problems are logged when they start and
    /// when they end, and the next attempt is at the next tick.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { config, catalog } = self;
        let socket = config.endpoint.display().to_string();
        let interval = config.refresh_interval;
        let stale_after = interval * STALE_AFTER_INTERVALS;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut client: Option<Client> = None;
        let mut state = State::Starting;
        let mut answered_before = false;
        // Tick of the last answer still published; `None` while nothing is.
        let mut published_at: Option<Instant> = None;
        // DRA devices already logged as unmatchable, while they stay allocated.
        let mut unmapped: BTreeSet<String> = BTreeSet::new();
        loop {
            let tick = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                tick = ticks.tick() => tick,
            };
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                result = fetch(&mut client, &config) => result,
            };
            match result {
                Ok(listed) => {
                    for device in listed.unmapped.difference(&unmapped) {
                        debug!(
                            %socket,
                            %device,
                            "DRA GPU device cannot be matched to an NVML device; left unattributed"
                        );
                    }
                    unmapped = listed.unmapped;
                    let allocations = listed.devices;
                    match state {
                        State::Up => {}
                        _ if !answered_before => info!(
                            %socket,
                            devices = allocations.len(),
                            "kubelet PodResources connected"
                        ),
                        _ => info!(
                            %socket,
                            devices = allocations.len(),
                            "kubelet PodResources answering again"
                        ),
                    }
                    answered_before = true;
                    state = State::Up;
                    // Nothing to go stale when no device is allocated.
                    published_at = (!allocations.is_empty()).then_some(tick);
                    publish(&catalog, allocations);
                }
                Err(e) => {
                    let next = match e {
                        Error::NoSocket { .. } => State::Absent,
                        _ => State::Failing,
                    };
                    match (state, next) {
                        (State::Starting, State::Absent) => info!(
                            "no kubelet PodResources socket at {socket}; GPU data will carry no \
                             pod until it appears"
                        ),
                        (State::Up | State::Starting | State::Absent, State::Failing)
                        | (State::Up, State::Absent) => warn!(
                            %socket,
                            error = %error_chain(&e),
                            "kubelet PodResources unavailable; retrying every {interval:?}"
                        ),
                        _ => debug!(
                            %socket,
                            error = %error_chain(&e),
                            "kubelet PodResources still unavailable"
                        ),
                    }
                    state = next;
                    if let Some(at) = published_at
                        && tick.duration_since(at) >= stale_after
                    {
                        info!(
                            %socket,
                            "no answer from kubelet PodResources for {STALE_AFTER_INTERVALS} \
                             refresh intervals; GPU data carries no pod until it answers"
                        );
                        publish(&catalog, HashMap::new());
                        published_at = None;
                    }
                }
            }
        }
        debug!(%socket, "kubelet PodResources poller stopped");
    }
}

/// Publishes `allocations` unless the Catalog already holds exactly them.
fn publish(catalog: &Catalog, allocations: Allocations) {
    if catalog.snapshot().gpu_allocations != allocations {
        catalog.set_gpu_allocations(allocations);
    }
}
