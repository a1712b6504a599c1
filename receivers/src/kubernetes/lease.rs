//! Leader election among node agents over a `coordination.k8s.io/v1` Lease, so that one of
//! them emits the cluster-scoped output (rollout traces, Event logs) — as the Collector's
//! `k8s_leader_elector` does, with its settings' names.
//!
//! Every `retry_period` each agent reads the Lease: the holder renews it; another agent takes
//! it over once `renew_time + lease_duration` has passed (or at once when the holder released
//! it on shutdown); writes carry the `resourceVersion` read, so two agents cannot both win
//! (the loser gets 409 Conflict). A holder that cannot renew for `renew_deadline` steps down.
//! The holder also writes the sync operations it exported into the Lease's
//! [`EXPORTED_ANNOTATION`], so the next holder repeats none of them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Annotation on the Lease listing the most recent exported sync operations (JSON array).
pub const EXPORTED_ANNOTATION: &str = "hpcotel.io/exported-rollouts";
/// How many Applications' high-water marks (the latest operation exported, one key per
/// Application) the Lease carries: about 60 bytes each, so at most about 120 KiB of the
/// 256 KiB Kubernetes allows an object's annotations. Beyond, the marks of the Applications
/// synced longest ago leave the Lease (a new leader may then repeat their last rollout).
pub const EXPORTED_IN_LEASE: usize = 2048;
/// Default `lease_name`.
pub const DEFAULT_LEASE_NAME: &str = "hpcotel-cluster";
/// Default `lease_duration`: 15 s.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default `renew_deadline`: 10 s.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default `retry_period`: 2 s.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// `leader_election` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// The Lease's name. Default: `hpcotel-cluster`.
    pub lease_name: String,
    /// The Lease's namespace. Default: the `POD_NAMESPACE` environment variable, else
    /// `default`.
    pub lease_namespace: String,
    /// How long a Lease not renewed stays held (humantime). Default: `15s`.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How long the holder keeps leading while renewals fail (humantime; less than
    /// `lease_duration`). Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed (humantime). Default: `2s`.
    #[serde(with = "humantime_serde")]
    pub retry_period: Duration,
    /// This agent's identity in the Lease. Default: the node name, else the host name.
    pub identity: Option<String>,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            lease_namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
            identity: None,
        }
    }
}

/// The exported sync operations the holder publishes in the Lease (shared with the tracker).
pub type Exported = Arc<Mutex<VecDeque<String>>>;

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn lease(
    name: &str,
    identity: &str,
    duration: Duration,
    exported: &[String],
    base: Option<&Lease>,
) -> Lease {
    let mut meta = base
        .map(|l| l.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        });
    meta.managed_fields = None;
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(
            EXPORTED_ANNOTATION.to_owned(),
            serde_json::to_string(exported).unwrap_or_else(|_| "[]".into()),
        );
    let old = base.and_then(|l| l.spec.clone()).unwrap_or_default();
    let taking_over = old.holder_identity.as_deref() != Some(identity);
    Lease {
        metadata: meta,
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(
                i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: if taking_over {
                Some(now())
            } else {
                old.acquire_time.clone()
            },
            renew_time: Some(now()),
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0) + i32::from(taking_over && base.is_some()),
            ),
            ..Default::default()
        }),
    }
}

/// The operations a Lease says were exported.
pub fn exported_in(l: &Lease) -> Vec<String> {
    l.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXPORTED_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// True when `l` is held by someone whose renewal has not expired.
fn held_by_other(l: &Lease, identity: &str) -> bool {
    let Some(spec) = &l.spec else { return false };
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
        return false;
    };
    if holder == identity {
        return false;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::now().as_second() < renewed + duration
}

/// What a new holder learns when it takes the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The operations the previous holder published as exported.
    pub previous: Vec<String>,
    /// True when a previous holder published its list (the list is then the whole truth);
    /// false for a new Lease, where syncs that ended before now count as exported.
    pub authoritative: bool,
}

