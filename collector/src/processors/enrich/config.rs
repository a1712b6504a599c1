//! Config of the `enrich` processor.

use hpcotel_core::semconv;
use serde::{Deserialize, Serialize};

/// Every attribute the processor can add, in the order it adds them.
pub const SUPPORTED_ATTRIBUTES: &[&str] = &[
    semconv::K8S_POD_UID,
    semconv::K8S_POD_NAME,
    semconv::K8S_NAMESPACE_NAME,
    semconv::K8S_NODE_NAME,
    semconv::K8S_REPLICASET_NAME,
    semconv::K8S_DEPLOYMENT_NAME,
    semconv::K8S_JOB_NAME,
    semconv::K8S_CRONJOB_NAME,
    semconv::K8S_STATEFULSET_NAME,
    semconv::K8S_DAEMONSET_NAME,
    semconv::VCS_REF_HEAD_REVISION,
    semconv::HPCOTEL_REVISION_SOURCE,
    semconv::VCS_REPOSITORY_URL_FULL,
    semconv::HPCOTEL_ARGOCD_APPLICATION,
    semconv::HPCOTEL_ARGOCD_APPLICATION_NAMESPACE,
    semconv::DEPLOYMENT_ENVIRONMENT_NAME,
];

/// Default for `attributes`: all of [`SUPPORTED_ATTRIBUTES`].
pub const DEFAULT_ATTRIBUTES: &[&str] = SUPPORTED_ATTRIBUTES;

/// Default `rollout_window`: 10 minutes.
pub const DEFAULT_ROLLOUT_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// `processors.enrich`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The attributes the processor may add to a resource (an allow-list; each is added only
    /// when known and when the resource does not have it already). Names outside
    /// [`SUPPORTED_ATTRIBUTES`] are a config error; an empty list adds nothing.
    /// Default: all of [`SUPPORTED_ATTRIBUTES`] ([`DEFAULT_ATTRIBUTES`]).
    pub attributes: Vec<String>,
    /// Log records from a pod of an Argo CD Application, timed from the start of its sync to
    /// this long after the sync ended, join that rollout's trace: they get its trace id and
    /// root span id (records that already have a trace id keep it). `0s` turns this off.
    /// Default: `10m` (as `receivers.kubernetes.rollouts.settle_timeout`).
    #[serde(with = "humantime_serde")]
    pub rollout_window: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            attributes: DEFAULT_ATTRIBUTES.iter().map(|a| a.to_string()).collect(),
            rollout_window: DEFAULT_ROLLOUT_WINDOW,
        }
    }
}

impl Config {
    /// Checks what serde cannot: every name in `attributes` is supported. On error, returns
    /// the offending key (relative to the processor's section) and a message.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(bad) = self
            .attributes
            .iter()
            .find(|a| !SUPPORTED_ATTRIBUTES.contains(&a.as_str()))
        {
            return Err((
                "attributes",
                format!(
                    "unsupported attribute '{bad}'; supported: {}",
                    SUPPORTED_ATTRIBUTES.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The allowed names as the `'static` strings of [`SUPPORTED_ATTRIBUTES`] (unsupported
    /// names, which [`Config::validate`] rejects, are left out).
    pub(super) fn allowed(&self) -> Vec<&'static str> {
        SUPPORTED_ATTRIBUTES
            .iter()
            .copied()
            .filter(|s| self.attributes.iter().any(|a| a == s))
            .collect()
    }
}
