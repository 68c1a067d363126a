//! From the fractional configuration LP to a fleet of whole nodes (see the module docs of
//! [`super`]).

use std::collections::HashSet;

use super::bound::{
    ConfigurationLp, Effort, LpColumn, active, candidate_types, column_generation, contents,
};
use super::knapsack::{self, Item};
use super::{BinType, Kind, LpOptions};
use crate::resources::NUM_RESOURCES;

/// One node of a [`Fleet`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FleetNode {
    /// Index into the types given to [`pack`].
    pub type_index: usize,
    /// Pods of each kind on the node, indexed like the kinds given.
    pub counts: Vec<u32>,
}

/// Nodes holding the pods, from [`pack`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fleet {
    /// The nodes, sorted by type index then counts.
    pub nodes: Vec<FleetNode>,
    /// Sum of the nodes' prices (without [`LpOptions::node_cost`]).
    pub cost: f64,
    /// Pods of each kind left unplaced: those that fit no type or request a negative amount.
    pub unplaced: Vec<u32>,
}

impl Fleet {
    /// The cost in the unit of [`ConfigurationLp::bound`]: prices plus `node_cost` per node.
    pub fn cost_with_node_cost(&self, node_cost: f64) -> f64 {
        self.cost + node_cost * self.nodes.len() as f64
    }
}

/// Builds a fleet for `kinds` on `types` from the LP solution `lp` of [`super::configuration_lp`]
/// on the same input:
///
/// 1. ⌊x⌋ nodes of every LP configuration, counts capped so that no kind is placed more often
///    than it has pods;
/// 2. then, while pods are left, the LP of the leftovers is re-solved (greedy pricing only,
///    starting from the columns the LP generated, capped to what is left) and ⌊x⌋ nodes of its
///    columns opened, or one node of its largest column when every value is below 1: a "dive",
///    which stays close to the LP where placing all leftovers greedily would strand pods;
/// 3. anything still left (only if a re-solve fails) one node at a time, the type and
///    configuration with the best value per dollar, valued at the LP's duals (or by size when
///    they are all zero);
/// 4. every node moved to the cheapest type, among all given, that holds its pods.
///
/// Every pod is placed exactly once unless it fits no type; never panics, even on an `lp` from
/// other input (its unusable parts are ignored).
pub fn pack(kinds: &[Kind], types: &[BinType], lp: &ConfigurationLp, options: &LpOptions) -> Fleet {
    let packing = Packing::new(kinds, types, options);
    let mut fleet = Building {
        remaining: kinds
            .iter()
            .map(|k| if active(k) { k.count } else { 0 })
            .collect(),
        nodes: Vec::new(),
    };
    let usable: Vec<LpColumn> = lp
        .columns
        .iter()
        .filter(|c| packing.usable(c.type_index, &c.counts))
        .cloned()
        .collect();
    fleet.open_whole(&usable);
    packing.dive(&mut fleet, lp, options);
    packing.place_by_value(&mut fleet, &lp.duals, options);
    packing.finish(fleet)
}

/// The input, with usable prices (NaN for types never to open) and the candidate types.
struct Packing<'a> {
    kinds: &'a [Kind],
    types: &'a [BinType],
    /// Price plus node cost per type; NaN for a type whose price is unusable.
    prices: Vec<f64>,
    candidates: Vec<usize>,
}

