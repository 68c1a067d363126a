//! The pure decisions of the claim disruption controller: `Consolidatable` (spec §3.1), the
//! static part of `Drifted` (spec §3.2) and when to stamp `lastPodEventTime`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::api::{NodeClaim, NodeClaimStatus, NodePool};
use karpenter_core::ingest::disruption::requirements_drift;
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;

use crate::controllers::conditions::{INITIALIZED, LAUNCHED, upsert_condition};
use crate::controllers::hash::{NODE_CLASS_KEYS, NODE_POOL_KEYS, Stamp};

/// Condition: consolidation may consider the claim (its `consolidateAfter` has passed).
pub const CONSOLIDATABLE: &str = "Consolidatable";
/// Condition: the claim no longer matches its NodePool or node class; reason says how.
pub const DRIFTED: &str = "Drifted";
/// A NodePool template field in the hash changed.
pub const NODE_POOL_DRIFTED: &str = "NodePoolDrifted";
/// The claim's labels no longer satisfy the pool's requirements.
pub const REQUIREMENTS_DRIFTED: &str = "RequirementsDrifted";
/// The claim's instance type (or a matching offering) is no longer offered to the pool.
pub const INSTANCE_TYPE_NOT_FOUND: &str = "InstanceTypeNotFound";
/// A static EC2NodeClass field in the hash changed.
pub const NODE_CLASS_DRIFT: &str = "NodeClassDrift";
/// `lastPodEventTime` is not rewritten within this long of the previous stamp (10 s < the
/// 15 s consolidation validation wait, so a command decided meanwhile is still caught).
pub const POD_EVENT_DEDUPE: Duration = Duration::from_secs(10);

/// Why a claim is drifted: Karpenter's reason and a sentence for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftVerdict {
    /// The condition reason (`NodePoolDrifted`, `AMIDrift`, …).
    pub reason: String,
    /// The condition message.
    pub message: String,
}

impl DriftVerdict {
    /// A verdict with `reason` and `message`.
    pub fn new(reason: &str, message: impl Into<String>) -> DriftVerdict {
        DriftVerdict {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// What the consolidatable check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consolidatable {
    /// Whether the condition should be `True` (otherwise it is removed).
    pub set: bool,
    /// When to look again (the end of the `consolidateAfter` window).
    pub requeue_at: Option<Timestamp>,
}

/// Spec §3.1: `consolidate_after` is the pool's `consolidateAfter` (`None` = `Never`).
pub fn consolidatable(
    claim: &NodeClaim,
    consolidate_after: Option<Duration>,
    now: Timestamp,
) -> Consolidatable {
    let removed = Consolidatable {
        set: false,
        requeue_at: None,
    };
    let Some(after) = consolidate_after else {
        return removed;
    };
    let Some(status) = claim.status.as_ref() else {
        return removed;
    };
    let Some(initialized) = status.condition(INITIALIZED).filter(|c| c.status == "True") else {
        return removed;
    };
    let reference = status
        .last_pod_event_time
        .as_ref()
        .map_or(initialized.last_transition_time.0, |t| t.0);
    let after = SignedDuration::try_from(after).unwrap_or(SignedDuration::MAX);
    match reference.checked_add(after) {
        Ok(at) if now < at => Consolidatable {
            set: false,
            requeue_at: Some(at),
        },
        Ok(_) => Consolidatable {
            set: true,
            requeue_at: None,
        },
        // Beyond the representable future: never consolidatable.
        Err(_) => removed,
    }
}

fn annotation<'a>(m: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    m.get(key).map(String::as_str)
}

/// Static hash drift: both sides carry hash and version, the versions are equal and the hashes
/// differ. A missing annotation or another version is not drift (the hash controller stamps
/// such claims).
pub fn hash_drifted(
    claim: &NodeClaim,
    keys: crate::controllers::hash::HashKeys,
    current: &Stamp,
) -> bool {
    let Some(a) = claim.metadata.annotations.as_ref() else {
        return false;
    };
    match (annotation(a, keys.hash), annotation(a, keys.version)) {
        (Some(hash), Some(version)) => version == current.version && hash != current.hash,
        _ => false,
    }
}

/// Spec §3.2 item 3: the claim's type must still be offered to the pool, with an offering
/// (available or not) in the claim's zone and capacity type; `reserved` also matches
/// on-demand offerings.
pub fn instance_type_gone(claim: &NodeClaim, types: &[InstanceType]) -> Option<String> {
    let labels = claim.metadata.labels.clone().unwrap_or_default();
    let Some(name) = labels.get(labels::INSTANCE_TYPE) else {
        return Some("the NodeClaim has no instance-type label".into());
    };
    let Some(it) = types.iter().find(|t| &t.name == name) else {
        return Some(format!(
            "instance type {name} is no longer offered to the NodePool"
        ));
    };
    let zone = labels.get(labels::ZONE);
    let capacity = labels.get(labels::CAPACITY_TYPE);
    let matches = it.offerings.iter().any(|o| {
        zone.is_none_or(|z| *z == o.zone)
            && capacity.is_none_or(|c| {
                *c == o.capacity_type
                    || (c == "reserved" && o.capacity_type == labels::CAPACITY_ON_DEMAND)
            })
    });
    (!matches).then(|| {
        format!("instance type {name} has no offering in the NodeClaim's zone and capacity type")
    })
}

/// Everything the static drift checks read about one claim.
pub struct StaticDriftInputs<'a> {
    /// The claim.
    pub claim: &'a NodeClaim,
    /// Its NodePool (v1).
    pub pool: &'a NodePool,
    /// The pool's current hash.
    pub pool_stamp: &'a Stamp,
    /// The instance types the pool may launch; `None` (or empty) when they could not be listed:
    /// the check is skipped rather than drifting every node on a cloud hiccup.
    pub instance_types: Option<&'a [InstanceType]>,
    /// The claim's EC2NodeClass's current hash, when the class is known.
    pub class_stamp: Option<&'a Stamp>,
}

