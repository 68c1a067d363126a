//! The scheduler's input: a plain, owned picture of the cluster at one moment.
//!
//! The controller (or `karpenter simulate`) builds it from Kubernetes objects once, at the edge
//! ([`crate::ingest`] does that for manifests); the scheduler never reads anything else.

use std::collections::BTreeMap;

use crate::instance_type::InstanceType;
use crate::requirements::{Operator, Requirement, Requirements};
use crate::resources::Resources;

/// Identifies a pod in decisions and messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Taint effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaintEffect {
    /// New pods that do not tolerate it are not scheduled.
    NoSchedule,
    /// Soft NoSchedule; Karpenter honours it until it relaxes preferences.
    PreferNoSchedule,
    /// Also evicts running pods.
    NoExecute,
}

impl TaintEffect {
    /// Parses the manifest spelling.
    pub fn parse(s: &str) -> Option<TaintEffect> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }

    /// The manifest spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect.as_str())
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect.as_str())
        }
    }
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Toleration {
    /// Key; empty with `Exists` tolerates everything.
    pub key: String,
    /// `true` for operator `Exists`, `false` for `Equal`.
    pub exists: bool,
    /// Value for `Equal`.
    pub value: String,
    /// Effect; `None` matches all effects.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if self.key.is_empty() {
            return self.exists;
        }
        if self.key != taint.key {
            return false;
        }
        self.exists || self.value == taint.value
    }
}

/// The first taint in `taints` that `tolerations` do not tolerate.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .find(|t| !tolerations.iter().any(|tol| tol.tolerates(t)))
}

/// A label selector (`matchLabels` + `matchExpressions`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    /// Key/value pairs that must all match.
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values); operators In, NotIn, Exists, DoesNotExist.
    pub match_expressions: Vec<(String, Operator, Vec<String>)>,
}

impl LabelSelector {
    /// True when `labels` satisfy the selector. An empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|(k, op, vals)| {
                let got = labels.get(k);
                match op {
                    Operator::In => got.is_some_and(|g| vals.contains(g)),
                    Operator::NotIn => got.is_none_or(|g| !vals.contains(g)),
                    Operator::Exists => got.is_some(),
                    Operator::DoesNotExist => got.is_none(),
                    _ => false,
                }
            })
    }
}

/// A pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodAffinityTerm {
    /// Topology key (zone, hostname, capacity type, …).
    pub topology_key: String,
    /// Which pods the term is about.
    pub selector: LabelSelector,
    /// Namespaces the selected pods live in; empty means the pod's own namespace unless a
    /// namespace selector is given.
    pub namespaces: Vec<String>,
    /// Namespaces by label; `Some(empty)` selects all namespaces.
    pub namespace_selector: Option<LabelSelector>,
}

/// `whenUnsatisfiable` of a topology spread constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WhenUnsatisfiable {
    /// Hard constraint.
    DoNotSchedule,
    /// Soft constraint: Karpenter honours it first and relaxes it if nothing fits.
    ScheduleAnyway,
}

/// A topology spread constraint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopologySpreadConstraint {
    /// Maximum allowed difference between domain counts.
    pub max_skew: i32,
    /// Domain label key.
    pub topology_key: String,
    /// Hard or soft.
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// Pods counted.
    pub selector: LabelSelector,
    /// Minimum number of domains before the global minimum counts.
    pub min_domains: Option<i32>,
}

/// A host port a container binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Host IP; empty or `0.0.0.0` means all.
    pub ip: String,
    /// Port number.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
}

