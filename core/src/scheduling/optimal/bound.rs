//! Column generation for the configuration LP and Farley's lower bound (see the module docs of
//! [`super`]).

use std::collections::HashSet;

use super::knapsack::{self, Item, max_copies};
use super::simplex::CoveringLp;
use super::{BinType, Kind, LpError, LpOptions};
use crate::resources::{NUM_RESOURCES, RESOURCE_NAMES, Resources};

/// A configuration (one node's contents) of the LP, with its value in the solution.
#[derive(Clone, Debug, PartialEq)]
pub struct LpColumn {
    /// Index into the types given to [`configuration_lp`].
    pub type_index: usize,
    /// Pods of each kind on one such node, indexed like the kinds given.
    pub counts: Vec<u32>,
    /// How many such nodes the LP solution opens (fractional; positive in
    /// [`ConfigurationLp::columns`], often 0 in [`ConfigurationLp::generated`]).
    pub value: f64,
}

/// The result of [`configuration_lp`]. Costs include [`LpOptions::node_cost`] per node.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigurationLp {
    /// A lower bound on the cost of any fleet holding every placeable pod; valid whether or
    /// not the column generation converged.
    pub bound: f64,
    /// The objective of the last master LP: an upper bound on the LP optimum, equal to it (up
    /// to tolerances) when `converged`.
    pub lp_objective: f64,
    /// True when exact pricing proved that no configuration improves the master LP.
    pub converged: bool,
    /// Master solves made.
    pub rounds: usize,
    /// The configurations with positive value in the last master solution, sorted by type
    /// index then counts.
    pub columns: Vec<LpColumn>,
    /// The last master's dual (marginal cost of one more pod) per kind, clipped at 0; 0 for
    /// kinds outside the LP.
    pub duals: Vec<f64>,
    /// Kinds with pods that fit on no type at all, excluded from the LP and the bound.
    pub unplaceable: Vec<usize>,
    /// Every configuration generated, with its value in the last master solution (mostly 0),
    /// sorted like `columns`: the pool [`super::pack`] re-solves leftovers over.
    pub generated: Vec<LpColumn>,
    /// Types the LP used: those some pod fits on and no other type dominates (no dearer and at
    /// least as large in every resource some pod requests; of identical ones the first).
    pub types_considered: Vec<usize>,
}

/// Solves the configuration LP of packing `kinds` onto nodes of `types` by column generation
/// and returns a valid lower bound on the cost of any fleet, with the LP solution. Kinds with
/// no pods are ignored; kinds that fit no type are reported in
/// [`ConfigurationLp::unplaceable`]. Errors only on invalid input or simplex failure.
pub fn configuration_lp(
    kinds: &[Kind],
    types: &[BinType],
    options: &LpOptions,
) -> Result<ConfigurationLp, LpError> {
    validate(kinds, types, options)?;
    column_generation(kinds, types, options, &[], Effort::Full)
}

/// How much pricing work [`column_generation`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effort {
    /// Every tier up to the full node budget, until converged or out of rounds: the bound of
    /// [`configuration_lp`].
    Full,
    /// Greedy fills only, for at most this many rounds: a good LP solution quickly, with a
    /// valid but weaker bound (for the packer's re-solves).
    Quick {
        /// Most master solves.
        rounds: usize,
    },
}

