//! When a NodeClaim expires (spec §14), and the once-per-claim bookkeeping of the
//! `expired` disruption metric.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::api::NodeClaim;

/// What to do with one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiration {
    /// Expired: delete it now.
    Delete,
    /// Not yet: look again at this instant.
    At(Timestamp),
    /// Never expires (`Never`, an unparsable duration, no creation time), or is already being
    /// deleted.
    Never,
}

/// The instant `claim` expires: creation time + `spec.expireAfter`; `None` for `Never`.
pub fn expires_at(claim: &NodeClaim) -> Option<Timestamp> {
    let created = claim.metadata.creation_timestamp.as_ref()?.0;
    let after = claim.spec.expire_after.parse().ok().flatten()?;
    let after = SignedDuration::try_from(after).ok()?;
    created.checked_add(after).ok()
}

/// Spec §14: delete once now ≥ creation + expireAfter; no budget, PDB or do-not-disrupt check
/// (expiration is forceful). A claim already being deleted is left alone.
pub fn decide(claim: &NodeClaim, now: Timestamp) -> Expiration {
    if claim.metadata.deletion_timestamp.is_some() {
        return Expiration::Never;
    }
    match expires_at(claim) {
        Some(at) if now >= at => Expiration::Delete,
        Some(at) => Expiration::At(at),
        None => Expiration::Never,
    }
}

/// The claims (by UID) this process has counted as expired, so the metric is counted once per
/// claim even when the claim is reconciled again before its deletion shows in the cache.
#[derive(Debug, Default)]
pub struct Counted(Mutex<HashSet<String>>);

impl Counted {
    /// True the first time `uid` is seen (count it then), false after.
    pub fn first(&self, uid: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_owned())
    }

    /// Forgets `uid`: its claim is being deleted, and [`decide`] never deletes it again.
    pub fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
