//! The narrow slice of the EC2 API the AWS provider calls, behind a trait of plain structs.
//!
//! [`Ec2Api`] keeps SDK types out of its signatures so tests (hand fakes, `mockall`) can
//! implement it without building SDK inputs and outputs; [`SdkEc2`] implements it over
//! [`aws_sdk_ec2::Client`] and does the conversions (`sdk_impl` for the calls besides
//! `CreateFleet`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types as sdk;

mod describe;
mod sdk_impl;

pub use describe::{
    Instance, InstanceQuery, InstanceTypeInfo, LaunchTemplateBlockDevice,
    LaunchTemplateMetadataOptions, LaunchTemplateRequest, LaunchTemplateSummary, SpotPrice,
    TerminatedInstance,
};

use super::resolve::{Filter, Image, ImageQuery, SecurityGroup, Subnet};

/// Capacity type of a fleet request or an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapacityType {
    /// Spot instances.
    Spot,
    /// On-demand instances.
    OnDemand,
}

impl CapacityType {
    /// The label value Karpenter uses (`spot`, `on-demand`), which is also EC2's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on-demand",
        }
    }

    /// Parses `spot` / `on-demand` (EC2's `InstanceLifecycle` and Karpenter's label values).
    pub fn parse(s: &str) -> Option<CapacityType> {
        match s {
            "spot" => Some(CapacityType::Spot),
            "on-demand" => Some(CapacityType::OnDemand),
            _ => None,
        }
    }
}

/// One `Overrides` entry of a launch template config: where and as what to launch.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetOverride {
    /// Instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// Subnet to launch into.
    pub subnet_id: String,
    /// The subnet's availability zone.
    pub availability_zone: String,
    /// Priority (lower launches first) for prioritized allocation strategies; `None` otherwise.
    pub priority: Option<f64>,
}

/// One `LaunchTemplateConfigs` entry: a launch template (by name, `$Latest`) and its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetLaunchTemplateConfig {
    /// Launch template name.
    pub launch_template_name: String,
    /// Launch template version, normally `$Latest`.
    pub version: String,
    /// The overrides tried with this template.
    pub overrides: Vec<FleetOverride>,
}

/// Tags for one resource type (`instance`, `volume`, `fleet`) the fleet creates.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetTagSpecification {
    /// EC2 resource type, e.g. `instance`.
    pub resource_type: String,
    /// Tags, by key.
    pub tags: BTreeMap<String, String>,
}

/// A `CreateFleet` request of `Type=instant` with a total target capacity of `target_capacity`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateFleetRequest {
    /// `DefaultTargetCapacityType`.
    pub capacity_type: CapacityType,
    /// `TotalTargetCapacity` (Karpenter launches one instance per NodeClaim).
    pub target_capacity: i32,
    /// Launch template configs with their overrides.
    pub launch_template_configs: Vec<FleetLaunchTemplateConfig>,
    /// `SpotOptions.AllocationStrategy`, e.g. `price-capacity-optimized`.
    pub spot_allocation_strategy: String,
    /// `OnDemandOptions.AllocationStrategy`, e.g. `lowest-price`.
    pub on_demand_allocation_strategy: String,
    /// Tag specifications.
    pub tag_specifications: Vec<FleetTagSpecification>,
    /// `Context` (reserved for AWS internal use; set from the node class when given).
    pub context: Option<String>,
}

/// Which launch template and override an instance or error came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetOverrideRef {
    /// Launch template name.
    pub launch_template_name: Option<String>,
    /// Instance type.
    pub instance_type: Option<String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// Subnet id.
    pub subnet_id: Option<String>,
}

/// One `Instances` entry of a `CreateFleet` response.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetInstance {
    /// Ids of the instances launched for this override.
    pub instance_ids: Vec<String>,
    /// Instance type (from the entry, or its override).
    pub instance_type: Option<String>,
    /// Availability zone (from the entry, or its override).
    pub availability_zone: Option<String>,
    /// `spot` or `on-demand`, when EC2 said.
    pub capacity_type: Option<CapacityType>,
    /// The launch template and override that launched it.
    pub source: FleetOverrideRef,
}

