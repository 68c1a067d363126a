//! NodeClaim status conditions, shared by the controllers that write them (each condition type
//! has one writer; see the table in `controllers`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::{NodeClaim, NodeClaimStatus};

/// The instance exists.
pub const LAUNCHED: &str = "Launched";
/// A Node with the instance's provider id registered.
pub const REGISTERED: &str = "Registered";
/// The Node is ready, startup taints are gone and extended resources are registered.
pub const INITIALIZED: &str = "Initialized";
/// Roll-up of the three.
pub const READY: &str = "Ready";
/// Termination asked the cloud to terminate the instance.
pub const INSTANCE_TERMINATING: &str = "InstanceTerminating";

/// Gives every condition without a message its reason as message. The v1.20 API server the
/// e2e bed runs stores an empty `message` as null and then rejects it ("must be of type
/// string"), for merge and JSON patches alike; a non-empty message is valid everywhere.
pub fn fill_empty_messages(conditions: &mut [Condition]) {
    for c in conditions {
        if c.message.is_empty() {
            c.message = c.reason.clone();
        }
    }
}

/// Sets a condition; returns false when nothing changed. The transition time moves only when
/// the status does.
pub fn upsert_condition(
    status: &mut NodeClaimStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    claim: &NodeClaim,
) -> bool {
    let generation = claim.metadata.generation;
    // Stored conditions carry their reason as message when there is none (see
    // `fill_empty_messages`); compare like with like.
    let message = if message.is_empty() { reason } else { message };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason == reason && c.message == message => false,
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Time(Timestamp::now());
            }
            c.status = value.to_owned();
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = generation;
            fill_empty_messages(&mut status.conditions);
            true
        }
        None => {
            status.conditions.push(Condition {
                type_: type_.to_owned(),
                status: value.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: Time(Timestamp::now()),
                observed_generation: generation,
            });
            fill_empty_messages(&mut status.conditions);
            true
        }
    }
}

/// The merge patch that writes `status`, guarded by the resourceVersion of the object it was
/// computed from. `conditions` is a list, which a merge patch replaces whole, and each
/// condition type has its own writer: an unguarded write from a stale read would drop another
/// controller's condition. With the guard the API server refuses a stale write with 409
/// Conflict, and the writer retries from the newer object the watch brings.
pub fn guarded_status_patch<S: serde::Serialize>(
    meta: &ObjectMeta,
    status: &S,
) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"resourceVersion": meta.resource_version},
        "status": status,
    })
}

/// Whether the API server refused a write because the object changed since it was read.
pub fn is_conflict(err: &kube_client::Error) -> bool {
    matches!(err, kube_client::Error::Api(e) if e.code == 409)
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn a_status_patch_carries_the_resource_version_it_was_computed_from() {
        let meta = ObjectMeta {
            name: Some("c".into()),
            resource_version: Some("42".into()),
            ..ObjectMeta::default()
        };
        let patch = guarded_status_patch(&meta, &serde_json::json!({"conditions": []}));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(patch["status"], serde_json::json!({"conditions": []}));
    }

    #[test]
    fn only_409_is_a_conflict() {
        let api = |code| {
            kube_client::Error::Api(
                kube_client::core::Status::failure("x", "Conflict")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(is_conflict(&api(409)));
        assert!(!is_conflict(&api(422)));
    }
}
