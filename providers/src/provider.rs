//! The [`CloudProvider`] trait the controller talks to, and the plain data types that cross it.
//!
//! The types here are deliberately plain (owned strings, [`Resources`] vectors, [`Requirements`])
//! so that `core` decisions convert into them without touching the Kubernetes API types, and so
//! that a fake implementation can record and compare them.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Taint;
use karpenter_core::instance_type::InstanceType;
use karpenter_core::requirements::Requirements;
use karpenter_core::resources::Resources;

/// Prefix of every AWS provider id: `aws:///<zone>/<instance-id>`.
pub const AWS_PROVIDER_ID_PREFIX: &str = "aws:///";

/// What the provisioner asks a cloud provider to launch: the provider-facing view of a NodeClaim.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeClaimRequest {
    /// NodeClaim name (e.g. `default-sfpsl`).
    pub name: String,
    /// The NodePool the claim belongs to.
    pub node_pool: String,
    /// Name of the node class (EC2NodeClass) the NodePool references.
    pub node_class: String,
    /// Everything the node must satisfy: NodePool requirements intersected with the pods'.
    pub requirements: Requirements,
    /// Instance type names the scheduler found suitable, cheapest first.
    pub instance_type_options: Vec<String>,
    /// Total requests of the pods (plus daemonsets) the node is meant for.
    pub requests: Resources,
    /// Labels to put on the node.
    pub labels: BTreeMap<String, String>,
    /// Taints to put on the node.
    pub taints: Vec<Taint>,
    /// Taints the node registers with that a daemon removes once it is ready
    /// (`NodeClaim.spec.startupTaints`).
    pub startup_taints: Vec<Taint>,
}

/// An instance the provider launched (or found), as the controller needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchedInstance {
    /// `aws:///us-east-1a/i-0123456789abcdef0`.
    pub provider_id: String,
    /// e.g. `m5.large`.
    pub instance_type: String,
    /// Availability zone, e.g. `us-east-1a`.
    pub zone: String,
    /// `spot` or `on-demand`.
    pub capacity_type: String,
    /// The image the instance booted from (`ami-…`).
    pub image_id: String,
    /// Raw capacity of the instance type (allocatable is capacity minus overhead).
    pub capacity: Resources,
    /// Labels the node will carry (instance-type labels, zone, capacity type, NodePool, …).
    pub labels: BTreeMap<String, String>,
    /// Launch time, seconds since the Unix epoch.
    pub launch_time_unix: i64,
    /// The NodeClaim that owns the instance (from its `karpenter.sh/nodeclaim` tag), if known.
    pub node_claim: Option<String>,
    /// The NodePool that owns the instance (from its `karpenter.sh/nodepool` tag), if known.
    pub node_pool: Option<String>,
}

impl LaunchedInstance {
    /// The bare instance id (`i-0123…`) from the provider id.
    pub fn instance_id(&self) -> &str {
        parse_provider_id(&self.provider_id).map_or(self.provider_id.as_str(), |(_, id)| id)
    }
}

/// Splits `aws:///<zone>/<instance-id>` into `(zone, instance-id)`.
pub fn parse_provider_id(provider_id: &str) -> Option<(&str, &str)> {
    let rest = provider_id.strip_prefix(AWS_PROVIDER_ID_PREFIX)?;
    let (zone, id) = rest.rsplit_once('/')?;
    if id.is_empty() {
        return None;
    }
    Some((zone, id))
}

/// Builds `aws:///<zone>/<instance-id>`.
pub fn aws_provider_id(zone: &str, instance_id: &str) -> String {
    format!("{AWS_PROVIDER_ID_PREFIX}{zone}/{instance_id}")
}

/// The NodePool whose instance types are asked for, with the node class it references.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePoolRef {
    /// NodePool name.
    pub name: String,
    /// Name of the referenced node class (EC2NodeClass).
    pub node_class: String,
}

/// Why the provider considers an instance drifted from its node class. The variants follow the
/// reasons AWS Karpenter reports in the NodeClaim's `Drifted` condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DriftReason {
    /// The instance's AMI is no longer among the node class's resolved AMIs (`AMIDrift`).
    Ami(String),
    /// The instance's subnet is no longer among the node class's subnets (`SubnetDrift`).
    Subnet(String),
    /// The instance's security groups differ from the node class's (`SecurityGroupDrift`).
    SecurityGroup(String),
    /// A static field of the node class changed (hash mismatch, `NodeClassDrift`).
    NodeClass(String),
    /// Anything else.
    Other(String),
}