/// One `Errors` entry of a `CreateFleet` response.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetError {
    /// EC2 error code, e.g. `InsufficientInstanceCapacity`.
    pub code: String,
    /// EC2 error message.
    pub message: String,
    /// `spot` or `on-demand`, when EC2 said.
    pub capacity_type: Option<CapacityType>,
    /// The launch template and override that failed.
    pub source: FleetOverrideRef,
}

/// What `CreateFleet` answered when the call itself succeeded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetOutcome {
    /// Fleet id.
    pub fleet_id: Option<String>,
    /// Launched instances.
    pub instances: Vec<FleetInstance>,
    /// Per-override errors (an instant fleet reports capacity failures here, not as an API
    /// error).
    pub errors: Vec<FleetError>,
}

/// An EC2 call that failed as a whole.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Ec2Error {
    /// EC2 throttled the call (`RequestLimitExceeded` and friends); retry later.
    #[error("{operation} throttled: {code}: {message}")]
    Throttled {
        /// API operation, e.g. `CreateFleet`.
        operation: String,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// EC2 answered with an error code.
    #[error("{operation} failed: {code}: {message}")]
    Api {
        /// API operation.
        operation: String,
        /// Error code, e.g. `UnauthorizedOperation`.
        code: String,
        /// Error message.
        message: String,
    },
    /// No answer from EC2 (timeouts, connection errors, unparseable responses).
    #[error("{operation} failed: {message}")]
    Transport {
        /// API operation.
        operation: String,
        /// What went wrong.
        message: String,
    },
}

/// Error codes EC2 uses when it throttles a caller.
pub const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
];

/// The EC2 operations the provider uses, over plain structs. Describe calls return every page.
#[async_trait]
pub trait Ec2Api: Send + Sync {
    /// `CreateFleet`.
    async fn create_fleet(&self, request: &CreateFleetRequest) -> Result<FleetOutcome, Ec2Error>;

    /// `DescribeSubnets` with one filter set (filters ANDed).
    async fn describe_subnets(&self, filters: &[Filter]) -> Result<Vec<Subnet>, Ec2Error>;

    /// `DescribeSecurityGroups` with one filter set.
    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, Ec2Error>;

    /// `DescribeImages` for one query. `deprecated` is judged against `now_unix`.
    async fn describe_images(
        &self,
        query: &ImageQuery,
        now_unix: i64,
    ) -> Result<Vec<Image>, Ec2Error>;

    /// `DescribeInstanceTypes` of the whole region (every page).
    async fn describe_instance_types(&self) -> Result<Vec<InstanceTypeInfo>, Ec2Error>;

    /// `DescribeInstanceTypeOfferings` with `LocationType=availability-zone`:
    /// `(instance type, zone)` pairs.
    async fn describe_instance_type_offerings(&self) -> Result<Vec<(String, String)>, Ec2Error>;

    /// `DescribeSpotPriceHistory` for `Linux/UNIX` since `start_unix`.
    async fn describe_spot_price_history(
        &self,
        start_unix: i64,
    ) -> Result<Vec<SpotPrice>, Ec2Error>;

    /// `DescribeInstances` (every reservation, every page).
    async fn describe_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, Ec2Error>;

    /// `TerminateInstances`.
    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<TerminatedInstance>, Ec2Error>;

    /// `CreateLaunchTemplate`; returns the template id.
    async fn create_launch_template(
        &self,
        request: &LaunchTemplateRequest,
    ) -> Result<String, Ec2Error>;

    /// `DescribeLaunchTemplates` with filters (e.g. `tag:karpenter.k8s.aws/cluster`).
    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplateSummary>, Ec2Error>;

    /// `DeleteLaunchTemplate` by name.
    async fn delete_launch_template(&self, name: &str) -> Result<(), Ec2Error>;

    /// `CreateTags`: puts `tags` on every resource in `resource_ids` (overwriting values).
    async fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error>;
}

/// [`Ec2Api`] over the AWS SDK.
#[derive(Clone, Debug)]
pub struct SdkEc2 {
    client: aws_sdk_ec2::Client,
    /// Timeouts of `CreateFleet` instead of the client's, when set.
    create_fleet_timeouts: Option<aws_sdk_ec2::config::timeout::TimeoutConfig>,
}

