//! The Kubernetes API permissions the receiver uses: exactly the requests it makes, by
//! configuration. The single source of truth for RBAC: the tests in this module check that
//! every request the receiver makes against the fake API server is allowed by [`RULES`] for
//! its configuration and that the README's RBAC table lists the same rules, and
//! `collector/tests/daemonset.rs` checks that the Helm chart's ClusterRole and Role grant
//! exactly these (no more, no less) for the configuration the chart renders.

use super::config::{Config, Mode};

/// When a [`Rule`] is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum When {
    /// By every instance, node agent or `mode: cluster`: Argo CD Applications.
    Always,
    /// By node agents (`mode: node`): the node's pods and their owner chains.
    NodeMode,
    /// By the instance that emits the cluster-scoped output (rollout traces, Event and KEDA
    /// logs): `mode: cluster`, or a node agent with `leader_election` (which needs them while
    /// it holds the Lease, so it is granted them all along).
    ClusterOutput,
    /// By node agents with `leader_election`: the Lease, in `leader_election.lease_namespace`
    /// (a namespaced Role is enough).
    LeaderElection,
}

impl When {
    /// Whether an instance in `mode`, with or without `leader_election`, needs the rule.
    pub fn applies(self, mode: Mode, leader_election: bool) -> bool {
        match self {
            When::Always => true,
            When::NodeMode => mode == Mode::Node,
            When::ClusterOutput => mode == Mode::Cluster || leader_election,
            When::LeaderElection => mode == Mode::Node && leader_election,
        }
    }
}

/// One RBAC rule: these verbs on these resources of one API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The API group; `""` is core.
    pub group: &'static str,
    /// Resources (plural names).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Which configurations need it.
    pub when: When,
}

impl Rule {
    /// Whether the rule belongs in a namespaced Role (in the Lease's namespace) rather than a
    /// ClusterRole.
    pub fn namespaced(&self) -> bool {
        self.when == When::LeaderElection
    }

    /// Every (group, resource, verb) the rule grants.
    pub fn permissions(&self) -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        let group = self.group;
        let verbs = self.verbs;
        self.resources
            .iter()
            .flat_map(move |r| verbs.iter().map(move |v| (group, *r, *v)))
    }
}

/// Everything the receiver may ask the API server, and when: read-only except for the
/// leader-election Lease.
pub const RULES: &[Rule] = &[
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
        when: When::NodeMode,
    },
    // Owner chains: one `get` per workload (receiver::WORKLOAD_KINDS).
    Rule {
        group: "apps",
        resources: &["replicasets", "deployments", "statefulsets", "daemonsets"],
        verbs: &["get"],
        when: When::NodeMode,
    },
    Rule {
        group: "batch",
        resources: &["jobs", "cronjobs"],
        verbs: &["get"],
        when: When::NodeMode,
    },
    Rule {
        group: "kubeflow.org",
        resources: &["mpijobs"],
        verbs: &["get"],
        when: When::NodeMode,
    },
    Rule {
        group: "keda.sh",
        resources: &["scaledjobs"],
        verbs: &["get"],
        when: When::NodeMode,
    },
    Rule {
        group: "argoproj.io",
        resources: &["applications"],
        verbs: &["list", "watch"],
        when: When::Always,
    },
    Rule {
        group: "",
        resources: &["events"],
        verbs: &["list", "watch"],
        when: When::ClusterOutput,
    },
    Rule {
        group: "keda.sh",
        resources: &["scaledobjects", "scaledjobs"],
        verbs: &["list", "watch"],
        when: When::ClusterOutput,
    },
    Rule {
        group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        when: When::LeaderElection,
    },
];

/// The rules an instance with `config` needs.
pub fn rules_for(config: &Config) -> impl Iterator<Item = &'static Rule> {
    let (mode, le) = (config.mode, config.leader_election.is_some());
    RULES.iter().filter(move |r| r.when.applies(mode, le))
}
