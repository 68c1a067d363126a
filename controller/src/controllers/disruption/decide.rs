//! The disruption controller's pure decisions: which command of core's plan to start, what the
//! orchestration queue does next with a command in flight, which marks a crash left behind,
//! and the Events and gauges a pass produces. No I/O; `now` is an input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::api::nodepool::DisruptionReason;
use karpenter_core::disruption::budgets::BudgetMap;
use karpenter_core::disruption::candidates::candidates;
use karpenter_core::disruption::{
    Action, Command, Destination, Disrupted, DisruptionInput, Kept, KeptReason, Method, NOMINATION,
    Plan,
};
use karpenter_core::labels;
use karpenter_core::snapshot::PodKey;
use serde_json::{Value, json};

use crate::controllers::conditions::INSTANCE_TERMINATING;

/// The NodeClaim condition naming why a candidate is being disrupted.
pub const DISRUPTION_REASON: &str = "DisruptionReason";

/// A replacement missing from the model this long after the command started was deleted
/// (its launch failed): the command is rolled back (Karpenter: 5 s).
pub const REPLACEMENT_GRACE: Duration = Duration::from_secs(5);

/// A command handed to the orchestration queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedCommand {
    /// Log and event correlation id.
    pub id: u64,
    /// How core found it.
    pub method: Method,
    /// Delete or replace.
    pub action: Action,
    /// The nodes it disrupts.
    pub candidates: Vec<Disrupted>,
    /// Names of the replacement NodeClaims it created.
    pub replacements: Vec<String>,
    /// Replacements seen `Initialized`.
    pub initialized: BTreeSet<String>,
    /// Existing nodes its pods move to (kept from disruption while it is in flight).
    pub destinations: Vec<String>,
    /// When it was started.
    pub started: Timestamp,
    /// The candidates' NodeClaims were deleted; waiting for the model to show it.
    pub deleted: bool,
}

impl QueuedCommand {
    /// A queue entry for `command`, whose replacements were created as `replacements`.
    pub fn new(id: u64, command: &Command, replacements: Vec<String>, now: Timestamp) -> Self {
        let destinations = command
            .moves
            .iter()
            .filter_map(|m| match &m.to {
                Destination::Node(n) => Some(n.clone()),
                Destination::Replacement(_) => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        QueuedCommand {
            id,
            method: command.method,
            action: command.action,
            candidates: command.candidates.clone(),
            replacements,
            initialized: BTreeSet::new(),
            destinations,
            started: now,
            deleted: false,
        }
    }

    /// Karpenter's lowercase reason label (`drifted`, `empty`, `underutilized`).
    pub fn reason_label(&self) -> &'static str {
        reason_label(self.method)
    }
}

/// Karpenter's lowercase reason label of a method's commands.
pub fn reason_label(method: Method) -> &'static str {
    match method.reason() {
        Some(DisruptionReason::Drifted) => "drifted",
        Some(DisruptionReason::Empty) => "empty",
        Some(DisruptionReason::Underutilized) => "underutilized",
        None => "expired",
    }
}

/// The reason as the API spells it (`Drifted`, `Empty`, `Underutilized`).
pub fn reason_name(reason: DisruptionReason) -> &'static str {
    match reason {
        DisruptionReason::Drifted => "Drifted",
        DisruptionReason::Empty => "Empty",
        DisruptionReason::Underutilized => "Underutilized",
    }
}

/// NodePools whose budgets allow no disruption for a reason while they have nodes, as
/// (pool, reason, sentence) for Karpenter's NodePool `DisruptionBlocked` event. The sentence
/// names the limiting budget (its index in `spec.disruption.budgets`) and when it ends, or the
/// invalid budget that closes the pool.
pub fn blocked_pools(budgets: &BudgetMap) -> Vec<(String, &'static str, String)> {
    budgets
        .detail
        .iter()
        .filter(|(_, d)| d.total > 0 && d.allowed == Some(0))
        .map(|((pool, reason), d)| {
            let name = reason_name(*reason);
            let mut note = format!(
                "No allowed disruptions for disruption reason {name} due to blocking budget"
            );
            match (&d.error, d.budget, d.until) {
                (Some(e), _, _) => note.push_str(&format!(" (invalid budget: {e})")),
                (None, Some(i), Some(until)) => note.push_str(&format!(
                    " (spec.disruption.budgets[{i}], active until {until})"
                )),
                (None, Some(i), None) => note.push_str(&format!(" (spec.disruption.budgets[{i}])")),
                (None, None, _) => {}
            }
            (pool.clone(), name, note)
        })
        .collect()
}