impl<'a> Packing<'a> {
    fn new(kinds: &'a [Kind], types: &'a [BinType], options: &LpOptions) -> Packing<'a> {
        let node_cost = if options.node_cost.is_finite() && options.node_cost >= 0.0 {
            options.node_cost
        } else {
            0.0
        };
        let prices: Vec<f64> = types
            .iter()
            .map(|t| {
                if t.price.is_finite() && t.price >= 0.0 {
                    t.price + node_cost
                } else {
                    f64::NAN
                }
            })
            .collect();
        Packing {
            kinds,
            types,
            candidates: candidate_types(kinds, types, &prices),
            prices,
        }
    }

    /// True for a configuration of a usable type, of the right length, that fits.
    fn usable(&self, type_index: usize, counts: &[u32]) -> bool {
        let (Some(bin), Some(price)) = (self.types.get(type_index), self.prices.get(type_index))
        else {
            return false;
        };
        price.is_finite()
            && counts.len() == self.kinds.len()
            && contents(self.kinds, counts).fits_in(&bin.allocatable)
    }

    /// Step 2 of [`pack`]: re-solve the leftovers' LP and open its whole nodes (or its largest
    /// column) until every pod is placed or a re-solve fails.
    fn dive(&self, fleet: &mut Building, lp: &ConfigurationLp, options: &LpOptions) {
        let mut pool: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut seen = HashSet::new();
        for c in lp.generated.iter().chain(&lp.columns) {
            if self.usable(c.type_index, &c.counts) && seen.insert((c.type_index, &c.counts)) {
                pool.push((c.type_index, c.counts.clone()));
            }
        }
        while fleet.remaining.iter().any(|&r| r > 0) {
            let Some(columns) = self.residual_lp(&mut pool, &fleet.remaining, options) else {
                return;
            };
            if fleet.open_whole(&columns) {
                continue;
            }
            // Every value is fractional: round the largest up (the first of equals). Each
            // pass places at least one pod, so the dive ends.
            let largest = columns
                .iter()
                .reduce(|best, c| if c.value > best.value { c } else { best });
            if !largest.is_some_and(|c| fleet.open(c.type_index, &c.counts)) {
                return;
            }
        }
    }

    /// Solves the configuration LP of the `remaining` pods quickly (greedy pricing only),
    /// starting from the `pool` columns capped to what is left, and adds the columns its
    /// solution uses to the pool. `None` when the simplex fails.
    fn residual_lp(
        &self,
        pool: &mut Vec<(usize, Vec<u32>)>,
        remaining: &[u32],
        options: &LpOptions,
    ) -> Option<Vec<LpColumn>> {
        let kinds: Vec<Kind> = self
            .kinds
            .iter()
            .zip(remaining)
            .map(|(kind, &left)| Kind {
                requests: kind.requests,
                count: left,
            })
            .collect();
        let effort = Effort::Quick {
            rounds: RESIDUAL_ROUNDS,
        };
        let lp = column_generation(&kinds, self.types, options, pool, effort).ok()?;
        // Not every column it tried: the whole pool goes into every re-solve.
        let known: HashSet<(usize, &Vec<u32>)> = pool.iter().map(|(t, c)| (*t, c)).collect();
        let new: Vec<(usize, Vec<u32>)> = lp
            .columns
            .iter()
            .filter(|c| !known.contains(&(c.type_index, &c.counts)))
            .map(|c| (c.type_index, c.counts.clone()))
            .collect();
        pool.extend(new);
        Some(lp.columns)
    }

    /// Step 3 of [`pack`]: while pods are left, opens the node (type and configuration) with
    /// the best value per dollar, each pod valued at its dual (see [`leftover_values`]).
    fn place_by_value(&self, fleet: &mut Building, duals: &[f64], options: &LpOptions) {
        let values = leftover_values(
            self.kinds,
            self.types,
            &self.candidates,
            duals,
            &fleet.remaining,
        );
        while fleet.remaining.iter().any(|&r| r > 0) {
            let items: Vec<Item> = self
                .kinds
                .iter()
                .zip(&fleet.remaining)
                .zip(&values)
                .map(|((kind, &left), &value)| Item {
                    requests: kind.requests,
                    max_count: left,
                    value,
                })
                .collect();
            let mut best: Option<(f64, usize, Vec<u32>)> = None;
            for &t in &self.candidates {
                // Only a configuration with a better value per dollar than the best so far
                // helps.
                let floor = best
                    .as_ref()
                    .map_or(0.0, |(ratio, _, _)| ratio * self.prices[t]);
                let solution = knapsack::branch_and_bound_above(
                    &self.types[t].allocatable,
                    &items,
                    floor,
                    options.quick_node_budget,
                );
                if solution.value <= 0.0 {
                    continue;
                }
                // A free type gets an infinite ratio and wins, as it should.
                let per_dollar = solution.value / self.prices[t];
                if best.as_ref().is_none_or(|(b, _, _)| per_dollar > *b) {
                    best = Some((per_dollar, t, solution.counts));
                }
            }
            // Nothing left fits any type (or every node would be empty): stop.
            if !best.is_some_and(|(_, t, counts)| fleet.open(t, &counts)) {
                return;
            }
        }
    }

    /// Step 4 of [`pack`]: every node on the cheapest type that holds its pods (among all
    /// types: a dominated type may well be the cheapest one big enough), in canonical order.
    fn finish(&self, fleet: Building) -> Fleet {
        let mut nodes = fleet.nodes;
        for node in &mut nodes {
            let load = contents(self.kinds, &node.counts);
            let cheapest = (0..self.types.len())
                .filter(|&t| self.prices[t].is_finite() && load.fits_in(&self.types[t].allocatable))
                .min_by(|&a, &b| self.prices[a].total_cmp(&self.prices[b]).then(a.cmp(&b)));
            if let Some(t) = cheapest {
                node.type_index = t;
            }
        }
        nodes.sort();
        let cost = nodes.iter().map(|n| self.types[n.type_index].price).sum();
        let unplaced = self
            .kinds
            .iter()
            .zip(fleet.remaining)
            .map(|(k, left)| if active(k) { left } else { k.count })
            .collect();
        Fleet {
            nodes,
            cost,
            unplaced,
        }
    }
}