/// [`configuration_lp`] without input validation (the caller has checked or sanitised it:
/// kinds with negative requests must have no pods, types with unusable prices are skipped),
/// starting from the `seed` configurations too ((type, counts per kind), capped to the
/// counts; ones that do not fit are skipped).
pub(super) fn column_generation(
    kinds: &[Kind],
    types: &[BinType],
    options: &LpOptions,
    seed: &[(usize, Vec<u32>)],
    effort: Effort,
) -> Result<ConfigurationLp, LpError> {
    let prices: Vec<f64> = types.iter().map(|t| t.price + options.node_cost).collect();
    let candidates = candidate_types(kinds, types, &prices);

    // One LP row per kind that has pods and fits somewhere.
    let mut rows = Vec::new();
    let mut unplaceable = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        if kind.count == 0 {
            continue;
        }
        if candidates
            .iter()
            .any(|&t| kind.requests.fits_in(&types[t].allocatable))
        {
            rows.push(i);
        } else {
            unplaceable.push(i);
        }
    }
    let demand: Vec<f64> = rows.iter().map(|&i| f64::from(kinds[i].count)).collect();
    let mut master = Master {
        lp: CoveringLp::new(&demand, options.simplex.clone())?,
        columns: Vec::new(),
        seen: HashSet::new(),
    };

    let input = Input {
        kinds,
        types,
        rows: &rows,
        prices: &prices,
    };
    master.add_single_kind_columns(&input, &candidates)?;
    master.add_seed(&input, seed)?;

    let max_rounds = match effort {
        Effort::Full => options.max_rounds,
        Effort::Quick { rounds } => rounds,
    }
    .max(1);
    let candidate_prices: Vec<f64> = candidates.iter().map(|&t| prices[t]).collect();
    let pricing = Pricing {
        types,
        candidates: &candidates,
        prices: &candidate_prices,
        options,
        effort,
    };
    let mut rounds = 0;
    let mut bound: f64 = 0.0;
    let mut converged = false;
    loop {
        master.lp.solve()?;
        rounds += 1;
        let duals: Vec<f64> = master
            .lp
            .duals()
            .into_iter()
            .map(|y| if y.is_finite() { y.max(0.0) } else { 0.0 })
            .collect();
        let items: Vec<Item> = rows
            .iter()
            .zip(&duals)
            .map(|(&i, &y)| Item {
                requests: kinds[i].requests,
                max_count: kinds[i].count,
                value: y,
            })
            .collect();
        let last_round = rounds >= max_rounds;
        let priced = pricing.price(&items, &master, last_round);
        let dual_value: f64 = duals.iter().zip(&demand).map(|(y, d)| y * d).sum();
        bound = bound.max(farley_bound(dual_value, &priced.upper, &candidate_prices));

        if priced.found.is_empty() {
            converged = priced.proven;
            break;
        }
        if last_round {
            break;
        }
        for (t, counts) in priced.found {
            master.add(t, counts, prices[t])?;
        }
    }

    let lp_objective = master.lp.objective();
    let duals_by_kind = {
        let mut by_kind = vec![0.0; kinds.len()];
        for (&i, y) in rows.iter().zip(master.lp.duals()) {
            by_kind[i] = if y.is_finite() { y.max(0.0) } else { 0.0 };
        }
        by_kind
    };
    let mut generated = master.columns_by_kind(&input);
    generated.sort_by(|a, b| {
        (a.type_index, &a.counts)
            .cmp(&(b.type_index, &b.counts))
            .then(a.value.total_cmp(&b.value))
    });
    let columns = generated
        .iter()
        .filter(|c| c.value > 1e-12)
        .cloned()
        .collect();
    Ok(ConfigurationLp {
        // The bound can never honestly exceed the master's value; rounding aside, cap it there.
        bound: bound.min(lp_objective),
        lp_objective,
        converged,
        rounds,
        columns,
        duals: duals_by_kind,
        unplaceable,
        types_considered: candidates,
        generated,
    })
}

/// The master LP and the (type, counts per row) behind each of its columns.
struct Master {
    lp: CoveringLp,
    columns: Vec<(usize, Vec<u32>)>,
    seen: HashSet<(usize, Vec<u32>)>,
}

/// What the master's rows and columns refer to: the kinds, types, LP rows (kind indices) and prices
/// (with node cost).
struct Input<'a> {
    kinds: &'a [Kind],
    types: &'a [BinType],
    rows: &'a [usize],
    prices: &'a [f64],
}

impl Master {
    /// For each row, the node of one candidate type holding as many of the kind's pods as fit
    /// (up to its count) at the lowest price per pod. These single-row columns give the
    /// simplex its feasible starting basis.
    fn add_single_kind_columns(
        &mut self,
        input: &Input,
        candidates: &[usize],
    ) -> Result<(), LpError> {
        for (r, &i) in input.rows.iter().enumerate() {
            let kind = &input.kinds[i];
            let mut best: Option<(f64, usize, u32)> = None;
            for &t in candidates {
                let k = max_copies(&kind.requests, &input.types[t].allocatable, kind.count);
                if k == 0 {
                    continue;
                }
                let per_pod = input.prices[t] / f64::from(k);
                if best.is_none_or(|(b, _, _)| per_pod < b) {
                    best = Some((per_pod, t, k));
                }
            }
            if let Some((_, t, k)) = best {
                let mut counts = vec![0; input.rows.len()];
                counts[r] = k;
                self.add(t, counts, input.prices[t])?;
            }
        }
        Ok(())
    }

