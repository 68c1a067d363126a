//! The pricing problem of the configuration LP: a bounded multi-dimensional integer knapsack.
//!
//! Given one node's capacity and pod kinds with values (the LP duals) and count limits, choose
//! how many pods of each kind to put on the node so that the total value is largest and the
//! summed requests fit in every resource slot. [`greedy`] and [`greedy_fills`] find good
//! configurations fast; [`branch_and_bound`] searches depth-first for the best one within a
//! node budget and reports a valid upper bound on the optimum either way, and
//! [`branch_and_bound_above`] only for one worth more than a given floor (a column's price),
//! which is much quicker to settle.
//!
//! The bound is the smallest fractional-knapsack value over single constraints implied by the
//! real ones: each resource slot alone, and (for the exact search) the slots added up with the
//! multipliers of the root LP relaxation, a surrogate constraint as tight as that LP at the
//! root. Each drops integrality and all other constraints, so each is a relaxation.

use super::simplex::{CoveringLp, SimplexOptions};
use crate::resources::{NUM_RESOURCES, Resources};

/// One pod kind offered to the knapsack.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Requests of one pod. Negative amounts are read as zero.
    pub requests: Resources,
    /// At most this many pods of the kind may be chosen.
    pub max_count: u32,
    /// Value of one pod. Values that are not finite and positive are never chosen.
    pub value: f64,
}

/// A configuration found by [`greedy`] or [`branch_and_bound`].
#[derive(Clone, Debug, PartialEq)]
pub struct KnapsackSolution {
    /// How many pods of each item, in item order.
    pub counts: Vec<u32>,
    /// Total value of `counts`.
    pub value: f64,
    /// An upper bound on the best possible value (≥ `value`).
    pub upper_bound: f64,
    /// True when the search finished: `upper_bound` is then proven (and `value` optimal up to
    /// a relative 1e-12, unless a floor was given and nothing beats it).
    pub exact: bool,
    /// Search nodes visited (0 for [`greedy`]).
    pub nodes: u64,
    /// A few configurations found on the way that were worth more than the floor of
    /// [`branch_and_bound_above`] but less than `counts`, best first: more columns per search.
    pub runners_up: Vec<Vec<u32>>,
}

/// How many runners-up a search keeps.
const RUNNERS_UP: usize = 3;

/// How many copies of `requests` fit in `capacity`, at most `limit`. Negative requests count as
/// zero; a capacity with a negative slot holds nothing, as with [`Resources::fits_in`].
pub fn max_copies(requests: &Resources, capacity: &Resources, limit: u32) -> u32 {
    let mut copies = u64::from(limit);
    for (&want, &have) in requests.0.iter().zip(&capacity.0) {
        if have < 0 {
            return 0;
        }
        if want > 0 {
            copies = copies.min((have / want) as u64);
        }
    }
    copies as u32
}

/// Fills the node in decreasing order of value per size (size: the largest fraction of the
/// capacity one pod takes in any slot; ties by item index), each item as many times as fits.
pub fn greedy(capacity: &Resources, items: &[Item]) -> KnapsackSolution {
    let problem = Problem::new(capacity, items);
    problem.solution(problem.greedy())
}

/// Greedy fills in several orders (value per largest share of the node, per summed share over
/// the slots, and value alone), each configuration once, the [`greedy`] one first. Column
/// generation adds all that improve: more columns per round, fewer rounds.
pub fn greedy_fills(capacity: &Resources, items: &[Item]) -> Vec<KnapsackSolution> {
    let problem = Problem::new(capacity, items);
    let mut fills: Vec<KnapsackSolution> = Vec::new();
    for order in problem.fill_orders() {
        let counts = problem.fill(&order);
        if !fills.iter().any(|f| f.counts == counts) {
            fills.push(problem.solution(counts));
        }
    }
    fills
}

/// The relaxation bound on the best value (see the module docs), at least the LP relaxation's.
pub fn relaxation_bound(capacity: &Resources, items: &[Item]) -> f64 {
    let mut problem = Problem::new(capacity, items);
    problem.add_surrogate();
    problem.root_bound()
}

