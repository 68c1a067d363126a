//! Consolidation validation (Karpenter v1 §12): after the wait, does a command planned
//! earlier still hold on the cluster as it is now? The controller re-plans its candidates on
//! a fresh input and carries the command out only if they are still candidates, the budgets
//! still allow them, every pod still lands, and the outcome is the same kind with the
//! replacement's instance types still among those the fresh simulation offers.

use std::collections::BTreeSet;
use std::fmt;

use crate::scheduling::{Packing, SolveOptions};

use super::super::candidates::{Candidate, candidates};
use super::super::command::{Action, Command, Method};
use super::super::consolidation::{self, Outcome};
use super::super::input::DisruptionInput;
use super::super::reasons::KeptReason;
use super::Planner;

/// Why a command no longer holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Invalid {
    /// A candidate is no longer a managed node of the cluster.
    CandidateGone {
        /// The node.
        node: String,
    },
    /// A candidate is now kept for this reason (a new do-not-disrupt pod, a PDB, a pod event
    /// that restarted `consolidateAfter`, …).
    CandidateKept {
        /// The node.
        node: String,
        /// Why.
        reason: KeptReason,
    },
    /// An emptiness candidate has pods that would move now.
    NotEmpty {
        /// The node.
        node: String,
    },
    /// The budgets no longer allow disrupting this candidate.
    BudgetExhausted {
        /// The node.
        node: String,
    },
    /// The fresh simulation keeps the candidates (a pod fits nowhere, no cheaper replacement,
    /// below the minimum saving, …).
    NoLongerWorthIt {
        /// Why.
        reason: KeptReason,
    },
    /// The fresh simulation comes to a different command.
    Changed {
        /// What changed.
        what: String,
    },
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::CandidateGone { node } => write!(f, "node {node} is no longer a candidate"),
            Invalid::CandidateKept { node, reason } => write!(f, "node {node} is kept: {reason}"),
            Invalid::NotEmpty { node } => write!(f, "node {node} is no longer empty"),
            Invalid::BudgetExhausted { node } => {
                write!(f, "the disruption budget no longer allows node {node}")
            }
            Invalid::NoLongerWorthIt { reason } => write!(f, "{reason}"),
            Invalid::Changed { what } => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks that `command` (planned earlier) still holds on `input`. Drift and expiration are
/// not validated (Karpenter does not), so they always hold.
pub fn validate(input: &DisruptionInput, command: &Command) -> Result<(), Invalid> {
    let multi = match command.method {
        Method::Expiration | Method::Drift => return Ok(()),
        Method::Emptiness => None,
        Method::MultiNodeConsolidation => Some(true),
        Method::SingleNodeConsolidation => Some(false),
    };
    let planner = Planner::new(input, false);
    let deleting = planner.deleting.clone();
    let cands = candidates(input, &|i| deleting.contains(&i));
    let mut batch: Vec<&Candidate<'_>> = Vec::with_capacity(command.candidates.len());
    for d in &command.candidates {
        let Some(c) = cands.iter().find(|c| c.name() == d.node) else {
            return Err(Invalid::CandidateGone {
                node: d.node.clone(),
            });
        };
        let kept = |reason: KeptReason| Invalid::CandidateKept {
            node: d.node.clone(),
            reason,
        };
        if let Some(r) = c.node_blockers.first().or(c.pod_blockers.first()) {
            return Err(kept(r.clone()));
        }
        if let Some(pool) = c.pool
            && pool.consolidate_after.is_none()
        {
            return Err(kept(KeptReason::ConsolidationDisabled {
                pool: c.pool_name().to_owned(),
            }));
        }
        if let Err(r) = &c.consolidatable {
            return Err(kept(r.clone()));
        }
        match multi {
            None if !c.empty => {
                return Err(Invalid::NotEmpty {
                    node: d.node.clone(),
                });
            }
            Some(_) => {
                if c.empty {
                    // Emptiness handles it, under the `Empty` budget.
                    return Err(Invalid::Changed {
                        what: format!("node {} is empty now", d.node),
                    });
                }
                if let Some(r) = c.consolidation_blockers().into_iter().next() {
                    return Err(kept(r));
                }
            }
            None => {}
        }
        batch.push(c);
    }
    let mut budgets = planner.budgets(&cands);
    let reason = command.method.reason().expect("consolidation is budgeted");
    for c in &batch {
        if !budgets.take(c.pool_name(), reason) {
            return Err(Invalid::BudgetExhausted {
                node: c.name().to_owned(),
            });
        }
    }
    let Some(multi) = multi else {
        return Ok(());
    };
    let sim = if !multi && input.options.replace_with_several {
        let cheapest = SolveOptions {
            packing: Packing::Cheapest,
            ..planner.solve.clone()
        };
        planner.simulate_with(&cands, &batch, &cheapest)
    } else {
        planner.simulate(&cands, &batch)
    };
    let types = &input.snapshot.node_pools;
    let outcome = consolidation::decide(&batch, &sim.answer, types, &input.options, multi);
    match (command.action, &outcome) {
        (_, Outcome::Keep(r)) => Err(Invalid::NoLongerWorthIt { reason: r.clone() }),
        (Action::Delete, Outcome::Delete) => check_savings(&batch, &outcome),
        (Action::Delete, Outcome::Replace(_)) => Err(Invalid::Changed {
            what: "the pods now need a replacement node".into(),
        }),
        (Action::Replace, Outcome::Delete) => Err(Invalid::Changed {
            what: "a better option exists: the pods fit without a replacement".into(),
        }),
        (Action::Replace, Outcome::Replace(fresh)) => {
            if fresh.len() != command.replacements.len() {
                return Err(Invalid::Changed {
                    what: format!(
                        "the pods now need {} replacement(s), not {}",
                        fresh.len(),
                        command.replacements.len()
                    ),
                });
            }
            let offered: BTreeSet<&str> = fresh
                .iter()
                .flat_map(|r| r.instance_types.iter().map(|o| o.name.as_str()))
                .collect();
            for r in &command.replacements {
                if let Some(t) = r
                    .instance_types
                    .iter()
                    .find(|o| !offered.contains(o.name.as_str()))
                {
                    return Err(Invalid::Changed {
                        what: format!("instance type {} no longer fits the replacement", t.name),
                    });
                }
            }
            check_savings(&batch, &outcome)
        }
    }
}

/// The pools' minimum saving still met.
fn check_savings(batch: &[&Candidate<'_>], outcome: &Outcome) -> Result<(), Invalid> {
    let minimum = batch
        .iter()
        .filter_map(|c| c.pool.map(|p| p.min_savings_per_hour))
        .fold(0.0, f64::max);
    let before: f64 = batch.iter().filter_map(|c| c.price).sum();
    let savings = before - outcome.replacement_price();
    if minimum > 0.0 && savings < minimum {
        return Err(Invalid::NoLongerWorthIt {
            reason: KeptReason::BelowMinimumSavings { savings, minimum },
        });
    }
    Ok(())
}
