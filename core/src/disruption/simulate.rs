//! "Where would these pods go?" — answered by the scheduler, never by a second placement
//! algorithm (Karpenter v1 §9.2). The pods of the nodes being removed, of nodes already being
//! deleted, and the pending pods are placed on the remaining nodes and on new NodeClaims.

use std::collections::{BTreeMap, BTreeSet};

use crate::scheduling::{Decision, SolveOptions, solve};
use crate::snapshot::{ExistingNode, PodKey, Snapshot};

use super::input::DisruptionInput;

/// The scheduler's answer for one set of removed nodes.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// What the scheduler was given (kept so the decision can be checked independently).
    pub snapshot: Snapshot,
    /// The scheduler's decision.
    pub decision: Decision,
    /// Pods that must move (not pending ones) and found no place, with the reason; includes
    /// pods that would land on a managed node that is not initialized.
    pub failures: Vec<(PodKey, String)>,
    /// For each moved pod, the node it leaves.
    pub origin: BTreeMap<PodKey, String>,
}

impl Simulation {
    /// Every pod that must move found a place.
    pub fn all_placed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The nodes taken out of the cluster and the pods that must move.
pub struct Removal<'a> {
    /// Indices in `snapshot.nodes` of the nodes removed (candidates and deleting nodes).
    pub removed: &'a BTreeSet<usize>,
    /// Pods that must find a place, with the node they leave: the candidates' and the
    /// deleting nodes' moving pods.
    pub moving: Vec<(&'a crate::snapshot::Pod, &'a str)>,
    /// Pods of deleting nodes (exempt from the uninitialized-destination rule).
    pub from_deleting: &'a BTreeSet<PodKey>,
    /// NodeClaims launched by earlier commands of this plan (in flight, empty).
    pub launched: &'a [ExistingNode],
}

/// Runs the scheduler with `removal` applied.
pub fn simulate(
    input: &DisruptionInput,
    removal: &Removal<'_>,
    options: &SolveOptions,
) -> Simulation {
    let base = &input.snapshot;
    let mut snapshot = Snapshot {
        pods: base.pods.clone(),
        nodes: Vec::with_capacity(base.nodes.len() + removal.launched.len()),
        node_pools: base.node_pools.clone(),
        daemon_sets: base.daemon_sets.clone(),
        namespace_labels: base.namespace_labels.clone(),
    };
    for (i, node) in base.nodes.iter().enumerate() {
        if !removal.removed.contains(&i) {
            snapshot.nodes.push(node.clone());
        }
    }
    snapshot.nodes.extend(removal.launched.iter().cloned());
    let pending: BTreeSet<&PodKey> = base.pods.iter().map(|p| &p.key).collect();
    let mut origin = BTreeMap::new();
    for (pod, from) in &removal.moving {
        origin.insert(pod.key.clone(), (*from).to_owned());
        snapshot.pods.push((*pod).clone());
    }
    let decision = solve(&snapshot, options);
    let mut failures: Vec<(PodKey, String)> = decision
        .unschedulable
        .iter()
        .filter(|u| !pending.contains(&u.pod))
        .map(|u| (u.pod.clone(), u.reason.clone()))
        .collect();
    // A pod placed on a managed node that has not initialized yet is an error unless it
    // comes from a node that is already going away (Karpenter v1 §9.2).
    for plan in &decision.existing {
        let uninitialized = input
            .nodes
            .get(&plan.node)
            .is_some_and(|f| f.claim.is_some() && !f.initialized)
            || removal.launched.iter().any(|n| n.name == plan.node)
            || base
                .nodes
                .iter()
                .any(|n| n.name == plan.node && n.in_flight);
        if !uninitialized {
            continue;
        }
        for pod in &plan.pods {
            if origin.contains_key(pod) && !removal.from_deleting.contains(pod) {
                failures.push((
                    pod.clone(),
                    format!("would schedule against uninitialized node {}", plan.node),
                ));
            }
        }
    }
    failures.sort();
    Simulation {
        snapshot,
        decision,
        failures,
        origin,
    }
}
