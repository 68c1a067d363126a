//! The EC2 reads a simulated kubelet needs: instances, instance types (cached), userData and
//! root volume size. Odd data (missing ids, unknown types) is reported, never panicked on.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    ArchitectureType, Filter, InstanceAttributeName, InstanceType as Ec2InstanceType,
};

use super::SimError;
use super::node::{InstanceInfo, InstanceTypeInfo};

/// States of instances that (may) have a kubelet; others (shutting-down, terminated) are gone.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

fn ec2_error<E, R>(operation: &'static str, e: SdkError<E, R>) -> SimError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    SimError::Ec2 {
        operation,
        code: e.code().map(str::to_string),
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// EC2 access with an instance-type cache.
pub(crate) struct Ec2 {
    client: aws_sdk_ec2::Client,
    types: Mutex<HashMap<String, InstanceTypeInfo>>,
}

impl Ec2 {
    pub fn new(client: aws_sdk_ec2::Client) -> Self {
        Ec2 {
            client,
            types: Mutex::new(HashMap::new()),
        }
    }

    /// Live instances matching `filters` (all must match). Entries without an id are skipped;
    /// the ids of instances that could not be read are returned in the second list.
    pub async fn list_instances(
        &self,
        filters: &[(String, Vec<String>)],
    ) -> Result<(Vec<InstanceInfo>, Vec<String>), SimError> {
        let mut req = self.client.describe_instances();
        for (name, values) in filters {
            req = req.filters(
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build(),
            );
        }
        req = req.filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        );
        let mut pages = req.into_paginator().send();
        let (mut out, mut unreadable) = (Vec::new(), Vec::new());
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ec2_error("DescribeInstances", e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                match instance_info(instance) {
                    Ok(info) => out.push(info),
                    Err(id) => unreadable.extend(id),
                }
            }
        }
        Ok((out, unreadable))
    }

    /// States of the given instances (missing ones are absent from the map).
    pub async fn instance_states(
        &self,
        instance_ids: &[String],
    ) -> Result<HashMap<String, String>, SimError> {
        let mut states = HashMap::new();
        for chunk in instance_ids.chunks(100) {
            let req = self.client.describe_instances().filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            );
            let mut pages = req.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| ec2_error("DescribeInstances", e))?;
                for i in page.reservations().iter().flat_map(|r| r.instances()) {
                    if let (Some(id), Some(state)) =
                        (i.instance_id(), i.state().and_then(|s| s.name()))
                    {
                        states.insert(id.to_string(), state.as_str().to_string());
                    }
                }
            }
        }
        Ok(states)
    }

    /// Facts of an instance type, from the cache or `DescribeInstanceTypes`.
    pub async fn instance_type(&self, name: &str) -> Result<InstanceTypeInfo, SimError> {
        if let Some(t) = self.cached_type(name) {
            return Ok(t);
        }
        let out = self
            .client
            .describe_instance_types()
            .instance_types(Ec2InstanceType::from(name))
            .send()
            .await
            .map_err(|e| ec2_error("DescribeInstanceTypes", e))?;
        let info = out
            .instance_types()
            .iter()
            .find(|t| t.instance_type().map(|t| t.as_str()) == Some(name))
            .ok_or_else(|| SimError::Ec2 {
                operation: "DescribeInstanceTypes",
                code: None,
                message: format!("instance type {name} not found"),
            })
            .and_then(|t| type_info(name, t))?;
        let mut cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(name.to_string(), info.clone());
        Ok(info)
    }

    fn cached_type(&self, name: &str) -> Option<InstanceTypeInfo> {
        let cache = self.types.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(name).cloned()
    }

    /// The instance's userData (base64): its own attribute, else its launch template version's.
    pub async fn user_data(&self, instance: &InstanceInfo) -> Result<Option<String>, SimError> {
        let out = self
            .client
            .describe_instance_attribute()
            .instance_id(&instance.instance_id)
            .attribute(InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| ec2_error("DescribeInstanceAttribute", e))?;
        if let Some(v) = out.user_data().and_then(|a| a.value())
            && !v.trim().is_empty()
        {
            return Ok(Some(v.to_string()));
        }
        // RunInstances with a launch template leaves the attribute empty in moto; the template
        // version is named by the `aws:ec2launchtemplate:*` tags.
        let Some((id, version)) = &instance.launch_template else {
            return Ok(None);
        };
        let out = self
            .client
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions(version)
            .send()
            .await
            .map_err(|e| ec2_error("DescribeLaunchTemplateVersions", e))?;
        Ok(out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .and_then(|d| d.user_data())
            .filter(|u| !u.trim().is_empty())
            .map(str::to_string))
    }

    /// Size of the root EBS volume in bytes, when it can be found.
    pub async fn root_volume_bytes(
        &self,
        instance: &InstanceInfo,
    ) -> Result<Option<i64>, SimError> {
        let Some(volume_id) = &instance.root_volume_id else {
            return Ok(None);
        };
        let out = self
            .client
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| ec2_error("DescribeVolumes", e))?;
        Ok(out
            .volumes()
            .first()
            .and_then(|v| v.size())
            .filter(|gib| *gib > 0)
            .map(|gib| i64::from(gib) << 30))
    }
}

