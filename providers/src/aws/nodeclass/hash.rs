//! The EC2NodeClass static-drift hash, kept in [`HASH_ANNOTATION_KEY`] on the class and on
//! every NodeClaim launched from it; a claim whose hash differs (same [`HASH_VERSION`]) is
//! `NodeClassDrift`.
//!
//! It covers the spec except the selector terms (subnets, security groups, AMIs): those are
//! resolved against AWS and drift dynamically, from the live instance (`AMIDrift`,
//! `SubnetDrift`, `SecurityGroupDrift`). `amiFamily` is hashed as the family in effect (the
//! alias's family when the field is unset), so writing out the family an alias implies does not
//! drift nodes. Canonical form and digest as the NodePool hash
//! ([`karpenter_core::api::canonical_hash`]): lists are sets, zero values are dropped. The
//! version is ours (Karpenter v1.4 writes `v4`), so claims launched by Karpenter never drift
//! statically against it.

use karpenter_core::api::canonical_hash;
use serde_json::Value;

use super::EC2NodeClass;

/// Annotation holding the EC2NodeClass hash, on the class and on its NodeClaims.
pub const HASH_ANNOTATION_KEY: &str = "karpenter.k8s.aws/ec2nodeclass-hash";
/// Annotation holding the version of the EC2NodeClass hash algorithm.
pub const HASH_VERSION_ANNOTATION_KEY: &str = "karpenter.k8s.aws/ec2nodeclass-hash-version";
/// Our EC2NodeClass hash algorithm's version.
pub const HASH_VERSION: &str = "rs1";

/// Spec fields left out of the hash: they drift dynamically.
const DYNAMIC_FIELDS: [&str; 3] = [
    "subnetSelectorTerms",
    "securityGroupSelectorTerms",
    "amiSelectorTerms",
];

/// The static hash of a node class's spec (see the module documentation).
pub fn ec2nodeclass_hash(class: &EC2NodeClass) -> String {
    let mut spec = serde_json::to_value(&class.spec).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut spec {
        for f in DYNAMIC_FIELDS {
            map.remove(f);
        }
        map.insert("amiFamily".into(), class.ami_family().as_str().into());
    }
    canonical_hash(&spec)
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
