//! The pure decisions of the NodeClaim lifecycle.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
use serde_json::{Value, json};

use crate::controllers::conditions;
use crate::controllers::termination::{TERMINATION_FINALIZER, has_finalizer};

/// What a NodeClaim needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleStep {
    /// Create its instance.
    Launch,
    /// Delete it (liveness), with the event reason and message.
    Delete {
        /// Event reason.
        reason: &'static str,
        /// Event message.
        message: String,
    },
    /// Launched, no Node yet; look again after `recheck`.
    WaitForRegistration {
        /// When to look again (the remaining TTL, at most 10 s).
        recheck: Duration,
    },
    /// Its Node appeared: take it over.
    Register,
    /// Registered, but the Node carries `karpenter.sh/unregistered` again: remove it.
    ///
    /// kube-controller-manager (before 1.26) patches taints from a possibly stale copy of the
    /// Node without a resourceVersion, so lifting `not-ready` can write back the taint our
    /// registration had just removed; left alone the node never initializes.
    RemoveUnregisteredTaint,
    /// Registered, but the Node lacks the termination finalizer (registered by an older
    /// version, or someone removed it while the Node lives): add it back.
    AddNodeFinalizer,
    /// Registered; the Node is not ready yet.
    WaitForInitialization,
    /// The Node is ready: mark the claim initialized.
    Initialize,
    /// Nothing to do.
    Done,
}

fn is_true(claim: &NodeClaim, type_: &str) -> bool {
    claim.status.as_ref().is_some_and(|s| s.is_true(type_))
}

fn since(t: Option<Timestamp>, now: Timestamp) -> Duration {
    t.and_then(|t| now.duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO)
}

/// The next step for `claim`, given its Node (found by provider id), if any.
///
/// Liveness as Karpenter: not launched `launch_ttl` after creation, or launched but not
/// registered `registration_ttl` after the launch, means delete.
pub fn next_step(
    claim: &NodeClaim,
    node: Option<&Node>,
    now: Timestamp,
    launch_ttl: Duration,
    registration_ttl: Duration,
) -> LifecycleStep {
    let launched = is_true(claim, conditions::LAUNCHED)
        && claim
            .status
            .as_ref()
            .is_some_and(|s| s.provider_id.is_some());
    if !launched {
        let age = since(claim.metadata.creation_timestamp.as_ref().map(|t| t.0), now);
        if age >= launch_ttl {
            return LifecycleStep::Delete {
                reason: "LaunchTimeout",
                message: format!(
                    "NodeClaim was not launched within {}s of its creation",
                    launch_ttl.as_secs()
                ),
            };
        }
        return LifecycleStep::Launch;
    }
    if !is_true(claim, conditions::REGISTERED) {
        if node.is_some() {
            return LifecycleStep::Register;
        }
        let launched_at = claim
            .status
            .as_ref()
            .and_then(|s| s.condition(conditions::LAUNCHED))
            .map(|c| c.last_transition_time.0);
        let waited = since(launched_at, now);
        if waited >= registration_ttl {
            return LifecycleStep::Delete {
                reason: "RegistrationTimeout",
                message: format!(
                    "Node did not register within {}s of launch",
                    registration_ttl.as_secs()
                ),
            };
        }
        let left = registration_ttl - waited;
        return LifecycleStep::WaitForRegistration {
            recheck: left.min(Duration::from_secs(10)),
        };
    }
    if node.is_some_and(has_unregistered_taint) {
        return LifecycleStep::RemoveUnregisteredTaint;
    }
    if node.is_some_and(|n| {
        n.metadata.deletion_timestamp.is_none() && !has_finalizer(n.metadata.finalizers.as_ref())
    }) {
        return LifecycleStep::AddNodeFinalizer;
    }
    if is_true(claim, conditions::INITIALIZED) {
        return LifecycleStep::Done;
    }
    match node {
        Some(n) if is_initialized(claim, n) => LifecycleStep::Initialize,
        _ => LifecycleStep::WaitForInitialization,
    }
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// Whether the Node still carries `karpenter.sh/unregistered`.
pub fn has_unregistered_taint(node: &Node) -> bool {
    node_taints(node)
        .iter()
        .any(|t| t.key == labels::UNREGISTERED_TAINT)
}

/// `metadata.resourceVersion` of `node`, for merge patches that must fail with a conflict
/// rather than overwrite a taint list someone else changed since we read it.
fn version_guard(node: &Node) -> Value {
    match &node.metadata.resource_version {
        Some(v) => json!(v),
        None => Value::Null,
    }
}

/// The merge patch that removes `karpenter.sh/unregistered` from a Node and keeps every other
/// taint; guarded by the Node's resourceVersion.
pub fn unregistered_taint_removal(node: &Node) -> Value {
    let taints: Vec<&Taint> = node_taints(node)
        .iter()
        .filter(|t| t.key != labels::UNREGISTERED_TAINT)
        .collect();
    json!({
        "metadata": {"resourceVersion": version_guard(node)},
        "spec": {"taints": taints},
    })
}

/// Resources every node registers by itself; anything else a claim asks for (GPUs, Neuron
/// devices, …) is an extended resource a device plugin must register.
const STANDARD_RESOURCES: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pods"];

/// Karpenter's initialization rule: the Node is Ready, none of the claim's startup taints (nor
/// the unregistered taint) are left, and every extended resource the claim asked for (e.g.
/// `nvidia.com/gpu`) shows up in the Node's allocatable with a non-zero amount.
pub fn is_initialized(claim: &NodeClaim, node: &Node) -> bool {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return false;
    }
    let taints = node_taints(node);
    let startup_left = taints.iter().any(|t| {
        t.key == labels::UNREGISTERED_TAINT
            || claim
                .spec
                .startup_taints
                .iter()
                .any(|s| s.key == t.key && s.effect == t.effect)
    });
    if startup_left {
        return false;
    }
    let allocatable = status.and_then(|s| s.allocatable.as_ref());
    claim.spec.resources.requests.keys().all(|name| {
        if STANDARD_RESOURCES.contains(&name.as_str()) {
            return true;
        }
        allocatable
            .and_then(|a| a.get(name))
            .is_some_and(|q| q.0 != "0")
    })
}

