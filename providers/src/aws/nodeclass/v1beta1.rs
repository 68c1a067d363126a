//! `karpenter.k8s.aws/v1beta1` EC2NodeClass, as Karpenter 0.33–0.37 users write it, and its
//! conversion to v1 following Karpenter v1.0's conversion webhook.
//!
//! Differences from v1: `amiFamily` is required and includes `Ubuntu`; AMI selector terms have
//! no `alias`; kubelet settings live on the NodePool (passed to [`convert_to_v1`] separately);
//! the metadata-options default hop limit is 2 instead of 1.

use std::collections::BTreeMap;

use karpenter_core::api::kubelet::KubeletConfiguration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AmiFamily, BlockDevice, BlockDeviceMapping, EC2NodeClassStatus, InstanceStorePolicy,
    MetadataOptions, SecurityGroupSelectorTerm, SubnetSelectorTerm,
    UBUNTU_COMPATIBILITY_ANNOTATION_KEY,
};

/// The v1beta1 AMI family enum (v1's plus the Ubuntu families).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum V1beta1AmiFamily {
    /// Amazon Linux 2.
    #[serde(rename = "AL2")]
    Al2,
    /// Amazon Linux 2023.
    #[serde(rename = "AL2023")]
    Al2023,
    /// Bottlerocket.
    Bottlerocket,
    /// Ubuntu (dropped in v1; converted to AL2 with compatibility annotations).
    Ubuntu,
    /// Ubuntu 20.04 (converted as Custom, like Karpenter does for unknown families).
    Ubuntu2004,
    /// Ubuntu 22.04 (converted as Custom).
    Ubuntu2204,
    /// A user-provided AMI.
    Custom,
    /// Windows Server 2019.
    Windows2019,
    /// Windows Server 2022.
    Windows2022,
}

impl V1beta1AmiFamily {
    /// The v1 family with an EKS-optimized alias, if this family has one.
    fn aliased_v1(self) -> Option<AmiFamily> {
        match self {
            V1beta1AmiFamily::Al2 => Some(AmiFamily::Al2),
            V1beta1AmiFamily::Al2023 => Some(AmiFamily::Al2023),
            V1beta1AmiFamily::Bottlerocket => Some(AmiFamily::Bottlerocket),
            V1beta1AmiFamily::Windows2019 => Some(AmiFamily::Windows2019),
            V1beta1AmiFamily::Windows2022 => Some(AmiFamily::Windows2022),
            _ => None,
        }
    }
}

