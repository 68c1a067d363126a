//! Cluster objects (from the reflector stores) → the scheduler's [`Snapshot`], and the
//! scheduler's [`NewNodeClaim`]s → NodeClaim objects. Pure functions: the provisioner gathers
//! the objects, these convert them, `core` decides.
//!
//! Unlike `simulate`, which refuses a manifest set with any error, a running controller must
//! keep working around one bad object: every per-object problem is collected in
//! [`ClusterSnapshot::problems`] (and surfaced as events/logs) while the rest is scheduled.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint as K8sTaint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use karpenter_core::api::{
    self, NodeClaim, NodeClaimSpec, NodeSelectorOperator, NodeSelectorRequirementWithMinValues,
    ResourceRequirements,
};
use karpenter_core::ingest::{
    IngestError, NAMESPACE_NAME_LABEL, compile_node_pool, existing_node_from_k8s, is_daemonset_pod,
    is_pending_unschedulable, pod_from_k8s, workloads::daemon_set_pod,
};
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::{Operator, Requirement, Requirements};
use karpenter_core::resources::{self, Resources};
use karpenter_core::scheduling::NewNodeClaim;
use karpenter_core::snapshot::{ExistingNode, PodKey, Snapshot, Taint, TaintEffect};

use crate::model::objects::PoolView;
use crate::model::volume_topology::{VolumeObjects, inject_volume_topology};

/// The objects a provisioning pass looks at.
#[derive(Clone, Copy, Debug)]
pub struct ClusterObjects<'a> {
    /// Every pod in the cluster.
    pub pods: &'a [Arc<Pod>],
    /// Every node.
    pub nodes: &'a [Arc<Node>],
    /// Every NodePool that could be read.
    pub pools: &'a [PoolView],
    /// Every NodeClaim.
    pub claims: &'a [Arc<NodeClaim>],
    /// Every DaemonSet.
    pub daemon_sets: &'a [Arc<DaemonSet>],
    /// Instance types per NodePool name (pools missing here get none).
    pub instance_types: &'a BTreeMap<String, Vec<InstanceType>>,
    /// Claims, volumes and StorageClasses, for pending pods' volume topology.
    pub volumes: &'a VolumeObjects,
}

/// A snapshot and what could not go into it.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    /// The scheduler's input.
    pub snapshot: Snapshot,
    /// Objects left out, each naming the object and field.
    pub problems: Vec<IngestError>,
}