/// Depth-first branch and bound, started from the [`greedy`] configuration, visiting at most
/// `node_budget` nodes. Items are branched on in the order of the LP relaxation (value per
/// unit of the surrogate constraint), larger counts first; a subtree is cut when its
/// relaxation bound does not beat the best value found. Deterministic: the first
/// configuration found with the best value wins.
pub fn branch_and_bound(
    capacity: &Resources,
    items: &[Item],
    node_budget: u64,
) -> KnapsackSolution {
    branch_and_bound_above(capacity, items, 0.0, node_budget)
}

/// [`branch_and_bound`] looking only for configurations worth more than `floor`: subtrees that
/// cannot beat it are cut too, which is all column generation needs (a column must be worth
/// more than its type's price) and far quicker to prove. The returned configuration is the
/// best one seen (possibly worth less than `floor`); when the search finishes, `upper_bound`
/// is `max(value, floor)` and `exact` says that nothing better than that exists.
pub fn branch_and_bound_above(
    capacity: &Resources,
    items: &[Item],
    floor: f64,
    node_budget: u64,
) -> KnapsackSolution {
    let floor = if floor.is_finite() {
        floor.max(0.0)
    } else {
        0.0
    };
    let mut problem = Problem::new(capacity, items);
    let start = problem.greedy();
    // The surrogate costs a small LP: skip it when the slots alone rule out beating the floor.
    if problem.root_bound() > floor + prune_slack(floor) {
        problem.add_surrogate();
    }
    let root_bound = problem.root_bound();
    let mut search = Search {
        problem: &problem,
        budget: node_budget,
        nodes: 0,
        aborted: false,
        floor,
        best_value: problem.value_of(&start),
        best_counts: start,
        runners_up: Vec::new(),
        counts: vec![0; items.len()],
    };
    let mut remaining = problem.capacity;
    search.visit(0, &mut remaining, 0.0);
    let value = problem.value_of(&search.best_counts);
    let exact = !search.aborted;
    let upper_bound = if exact {
        let proven = value.max(floor);
        proven + prune_slack(proven)
    } else {
        root_bound.max(value)
    };
    KnapsackSolution {
        counts: search.best_counts,
        runners_up: search.runners_up.into_iter().rev().collect(),
        value,
        upper_bound,
        exact,
        nodes: search.nodes,
    }
}

/// Value per unit of size; a pod of no size is worth infinitely much per unit.
fn density(value: f64, size: f64) -> f64 {
    if size > 0.0 {
        value / size
    } else {
        f64::INFINITY
    }
}

/// Subtrees whose bound is within this of the best value are not searched.
fn prune_slack(best: f64) -> f64 {
    1e-12 * best.abs()
}

/// The items that can be chosen at all, preprocessed.
struct Problem {
    /// Number of items of the caller (counts are reported in that indexing).
    len: usize,
    /// Capacity of the slots some candidate requests (`used` of them, compacted).
    capacity: [i64; NUM_RESOURCES],
    used: usize,
    /// Candidate items in branching order.
    candidates: Vec<Candidate>,
    /// Candidate positions in greedy order (value per size, best first).
    greedy_order: Vec<usize>,
    /// The single-constraint relaxations whose fractional bounds are combined.
    relaxations: Vec<Relaxation>,
}

struct Candidate {
    item: usize,
    /// Requests in the used slots (non-negative).
    weights: [i64; NUM_RESOURCES],
    /// `1 / weights` (0 where the weight is 0).
    inverse: [f64; NUM_RESOURCES],
    /// `max_count` limited by what fits in the empty node.
    cap: u32,
    value: f64,
}

impl Candidate {
    /// Takes `n` pods' requests out of `remaining` (gives them back for negative `n`).
    fn charge(&self, remaining: &mut [i64; NUM_RESOURCES], n: i64) {
        for (r, &w) in remaining.iter_mut().zip(&self.weights) {
            *r -= n * w;
        }
    }
}

/// One knapsack constraint implied by the real ones: `Σ coef·requests ≤ Σ coef·capacity`.
struct Relaxation {
    /// Coefficient of each used slot.
    coef: [f64; NUM_RESOURCES],
    /// Weight of each candidate (by position) in the combined constraint.
    weights: Vec<f64>,
    /// Candidate positions by value per unit of weight, best first.
    order: Vec<usize>,
}