impl HostPort {
    /// True when two host ports cannot share a node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

/// A pod as the scheduler needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pod {
    /// Namespace and name.
    pub key: PodKey,
    /// Pod labels (for selectors of other pods).
    pub labels: BTreeMap<String, String>,
    /// Effective requests: max(init containers) vs sum(containers), plus overhead, plus one
    /// `pods` slot.
    pub requests: Resources,
    /// Requests for resources without a native slot (extended resources of other vendors).
    pub other_requests: BTreeMap<String, i64>,
    /// `spec.nodeSelector` as requirements (strict).
    pub node_selector: Requirements,
    /// Required node affinity: OR of terms. Empty means no required affinity.
    pub required_node_affinity: Vec<Requirements>,
    /// Preferred node affinity: (weight, term).
    pub preferred_node_affinity: Vec<(i32, Requirements)>,
    /// Required pod affinity terms.
    pub pod_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod affinity: (weight, term).
    pub preferred_pod_affinity: Vec<(i32, PodAffinityTerm)>,
    /// Required pod anti-affinity terms.
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    /// Preferred pod anti-affinity: (weight, term).
    pub preferred_pod_anti_affinity: Vec<(i32, PodAffinityTerm)>,
    /// Topology spread constraints.
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports bound by containers.
    pub host_ports: Vec<HostPort>,
    /// Zone (or other) constraints implied by the pod's volumes (bound PVs' node affinity,
    /// storage class allowed topologies). Strict.
    pub volume_requirements: Requirements,
    /// Human name of what created the pod (`Deployment/web`), for reports.
    pub owner: Option<String>,
}

impl Pod {
    /// A pod with only a name and requests; fill in the rest as needed.
    pub fn new(namespace: &str, name: &str, requests: Resources) -> Pod {
        Pod {
            key: PodKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            labels: BTreeMap::new(),
            requests,
            other_requests: BTreeMap::new(),
            node_selector: Requirements::new(),
            required_node_affinity: Vec::new(),
            preferred_node_affinity: Vec::new(),
            pod_affinity: Vec::new(),
            preferred_pod_affinity: Vec::new(),
            pod_anti_affinity: Vec::new(),
            preferred_pod_anti_affinity: Vec::new(),
            topology_spread: Vec::new(),
            tolerations: Vec::new(),
            host_ports: Vec::new(),
            volume_requirements: Requirements::new(),
            owner: None,
        }
    }
}

/// A node that exists (or a NodeClaim that is launching) with the pods bound to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExistingNode {
    /// Node (or NodeClaim) name.
    pub name: String,
    /// Node labels, including zone, hostname, instance type, capacity type and nodepool.
    pub labels: BTreeMap<String, String>,
    /// Taints that matter for new pods. The edge leaves out startup taints of nodes that are
    /// still initializing and the ephemeral not-ready/unreachable taints, as Karpenter does.
    pub taints: Vec<Taint>,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Allocatable amounts of non-native extended resources.
    pub other_allocatable: BTreeMap<String, i64>,
    /// Pods already bound (their requests, labels, host ports and affinities count).
    pub pods: Vec<Pod>,
    /// True for a NodeClaim that has not registered a node yet.
    pub in_flight: bool,
    /// True when the node is being disrupted or deleted: nothing new schedules there.
    pub marked_for_deletion: bool,
}

/// A NodePool, compiled for scheduling, with the instance types its NodeClass offers.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePoolInput {
    /// Name.
    pub name: String,
    /// Higher weights are tried first.
    pub weight: i32,
    /// Template requirements plus template labels (as `In` single values) plus
    /// `karpenter.sh/nodepool In [name]`.
    pub requirements: Requirements,
    /// Labels nodes get (template labels).
    pub labels: BTreeMap<String, String>,
    /// Taints new nodes carry.
    pub taints: Vec<Taint>,
    /// Taints removed by a daemon after start; pods need not tolerate them to be scheduled.
    pub startup_taints: Vec<Taint>,
    /// Limits per resource slot; `i64::MAX` where unlimited.
    pub limits: Resources,
    /// Capacity of the pool's current nodes (counts against limits).
    pub usage: Resources,
    /// `spec.limits.nodes`: the most nodes the pool may have, counting its nodes in the
    /// snapshot (those labelled `karpenter.sh/nodepool=<name>`, in-flight claims included)
    /// and the NodeClaims a solve opens; `None` when unlimited.
    pub node_limit: Option<usize>,
    /// Instance types of the pool's NodeClass (before the pool's requirements filter them).
    pub instance_types: Vec<InstanceType>,
    /// Why the NodeClass offers no instance types right now (it is not ready, the listing
    /// failed), when known; a pod that only this pool could take is told so.
    pub unavailable: Option<String>,
}