    /// Adds the `seed` configurations (type, counts per kind), capped to the kinds' counts;
    /// skips those of unknown or unpriced types, empty ones and ones that do not fit.
    fn add_seed(&mut self, input: &Input, seed: &[(usize, Vec<u32>)]) -> Result<(), LpError> {
        for (t, counts) in seed {
            let (Some(bin), Some(&price)) = (input.types.get(*t), input.prices.get(*t)) else {
                continue;
            };
            let capped: Vec<u32> = input
                .kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| counts.get(i).map_or(0, |&k| k.min(kind.count)))
                .collect();
            let by_row: Vec<u32> = input.rows.iter().map(|&i| capped[i]).collect();
            if price.is_finite()
                && by_row.iter().any(|&k| k > 0)
                && contents(input.kinds, &capped).fits_in(&bin.allocatable)
                && !self.has(*t, &by_row)
            {
                self.add(*t, by_row, price)?;
            }
        }
        Ok(())
    }

    /// Every column with its value in the current solution, counts indexed by kind.
    fn columns_by_kind(&self, input: &Input) -> Vec<LpColumn> {
        self.lp
            .primal()
            .into_iter()
            .zip(&self.columns)
            .map(|(x, (t, row_counts))| {
                let mut counts = vec![0; input.kinds.len()];
                for (&i, &k) in input.rows.iter().zip(row_counts) {
                    counts[i] = k;
                }
                LpColumn {
                    type_index: *t,
                    counts,
                    value: x,
                }
            })
            .collect()
    }

    fn has(&self, type_index: usize, counts: &[u32]) -> bool {
        self.seen.contains(&(type_index, counts.to_vec()))
    }

    fn add(&mut self, type_index: usize, counts: Vec<u32>, price: f64) -> Result<(), LpError> {
        let entries: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, k)| **k > 0)
            .map(|(r, &k)| (r, f64::from(k)))
            .collect();
        self.lp.add_column(price, &entries)?;
        self.seen.insert((type_index, counts.clone()));
        self.columns.push((type_index, counts));
        Ok(())
    }
}

/// The pricing step: searches every candidate type for configurations worth more than its
/// price at the current duals, in three tiers of rising cost, each run only when the cheaper
/// ones found nothing (or on the last round, where tight `U(t)` make the final bound).
struct Pricing<'a> {
    types: &'a [BinType],
    candidates: &'a [usize],
    /// Price (with node cost) per candidate.
    prices: &'a [f64],
    options: &'a LpOptions,
    effort: Effort,
}

/// What one pricing round found.
struct Priced {
    /// New improving columns: (type index, counts per row).
    found: Vec<(usize, Vec<u32>)>,
    /// Per candidate, an upper bound `U(t)` on the value of any configuration.
    upper: Vec<f64>,
    /// True when every `U(t)` came from a finished search.
    proven: bool,
}

impl Pricing<'_> {
    fn price(&self, items: &[Item], master: &Master, last_round: bool) -> Priced {
        let n = self.candidates.len();
        let mut priced = Priced {
            found: Vec::new(),
            upper: vec![0.0; n],
            proven: false,
        };
        // 1. Greedy fills: good columns in microseconds, but no proof.
        for (u, &t) in self.candidates.iter().enumerate() {
            for fill in knapsack::greedy_fills(&self.types[t].allocatable, items) {
                priced.upper[u] = fill.upper_bound;
                self.consider(u, fill.value, fill.counts, master, &mut priced.found);
            }
        }
        if (!priced.found.is_empty() && !last_round) || self.effort != Effort::Full {
            return priced;
        }
        // 2. A quick search per type, then 3. the full budget on the types it did not settle.
        // Only configurations worth more than the price matter, and proving that there are
        // none is far quicker than finding the best one.
        let mut settled = vec![false; n];
        for budget in [self.options.quick_node_budget, self.options.node_budget] {
            for (u, &t) in self.candidates.iter().enumerate() {
                if settled[u] {
                    continue;
                }
                let solution = knapsack::branch_and_bound_above(
                    &self.types[t].allocatable,
                    items,
                    self.prices[u] * (1.0 + self.options.epsilon),
                    budget,
                );
                settled[u] = solution.exact;
                priced.upper[u] = priced.upper[u].min(solution.upper_bound);
                self.consider(
                    u,
                    solution.value,
                    solution.counts,
                    master,
                    &mut priced.found,
                );
                for counts in solution.runners_up {
                    let value = items
                        .iter()
                        .zip(&counts)
                        .map(|(item, &k)| item.value * f64::from(k))
                        .sum();
                    self.consider(u, value, counts, master, &mut priced.found);
                }
            }
            if !priced.found.is_empty() && !last_round {
                break;
            }
        }
        priced.proven = settled.iter().all(|&s| s);
        priced
    }

    /// Keeps the configuration if it improves and is new.
    fn consider(
        &self,
        u: usize,
        value: f64,
        counts: Vec<u32>,
        master: &Master,
        found: &mut Vec<(usize, Vec<u32>)>,
    ) {
        let t = self.candidates[u];
        if improves(value, self.prices[u], self.options.epsilon)
            && !master.has(t, &counts)
            && !found.iter().any(|(ft, fc)| *ft == t && *fc == counts)
        {
            found.push((t, counts));
        }
    }
}