/// The `Nominated` Event of each pod `command` moves, once its replacements exist (`created`
/// holds their NodeClaim names in the command's order): "Pod should schedule on: node/<name>"
/// or "… nodeclaim/<name>", the provisioner's wording. Pods bound for a replacement that was
/// not created are left out.
pub fn nominations(command: &Command, created: &[String]) -> Vec<(PodKey, String)> {
    command
        .moves
        .iter()
        .filter_map(|m| {
            let target = match &m.to {
                Destination::Node(node) => format!("node/{node}"),
                Destination::Replacement(i) => format!("nodeclaim/{}", created.get(*i)?),
            };
            Some((m.pod.clone(), format!("Pod should schedule on: {target}")))
        })
        .collect()
}

/// The voluntary command a pass starts: the first of the plan that is not an expiration
/// (the expiration controller deletes expired claims itself).
pub fn next_command(plan: &Plan) -> Option<&Command> {
    plan.commands
        .iter()
        .find(|c| c.method != Method::Expiration)
}

/// Whether core's command must be validated after the wait before it starts (§12).
pub fn needs_validation(command: &Command) -> bool {
    matches!(
        command.method,
        Method::Emptiness | Method::MultiNodeConsolidation | Method::SingleNodeConsolidation
    )
}

/// Tells the planner about the commands in flight: their candidates are being deleted and
/// the nodes their pods move to are nominated.
pub fn mark_in_flight(input: &mut DisruptionInput, queue: &[QueuedCommand]) {
    let until = input.now + NOMINATION;
    for cmd in queue {
        for d in &cmd.candidates {
            if let Some(f) = input.nodes.get_mut(&d.node) {
                f.deleting = true;
            }
        }
        for n in &cmd.destinations {
            if let Some(f) = input.nodes.get_mut(n) {
                f.nominated_until = Some(f.nominated_until.map_or(until, |u| u.max(until)));
            }
        }
    }
}

/// Nominates nodes initialized less than [`NOMINATION`] ago: the provisioner made them for
/// pending pods that may not be bound yet, so they must not look empty to emptiness (Karpenter
/// nominates them when it schedules pods onto them).
pub fn nominate_new_nodes(input: &mut DisruptionInput) {
    let now = input.now;
    for f in input.nodes.values_mut() {
        let Some(at) = f.claim.as_ref().and_then(|c| c.initialized_at) else {
            continue;
        };
        let until = at + NOMINATION;
        if until > now {
            f.nominated_until = Some(f.nominated_until.map_or(until, |u| u.max(until)));
        }
    }
}

/// What the queue does next with a command.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueStep {
    /// Replacements are not all initialized yet.
    Wait {
        /// Replacements not launched yet (`DisruptionLaunching`).
        launching: Vec<String>,
        /// Launched but not initialized (`DisruptionWaitingReadiness`).
        waiting: Vec<String>,
        /// Seen initialized for the first time now.
        initialized: Vec<String>,
    },
    /// Every replacement is initialized: delete the candidates' NodeClaims.
    Delete {
        /// Seen initialized for the first time now.
        initialized: Vec<String>,
    },
    /// The candidates' deletion is visible: the command is done.
    Done,
    /// The command cannot finish: unmark the candidates.
    Rollback {
        /// Why, for the log and the Event.
        why: String,
        /// Replacements that never initialized (Karpenter's queue-failure count).
        never_initialized: usize,
    },
}

fn is_true(claim: &NodeClaim, type_: &str) -> bool {
    claim.status.as_ref().is_some_and(|s| s.is_true(type_))
}

fn is_deleting(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some() || is_true(claim, INSTANCE_TERMINATING)
}