impl SdkEc2 {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        SdkEc2 {
            client,
            create_fleet_timeouts: None,
        }
    }

    /// Gives `CreateFleet` its own timeouts (an instant fleet launches before it answers, so
    /// it may take longer than the other calls).
    pub fn with_create_fleet_timeouts(
        mut self,
        timeouts: aws_sdk_ec2::config::timeout::TimeoutConfig,
    ) -> Self {
        self.create_fleet_timeouts = Some(timeouts);
        self
    }
}

#[async_trait]
impl Ec2Api for SdkEc2 {
    async fn create_fleet(&self, request: &CreateFleetRequest) -> Result<FleetOutcome, Ec2Error> {
        let mut call = self
            .client
            .create_fleet()
            .r#type(sdk::FleetType::Instant)
            .target_capacity_specification(
                sdk::TargetCapacitySpecificationRequest::builder()
                    .total_target_capacity(request.target_capacity)
                    .default_target_capacity_type(match request.capacity_type {
                        CapacityType::Spot => sdk::DefaultTargetCapacityType::Spot,
                        CapacityType::OnDemand => sdk::DefaultTargetCapacityType::OnDemand,
                    })
                    .build(),
            )
            .spot_options(
                sdk::SpotOptionsRequest::builder()
                    .allocation_strategy(sdk::SpotAllocationStrategy::from(
                        request.spot_allocation_strategy.as_str(),
                    ))
                    .build(),
            )
            .on_demand_options(
                sdk::OnDemandOptionsRequest::builder()
                    .allocation_strategy(sdk::FleetOnDemandAllocationStrategy::from(
                        request.on_demand_allocation_strategy.as_str(),
                    ))
                    .build(),
            )
            .set_context(request.context.clone());
        for config in &request.launch_template_configs {
            call = call.launch_template_configs(to_sdk_config(config));
        }
        for spec in &request.tag_specifications {
            call = call.tag_specifications(to_sdk_tags(spec));
        }
        let mut call = call.customize();
        if let Some(timeouts) = &self.create_fleet_timeouts {
            call = call.config_override(
                aws_sdk_ec2::config::Builder::default().timeout_config(timeouts.clone()),
            );
        }
        let output = call
            .send()
            .await
            .map_err(|e| classify("CreateFleet", e.code(), e.message(), &e))?;
        Ok(FleetOutcome {
            fleet_id: output.fleet_id().map(str::to_owned),
            instances: output.instances().iter().map(from_sdk_instance).collect(),
            errors: output.errors().iter().map(from_sdk_error).collect(),
        })
    }

    async fn describe_subnets(&self, filters: &[Filter]) -> Result<Vec<Subnet>, Ec2Error> {
        sdk_impl::describe_subnets(&self.client, filters).await
    }

    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<SecurityGroup>, Ec2Error> {
        sdk_impl::describe_security_groups(&self.client, filters).await
    }

    async fn describe_images(
        &self,
        query: &ImageQuery,
        now_unix: i64,
    ) -> Result<Vec<Image>, Ec2Error> {
        sdk_impl::describe_images(&self.client, query, now_unix).await
    }

    async fn describe_instance_types(&self) -> Result<Vec<InstanceTypeInfo>, Ec2Error> {
        sdk_impl::describe_instance_types(&self.client).await
    }

    async fn describe_instance_type_offerings(&self) -> Result<Vec<(String, String)>, Ec2Error> {
        sdk_impl::describe_instance_type_offerings(&self.client).await
    }

    async fn describe_spot_price_history(
        &self,
        start_unix: i64,
    ) -> Result<Vec<SpotPrice>, Ec2Error> {
        sdk_impl::describe_spot_price_history(&self.client, start_unix).await
    }

    async fn describe_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, Ec2Error> {
        sdk_impl::describe_instances(&self.client, query).await
    }

    async fn terminate_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<TerminatedInstance>, Ec2Error> {
        sdk_impl::terminate_instances(&self.client, instance_ids).await
    }

