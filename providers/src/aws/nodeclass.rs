//! `karpenter.k8s.aws/v1` EC2NodeClass: how AWS instances are launched (subnets, security
//! groups, AMIs, IAM role, user data, disks, kubelet settings), plus the `v1beta1` form that
//! Karpenter 0.3x users still have ([`v1beta1`]) and the CEL rules as a pure function
//! ([`validation`]).

pub mod hash;
pub mod v1beta1;
pub mod validation;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use karpenter_core::api::kubelet::KubeletConfiguration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use hash::{HASH_ANNOTATION_KEY, HASH_VERSION, HASH_VERSION_ANNOTATION_KEY, ec2nodeclass_hash};
pub use validation::validate_ec2_node_class;

/// API group of the AWS provider's objects.
pub const GROUP: &str = "karpenter.k8s.aws";

/// Annotation group the AWS provider uses for v1beta1 → v1 conversion bookkeeping.
pub const COMPATIBILITY_GROUP: &str = "compatibility.karpenter.k8s.aws";

/// Annotation Karpenter's conversion webhook sets when it maps a v1beta1 `Ubuntu` node class to
/// `AL2`; its value lists what was changed (`amiFamily`, `blockDeviceMappings`, `incompatible`).
pub const UBUNTU_COMPATIBILITY_ANNOTATION_KEY: &str =
    "compatibility.karpenter.k8s.aws/v1beta1-ubuntu";

/// The version part of an alias that follows the newest AMI release.
pub const ALIAS_VERSION_LATEST: &str = "latest";

/// The AMI family: decides the user-data format, default block devices and a few kubelet
/// behaviours (see [`AmiFamily::eni_limited_memory_overhead`] and friends).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum AmiFamily {
    /// Amazon Linux 2 (EKS optimized), bootstrapped with `bootstrap.sh`.
    #[serde(rename = "AL2")]
    Al2,
    /// Amazon Linux 2023 (EKS optimized), bootstrapped with `nodeadm`.
    #[serde(rename = "AL2023")]
    Al2023,
    /// Bottlerocket, configured with TOML settings.
    Bottlerocket,
    /// A user-provided AMI; Karpenter only passes the user data through.
    Custom,
    /// Windows Server 2019 (EKS optimized).
    Windows2019,
    /// Windows Server 2022 (EKS optimized).
    Windows2022,
}

impl AmiFamily {
    /// Every family, in manifest order.
    pub const ALL: [AmiFamily; 6] = [
        AmiFamily::Al2,
        AmiFamily::Al2023,
        AmiFamily::Bottlerocket,
        AmiFamily::Custom,
        AmiFamily::Windows2019,
        AmiFamily::Windows2022,
    ];

    /// The manifest spelling (`AL2`, `AL2023`, `Bottlerocket`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AmiFamily::Al2 => "AL2",
            AmiFamily::Al2023 => "AL2023",
            AmiFamily::Bottlerocket => "Bottlerocket",
            AmiFamily::Custom => "Custom",
            AmiFamily::Windows2019 => "Windows2019",
            AmiFamily::Windows2022 => "Windows2022",
        }
    }

    /// Parses the manifest spelling.
    pub fn parse(s: &str) -> Option<AmiFamily> {
        AmiFamily::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The family as an alias names it (`al2`, `al2023`, `bottlerocket`, `windows2019`,
    /// `windows2022`); `None` for `Custom`, which has no alias.
    pub fn alias_name(self) -> Option<&'static str> {
        match self {
            AmiFamily::Al2 => Some("al2"),
            AmiFamily::Al2023 => Some("al2023"),
            AmiFamily::Bottlerocket => Some("bottlerocket"),
            AmiFamily::Windows2019 => Some("windows2019"),
            AmiFamily::Windows2022 => Some("windows2022"),
            AmiFamily::Custom => None,
        }
    }

    /// The family an alias prefix names.
    pub fn from_alias_name(s: &str) -> Option<AmiFamily> {
        AmiFamily::ALL
            .into_iter()
            .find(|f| f.alias_name() == Some(s))
    }

    /// True for the Windows families.
    pub fn is_windows(self) -> bool {
        matches!(self, AmiFamily::Windows2019 | AmiFamily::Windows2022)
    }

    /// The Windows build label value (`node.kubernetes.io/windows-build`).
    pub fn windows_build(self) -> Option<&'static str> {
        match self {
            AmiFamily::Windows2019 => Some("10.0.17763"),
            AmiFamily::Windows2022 => Some("10.0.20348"),
            _ => None,
        }
    }

    /// Karpenter's `UsesENILimitedMemoryOverhead` flag: the kube-reserved memory is computed
    /// from the ENI-limited pod count even when `maxPods` overrides it, because that is what
    /// the AMI's bootstrap reserves. True for AL2, AL2023 and Custom.
    pub fn eni_limited_memory_overhead(self) -> bool {
        matches!(self, AmiFamily::Al2 | AmiFamily::Al2023 | AmiFamily::Custom)
    }

    /// Karpenter's `PodsPerCoreEnabled` flag (false for Bottlerocket, which ignores it).
    pub fn pods_per_core_enabled(self) -> bool {
        self != AmiFamily::Bottlerocket
    }

    /// Karpenter's `EvictionSoftEnabled` flag (false for Bottlerocket).
    pub fn eviction_soft_enabled(self) -> bool {
        self != AmiFamily::Bottlerocket
    }

    /// Karpenter's `SupportsENILimitedPodDensity` flag: without `maxPods`, the pod count is the
    /// ENI limit (true) or 110 (Windows).
    pub fn eni_limited_pod_density(self) -> bool {
        !self.is_windows()
    }

    /// The device the kubelet's root directory (and so ephemeral storage) lives on; `None` for
    /// Custom, where it is unknown.
    pub fn ephemeral_block_device(self) -> Option<&'static str> {
        match self {
            AmiFamily::Al2 | AmiFamily::Al2023 => Some("/dev/xvda"),
            AmiFamily::Bottlerocket => Some("/dev/xvdb"),
            AmiFamily::Windows2019 | AmiFamily::Windows2022 => Some("/dev/sda1"),
            AmiFamily::Custom => None,
        }
    }

    /// Size of the default volume on [`AmiFamily::ephemeral_block_device`] when the node class
    /// has no block device mappings: 20Gi (Bottlerocket's data volume too), 50Gi for Windows.
    pub fn default_ephemeral_volume_bytes(self) -> i64 {
        if self.is_windows() {
            50 << 30
        } else {
            DEFAULT_EBS_VOLUME_BYTES
        }
    }
}

