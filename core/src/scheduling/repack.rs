//! Optimal packing ([`Packing::Optimal`]): after Karpenter's rule has placed every pod, the new
//! NodeClaims whose pods nothing else depends on are packed again from the configuration LP
//! ([`super::optimal`]), pool by pool, and the new fleet replaces them only when it is cheaper.
//!
//! A pod may move only when moving it cannot change any other decision: it has no scheduling
//! constraint beyond its requests (no selector, affinity, spread, toleration, host port or
//! extended resource: the solver's "plain" pods) and no topology group of another pod counts it.
//! A claim is repacked only when all its pods may move, so every other claim, and every pod
//! on an existing node, stays exactly as Karpenter's rule left it. Pool limits (resources and
//! node count) are checked for the new claims the same way the solver reserves them.

use std::collections::BTreeMap;

use super::claims::{Claim, maxima};
use super::new_nodes::placeholder_hostname;
use super::optimal::{BinType, Kind, LpOptions, configuration_lp, pack};
use super::packing::is_burstable;
use super::solver::{Burstable, SolveOptions, Solver};
use crate::resources::{CPU, Resources};

/// Added to every node's price while packing, so that of fleets that cost the same the one
/// with fewer nodes wins (six 1-vCPU nodes or three 2-vCPU nodes at the same price per vCPU:
/// three). A millionth of a dollar an hour is far below any price difference that matters.
const TIE_BREAK_NODE_COST: f64 = 1e-6;