/// The queue's next step for `cmd`, given every NodeClaim of the model.
pub fn queue_step(
    cmd: &QueuedCommand,
    claims: &[&NodeClaim],
    now: Timestamp,
    timeout: Duration,
) -> QueueStep {
    let by_name: BTreeMap<&str, &NodeClaim> = claims
        .iter()
        .filter_map(|c| c.metadata.name.as_deref().map(|n| (n, *c)))
        .collect();
    if cmd.deleted {
        let visible = cmd.candidates.iter().all(|d| {
            by_name
                .get(d.node_claim.as_str())
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
        });
        return if visible {
            QueueStep::Done
        } else {
            QueueStep::Delete {
                initialized: Vec::new(),
            }
        };
    }
    let age = Duration::try_from(now.duration_since(cmd.started)).unwrap_or_default();
    let mut launching = Vec::new();
    let mut waiting = Vec::new();
    let mut initialized = Vec::new();
    for name in &cmd.replacements {
        if cmd.initialized.contains(name) {
            continue;
        }
        match by_name.get(name.as_str()) {
            None if age > REPLACEMENT_GRACE => {
                return rollback(
                    cmd,
                    format!("replacement NodeClaim {name} is gone (its launch failed)"),
                );
            }
            None => launching.push(name.clone()),
            Some(c) if c.metadata.deletion_timestamp.is_some() => {
                return rollback(
                    cmd,
                    format!("replacement NodeClaim {name} is being deleted"),
                );
            }
            Some(c) if is_true(c, "Initialized") => initialized.push(name.clone()),
            Some(c) if is_true(c, "Launched") => waiting.push(name.clone()),
            Some(_) => launching.push(name.clone()),
        }
    }
    if launching.is_empty() && waiting.is_empty() {
        return QueueStep::Delete { initialized };
    }
    if age > timeout {
        let mut pending = launching.clone();
        pending.extend(waiting.iter().cloned());
        return rollback(
            cmd,
            format!(
                "timed out after {}s waiting for replacement(s) {} to initialize",
                timeout.as_secs(),
                pending.join(", ")
            ),
        );
    }
    QueueStep::Wait {
        launching,
        waiting,
        initialized,
    }
}

fn rollback(cmd: &QueuedCommand, why: String) -> QueueStep {
    QueueStep::Rollback {
        why,
        never_initialized: cmd.replacements.len() - cmd.initialized.len(),
    }
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Whether the Node carries the `karpenter.sh/disrupted` taint (any effect).
pub fn has_disrupted_taint(node: &Node) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == labels::DISRUPTED_TAINT)
}

/// The merge patch marking a candidate `karpenter.sh/disrupted:NoSchedule` (replacing another
/// effect of that key), guarded by the Node's resourceVersion; `None` when already marked.
pub fn mark_patch(node: &Node) -> Option<Value> {
    if crate::controllers::termination::decide::has_disrupted_taint(node) {
        return None;
    }
    let mut list: Vec<Taint> = taints(node)
        .iter()
        .filter(|t| t.key != labels::DISRUPTED_TAINT)
        .cloned()
        .collect();
    list.push(Taint {
        key: labels::DISRUPTED_TAINT.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    });
    Some(json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"taints": list},
    }))
}

/// The merge patch removing the disrupted taint, guarded; `None` when there is none.
pub fn unmark_patch(node: &Node) -> Option<Value> {
    if !has_disrupted_taint(node) {
        return None;
    }
    let list: Vec<&Taint> = taints(node)
        .iter()
        .filter(|t| t.key != labels::DISRUPTED_TAINT)
        .collect();
    Some(json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"taints": list},
    }))
}

/// Marks a crash (or a failed command) left behind: managed Nodes with the disrupted taint
/// and NodeClaims with `DisruptionReason`, that no queued command holds and that are not
/// being deleted (termination owns the taint from then on).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaleMarks {
    /// Nodes to untaint.
    pub nodes: Vec<String>,
    /// NodeClaims to clear `DisruptionReason` on.
    pub claims: Vec<String>,
}

/// Finds the marks to clean up at the start of a pass (Karpenter §2).
pub fn stale_marks(nodes: &[&Node], claims: &[&NodeClaim], queue: &[QueuedCommand]) -> StaleMarks {
    let queued_nodes: BTreeSet<&str> = queue
        .iter()
        .flat_map(|c| c.candidates.iter().map(|d| d.node.as_str()))
        .collect();
    let queued_claims: BTreeSet<&str> = queue
        .iter()
        .flat_map(|c| c.candidates.iter().map(|d| d.node_claim.as_str()))
        .collect();
    let mut by_node: BTreeMap<&str, &NodeClaim> = BTreeMap::new();
    let mut by_provider: BTreeMap<&str, &NodeClaim> = BTreeMap::new();
    for c in claims {
        if let Some(s) = c.status.as_ref() {
            if let Some(n) = s.node_name.as_deref() {
                by_node.insert(n, c);
            }
            if let Some(p) = s.provider_id.as_deref() {
                by_provider.insert(p, c);
            }
        }
    }
    let mut out = StaleMarks::default();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let managed = node
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(labels::NODE_POOL));
        if !managed || !has_disrupted_taint(node) || queued_nodes.contains(name) {
            continue;
        }
        if node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
        let claim = by_node
            .get(name)
            .or_else(|| provider_id.and_then(|p| by_provider.get(p)));
        // Without its claim the node cannot be told apart from one being terminated.
        if claim.is_none_or(|c| is_deleting(c)) {
            continue;
        }
        out.nodes.push(name.to_owned());
    }
    for c in claims {
        let Some(name) = c.metadata.name.as_deref() else {
            continue;
        };
        let marked = c
            .status
            .as_ref()
            .is_some_and(|s| s.condition(DISRUPTION_REASON).is_some());
        if marked && !queued_claims.contains(name) && !is_deleting(c) {
            out.claims.push(name.to_owned());
        }
    }
    out
}