impl Problem {
    /// The candidates (items that are worth something and fit) in greedy order, with one
    /// relaxation per used slot.
    fn new(capacity: &Resources, items: &[Item]) -> Problem {
        let mut problem = Problem {
            len: items.len(),
            capacity: [0; NUM_RESOURCES],
            used: 0,
            candidates: Vec::new(),
            greedy_order: Vec::new(),
            relaxations: Vec::new(),
        };
        if capacity.0.iter().any(|&c| c < 0) {
            return problem;
        }
        // Candidates: items worth something that fit at least once, in item order.
        let kept: Vec<(usize, u32)> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.value.is_finite() && item.value > 0.0)
            .map(|(i, item)| (i, max_copies(&item.requests, capacity, item.max_count)))
            .filter(|&(_, cap)| cap > 0)
            .collect();
        let slots: Vec<usize> = (0..NUM_RESOURCES)
            .filter(|&s| kept.iter().any(|&(i, _)| items[i].requests.0[s] > 0))
            .collect();
        problem.used = slots.len();
        for (k, &s) in slots.iter().enumerate() {
            problem.capacity[k] = capacity.0[s];
        }
        for &(i, cap) in &kept {
            let mut weights = [0; NUM_RESOURCES];
            let mut inverse = [0.0; NUM_RESOURCES];
            for (k, &s) in slots.iter().enumerate() {
                weights[k] = items[i].requests.0[s].max(0);
                if weights[k] > 0 {
                    inverse[k] = 1.0 / weights[k] as f64;
                }
            }
            problem.candidates.push(Candidate {
                item: i,
                weights,
                inverse,
                cap,
                value: items[i].value,
            });
        }
        problem.greedy_order = (0..problem.candidates.len()).collect();
        // Size: the largest share of the node one pod takes. Candidates are kept in greedy
        // order: it is also the branching order unless a surrogate relaxation is added.
        let greedy = problem.order_by(|p| {
            let size = (0..problem.used)
                .map(|k| problem.share(p, k))
                .fold(0.0, f64::max);
            density(problem.candidates[p].value, size)
        });
        problem.greedy_order.clone_from(&greedy);
        problem.reorder(&greedy);

