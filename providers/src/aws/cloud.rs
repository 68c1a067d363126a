//! [`AwsCloudProvider`]: the AWS implementation of [`CloudProvider`], composed from the pure
//! parts of [`crate::aws`] over the [`Ec2Api`], [`SsmApi`] and [`IamApi`] traits (and
//! optionally [`PricingApi`]).
//!
//! - node classes are resolved (subnets, security groups, AMIs, instance profile) by
//!   [`AwsCloudProvider::resolve_node_class`], which the controller's EC2NodeClass status loop
//!   calls; the result is cached per node class (spec and generation) for launches;
//! - instance types come from `DescribeInstanceTypes` + `DescribeInstanceTypeOfferings` +
//!   `DescribeSpotPriceHistory` (cached for [`INSTANCE_TYPES_TTL_SECS`]); on-demand prices
//!   come from the Pricing API when one is configured ([`AwsCloudProvider::with_pricing`],
//!   refreshed every [`PRICING_TTL_SECS`](crate::aws::pricing::PRICING_TTL_SECS)), the
//!   embedded catalog's for types it does not price or while it cannot be reached;
//! - launches create one launch template per (image, max pods) group and one instant fleet.
//!
//! Kubernetes stays out of this module: the controller hands node classes in through
//! [`NodeClassSource`].

pub mod iam;
mod instance_type_provider;
mod instances;
mod launch_templates;
mod node_class;

#[cfg(test)]
pub(crate) mod fake_apis;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_instances;
#[cfg(test)]
mod tests_launch;
#[cfg(test)]
mod tests_pricing;
#[cfg(test)]
mod tests_refresh;

pub use iam::{IamApi, InstanceProfile, SdkIam, instance_profile_name};
pub use instance_type_provider::image_for_instance_type;
pub use instances::{INSTANCE_NOT_FOUND_CODE, LISTED_STATES};
pub use launch_templates::{
    CLUSTER_TAG, default_block_devices, launch_template_name, metadata_options,
};
pub use node_class::{
    CONDITION_AMIS_READY, CONDITION_INSTANCE_PROFILE_READY, CONDITION_READY,
    CONDITION_SECURITY_GROUPS_READY, CONDITION_SUBNETS_READY,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use karpenter_core::instance_type::InstanceType;

use super::ec2api::{Ec2Api, Ec2Error};
use super::fleet::UnavailableOfferings;
use super::instance_types::DEFAULT_VM_MEMORY_OVERHEAD_PERCENT;
use super::nodeclass::EC2NodeClass;
use super::pricing::{OnDemandPrices, PricingApi};
use super::ssm::SsmApi;
use crate::provider::{
    CloudProvider, DriftReason, LaunchedInstance, NodeClaimRequest, NodePoolRef, OfferingKey,
    ProviderError,
};

/// How long `DescribeInstanceTypes` / `DescribeInstanceTypeOfferings` /
/// `DescribeSpotPriceHistory` answers are reused (5 minutes).
pub const INSTANCE_TYPES_TTL_SECS: i64 = 300;
/// How long subnet answers are reused for launches (Karpenter caches them for a minute); a
/// fresh answer also resets the in-flight IP counts.
pub const SUBNETS_TTL_SECS: i64 = 60;
/// How long a ready node class resolution is reused when the status loop has not refreshed it.
pub const RESOLUTION_TTL_SECS: i64 = 300;
/// How long a resolution that is not ready is reused before launches try again.
pub const NOT_READY_RESOLUTION_TTL_SECS: i64 = 30;
/// How long an instance profile checked (or created) for a role is trusted (Karpenter: 15 min).
pub const INSTANCE_PROFILE_TTL_SECS: i64 = 900;

/// Where the provider finds node classes. The controller implements it from its reflector
/// stores, which keeps Kubernetes out of this crate.
pub trait NodeClassSource: Send + Sync {
    /// The v1 EC2NodeClass `pool` references (for a v1beta1 NodePool, with the pool's kubelet
    /// settings merged in), or `None` when it does not exist (yet).
    fn node_class_for(&self, pool: &NodePoolRef) -> Option<EC2NodeClass>;
}

/// Facts about the EKS cluster the nodes join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster name (tags, instance profile names, userData).
    pub name: String,
    /// API server endpoint, for userData.
    pub endpoint: String,
    /// Cluster CA bundle (base64) for userData; `None` lets the AMI look it up.
    pub ca_bundle: Option<String>,
    /// Service CIDR (AL2023's `NodeConfig` needs it).
    pub cluster_cidr: Option<String>,
    /// Kubernetes `MAJOR.MINOR` (`1.30`), for the AMI alias SSM paths.
    pub kubernetes_version: String,
    /// AWS region.
    pub region: String,
}