/// The merge patch that takes a freshly registered Node over: the claim's labels plus
/// `karpenter.sh/registered=true`, the claim's taints added (startup taints too: Karpenter
/// adds them at registration, a daemon removes them), the unregistered taint removed, and an
/// owner reference to the claim. Guarded by the Node's resourceVersion: the taint list is
/// replaced whole, so a concurrent taint change must make this patch fail, not be lost.
pub fn registration_patch(claim: &NodeClaim, node: &Node, owner: OwnerReference) -> Value {
    let mut node_labels: BTreeMap<String, String> =
        claim.metadata.labels.clone().unwrap_or_default();
    node_labels.insert(labels::NODE_REGISTERED.to_owned(), "true".to_owned());
    let mut taints: Vec<Taint> = node_taints(node)
        .iter()
        .filter(|t| t.key != labels::UNREGISTERED_TAINT)
        .cloned()
        .collect();
    for t in claim.spec.taints.iter().chain(&claim.spec.startup_taints) {
        if !taints
            .iter()
            .any(|e| e.key == t.key && e.effect == t.effect)
        {
            taints.push(t.clone());
        }
    }
    let mut finalizers = node.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == TERMINATION_FINALIZER) {
        finalizers.push(TERMINATION_FINALIZER.to_owned());
    }
    let mut owners = node.metadata.owner_references.clone().unwrap_or_default();
    if !owners.iter().any(|o| o.uid == owner.uid) {
        owners.push(owner);
    }
    json!({
        "metadata": {
            "labels": node_labels,
            "ownerReferences": owners,
            "finalizers": finalizers,
            "resourceVersion": version_guard(node),
        },
        "spec": {"taints": taints},
    })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