impl DriftReason {
    /// The reason string Karpenter writes into the `Drifted` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            DriftReason::Ami(_) => "AMIDrift",
            DriftReason::Subnet(_) => "SubnetDrift",
            DriftReason::SecurityGroup(_) => "SecurityGroupDrift",
            DriftReason::NodeClass(_) => "NodeClassDrift",
            DriftReason::Other(_) => "Drifted",
        }
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        match self {
            DriftReason::Ami(d)
            | DriftReason::Subnet(d)
            | DriftReason::SecurityGroup(d)
            | DriftReason::NodeClass(d)
            | DriftReason::Other(d) => d,
        }
    }
}

/// `AMIDrift: detail`.
impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.detail())
    }
}

/// One purchase option that failed for lack of capacity: `(instance type, zone, capacity type)`.
pub type OfferingKey = (String, String, String);

/// Errors a cloud provider returns.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The instance does not exist (any more).
    #[error("instance {provider_id} not found")]
    NotFound {
        /// The provider id asked for.
        provider_id: String,
    },
    /// EC2 had no capacity for the offerings tried (InsufficientInstanceCapacity and friends).
    #[error("insufficient capacity: {message}")]
    InsufficientCapacity {
        /// The offerings that failed: `(instance type, zone, capacity type)`.
        offerings: Vec<OfferingKey>,
        /// What EC2 said.
        message: String,
    },
    /// The node class is not ready (subnets, security groups, AMIs or instance profile not
    /// resolved yet).
    #[error("node class {node_class} is not ready: {reason}")]
    NodeClassNotReady {
        /// Node class name.
        node_class: String,
        /// Why.
        reason: String,
    },
    /// The launch failed for a reason retrying will not fix (bad launch template, no
    /// permission, unsupported configuration, …).
    #[error("creating instance: {reason}")]
    Create {
        /// Why.
        reason: String,
    },
    /// The cloud API throttled the call.
    #[error("{operation} was throttled")]
    Throttled {
        /// The API operation (e.g. `CreateFleet`).
        operation: String,
    },
    /// Anything else (network errors, unexpected responses).
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    /// True when trying the same operation again later may succeed without changing the
    /// request: capacity errors (the failed offerings are marked unavailable, so the next
    /// attempt picks others), node classes that are still resolving, throttling and unknown
    /// errors. `NotFound` and `Create` errors are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::NotFound { .. } | ProviderError::Create { .. } => false,
            ProviderError::InsufficientCapacity { .. }
            | ProviderError::NodeClassNotReady { .. }
            | ProviderError::Throttled { .. }
            | ProviderError::Other(_) => true,
        }
    }

    /// True for [`ProviderError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProviderError::NotFound { .. })
    }
}

/// A cloud provider: launches, finds and terminates instances, and describes the instance
/// types a NodePool may use.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// Short name (`aws`, `fake`), used in metrics and logs.
    fn name(&self) -> &str;

    /// Launches one instance for the claim, choosing among its instance type options.
    async fn create(&self, claim: &NodeClaimRequest) -> Result<LaunchedInstance, ProviderError>;

    /// Terminates the instance. An instance that is already gone is
    /// [`ProviderError::NotFound`].
    async fn delete(&self, provider_id: &str) -> Result<(), ProviderError>;

    /// Looks up one instance.
    async fn get(&self, provider_id: &str) -> Result<LaunchedInstance, ProviderError>;

    /// All instances this cluster's Karpenter launched.
    async fn list(&self) -> Result<Vec<LaunchedInstance>, ProviderError>;

    /// The instance types (with offerings and prices) a NodePool may launch.
    async fn instance_types(
        &self,
        node_pool: &NodePoolRef,
    ) -> Result<Vec<InstanceType>, ProviderError>;

    /// Whether the instance no longer matches its node class, and why.
    async fn is_drifted(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError>;

    /// Reports `offering` unavailable for a while (Karpenter's unavailable-offerings cache: 3
    /// minutes), as a capacity error would: the offering of an instance that got a spot
    /// interruption warning, so its replacement goes elsewhere.
    fn mark_unavailable(&self, offering: &OfferingKey);

    /// The instance an earlier launch for `claim` left behind, when that launch's outcome was
    /// never seen (a crash, timeout or cancellation after the cloud call): the instance tagged
    /// for the claim, or else one of [`adoptable`]'s, which is then tagged for the claim.
    /// Launching again without asking this could buy a second instance for the same claim.
    async fn find_launched(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError>;
}

/// What [`launched_for`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// An instance tagged for the claim.
    Tagged(LaunchedInstance),
    /// An instance tagged for no claim that the claim may adopt.
    Untagged(LaunchedInstance),
}