/// Settings of the AWS provider.
#[derive(Clone)]
pub struct AwsProviderConfig {
    /// The cluster.
    pub cluster: ClusterInfo,
    /// Karpenter's `vmMemoryOverheadPercent` (default 0.075).
    pub vm_memory_overhead_percent: f64,
    /// Karpenter's `reservedENIs` (default 0).
    pub reserved_enis: u32,
    /// Karpenter's `isolatedVPC`: the cluster cannot reach the public Pricing API, so none is
    /// called even when one was given ([`AwsCloudProvider::with_pricing`]) and on-demand
    /// prices come from the embedded catalog.
    pub isolated_vpc: bool,
    /// Current time in seconds since the Unix epoch (injectable for tests).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl AwsProviderConfig {
    /// Karpenter's defaults for `cluster`, with the system clock.
    pub fn new(cluster: ClusterInfo) -> Self {
        AwsProviderConfig {
            cluster,
            vm_memory_overhead_percent: DEFAULT_VM_MEMORY_OVERHEAD_PERCENT,
            reserved_enis: 0,
            isolated_vpc: false,
            clock: Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            }),
        }
    }
}

impl std::fmt::Debug for AwsProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProviderConfig")
            .field("cluster", &self.cluster)
            .field(
                "vm_memory_overhead_percent",
                &self.vm_memory_overhead_percent,
            )
            .field("reserved_enis", &self.reserved_enis)
            .field("isolated_vpc", &self.isolated_vpc)
            .finish_non_exhaustive()
    }
}

/// Mutable state behind one `std` mutex; never held across an `await`.
#[derive(Default)]
struct State {
    /// Node class name → latest resolution.
    resolutions: HashMap<String, Arc<node_class::Resolution>>,
    /// Subnet id → IPs taken by launches since the subnet was last described.
    in_flight_ips: BTreeMap<String, u32>,
    /// Launch templates known to exist.
    launch_templates: BTreeSet<String>,
    /// Offerings EC2 recently had no capacity for.
    unavailable: UnavailableOfferings,
    /// `(profile, role)` → when it was last checked.
    instance_profiles: HashMap<(String, String), i64>,
    /// Instance ids a claim is adopting (tagging for itself), so two claims never adopt the
    /// same instance.
    adopting: BTreeSet<String>,
}

/// The AWS [`CloudProvider`].
pub struct AwsCloudProvider {
    ec2: Arc<dyn Ec2Api>,
    ssm: Arc<dyn SsmApi>,
    iam: Arc<dyn IamApi>,
    node_classes: Arc<dyn NodeClassSource>,
    config: AwsProviderConfig,
    state: Mutex<State>,
    /// The Describe answers and the refresh in flight; never locked across a call.
    type_data: Mutex<instance_type_provider::TypeDataSlot>,
    /// The Pricing API, when on-demand prices are to be read from it.
    pricing: Option<Arc<dyn PricingApi>>,
    /// The current on-demand prices; replaced whole after each refresh.
    prices: Mutex<OnDemandPrices>,
    /// Set while a caller asks the Pricing API; callers finding it set use the current prices
    /// rather than wait.
    price_refreshing: AtomicBool,
    /// Launches hold it shared from CreateFleet until their instance carries its claim's tag;
    /// `find_launched` holds it exclusively. An instance of a launch still in flight is
    /// untagged and would look lost, so without this a claim looking for a lost launch could
    /// adopt another claim's new instance and two claims would share one node.
    launches: tokio::sync::RwLock<()>,
}

