//! Conversions between the plain structs of [`super`] and the SDK's types: requests out,
//! responses back. Odd answers never panic: an item without its identifier is skipped, other
//! missing fields take the default named on each function.

use std::collections::BTreeMap;

use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ec2::types as sdk;

use crate::aws::catalog::Gpu;
use crate::aws::ec2api::{
    CapacityType, Instance, InstanceTypeInfo, LaunchTemplateBlockDevice,
    LaunchTemplateMetadataOptions, LaunchTemplateRequest, LaunchTemplateSummary, SpotPrice,
    TerminatedInstance,
};
use crate::aws::resolve::{Filter, Image, SecurityGroup, Subnet};

/// EC2 filters for our filters, values as given (EC2 ORs the values of one filter).
pub(super) fn to_sdk_filters(filters: &[Filter]) -> Vec<sdk::Filter> {
    filters
        .iter()
        .map(|f| {
            sdk::Filter::builder()
                .name(&f.name)
                .set_values(Some(f.values.clone()))
                .build()
        })
        .collect()
}

/// Tags by key; a tag without a key is dropped, one without a value maps to `""`.
pub(super) fn tag_map(tags: &[sdk::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            let key = t.key()?;
            Some((key.to_owned(), t.value().unwrap_or_default().to_owned()))
        })
        .collect()
}

fn owned(s: Option<&str>) -> String {
    s.unwrap_or_default().to_owned()
}

/// A subnet; skipped without `SubnetId`. Missing zone fields become `""`, a missing or negative
/// `AvailableIpAddressCount` becomes 0.
pub(super) fn subnet(s: &sdk::Subnet) -> Option<Subnet> {
    Some(Subnet {
        id: s.subnet_id()?.to_owned(),
        zone: owned(s.availability_zone()),
        zone_id: owned(s.availability_zone_id()),
        available_ips: s
            .available_ip_address_count()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        tags: tag_map(s.tags()),
    })
}

/// A security group; skipped without `GroupId`. A missing name becomes `""`.
pub(super) fn security_group(g: &sdk::SecurityGroup) -> Option<SecurityGroup> {
    Some(SecurityGroup {
        id: g.group_id()?.to_owned(),
        name: owned(g.group_name()),
        tags: tag_map(g.tags()),
    })
}

/// True when `DeprecationTime` (RFC 3339, offsets allowed) is at or before `now_unix`. An absent
/// or unparsable time means "not deprecated", as in Karpenter: EC2 returned the image, so it can
/// be launched.
pub(super) fn is_deprecated(deprecation_time: Option<&str>, now_unix: i64) -> bool {
    deprecation_time
        .and_then(|t| DateTime::from_str(t, DateTimeFormat::DateTimeWithOffset).ok())
        .is_some_and(|t| t.secs() <= now_unix)
}

/// An image; skipped without `ImageId`. Missing strings become `""`.
pub(super) fn image(i: &sdk::Image, now_unix: i64) -> Option<Image> {
    Some(Image {
        id: i.image_id()?.to_owned(),
        name: owned(i.name()),
        architecture: owned(i.architecture().map(|a| a.as_str())),
        creation_date: owned(i.creation_date()),
        owner: owned(i.owner_id()),
        owner_alias: i.image_owner_alias().map(str::to_owned),
        deprecated: is_deprecated(i.deprecation_time(), now_unix),
        tags: tag_map(i.tags()),
    })
}

fn to_u32(n: Option<i32>) -> Option<u32> {
    n.and_then(|n| u32::try_from(n).ok())
}

/// Kubernetes architecture names for EC2's: `x86_64` → `amd64`, `arm64` stays, the rest
/// (`i386`, `x86_64_mac`, `arm64_mac`) cannot run a Kubernetes node image and are dropped.
fn k8s_architectures(archs: &[sdk::ArchitectureType]) -> Vec<String> {
    archs
        .iter()
        .filter_map(|a| match a.as_str() {
            "x86_64" => Some("amd64".to_owned()),
            "arm64" => Some("arm64".to_owned()),
            _ => None,
        })
        .collect()
}

/// One `GpuInfo.Gpus` entry; skipped without a positive `Count`. `MemoryInfo.SizeInMiB` is per
/// GPU (0 when absent); missing name or manufacturer become `""`.
fn gpu(g: &sdk::GpuDeviceInfo) -> Option<Gpu> {
    let count = to_u32(g.count()).filter(|&c| c > 0)?;
    Some(Gpu {
        name: owned(g.name()),
        manufacturer: owned(g.manufacturer()),
        count,
        memory_mib: g
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
    })
}

