//! What disruption planning reads: the scheduling snapshot plus, per node, pod and NodePool,
//! the facts that decide whether it may be disrupted. Built at the edge (the controller's
//! cluster model, or `karpenter simulate` from manifests); nothing here reads a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::nodepool::{Budget, ConsolidationPolicy};
use crate::snapshot::{LabelSelector, PodKey, Snapshot};

/// Everything one disruption pass reads.
#[derive(Clone, Debug)]
pub struct DisruptionInput {
    /// The scheduler's picture: pending pods in `pods`, every node (managed or not, with its
    /// bound pods) in `nodes`, NodePools with their instance types. Every "where would these
    /// pods go" question is answered by the scheduler over this snapshot.
    pub snapshot: Snapshot,
    /// Disruption facts per node, keyed by the node's name in `snapshot.nodes`. A node
    /// without an entry is unmanaged and ready.
    pub nodes: BTreeMap<String, NodeFacts>,
    /// Facts per bound pod; a pod without an entry is an active, ordinary pod (priority 0,
    /// no deletion cost, no owner, Ready).
    pub pods: BTreeMap<PodKey, PodFacts>,
    /// PodDisruptionBudgets with what they allow now.
    pub pdbs: Vec<PdbFacts>,
    /// Disruption settings per NodePool name. A managed node whose pool has no entry is kept
    /// ("NodePool not found").
    pub pools: BTreeMap<String, PoolDisruption>,
    /// The time of the pass.
    pub now: Timestamp,
    /// Feature gates and the extensions beyond Karpenter.
    pub options: DisruptionOptions,
}

/// Facts about one node (a Node, or a NodeClaim not registered yet).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    /// The node's NodeClaim; `None` for a node Karpenter does not manage.
    pub claim: Option<ClaimFacts>,
    /// `karpenter.sh/initialized=true` on the Node (unmanaged nodes count as initialized).
    pub initialized: bool,
    /// The Node's `Ready` condition is True.
    pub ready: bool,
    /// Being deleted: a deletion timestamp on the Node or NodeClaim, `InstanceTerminating`,
    /// or a command in flight.
    pub deleting: bool,
    /// The NodeClaim is `InstanceTerminating=True` (drained, instance being terminated):
    /// budgets leave it out of the pool's total and its disrupting nodes alike (§5.3).
    pub instance_terminating: bool,
    /// Until when a recent simulation planned pods onto it (not a candidate before then).
    pub nominated_until: Option<Timestamp>,
    /// `karpenter.sh/do-not-disrupt: "true"` on the Node (the NodeClaim before registration).
    pub do_not_disrupt: bool,
}

/// The NodeClaim of a managed node.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimFacts {
    /// NodeClaim name.
    pub name: String,
    /// Its NodePool (`karpenter.sh/nodepool`).
    pub node_pool: String,
    /// Creation time.
    pub created: Timestamp,
    /// When `Initialized` became True (`None` while not initialized).
    pub initialized_at: Option<Timestamp>,
    /// `status.lastPodEventTime`: the last bind, finish or start of termination of a
    /// non-DaemonSet pod on the node.
    pub last_pod_event: Option<Timestamp>,
    /// `Drifted=True`: the reason and when it became true.
    pub drifted: Option<Drift>,
    /// `spec.expireAfter` (`None` = Never).
    pub expire_after: Option<Duration>,
    /// `spec.terminationGracePeriod`.
    pub termination_grace_period: Option<Duration>,
    /// Instance type, zone and capacity type from the node's labels (absent if unlabeled).
    pub instance_type: Option<String>,
    /// Zone label.
    pub zone: Option<String>,
    /// Capacity type label (`spot`, `on-demand`, `reserved`).
    pub capacity_type: Option<String>,
}

/// Why and since when a NodeClaim is drifted.
#[derive(Clone, Debug, PartialEq)]
pub struct Drift {
    /// `NodePoolDrifted`, `RequirementsDrifted`, `InstanceTypeNotFound`, `AMIDrift`, …
    pub reason: String,
    /// When `Drifted` became True (drift handles the oldest first).
    pub since: Timestamp,
}

