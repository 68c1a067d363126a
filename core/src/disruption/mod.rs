//! Disruption planning, pure: which managed nodes Karpenter v1 would remove or replace now —
//! expired, drifted, empty, or underused — within budgets, PodDisruptionBudgets and
//! `do-not-disrupt`, and for every other node the reasons it is kept.
//!
//! [`plan`] reads a [`DisruptionInput`] (the scheduling snapshot plus per-node, per-pod and
//! per-NodePool facts; `now` is an input) and returns a [`Plan`]. Every "where would these pods
//! go" question is answered by [`crate::scheduling::solve`]. The behaviour follows Karpenter
//! v1.4 as restated in the project's disruption spec; where this module differs it says so:
//! - ties in the disruption-cost order are broken by NodeClaim name (Karpenter's sort is not
//!   stable);
//! - the plan repeats the pass until nothing acts, so it lists every command the controller
//!   would start in quick succession, not only the first;
//! - a plan is computed from one snapshot; the controller waits (Karpenter: 15 s) and checks a
//!   consolidation command with [`validate`] on a fresh snapshot before carrying it out;
//! - `min_savings_per_hour` per NodePool (off by default) refuses consolidations that save
//!   less.

pub mod budgets;
pub mod candidates;
pub mod command;
pub mod consolidation;
pub mod input;
pub mod plan;
pub mod reasons;
pub mod report;
pub mod simulate;

pub use command::{Action, Command, Destination, Disrupted, Kept, Method, Plan, PodMove};
pub use consolidation::Replacement;
pub use input::{
    ClaimFacts, DisruptionInput, DisruptionOptions, Drift, NodeFacts, PdbFacts, PodFacts,
    PoolDisruption,
};
pub use plan::{Invalid, NOMINATION, budgets, plan, plan_traced, validate};
pub use reasons::KeptReason;
