//! "Where would these pods go?" — answered by the scheduler, never by a second placement
//! algorithm (Karpenter v1 §9.2). The pods of the nodes being removed, of nodes already being
//! deleted, and the pending pods are placed on the remaining nodes and on new NodeClaims.
//!
//! The scheduler is handed a [`SnapshotView`] of the input (the remaining nodes and the pods
//! by reference): a plan runs many simulations over one cluster, and cloning every node and
//! pod for each of them used to cost more than the scheduling itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::scheduling::{Decision, Placement, SolveOptions, place};
use crate::snapshot::{ExistingNode, NodeUsage, Pod, PodKey, Snapshot, SnapshotView};

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

/// What a decision is taken on: the scheduler's decision (by position in [`view`]'s snapshot)
/// and the moving pods it could not place. A [`Simulation`] without the copy of its input and
/// without naming every pod.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The scheduler's decision, by position in [`view`]`(input, removal)`.
    pub placement: Placement,
    /// As [`Simulation::failures`].
    pub failures: Vec<(PodKey, String)>,
}

/// A pod that must find a place.
#[derive(Clone, Copy, Debug)]
pub struct Moving<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The node it leaves.
    pub from: &'a str,
    /// That node is already being deleted (its pods are exempt from the
    /// uninitialized-destination rule).
    pub from_deleting: bool,
}

/// The nodes taken out of the cluster and the pods that must move.
pub struct Removal<'a> {
    /// Per index in `snapshot.nodes`, whether the node is removed (candidates and deleting
    /// nodes).
    pub removed: &'a [bool],
    /// Pods that must find a place, in order: the deleting nodes' and the candidates' moving
    /// pods.
    pub moving: &'a [Moving<'a>],
    /// NodeClaims launched by earlier commands of this plan (in flight, empty).
    pub launched: &'a [ExistingNode],
    /// [`NodeUsage::of`] every node of `snapshot.nodes` then of every launched one, when the
    /// caller keeps it across simulations.
    pub usage: Option<&'a [NodeUsage]>,
    /// No two pods of the input (pending or bound) share a key, so a pod's position in the
    /// scheduler's input identifies it: set it only when [`distinct_keys`] says so. Otherwise
    /// pods are matched by key, the last listing of a key counting as its origin.
    pub distinct_keys: bool,
}

/// True when no two pods of `input` (pending or bound to a node) share a namespace and name.
pub fn distinct_keys(input: &DisruptionInput) -> bool {
    let snapshot = &input.snapshot;
    let mut keys: Vec<&PodKey> = snapshot
        .pods
        .iter()
        .chain(snapshot.nodes.iter().flat_map(|n| n.pods.iter()))
        .map(|p| &p.key)
        .collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    keys.len() == count
}

/// What the scheduler is given for `removal`: the pending pods then the moving ones; the
/// nodes not removed, in order, then the launched ones.
pub fn view<'a>(input: &'a DisruptionInput, removal: &Removal<'a>) -> SnapshotView<'a> {
    let base = &input.snapshot;
    let mut pods = Vec::with_capacity(base.pods.len() + removal.moving.len());
    pods.extend(base.pods.iter());
    pods.extend(removal.moving.iter().map(|m| m.pod));
    let mut nodes = Vec::with_capacity(base.nodes.len() + removal.launched.len());
    nodes.extend(
        base.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !removal.removed.get(*i).copied().unwrap_or(false))
            .map(|(_, n)| n),
    );
    nodes.extend(removal.launched.iter());
    let usage = removal.usage.map(|all| {
        all.iter()
            .enumerate()
            .filter(|(i, _)| !removal.removed.get(*i).copied().unwrap_or(false))
            .map(|(_, u)| u)
            .collect()
    });
    SnapshotView {
        pods,
        nodes,
        usage,
        node_pools: &base.node_pools,
        daemon_sets: &base.daemon_sets,
        namespace_labels: &base.namespace_labels,
    }
}

/// Runs the scheduler with `removal` applied and says which moving pods found no place.
pub fn answer(input: &DisruptionInput, removal: &Removal<'_>, options: &SolveOptions) -> Answer {
    let base = &input.snapshot;
    let view = view(input, removal);
    let placement = place(&view, options);
    let pending = base.pods.len();
    let mut failures: Vec<(PodKey, String)> = Vec::new();
    // Pending pods that stay pending are not failures; neither is a moving pod listed under a
    // pending pod's key.
    let mut pending_keys: Option<BTreeSet<&PodKey>> = None;
    for (i, reason) in &placement.unschedulable {
        if *i < pending {
            continue;
        }
        let key = &view.pods[*i].key;
        if !removal.distinct_keys
            && pending_keys
                .get_or_insert_with(|| base.pods.iter().map(|p| &p.key).collect())
                .contains(key)
        {
            continue;
        }
        failures.push((key.clone(), reason.clone()));
    }
    // A pod placed on a managed node that has not initialized yet is an error unless it
    // comes from a node that is already going away (Karpenter v1 §9.2).
    let uninitialized: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|(_, f)| f.claim.is_some() && !f.initialized)
        .map(|(name, _)| name.as_str())
        .chain(removal.launched.iter().map(|n| n.name.as_str()))
        .chain(
            base.nodes
                .iter()
                .filter(|n| n.in_flight)
                .map(|n| n.name.as_str()),
        )
        .collect();
    if !uninitialized.is_empty() {
        let mut landed: Vec<(usize, &str)> = Vec::new();
        for (ni, assigned) in &placement.existing {
            let node = view.nodes[*ni].name.as_str();
            if uninitialized.contains(node) {
                landed.extend(assigned.iter().map(|&i| (i, node)));
            }
        }
        if removal.distinct_keys {
            for (i, node) in landed {
                if i >= pending && !removal.moving[i - pending].from_deleting {
                    failures.push((
                        view.pods[i].key.clone(),
                        format!("would schedule against uninitialized node {node}"),
                    ));
                }
            }
        } else if !landed.is_empty() {
            // Whether each such pod is a moving one, and whether it leaves a deleting node
            // under any of its listings.
            let wanted: BTreeSet<&PodKey> =
                landed.iter().map(|(i, _)| &view.pods[*i].key).collect();
            let mut exempt: BTreeMap<&PodKey, bool> = BTreeMap::new();
            for m in removal
                .moving
                .iter()
                .filter(|m| wanted.contains(&m.pod.key))
            {
                *exempt.entry(&m.pod.key).or_default() |= m.from_deleting;
            }
            for (i, node) in landed {
                let key = &view.pods[i].key;
                if exempt.get(key) == Some(&false) {
                    failures.push((
                        key.clone(),
                        format!("would schedule against uninitialized node {node}"),
                    ));
                }
            }
        }
    }
    failures.sort();
    Answer {
        placement,
        failures,
    }
}

/// For each moving pod, the node it leaves (the last one listed, should a pod be listed twice).
pub fn origins(removal: &Removal<'_>) -> BTreeMap<PodKey, String> {
    removal
        .moving
        .iter()
        .map(|m| (m.pod.key.clone(), m.from.to_owned()))
        .collect()
}

/// Runs the scheduler with `removal` applied, keeping a copy of what it was given.
pub fn simulate(
    input: &DisruptionInput,
    removal: &Removal<'_>,
    options: &SolveOptions,
) -> Simulation {
    let Answer {
        placement,
        failures,
    } = answer(input, removal, options);
    let view = view(input, removal);
    Simulation {
        decision: placement.to_decision(&view),
        snapshot: view.to_snapshot(),
        failures,
        origin: origins(removal),
    }
}
