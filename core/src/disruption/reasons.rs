//! Why a managed node is kept: one machine-readable kind and one sentence a user can act on.

use std::fmt;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::nodepool::DisruptionReason;
use crate::snapshot::PodKey;

/// One reason a node is not disrupted now.
#[derive(Clone, Debug, PartialEq)]
pub enum KeptReason {
    /// Already being deleted (deletion timestamp, terminating instance, or a command in flight).
    Deleting,
    /// Not initialized yet.
    NotInitialized,
    /// A recent simulation planned pods onto it.
    Nominated {
        /// When the nomination lapses.
        until: Timestamp,
    },
    /// `karpenter.sh/do-not-disrupt: "true"` on the node.
    NodeDoNotDisrupt,
    /// A pod with `karpenter.sh/do-not-disrupt: "true"`.
    PodDoNotDisrupt {
        /// The pod.
        pod: PodKey,
    },
    /// A PodDisruptionBudget allows no eviction of one of the node's pods now.
    PdbBlocks {
        /// `namespace/name` of the budget.
        pdb: String,
        /// The pod it covers.
        pod: PodKey,
    },
    /// The node's NodePool does not exist (or the node has no NodePool label).
    NodePoolNotFound {
        /// The pool named by the node, empty when unlabeled.
        pool: String,
    },
    /// The NodePool's budget for this reason allows no more disruptions now.
    BudgetExhausted {
        /// NodePool.
        pool: String,
        /// The budget reason.
        reason: DisruptionReason,
        /// Nodes the budgets allow disrupting at once.
        allowed: u32,
        /// Nodes of the pool already disrupting (not Ready or being deleted).
        disrupting: u32,
        /// When the limiting scheduled budget stops being active.
        until: Option<Timestamp>,
        /// Set when a budget is invalid (Karpenter then allows nothing).
        error: Option<String>,
    },
    /// `consolidateAfter: Never`.
    ConsolidationDisabled {
        /// NodePool.
        pool: String,
    },
    /// Not empty, and the pool's policy is `WhenEmpty`.
    OnlyWhenEmpty {
        /// NodePool.
        pool: String,
    },
    /// `consolidateAfter` has not elapsed since the last pod event.
    ConsolidateAfterPending {
        /// Time left.
        remaining: Duration,
    },
    /// A pod of the node would fit nowhere else.
    PodWouldNotSchedule {
        /// The pod.
        pod: PodKey,
        /// The scheduler's reason.
        why: String,
    },
    /// No replacement is cheaper than the node.
    NoCheaperReplacement {
        /// The node's price per hour.
        current: f64,
        /// The cheapest replacement that would hold its pods (per hour).
        best: Option<f64>,
    },
    /// Replacing a spot node by a spot node needs the `SpotToSpotConsolidation` gate.
    SpotToSpotDisabled,
    /// Single-node spot-to-spot needs 15 cheaper instance types.
    SpotToSpotTooFewTypes {
        /// How many cheaper types there were.
        cheaper: usize,
    },
    /// Its pods need two or more new nodes (consolidation replaces N nodes by at most one).
    NeedsSeveralNodes {
        /// New nodes the pods would need.
        count: usize,
    },
    /// The saving is below the pool's minimum (beyond Karpenter).
    BelowMinimumSavings {
        /// Saving per hour.
        savings: f64,
        /// Minimum per hour.
        minimum: f64,
    },
    /// The node's instance type is not among its pool's instance types.
    InstanceTypeNotFound {
        /// The type, empty when unlabeled.
        instance_type: String,
    },
    /// A label consolidation needs is missing.
    MissingLabel {
        /// The label key.
        label: String,
    },
    /// A pod would move onto a node that is not initialized yet.
    UninitializedDestination {
        /// The pod.
        pod: PodKey,
        /// The destination.
        node: String,
    },
    /// Consolidation and drift do not apply, and the node is not expiring: nothing to do.
    InUse,
}