/// Karpenter's default EBS volume size (`DefaultEBS.VolumeSize`): 20Gi.
pub const DEFAULT_EBS_VOLUME_BYTES: i64 = 20 << 30;

impl fmt::Display for AmiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `amiSelectorTerms[].alias` (`al2023@latest`, `bottlerocket@v1.20.3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    /// The family the alias names.
    pub family: AmiFamily,
    /// `latest` or a pinned release (`v20240807`).
    pub version: String,
}

impl Alias {
    /// Parses `family@version`; the error says what is wrong in Karpenter's words.
    pub fn parse(text: &str) -> Result<Alias, String> {
        let Some((family, version)) = text.split_once('@') else {
            return Err(ALIAS_FORMAT_MESSAGE.to_string());
        };
        if family.is_empty()
            || !family.chars().all(|c| c.is_ascii_alphanumeric())
            || version.is_empty()
        {
            return Err(ALIAS_FORMAT_MESSAGE.to_string());
        }
        let family = AmiFamily::from_alias_name(family).ok_or_else(|| {
            "family is not supported, must be one of the following: 'al2', 'al2023', \
             'bottlerocket', 'windows2019', 'windows2022'"
                .to_string()
        })?;
        if family.is_windows() && version != ALIAS_VERSION_LATEST {
            return Err("windows families may only specify version 'latest'".to_string());
        }
        Ok(Alias {
            family,
            version: version.to_string(),
        })
    }
}

const ALIAS_FORMAT_MESSAGE: &str =
    "'alias' is improperly formatted, must match the format 'family@version'";

/// `al2023@latest`.
impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = self.family.alias_name().unwrap_or("custom");
        write!(f, "{family}@{}", self.version)
    }
}

/// Desired state of an EC2NodeClass.
#[allow(clippy::duplicated_attributes)] // kube's printcolumn(...) arguments repeat `type_`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    shortname = "ec2nc",
    shortname = "ec2ncs",
    status = "EC2NodeClassStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "How Karpenter launches EC2 instances: subnets, security groups, AMIs, role, disks.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassSpec {
    /// Subnets to launch into; terms are ORed, fields within a term ANDed.
    #[serde(default)]
    pub subnet_selector_terms: Vec<SubnetSelectorTerm>,
    /// Security groups to attach; terms are ORed.
    #[serde(default)]
    pub security_group_selector_terms: Vec<SecurityGroupSelectorTerm>,
    /// Whether instances get a public IP address.
    #[serde(
        rename = "associatePublicIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub associate_public_ip_address: Option<bool>,
    /// AMIs to choose from; an `alias` term must be the only term.
    #[serde(default)]
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    /// User-data format and default disks; optional with an alias (inferred from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_family: Option<AmiFamily>,
    /// User data merged with what Karpenter generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// IAM role for the instance profile Karpenter manages (exclusive with `instanceProfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// An existing instance profile (exclusive with `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Tags for instances, volumes and launch templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Kubelet settings (moved here from the v1beta1 NodePool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletConfiguration>,
    /// Disks; at most one may be the `rootVolume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// How to use instance-store NVMe disks (`RAID0` makes them the ephemeral storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Whether detailed CloudWatch monitoring is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
    /// Instance Metadata Service options of the launch template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<MetadataOptions>,
    /// Reserved EC2 `Context` field passed to CreateFleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Selects subnets by tags or by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetSelectorTerm {
    /// Tags to match; `*` as a value matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Subnet id (`subnet-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Selects security groups by tags, id or name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupSelectorTerm {
    /// Tags to match; `*` as a value matches any value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Security group id (`sg-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Security group name (the group's name field, not its Name tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Selects AMIs by alias, tags, id, name/owner or SSM parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmiSelectorTerm {
    /// An EKS-optimized AMI as `family@version` (`al2023@latest`, `al2023@v20240807`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Tags to match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// AMI id (`ami-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// AMI name (wildcards allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner: account id, `self`, `amazon` or `aws-marketplace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Name or ARN of an SSM parameter holding the AMI id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_parameter: Option<String>,
}