impl AwsCloudProvider {
    /// A provider over the given APIs, with the embedded catalog's on-demand prices (see
    /// [`with_pricing`](Self::with_pricing)).
    pub fn new(
        ec2: Arc<dyn Ec2Api>,
        ssm: Arc<dyn SsmApi>,
        iam: Arc<dyn IamApi>,
        node_classes: Arc<dyn NodeClassSource>,
        config: AwsProviderConfig,
    ) -> Self {
        AwsCloudProvider {
            ec2,
            ssm,
            iam,
            node_classes,
            config,
            state: Mutex::new(State::default()),
            type_data: Mutex::default(),
            pricing: None,
            prices: Mutex::new(OnDemandPrices::new()),
            price_refreshing: AtomicBool::new(false),
            launches: tokio::sync::RwLock::new(()),
        }
    }

    /// Reads on-demand prices from `pricing` (for the cluster's region) unless the config
    /// says [`isolated_vpc`](AwsProviderConfig::isolated_vpc); types it does not price, and
    /// every type until it first answers, keep the embedded catalog's prices.
    pub fn with_pricing(mut self, pricing: Arc<dyn PricingApi>) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// The provider's settings.
    pub fn config(&self) -> &AwsProviderConfig {
        &self.config
    }

    fn now(&self) -> i64 {
        (self.config.clock)()
    }

    /// The state; a poisoned lock is recovered (the state stays consistent between
    /// statements).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node class a pool references, or [`ProviderError::NodeClassNotReady`].
    fn node_class(&self, pool: &NodePoolRef) -> Result<EC2NodeClass, ProviderError> {
        self.node_classes
            .node_class_for(pool)
            .ok_or_else(|| ProviderError::NodeClassNotReady {
                node_class: pool.node_class.clone(),
                reason: format!(
                    "ec2nodeclass {:?} referenced by nodepool {:?} not found",
                    pool.node_class, pool.name
                ),
            })
    }
}

/// Maps a failed call: throttling stays throttling, everything else is a retryable
/// [`ProviderError::Other`] prefixed with `context` (node class and field).
fn call_error(context: &str, err: Ec2Error) -> ProviderError {
    match err {
        Ec2Error::Throttled { operation, .. } => ProviderError::Throttled { operation },
        other => ProviderError::Other(format!("{context}: {other}")),
    }
}

#[async_trait]
impl CloudProvider for AwsCloudProvider {
    fn name(&self) -> &str {
        "aws"
    }

    async fn create(&self, claim: &NodeClaimRequest) -> Result<LaunchedInstance, ProviderError> {
        let _launching = self.launches.read().await;
        self.launch(claim).await
    }

    async fn delete(&self, provider_id: &str) -> Result<(), ProviderError> {
        self.terminate(provider_id).await
    }

    async fn get(&self, provider_id: &str) -> Result<LaunchedInstance, ProviderError> {
        self.get_instance(provider_id).await
    }

    async fn list(&self) -> Result<Vec<LaunchedInstance>, ProviderError> {
        self.list_instances().await
    }

    fn mark_unavailable(&self, offering: &OfferingKey) {
        let now = self.now();
        self.state()
            .unavailable
            .mark_unavailable(offering.clone(), now);
    }

    /// The pool's instance types: every type `DescribeInstanceTypes` reports that has an
    /// on-demand price (from the Pricing API or the embedded catalog; types without one are
    /// left out, since the scheduler cannot rank them) and that some resolved AMI can serve;
    /// offerings in the zones `DescribeInstanceTypeOfferings` lists, unavailable outside the
    /// node class's subnets' zones and while in the unavailable-offerings cache.
    async fn instance_types(
        &self,
        node_pool: &NodePoolRef,
    ) -> Result<Vec<InstanceType>, ProviderError> {
        let nc = self.node_class(node_pool)?;
        let resolution = self.ready_resolution(&nc).await?;
        let data = self.type_data().await?;
        Ok(self
            .build_instance_types(&nc, &resolution, &data)
            .into_iter()
            .map(|t| t.instance_type)
            .collect())
    }

    async fn find_launched(
        &self,
        claim: &NodeClaimRequest,
        launched_after_unix: i64,
    ) -> Result<Option<LaunchedInstance>, ProviderError> {
        // Wait out this process's launches in flight: their instances are tagged by the time
        // they finish, so only instances nobody here is launching can be adopted.
        let _no_launch_in_flight = self.launches.write().await;
        self.find_launched_instance(claim, launched_after_unix)
            .await
    }

    async fn is_drifted(
        &self,
        instance: &LaunchedInstance,
    ) -> Result<Option<DriftReason>, ProviderError> {
        self.drift(instance).await
    }
}