/// Desired state of a v1beta1 EC2NodeClass.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.k8s.aws",
    version = "v1beta1",
    kind = "EC2NodeClass",
    plural = "ec2nodeclasses",
    shortname = "ec2nc",
    shortname = "ec2ncs",
    status = "EC2NodeClassStatus",
    derive = "PartialEq",
    category = "karpenter",
    doc = "The v1beta1 EC2NodeClass of Karpenter 0.3x."
)]
#[serde(rename_all = "camelCase")]
pub struct EC2NodeClassSpec {
    /// Subnets to launch into; terms are ORed.
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
    /// AMIs to choose from; empty means the family's EKS-optimized AMIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ami_selector_terms: Vec<AmiSelectorTerm>,
    /// The AMI family (required in v1beta1).
    pub ami_family: V1beta1AmiFamily,
    /// User data merged with what Karpenter generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// IAM role (exclusive with `instanceProfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// An existing instance profile (exclusive with `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Tags for EC2 resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Disks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// How to use instance-store disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Detailed monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_monitoring: Option<bool>,
    /// Instance Metadata Service options (defaulted with hop limit 2 in v1beta1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_options: Option<MetadataOptions>,
    /// Reserved EC2 `Context` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// A v1beta1 AMI selector term (no `alias`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmiSelectorTerm {
    /// Tags to match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// AMI id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// AMI name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// AMI owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The metadata options the v1beta1 CRD defaults an omitted `metadataOptions` to (hop limit 2;
/// v1's default is 1).
pub fn default_metadata_options() -> MetadataOptions {
    MetadataOptions {
        http_endpoint: Some("enabled".into()),
        http_protocol_ipv6: Some("disabled".into()),
        http_put_response_hop_limit: Some(2),
        http_tokens: Some("required".into()),
    }
}

/// Fills the fields the v1beta1 CRD defaults (an omitted object or field) with those defaults.
fn with_v1beta1_defaults(given: Option<&MetadataOptions>) -> MetadataOptions {
    let d = default_metadata_options();
    let Some(g) = given else { return d };
    MetadataOptions {
        http_endpoint: g.http_endpoint.clone().or(d.http_endpoint),
        http_protocol_ipv6: g.http_protocol_ipv6.clone().or(d.http_protocol_ipv6),
        http_put_response_hop_limit: g
            .http_put_response_hop_limit
            .or(d.http_put_response_hop_limit),
        http_tokens: g.http_tokens.clone().or(d.http_tokens),
    }
}

/// Converts a v1beta1 EC2NodeClass to v1 as Karpenter v1.0's conversion webhook does, with the
/// kubelet settings that v1beta1 kept on the NodePool moved onto the node class.
///
/// - AL2 / AL2023 / Bottlerocket / Windows without AMI selector terms become an alias
///   (`al2@latest`, …) and `amiFamily` is dropped; with terms, terms and family are kept.
/// - Ubuntu becomes AL2 (same user-data format) with Ubuntu's root volume (`/dev/sda1`, 20Gi
///   gp3, encrypted) when no block devices were given, and the `v1beta1-ubuntu` annotation
///   records what changed; without AMI selector terms it is marked `incompatible` with a
///   placeholder term.
/// - Anything else becomes Custom.
/// - Omitted `metadataOptions` fields get the v1beta1 defaults (hop limit 2), which the API
///   server would have stored, so converted nodes keep the hop limit they had.
pub fn convert_to_v1(
    old: &EC2NodeClass,
    kubelet_from_nodepool: Option<KubeletConfiguration>,
) -> super::EC2NodeClass {
    let spec = &old.spec;
    let mut metadata = old.metadata.clone();
    let mut ami_family = None;
    let mut ami_selector_terms: Vec<super::AmiSelectorTerm> = spec
        .ami_selector_terms
        .iter()
        .map(|t| super::AmiSelectorTerm {
            tags: t.tags.clone(),
            id: t.id.clone(),
            name: t.name.clone(),
            owner: t.owner.clone(),
            ..Default::default()
        })
        .collect();
    let mut block_device_mappings = spec.block_device_mappings.clone();

    match (spec.ami_family, spec.ami_family.aliased_v1()) {
        (_, Some(family)) => {
            if ami_selector_terms.is_empty() {
                let alias = family.alias_name().unwrap_or("al2023");
                ami_selector_terms = vec![super::AmiSelectorTerm {
                    alias: Some(format!("{alias}@{}", super::ALIAS_VERSION_LATEST)),
                    ..Default::default()
                }];
            } else {
                ami_family = Some(family);
            }
        }
        (V1beta1AmiFamily::Ubuntu, None) => {
            let mut compat = vec!["amiFamily"];
            ami_family = Some(AmiFamily::Al2);
            if block_device_mappings.is_empty() {
                compat.push("blockDeviceMappings");
                block_device_mappings = vec![BlockDeviceMapping {
                    device_name: Some("/dev/sda1".into()),
                    root_volume: true,
                    ebs: Some(BlockDevice {
                        encrypted: Some(true),
                        volume_type: Some("gp3".into()),
                        volume_size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                            "20Gi".into(),
                        )),
                        ..Default::default()
                    }),
                }];
            }
            if ami_selector_terms.is_empty() {
                compat.push("incompatible");
                ami_selector_terms = vec![super::AmiSelectorTerm {
                    id: Some("ami-placeholder".into()),
                    ..Default::default()
                }];
            }
            metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    UBUNTU_COMPATIBILITY_ANNOTATION_KEY.to_string(),
                    compat.join(","),
                );
        }
        (_, None) => ami_family = Some(AmiFamily::Custom),
    }

    super::EC2NodeClass {
        metadata,
        spec: super::EC2NodeClassSpec {
            subnet_selector_terms: spec.subnet_selector_terms.clone(),
            security_group_selector_terms: spec.security_group_selector_terms.clone(),
            associate_public_ip_address: spec.associate_public_ip_address,
            ami_selector_terms,
            ami_family,
            user_data: spec.user_data.clone(),
            role: spec.role.clone(),
            instance_profile: spec.instance_profile.clone(),
            tags: spec.tags.clone(),
            kubelet: kubelet_from_nodepool.filter(|k| !k.is_empty()),
            block_device_mappings,
            instance_store_policy: spec.instance_store_policy,
            detailed_monitoring: spec.detailed_monitoring,
            metadata_options: Some(with_v1beta1_defaults(spec.metadata_options.as_ref())),
            context: spec.context.clone(),
        },
        status: old.status.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::nodeclass::validate_ec2_node_class;

    /// The staging EC2NodeClass of the seed deployment (Karpenter 0.36): subnets and security
    /// groups discovered by the `karpenter.sh/discovery` tag, VPC CNI prefix delegation switched
    /// on through user data.
    const STAGING: &str = r#"
apiVersion: karpenter.k8s.aws/v1beta1
kind: EC2NodeClass
metadata:
  name: default
spec:
  amiFamily: AL2
  role: KarpenterNodeRole-avlos-stg
  subnetSelectorTerms:
    - tags:
        karpenter.sh/discovery: avlos-stg
  securityGroupSelectorTerms:
    - tags:
        karpenter.sh/discovery: avlos-stg
  tags:
    team: platform
  userData: |
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="BOUNDARY"

    --BOUNDARY
    Content-Type: text/x-shellscript; charset="us-ascii"

    #!/bin/bash
    set -ex
    cat <<'EOF' >> /etc/eks/cni-env
    ENABLE_PREFIX_DELEGATION=true
    WARM_PREFIX_TARGET=1
    EOF

    --BOUNDARY--
"#;

    /// The NodePool's `spec.template.spec.kubelet` of the seed deployment.
    fn seed_kubelet() -> KubeletConfiguration {
        KubeletConfiguration {
            max_pods: Some(110),
            ..Default::default()
        }
    }

    #[test]
    fn staging_node_class_converts_to_an_al2_alias() {
        let old: EC2NodeClass = serde_yaml::from_str(STAGING).unwrap();
        assert_eq!(old.spec.ami_family, V1beta1AmiFamily::Al2);
        let nc = convert_to_v1(&old, Some(seed_kubelet()));
        assert_eq!(nc.metadata.name.as_deref(), Some("default"));
        assert_eq!(nc.spec.ami_family, None);
        assert_eq!(nc.spec.ami_selector_terms.len(), 1);
        assert_eq!(
            nc.spec.ami_selector_terms[0].alias.as_deref(),
            Some("al2@latest")
        );
        assert_eq!(nc.ami_family(), AmiFamily::Al2);
        assert_eq!(
            nc.spec.subnet_selector_terms[0]
                .tags
                .get("karpenter.sh/discovery")
                .map(String::as_str),
            Some("avlos-stg")
        );
        let user_data = nc.spec.user_data.as_deref().unwrap();
        assert!(user_data.contains("ENABLE_PREFIX_DELEGATION=true"));
        assert!(user_data.contains("WARM_PREFIX_TARGET=1"));
        assert_eq!(nc.spec.kubelet.as_ref().and_then(|k| k.max_pods), Some(110));
        assert_eq!(nc.spec.role.as_deref(), Some("KarpenterNodeRole-avlos-stg"));
        assert_eq!(nc.spec.metadata_options, Some(default_metadata_options()));
        assert_eq!(validate_ec2_node_class(&nc), Ok(()));

        // The converted object is a valid v1 manifest.
        let json = serde_json::to_value(&nc).unwrap();
        assert_eq!(json["apiVersion"], "karpenter.k8s.aws/v1");
        assert_eq!(json["spec"]["amiSelectorTerms"][0]["alias"], "al2@latest");
        assert_eq!(json["spec"]["kubelet"]["maxPods"], 110);
        assert!(json["spec"].get("amiFamily").is_none());
    }

    #[test]
    fn explicit_ami_terms_keep_the_family() {
        let yaml = STAGING.replace(
            "  amiFamily: AL2\n",
            "  amiFamily: Bottlerocket\n  amiSelectorTerms:\n    - {name: 'bottlerocket-*', owner: amazon}\n",
        );
        let old: EC2NodeClass = serde_yaml::from_str(&yaml).unwrap();
        let nc = convert_to_v1(&old, None);
        assert_eq!(nc.spec.ami_family, Some(AmiFamily::Bottlerocket));
        assert_eq!(
            nc.spec.ami_selector_terms[0].name.as_deref(),
            Some("bottlerocket-*")
        );
        assert_eq!(
            nc.spec.ami_selector_terms[0].owner.as_deref(),
            Some("amazon")
        );
        assert_eq!(nc.spec.kubelet, None);
        assert_eq!(validate_ec2_node_class(&nc), Ok(()));

        let custom = yaml.replace("amiFamily: Bottlerocket", "amiFamily: Custom");
        let nc = convert_to_v1(&serde_yaml::from_str(&custom).unwrap(), None);
        assert_eq!(nc.spec.ami_family, Some(AmiFamily::Custom));
    }

    #[test]
    fn ubuntu_becomes_al2_with_compatibility_annotations() {
        let yaml = STAGING.replace("amiFamily: AL2", "amiFamily: Ubuntu");
        let nc = convert_to_v1(&serde_yaml::from_str(&yaml).unwrap(), None);
        assert_eq!(nc.spec.ami_family, Some(AmiFamily::Al2));
        let annotations = nc.metadata.annotations.unwrap();
        assert_eq!(
            annotations[UBUNTU_COMPATIBILITY_ANNOTATION_KEY],
            "amiFamily,blockDeviceMappings,incompatible"
        );
        let root = &nc.spec.block_device_mappings[0];
        assert!(root.root_volume);
        assert_eq!(root.device_name.as_deref(), Some("/dev/sda1"));
        assert_eq!(
            nc.spec.ami_selector_terms[0].id.as_deref(),
            Some("ami-placeholder")
        );
    }
}
