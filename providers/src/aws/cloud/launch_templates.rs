//! Launch templates: what goes into one (image, userData, security groups, profile, disks,
//! metadata options, monitoring, public IP, tags), its content-hash name, and creating the
//! ones EC2 does not have yet.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use karpenter_core::labels;
use karpenter_core::resources::parse_quantity_scaled;

use super::AwsCloudProvider;
use super::iam::stable_hash;
use super::node_class::Resolution;
use crate::aws::ec2api::{
    CapacityType, Ec2Error, LaunchTemplateBlockDevice, LaunchTemplateMetadataOptions,
    LaunchTemplateRequest,
};
use crate::aws::fleet::NODE_CLASS_TAG;
use crate::aws::nodeclass::{AmiFamily, EC2NodeClass, GROUP};
use crate::aws::userdata::{UserDataInput, encode_base64, render};
use crate::provider::{NodeClaimRequest, ProviderError};

/// Tag naming the cluster on launch templates (used to find and clean them up).
pub const CLUSTER_TAG: &str = "karpenter.k8s.aws/cluster";

/// Codes `CreateFleet` uses when a launch template it was given does not exist.
pub(crate) const TEMPLATE_NOT_FOUND_CODES: &[&str] = &[
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.NotFound",
];

fn gp3(device: &str, gib: i32) -> LaunchTemplateBlockDevice {
    LaunchTemplateBlockDevice {
        device_name: device.to_owned(),
        volume_size_gib: Some(gib),
        volume_type: Some("gp3".to_owned()),
        iops: None,
        throughput: None,
        encrypted: Some(true),
        kms_key_id: None,
        delete_on_termination: None,
        snapshot_id: None,
    }
}

/// The disks Karpenter gives a family when the node class lists none: AL2/AL2023 a 20Gi gp3
/// encrypted root on `/dev/xvda`; Bottlerocket a 4Gi OS volume on `/dev/xvda` and a 20Gi data
/// volume on `/dev/xvdb`; Windows 50Gi on `/dev/sda1`; Custom none (the AMI's own mappings).
pub fn default_block_devices(family: AmiFamily) -> Vec<LaunchTemplateBlockDevice> {
    match family {
        AmiFamily::Al2 | AmiFamily::Al2023 => vec![gp3("/dev/xvda", 20)],
        AmiFamily::Bottlerocket => vec![gp3("/dev/xvda", 4), gp3("/dev/xvdb", 20)],
        AmiFamily::Windows2019 | AmiFamily::Windows2022 => vec![gp3("/dev/sda1", 50)],
        AmiFamily::Custom => Vec::new(),
    }
}

fn field_error(node_class: &str, field: String, message: String) -> ProviderError {
    ProviderError::Create {
        reason: format!("ec2nodeclass {node_class:?}: {field}: {message}"),
    }
}

/// Size in GiB (rounded up) of a volume size quantity.
fn gib(q: &Quantity) -> Option<i32> {
    let bytes = parse_quantity_scaled(&q.0, 0).ok()?;
    let gib = (bytes + (1 << 30) - 1) >> 30;
    i32::try_from(gib).ok()
}

/// The node class's block device mappings (or the family defaults).
pub(crate) fn block_devices(
    nc: &EC2NodeClass,
) -> Result<Vec<LaunchTemplateBlockDevice>, ProviderError> {
    let name = nc.metadata.name.as_deref().unwrap_or_default();
    if nc.spec.block_device_mappings.is_empty() {
        return Ok(default_block_devices(nc.ami_family()));
    }
    let mut out = Vec::new();
    for (i, m) in nc.spec.block_device_mappings.iter().enumerate() {
        let field = |f: &str| format!("spec.blockDeviceMappings[{i}].{f}");
        let Some(device) = m.device_name.clone() else {
            return Err(field_error(name, field("deviceName"), "required".into()));
        };
        let ebs = m.ebs.clone().unwrap_or_default();
        let int = |v: Option<i64>, f: &str| -> Result<Option<i32>, ProviderError> {
            v.map(|v| {
                i32::try_from(v)
                    .map_err(|_| field_error(name, field(f), format!("{v} is too large")))
            })
            .transpose()
        };
        let volume_size_gib = match &ebs.volume_size {
            None => None,
            Some(q) => Some(gib(q).ok_or_else(|| {
                field_error(
                    name,
                    field("ebs.volumeSize"),
                    format!("invalid size {:?}", q.0),
                )
            })?),
        };
        out.push(LaunchTemplateBlockDevice {
            device_name: device,
            volume_size_gib,
            volume_type: ebs.volume_type,
            iops: int(ebs.iops, "ebs.iops")?,
            throughput: int(ebs.throughput, "ebs.throughput")?,
            encrypted: ebs.encrypted,
            kms_key_id: ebs.kms_key_id,
            delete_on_termination: ebs.delete_on_termination,
            snapshot_id: ebs.snapshot_id,
        });
    }
    Ok(out)
}

/// The node class's metadata options with Karpenter's defaults for unset fields: endpoint
/// enabled, IPv6 endpoint disabled, hop limit 1, tokens required.
pub fn metadata_options(nc: &EC2NodeClass) -> LaunchTemplateMetadataOptions {
    let m = nc.spec.metadata_options.clone().unwrap_or_default();
    LaunchTemplateMetadataOptions {
        http_endpoint: Some(m.http_endpoint.unwrap_or_else(|| "enabled".into())),
        http_protocol_ipv6: Some(m.http_protocol_ipv6.unwrap_or_else(|| "disabled".into())),
        http_put_response_hop_limit: Some(
            m.http_put_response_hop_limit
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(1),
        ),
        http_tokens: Some(m.http_tokens.unwrap_or_else(|| "required".into())),
    }
}