    async fn create_launch_template(
        &self,
        request: &LaunchTemplateRequest,
    ) -> Result<String, Ec2Error> {
        sdk_impl::create_launch_template(&self.client, request).await
    }

    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<LaunchTemplateSummary>, Ec2Error> {
        sdk_impl::describe_launch_templates(&self.client, filters).await
    }

    async fn delete_launch_template(&self, name: &str) -> Result<(), Ec2Error> {
        sdk_impl::delete_launch_template(&self.client, name).await
    }

    async fn create_tags(
        &self,
        resource_ids: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Ec2Error> {
        sdk_impl::create_tags(&self.client, resource_ids, tags).await
    }
}

/// Sorts an SDK failure into throttling, an API error with a code, or a transport failure.
pub(crate) fn classify(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
    err: &dyn std::fmt::Debug,
) -> Ec2Error {
    let operation = operation.to_owned();
    let message = message.unwrap_or_default().to_owned();
    match code {
        Some(code) if THROTTLING_CODES.contains(&code) => Ec2Error::Throttled {
            operation,
            code: code.to_owned(),
            message,
        },
        Some(code) => Ec2Error::Api {
            operation,
            code: code.to_owned(),
            message,
        },
        // No code means no modeled answer; the Debug form is the only detail there is.
        None => Ec2Error::Transport {
            operation,
            message: format!("{err:?}"),
        },
    }
}

fn to_sdk_config(config: &FleetLaunchTemplateConfig) -> sdk::FleetLaunchTemplateConfigRequest {
    let mut b = sdk::FleetLaunchTemplateConfigRequest::builder().launch_template_specification(
        sdk::FleetLaunchTemplateSpecificationRequest::builder()
            .launch_template_name(&config.launch_template_name)
            .version(&config.version)
            .build(),
    );
    for o in &config.overrides {
        b = b.overrides(
            sdk::FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(sdk::InstanceType::from(o.instance_type.as_str()))
                .subnet_id(&o.subnet_id)
                .availability_zone(&o.availability_zone)
                .set_priority(o.priority)
                .build(),
        );
    }
    b.build()
}

fn to_sdk_tags(spec: &FleetTagSpecification) -> sdk::TagSpecification {
    let mut b = sdk::TagSpecification::builder()
        .resource_type(sdk::ResourceType::from(spec.resource_type.as_str()));
    for (k, v) in &spec.tags {
        b = b.tags(sdk::Tag::builder().key(k).value(v).build());
    }
    b.build()
}

fn from_sdk_lifecycle(l: Option<&sdk::InstanceLifecycle>) -> Option<CapacityType> {
    l.and_then(|l| CapacityType::parse(l.as_str()))
}

fn from_sdk_source(lto: Option<&sdk::LaunchTemplateAndOverridesResponse>) -> FleetOverrideRef {
    let spec = lto.and_then(|l| l.launch_template_specification());
    let ov = lto.and_then(|l| l.overrides());
    FleetOverrideRef {
        launch_template_name: spec
            .and_then(|s| s.launch_template_name())
            .map(str::to_owned),
        instance_type: ov
            .and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_owned()),
        availability_zone: ov.and_then(|o| o.availability_zone()).map(str::to_owned),
        subnet_id: ov.and_then(|o| o.subnet_id()).map(str::to_owned),
    }
}

fn from_sdk_instance(i: &sdk::CreateFleetInstance) -> FleetInstance {
    let source = from_sdk_source(i.launch_template_and_overrides());
    FleetInstance {
        instance_ids: i.instance_ids().to_vec(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .or_else(|| source.instance_type.clone()),
        availability_zone: i
            .availability_zone()
            .map(str::to_owned)
            .or_else(|| source.availability_zone.clone()),
        capacity_type: from_sdk_lifecycle(i.lifecycle()),
        source,
    }
}

fn from_sdk_error(e: &sdk::CreateFleetError) -> FleetError {
    FleetError {
        code: e.error_code().unwrap_or_default().to_owned(),
        message: e.error_message().unwrap_or_default().to_owned(),
        capacity_type: from_sdk_lifecycle(e.lifecycle()),
        source: from_sdk_source(e.launch_template_and_overrides()),
    }
}
