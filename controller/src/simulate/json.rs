//! The `--output json` document: a serde view of a [`Plan`], stable field names, amounts as
//! Kubernetes quantities (`1500m`, `4Gi`).

use std::collections::BTreeMap;

use karpenter_core::resources::{CPU, MEMORY, PODS, RESOURCE_NAMES, Resources};
use karpenter_core::scheduling::FleetBound;
use karpenter_core::scheduling::report::node_summaries;
use serde::Serialize;

use super::Plan;

/// The whole document.
#[derive(Serialize, Debug)]
pub struct Report {
    /// What went in.
    pub input: Input,
    /// Nodes to launch.
    pub new_nodes: Vec<NewNode>,
    /// Pods for nodes that exist, by node.
    pub existing: Vec<Existing>,
    /// Pods that cannot be placed, with the reason.
    pub unschedulable: Vec<UnschedulablePod>,
    /// Preferences dropped to place a pod, by pod.
    pub relaxed: BTreeMap<String, Vec<String>>,
    /// Sums.
    pub totals: Totals,
    /// What disruption would do to the managed nodes in the manifests; absent when there are
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disruption: Option<super::disruption::Report>,
}

/// The input summary (the text header).
#[derive(Serialize, Debug)]
pub struct Input {
    /// Pending pods to place.
    pub pending_pods: usize,
    /// DaemonSets (their pods add overhead on new nodes).
    pub daemon_sets: usize,
    /// Existing nodes.
    pub existing_nodes: usize,
    /// Catalog source.
    pub catalog: String,
    /// Instance types in the catalog.
    pub catalog_instance_types: usize,
    /// NodePools.
    pub node_pools: Vec<Pool>,
    /// Objects read but not used, `Kind/name`.
    pub ignored: Vec<String>,
}

/// A NodePool.
#[derive(Serialize, Debug)]
pub struct Pool {
    /// Name.
    pub name: String,
    /// EC2NodeClass name.
    pub node_class: String,
    /// AMI family in effect.
    pub ami_family: String,
    /// `maxPods`, when set.
    pub max_pods: Option<i32>,
    /// Instance types compatible with the pool's requirements.
    pub instance_types_considered: usize,
}

/// A purchase option.
#[derive(Serialize, Debug)]
pub struct PurchaseOption {
    /// Instance type.
    pub instance_type: String,
    /// Zone of its cheapest offering.
    pub zone: String,
    /// `on-demand` or `spot`.
    pub capacity_type: String,
    /// USD per hour.
    pub price: f64,
}

/// A node to launch.
#[derive(Serialize, Debug)]
pub struct NewNode {
    /// NodePool.
    pub node_pool: String,
    /// Cheapest instance type (expected launch).
    pub instance_type: String,
    /// Its zone.
    pub zone: String,
    /// Its capacity type.
    pub capacity_type: String,
    /// Its price, USD per hour.
    pub price: f64,
    /// Every option, cheapest first.
    pub options: Vec<PurchaseOption>,
    /// Pods, `namespace/name`.
    pub pods: Vec<String>,
    /// Requirements as `key Op [values]`.
    pub requirements: Vec<String>,
    /// Labels the node gets.
    pub labels: BTreeMap<String, String>,
    /// Taints it carries.
    pub taints: Vec<String>,
    /// Pod requests.
    pub pod_requests: BTreeMap<String, String>,
    /// DaemonSet requests.
    pub daemon_overhead: BTreeMap<String, String>,
    /// Allocatable of the cheapest type.
    pub allocatable: BTreeMap<String, String>,
    /// Used share of cpu, memory and pods, percent.
    pub utilization: Utilization,
}

/// Percent used.
#[derive(Serialize, Debug)]
pub struct Utilization {
    /// CPU.
    pub cpu: f64,
    /// Memory.
    pub memory: f64,
    /// Pod slots.
    pub pods: f64,
}

/// Pods going to an existing node.
#[derive(Serialize, Debug)]
pub struct Existing {
    /// Node name.
    pub node: String,
    /// Pods.
    pub pods: Vec<String>,
}

/// A pod that cannot be placed.
#[derive(Serialize, Debug)]
pub struct UnschedulablePod {
    /// `namespace/name`.
    pub pod: String,
    /// Why.
    pub reason: String,
}

/// Sums over the plan.
#[derive(Serialize, Debug)]
pub struct Totals {
    /// New nodes.
    pub new_nodes: usize,
    /// USD per hour of the new nodes (cheapest option each).
    pub cost_per_hour: f64,
    /// Pods placed (new and existing nodes).
    pub pods_placed: usize,
    /// Pods that cannot be placed.
    pub unschedulable: usize,
    /// CPU used over allocatable on new nodes, percent.
    pub cpu_utilization: f64,
    /// Memory used over allocatable on new nodes, percent.
    pub memory_utilization: f64,
    /// The configuration-LP lower bound for the pods on new nodes: no fleet for them costs
    /// less (absent when no pod goes to a new node).
    pub lower_bound_per_hour: Option<f64>,
    /// How far `cost_per_hour` is above the bound, percent.
    pub above_bound_percent: Option<f64>,
    /// False when the LP search stopped early (the bound is valid, only looser).
    pub bound_converged: Option<bool>,
}