impl Solver<'_> {
    /// Repacks every pool's movable claims (see the module docs).
    pub(crate) fn repack_optimal(&mut self, options: &SolveOptions) {
        // New claims are named after every claim the first pass made, so no name repeats.
        let mut next_name = self.claims.len();
        for p in 0..self.pools.len() {
            let movable: Vec<usize> = (0..self.claims.len())
                .filter(|&ci| self.claims[ci].pool == p && self.claim_movable(ci))
                .collect();
            if movable.is_empty() {
                continue;
            }
            self.repack_pool(p, &movable, options, &mut next_name);
        }
    }

    /// True when every pod of claim `ci` may move.
    fn claim_movable(&self, ci: usize) -> bool {
        let claim = &self.claims[ci];
        !claim.pods.is_empty()
            && claim.pods.iter().all(|&i| {
                self.infos[i].plain && self.counted_in.get(i).is_none_or(|g| g.is_empty())
            })
    }

    /// Replaces the claims `movable` of pool `p` by the fleet the configuration LP packs for
    /// their pods, when that fleet is cheaper and within the pool's limits; otherwise (also
    /// when the LP cannot be solved) leaves them as they are.
    fn repack_pool(
        &mut self,
        p: usize,
        movable: &[usize],
        options: &SolveOptions,
        next_name: &mut usize,
    ) {
        let pool = &self.pools[p];
        let price_of = |claim: &Claim| {
            claim
                .types
                .first()
                .map_or(0.0, |&t| pool.types[t as usize].price)
        };
        let cost_before: f64 = movable.iter().map(|&ci| price_of(&self.claims[ci])).sum();
        // Pods by requests: one kind each, pods in the order Karpenter's rule placed them.
        let mut by_requests: BTreeMap<[i64; crate::resources::NUM_RESOURCES], Vec<usize>> =
            BTreeMap::new();
        for &ci in movable {
            for &pod in &self.claims[ci].pods {
                by_requests
                    .entry(self.snap.pods[pod].requests.0)
                    .or_default()
                    .push(pod);
            }
        }
        let kinds: Vec<Kind> = by_requests
            .iter()
            .map(|(r, pods)| Kind {
                requests: Resources(*r),
                count: pods.len() as u32,
            })
            .collect();
        // What the new claims may reserve: the pool's remaining limits plus what the claims
        // they replace hold.
        let released = movable.iter().fold(Resources::ZERO, |acc, &ci| {
            acc + self.claims[ci].max_capacity
        });
        let available = pool.remaining + released;
        // The types the packer may use, as pool type indices, and their bins.
        let mut type_of_bin: Vec<usize> = Vec::new();
        let mut bins: Vec<BinType> = Vec::new();
        for (t, info) in pool.types.iter().enumerate() {
            if !info.capacity.fits_in(&available) {
                continue;
            }
            let mut allocatable = info.allocatable;
            if is_burstable(info.it) {
                match options.burstable {
                    Burstable::Allow => {}
                    Burstable::Exclude => continue,
                    Burstable::Derate(f) => {
                        allocatable.0[CPU] = (allocatable.0[CPU] as f64 * f.clamp(0.0, 1.0)) as i64
                    }
                }
            }
            let Some(room) = checked_sub(&allocatable, &pool.daemon_overhead) else {
                continue; // the DaemonSets alone do not fit
            };
            type_of_bin.push(t);
            bins.push(BinType {
                allocatable: room,
                price: info.price,
            });
        }
        let lp_options = LpOptions {
            node_cost: options.node_cost + TIE_BREAK_NODE_COST,
            ..LpOptions::default()
        };
        // An LP that cannot be solved leaves Karpenter's fleet in place.
        let Ok(lp) = configuration_lp(&kinds, &bins, &lp_options) else {
            return;
        };
        let fleet = pack(&kinds, &bins, &lp, &lp_options);
        if fleet.unplaced.iter().any(|&n| n > 0) {
            return;
        }
        // The new claims: each over every type (cheapest first) its contents fit, as the
        // solver's claims are, so CreateFleet keeps its choice of capacity pools.
        let mut taken: Vec<usize> = vec![0; kinds.len()];
        let pod_lists: Vec<&Vec<usize>> = by_requests.values().collect();
        let mut claims: Vec<Claim> = Vec::new();
        for node in &fleet.nodes {
            let mut requests = pool.daemon_overhead;
            let mut node_pods = Vec::new();
            for (k, &n) in node.counts.iter().enumerate() {
                let n = n as usize;
                node_pods.extend_from_slice(&pod_lists[k][taken[k]..taken[k] + n]);
                taken[k] += n;
                for _ in 0..n {
                    requests += kinds[k].requests;
                }
            }
            let types: Vec<u32> = type_of_bin
                .iter()
                .zip(&bins)
                .filter(|(_, b)| (requests - pool.daemon_overhead).fits_in(&b.allocatable))
                .map(|(&t, _)| t as u32)
                .collect();
            if types.is_empty() {
                return;
            }
            let (max_alloc, max_capacity) = maxima(pool, &types);
            let hostname = placeholder_hostname(*next_name);
            *next_name += 1;
            claims.push(Claim {
                pool: p,
                host_domain: None,
                hostname,
                reqs: pool.input.requirements.clone(),
                applied: Vec::new(),
                types,
                max_alloc,
                max_capacity,
                requests,
                pods: node_pods,
                host_ports: Vec::new(),
            });
        }
        let reserved = claims
            .iter()
            .fold(Resources::ZERO, |acc, c| acc + c.max_capacity);
        if !reserved.fits_in(&available) {
            return;
        }
        if let Some(limit) = pool.input.node_limit
            && pool.existing_nodes + pool.opened - movable.len() + claims.len() > limit
        {
            return;
        }
        let cost_after: f64 = claims.iter().map(price_of).sum();
        let with_node_cost = |cost: f64, n: usize| cost + options.node_cost * n as f64;
        // Strictly cheaper (beyond rounding), counting the per-node cost both ways.
        if with_node_cost(cost_after, claims.len())
            >= with_node_cost(cost_before, movable.len()) - 1e-9
        {
            return;
        }
        let hostname_table = self.hostname_table;
        for claim in &mut claims {
            claim.host_domain = hostname_table.map(|t| self.topo.tables[t].intern(&claim.hostname));
        }
        let pool = &mut self.pools[p];
        pool.remaining = available - reserved;
        pool.opened = pool.opened - movable.len() + claims.len();
        let mut index = 0;
        self.claims.retain(|_| {
            let keep = !movable.contains(&index);
            index += 1;
            keep
        });
        self.claims.extend(claims);
    }
}

/// `a - b` when no slot goes negative.
fn checked_sub(a: &Resources, b: &Resources) -> Option<Resources> {
    b.fits_in(a).then(|| *a - *b)
}