/// Master solves (greedy pricing rounds) per re-solve of the leftovers.
const RESIDUAL_ROUNDS: usize = 10;

/// The nodes opened so far and the pods still to place.
struct Building {
    remaining: Vec<u32>,
    nodes: Vec<FleetNode>,
}

impl Building {
    /// Opens a node of `type_index` with `counts` capped to what is left (nothing when that
    /// is empty); true when it opened one.
    fn open(&mut self, type_index: usize, counts: &[u32]) -> bool {
        let capped: Vec<u32> = counts
            .iter()
            .zip(&self.remaining)
            .map(|(&k, &left)| k.min(left))
            .collect();
        if capped.iter().all(|&c| c == 0) {
            return false;
        }
        for (left, &c) in self.remaining.iter_mut().zip(&capped) {
            *left -= c;
        }
        self.nodes.push(FleetNode {
            type_index,
            counts: capped,
        });
        true
    }

    /// Opens ⌊x⌋ nodes of every column (a value a hair below an integer counts as that
    /// integer); true when it opened any.
    fn open_whole(&mut self, columns: &[LpColumn]) -> bool {
        let mut opened = false;
        for column in columns {
            let copies = if column.value.is_finite() {
                (column.value + 1e-9).floor()
            } else {
                0.0
            };
            let mut done = 0.0;
            while done < copies && self.open(column.type_index, &column.counts) {
                opened = true;
                done += 1.0;
            }
        }
        opened
    }
}

/// Value of one leftover pod of each kind: its LP dual, plus a tiny share of its size so that
/// pods the LP prices at zero still fill spare room; by size alone when all duals are zero.
fn leftover_values(
    kinds: &[Kind],
    types: &[BinType],
    candidates: &[usize],
    duals: &[f64],
    remaining: &[u32],
) -> Vec<f64> {
    // Size: the largest share of the biggest candidate in any slot, plus a floor so that a
    // pod requesting nothing is still worth placing.
    let mut biggest = [0i64; NUM_RESOURCES];
    for &t in candidates {
        for (b, &a) in biggest.iter_mut().zip(&types[t].allocatable.0) {
            *b = (*b).max(a);
        }
    }
    let sizes: Vec<f64> = kinds
        .iter()
        .map(|k| {
            let share = k
                .requests
                .0
                .iter()
                .zip(&biggest)
                .filter(|&(&want, &have)| want > 0 && have > 0)
                .map(|(&want, &have)| want as f64 / have as f64)
                .fold(0.0, f64::max);
            share + 1e-6
        })
        .collect();
    let dual = |i: usize| {
        duals
            .get(i)
            .copied()
            .filter(|y| y.is_finite() && *y > 0.0)
            .unwrap_or(0.0)
    };
    let scale = (0..kinds.len())
        .filter(|&i| remaining[i] > 0)
        .map(dual)
        .fold(0.0, f64::max);
    (0..kinds.len())
        .map(|i| {
            if scale > 0.0 {
                dual(i) + 1e-6 * scale * sizes[i]
            } else {
                sizes[i]
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "packer_tests.rs"]
mod tests;