/// An instance type. Skipped without a name, a positive `DefaultVCpus` or a positive
/// `SizeInMiB`: such a type cannot be scheduled. Missing booleans are `false`, missing network
/// limits 0, missing instance storage 0 GB.
pub(super) fn instance_type(t: &sdk::InstanceTypeInfo) -> Option<InstanceTypeInfo> {
    let name = t.instance_type()?.as_str().to_owned();
    let vcpu = to_u32(t.v_cpu_info().and_then(|v| v.default_v_cpus())).filter(|&v| v > 0)?;
    let memory_mib = t
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .and_then(|m| u64::try_from(m).ok())
        .filter(|&m| m > 0)?;
    let processor = t.processor_info();
    let network = t.network_info();
    Some(InstanceTypeInfo {
        name,
        vcpu,
        memory_mib,
        architectures: k8s_architectures(
            processor
                .map(|p| p.supported_architectures())
                .unwrap_or(&[]),
        ),
        processor_manufacturer: processor.and_then(|p| p.manufacturer()).map(str::to_owned),
        hypervisor: t.hypervisor().map(|h| h.as_str().to_owned()),
        bare_metal: t.bare_metal().unwrap_or(false),
        burstable: t.burstable_performance_supported().unwrap_or(false),
        current_generation: t.current_generation().unwrap_or(false),
        max_network_interfaces: to_u32(network.and_then(|n| n.maximum_network_interfaces()))
            .unwrap_or(0),
        ipv4_per_interface: to_u32(network.and_then(|n| n.ipv4_addresses_per_interface()))
            .unwrap_or(0),
        efa_supported: network.and_then(|n| n.efa_supported()).unwrap_or(false),
        network_performance: network
            .and_then(|n| n.network_performance())
            .map(str::to_owned),
        gpus: t
            .gpu_info()
            .map(|g| g.gpus().iter().filter_map(gpu).collect())
            .unwrap_or_default(),
        local_nvme_gb: t
            .instance_storage_info()
            .and_then(|s| s.total_size_in_gb())
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(0),
        spot_supported: t
            .supported_usage_classes()
            .contains(&sdk::UsageClassType::Spot),
    })
}

/// `(instance type, zone)`; skipped when either is missing.
pub(super) fn offering(o: &sdk::InstanceTypeOffering) -> Option<(String, String)> {
    Some((
        o.instance_type()?.as_str().to_owned(),
        o.location()?.to_owned(),
    ))
}

/// A spot price; skipped when type, zone, timestamp or a finite non-negative price is missing
/// (EC2 sends the price as a decimal string).
pub(super) fn spot_price(p: &sdk::SpotPrice) -> Option<SpotPrice> {
    let price: f64 = p.spot_price()?.trim().parse().ok()?;
    if !price.is_finite() || price < 0.0 {
        return None;
    }
    Some(SpotPrice {
        instance_type: p.instance_type()?.as_str().to_owned(),
        zone: p.availability_zone()?.to_owned(),
        price,
        timestamp_unix: p.timestamp()?.secs(),
    })
}

/// An instance; skipped without `InstanceId`. Kept otherwise (an instance that exists must be
/// seen, e.g. by garbage collection): missing type, zone, image or state become `""`, a
/// missing launch time 0. Any lifecycle but `spot` (none, `scheduled`, `capacity-block`) is
/// on-demand.
pub(super) fn instance(i: &sdk::Instance) -> Option<Instance> {
    Some(Instance {
        id: i.instance_id()?.to_owned(),
        instance_type: owned(i.instance_type().map(|t| t.as_str())),
        zone: owned(i.placement().and_then(|p| p.availability_zone())),
        capacity_type: match i.instance_lifecycle() {
            Some(sdk::InstanceLifecycleType::Spot) => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        },
        image_id: owned(i.image_id()),
        state: owned(i.state().and_then(|s| s.name()).map(|n| n.as_str())),
        launch_time_unix: i.launch_time().map(DateTime::secs).unwrap_or(0),
        subnet_id: i.subnet_id().map(str::to_owned),
        security_group_ids: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        // EC2 sends "" for instances without a private name yet; that is no name.
        private_dns_name: i
            .private_dns_name()
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        tags: tag_map(i.tags()),
    })
}