/// Facts about one bound pod that the scheduler does not need.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    /// `spec.priority`.
    pub priority: Option<i32>,
    /// `controller.kubernetes.io/pod-deletion-cost`, when it parses.
    pub deletion_cost: Option<i32>,
    /// Kind of the controlling owner (`ReplicaSet`, `DaemonSet`, `StatefulSet`, `Node` for a
    /// static pod, …); `None` for a bare pod.
    pub owner_kind: Option<String>,
    /// `karpenter.sh/do-not-disrupt: "true"`.
    pub do_not_disrupt: bool,
    /// Succeeded or Failed.
    pub terminal: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
    /// Tolerates `karpenter.sh/disrupted:NoSchedule` (it would not be evicted).
    pub tolerates_disruption: bool,
    /// Its `Ready` condition is True.
    pub ready: bool,
}

impl Default for PodFacts {
    fn default() -> Self {
        PodFacts {
            priority: None,
            deletion_cost: None,
            owner_kind: None,
            do_not_disrupt: false,
            terminal: false,
            terminating: false,
            tolerates_disruption: false,
            ready: true,
        }
    }
}

impl PodFacts {
    /// Not finished and not being deleted.
    pub fn active(&self) -> bool {
        !self.terminal && !self.terminating
    }

    /// Owned by a DaemonSet.
    pub fn is_daemon(&self) -> bool {
        self.owner_kind.as_deref() == Some("DaemonSet")
    }

    /// A static (mirror) pod, owned by its Node.
    pub fn is_static(&self) -> bool {
        self.owner_kind.as_deref() == Some("Node")
    }

    /// Would move if the node went: active (or a terminating StatefulSet pod), not a
    /// DaemonSet or static pod. A node without such pods is empty.
    pub fn reschedulable(&self) -> bool {
        let terminating_stateful =
            self.terminating && !self.terminal && self.owner_kind.as_deref() == Some("StatefulSet");
        (self.active() || terminating_stateful) && !self.is_daemon() && !self.is_static()
    }

    /// Karpenter would evict it when draining: active, not tolerating the disrupted taint,
    /// not static, not do-not-disrupt.
    pub fn evictable(&self) -> bool {
        self.active() && !self.tolerates_disruption && !self.is_static() && !self.do_not_disrupt
    }
}

/// A PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq)]
pub struct PdbFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Which pods it covers.
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `maxUnavailable: 0`, `"0%"` or `minAvailable: "100%"`: its pods never move.
    pub fully_blocking: bool,
    /// `unhealthyPodEvictionPolicy: AlwaysAllow`: a pod that is not Ready is never blocked.
    pub always_allow_unhealthy: bool,
}

impl PdbFacts {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A NodePool's disruption settings (v1; v1beta1 pools are converted before).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolDisruption {
    /// `consolidationPolicy`.
    pub policy: ConsolidationPolicy,
    /// `consolidateAfter`; `None` = Never (consolidation off).
    pub consolidate_after: Option<Duration>,
    /// `budgets` as written; schedules are evaluated at [`DisruptionInput::now`].
    pub budgets: Vec<Budget>,
    /// Minimum saving per hour a consolidation of this pool's nodes must bring (the
    /// `karpenter-rs.io/min-consolidation-savings` annotation, or the controller's default).
    /// Beyond Karpenter; 0 keeps Karpenter's "any strictly cheaper replacement".
    pub min_savings_per_hour: f64,
}

impl Default for PoolDisruption {
    fn default() -> Self {
        PoolDisruption {
            policy: ConsolidationPolicy::WhenEmptyOrUnderutilized,
            consolidate_after: Some(Duration::ZERO),
            budgets: crate::api::nodepool::default_budgets(),
            min_savings_per_hour: 0.0,
        }
    }
}

/// Feature gates and extensions. The defaults give Karpenter v1.4's answers.
#[derive(Clone, Debug, PartialEq)]
pub struct DisruptionOptions {
    /// Feature gate `SpotToSpotConsolidation` (Karpenter's default: off).
    pub spot_to_spot: bool,
    /// Cap on the candidates multi-node consolidation batches (Karpenter: 100). `None`
    /// considers every candidate (beyond Karpenter).
    pub multi_node_cap: Option<usize>,
    /// Allow consolidation to replace one node by two or more cheaper ones (beyond
    /// Karpenter, core#1442; off by default).
    pub replace_with_several: bool,
    /// Instance types kept per replacement (Karpenter: 60).
    pub max_instance_types: usize,
}

impl Default for DisruptionOptions {
    fn default() -> Self {
        DisruptionOptions {
            spot_to_spot: false,
            multi_node_cap: Some(100),
            replace_with_several: false,
            max_instance_types: 60,
        }
    }
}