/// `karpenter.k8s.aws/<hash>`, the hash covering everything in the template but its name, so
/// equal contents share a template and any change makes a new one.
pub fn launch_template_name(req: &LaunchTemplateRequest) -> String {
    let mut parts: Vec<String> = vec![
        req.image_id.clone(),
        req.user_data_base64.clone(),
        req.security_group_ids.join(","),
        req.instance_profile.clone().unwrap_or_default(),
        format!("{:?}", req.metadata_options),
        req.detailed_monitoring.to_string(),
        format!("{:?}", req.associate_public_ip),
    ];
    for b in &req.block_devices {
        parts.push(format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            b.device_name,
            b.volume_size_gib,
            b.volume_type,
            b.iops,
            b.throughput,
            b.encrypted,
            b.kms_key_id,
            b.delete_on_termination,
            b.snapshot_id
        ));
    }
    for (k, v) in &req.tags {
        parts.push(format!("{k}={v}"));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!("{GROUP}/{}", stable_hash(&refs))
}

/// What one launch template is for.
pub(crate) struct TemplateSpec<'a> {
    pub nc: &'a EC2NodeClass,
    pub resolution: &'a Resolution,
    pub claim: &'a NodeClaimRequest,
    pub capacity_type: CapacityType,
    pub image_id: &'a str,
    pub max_pods: i64,
}

impl AwsCloudProvider {
    /// The full `CreateLaunchTemplate` request (named by its content hash).
    pub(crate) fn template_request(
        &self,
        t: &TemplateSpec<'_>,
    ) -> Result<LaunchTemplateRequest, ProviderError> {
        let nc = t.nc;
        let name = nc.metadata.name.clone().unwrap_or_default();
        let cluster = &self.config.cluster;
        let mut kubelet = nc.spec.kubelet.clone().unwrap_or_default();
        kubelet.max_pods = Some(i32::try_from(t.max_pods).unwrap_or(i32::MAX));
        let mut node_labels = t.claim.labels.clone();
        node_labels.insert(
            labels::CAPACITY_TYPE.to_owned(),
            t.capacity_type.as_str().to_owned(),
        );
        let input = UserDataInput {
            cluster_name: cluster.name.clone(),
            cluster_endpoint: cluster.endpoint.clone(),
            ca_bundle: cluster.ca_bundle.clone(),
            cluster_cidr: cluster.cluster_cidr.clone(),
            ami_family: nc.ami_family(),
            kubelet,
            labels: node_labels,
            taints: t.claim.taints.clone(),
            startup_taints: t.claim.startup_taints.clone(),
            custom_user_data: nc.spec.user_data.clone(),
        };
        let user_data = render(&input).map_err(|e| ProviderError::Create {
            reason: format!("ec2nodeclass {name:?}: rendering userData: {e}"),
        })?;
        let mut tags: BTreeMap<String, String> = nc.spec.tags.clone();
        tags.extend([
            (CLUSTER_TAG.to_owned(), cluster.name.clone()),
            (labels::NODE_POOL.to_owned(), t.claim.node_pool.clone()),
            (NODE_CLASS_TAG.to_owned(), name.clone()),
        ]);
        let mut req = LaunchTemplateRequest {
            name: String::new(),
            image_id: t.image_id.to_owned(),
            user_data_base64: encode_base64(user_data.as_bytes()),
            security_group_ids: t
                .resolution
                .security_groups
                .iter()
                .map(|g| g.id.clone())
                .collect(),
            instance_profile: t.resolution.instance_profile.clone(),
            block_devices: block_devices(nc)?,
            metadata_options: Some(metadata_options(nc)),
            detailed_monitoring: nc.spec.detailed_monitoring.unwrap_or(false),
            associate_public_ip: nc.spec.associate_public_ip_address,
            tags,
        };
        req.name = launch_template_name(&req);
        Ok(req)
    }

    /// Creates the templates not known to exist; `AlreadyExists` counts as created.
    pub(crate) async fn ensure_launch_templates(
        &self,
        requests: &[LaunchTemplateRequest],
    ) -> Result<(), ProviderError> {
        for req in requests {
            if self.state().launch_templates.contains(&req.name) {
                continue;
            }
            match self.ec2.create_launch_template(req).await {
                Ok(_) => {}
                Err(Ec2Error::Api { code, .. }) if code.contains("AlreadyExists") => {}
                Err(Ec2Error::Throttled { operation, .. }) => {
                    return Err(ProviderError::Throttled { operation });
                }
                Err(e @ Ec2Error::Transport { .. }) => {
                    return Err(ProviderError::Other(format!(
                        "creating launch template {}: {e}",
                        req.name
                    )));
                }
                Err(e) => {
                    return Err(ProviderError::Create {
                        reason: format!("creating launch template {}: {e}", req.name),
                    });
                }
            }
            self.state().launch_templates.insert(req.name.clone());
        }
        Ok(())
    }

    /// Forgets that these templates exist (EC2 said they do not).
    pub(crate) fn forget_launch_templates<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        for n in names {
            state.launch_templates.remove(n);
        }
    }
}