/// A state change of `TerminateInstances`; skipped without `InstanceId`, a missing state is
/// `""`.
pub(super) fn terminated(c: &sdk::InstanceStateChange) -> Option<TerminatedInstance> {
    Some(TerminatedInstance {
        id: c.instance_id()?.to_owned(),
        current_state: owned(c.current_state().and_then(|s| s.name()).map(|n| n.as_str())),
    })
}

/// A launch template; skipped without id or name.
pub(super) fn launch_template(t: &sdk::LaunchTemplate) -> Option<LaunchTemplateSummary> {
    Some(LaunchTemplateSummary {
        id: t.launch_template_id()?.to_owned(),
        name: t.launch_template_name()?.to_owned(),
        tags: tag_map(t.tags()),
    })
}

fn block_device(d: &LaunchTemplateBlockDevice) -> sdk::LaunchTemplateBlockDeviceMappingRequest {
    let ebs = sdk::LaunchTemplateEbsBlockDeviceRequest::builder()
        .set_volume_size(d.volume_size_gib)
        .set_volume_type(d.volume_type.as_deref().map(sdk::VolumeType::from))
        .set_iops(d.iops)
        .set_throughput(d.throughput)
        .set_encrypted(d.encrypted)
        .set_kms_key_id(d.kms_key_id.clone())
        .set_delete_on_termination(d.delete_on_termination)
        .set_snapshot_id(d.snapshot_id.clone())
        .build();
    sdk::LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name(&d.device_name)
        .ebs(ebs)
        .build()
}

fn metadata_options(
    m: &LaunchTemplateMetadataOptions,
) -> sdk::LaunchTemplateInstanceMetadataOptionsRequest {
    sdk::LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .set_http_endpoint(
            m.http_endpoint
                .as_deref()
                .map(sdk::LaunchTemplateInstanceMetadataEndpointState::from),
        )
        .set_http_protocol_ipv6(
            m.http_protocol_ipv6
                .as_deref()
                .map(sdk::LaunchTemplateInstanceMetadataProtocolIpv6::from),
        )
        .set_http_put_response_hop_limit(m.http_put_response_hop_limit)
        .set_http_tokens(
            m.http_tokens
                .as_deref()
                .map(sdk::LaunchTemplateHttpTokensState::from),
        )
        .build()
}

/// `LaunchTemplateData` of a `CreateLaunchTemplate` request. With `associate_public_ip` set,
/// the groups go into `NetworkInterfaces[0]` instead of `SecurityGroupIds`: EC2 refuses a
/// launch that names security groups both ways.
pub(super) fn launch_template_data(r: &LaunchTemplateRequest) -> sdk::RequestLaunchTemplateData {
    let mut b = sdk::RequestLaunchTemplateData::builder()
        .image_id(&r.image_id)
        .user_data(&r.user_data_base64)
        .monitoring(
            sdk::LaunchTemplatesMonitoringRequest::builder()
                .enabled(r.detailed_monitoring)
                .build(),
        )
        .set_metadata_options(r.metadata_options.as_ref().map(metadata_options));
    if let Some(profile) = &r.instance_profile {
        b = b.iam_instance_profile(
            sdk::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(profile)
                .build(),
        );
    }
    for d in &r.block_devices {
        b = b.block_device_mappings(block_device(d));
    }
    match r.associate_public_ip {
        Some(public) => {
            b = b.network_interfaces(
                sdk::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .associate_public_ip_address(public)
                    .device_index(0)
                    .set_groups(Some(r.security_group_ids.clone()))
                    .build(),
            );
        }
        None => b = b.set_security_group_ids(Some(r.security_group_ids.clone())),
    }
    b.build()
}

/// The `launch-template` tag specification of a `CreateLaunchTemplate` request; `None` without
/// tags (EC2 rejects a tag specification with no tags).
pub(super) fn launch_template_tags(
    tags: &BTreeMap<String, String>,
) -> Option<sdk::TagSpecification> {
    if tags.is_empty() {
        return None;
    }
    let mut b = sdk::TagSpecification::builder().resource_type(sdk::ResourceType::LaunchTemplate);
    for (k, v) in tags {
        b = b.tags(sdk::Tag::builder().key(k).value(v).build());
    }
    Some(b.build())
}
