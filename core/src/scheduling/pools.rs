//! Per-NodePool data the solver precomputes once: the pool's compatible instance types in
//! price order, its DaemonSet overhead, and a cache of which types suit a set of requirements.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::fasthash::FxHashMap;
use crate::instance_type::InstanceType;
use crate::labels;
use crate::requirements::{Operator, Requirements};
use crate::resources::Resources;
use crate::snapshot::{NodePoolInput, Pod, Taint, untolerated};

/// One instance type of a pool, with its figures copied out for the hot loop.
#[derive(Debug)]
pub(crate) struct TypeInfo<'a> {
    pub it: &'a InstanceType,
    pub allocatable: Resources,
    pub capacity: Resources,
    /// Price of the cheapest offering the pool allows ($/h).
    pub price: f64,
}

/// A NodePool ready for scheduling.
#[derive(Debug)]
pub(crate) struct PoolData<'a> {
    pub input: &'a NodePoolInput,
    /// Types compatible with the pool's requirements, cheapest first.
    pub types: Vec<TypeInfo<'a>>,
    /// Requests of the DaemonSet pods that would run on a node of this pool.
    pub daemon_overhead: Resources,
    /// Label keys instance types define (their values decide compatibility).
    pub type_keys: BTreeSet<String>,
    /// Slot-wise maximum allocatable over `types`, ignoring limits.
    pub max_alloc: Resources,
    /// No type has a negative allocatable amount in any slot (so a zero request fits every
    /// slot, and fit checks may skip the slots a pod does not request).
    pub allocatable_nonnegative: bool,
    /// `limits - usage - what new claims have reserved`.
    pub remaining: Resources,
    /// The pool's nodes in the snapshot (for `node_limit`).
    pub existing_nodes: usize,
    /// NodeClaims opened from this pool in this solve.
    pub opened: usize,
    cache: FxHashMap<Requirements, Rc<Vec<u32>>>,
}

impl<'a> PoolData<'a> {
    /// `existing_nodes` is how many nodes of the snapshot belong to the pool.
    pub fn new(
        input: &'a NodePoolInput,
        daemon_sets: &[Pod],
        existing_nodes: usize,
    ) -> PoolData<'a> {
        let mut type_keys: BTreeSet<String> = BTreeSet::new();
        for it in &input.instance_types {
            type_keys.extend(it.requirements.iter().map(|(k, _)| k.clone()));
        }
        type_keys.insert(labels::ZONE.to_string());
        type_keys.insert(labels::CAPACITY_TYPE.to_string());
        let mut pool = PoolData {
            input,
            types: Vec::new(),
            daemon_overhead: Resources::ZERO,
            max_alloc: Resources::ZERO,
            allocatable_nonnegative: true,
            type_keys,
            remaining: input.limits.saturating_sub(&input.usage),
            existing_nodes,
            opened: 0,
            cache: FxHashMap::default(),
        };
        let mut types: Vec<(f64, &InstanceType)> = input
            .instance_types
            .iter()
            .filter(|it| pool.type_compatible(it, &input.requirements))
            .filter_map(|it| {
                it.cheapest_offering(&input.requirements)
                    .map(|o| (o.price, it))
            })
            .collect();
        types.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        pool.types = types
            .into_iter()
            .map(|(price, it)| TypeInfo {
                it,
                allocatable: it.allocatable(),
                capacity: it.capacity,
                price,
            })
            .collect();
        pool.allocatable_nonnegative = pool
            .types
            .iter()
            .all(|t| t.allocatable.0.iter().all(|v| *v >= 0));
        pool.max_alloc = pool
            .types
            .iter()
            .fold(Resources::ZERO, |acc, t| acc.slot_max(&t.allocatable));
        pool.daemon_overhead = daemon_sets
            .iter()
            .filter(|ds| daemon_runs_on(ds, &input.taints, &input.requirements))
            .fold(Resources::ZERO, |acc, ds| acc + ds.requests);
        pool
    }

    /// True when `spec.limits.nodes` allows no further node: the existing ones and the claims
    /// opened so far use it up (Karpenter's "node limits have been exhausted").
    pub fn node_limit_reached(&self) -> bool {
        self.input
            .node_limit
            .is_some_and(|limit| self.existing_nodes + self.opened >= limit)
    }

    /// True when `it` can satisfy `reqs`: on keys instance types define, a type that lacks the
    /// key only satisfies "must not exist"-style requirements (Karpenter gives such types an
    /// explicit DoesNotExist); zone and capacity type come from the offerings.
    pub fn type_compatible(&self, it: &InstanceType, reqs: &Requirements) -> bool {
        for (key, req) in reqs.iter() {
            if key == labels::ZONE || key == labels::CAPACITY_TYPE {
                continue;
            }
            match it.requirements.get(key) {
                Some(have) => {
                    if !have.intersects(req) {
                        return false;
                    }
                }
                None => {
                    if self.type_keys.contains(key)
                        && !matches!(req.operator(), Operator::NotIn | Operator::DoesNotExist)
                    {
                        return false;
                    }
                }
            }
        }
        it.cheapest_offering(reqs).is_some()
    }

    /// Indices (into `types`) of the types compatible with `reqs`, cached by the part of
    /// `reqs` that instance types can see.
    pub fn compatible_types(&mut self, reqs: &Requirements) -> Rc<Vec<u32>> {
        let mut relevant = Requirements::new();
        for (k, r) in reqs.iter() {
            if self.type_keys.contains(k) {
                relevant.add(k, r.clone());
            }
        }
        if let Some(hit) = self.cache.get(&relevant) {
            return hit.clone();
        }
        let list: Vec<u32> = (0..self.types.len() as u32)
            .filter(|&i| self.type_compatible(self.types[i as usize].it, &relevant))
            .collect();
        let list = Rc::new(list);
        self.cache.insert(relevant, list.clone());
        list
    }

    /// True when changing requirements from `old` to `new` can change which types fit.
    pub fn types_affected(&self, old: &Requirements, new: &Requirements) -> bool {
        new.iter()
            .any(|(k, r)| self.type_keys.contains(k) && old.get(k) != Some(r))
    }
}

/// Karpenter's rule for DaemonSet overhead: a DaemonSet counts on a pool's nodes when it
/// tolerates the pool's taints and its node requirements are compatible with the pool's.
fn daemon_runs_on(ds: &Pod, taints: &[Taint], reqs: &Requirements) -> bool {
    if untolerated(taints, &ds.tolerations).is_some() {
        return false;
    }
    let mut ds_reqs = ds.node_selector.clone();
    if let Some(first) = ds.required_node_affinity.first() {
        ds_reqs.add_all(first);
    }
    reqs.compatible(&ds_reqs).is_ok()
}

/// Distinct values of `key` among the given types (for `minValues`).
pub(crate) fn distinct_values(pool: &PoolData, types: &[u32], key: &str) -> usize {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for &i in types {
        let it = pool.types[i as usize].it;
        if key == labels::INSTANCE_TYPE {
            seen.insert(&it.name);
        } else if let Some(r) = it.requirements.get(key) {
            for v in r.values() {
                seen.insert(v);
            }
        }
    }
    seen.len()
}