fn published(exported: &Exported) -> Vec<String> {
    exported
        .lock()
        .map(|e| {
            e.iter()
                .rev()
                .take(EXPORTED_IN_LEASE)
                .rev()
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Bounds one API call by `deadline`: a hung request must not keep a holder leading after
/// another agent has taken over.
async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

/// Runs the election until `shutdown`, publishing on `leading` whether this agent leads
/// (with what the previous holder exported, on a transition to leading). When `shutdown` is
/// cancelled a holder releases the Lease — with the exports of this holder's last moments —
/// so that another agent takes over at once: cancel it only after the leader's tasks stopped.
pub async fn run(
    client: Client,
    config: LeaderElectionConfig,
    identity: String,
    exported: Exported,
    leading: watch::Sender<Option<Takeover>>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.lease_namespace);
    let name = config.lease_name.clone();
    let deadline = config.renew_deadline;
    let mut last_renewed: Option<Instant> = None;
    let mut tick = tokio::time::interval(config.retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let list = published(&exported);
        let current = match bounded(deadline, api.get_opt(&name)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(lease = %name, error = %e, "cannot read the leader Lease");
                step_down_if_stale(&mut last_renewed, &config, &leading);
                continue;
            }
        };
        let result = match &current {
            None => bounded(
                deadline,
                api.create(
                    &PostParams::default(),
                    &lease(&name, &identity, config.lease_duration, &list, None),
                ),
            )
            .await
            .map(|_| Takeover {
                previous: Vec::new(),
                authoritative: false,
            }),
            Some(l) if held_by_other(l, &identity) => {
                if leading.borrow().is_some() {
                    tracing::info!(lease = %name, "leadership lost to another agent");
                    let _ = leading.send(None);
                }
                last_renewed = None;
                continue;
            }
            Some(l) => {
                let takeover = Takeover {
                    previous: exported_in(l),
                    authoritative: l
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(EXPORTED_ANNOTATION)),
                };
                bounded(
                    deadline,
                    api.replace(
                        &name,
                        &PostParams::default(),
                        &lease(&name, &identity, config.lease_duration, &list, Some(l)),
                    ),
                )
                .await
                .map(|_| takeover)
            }
        };
        match result {
            Ok(takeover) => {
                last_renewed = Some(Instant::now());
                if leading.borrow().is_none() {
                    tracing::info!(lease = %name, identity = %identity, "leading: emitting cluster-scoped output");
                    let _ = leading.send(Some(takeover));
                }
            }
            Err(e) => {
                tracing::debug!(lease = %name, error = %e, "leader Lease write refused");
                step_down_if_stale(&mut last_renewed, &config, &leading);
            }
        }
    }
    // Release: an empty holder lets the next agent take over without waiting for expiry;
    // the annotation carries every export up to now.
    if leading.borrow().is_some()
        && let Ok(Some(l)) = bounded(deadline, api.get_opt(&name)).await
        && l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(identity.as_str())
    {
        let mut released = lease(
            &name,
            &identity,
            config.lease_duration,
            &published(&exported),
            Some(&l),
        );
        if let Some(spec) = released.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = bounded(
            deadline,
            api.replace(&name, &PostParams::default(), &released),
        )
        .await
        {
            tracing::debug!(lease = %name, error = %e, "cannot release the leader Lease; it expires instead");
        }
    }
    let _ = leading.send(None);
}

fn step_down_if_stale(
    last_renewed: &mut Option<Instant>,
    config: &LeaderElectionConfig,
    leading: &watch::Sender<Option<Takeover>>,
) {
    if leading.borrow().is_some()
        && last_renewed.is_none_or(|t| t.elapsed() > config.renew_deadline)
    {
        tracing::warn!(lease = %config.lease_name, "cannot renew the leader Lease within renew_deadline; stepping down");
        let _ = leading.send(None);
        *last_renewed = None;
    }
}