        for k in 0..problem.used {
            let mut coef = [0.0; NUM_RESOURCES];
            coef[k] = 1.0;
            let relaxation = problem.relaxation(coef);
            problem.relaxations.push(relaxation);
        }
        problem
    }

    /// Adds the surrogate relaxation (first: it is usually the tightest, and the search stops
    /// at the first relaxation that cuts) and switches branching to the LP relaxation's order,
    /// which finds good configurations early. Does nothing when the LP fails.
    fn add_surrogate(&mut self) {
        if self.used < 2 {
            return; // One slot alone is already its own best relaxation.
        }
        let Some(coef) = self.lp_multipliers() else {
            return;
        };
        let order = self.relaxation(coef).order;
        self.reorder(&order);
        let surrogate = self.relaxation(coef);
        self.relaxations.insert(0, surrogate);
    }

    /// Puts the candidates in `order` (old positions, new order first), keeping the greedy
    /// order and rebuilding the relaxations, which refer to positions.
    fn reorder(&mut self, order: &[usize]) {
        let mut position = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            position[old] = new;
        }
        let mut by_old: Vec<Option<Candidate>> = self.candidates.drain(..).map(Some).collect();
        self.candidates = order.iter().filter_map(|&old| by_old[old].take()).collect();
        self.greedy_order = self.greedy_order.iter().map(|&old| position[old]).collect();
        let coefs: Vec<[f64; NUM_RESOURCES]> = self.relaxations.iter().map(|r| r.coef).collect();
        self.relaxations = coefs.into_iter().map(|c| self.relaxation(c)).collect();
    }

    /// The relaxation `Σ coef·requests ≤ Σ coef·capacity` over the current candidates.
    fn relaxation(&self, coef: [f64; NUM_RESOURCES]) -> Relaxation {
        let weights: Vec<f64> = self
            .candidates
            .iter()
            .map(|c| (0..self.used).map(|k| coef[k] * c.weights[k] as f64).sum())
            .collect();
        let ratio = |p: usize| match weights[p] {
            w if w > 0.0 => self.candidates[p].value / w,
            _ => f64::INFINITY,
        };
        let mut order: Vec<usize> = (0..self.candidates.len()).collect();
        order.sort_by(|&a, &b| ratio(b).total_cmp(&ratio(a)).then(a.cmp(&b)));
        Relaxation {
            coef,
            weights,
            order,
        }
    }

    /// Multipliers of the used slots (per unit of each slot) from the dual of the LP
    /// relaxation `max v·k, W k ≤ C, 0 ≤ k ≤ cap`, which is the covering LP
    /// `min Σ λ_s + Σ cap_p μ_p  s.t.  Σ_s λ_s W_ps / C_s + μ_p ≥ v_p`. `None` when the LP
    /// fails or puts no weight on any slot.
    fn lp_multipliers(&self) -> Option<[f64; NUM_RESOURCES]> {
        let demand: Vec<f64> = self.candidates.iter().map(|c| c.value).collect();
        let mut lp = CoveringLp::new(&demand, SimplexOptions::default()).ok()?;
        for k in 0..self.used {
            let room = self.capacity[k] as f64;
            let entries: Vec<(usize, f64)> = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.weights[k] > 0)
                .map(|(p, c)| (p, c.weights[k] as f64 / room))
                .collect();
            lp.add_column(1.0, &entries).ok()?;
        }
        for (p, c) in self.candidates.iter().enumerate() {
            lp.add_column(f64::from(c.cap), &[(p, 1.0)]).ok()?;
        }
        lp.solve().ok()?;
        let primal = lp.primal();
        let mut coef = [0.0; NUM_RESOURCES];
        for k in 0..self.used {
            coef[k] = primal[k] / self.capacity[k] as f64;
        }
        coef.iter().any(|&c| c > 0.0).then_some(coef)
    }

    /// How many more pods of candidate `p` fit in `remaining`, within its cap.
    fn fit(&self, p: usize, remaining: &[i64; NUM_RESOURCES]) -> u32 {
        let c = &self.candidates[p];
        let mut copies = c.cap;
        for (&have, &w) in remaining.iter().zip(&c.weights).take(self.used) {
            if w > 0 {
                copies = copies.min((have / w).clamp(0, i64::from(u32::MAX)) as u32);
            }
        }
        copies
    }

    fn greedy(&self) -> Vec<u32> {
        self.fill(&self.greedy_order)
    }

    /// `counts` as a solution with the root relaxation bound and no proof.
    fn solution(&self, counts: Vec<u32>) -> KnapsackSolution {
        let value = self.value_of(&counts);
        KnapsackSolution {
            upper_bound: self.root_bound().max(value),
            counts,
            value,
            exact: false,
            nodes: 0,
            runners_up: Vec::new(),
        }
    }

    /// Candidate positions in the [`greedy_fills`] orders.
    fn fill_orders(&self) -> Vec<Vec<usize>> {
        let summed = |p: usize| (0..self.used).map(|k| self.share(p, k)).sum::<f64>();
        vec![
            self.greedy_order.clone(),
            self.order_by(|p| density(self.candidates[p].value, summed(p))),
            self.order_by(|p| self.candidates[p].value),
        ]
    }

    /// The share of used slot `k` of the empty node that one pod of candidate `p` takes.
    fn share(&self, p: usize, k: usize) -> f64 {
        self.candidates[p].weights[k] as f64 / self.capacity[k].max(1) as f64
    }

    /// Candidate positions by decreasing `key`; ties keep the greedy order (stable sort).
    fn order_by(&self, key: impl Fn(usize) -> f64) -> Vec<usize> {
        let mut order = self.greedy_order.clone();
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        order
    }

    /// Takes each candidate in `order` as many times as still fits.
    fn fill(&self, order: &[usize]) -> Vec<u32> {
        let mut counts = vec![0; self.len];
        let mut remaining = self.capacity;
        for &p in order {
            let c = &self.candidates[p];
            let take = self.fit(p, &remaining);
            c.charge(&mut remaining, i64::from(take));
            counts[c.item] = take;
        }
        counts
    }

    fn value_of(&self, counts: &[u32]) -> f64 {
        self.candidates
            .iter()
            .map(|c| f64::from(counts[c.item]) * c.value)
            .sum()
    }

    fn root_bound(&self) -> f64 {
        self.bound(0, &self.capacity, f64::INFINITY)
    }

    /// The relaxation bound on what candidates `from..` add in `remaining`: the smallest
    /// fractional-knapsack value over the relaxations, exactly when `stop_above` is infinite.
    /// Otherwise, to keep search nodes cheap, it only decides which side of `stop_above` the
    /// bound lies on: it stops at the first relaxation that comes out at or below it (and
    /// returns that value), and sums each relaxation only until its total passes it (totals
    /// only grow), returning some value above it.
    fn bound(&self, from: usize, remaining: &[i64; NUM_RESOURCES], stop_above: f64) -> f64 {
        let mut left = [0.0; NUM_RESOURCES];
        for (l, &r) in left.iter_mut().zip(remaining).take(self.used) {
            *l = r as f64;
        }
        // How many more of candidate `p` fit, rounded up a hair so that rounding errors can
        // only loosen the bound; cheaper than integer division, and computed only for the
        // candidates a relaxation reaches.
        let cap = |p: usize| {
            let c = &self.candidates[p];
            let mut most = f64::from(c.cap);
            for (&l, &inverse) in left.iter().zip(&c.inverse).take(self.used) {
                if inverse > 0.0 {
                    // Truncation is floor here (non-negative) and much cheaper than `floor`.
                    most = most.min((l * inverse + 1e-9) as i64 as f64);
                }
            }
            most.max(0.0)
        };
        if self.relaxations.is_empty() {
            // No slot constrains anything: every candidate goes in at its cap.
            return (from..self.candidates.len())
                .map(|p| cap(p) * self.candidates[p].value)
                .sum();
        }
        let mut best = f64::INFINITY;
        for relaxation in &self.relaxations {
            let mut room: f64 = (0..self.used).map(|k| relaxation.coef[k] * left[k]).sum();
            let mut total = 0.0;
            for &p in relaxation.order.iter().filter(|&&p| p >= from) {
                let (cap, w, value) = (cap(p), relaxation.weights[p], self.candidates[p].value);
                if w <= 0.0 || cap * w <= room {
                    total += cap * value;
                    room -= cap * w;
                } else {
                    total += room.max(0.0) / w * value;
                    break;
                }
                if total > stop_above {
                    break;
                }
            }
            best = best.min(total);
            if best <= stop_above && stop_above < f64::INFINITY {
                break; // Decided: nothing above `stop_above` (no early exit for the exact bound).
            }
        }
        best
    }
}