/// One block device of the launch template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDeviceMapping {
    /// Device name, e.g. `/dev/xvda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The EBS volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs: Option<BlockDevice>,
    /// True when the kubelet's root directory lives on this device.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root_volume: bool,
}

/// EBS volume parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDevice {
    /// Delete the volume when the instance terminates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    /// Encrypt the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// Provisioned IOPS (gp3, io1, io2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i64>,
    /// KMS key for encryption.
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Snapshot to create the volume from.
    #[serde(
        rename = "snapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Throughput in MiB/s (gp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i64>,
    /// Size (`20Gi`, `100G`, `1Ti`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<Quantity>,
    /// `standard`, `io1`, `io2`, `gp2`, `sc1`, `st1` or `gp3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
}

/// Instance Metadata Service options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetadataOptions {
    /// `enabled` or `disabled`.
    #[serde(
        rename = "httpEndpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_endpoint: Option<String>,
    /// `enabled` or `disabled`.
    #[serde(
        rename = "httpProtocolIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_protocol_ipv6: Option<String>,
    /// 1 to 64.
    #[serde(
        rename = "httpPutResponseHopLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_put_response_hop_limit: Option<i64>,
    /// `required` or `optional`.
    #[serde(
        rename = "httpTokens",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_tokens: Option<String>,
}

/// How instance-store disks are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum InstanceStorePolicy {
    /// RAID-0 all instance-store NVMe disks and use them for the kubelet and containerd.
    #[serde(rename = "RAID0")]
    Raid0,
}

/// Observed state of an EC2NodeClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassStatus {
    /// Subnets resolved from the selector terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<Subnet>,
    /// Security groups resolved from the selector terms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<SecurityGroup>,
    /// AMIs resolved from the selector terms, with the requirements each serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amis: Vec<Ami>,
    /// The instance profile in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Readiness conditions (`Ready`, `SubnetsReady`, `SecurityGroupsReady`, `AMIsReady`,
    /// `InstanceProfileReady`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A resolved subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subnet {
    /// Subnet id.
    pub id: String,
    /// Availability zone name.
    pub zone: String,
    /// Availability zone id (`use1-az1`).
    #[serde(rename = "zoneID", default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A resolved security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecurityGroup {
    /// Security group id.
    pub id: String,
    /// Security group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A resolved AMI.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ami {
    /// AMI id.
    pub id: String,
    /// AMI name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// True when the AMI is deprecated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// The instance types the AMI serves (architecture, GPU or not, …).
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirement>,
}

impl EC2NodeClass {
    /// The AMI family in effect: `spec.amiFamily` when set, else the alias's family, else
    /// Custom (validation makes the last case unreachable), as Karpenter's `AMIFamily()`.
    pub fn ami_family(&self) -> AmiFamily {
        self.spec
            .ami_family
            .unwrap_or_else(|| self.alias().map_or(AmiFamily::Custom, |a| a.family))
    }

    /// The parsed alias term, if there is one and it parses.
    pub fn alias(&self) -> Option<Alias> {
        self.spec
            .ami_selector_terms
            .iter()
            .find_map(|t| t.alias.as_deref())
            .and_then(|a| Alias::parse(a).ok())
    }

    /// The kubelet settings, if any.
    pub fn kubelet(&self) -> Option<&KubeletConfiguration> {
        self.spec.kubelet.as_ref()
    }

    /// Zones of the resolved subnets (empty until the status is filled).
    pub fn subnet_zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = self
            .status
            .iter()
            .flat_map(|s| s.subnets.iter().map(|s| s.zone.clone()))
            .collect();
        zones.sort();
        zones.dedup();
        zones
    }
}

#[cfg(test)]
mod tests;
