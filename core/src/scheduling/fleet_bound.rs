//! How close a decision's new nodes are to the cheapest fleet that could exist: the
//! configuration-LP lower bound ([`super::optimal`]) for the pods it puts on new nodes.
//!
//! The bound relaxes everything but requests: each pod may use any instance type of any
//! NodePool (at that type's cheapest allowed offering, with the smallest DaemonSet overhead
//! any pool puts on it), and pool limits, zones and every other constraint are ignored. A
//! relaxation can only lower the optimum, so no fleet for those pods costs less. Types the
//! options exclude ([`Burstable::Exclude`]) are left out, as the user does not accept them;
//! a derating is a packing preference and does not change the bound.

use std::collections::{BTreeMap, HashMap};

use super::decision::Decision;
use super::optimal::{BinType, Kind, LpOptions, configuration_lp};
use super::packing::is_burstable;
use super::pools::PoolData;
use super::solver::{Burstable, SolveOptions};
use crate::resources::{NUM_RESOURCES, Resources};
use crate::snapshot::{NodePoolInput, Pod, PodKey, Snapshot};

/// A decision's new-node cost next to the lowest any fleet for the same pods could have.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetBound {
    /// Pods the decision puts on new nodes.
    pub pods: usize,
    /// $/h of the decision's new nodes (cheapest option of each).
    pub plan: f64,
    /// $/h no fleet for those pods can go below.
    pub bound: f64,
    /// Whether column generation converged (the bound is then the LP optimum; otherwise it is
    /// still valid, only looser).
    pub converged: bool,
}

impl FleetBound {
    /// How far above the bound the plan is (0.03 = 3%); `None` when the bound is 0.
    pub fn gap(&self) -> Option<f64> {
        (self.bound > 0.0).then(|| self.plan / self.bound - 1.0)
    }
}

/// The bound for `decision`'s new nodes, solved from `snapshot`; `None` when it puts no pod on
/// a new node or the LP cannot be solved (the reason is not the user's to act on).
pub fn fleet_bound(
    snapshot: &Snapshot,
    decision: &Decision,
    options: &SolveOptions,
) -> Option<FleetBound> {
    let requests: HashMap<&PodKey, Resources> =
        snapshot.pods.iter().map(|p| (&p.key, p.requests)).collect();
    let placed: Option<Vec<Resources>> = decision
        .new_node_claims
        .iter()
        .flat_map(|c| &c.pods)
        .map(|pod| requests.get(pod).copied())
        .collect();
    let (bound, converged, pods) = lower_bound(
        placed?,
        &snapshot.node_pools,
        &snapshot.daemon_sets,
        options.burstable,
    )?;
    Some(FleetBound {
        pods,
        plan: decision.new_cost_per_hour(),
        bound,
        converged,
    })
}

/// The configuration-LP lower bound on the $/h of any set of nodes of `node_pools` (with the
/// DaemonSets that would run on them) that holds pods with these `requests`, relaxed as the
/// module docs say; with whether the LP converged and how many pods it covers. `None` for no
/// pods, or when the LP cannot be solved.
pub fn lower_bound(
    requests: impl IntoIterator<Item = Resources>,
    node_pools: &[NodePoolInput],
    daemon_sets: &[Pod],
    burstable: Burstable,
) -> Option<(f64, bool, usize)> {
    let mut kinds: BTreeMap<[i64; NUM_RESOURCES], u32> = BTreeMap::new();
    for r in requests {
        *kinds.entry(r.0).or_default() += 1;
    }
    if kinds.is_empty() {
        return None;
    }
    let kinds: Vec<Kind> = kinds
        .into_iter()
        .map(|(r, count)| Kind {
            requests: Resources(r),
            count,
        })
        .collect();
    // Every pool's types, by name: the lowest price and the most room any pool gives one.
    let mut types: BTreeMap<&str, BinType> = BTreeMap::new();
    for input in node_pools {
        let pool = PoolData::new(input, daemon_sets, 0);
        for t in &pool.types {
            if is_burstable(t.it) && burstable == Burstable::Exclude {
                continue;
            }
            let room = t.allocatable.saturating_sub(&pool.daemon_overhead);
            types
                .entry(t.it.name.as_str())
                .and_modify(|b| {
                    b.price = b.price.min(t.price);
                    b.allocatable = b.allocatable.slot_max(&room);
                })
                .or_insert(BinType {
                    allocatable: room,
                    price: t.price,
                });
        }
    }
    let bins: Vec<BinType> = types.into_values().collect();
    let lp = configuration_lp(&kinds, &bins, &LpOptions::default()).ok()?;
    Some((
        lp.bound,
        lp.converged,
        kinds.iter().map(|k| k.count as usize).sum(),
    ))
}