/// The Event a kept node gets, if its first actionable reason deserves one: `DisruptionBlocked`
/// for what blocks every method (do-not-disrupt, a PDB, a budget, a missing NodePool),
/// `Unconsolidatable` for what stops consolidation. Lifecycle states (deleting, not
/// initialized), `consolidateAfter` still running and "in use" get none.
///
/// Returns the Event reason, the reason's kind (the Event's `action`: kube's recorder folds
/// Events with the same reason and action into one series, so a node blocked by a PDB and
/// then by a budget needs two actions to get two Events) and the sentence.
pub fn kept_event(kept: &Kept) -> Option<(&'static str, &'static str, String)> {
    kept.reasons.iter().find_map(|r| {
        let reason = match r {
            KeptReason::Deleting
            | KeptReason::NotInitialized
            | KeptReason::ConsolidateAfterPending { .. }
            | KeptReason::InUse
            | KeptReason::Nominated { .. } => return None,
            KeptReason::NodeDoNotDisrupt
            | KeptReason::PodDoNotDisrupt { .. }
            | KeptReason::PdbBlocks { .. }
            | KeptReason::NodePoolNotFound { .. }
            | KeptReason::BudgetExhausted { .. } => "DisruptionBlocked",
            _ => "Unconsolidatable",
        };
        Some((reason, r.kind(), r.to_string()))
    })
}

/// Nodes eligible per reason label (`drifted`, `empty`, `underutilized`): candidates nothing
/// blocks that the reason's method could take (Karpenter's `eligible_nodes` gauge).
pub fn eligible_counts(input: &DisruptionInput) -> [(&'static str, usize); 3] {
    let cands = candidates(input, &|i| {
        input
            .nodes
            .get(&input.snapshot.nodes[i].name)
            .is_some_and(|f| f.deleting)
    });
    let (mut drifted, mut empty, mut underutilized) = (0, 0, 0);
    for c in cands.iter().filter(|c| c.node_blockers.is_empty()) {
        if c.claim.drifted.is_some()
            && (c.pod_blockers.is_empty() || c.claim.termination_grace_period.is_some())
        {
            drifted += 1;
        }
        if !c.pod_blockers.is_empty() || c.consolidatable.is_err() {
            continue;
        }
        if c.empty {
            empty += 1;
        } else if c.consolidation_blockers().is_empty() {
            underutilized += 1;
        }
    }
    [
        ("drifted", drifted),
        ("empty", empty),
        ("underutilized", underutilized),
    ]
}

/// When the plan may change with nothing else changing: the earliest `consolidateAfter`,
/// budget window or nomination that ends after `now`.
pub fn next_wake(plan: &Plan, now: Timestamp) -> Option<Duration> {
    plan.kept
        .iter()
        .flat_map(|k| k.reasons.iter())
        .filter_map(|r| match r {
            KeptReason::ConsolidateAfterPending { remaining } => Some(*remaining),
            KeptReason::BudgetExhausted { until: Some(t), .. }
            | KeptReason::Nominated { until: t } => Duration::try_from(t.duration_since(now)).ok(),
            _ => None,
        })
        .filter(|d| !d.is_zero())
        .min()
}

/// One line naming a command's nodes and replacements, for logs and Events.
pub fn describe(command: &Command) -> String {
    let nodes: Vec<&str> = command.candidates.iter().map(|d| d.node.as_str()).collect();
    let mut text = format!(
        "{} {} via {}: {}",
        command.action.as_str(),
        nodes.len(),
        command.method.as_str(),
        nodes.join(", ")
    );
    for (i, r) in command.replacements.iter().enumerate() {
        let types: Vec<&str> = r
            .instance_types
            .iter()
            .take(5)
            .map(|o| o.name.as_str())
            .collect();
        text.push_str(&format!(
            "; replacement {} from NodePool {} ({}{})",
            i + 1,
            r.node_pool,
            types.join(", "),
            if r.instance_types.len() > 5 {
                ", …"
            } else {
                ""
            }
        ));
    }
    // `+ 0.0` turns the -0.0 a sum of nothing can give into 0.0 ("$-0.0000/h").
    text.push_str(&format!(
        "; ${:.4}/h → ${:.4}/h",
        command.price_before + 0.0,
        command.price_after + 0.0
    ));
    text
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