/// An SDK instance as [`InstanceInfo`]; `Err(Some(id))` when it lacks what a node needs.
fn instance_info(i: &aws_sdk_ec2::types::Instance) -> Result<InstanceInfo, Option<String>> {
    let id = i.instance_id().filter(|id| !id.is_empty()).ok_or(None)?;
    let bad = || Some(id.to_string());
    let instance_type = i
        .instance_type()
        .map(|t| t.as_str().to_string())
        .ok_or_else(bad)?;
    let zone = i
        .placement()
        .and_then(|p| p.availability_zone())
        .filter(|z| !z.is_empty())
        .ok_or_else(bad)?;
    let tag = |key: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let launch_template = tag("aws:ec2launchtemplate:id").zip(tag("aws:ec2launchtemplate:version"));
    let root_volume_id = i
        .block_device_mappings()
        .iter()
        // Only a mapping on the AMI's root device counts: moto attaches an 8 GiB default volume
        // on /dev/sda1 whatever the AMI (and the launch template) say.
        .find(|m| m.device_name().is_some() && m.device_name() == i.root_device_name())
        .and_then(|m| m.ebs())
        .and_then(|e| e.volume_id())
        .map(str::to_string);
    Ok(InstanceInfo {
        instance_id: id.to_string(),
        instance_type,
        zone: zone.to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        private_ip: i.private_ip_address().map(str::to_string),
        private_dns_name: i.private_dns_name().map(str::to_string),
        launch_template,
        root_volume_id,
    })
}

fn type_info(
    name: &str,
    t: &aws_sdk_ec2::types::InstanceTypeInfo,
) -> Result<InstanceTypeInfo, SimError> {
    let missing = |what: &str| SimError::Ec2 {
        operation: "DescribeInstanceTypes",
        code: None,
        message: format!("instance type {name} has no {what}"),
    };
    let positive = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok());
    let vcpus = positive(t.v_cpu_info().and_then(|v| v.default_v_cpus()))
        .ok_or_else(|| missing("vCPU count"))?;
    let memory_mib = t
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .and_then(|m| u64::try_from(m).ok())
        .ok_or_else(|| missing("memory size"))?;
    let net = t.network_info();
    let max_enis = positive(net.and_then(|n| n.maximum_network_interfaces())).unwrap_or(1);
    let ipv4_per_eni = positive(net.and_then(|n| n.ipv4_addresses_per_interface())).unwrap_or(1);
    let archs = t
        .processor_info()
        .map(|p| p.supported_architectures())
        .unwrap_or_default();
    let arch = if archs.contains(&ArchitectureType::X8664) {
        "amd64"
    } else if archs.contains(&ArchitectureType::Arm64) {
        "arm64"
    } else {
        return Err(missing("amd64 or arm64 architecture"));
    };
    let nvidia_gpus = t
        .gpu_info()
        .map(|g| {
            g.gpus()
                .iter()
                .filter(|d| {
                    d.manufacturer()
                        .is_some_and(|m| m.eq_ignore_ascii_case("nvidia"))
                })
                .filter_map(|d| positive(d.count()))
                .sum()
        })
        .unwrap_or(0);
    Ok(InstanceTypeInfo {
        name: name.to_string(),
        vcpus,
        memory_mib,
        max_enis,
        ipv4_per_eni,
        arch: arch.to_string(),
        nvidia_gpus,
    })
}
