//! Plain request/response types of the EC2 calls besides `CreateFleet`: Describe*, launch
//! templates and termination. The SDK conversions live in `super::sdk_impl`.

use std::collections::BTreeMap;

use super::CapacityType;
use crate::aws::catalog::Gpu;

/// One instance type as `DescribeInstanceTypes` reports it: the facts of a
/// [`CatalogEntry`](crate::aws::catalog::CatalogEntry) without zones and price (those come from
/// `DescribeInstanceTypeOfferings` and the price table).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceTypeInfo {
    /// e.g. `m5.large`.
    pub name: String,
    /// `VCpuInfo.DefaultVCpus`.
    pub vcpu: u32,
    /// `MemoryInfo.SizeInMiB`.
    pub memory_mib: u64,
    /// `ProcessorInfo.SupportedArchitectures` in Kubernetes spelling (`x86_64` → `amd64`,
    /// `arm64` stays); others (`i386`, `x86_64_mac`) are dropped.
    pub architectures: Vec<String>,
    /// `ProcessorInfo.Manufacturer` (`Intel`, `AMD`, `AWS`).
    pub processor_manufacturer: Option<String>,
    /// `Hypervisor` (`nitro`, `xen`); `None` for bare metal.
    pub hypervisor: Option<String>,
    /// `BareMetal`.
    pub bare_metal: bool,
    /// `BurstablePerformanceSupported`.
    pub burstable: bool,
    /// `CurrentGeneration`.
    pub current_generation: bool,
    /// `NetworkInfo.MaximumNetworkInterfaces`.
    pub max_network_interfaces: u32,
    /// `NetworkInfo.Ipv4AddressesPerInterface`.
    pub ipv4_per_interface: u32,
    /// `NetworkInfo.EfaSupported`.
    pub efa_supported: bool,
    /// `NetworkInfo.NetworkPerformance`.
    pub network_performance: Option<String>,
    /// `GpuInfo.Gpus`.
    pub gpus: Vec<Gpu>,
    /// `InstanceStorageInfo.TotalSizeInGB` (0 when none).
    pub local_nvme_gb: u64,
    /// `SupportedUsageClasses` contains `spot`.
    pub spot_supported: bool,
}

/// One `DescribeSpotPriceHistory` entry (Linux/UNIX).
#[derive(Clone, Debug, PartialEq)]
pub struct SpotPrice {
    /// Instance type.
    pub instance_type: String,
    /// Availability zone.
    pub zone: String,
    /// USD per hour.
    pub price: f64,
    /// When the price took effect, seconds since the Unix epoch.
    pub timestamp_unix: i64,
}

/// Which instances `DescribeInstances` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceQuery {
    /// These ids (`InstanceIds`).
    Ids(Vec<String>),
    /// Instances matching all these filters (`Filters`), e.g. `tag:karpenter.sh/nodepool` exists
    /// and `instance-state-name` in `pending,running`.
    Filters(Vec<crate::aws::resolve::Filter>),
}

/// One instance as `DescribeInstances` reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// `i-…`.
    pub id: String,
    /// Instance type.
    pub instance_type: String,
    /// `Placement.AvailabilityZone`.
    pub zone: String,
    /// `spot` when `InstanceLifecycle` is spot, else on-demand.
    pub capacity_type: CapacityType,
    /// `ImageId`.
    pub image_id: String,
    /// `State.Name` (`pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`).
    pub state: String,
    /// `LaunchTime`, seconds since the Unix epoch (0 when absent).
    pub launch_time_unix: i64,
    /// `SubnetId`.
    pub subnet_id: Option<String>,
    /// `SecurityGroups[].GroupId`.
    pub security_group_ids: Vec<String>,
    /// `PrivateDnsName`.
    pub private_dns_name: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One EBS block device of a launch template.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchTemplateBlockDevice {
    /// e.g. `/dev/xvda`.
    pub device_name: String,
    /// Volume size in GiB.
    pub volume_size_gib: Option<i32>,
    /// `gp3`, `gp2`, `io1`, …
    pub volume_type: Option<String>,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// Throughput in MiB/s (gp3).
    pub throughput: Option<i32>,
    /// Encrypt the volume.
    pub encrypted: Option<bool>,
    /// KMS key for encryption.
    pub kms_key_id: Option<String>,
    /// Delete with the instance.
    pub delete_on_termination: Option<bool>,
    /// Snapshot to create the volume from.
    pub snapshot_id: Option<String>,
}

/// `MetadataOptions` of a launch template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplateMetadataOptions {
    /// `enabled` / `disabled`.
    pub http_endpoint: Option<String>,
    /// `enabled` / `disabled`.
    pub http_protocol_ipv6: Option<String>,
    /// Hop limit.
    pub http_put_response_hop_limit: Option<i32>,
    /// `required` / `optional`.
    pub http_tokens: Option<String>,
}

/// A `CreateLaunchTemplate` request.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchTemplateRequest {
    /// `LaunchTemplateName`.
    pub name: String,
    /// `ImageId`.
    pub image_id: String,
    /// `UserData`, already base64-encoded.
    pub user_data_base64: String,
    /// `SecurityGroupIds`.
    pub security_group_ids: Vec<String>,
    /// `IamInstanceProfile.Name`, if any.
    pub instance_profile: Option<String>,
    /// `BlockDeviceMappings`.
    pub block_devices: Vec<LaunchTemplateBlockDevice>,
    /// `MetadataOptions`.
    pub metadata_options: Option<LaunchTemplateMetadataOptions>,
    /// `Monitoring.Enabled` (detailed monitoring).
    pub detailed_monitoring: bool,
    /// Associate a public IP (`NetworkInterfaces[0].AssociatePublicIpAddress`) when set.
    pub associate_public_ip: Option<bool>,
    /// Tags of the launch template itself (`TagSpecifications` with `launch-template`).
    pub tags: BTreeMap<String, String>,
}

/// A launch template as `DescribeLaunchTemplates` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplateSummary {
    /// `LaunchTemplateId`.
    pub id: String,
    /// `LaunchTemplateName`.
    pub name: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One instance's state change from `TerminateInstances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminatedInstance {
    /// Instance id.
    pub id: String,
    /// `CurrentState.Name`, e.g. `shutting-down`.
    pub current_state: String,
}