/// The first static drift, in Karpenter's order: NodePool hash, requirements, instance type,
/// EC2NodeClass hash. The cloud provider's dynamic checks (AMI, subnet, security groups) come
/// after, in the controller, only when this finds nothing.
pub fn static_drift(inp: &StaticDriftInputs<'_>) -> Option<DriftVerdict> {
    let claim = inp.claim;
    if hash_drifted(claim, NODE_POOL_KEYS, inp.pool_stamp) {
        return Some(DriftVerdict::new(
            NODE_POOL_DRIFTED,
            "the NodePool template changed since the NodeClaim was made",
        ));
    }
    let claim_labels = claim.metadata.labels.clone().unwrap_or_default();
    if requirements_drift(&claim_labels, inp.pool) {
        return Some(DriftVerdict::new(
            REQUIREMENTS_DRIFTED,
            "the NodeClaim's labels no longer satisfy the NodePool's requirements",
        ));
    }
    // An empty list is a provider that is not ready (no resolved subnets, say), not a pool
    // that offers nothing: drifting every node on it would replace the whole pool.
    if let Some(types) = inp.instance_types.filter(|t| !t.is_empty())
        && let Some(why) = instance_type_gone(claim, types)
    {
        return Some(DriftVerdict::new(INSTANCE_TYPE_NOT_FOUND, why));
    }
    if let Some(stamp) = inp.class_stamp
        && hash_drifted(claim, NODE_CLASS_KEYS, stamp)
    {
        return Some(DriftVerdict::new(
            NODE_CLASS_DRIFT,
            "the EC2NodeClass changed since the NodeClaim was launched",
        ));
    }
    None
}

/// Whether the drift checks apply at all: the Drift gate is on and the claim is `Launched`.
pub fn drift_applies(claim: &NodeClaim, drift_gate: bool) -> bool {
    drift_gate && claim.status.as_ref().is_some_and(|s| s.is_true(LAUNCHED))
}

/// The claim's status with `Consolidatable` and `Drifted` as decided, or `None` when nothing
/// changes. `drift` is `None` for "not drifted"; `keep_drift` leaves `Drifted` as it is (the
/// verdict could not be reached, e.g. the cloud did not answer).
pub fn status_update(
    claim: &NodeClaim,
    consolidatable: bool,
    drift: Option<&DriftVerdict>,
    keep_drift: bool,
) -> Option<NodeClaimStatus> {
    let mut status = claim.status.clone().unwrap_or_default();
    let mut changed = if consolidatable {
        upsert_condition(
            &mut status,
            CONSOLIDATABLE,
            "True",
            CONSOLIDATABLE,
            "",
            claim,
        )
    } else {
        remove_condition(&mut status, CONSOLIDATABLE)
    };
    if !keep_drift {
        changed |= match drift {
            Some(d) => upsert_condition(&mut status, DRIFTED, "True", &d.reason, &d.message, claim),
            None => remove_condition(&mut status, DRIFTED),
        };
    }
    changed.then_some(status)
}

fn remove_condition(status: &mut NodeClaimStatus, type_: &str) -> bool {
    let before = status.conditions.len();
    status.conditions.retain(|c| c.type_ != type_);
    status.conditions.len() != before
}

/// Whether `lastPodEventTime` should be stamped `now`: not within [`POD_EVENT_DEDUPE`] of the
/// previous stamp.
pub fn should_stamp_pod_event(claim: &NodeClaim, now: Timestamp) -> bool {
    let last = claim
        .status
        .as_ref()
        .and_then(|s| s.last_pod_event_time.as_ref());
    let dedupe = SignedDuration::try_from(POD_EVENT_DEDUPE).unwrap_or(SignedDuration::ZERO);
    last.is_none_or(|t| t.0.checked_add(dedupe).is_ok_and(|until| now >= until))
}

/// What of a pod counts for pod events: bound to a node, terminal, terminating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodPhase {
    /// `spec.nodeName` is set.
    pub bound: bool,
    /// `Succeeded` or `Failed`.
    pub terminal: bool,
    /// Has a deletion timestamp.
    pub terminating: bool,
}

impl PodPhase {
    /// The phase of `pod`.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> PodPhase {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodPhase {
            bound: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some(),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// Whether going from `before` to `self` is a pod event (spec §3.1): the pod got bound,
    /// went terminal or started terminating. The first sight of a pod (`before` unknown, as
    /// at start-up) is not, so a restart does not restart every node's consolidateAfter clock.
    pub fn is_event_after(self, before: Option<PodPhase>) -> bool {
        let Some(b) = before else { return false };
        (self.bound && !b.bound)
            || (self.terminal && !b.terminal)
            || (self.terminating && !b.terminating)
    }
}

/// True for pods a DaemonSet owns (their comings and goings do not reset consolidation).
pub fn is_daemon_set_pod(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
