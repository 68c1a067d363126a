//! The pure decisions of termination: what a deleted Node and a deleted NodeClaim need next.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Taint};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
use serde_json::{Value, json};

use super::drain::{DrainPlan, is_waiting, plan_drain};

/// Annotation holding a deleted NodeClaim's termination deadline (RFC 3339): its deletion time
/// plus `spec.terminationGracePeriod`.
pub const TERMINATION_DEADLINE_ANNOTATION: &str = "karpenter.sh/nodeclaim-termination-timestamp";

/// Label that takes a draining node out of external load balancers.
pub const EXCLUDE_FROM_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// What a deleted NodeClaim needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimStep {
    /// Write the termination deadline annotation first.
    StampDeadline(Timestamp),
    /// Delete these Nodes (their own termination drains them).
    DeleteNodes(Vec<String>),
    /// The claim's Nodes are being deleted; wait for them to go.
    AwaitNodes,
    /// Terminate the instance and wait until the cloud reports it gone.
    TerminateInstance(String),
    /// Nothing left: remove the finalizer.
    RemoveFinalizer,
}

/// The termination deadline of a claim: the annotation, else deletion time plus its
/// `terminationGracePeriod` (None without one).
pub fn claim_deadline(claim: &NodeClaim) -> Option<Timestamp> {
    if let Some(stamped) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TERMINATION_DEADLINE_ANNOTATION))
        .and_then(|v| v.parse::<Timestamp>().ok())
    {
        return Some(stamped);
    }
    let deleted = claim.metadata.deletion_timestamp.as_ref()?.0;
    let grace = claim.spec.termination_grace_period.as_ref()?.parse().ok()?;
    deleted
        .checked_add(SignedDuration::try_from(grace).ok()?)
        .ok()
}

fn has_deadline_annotation(claim: &NodeClaim) -> bool {
    claim
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(TERMINATION_DEADLINE_ANNOTATION))
}

/// The next step of a deleted claim, given the Nodes with its provider id.
pub fn claim_step(claim: &NodeClaim, nodes: &[&Node]) -> ClaimStep {
    if !has_deadline_annotation(claim)
        && let Some(deadline) = claim_deadline(claim)
    {
        return ClaimStep::StampDeadline(deadline);
    }
    let alive: Vec<String> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    if !alive.is_empty() {
        return ClaimStep::DeleteNodes(alive);
    }
    if !nodes.is_empty() {
        return ClaimStep::AwaitNodes;
    }
    match claim.status.as_ref().and_then(|s| s.provider_id.clone()) {
        Some(id) => ClaimStep::TerminateInstance(id),
        None => ClaimStep::RemoveFinalizer,
    }
}

/// What is known of a node's instance when its termination is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Not asked (the Node is Ready, so it is drained whatever the cloud says).
    NotAsked,
    /// The cloud still has it.
    Present,
    /// The cloud no longer has it (or it is shutting down).
    Gone,
}

/// Everything a deleted Node's termination looks at.
#[derive(Clone, Copy, Debug)]
pub struct NodeInputs<'a> {
    /// The Node (it has a deletion timestamp and the termination finalizer).
    pub node: &'a Node,
    /// The NodeClaims with its provider id.
    pub claims: &'a [&'a NodeClaim],
    /// The pods bound to it.
    pub pods: &'a [&'a Pod],
    /// Every VolumeAttachment naming it.
    pub attachments: &'a [&'a VolumeAttachment],
    /// The claims of the pods bound to it (to tell which volumes a drained pod used).
    pub volume_claims: &'a [&'a PersistentVolumeClaim],
    /// What the cloud says of its instance.
    pub instance: InstanceState,
    /// Now.
    pub now: Timestamp,
}

/// What a deleted Node needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Claims to delete (deleting a Node deletes its claim and the other way round).
    pub delete_claims: Vec<String>,
    /// The Node still lacks the disrupted taint or the load-balancer exclusion label.
    pub taint: bool,
    /// The phase it is in.
    pub phase: NodePhase,
}

/// The phase of a Node's termination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePhase {
    /// Pods are still waited for.
    Drain(DrainPlan),
    /// Drained; these VolumeAttachments have not gone yet.
    AwaitVolumes(Vec<String>),
    /// Drained and detached (or past the deadline): terminate the instance, then remove the
    /// finalizer once the cloud reports it gone.
    TerminateInstance,
    /// The Node is not Ready and its instance is gone: there is nobody to drain; remove the
    /// finalizer.
    InstanceGone,
}