/// Builds the scheduler's snapshot.
///
/// - pending pods: unbound pods the kube-scheduler marked `Unschedulable`, except DaemonSet
///   pods (Karpenter's rule), with their volumes' topology added to their node affinity
///   ([`inject_volume_topology`]); a pod whose claim is missing is left out;
/// - existing nodes: every Node with its bound pods, plus every NodeClaim that has no Node yet
///   (in flight), sized by its launched allocatable or, before launch, by the requests it was
///   created for — so pods it was made for fit there again instead of triggering a second
///   launch;
/// - pool usage (for limits): capacity of the pool's Nodes and of its in-flight claims;
/// - pools being deleted get no new nodes.
pub fn build_snapshot(objects: &ClusterObjects<'_>) -> ClusterSnapshot {
    let mut out = ClusterSnapshot::default();
    let node_names: BTreeMap<&str, &Node> = objects
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref().map(|name| (name, n.as_ref())))
        .collect();
    let provider_ids: BTreeMap<&str, &str> = objects
        .nodes
        .iter()
        .filter_map(|n| {
            let id = n.spec.as_ref()?.provider_id.as_deref()?;
            Some((id, n.metadata.name.as_deref()?))
        })
        .collect();

    let mut usage: BTreeMap<String, Resources> = BTreeMap::new();
    for node in objects.nodes {
        if let Some(pool) = node_label(&node.metadata, labels::NODE_POOL) {
            let cap = node
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .map(|c| quantities(c).0)
                .unwrap_or(Resources::ZERO);
            *usage.entry(pool.to_owned()).or_default() += cap;
        }
    }
    let in_flight: Vec<&NodeClaim> = objects
        .claims
        .iter()
        .map(Arc::as_ref)
        .filter(|c| !has_node(c, &node_names, &provider_ids))
        .collect();
    for claim in &in_flight {
        if let Some(pool) = node_label(&claim.metadata, labels::NODE_POOL) {
            *usage.entry(pool.to_owned()).or_default() += claim_capacity(claim);
        }
    }

    let mut startup_taints = BTreeMap::new();
    for view in objects.pools {
        if view.node_pool.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = view.name().to_owned();
        let types = objects
            .instance_types
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let pool_usage = usage.get(&name).copied().unwrap_or_default();
        match compile_node_pool(&view.node_pool, types, pool_usage) {
            Ok(input) => {
                startup_taints.insert(name, input.startup_taints.clone());
                out.snapshot.node_pools.push(input);
            }
            Err(errs) => out.problems.extend(errs),
        }
    }

    let mut bound: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    for pod in objects.pods {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        match node {
            Some(n) if !n.is_empty() => {
                if let Some((name, _)) = node_names.get_key_value(n) {
                    bound.entry(name).or_default().push((**pod).clone());
                }
            }
            _ => {
                if is_daemonset_pod(pod) || !is_pending_unschedulable(pod) {
                    continue;
                }
                let converted =
                    inject_volume_topology(pod, objects.volumes).and_then(|pod| pod_from_k8s(&pod));
                match converted {
                    Ok(p) => out.snapshot.pods.push(p),
                    Err(e) => out.problems.push(e),
                }
            }
        }
    }

    for node in objects.nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let startup = node_label(&node.metadata, labels::NODE_POOL)
            .and_then(|p| startup_taints.get(p))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let pods = bound.get(name).map(Vec::as_slice).unwrap_or_default();
        match existing_node_from_k8s(node, pods, startup) {
            Ok(n) => out.snapshot.nodes.push(n),
            Err(e) => out.problems.push(e),
        }
    }
    for claim in in_flight {
        out.snapshot.nodes.push(in_flight_node(claim));
    }

    for ds in objects.daemon_sets {
        match daemon_set_pod(ds) {
            Ok(p) => out.snapshot.daemon_sets.push(p),
            Err(e) => out.problems.push(e),
        }
    }

    let namespaces: Vec<String> = out
        .snapshot
        .pods
        .iter()
        .chain(out.snapshot.nodes.iter().flat_map(|n| &n.pods))
        .map(|p| p.key.namespace.clone())
        .collect();
    for ns in namespaces {
        out.snapshot
            .namespace_labels
            .entry(ns.clone())
            .or_insert_with(|| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), ns)]));
    }
    out
}

fn node_label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// True when the claim's Node exists (by `status.nodeName` or by provider id).
fn has_node(
    claim: &NodeClaim,
    node_names: &BTreeMap<&str, &Node>,
    provider_ids: &BTreeMap<&str, &str>,
) -> bool {
    let Some(status) = &claim.status else {
        return false;
    };
    status
        .node_name
        .as_deref()
        .is_some_and(|n| node_names.contains_key(n))
        || status
            .provider_id
            .as_deref()
            .is_some_and(|id| provider_ids.contains_key(id))
}

/// Native resources of a resource list; unknown or unparsable entries are left out.
fn quantities(list: &BTreeMap<String, Quantity>) -> (Resources, BTreeMap<String, i64>) {
    let mut native = Resources::ZERO;
    let mut other = BTreeMap::new();
    for (name, q) in list {
        let Ok(amount) = resources::parse_for_resource(name, &q.0) else {
            continue;
        };
        match resources::slot(name) {
            Some(slot) => native.0[slot] = amount,
            None => {
                other.insert(name.clone(), amount);
            }
        }
    }
    (native, other)
}

/// What an in-flight claim counts against its pool's limits: the launched capacity, else the
/// requests it was made for.
fn claim_capacity(claim: &NodeClaim) -> Resources {
    match claim.status.as_ref().filter(|s| !s.capacity.is_empty()) {
        Some(s) => quantities(&s.capacity).0,
        None => quantities(&claim.spec.resources.requests).0,
    }
}

/// The native resources a NodeClaim was created for (`spec.resources.requests`).
pub fn claim_requests(claim: &NodeClaim) -> Resources {
    quantities(&claim.spec.resources.requests).0
}

