//! The pure decision of garbage collection: which instances leaked and which claims lost
//! their instance.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use karpenter_core::api::NodeClaim;
use karpenter_providers::LaunchedInstance;

use crate::controllers::conditions;

/// What one collection decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collection {
    /// Provider ids of instances to terminate.
    pub leaked_instances: Vec<String>,
    /// Names of launched NodeClaims whose instance no longer exists.
    pub orphaned_claims: Vec<String>,
}

/// The pure decision: an instance is leaked when no NodeClaim records its provider id, it is
/// older than `grace`, and it is not tagged for a claim that has recorded no instance yet (a
/// launch whose status write is in flight); a second instance of a claim that recorded
/// another one is leaked; a claim is orphaned when it has a provider id the provider no longer
/// lists, it was launched at least `grace` ago (a launch newer than the listing is not in it)
/// and it is not being deleted already.
pub fn collect(
    instances: &[LaunchedInstance],
    claims: &[Arc<NodeClaim>],
    now_unix: i64,
    grace: Duration,
) -> Collection {
    let claimed_ids: BTreeSet<&str> = claims
        .iter()
        .filter_map(|c| c.status.as_ref()?.provider_id.as_deref())
        .collect();
    // Claims that have not recorded an instance yet: an instance tagged with one of them may be
    // that claim's launch whose status write is still in flight.
    let unrecorded: BTreeSet<&str> = claims
        .iter()
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_ref())
                .is_none()
        })
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let leaked_instances = instances
        .iter()
        .filter(|i| !claimed_ids.contains(i.provider_id.as_str()))
        .filter(|i| {
            i.node_claim
                .as_deref()
                .is_none_or(|n| !unrecorded.contains(n))
        })
        .filter(|i| now_unix - i.launch_time_unix >= grace.as_secs() as i64)
        .map(|i| i.provider_id.clone())
        .collect();
    let live: BTreeSet<&str> = instances.iter().map(|i| i.provider_id.as_str()).collect();
    let orphaned_claims = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.condition(conditions::LAUNCHED))
                .is_some_and(|l| {
                    now_unix - l.last_transition_time.0.as_second() >= grace.as_secs() as i64
                })
        })
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|id| !live.contains(id))
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    Collection {
        leaked_instances,
        orphaned_claims,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
