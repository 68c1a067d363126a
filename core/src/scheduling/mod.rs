//! The scheduler: places pending pods on existing nodes and on new NodeClaims it invents,
//! choosing instance types that fit, and says why for every pod it could not place.
//!
//! It follows Karpenter's algorithm (first-fit over pods sorted by CPU then memory, preferences
//! honoured first and relaxed in Karpenter's order when a pod does not fit) over compact,
//! precomputed data so that tens of thousands of pods solve in well under a second.

mod checks;
mod claims;
mod decision;
mod fasthash;
mod fleet_bound;
mod new_nodes;
pub mod optimal;
mod output;
mod packing;
mod pools;
mod preferences;
mod recording;
mod repack;
pub mod report;
mod solver;
mod topology;
pub mod verify;

pub use decision::{
    Decision, ExistingNodePlan, InstanceTypeOption, NewNodeClaim, Placement, Unschedulable,
};
pub use fleet_bound::{FleetBound, fleet_bound, lower_bound};
pub use solver::{Burstable, Packing, SolveOptions, place, solve, solve_view};
pub use verify::{Violation, verify};

/// Karpenter launches with at most this many instance type options per NodeClaim.
pub const MAX_INSTANCE_TYPES: usize = 60;