/// True when a configuration worth `value` at the duals has a negative reduced cost beyond
/// the tolerance on a type costing `price`.
fn improves(value: f64, price: f64, epsilon: f64) -> bool {
    value > price * (1.0 + epsilon) && value > 0.0
}

/// Farley's bound `(Σ count·y) / θ` with `θ = max(1, maxₜ U(t)/price(t))`.
fn farley_bound(dual_value: f64, upper: &[f64], prices: &[f64]) -> f64 {
    let mut theta: f64 = 1.0;
    for (&u, &price) in upper.iter().zip(prices) {
        if u <= 0.0 {
            continue;
        }
        if price <= 0.0 || !u.is_finite() {
            // A free type holding something of positive value: only 0 is a safe bound.
            return 0.0;
        }
        theta = theta.max(u / price);
    }
    (dual_value / theta).max(0.0)
}

fn validate(kinds: &[Kind], types: &[BinType], options: &LpOptions) -> Result<(), LpError> {
    for (name, value) in [
        ("epsilon", options.epsilon),
        ("node_cost", options.node_cost),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(LpError::InvalidOption { name, value });
        }
    }
    for (type_index, t) in types.iter().enumerate() {
        if !(t.price.is_finite() && t.price >= 0.0) {
            return Err(LpError::InvalidPrice {
                type_index,
                price: t.price,
            });
        }
    }
    for (kind_index, kind) in kinds.iter().enumerate() {
        if let Some((slot, &amount)) = kind.requests.0.iter().enumerate().find(|(_, a)| **a < 0) {
            return Err(LpError::InvalidRequest {
                kind_index,
                resource: RESOURCE_NAMES[slot],
                amount,
            });
        }
    }
    Ok(())
}

/// The summed requests of `counts` pods of each kind (saturating).
pub(super) fn contents(kinds: &[Kind], counts: &[u32]) -> Resources {
    let mut total = Resources::ZERO;
    for (kind, &c) in kinds.iter().zip(counts) {
        for (sum, &amount) in total.0.iter_mut().zip(&kind.requests.0) {
            *sum = sum.saturating_add(amount.saturating_mul(i64::from(c)));
        }
    }
    total
}

/// True for a kind the packing can work with: it has pods and requests nothing negative.
pub(super) fn active(kind: &Kind) -> bool {
    kind.count > 0 && kind.requests.0.iter().all(|&a| a >= 0)
}

/// Types worth packing onto, ascending: a usable price (finite, at least 0), some active kind
/// fits, and no other such type dominates it (no dearer, at least as large in every slot an
/// active kind requests; of identical ones the first). Comparing only requested slots is
/// enough because pods use nothing else, and a type some pod fits has room for zero of the
/// rest.
pub(super) fn candidate_types(kinds: &[Kind], types: &[BinType], prices: &[f64]) -> Vec<usize> {
    let mut relevant = [false; NUM_RESOURCES];
    for kind in kinds.iter().filter(|k| active(k)) {
        for (slot, &amount) in kind.requests.0.iter().enumerate() {
            relevant[slot] |= amount > 0;
        }
    }
    let useful: Vec<usize> = (0..types.len().min(prices.len()))
        .filter(|&t| prices[t].is_finite() && prices[t] >= 0.0)
        .filter(|&t| {
            kinds
                .iter()
                .any(|k| active(k) && k.requests.fits_in(&types[t].allocatable))
        })
        .collect();
    let at_least = |u: usize, t: usize| {
        (0..NUM_RESOURCES)
            .all(|s| !relevant[s] || types[u].allocatable.0[s] >= types[t].allocatable.0[s])
    };
    let dominates = |u: usize, t: usize| u != t && prices[u] <= prices[t] && at_least(u, t);
    useful
        .iter()
        .copied()
        .filter(|&t| {
            !useful.iter().any(|&u| {
                // Mutual domination means identical for packing: keep the lower index.
                dominates(u, t) && (!dominates(t, u) || u < t)
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "bound_tests.rs"]
mod tests;
