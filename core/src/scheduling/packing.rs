//! Cost-aware packing: when a new NodeClaim stops taking pods because growing it would cost
//! more than opening another one.

use super::claims::ClaimUpdate;
use super::preferences::PodState;
use super::solver::{ShapeCache, Solver, TopologyContext};

/// How new NodeClaims are filled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Packing {
    /// Karpenter's rule: a pod joins the first claim that still has an instance type it fits,
    /// however large (and pricier per unit) that type must become. The default: decisions match
    /// Karpenter's, and consolidation replaces expensive nodes later.
    #[default]
    Karpenter,
    /// A pod joins a claim only when the rise in the claim's cheapest price is no more than a
    /// new claim for the pod alone would cost in the same NodePool; otherwise it opens a new
    /// claim (and only falls back to growing a claim when no new claim can take it). Cheaper
    /// fleets of smaller nodes on large uniform workloads, but greedy: it can cost more where
    /// spread constraints leave the extra nodes half empty (docs/benchmarks.md).
    CostAware,
    /// Solve with both rules and keep the cheaper decision (Karpenter's on a tie): never dearer
    /// than Karpenter's rule, at twice the solve time.
    Cheapest,
    /// Karpenter's rule, then the new claims whose pods nothing else depends on are packed
    /// again from the configuration LP, pool by pool, and replaced when that is cheaper
    /// (`repack.rs`): never dearer than Karpenter's rule, usually within a few percent of the
    /// cheapest fleet that exists.
    Optimal,
}

/// How the optimal packer treats burstable (`t` category) instance types, whose CPU beyond a
/// baseline runs on credits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Burstable {
    /// Like any other type.
    #[default]
    Allow,
    /// Never packed onto.
    Exclude,
    /// Packed as if only this fraction (0–1) of their allocatable CPU existed: e.g. 0.4 for a
    /// `t3.large`'s 30% baseline with some headroom.
    Derate(f64),
}

/// True for the types [`Burstable`] is about: EC2's burstable-performance `t` category.
pub(crate) fn is_burstable(it: &crate::instance_type::InstanceType) -> bool {
    it.requirements
        .get(crate::labels::aws::INSTANCE_CATEGORY)
        .is_some_and(|r| r.has("t") && r.values().len() == 1)
}

impl Solver<'_> {
    /// Cost-aware packing: true when taking the pod raises the claim's cheapest price by more
    /// than a claim of the same pool holding only this pod would cost.
    pub(crate) fn grows_uneconomically(
        &mut self,
        ci: usize,
        update: &ClaimUpdate,
        state: &PodState,
        cache: &mut ShapeCache,
    ) -> bool {
        if self.packing != Packing::CostAware || self.claims[ci].pods.is_empty() {
            return false;
        }
        let claim = &self.claims[ci];
        let pool = &self.pools[claim.pool];
        let (Some(&now), Some(&after)) = (claim.types.first(), update.types.first()) else {
            return false;
        };
        let rise = pool.types[after as usize].price - pool.types[now as usize].price;
        if rise <= 0.0 {
            return false;
        }
        let pool_index = claim.pool;
        rise > self.fresh_price(pool_index, state, cache)
    }

    /// The cheapest price of a claim in pool `p` holding only this pod (infinite when none
    /// fits), cached per shape.
    fn fresh_price(&mut self, p: usize, state: &PodState, cache: &mut ShapeCache) -> f64 {
        if cache.fresh_price.len() < self.pools.len() {
            cache.fresh_price.resize(self.pools.len(), None);
        }
        if let Some(price) = cache.fresh_price[p] {
            return price;
        }
        let pod = &self.snap.pods[state.pod];
        // A pool that may open no node has no fresh claim to compare with, as with resource
        // limits that leave no type below.
        let price = if !self.pools[p].node_limit_reached()
            && self.pools[p]
                .input
                .requirements
                .compatible(&state.requirements)
                .is_ok()
        {
            let reqs = self.pools[p]
                .input
                .requirements
                .intersection(&state.requirements);
            let requests = self.pools[p].daemon_overhead + pod.requests;
            let compatible = self.pools[p].compatible_types(&reqs);
            let pool = &self.pools[p];
            // Types are cheapest first, so the first that fits is the price.
            compatible
                .iter()
                .map(|&t| &pool.types[t as usize])
                .find(|t| requests.fits_in(&t.allocatable) && t.capacity.fits_in(&pool.remaining))
                .map_or(f64::INFINITY, |t| t.price)
        } else {
            f64::INFINITY
        };
        cache.fresh_price[p] = Some(price);
        price
    }

    /// Grows the first claim set aside as uneconomic that still takes the pod.
    pub(crate) fn try_uneconomic(
        &mut self,
        state: &PodState,
        req_id: u32,
        ctx: &TopologyContext,
        cache: &mut ShapeCache,
    ) -> bool {
        for i in 0..cache.uneconomic.len() {
            let ci = cache.uneconomic[i] as usize;
            if let Ok(update) = self.claim_accepts(ci, state, req_id, ctx) {
                self.commit_claim(ci, state, req_id, update);
                return true;
            }
        }
        false
    }
}
