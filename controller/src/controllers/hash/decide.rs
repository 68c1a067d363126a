//! What the hash controller writes, as pure functions of the objects it reads.

use std::collections::BTreeMap;

use karpenter_core::api::{
    NODE_POOL_HASH_ANNOTATION_KEY, NODE_POOL_HASH_VERSION, NODE_POOL_HASH_VERSION_ANNOTATION_KEY,
    NodeClaim,
};
use karpenter_providers::aws::nodeclass;
use serde_json::{Value, json};

/// The condition whose `True` status freezes a claim's hash annotations.
pub const DRIFTED: &str = "Drifted";

/// A pair of hash annotations (hash and algorithm version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKeys {
    /// The hash annotation.
    pub hash: &'static str,
    /// The hash-version annotation.
    pub version: &'static str,
}

/// The NodePool template hash annotations.
pub const NODE_POOL_KEYS: HashKeys = HashKeys {
    hash: NODE_POOL_HASH_ANNOTATION_KEY,
    version: NODE_POOL_HASH_VERSION_ANNOTATION_KEY,
};

/// The EC2NodeClass hash annotations.
pub const NODE_CLASS_KEYS: HashKeys = HashKeys {
    hash: nodeclass::HASH_ANNOTATION_KEY,
    version: nodeclass::HASH_VERSION_ANNOTATION_KEY,
};

/// A current hash and the version of the algorithm that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The hash.
    pub hash: String,
    /// The algorithm version.
    pub version: &'static str,
}

impl Stamp {
    /// A NodePool hash of our current version.
    pub fn node_pool(hash: String) -> Stamp {
        Stamp {
            hash,
            version: NODE_POOL_HASH_VERSION,
        }
    }

    /// An EC2NodeClass hash of our current version.
    pub fn node_class(hash: String) -> Stamp {
        Stamp {
            hash,
            version: nodeclass::HASH_VERSION,
        }
    }
}

fn get<'a>(annotations: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    annotations?.get(key).map(String::as_str)
}

/// The merge patch that brings a NodePool's or EC2NodeClass's hash annotations to `stamp`, or
/// `None` when they already say it.
pub fn object_patch(
    annotations: Option<&BTreeMap<String, String>>,
    keys: HashKeys,
    stamp: &Stamp,
) -> Option<Value> {
    let current = get(annotations, keys.hash) == Some(stamp.hash.as_str())
        && get(annotations, keys.version) == Some(stamp.version);
    (!current).then(|| {
        json!({"metadata": {"annotations": {keys.hash: stamp.hash, keys.version: stamp.version}}})
    })
}

/// The annotations a claim needs from one hash: none when its version annotation already
/// equals the current version (a differing hash is drift, not ours to fix) or when the claim
/// is already `Drifted` (rewriting would hide the drift); otherwise the current hash and version.
/// A claim without the annotations (a new one) or with another version's (made before an
/// upgrade of the algorithm, or by Karpenter) gets the current ones, so an upgrade never
/// causes mass drift.
fn claim_stamp(claim: &NodeClaim, keys: HashKeys, stamp: &Stamp) -> Option<[(String, String); 2]> {
    let annotations = claim.metadata.annotations.as_ref();
    if get(annotations, keys.version) == Some(stamp.version) {
        return None;
    }
    let drifted = claim.status.as_ref().is_some_and(|s| s.is_true(DRIFTED));
    (!drifted).then(|| {
        [
            (keys.hash.to_owned(), stamp.hash.clone()),
            (keys.version.to_owned(), stamp.version.to_owned()),
        ]
    })
}

/// The merge patch of a NodeClaim's hash annotations given its pool's and class's current
/// stamps (each `None` when that object is not at hand), or `None` when nothing changes.
pub fn claim_patch(
    claim: &NodeClaim,
    pool: Option<&Stamp>,
    class: Option<&Stamp>,
) -> Option<Value> {
    let mut out = serde_json::Map::new();
    let pairs = [(NODE_POOL_KEYS, pool), (NODE_CLASS_KEYS, class)];
    for (keys, stamp) in pairs {
        if let Some(stamp) = stamp
            && let Some(kvs) = claim_stamp(claim, keys, stamp)
        {
            for (k, v) in kvs {
                out.insert(k, v.into());
            }
        }
    }
    (!out.is_empty()).then(|| json!({"metadata": {"annotations": out}}))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