/// A NodeClaim without a Node, as a node the scheduler may fill.
pub fn in_flight_node(claim: &NodeClaim) -> ExistingNode {
    let name = claim.metadata.name.clone().unwrap_or_default();
    let mut node_labels = claim.metadata.labels.clone().unwrap_or_default();
    for r in &claim.spec.requirements {
        if r.operator == NodeSelectorOperator::In && r.values.len() == 1 {
            node_labels
                .entry(r.key.clone())
                .or_insert_with(|| r.values[0].clone());
        }
    }
    node_labels
        .entry(labels::HOSTNAME.to_owned())
        .or_insert_with(|| name.clone());
    let (allocatable, other_allocatable) =
        match claim.status.as_ref().filter(|s| !s.allocatable.is_empty()) {
            Some(s) => quantities(&s.allocatable),
            None => quantities(&claim.spec.resources.requests),
        };
    let taints = claim
        .spec
        .taints
        .iter()
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: TaintEffect::parse(&t.effect)?,
            })
        })
        .collect();
    ExistingNode {
        name,
        labels: node_labels,
        taints,
        allocatable,
        other_allocatable,
        pods: Vec::new(),
        in_flight: true,
        marked_for_deletion: claim.metadata.deletion_timestamp.is_some(),
    }
}

/// The `karpenter.sh/v1` NodeClaim Karpenter creates for a scheduling decision: labels from
/// the pool and the claim's single-valued requirements, the pool's taints, startup taints,
/// node class, expiry and grace period, requirements with the instance types the scheduler
/// kept (cheapest first), requests = pods + DaemonSets, owned by the NodePool so deleting
/// the pool deletes its claims. `generateName` is `<pool>-` as in Karpenter.
pub fn node_claim_for(decision: &NewNodeClaim, pool: &PoolView) -> NodeClaim {
    let np = &pool.node_pool;
    let template = &np.spec.template;
    let mut claim_labels = template.metadata.labels.clone();
    claim_labels.extend(decision.labels.clone());
    claim_labels.extend(decision.requirements.single_valued_labels());
    claim_labels.insert(labels::NODE_POOL.to_owned(), pool.name().to_owned());
    claim_labels.remove(labels::HOSTNAME);

    let mut requirements: Vec<NodeSelectorRequirementWithMinValues> = decision
        .requirements
        .iter()
        .filter(|(key, _)| {
            key.as_str() != labels::HOSTNAME && key.as_str() != labels::INSTANCE_TYPE
        })
        .flat_map(|(key, req)| requirement_to_api(key, req))
        .collect();
    requirements.push(NodeSelectorRequirementWithMinValues::new(
        labels::INSTANCE_TYPE,
        NodeSelectorOperator::In,
        decision.instance_types.iter().map(|o| o.name.clone()),
    ));
    // Keep the pool's minValues on the keys it set them for.
    for r in &template.spec.requirements {
        if let Some(min) = r.min_values
            && let Some(out) = requirements.iter_mut().find(|o| o.key == r.key)
        {
            out.min_values = Some(min);
        }
    }

    let requests = decision.pod_requests + decision.daemon_overhead;
    let mut annotations = template.metadata.annotations.clone();
    // The template hash the claim is made from: static drift compares it with the pool's.
    annotations.insert(
        api::NODE_POOL_HASH_ANNOTATION_KEY.to_owned(),
        api::nodepool_hash(np),
    );
    annotations.insert(
        api::NODE_POOL_HASH_VERSION_ANNOTATION_KEY.to_owned(),
        api::NODE_POOL_HASH_VERSION.to_owned(),
    );
    if let Some(k) = &pool.kubelet {
        // Karpenter v1 records a converted v1beta1 pool's kubelet on its claims.
        if let Ok(json) = serde_json::to_string(k) {
            annotations.insert(KUBELET_COMPAT_ANNOTATION.to_owned(), json);
        }
    }
    let spec = NodeClaimSpec {
        taints: template.spec.taints.clone(),
        startup_taints: template.spec.startup_taints.clone(),
        requirements,
        resources: ResourceRequirements {
            requests: resource_list(&requests),
        },
        node_class_ref: template.spec.node_class_ref.clone(),
        termination_grace_period: template.spec.termination_grace_period.clone(),
        expire_after: template.spec.expire_after.clone(),
    };
    let mut claim = NodeClaim::new("", spec);
    claim.metadata = ObjectMeta {
        generate_name: Some(format!("{}-", pool.name())),
        labels: Some(claim_labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        owner_references: np.metadata.uid.clone().map(|uid| {
            vec![OwnerReference {
                api_version: format!("{}/v1", api::GROUP),
                kind: "NodePool".to_owned(),
                name: pool.name().to_owned(),
                uid,
                block_owner_deletion: Some(true),
                controller: None,
            }]
        }),
        ..ObjectMeta::default()
    };
    claim
}

/// Annotation Karpenter v1 puts on NodeClaims of converted v1beta1 pools, holding their
/// kubelet settings as JSON.
pub const KUBELET_COMPAT_ANNOTATION: &str = "compatibility.karpenter.sh/v1beta1-kubelet-conversion";

/// A core requirement as NodeClaim requirements (a bounded range gives two).
fn requirement_to_api(key: &str, req: &Requirement) -> Vec<NodeSelectorRequirementWithMinValues> {
    let values = |v: &std::collections::BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>();
    let one = |op, vals: Vec<String>| NodeSelectorRequirementWithMinValues::new(key, op, vals);
    match req.operator() {
        Operator::In => vec![one(NodeSelectorOperator::In, values(req.values()))],
        Operator::DoesNotExist => vec![one(NodeSelectorOperator::DoesNotExist, vec![])],
        Operator::Exists => vec![one(NodeSelectorOperator::Exists, vec![])],
        _ => {
            let mut out = Vec::new();
            if !req.values().is_empty() {
                out.push(one(NodeSelectorOperator::NotIn, values(req.values())));
            }
            if let Some(gt) = req.greater_than() {
                out.push(one(NodeSelectorOperator::Gt, vec![gt.to_string()]));
            }
            if let Some(lt) = req.less_than() {
                out.push(one(NodeSelectorOperator::Lt, vec![lt.to_string()]));
            }
            if out.is_empty() {
                out.push(one(NodeSelectorOperator::Exists, vec![]));
            }
            out
        }
    }
}

/// Resources as a Kubernetes resource list (non-zero entries), exactly: CPU in millicores,
/// bytes with the largest binary suffix that divides them, counts as integers.
pub fn resource_list(r: &Resources) -> BTreeMap<String, Quantity> {
    resources::RESOURCE_NAMES
        .iter()
        .enumerate()
        .filter(|(slot, _)| r.0[*slot] != 0)
        .map(|(slot, name)| ((*name).to_owned(), Quantity(exact_amount(slot, r.0[slot]))))
        .collect()
}

fn exact_amount(slot: usize, amount: i64) -> String {
    match slot {
        resources::CPU if amount % 1000 == 0 => (amount / 1000).to_string(),
        resources::CPU => format!("{amount}m"),
        resources::MEMORY | resources::EPHEMERAL_STORAGE => {
            for (suffix, size) in [("Gi", 1i64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
                if amount % size == 0 {
                    return format!("{}{suffix}", amount / size);
                }
            }
            amount.to_string()
        }
        _ => amount.to_string(),
    }
}

/// A core taint as a Kubernetes taint.
pub fn taint_to_k8s(t: &Taint) -> K8sTaint {
    K8sTaint {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: t.effect.as_str().to_owned(),
        time_added: None,
    }
}

/// The key of a pod object.
pub fn pod_key(pod: &Pod) -> PodKey {
    PodKey {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// Requirements of a NodeClaim as core requirements (unparsable ones are skipped; the
/// claim was validated when created).
pub fn claim_requirements(claim: &NodeClaim) -> Requirements {
    let mut out = Requirements::new();
    for r in &claim.spec.requirements {
        let Some(op) = Operator::parse(r.operator.as_str()) else {
            continue;
        };
        if let Ok(req) = Requirement::new(op, &r.values) {
            out.add(&r.key, req);
        }
    }
    out
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
