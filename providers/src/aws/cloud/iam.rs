//! The slice of IAM the AWS provider calls (instance profiles for `spec.role`), behind a trait,
//! and the instance profile Karpenter manages for a node class.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::aws::ec2api::{Ec2Error, classify};
use crate::aws::fleet::NODE_CLASS_TAG;

/// IAM's error code for a missing entity (`GetInstanceProfile` of an unknown name).
pub const NO_SUCH_ENTITY_CODE: &str = "NoSuchEntity";
/// IAM's error code for creating something that already exists.
pub const ENTITY_ALREADY_EXISTS_CODE: &str = "EntityAlreadyExists";
/// Tag naming the cluster that manages an instance profile.
pub const MANAGED_BY_TAG: &str = "karpenter.sh/managed-by";

/// An instance profile as `GetInstanceProfile` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceProfile {
    /// Profile name.
    pub name: String,
    /// Names of the roles in it (IAM allows at most one).
    pub roles: Vec<String>,
}

/// The IAM operations the provider uses, over plain strings. Errors reuse [`Ec2Error`]
/// (throttling / API error with a code / transport), like [`SsmApi`](crate::aws::ssm::SsmApi).
#[async_trait]
pub trait IamApi: Send + Sync {
    /// `GetInstanceProfile`; `None` when IAM answers `NoSuchEntity`.
    async fn get_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, Ec2Error>;

    /// `CreateInstanceProfile` with tags; a profile that already exists is not an error.
    async fn create_instance_profile(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error>;

    /// `AddRoleToInstanceProfile`.
    async fn add_role_to_instance_profile(&self, profile: &str, role: &str)
    -> Result<(), Ec2Error>;

    /// `RemoveRoleFromInstanceProfile` (used when `spec.role` changed: a profile holds one
    /// role).
    async fn remove_role_from_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), Ec2Error>;
}

/// [`IamApi`] over the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
}

impl SdkIam {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        SdkIam { client }
    }
}

#[async_trait]
impl IamApi for SdkIam {
    async fn get_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, Ec2Error> {
        match self
            .client
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(out) => Ok(out.instance_profile().map(|p| InstanceProfile {
                name: p.instance_profile_name().to_owned(),
                roles: p.roles().iter().map(|r| r.role_name().to_owned()).collect(),
            })),
            Err(e) if e.code() == Some(NO_SUCH_ENTITY_CODE) => Ok(None),
            Err(e) => Err(classify("GetInstanceProfile", e.code(), e.message(), &e)),
        }
    }

    async fn create_instance_profile(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        let mut call = self
            .client
            .create_instance_profile()
            .instance_profile_name(name);
        for (k, v) in tags {
            let tag = aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Ec2Error::Transport {
                    operation: "CreateInstanceProfile".to_owned(),
                    message: format!("tag {k:?}: {e}"),
                })?;
            call = call.tags(tag);
        }
        match call.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(ENTITY_ALREADY_EXISTS_CODE) => Ok(()),
            Err(e) => Err(classify("CreateInstanceProfile", e.code(), e.message(), &e)),
        }
    }

    async fn add_role_to_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), Ec2Error> {
        self.client
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("AddRoleToInstanceProfile", e.code(), e.message(), &e))
    }

    async fn remove_role_from_instance_profile(
        &self,
        profile: &str,
        role: &str,
    ) -> Result<(), Ec2Error> {
        self.client
            .remove_role_from_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("RemoveRoleFromInstanceProfile", e.code(), e.message(), &e))
    }
}

/// FNV-1a 64: a stable, dependency-free hash for generated names (the same input gives the same
/// name across restarts and builds, unlike `std`'s randomly seeded hasher).
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // A separator byte keeps ("ab", "c") and ("a", "bc") apart.
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The name of the instance profile Karpenter manages for a node class with `spec.role`:
/// `<cluster>_<hash of region and node class name>`, as Karpenter names it.
pub fn instance_profile_name(cluster: &str, region: &str, node_class: &str) -> String {
    format!("{cluster}_{}", stable_hash(&[region, node_class]))
}

/// The tags Karpenter puts on an instance profile it creates.
pub fn instance_profile_tags(
    cluster: &str,
    region: &str,
    node_class: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NODE_CLASS_TAG.to_owned(), node_class.to_owned()),
        (
            format!("kubernetes.io/cluster/{cluster}"),
            "owned".to_owned(),
        ),
        (MANAGED_BY_TAG.to_owned(), cluster.to_owned()),
        (karpenter_core::labels::REGION.to_owned(), region.to_owned()),
    ])
}

/// The role name of `spec.role`, which may be given with a path (`path/to/Role`) — IAM wants
/// the bare name.
pub fn role_name(role: &str) -> &str {
    role.rsplit('/').next().unwrap_or(role)
}

/// Makes sure the managed instance profile `name` exists and holds `role` (created if missing,
/// a different role swapped out, the role added if missing). Returns the profile name.
pub async fn ensure_instance_profile(
    iam: &dyn IamApi,
    name: &str,
    role: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, Ec2Error> {
    let role = role_name(role);
    let existing = iam.get_instance_profile(name).await?;
    let roles = match existing {
        Some(p) => p.roles,
        None => {
            iam.create_instance_profile(name, tags).await?;
            Vec::new()
        }
    };
    if roles.iter().any(|r| r == role) {
        return Ok(name.to_owned());
    }
    for other in &roles {
        iam.remove_role_from_instance_profile(name, other).await?;
    }
    if let Err(e) = iam.add_role_to_instance_profile(name, role).await {
        // Another caller (a second reconcile of the same class) may have added it since the
        // read: IAM then refuses with LimitExceeded (one role per profile). That is success.
        let now = iam.get_instance_profile(name).await?;
        if !now.is_some_and(|p| p.roles.iter().any(|r| r == role)) {
            return Err(e);
        }
    }
    Ok(name.to_owned())
}

#[cfg(test)]
#[path = "iam_tests.rs"]
mod tests;