fn quantities(r: &Resources) -> BTreeMap<String, String> {
    RESOURCE_NAMES
        .iter()
        .enumerate()
        .filter(|(slot, _)| r.0[*slot] != 0)
        .map(|(slot, name)| (name.to_string(), Resources::format_amount(slot, r.0[slot])))
        .collect()
}

fn percent(used: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        // Two decimals are plenty and keep the document readable.
        (10_000.0 * used as f64 / total as f64).round() / 100.0
    }
}

impl Report {
    /// The view of a plan.
    pub fn of(plan: &Plan) -> Report {
        let s = &plan.snapshot;
        let d = &plan.decision;
        let summaries = node_summaries(s, d);
        let new_nodes = d
            .new_node_claims
            .iter()
            .zip(&summaries)
            .map(|(c, summary)| {
                let first = c.instance_types.first();
                NewNode {
                    node_pool: c.node_pool.clone(),
                    instance_type: summary.instance_type.clone(),
                    zone: first.map(|o| o.zone.clone()).unwrap_or_default(),
                    capacity_type: first.map(|o| o.capacity_type.clone()).unwrap_or_default(),
                    price: c.cheapest_price(),
                    options: c
                        .instance_types
                        .iter()
                        .map(|o| PurchaseOption {
                            instance_type: o.name.clone(),
                            zone: o.zone.clone(),
                            capacity_type: o.capacity_type.clone(),
                            price: o.price,
                        })
                        .collect(),
                    pods: c.pods.iter().map(ToString::to_string).collect(),
                    requirements: c
                        .requirements
                        .iter()
                        .map(|(k, r)| format!("{k} {r}"))
                        .collect(),
                    labels: c.labels.clone(),
                    taints: c.taints.iter().map(ToString::to_string).collect(),
                    pod_requests: quantities(&c.pod_requests),
                    daemon_overhead: quantities(&c.daemon_overhead),
                    allocatable: quantities(&summary.allocatable),
                    utilization: Utilization {
                        cpu: percent(summary.used.0[CPU], summary.allocatable.0[CPU]),
                        memory: percent(summary.used.0[MEMORY], summary.allocatable.0[MEMORY]),
                        pods: percent(summary.used.0[PODS], summary.allocatable.0[PODS]),
                    },
                }
            })
            .collect();
        let used = summaries.iter().fold(Resources::ZERO, |a, s| a + s.used);
        let alloc = summaries
            .iter()
            .fold(Resources::ZERO, |a, s| a + s.allocatable);
        Report {
            input: Input {
                pending_pods: s.pods.len(),
                daemon_sets: s.daemon_sets.len(),
                existing_nodes: s.nodes.len(),
                catalog: plan.catalog_source.clone(),
                catalog_instance_types: plan.catalog_types,
                node_pools: plan
                    .pools
                    .iter()
                    .map(|p| Pool {
                        name: p.name.clone(),
                        node_class: p.node_class.clone(),
                        ami_family: p.ami_family.clone(),
                        max_pods: p.max_pods,
                        instance_types_considered: p.matching_types,
                    })
                    .collect(),
                ignored: plan.skipped.clone(),
            },
            new_nodes,
            existing: d
                .existing
                .iter()
                .map(|e| Existing {
                    node: e.node.clone(),
                    pods: e.pods.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            unschedulable: d
                .unschedulable
                .iter()
                .map(|u| UnschedulablePod {
                    pod: u.pod.to_string(),
                    reason: u.reason.clone(),
                })
                .collect(),
            relaxed: d
                .relaxed
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            totals: Totals {
                new_nodes: d.new_node_claims.len(),
                cost_per_hour: (d.new_cost_per_hour() * 10_000.0).round() / 10_000.0,
                pods_placed: d.placed_pods(),
                unschedulable: d.unschedulable.len(),
                cpu_utilization: percent(used.0[CPU], alloc.0[CPU]),
                memory_utilization: percent(used.0[MEMORY], alloc.0[MEMORY]),
                lower_bound_per_hour: plan
                    .bound
                    .as_ref()
                    .map(|b| (b.bound * 10_000.0).round() / 10_000.0),
                above_bound_percent: plan
                    .bound
                    .as_ref()
                    .and_then(FleetBound::gap)
                    .map(|g| (g.max(0.0) * 1000.0).round() / 10.0),
                bound_converged: plan.bound.as_ref().map(|b| b.converged),
            },
            disruption: plan.disruption.as_ref().map(super::disruption::Report::of),
        }
    }
}