/// True when the Node's `Ready` condition is `True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The termination deadline for a Node: the earliest of its claims'.
pub fn node_deadline(claims: &[&NodeClaim]) -> Option<Timestamp> {
    claims.iter().filter_map(|c| claim_deadline(c)).min()
}

/// The next step of a deleted Node.
pub fn node_plan(input: &NodeInputs<'_>) -> NodePlan {
    let delete_claims = input
        .claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let taint = !has_disrupted_taint(input.node) || !is_excluded_from_load_balancers(input.node);
    let phase = node_phase(input);
    NodePlan {
        delete_claims,
        taint,
        phase,
    }
}

fn node_phase(input: &NodeInputs<'_>) -> NodePhase {
    if input.instance == InstanceState::Gone && !is_ready(input.node) {
        return NodePhase::InstanceGone;
    }
    let deadline = node_deadline(input.claims);
    if deadline.is_some_and(|d| input.now >= d) {
        return NodePhase::TerminateInstance;
    }
    let plan = plan_drain(input.pods.iter().copied(), deadline, input.now);
    if !plan.is_drained() {
        return NodePhase::Drain(plan);
    }
    let pending = pending_attachments(input);
    if !pending.is_empty() {
        return NodePhase::AwaitVolumes(pending);
    }
    NodePhase::TerminateInstance
}

/// VolumeAttachments still on the node that termination waits for: those with a persistent
/// volume, except volumes a pod that is not drained (e.g. it tolerates the disrupted taint)
/// still uses — they stay attached while it runs.
pub fn pending_attachments(input: &NodeInputs<'_>) -> Vec<String> {
    let node_name = input.node.metadata.name.as_deref().unwrap_or("");
    let kept_claims: BTreeSet<(&str, &str)> = input
        .pods
        .iter()
        .filter(|p| !is_waiting(p, input.now))
        .flat_map(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or("");
            p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(move |v| {
                    Some((ns, v.persistent_volume_claim.as_ref()?.claim_name.as_str()))
                })
        })
        .collect();
    let kept_volumes: BTreeSet<&str> = input
        .volume_claims
        .iter()
        .filter(|c| {
            kept_claims.contains(&(
                c.metadata.namespace.as_deref().unwrap_or(""),
                c.metadata.name.as_deref().unwrap_or(""),
            ))
        })
        .filter_map(|c| c.spec.as_ref()?.volume_name.as_deref())
        .collect();
    let mut pending: Vec<String> = input
        .attachments
        .iter()
        .filter(|a| a.spec.node_name == node_name)
        .filter(|a| {
            a.spec
                .source
                .persistent_volume_name
                .as_deref()
                .is_some_and(|pv| !kept_volumes.contains(pv))
        })
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    pending.sort();
    pending
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// True when the Node has `karpenter.sh/disrupted:NoSchedule`.
pub fn has_disrupted_taint(node: &Node) -> bool {
    node_taints(node)
        .iter()
        .any(|t| t.key == labels::DISRUPTED_TAINT && t.effect == "NoSchedule")
}

fn is_excluded_from_load_balancers(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_FROM_LOAD_BALANCERS))
}

/// The merge patch that taints a node `karpenter.sh/disrupted:NoSchedule` (replacing other
/// effects of that key) and excludes it from external load balancers, guarded by the Node's
/// resourceVersion so a concurrent taint write is not lost.
pub fn disrupted_taint_patch(node: &Node) -> Value {
    let mut taints: Vec<Taint> = node_taints(node)
        .iter()
        .filter(|t| t.key != labels::DISRUPTED_TAINT)
        .cloned()
        .collect();
    taints.push(Taint {
        key: labels::DISRUPTED_TAINT.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    });
    json!({
        "metadata": {
            "labels": {EXCLUDE_FROM_LOAD_BALANCERS: "karpenter"},
            "resourceVersion": node.metadata.resource_version,
        },
        "spec": {"taints": taints},
    })
}

/// The merge patch that removes `finalizer` from an object whose finalizers are `current`,
/// guarded by its resourceVersion so a concurrent change of the list fails (409) instead of
/// being clobbered. None when the finalizer is not there.
pub fn finalizer_removal(
    current: &[String],
    resource_version: Option<&str>,
    finalizer: &str,
) -> Option<Value> {
    if !current.iter().any(|f| f == finalizer) {
        return None;
    }
    let rest: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
    Some(json!({"metadata": {"finalizers": rest, "resourceVersion": resource_version}}))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
