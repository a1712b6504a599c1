//! Configuration of the `kubernetes` receiver, in the shape of the OpenTelemetry Collector's
//! Kubernetes receivers (`auth_type`):
//!
//! ```yaml
//! receivers:
//!   kubernetes:
//!     auth_type: serviceAccount       # in a pod; kubeConfig on a laptop; none + endpoint for kubectl proxy
//!     node_name: ${env:K8S_NODE_NAME}
//!     argocd:
//!       namespaces: [argocd]
//!       tracking_method: annotation
//! ```

pub use hpcotel_core::catalog::TrackingMethod;
use serde::{Deserialize, Serialize};

/// Default Argo CD namespace: `argocd`.
pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";
/// Default `argocd.instance_label_key`: `app.kubernetes.io/instance`, Argo CD's default
/// `application.instanceLabelKey`.
pub const DEFAULT_INSTANCE_LABEL_KEY: &str = hpcotel_core::catalog::INSTANCE_LABEL;
/// Environment variable the node name defaults to (set it from `spec.nodeName`).
pub const NODE_NAME_ENV: &str = "K8S_NODE_NAME";

/// How the receiver authenticates to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AuthType {
    /// The pod's service account (in-cluster config).
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// `KUBECONFIG` or `~/.kube/config`.
    #[serde(rename = "kubeConfig")]
    KubeConfig,
    /// No credentials: `endpoint` is an already authenticated proxy (`kubectl proxy`).
    #[serde(rename = "none")]
    None,
}

/// Default `rollouts.settle_timeout`: 10 minutes.
pub const DEFAULT_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// What this instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A node agent (DaemonSet): this node's pods and the Applications, into the Catalog.
    #[default]
    Node,
    /// The one cluster-scoped instance (a single-replica Deployment): emits cluster-scoped
    /// output — rollout traces — exactly once for the cluster. Watches no pods.
    Cluster,
}

/// Rollout traces (cluster mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutsConfig {
    /// How long after a sync ends the trace waits for the Application to become Healthy,
    /// Suspended or Degraded before it is emitted with result `timeout`. Default: `10m`.
    #[serde(with = "humantime_serde")]
    pub settle_timeout: std::time::Duration,
    /// A file remembering which sync operations were already exported, so a restarted
    /// collector emits no duplicate trace (mount an emptyDir or a volume). Without it, syncs
    /// that ended before the collector started are taken as exported by the previous run.
    /// Default: none.
    pub state_file: Option<std::path::PathBuf>,
}

impl Default for RolloutsConfig {
    fn default() -> Self {
        Self {
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            state_file: None,
        }
    }
}

/// Argo CD settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArgoCdConfig {
    /// Namespaces whose `applications.argoproj.io` are watched; empty = all namespaces
    /// (Argo CD's "apps in any namespace": list the controller's namespace and every
    /// namespace of `application.namespaces`, or leave it empty). Default: `[argocd]`.
    pub namespaces: Vec<String>,
    /// The namespace the Argo CD application controller runs in: an Application there is
    /// named by its name in tracking ids and labels, one elsewhere by
    /// `<namespace>_<name>`. Used when an Application's `status.controllerNamespace` does not
    /// say it. Default: `argocd`.
    pub controller_namespace: String,
    /// `application.resourceTrackingMethod` of `argocd-cm`: `annotation` (Argo CD 3.x
    /// default), `label` (2.x default) or `annotation+label` (tracked by the annotation, the
    /// label only informational — as Argo CD reads it). Default: `annotation`.
    pub tracking_method: TrackingMethod,
    /// `application.instanceLabelKey` of `argocd-cm`: the label `label` tracking reads.
    /// Default: `app.kubernetes.io/instance`.
    pub instance_label_key: String,
    /// `installationID` of `argocd-cm`, when set there: annotation tracking then requires
    /// `argocd.argoproj.io/installation-id` to equal it (another Argo CD's objects are not
    /// this one's). Default: none.
    pub installation_id: Option<String>,
    /// An Application label whose value becomes `deployment.environment.name` (e.g. `env`).
    /// Default: none.
    pub environment_label: Option<String>,
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        Self {
            namespaces: vec![DEFAULT_ARGOCD_NAMESPACE.to_owned()],
            controller_namespace: DEFAULT_ARGOCD_NAMESPACE.to_owned(),
            tracking_method: TrackingMethod::default(),
            instance_label_key: DEFAULT_INSTANCE_LABEL_KEY.to_owned(),
            installation_id: None,
            environment_label: None,
        }
    }
}

/// The kubernetes receiver's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `serviceAccount`, `kubeConfig` or `none`. Default: `serviceAccount`.
    pub auth_type: AuthType,
    /// The API server URL; required with `auth_type: none` (e.g. `http://127.0.0.1:8001` for
    /// `kubectl proxy`), otherwise it overrides the inferred one. Default: inferred.
    pub endpoint: Option<String>,
    /// This node: only its pods are watched (`spec.nodeName` field selector). Default: the
    /// `K8S_NODE_NAME` environment variable; without it, every pod of the cluster.
    pub node_name: Option<String>,
    /// `node` (a DaemonSet agent: correlation only) or `cluster` (the single instance that
    /// emits rollout traces). Default: `node`.
    pub mode: Mode,
    /// Argo CD Applications.
    pub argocd: ArgoCdConfig,
    /// `mode: node`, when the receiver is listed in a logs pipeline: the lifecycle of this
    /// node's pods (container terminations, restarts, waiting reasons such as
    /// `CrashLoopBackOff`, readiness changes) as one log record per transition. A `mode:
    /// cluster` instance watches no pods and ignores it. Default: `true`.
    pub lifecycle_logs: bool,
    /// Rollout traces (emitted in `cluster` mode, or by the node agent holding the Lease).
    pub rollouts: RolloutsConfig,
    /// Node agents elect one of them over a Lease to emit the cluster-scoped output (rollout
    /// traces, Event logs) instead of running a `mode: cluster` instance. Present (even
    /// empty: `leader_election:`) = on. Default: off.
    #[serde(
        default,
        deserialize_with = "hpcotel_core::config::present_means_enabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub leader_election: Option<super::lease::LeaderElectionConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            auth_type: AuthType::default(),
            endpoint: None,
            node_name: std::env::var(NODE_NAME_ENV).ok().filter(|n| !n.is_empty()),
            mode: Mode::default(),
            argocd: ArgoCdConfig::default(),
            lifecycle_logs: true,
            rollouts: RolloutsConfig::default(),
            leader_election: None,
        }
    }
}

impl Config {
    /// Checks what serde cannot. On error: (key, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.auth_type == AuthType::None && self.endpoint.is_none() {
            return Err((
                "endpoint",
                "required with auth_type: none (e.g. http://127.0.0.1:8001 for kubectl proxy)"
                    .to_owned(),
            ));
        }
        if let Some(le) = &self.leader_election
            && le.renew_deadline >= le.lease_duration
        {
            return Err((
                "leader_election.renew_deadline",
                "must be shorter than leader_election.lease_duration (a holder that cannot renew must step down before another agent may take over)".to_owned(),
            ));
        }
        if self.mode == Mode::Cluster && self.leader_election.is_some() {
            return Err((
                "leader_election",
                "only for mode: node (a mode: cluster instance always emits)".to_owned(),
            ));
        }
        Ok(())
    }
}