/// True when `instance` could be the lost launch of `claim`: tagged for no claim, of the
/// claim's NodePool, launched at or after `launched_after_unix`, of one of the claim's
/// instance types, in a zone and capacity type its requirements allow. Launches merged into
/// one fleet differ in nothing else, so any such instance serves the claim as well as the one
/// it lost.
pub fn adoptable(
    claim: &NodeClaimRequest,
    instance: &LaunchedInstance,
    launched_after_unix: i64,
) -> bool {
    let allows = |key: &str, value: &str| claim.requirements.get(key).is_none_or(|r| r.has(value));
    instance.node_claim.is_none()
        && instance.node_pool.as_deref() == Some(claim.node_pool.as_str())
        && instance.launch_time_unix >= launched_after_unix
        && (claim.instance_type_options.is_empty()
            || claim
                .instance_type_options
                .contains(&instance.instance_type))
        && allows(karpenter_core::labels::ZONE, &instance.zone)
        && allows(
            karpenter_core::labels::CAPACITY_TYPE,
            &instance.capacity_type,
        )
}

/// The instance of `claim` among `instances`: the one tagged for it, else the oldest
/// [`adoptable`] one whose id is not in `taken` (being adopted by another claim).
pub fn launched_for(
    claim: &NodeClaimRequest,
    instances: &[LaunchedInstance],
    launched_after_unix: i64,
    taken: &std::collections::BTreeSet<String>,
) -> Option<Found> {
    if let Some(tagged) = instances
        .iter()
        .find(|i| i.node_claim.as_deref() == Some(claim.name.as_str()))
    {
        return Some(Found::Tagged(tagged.clone()));
    }
    instances
        .iter()
        .filter(|i| !taken.contains(i.instance_id()))
        .filter(|i| adoptable(claim, i, launched_after_unix))
        .min_by_key(|i| (i.launch_time_unix, i.provider_id.clone()))
        .map(|i| Found::Untagged(i.clone()))
}

/// A shared provider is a provider (so decorators can wrap an `Arc` the caller also keeps).
#[async_trait]
impl<T: CloudProvider + ?Sized> CloudProvider for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn create(&self, claim: &NodeClaimRequest) -> Result<LaunchedInstance, ProviderError> {
        (**self).create(claim).await
    }

    async fn delete(&self, provider_id: &str) -> Result<(), ProviderError> {
        (**self).delete(provider_id).await
    }

    async fn get(&self, provider_id: &str) -> Result<LaunchedInstance, ProviderError> {
        (**self).get(provider_id).await
    }

    async fn list(&self) -> Result<Vec<LaunchedInstance>, ProviderError> {
        (**self).list().await
    }

    async fn instance_types(
        &self,
        node_pool: &NodePoolRef,
    ) -> Result<Vec<InstanceType>, ProviderError> {
        (**self).instance_types(node_pool).await
    }

    async fn is_drifted(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError> {
        (**self).is_drifted(instance).await
    }

    fn mark_unavailable(&self, offering: &OfferingKey) {
        (**self).mark_unavailable(offering)
    }

    async fn find_launched(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError> {
        (**self).find_launched(claim, launched_after_unix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_round_trip() {
        let id = aws_provider_id("us-east-1a", "i-0123");
        assert_eq!(id, "aws:///us-east-1a/i-0123");
        assert_eq!(parse_provider_id(&id), Some(("us-east-1a", "i-0123")));
        assert_eq!(parse_provider_id("kind://foo"), None);
        assert_eq!(parse_provider_id("aws:///us-east-1a/"), None);
    }

    #[test]
    fn retryability_and_display() {
        let ice = ProviderError::InsufficientCapacity {
            offerings: vec![("m5.large".into(), "us-east-1a".into(), "spot".into())],
            message: "no capacity".into(),
        };
        assert!(ice.is_retryable());
        assert!(
            ProviderError::Throttled {
                operation: "CreateFleet".into()
            }
            .is_retryable()
        );
        assert!(
            !ProviderError::Create {
                reason: "bad".into()
            }
            .is_retryable()
        );
        let nf = ProviderError::NotFound {
            provider_id: "aws:///z/i-1".into(),
        };
        assert!(!nf.is_retryable() && nf.is_not_found());
        assert_eq!(nf.to_string(), "instance aws:///z/i-1 not found");
        let drift = DriftReason::Ami("ami-1 not in [ami-2]".into());
        assert_eq!(drift.to_string(), "AMIDrift: ami-1 not in [ami-2]");
    }
}
