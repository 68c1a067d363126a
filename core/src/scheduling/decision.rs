//! The scheduler's output.

use std::collections::BTreeMap;

use crate::requirements::Requirements;
use crate::resources::Resources;
use crate::snapshot::{PodKey, Taint};

/// Pods that go to a node that already exists (or is already launching).
#[derive(Clone, Debug, PartialEq)]
pub struct ExistingNodePlan {
    /// Node or NodeClaim name.
    pub node: String,
    /// Pods placed there, in scheduling order.
    pub pods: Vec<PodKey>,
}

/// One purchase option of a new NodeClaim.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceTypeOption {
    /// Instance type name.
    pub name: String,
    /// Zone of the cheapest allowed offering.
    pub zone: String,
    /// Capacity type of the cheapest allowed offering.
    pub capacity_type: String,
    /// USD per hour of that offering.
    pub price: f64,
}

/// A node the scheduler wants launched.
#[derive(Clone, Debug, PartialEq)]
pub struct NewNodeClaim {
    /// NodePool it comes from.
    pub node_pool: String,
    /// Placeholder hostname used for hostname topology while solving.
    pub hostname: String,
    /// Requirements the node must satisfy (pool ∩ pods ∩ topology), without the instance-type
    /// list (see `instance_types`).
    pub requirements: Requirements,
    /// Instance types that fit all its pods, cheapest first, at most
    /// [`super::MAX_INSTANCE_TYPES`] (more when `minValues` needs them).
    pub instance_types: Vec<InstanceTypeOption>,
    /// Pods placed on it, in scheduling order.
    pub pods: Vec<PodKey>,
    /// Sum of the pods' requests.
    pub pod_requests: Resources,
    /// Requests of the DaemonSet pods that will run on it.
    pub daemon_overhead: Resources,
    /// Labels the node gets from its pool and requirements.
    pub labels: BTreeMap<String, String>,
    /// Taints it carries.
    pub taints: Vec<Taint>,
}

impl NewNodeClaim {
    /// Price of the cheapest option (what a launch is expected to cost).
    pub fn cheapest_price(&self) -> f64 {
        self.instance_types.first().map_or(0.0, |o| o.price)
    }
}

/// A pod the scheduler could not place, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unschedulable {
    /// The pod.
    pub pod: PodKey,
    /// What stopped it, naming the constraint.
    pub reason: String,
}

/// Everything the scheduler decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Pods for nodes that exist, by node, in node order.
    pub existing: Vec<ExistingNodePlan>,
    /// Nodes to launch.
    pub new_node_claims: Vec<NewNodeClaim>,
    /// Pods that cannot be placed.
    pub unschedulable: Vec<Unschedulable>,
    /// For placed pods whose preferences had to be dropped: the preferences dropped, in order.
    pub relaxed: BTreeMap<PodKey, Vec<String>>,
}

impl Decision {
    /// Expected $/h of the new nodes (cheapest option of each).
    pub fn new_cost_per_hour(&self) -> f64 {
        self.new_node_claims
            .iter()
            // Folding from +0.0 (a float `sum` of nothing is -0.0, printed "$-0.0000").
            .fold(0.0, |acc, c| acc + c.cheapest_price())
    }

    /// Number of pods placed anywhere.
    pub fn placed_pods(&self) -> usize {
        self.existing.iter().map(|e| e.pods.len()).sum::<usize>()
            + self
                .new_node_claims
                .iter()
                .map(|c| c.pods.len())
                .sum::<usize>()
    }
}

/// The scheduler's decision by position in the snapshot it was placed from: what a
/// [`Decision`] says, without copying a pod's name for every placement. For callers that solve
/// many variants of one cluster and name the pods of few answers
/// ([`Placement::to_decision`] gives the decision).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Per existing node that takes pods, in node order: its index in the snapshot's `nodes`
    /// and the indices (in its `pods`) of the pods placed there, in scheduling order.
    pub existing: Vec<(usize, Vec<usize>)>,
    /// Nodes to launch, as in [`Decision::new_node_claims`] but with `pods` left empty:
    /// `claim_pods` lists them.
    pub new_node_claims: Vec<NewNodeClaim>,
    /// Per entry of `new_node_claims`, the indices of its pods in scheduling order.
    pub claim_pods: Vec<Vec<usize>>,
    /// Pods that cannot be placed, by index (ascending), with the reason.
    pub unschedulable: Vec<(usize, String)>,
    /// Placed pods whose preferences had to be dropped, by index (ascending), with what was
    /// dropped in order.
    pub relaxed: Vec<(usize, Vec<String>)>,
}

impl Placement {
    /// As [`Decision::new_cost_per_hour`].
    pub fn new_cost_per_hour(&self) -> f64 {
        self.new_node_claims
            .iter()
            .fold(0.0, |acc, c| acc + c.cheapest_price())
    }

    /// As [`Decision::placed_pods`].
    pub fn placed_pods(&self) -> usize {
        self.existing.iter().map(|e| e.1.len()).sum::<usize>()
            + self.claim_pods.iter().map(Vec::len).sum::<usize>()
    }
}