impl KeptReason {
    /// The machine-readable kind (`simulate --output json`'s `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            KeptReason::Deleting => "deleting",
            KeptReason::NotInitialized => "not_initialized",
            KeptReason::Nominated { .. } => "nominated",
            KeptReason::NodeDoNotDisrupt => "node_do_not_disrupt",
            KeptReason::PodDoNotDisrupt { .. } => "pod_do_not_disrupt",
            KeptReason::PdbBlocks { .. } => "pdb_blocks",
            KeptReason::NodePoolNotFound { .. } => "nodepool_not_found",
            KeptReason::BudgetExhausted { .. } => "budget_exhausted",
            KeptReason::ConsolidationDisabled { .. } => "consolidation_disabled",
            KeptReason::OnlyWhenEmpty { .. } => "only_when_empty",
            KeptReason::ConsolidateAfterPending { .. } => "consolidate_after_pending",
            KeptReason::PodWouldNotSchedule { .. } => "pod_would_not_schedule",
            KeptReason::NoCheaperReplacement { .. } => "no_cheaper_replacement",
            KeptReason::SpotToSpotDisabled => "spot_to_spot_disabled",
            KeptReason::SpotToSpotTooFewTypes { .. } => "spot_to_spot_too_few_types",
            KeptReason::NeedsSeveralNodes { .. } => "needs_several_nodes",
            KeptReason::BelowMinimumSavings { .. } => "below_minimum_savings",
            KeptReason::InstanceTypeNotFound { .. } => "instance_type_not_found",
            KeptReason::MissingLabel { .. } => "missing_label",
            KeptReason::UninitializedDestination { .. } => "uninitialized_destination",
            KeptReason::InUse => "in_use",
        }
    }
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptReason::Deleting => write!(f, "the node is already being deleted"),
            KeptReason::NotInitialized => write!(f, "the node is not initialized yet"),
            KeptReason::Nominated { until } => write!(
                f,
                "pods were recently planned onto this node (nominated until {until})"
            ),
            KeptReason::NodeDoNotDisrupt => {
                write!(f, "the node has karpenter.sh/do-not-disrupt=true")
            }
            KeptReason::PodDoNotDisrupt { pod } => {
                write!(f, "pod {pod} has karpenter.sh/do-not-disrupt=true")
            }
            KeptReason::PdbBlocks { pdb, pod } => write!(
                f,
                "PodDisruptionBudget {pdb} allows no disruption of pod {pod} now"
            ),
            KeptReason::NodePoolNotFound { pool } if pool.is_empty() => {
                write!(f, "the node has no karpenter.sh/nodepool label")
            }
            KeptReason::NodePoolNotFound { pool } => write!(f, "NodePool {pool} not found"),
            KeptReason::BudgetExhausted {
                pool,
                reason,
                allowed,
                disrupting,
                until,
                error,
            } => {
                if let Some(e) = error {
                    // Named per reason: a node consolidation and drift both look at would
                    // otherwise list the same sentence twice.
                    return write!(
                        f,
                        "NodePool {pool}'s budget for {reason:?} allows nothing because a budget is invalid (Karpenter fails closed): {e}"
                    );
                }
                write!(
                    f,
                    "NodePool {pool}'s budget for {reason:?} allows {allowed} disrupting node(s) and {disrupting} already are"
                )?;
                if let Some(u) = until {
                    write!(f, " (until {u})")?;
                }
                Ok(())
            }
            KeptReason::ConsolidationDisabled { pool } => write!(
                f,
                "NodePool {pool} has consolidation disabled (consolidateAfter: Never)"
            ),
            KeptReason::OnlyWhenEmpty { pool } => write!(
                f,
                "NodePool {pool} consolidates only empty nodes (consolidationPolicy: WhenEmpty)"
            ),
            KeptReason::ConsolidateAfterPending { remaining } => write!(
                f,
                "consolidateAfter has not elapsed since the last pod event ({} left)",
                hms(*remaining)
            ),
            KeptReason::PodWouldNotSchedule { pod, why } => {
                write!(f, "pod {pod} would not schedule elsewhere: {why}")
            }
            KeptReason::NoCheaperReplacement { current, best } => match best {
                Some(b) => write!(
                    f,
                    "no cheaper replacement: the cheapest that holds its pods costs ${b:.4}/h, the node ${current:.4}/h"
                ),
                None => write!(f, "no cheaper replacement than ${current:.4}/h"),
            },
            KeptReason::SpotToSpotDisabled => write!(
                f,
                "replacing a spot node with a spot node needs the SpotToSpotConsolidation feature gate"
            ),
            KeptReason::SpotToSpotTooFewTypes { cheaper } => write!(
                f,
                "spot-to-spot consolidation needs 15 cheaper instance types than the node's, got {cheaper}"
            ),
            KeptReason::NeedsSeveralNodes { count } => write!(
                f,
                "its pods would need {count} new nodes; consolidation replaces a node by at most one"
            ),
            KeptReason::BelowMinimumSavings { savings, minimum } => write!(
                f,
                "the saving ${savings:.4}/h is below the minimum ${minimum:.4}/h"
            ),
            KeptReason::InstanceTypeNotFound { instance_type } => write!(
                f,
                "instance type {instance_type:?} is not among its NodePool's instance types"
            ),
            KeptReason::MissingLabel { label } => write!(f, "the node has no {label} label"),
            KeptReason::UninitializedDestination { pod, node } => write!(
                f,
                "pod {pod} would move to node {node}, which is not initialized yet"
            ),
            KeptReason::InUse => write!(
                f,
                "in use: not empty, not drifted, not expired, and no consolidation applies"
            ),
        }
    }
}