/// State of one depth-first search.
struct Search<'a> {
    problem: &'a Problem,
    budget: u64,
    nodes: u64,
    aborted: bool,
    /// Only values above this are sought.
    floor: f64,
    best_value: f64,
    best_counts: Vec<u32>,
    /// Earlier incumbents worth more than the floor, oldest (worst) first.
    runners_up: Vec<Vec<u32>>,
    /// Counts of the current path, by caller item index.
    counts: Vec<u32>,
}

impl Search<'_> {
    /// Visits the node where candidates `..depth` are fixed, `remaining` capacity is left and
    /// `value` is collected.
    fn visit(&mut self, depth: usize, remaining: &mut [i64; NUM_RESOURCES], value: f64) {
        if self.nodes >= self.budget {
            self.aborted = true;
            return;
        }
        self.nodes += 1;
        if value > self.best_value {
            if self.best_value > self.floor {
                // Still worth more than the floor: keep it as a runner-up.
                if self.runners_up.len() == RUNNERS_UP {
                    self.runners_up.remove(0);
                }
                self.runners_up.push(self.best_counts.clone());
            }
            self.best_value = value;
            self.best_counts.clone_from(&self.counts);
        }
        let problem = self.problem;
        if depth >= problem.candidates.len() {
            return;
        }
        let target = self.best_value.max(self.floor);
        let threshold = target + prune_slack(target) - value;
        if problem.bound(depth, remaining, threshold) <= threshold {
            return;
        }
        let candidate = &problem.candidates[depth];
        let most = problem.fit(depth, remaining);
        for take in (0..=most).rev() {
            candidate.charge(remaining, i64::from(take));
            self.counts[candidate.item] = take;
            self.visit(
                depth + 1,
                remaining,
                value + f64::from(take) * candidate.value,
            );
            candidate.charge(remaining, -i64::from(take));
            self.counts[candidate.item] = 0;
            if self.aborted {
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "knapsack_tests.rs"]
mod tests;
