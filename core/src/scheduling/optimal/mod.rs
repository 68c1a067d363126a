//! Cost lower bounds and near-optimal fleets for packing pods onto new nodes, from the
//! configuration LP (Gilmore–Gomory) solved by column generation.
//!
//! Pods with identical requests form a [`Kind`]; every instance type is a [`BinType`] (its
//! allocatable resources after DaemonSet overhead, and its hourly price). A *configuration* of a
//! type is a number of pods of each kind that fit on one node of the type together. The
//! configuration LP has one variable per (type, configuration), the number of such nodes, and
//! asks for the cheapest fractional mix of nodes that holds every pod:
//!
//! ```text
//! minimise  Σ price(t) · x(t, k)   subject to   Σ k_i · x(t, k) ≥ count_i  for every kind i,  x ≥ 0.
//! ```
//!
//! Every real fleet is an integer solution, so the LP optimum is a lower bound on the cost of
//! any fleet, and in practice lies within about 1% of the best one. (A configuration never
//! holds more pods of a kind than there are, which keeps the LP tighter and still a relaxation.)
//! There are far too many configurations to list, so [`configuration_lp`] generates them: it
//! solves the LP over a few columns ([`simplex`]), reads the duals `y` (the marginal price of one
//! pod of each kind), and asks each type for configurations worth more than its price at those
//! duals ([`knapsack`]): greedy fills first, then a short branch and bound, then a long one,
//! each only when the cheaper ones found nothing. Such a configuration lowers the objective, so
//! it joins the LP; when the searches prove there is none, the LP is optimal.
//!
//! The reported [`ConfigurationLp::bound`] is valid even when the loop stops early (Farley's
//! bound): for any `y ≥ 0`, let `U(t)` be an upper bound on the value `y·k` of any
//! configuration of type `t` and `θ = max(1, maxₜ U(t)/price(t))`. Then `y/θ` satisfies every
//! dual constraint `y·k ≤ price(t)`, so by weak duality `Σ count_i · y_i / θ` is at most the LP
//! optimum, hence at most the cost of any fleet. Nothing here depends on the simplex being
//! accurate or the loop having converged: `y` is whatever the last master gave (clipped at 0),
//! and `U(t)` comes from a finished knapsack search or, when the search ran out of budget, from
//! its LP relaxation. At convergence `θ = 1` and the bound equals the LP optimum. Types that
//! another dominates and kinds that fit nowhere are left out of the LP without weakening it:
//! a dominated type's configurations are its dominator's too, at no lower price.
//!
//! [`pack`] turns the fractional solution into a fleet: it opens ⌊x⌋ nodes of every
//! configuration the LP uses (never placing more pods of a kind than exist), then re-solves the
//! LP of the leftover pods and opens its whole nodes, or one node of its largest column when all
//! are fractional, until every pod is placed; finally it moves every node to the cheapest type
//! its pods fit on. Its cost is at least the bound, and on realistic inputs within a few
//! percent of it.
//!
//! Requests are taken as given, and the caller must put 1 in the
//! [`PODS`](crate::resources::PODS) slot of every kind so that a type's pod limit is respected.
//! Ingested pods already carry it: [`Pod::requests`](crate::snapshot::Pod::requests) includes
//! one `pods` slot, added when the pod spec is converted; `Pod::new` takes requests as given.

mod bound;
pub mod knapsack;
mod packer;
pub mod simplex;

pub use bound::{ConfigurationLp, LpColumn, configuration_lp};
pub use packer::{Fleet, FleetNode, pack};

use crate::resources::Resources;
use simplex::{SimplexError, SimplexOptions};

/// Pods with identical requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Kind {
    /// Requests of one pod, with 1 in the `pods` slot (see the module docs).
    pub requests: Resources,
    /// Number of pods of this kind.
    pub count: u32,
}

/// A node type to pack onto.
#[derive(Clone, Debug, PartialEq)]
pub struct BinType {
    /// What one node offers pods: allocatable after DaemonSet overhead, including its pod limit.
    pub allocatable: Resources,
    /// Price of one node per hour (finite, at least 0).
    pub price: f64,
}

/// Budgets and tolerances of [`configuration_lp`] and [`pack`].
#[derive(Clone, Debug, PartialEq)]
pub struct LpOptions {
    /// Most master solves (pricing rounds) before stopping unconverged; at least one is made.
    pub max_rounds: usize,
    /// Most branch-and-bound nodes of a full knapsack search, run on a type when the quick
    /// searches found no improving configuration and could not prove there is none.
    pub node_budget: u64,
    /// Most nodes of a quick knapsack search: the second pricing tier after greedy, and the
    /// searches of [`pack`]'s last-resort placement.
    pub quick_node_budget: u64,
    /// Relative tolerance: a configuration enters the LP only when it is worth more than
    /// `price · (1 + epsilon)`.
    pub epsilon: f64,
    /// Added to every type's price, in the same unit (default 0). It stands for the costs a
    /// price list hides and that grow with the number of nodes rather than their size
    /// (per-node licences and monitoring agents, IP addresses, launch and drain time, more
    /// nodes to upgrade), so that a slightly dearer fleet of fewer, larger nodes can win over
    /// many tiny ones. The bound and the LP objective
    /// include it; [`Fleet::cost`] does not (see [`Fleet::cost_with_node_cost`]).
    pub node_cost: f64,
    /// Options of the master LP's simplex.
    pub simplex: SimplexOptions,
}

impl Default for LpOptions {
    fn default() -> Self {
        LpOptions {
            max_rounds: 200,
            node_budget: 20_000,
            quick_node_budget: 1_000,
            epsilon: 1e-9,
            node_cost: 0.0,
            simplex: SimplexOptions::default(),
        }
    }
}

/// Why [`configuration_lp`] could not run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LpError {
    /// A type's price is negative, NaN or infinite.
    #[error("price of bin type {type_index} is {price}; it must be finite and at least 0")]
    InvalidPrice {
        /// Index into the types given.
        type_index: usize,
        /// The price given.
        price: f64,
    },
    /// A kind requests a negative amount of a resource.
    #[error("kind {kind_index} requests {amount} of {resource}; requests must be at least 0")]
    InvalidRequest {
        /// Index into the kinds given.
        kind_index: usize,
        /// Name of the resource slot.
        resource: &'static str,
        /// The amount given.
        amount: i64,
    },
    /// An option is out of range.
    #[error("option {name} is {value}; it must be finite and at least 0")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// The master LP failed (numerical trouble or its pivot limit).
    #[error("master LP: {0}")]
    Simplex(#[from] SimplexError),
}

#[cfg(test)]
mod test_support;
