//! Per-NodePool data the solver precomputes once: the pool's compatible instance types in
//! price order, its DaemonSet overhead, and a cache of which types suit a set of requirements.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::fasthash::FxHashMap;
use crate::instance_type::InstanceType;
use crate::labels;
use crate::requirements::{Operator, Requirements};
use crate::resources::{NUM_RESOURCES, Resources};
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
    /// Per resource slot, which types have at least a given allocatable amount (built when a
    /// claim first filters its types on that slot).
    slot_fits: [std::cell::OnceCell<SlotFit>; NUM_RESOURCES],
}

/// For one resource slot, the pool's types by allocatable amount, largest first, and for each
/// `k` the set of the first `k` as a bitset over type indices: the types with at least `r`
/// are a binary search and a lookup away (a claim filters its types for every pod it takes).
#[derive(Debug)]
struct SlotFit {
    /// Allocatable amounts, largest first.
    amounts: Vec<i64>,
    /// Words per bitset.
    words: usize,
    /// `words` words per prefix length `0..=types`.
    prefixes: Vec<u64>,
}

impl SlotFit {
    fn new(types: &[TypeInfo<'_>], slot: usize) -> SlotFit {
        let words = types.len().div_ceil(64).max(1);
        let mut order: Vec<usize> = (0..types.len()).collect();
        order.sort_by(|&a, &b| types[b].allocatable.0[slot].cmp(&types[a].allocatable.0[slot]));
        let mut prefixes = vec![0u64; words * (types.len() + 1)];
        for (k, &t) in order.iter().enumerate() {
            let (done, next) = prefixes.split_at_mut((k + 1) * words);
            next[..words].copy_from_slice(&done[k * words..]);
            next[t / 64] |= 1 << (t % 64);
        }
        SlotFit {
            amounts: order
                .iter()
                .map(|&t| types[t].allocatable.0[slot])
                .collect(),
            words,
            prefixes,
        }
    }

    /// The types whose allocatable amount is at least `amount`.
    fn at_least(&self, amount: i64) -> &[u64] {
        let k = self.amounts.partition_point(|&a| a >= amount);
        &self.prefixes[k * self.words..(k + 1) * self.words]
    }
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
            slot_fits: Default::default(),
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

    /// The types (a bitset over indices into `types`) whose allocatable holds `requests` in
    /// every slot of `slots`.
    pub fn fitting(&self, requests: &Resources, slots: &[usize]) -> Vec<u64> {
        let n = self.types.len();
        let mut out: Vec<u64> = (0..n.div_ceil(64).max(1))
            .map(|w| {
                let bits = n.saturating_sub(w * 64).min(64);
                if bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                }
            })
            .collect();
        for &slot in slots {
            let fit = self.slot_fits[slot].get_or_init(|| SlotFit::new(&self.types, slot));
            for (o, f) in out.iter_mut().zip(fit.at_least(requests.0[slot])) {
                *o &= f;
            }
        }
        out
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
