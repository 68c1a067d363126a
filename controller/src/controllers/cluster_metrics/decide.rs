//! The gauges Karpenter's dashboards read, computed from the cluster model without I/O:
//! per node `karpenter_nodes_allocatable`, `_total_pod_requests`, `_total_daemon_requests`;
//! per pod `karpenter_pods_state`; per NodePool `karpenter_nodepools_usage` / `_limit`; and
//! `karpenter_cluster_state_node_count`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_core::api::NodeClaim;
use karpenter_core::ingest::pod::{controlling_owner, is_daemonset_pod, is_terminal, pod_from_k8s};
use karpenter_core::labels;
use karpenter_core::resources::{self, Resources, parse_for_resource};

use crate::model::objects::PoolView;
use crate::runtime::metrics::{NodeLabels, PodState};

/// The `nodepool` label of nodes no NodePool owns (the dashboards filter `nodepool!="N/A"`).
pub const NOT_APPLICABLE: &str = "N/A";

/// A resource name as a `resource_type` label: lower case, `-` as `_` (Karpenter's form).
pub fn resource_type(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// A quantity in the metric's unit: cores for `cpu`, whole units for the rest.
fn in_metric_unit(name: &str, amount: i64) -> f64 {
    if name == "cpu" {
        amount as f64 / 1000.0
    } else {
        amount as f64
    }
}

/// The series of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSeries {
    /// Its labels.
    pub labels: NodeLabels,
    /// `resource_type` → allocatable.
    pub allocatable: BTreeMap<String, f64>,
    /// `resource_type` → requests of every pod bound to it (DaemonSet pods included, as v1).
    pub pod_requests: BTreeMap<String, f64>,
    /// `resource_type` → requests of its DaemonSet pods.
    pub daemon_requests: BTreeMap<String, f64>,
}

/// The series of one NodePool.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolSeries {
    /// `resource_type` → capacity of its NodeClaims (launched, not yet deleted).
    pub usage: BTreeMap<String, f64>,
    /// `resource_type` → `spec.limits`.
    pub limit: BTreeMap<String, f64>,
}

/// Everything the gauges should say now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSeries {
    /// By node name.
    pub nodes: BTreeMap<String, NodeSeries>,
    /// One per pod.
    pub pods: Vec<PodState>,
    /// By NodePool name.
    pub pools: BTreeMap<String, PoolSeries>,
    /// Nodes in the cluster.
    pub node_count: usize,
}

fn label_of<'a>(node: &'a Node, key: &str) -> &'a str {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

/// The node-identifying labels of a node.
pub fn node_labels(node: &Node) -> NodeLabels {
    let pool = label_of(node, labels::NODE_POOL);
    NodeLabels {
        node_name: node.metadata.name.clone().unwrap_or_default(),
        phase: node
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        nodepool: if pool.is_empty() {
            NOT_APPLICABLE.to_owned()
        } else {
            pool.to_owned()
        },
        zone: label_of(node, labels::ZONE).to_owned(),
        arch: label_of(node, labels::ARCH).to_owned(),
        capacity_type: label_of(node, labels::CAPACITY_TYPE).to_owned(),
        instance_type: label_of(node, labels::INSTANCE_TYPE).to_owned(),
    }
}

/// Parses a resource list into `resource_type` → amount in the metric's unit; entries that do
/// not parse are left out.
fn resource_list(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, f64> {
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| {
            let amount = parse_for_resource(name, &q.0).ok()?;
            Some((resource_type(name), in_metric_unit(name, amount)))
        })
        .collect()
}

/// Adds `requests` (native slots that are not zero, plus `pods` = 1) to `into`.
fn add_requests(into: &mut BTreeMap<String, f64>, requests: &Resources) {
    for (slot, name) in resources::RESOURCE_NAMES.iter().enumerate() {
        let amount = if slot == resources::PODS {
            1
        } else {
            requests.0[slot]
        };
        if amount != 0 {
            *into.entry(resource_type(name)).or_default() += in_metric_unit(name, amount);
        }
    }
}

/// Computes every series from the model's objects.
pub fn series(
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    claims: &[Arc<NodeClaim>],
    pools: &[PoolView],
) -> ClusterSeries {
    let mut out = ClusterSeries {
        node_count: nodes.len(),
        ..ClusterSeries::default()
    };
    let mut by_name: HashMap<&str, &Node> = HashMap::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        by_name.insert(name, node);
        let mut s = NodeSeries {
            labels: node_labels(node),
            allocatable: resource_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref())),
            ..NodeSeries::default()
        };
        // Every resource the node offers gets a requests series, 0 when nothing asks for it.
        for key in s.allocatable.keys() {
            s.pod_requests.insert(key.clone(), 0.0);
            s.daemon_requests.insert(key.clone(), 0.0);
        }
        out.nodes.insert(name.to_owned(), s);
    }
    for pod in pods {
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let node = node_name.and_then(|n| by_name.get(n).copied());
        out.pods.push(pod_state(pod, node));
        let (Some(node_name), false) = (node_name, is_terminal(pod)) else {
            continue;
        };
        let Some(series) = out.nodes.get_mut(node_name) else {
            continue;
        };
        // A pod whose requests do not parse is left out of the sums, not of pods_state.
        let Ok(parsed) = pod_from_k8s(pod) else {
            continue;
        };
        add_requests(&mut series.pod_requests, &parsed.requests);
        if is_daemonset_pod(pod) {
            add_requests(&mut series.daemon_requests, &parsed.requests);
        }
    }
    for pool in pools {
        let s = out.pools.entry(pool.name().to_owned()).or_default();
        s.limit = resource_list(pool.node_pool.spec.limits.as_ref());
    }
    for claim in claims {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let pool = claim
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NODE_POOL));
        let (Some(pool), Some(status)) = (pool, claim.status.as_ref()) else {
            continue;
        };
        let Some(s) = out.pools.get_mut(pool) else {
            continue;
        };
        for (name, amount) in resource_list(Some(&status.capacity)) {
            *s.usage.entry(name).or_default() += amount;
        }
    }
    out
}

/// `karpenter_pods_state` of one pod; node-derived labels empty while it is not bound.
pub fn pod_state(pod: &Pod, node: Option<&Node>) -> PodState {
    let node_labels = node.map(node_labels).unwrap_or_default();
    PodState {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        owner: owner_path(pod),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        nodepool: if node.is_some() {
            node_labels.nodepool
        } else {
            String::new()
        },
        zone: node_labels.zone,
        arch: node_labels.arch,
        capacity_type: node_labels.capacity_type,
        instance_type: node_labels.instance_type,
        phase: pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
    }
}

/// The controlling owner as Karpenter writes it: `/apis/<apiVersion>/namespaces/<ns>/<kind>s/<name>`
/// (`/api/v1/…` for the core group); empty when unowned.
fn owner_path(pod: &Pod) -> String {
    let Some(owner) = controlling_owner(&pod.metadata) else {
        return String::new();
    };
    let root = if owner.api_version.contains('/') {
        "apis"
    } else {
        "api"
    };
    format!(
        "/{root}/{}/namespaces/{}/{}s/{}",
        owner.api_version,
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        owner.kind.to_ascii_lowercase(),
        owner.name
    )
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