impl NodePoolInput {
    /// A pool with no constraints over the given instance types.
    pub fn new(name: &str, instance_types: Vec<InstanceType>) -> NodePoolInput {
        let mut requirements = Requirements::new();
        requirements.add(crate::labels::NODE_POOL, Requirement::single(name));
        NodePoolInput {
            name: name.to_string(),
            weight: 0,
            requirements,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            startup_taints: Vec::new(),
            limits: Resources::UNLIMITED,
            usage: Resources::ZERO,
            node_limit: None,
            instance_types,
            unavailable: None,
        }
    }
}

/// Everything the scheduler needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Pods to place.
    pub pods: Vec<Pod>,
    /// Existing nodes and in-flight NodeClaims.
    pub nodes: Vec<ExistingNode>,
    /// NodePools with their instance types.
    pub node_pools: Vec<NodePoolInput>,
    /// One pod template per DaemonSet: each new node carries the ones that would run on it.
    pub daemon_sets: Vec<Pod>,
    /// Namespace labels, for pod affinity namespace selectors.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// A [`Snapshot`] assembled from borrowed parts, so a caller that solves many variants of one
/// cluster (disruption's simulations: the same nodes minus a few, plus the pods that move) hands
/// the scheduler references instead of cloning every node and pod each time. The scheduler
/// reads it exactly as it reads the snapshot it describes.
#[derive(Clone, Debug)]
pub struct SnapshotView<'a> {
    /// Pods to place, in order.
    pub pods: Vec<&'a Pod>,
    /// Existing nodes and in-flight NodeClaims, in order.
    pub nodes: Vec<&'a ExistingNode>,
    /// Per entry of `nodes`, what its bound pods use, when the caller computed it once for
    /// many solves ([`NodeUsage::of`] the same node); `None` lets the scheduler add it up.
    pub usage: Option<Vec<&'a NodeUsage>>,
    /// NodePools with their instance types.
    pub node_pools: &'a [NodePoolInput],
    /// One pod template per DaemonSet.
    pub daemon_sets: &'a [Pod],
    /// Namespace labels, for pod affinity namespace selectors.
    pub namespace_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> SnapshotView<'a> {
    /// A view of every part of `snapshot`.
    pub fn of(snapshot: &'a Snapshot) -> SnapshotView<'a> {
        SnapshotView {
            pods: snapshot.pods.iter().collect(),
            nodes: snapshot.nodes.iter().collect(),
            usage: None,
            node_pools: &snapshot.node_pools,
            daemon_sets: &snapshot.daemon_sets,
            namespace_labels: &snapshot.namespace_labels,
        }
    }

    /// The snapshot this view describes, cloned out.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            pods: self.pods.iter().map(|p| (*p).clone()).collect(),
            nodes: self.nodes.iter().map(|n| (*n).clone()).collect(),
            node_pools: self.node_pools.to_vec(),
            daemon_sets: self.daemon_sets.to_vec(),
            namespace_labels: self.namespace_labels.clone(),
        }
    }
}

/// What a node's bound pods take, added up once: the scheduler reads this of every node at the
/// start of every solve, and a caller solving many variants of one cluster (disruption's
/// simulations) can hand it over instead of having every pod of every node read each time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUsage {
    /// Sum of the bound pods' requests (saturating, in pod order).
    pub requests: Resources,
    /// Sum of the bound pods' requests of non-native resources, per name (a name a pod lists
    /// with 0 is present with 0).
    pub other_requests: BTreeMap<String, i64>,
    /// The bound pods' host ports, in pod order.
    pub host_ports: Vec<HostPort>,
    /// Some bound pod has required pod anti-affinity terms.
    pub anti_affinity: bool,
}

impl NodeUsage {
    /// Adds up `node`'s bound pods.
    pub fn of(node: &ExistingNode) -> NodeUsage {
        let mut usage = NodeUsage::default();
        for p in &node.pods {
            usage.requests += p.requests;
            for (k, v) in &p.other_requests {
                let sum = usage.other_requests.entry(k.clone()).or_insert(0);
                *sum = sum.wrapping_add(*v);
            }
            usage.host_ports.extend(p.host_ports.iter().cloned());
            usage.anti_affinity |= !p.pod_anti_affinity.is_empty();
        }
        usage
    }
}
