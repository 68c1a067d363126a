//! The pure decision of garbage collection: which instances leaked and which claims lost
//! their instance.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use karpenter_core::api::NodeClaim;
use karpenter_core::labels;
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
    collect_with_pools(instances, claims, None, now_unix, grace)
}

/// [`collect`], and with `pools` (the NodePools that exist) also the claims of a NodePool that
/// is gone: owner references let the API server's garbage collector delete them, but a claim
/// must not outlive its pool when that collector lags or is off.
pub fn collect_with_pools(
    instances: &[LaunchedInstance],
    claims: &[Arc<NodeClaim>],
    pools: Option<&BTreeSet<String>>,
    now_unix: i64,
    grace: Duration,
) -> Collection {
    let claimed_ids: BTreeSet<&str> = claims
        .iter()
        .filter_map(|c| c.status.as_ref()?.provider_id.as_deref())
        .collect();
    // Claims that have not recorded an instance yet: an instance tagged with one of them may be
    // that claim's launch whose status write is still in flight, and an untagged instance of
    // one of their pools may be a launch whose tag was never written, which the claim will
    // adopt (see `lifecycle::launch`).
    let unrecorded: Vec<&NodeClaim> = claims
        .iter()
        .map(|c| c.as_ref())
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.provider_id.as_ref())
                .is_none()
        })
        .collect();
    let unrecorded_names: BTreeSet<&str> = unrecorded
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let unrecorded_pools: BTreeSet<&str> = unrecorded
        .iter()
        .filter_map(|c| c.metadata.labels.as_ref()?.get(labels::NODE_POOL))
        .map(String::as_str)
        .collect();
    let may_be_adopted_or_recorded = |i: &LaunchedInstance| match i.node_claim.as_deref() {
        Some(claim) => unrecorded_names.contains(claim),
        None => i
            .node_pool
            .as_deref()
            .is_some_and(|p| unrecorded_pools.contains(p)),
    };
    let leaked_instances = instances
        .iter()
        .filter(|i| !claimed_ids.contains(i.provider_id.as_str()))
        .filter(|i| !may_be_adopted_or_recorded(i))
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
    let mut orphaned_claims: Vec<String> = orphaned_claims;
    if let Some(pools) = pools {
        for c in claims
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
        {
            let pool = c
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::NODE_POOL));
            if let (Some(pool), Some(name)) = (pool, c.metadata.name.as_ref())
                && !pools.contains(pool)
                && !orphaned_claims.contains(name)
            {
                orphaned_claims.push(name.clone());
            }
        }
    }
    Collection {
        leaked_instances,
        orphaned_claims,
    }
}

/// A claim the model could not read still owns its instance, and there is no telling which: while
/// any claim is `unread`, no instance counts as leaked. Takes them out of `decision` and
/// returns them.
pub fn hold_back_for_unread_claims(
    decision: &mut Collection,
    unread: &BTreeSet<String>,
) -> Vec<String> {
    if unread.is_empty() {
        return Vec::new();
    }
    std::mem::take(&mut decision.leaked_instances)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
