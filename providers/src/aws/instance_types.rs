//! The pure maths that turns EC2 instance-type facts ([`CatalogEntry`]) plus a node class's
//! kubelet settings, AMI family and disks into the scheduler's [`InstanceType`]: labels,
//! capacity, overhead (kube-reserved + system-reserved + eviction threshold) and offerings.
//!
//! The formulas follow AWS Karpenter's instance-type provider (`pkg/providers/instancetype/
//! types.go`) and AMI-family feature flags (`pkg/providers/amifamily`):
//!
//! - memory capacity = memory − 64 MiB on Graviton (CMA reservation) − ⌈7.5 %⌉ VM overhead
//!   (whole MiB, `vmMemoryOverheadPercent`);
//! - pods = `maxPods`, else the ENI limit `ENIs × (IPv4 per ENI − 1) + 2` (110 on Windows),
//!   capped by `podsPerCore × vCPUs`. Prefix delegation is not detected: as in Karpenter, set
//!   `maxPods` to use it;
//! - kube-reserved: CPU 6 % of the first core, 1 % of the second, 0.5 % of the next two and
//!   0.25 % of the rest; memory 11 MiB × pods + 255 MiB (AL2, AL2023 and Custom use the
//!   ENI-limited pod count here even when `maxPods` is set, since that is what their bootstrap
//!   reserves); ephemeral storage 1Gi; `kubeReserved` entries replace these;
//! - eviction threshold: memory 100Mi and 10 % of ephemeral storage, replaced by
//!   `memory.available` / `nodefs.available` from `evictionHard` and `evictionSoft` (the larger
//!   of the two; percentages are of capacity; soft is ignored on Bottlerocket).

use std::collections::BTreeSet;

use karpenter_core::api::kubelet::KubeletConfiguration;
use karpenter_core::instance_type::{InstanceType, Offering};
use karpenter_core::labels::{self, aws as aws_labels};
use karpenter_core::requirements::{Requirement, Requirements};
use karpenter_core::resources::{
    self, CPU, EPHEMERAL_STORAGE, MEMORY, NVIDIA_GPU, PODS, Resources,
};

use super::catalog::{Catalog, CatalogEntry};
use super::nodeclass::{AmiFamily, BlockDeviceMapping, EC2NodeClass, InstanceStorePolicy};

/// Karpenter's default `vmMemoryOverheadPercent`: the share of memory the hypervisor and
/// firmware keep, subtracted from the advertised memory.
pub const DEFAULT_VM_MEMORY_OVERHEAD_PERCENT: f64 = 0.075;

/// Placeholder spot discount until real spot prices are read: spot costs
/// `1 − DEFAULT_SPOT_DISCOUNT` (40 %) of the on-demand price. AWS's long-run average spot
/// savings are in this range, but the figure is not a price quote.
pub const DEFAULT_SPOT_DISCOUNT: f64 = 0.6;

/// Memory Graviton (arm64) instances reserve for the kernel's contiguous memory allocator.
pub const GRAVITON_CMA_RESERVED_MIB: u64 = 64;

/// Pods per node when the AMI family does not use the ENI limit (Windows) and `maxPods` is unset.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// Default `memory.available` hard-eviction threshold.
pub const DEFAULT_EVICTION_MEMORY_BYTES: i64 = 100 << 20;

/// Default `nodefs.available` hard-eviction threshold, percent of ephemeral storage.
pub const DEFAULT_EVICTION_NODEFS_PERCENT: f64 = 10.0;

/// Default kube-reserved ephemeral storage.
pub const DEFAULT_KUBE_RESERVED_EPHEMERAL_BYTES: i64 = 1 << 30;

const MIB: i64 = 1 << 20;

/// Everything besides the catalog entry that shapes an instance type.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceTypeSettings {
    /// Kubelet settings of the node class (v1) or NodePool (v1beta1).
    pub kubelet: Option<KubeletConfiguration>,
    /// The node class's AMI family.
    pub ami_family: AmiFamily,
    /// The node class's block device mappings (decide ephemeral storage).
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// `RAID0` makes the instance-store NVMe disks the ephemeral storage.
    pub instance_store_policy: Option<InstanceStorePolicy>,
    /// Karpenter's `vmMemoryOverheadPercent` setting.
    pub vm_memory_overhead_percent: f64,
    /// Karpenter's `reservedENIs` setting: ENIs kept out of the pod-density formula.
    pub reserved_enis: u32,
    /// See [`DEFAULT_SPOT_DISCOUNT`].
    pub spot_discount: f64,
    /// Zones the node class has subnets in; offerings elsewhere are unavailable. `None` means
    /// every zone of the catalog.
    pub zones: Option<BTreeSet<String>>,
}

impl Default for InstanceTypeSettings {
    /// AL2023 (Karpenter v1's recommended family), no kubelet overrides, default disks.
    fn default() -> Self {
        InstanceTypeSettings {
            kubelet: None,
            ami_family: AmiFamily::Al2023,
            block_device_mappings: Vec::new(),
            instance_store_policy: None,
            vm_memory_overhead_percent: DEFAULT_VM_MEMORY_OVERHEAD_PERCENT,
            reserved_enis: 0,
            spot_discount: DEFAULT_SPOT_DISCOUNT,
            zones: None,
        }
    }
}

impl InstanceTypeSettings {
    /// Settings from a v1 EC2NodeClass: its kubelet, AMI family, disks, instance-store policy
    /// and (once its status lists subnets) their zones.
    pub fn for_node_class(nc: &EC2NodeClass) -> InstanceTypeSettings {
        let zones = nc.subnet_zones();
        InstanceTypeSettings {
            kubelet: nc.spec.kubelet.clone(),
            ami_family: nc.ami_family(),
            block_device_mappings: nc.spec.block_device_mappings.clone(),
            instance_store_policy: nc.spec.instance_store_policy,
            zones: (!zones.is_empty()).then(|| zones.into_iter().collect()),
            ..InstanceTypeSettings::default()
        }
    }

    fn kubelet(&self) -> KubeletConfiguration {
        self.kubelet.clone().unwrap_or_default()
    }
}

/// The three parts of an instance type's overhead, as Karpenter reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Overhead {
    /// For the kubelet and container runtime.
    pub kube_reserved: Resources,
    /// For OS daemons (only what the kubelet config sets).
    pub system_reserved: Resources,
    /// Kept free so the kubelet evicts before the node runs out.
    pub eviction_threshold: Resources,
}

impl Overhead {
    /// The sum of the three parts.
    pub fn total(&self) -> Resources {
        self.kube_reserved + self.system_reserved + self.eviction_threshold
    }
}

/// All catalog entries as instance types, sorted by name.
pub fn catalog_instance_types(
    catalog: &Catalog,
    settings: &InstanceTypeSettings,
) -> Vec<InstanceType> {
    let mut out: Vec<InstanceType> = catalog
        .instance_types
        .iter()
        .map(|e| instance_type(e, settings))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One catalog entry as an instance type.
pub fn instance_type(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> InstanceType {
    InstanceType {
        name: entry.name.clone(),
        requirements: requirements(entry, settings.ami_family),
        capacity: capacity(entry, settings),
        overhead: overhead_parts(entry, settings).total(),
        offerings: offerings(entry, settings),
    }
}

/// Karpenter's `lowerKabobCase`: lower case, spaces to dashes.
fn lower_kebab(s: &str) -> String {
    s.to_lowercase().replace(' ', "-")
}

/// Splits an instance type name into category and generation the way Karpenter's
/// `(^[a-z]+)(\-[0-9]+tb)?([0-9]+).*\.` does: `m5.large` → (`m`, `5`), `c6gn.xlarge` → (`c`,
/// `6`), `u-6tb1.metal` → (`u`, `1`).
pub fn category_and_generation(name: &str) -> Option<(String, String)> {
    let letters = name.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        return None;
    }
    let mut rest = &name[letters..];
    if let Some(after_dash) = rest.strip_prefix('-') {
        let digits = after_dash.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after_dash[digits..].starts_with("tb") {
            rest = &after_dash[digits + 2..];
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].contains('.') {
        return None;
    }
    Some((name[..letters].to_string(), rest[..digits].to_string()))
}

/// Baseline network bandwidth in Mbps when EC2's `NetworkPerformance` states a fixed figure
/// (`25 Gigabit` → 25000). Burstable figures (`Up to 10 Gigabit`) and words (`Moderate`) give
/// `None`: their baseline is not in the catalog.
pub fn network_bandwidth_mbps(network_performance: &str) -> Option<i64> {
    let gbps = network_performance.strip_suffix(" Gigabit")?;
    let value: f64 = gbps.trim().parse().ok()?;
    (value > 0.0).then(|| (value * 1000.0).round() as i64)
}

/// The instance type's labels as single-value requirements, plus `DoesNotExist` for the
/// well-known keys it has no value for (GPU labels on a CPU type, …) so that pods requiring
/// them do not match, as in Karpenter. Zone and capacity type come from the offerings.
pub fn requirements(entry: &CatalogEntry, family: AmiFamily) -> Requirements {
    let mut r = Requirements::new();
    let mut set = |key: &str, value: Option<String>| {
        r.add(
            key,
            value.map_or_else(Requirement::does_not_exist, |v| Requirement::single(&v)),
        );
    };
    let arch = entry
        .architectures
        .iter()
        .find(|a| *a == "amd64" || *a == "arm64")
        .or(entry.architectures.first())
        .cloned()
        .unwrap_or_default();
    set(labels::INSTANCE_TYPE, Some(entry.name.clone()));
    // Windows AMIs exist for amd64 only: an arm64 type gets no OS and so matches nothing.
    let os = if !family.is_windows() {
        Some("linux".to_string())
    } else if arch == "amd64" {
        Some("windows".to_string())
    } else {
        None
    };
    set(labels::OS, os);
    set(labels::ARCH, Some(arch));
    set(
        labels::WINDOWS_BUILD,
        family.windows_build().map(str::to_string),
    );
    let (category, generation) = category_and_generation(&entry.name).unzip();
    set(aws_labels::INSTANCE_CATEGORY, category);
    set(aws_labels::INSTANCE_GENERATION, generation);
    let (family_name, size) = match entry.name.split('.').collect::<Vec<_>>()[..] {
        [f, s] => (Some(f.to_string()), Some(s.to_string())),
        _ => (None, None),
    };
    set(aws_labels::INSTANCE_FAMILY, family_name);
    set(aws_labels::INSTANCE_SIZE, size);
    set(aws_labels::INSTANCE_CPU, Some(entry.vcpu.to_string()));
    set(
        aws_labels::INSTANCE_CPU_MANUFACTURER,
        entry.processor_manufacturer.as_deref().map(lower_kebab),
    );
    set(
        aws_labels::INSTANCE_MEMORY,
        Some(entry.memory_mib.to_string()),
    );
    // Karpenter labels bare metal (no hypervisor) with the empty string.
    set(
        aws_labels::INSTANCE_HYPERVISOR,
        Some(entry.hypervisor.clone().unwrap_or_default()),
    );
    set(
        aws_labels::INSTANCE_LOCAL_NVME,
        (entry.local_nvme_gb > 0).then(|| entry.local_nvme_gb.to_string()),
    );
    set(
        aws_labels::INSTANCE_NETWORK_BANDWIDTH,
        entry
            .network_performance
            .as_deref()
            .and_then(network_bandwidth_mbps)
            .map(|m| m.to_string()),
    );
    let gpu = match entry.gpus.as_slice() {
        [gpu] => Some(gpu),
        _ => None,
    };
    set(
        aws_labels::INSTANCE_GPU_NAME,
        gpu.map(|g| lower_kebab(&g.name)),
    );
    set(
        aws_labels::INSTANCE_GPU_MANUFACTURER,
        gpu.map(|g| lower_kebab(&g.manufacturer)),
    );
    set(
        aws_labels::INSTANCE_GPU_COUNT,
        gpu.map(|g| g.count.to_string()),
    );
    set(
        aws_labels::INSTANCE_GPU_MEMORY,
        gpu.map(|g| g.memory_mib.to_string()),
    );
    r
}

/// Memory the OS sees, in bytes: advertised MiB, minus the Graviton CMA reservation, minus
/// `⌈MiB × overhead_percent⌉` MiB.
pub fn vm_memory_bytes(entry: &CatalogEntry, overhead_percent: f64) -> i64 {
    let mut mib = entry.memory_mib;
    if entry.architectures.first().map(String::as_str) == Some("arm64") {
        mib = mib.saturating_sub(GRAVITON_CMA_RESERVED_MIB);
    }
    let overhead_mib = (mib as f64 * overhead_percent).ceil() as u64;
    (mib.saturating_sub(overhead_mib) as i64) * MIB
}

fn quantity_bytes(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<i64> {
    resources::parse_quantity_scaled(&q.0, 0).ok()
}

/// Ephemeral storage in bytes: the instance-store NVMe total with `RAID0`; else the root
/// volume of the block device mappings, else (Custom) the last mapping, else the mapping on
/// the family's ephemeral device; else the family default (20Gi; 50Gi on Windows).
pub fn ephemeral_storage_bytes(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> i64 {
    if settings.instance_store_policy == Some(InstanceStorePolicy::Raid0) && entry.local_nvme_gb > 0
    {
        return entry.local_nvme_gb as i64 * 1_000_000_000;
    }
    let size = |b: &BlockDeviceMapping| {
        b.ebs
            .as_ref()?
            .volume_size
            .as_ref()
            .and_then(quantity_bytes)
    };
    let bdms = &settings.block_device_mappings;
    if !bdms.is_empty() {
        if let Some(bytes) = bdms.iter().find(|b| b.root_volume).and_then(size) {
            return bytes;
        }
        match settings.ami_family.ephemeral_block_device() {
            None => {
                return bdms
                    .last()
                    .and_then(size)
                    .unwrap_or(super::nodeclass::DEFAULT_EBS_VOLUME_BYTES);
            }
            Some(device) => {
                let on_device = bdms
                    .iter()
                    .find(|b| b.device_name.as_deref() == Some(device));
                if let Some(bytes) = on_device.and_then(size) {
                    return bytes;
                }
            }
        }
    }
    settings.ami_family.default_ephemeral_volume_bytes()
}

/// `ENIs × (IPv4 addresses per ENI − 1) + 2`, with `reserved_enis` taken out of the ENIs.
pub fn eni_limited_pods(entry: &CatalogEntry, reserved_enis: u32) -> i64 {
    let enis = entry.max_network_interfaces.saturating_sub(reserved_enis) as i64;
    if enis == 0 {
        return 0;
    }
    enis * (entry.ipv4_per_interface as i64 - 1) + 2
}

/// The node's pod capacity (see the module docs).
pub fn max_pods(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> i64 {
    let kubelet = settings.kubelet();
    let family = settings.ami_family;
    let mut count = match kubelet.max_pods {
        Some(n) => i64::from(n),
        None if family.eni_limited_pod_density() => eni_limited_pods(entry, settings.reserved_enis),
        None => DEFAULT_MAX_PODS,
    };
    if let Some(per_core) = kubelet.pods_per_core.filter(|n| *n > 0)
        && family.pods_per_core_enabled()
    {
        count = count.min(i64::from(per_core) * i64::from(entry.vcpu));
    }
    count
}

/// Raw capacity: CPU, memory after VM overhead, ephemeral storage, pods and accelerators.
pub fn capacity(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> Resources {
    let gpus = |maker: &str| -> i64 {
        entry
            .gpus
            .iter()
            .filter(|g| g.manufacturer == maker)
            .map(|g| i64::from(g.count))
            .sum()
    };
    let mut r = Resources::ZERO;
    r.0[CPU] = i64::from(entry.vcpu) * 1000;
    r.0[MEMORY] = vm_memory_bytes(entry, settings.vm_memory_overhead_percent);
    r.0[EPHEMERAL_STORAGE] = ephemeral_storage_bytes(entry, settings);
    r.0[PODS] = max_pods(entry, settings);
    r.0[NVIDIA_GPU] = gpus("NVIDIA");
    // The catalog has no EFA interface count: one when supported.
    for (name, amount) in [
        ("amd.com/gpu", gpus("AMD")),
        ("habana.ai/gaudi", gpus("Habana")),
        ("vpc.amazonaws.com/efa", i64::from(entry.efa_supported)),
    ] {
        if let Some(slot) = resources::slot(name) {
            r.0[slot] = amount;
        }
    }
    r
}

/// Kube-reserved CPU in millicores for a CPU capacity, by Karpenter's (and EKS's) tiers.
pub fn kube_reserved_cpu_millis(cpu_millis: i64) -> i64 {
    const TIERS: [(i64, i64, f64); 4] = [
        (0, 1000, 0.06),
        (1000, 2000, 0.01),
        (2000, 4000, 0.005),
        (4000, 1 << 31, 0.0025),
    ];
    TIERS
        .iter()
        .filter(|(start, _, _)| cpu_millis >= *start)
        .map(|&(start, end, pct)| ((cpu_millis.min(end) - start) as f64 * pct) as i64)
        .sum()
}

/// Reads a `cpu`/`memory`/`ephemeral-storage` map into a vector; other keys (`pid`) and
/// unparsable values (which validation rejects) are ignored.
fn reserved_map(
    map: &std::collections::BTreeMap<
        String,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >,
) -> [Option<i64>; 3] {
    let get = |k: &str| {
        map.get(k)
            .and_then(|q| resources::parse_for_resource(k, &q.0).ok())
    };
    [get("cpu"), get("memory"), get("ephemeral-storage")]
}

/// An eviction signal's threshold: a quantity, or a percentage of `capacity` (100 % disables).
fn eviction_signal(capacity: i64, value: &str) -> Option<i64> {
    match value.strip_suffix('%') {
        Some(pct) => {
            let mut p: f64 = pct.trim().parse().ok()?;
            if p == 100.0 {
                p = 0.0;
            }
            Some((capacity as f64 / 100.0 * p).ceil() as i64)
        }
        None => resources::parse_quantity_scaled(value, 0).ok(),
    }
}

/// Kube-reserved, system-reserved and eviction threshold for the entry.
pub fn overhead_parts(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> Overhead {
    let kubelet = settings.kubelet();
    let family = settings.ami_family;
    let cpu = i64::from(entry.vcpu) * 1000;
    let memory = vm_memory_bytes(entry, settings.vm_memory_overhead_percent);
    let storage = ephemeral_storage_bytes(entry, settings);
    let pods_for_memory = if family.eni_limited_memory_overhead() {
        eni_limited_pods(entry, settings.reserved_enis)
    } else {
        max_pods(entry, settings)
    };

    let mut kube = Resources::ZERO;
    kube.0[CPU] = kube_reserved_cpu_millis(cpu);
    kube.0[MEMORY] = (11 * pods_for_memory + 255) * MIB;
    kube.0[EPHEMERAL_STORAGE] = DEFAULT_KUBE_RESERVED_EPHEMERAL_BYTES;
    for (slot, value) in [CPU, MEMORY, EPHEMERAL_STORAGE]
        .into_iter()
        .zip(reserved_map(&kubelet.kube_reserved))
    {
        if let Some(v) = value {
            kube.0[slot] = v;
        }
    }

    let mut system = Resources::ZERO;
    for (slot, value) in [CPU, MEMORY, EPHEMERAL_STORAGE]
        .into_iter()
        .zip(reserved_map(&kubelet.system_reserved))
    {
        system.0[slot] = value.unwrap_or(0);
    }

    let mut eviction = Resources::ZERO;
    eviction.0[MEMORY] = DEFAULT_EVICTION_MEMORY_BYTES;
    eviction.0[EPHEMERAL_STORAGE] =
        (storage as f64 / 100.0 * DEFAULT_EVICTION_NODEFS_PERCENT).ceil() as i64;
    let mut signal_maps = vec![&kubelet.eviction_hard];
    if family.eviction_soft_enabled() {
        signal_maps.push(&kubelet.eviction_soft);
    }
    let mut overrides: [Option<i64>; 2] = [None, None];
    for map in signal_maps {
        let found = [
            map.get("memory.available")
                .and_then(|v| eviction_signal(memory, v)),
            map.get("nodefs.available")
                .and_then(|v| eviction_signal(storage, v)),
        ];
        for (o, f) in overrides.iter_mut().zip(found) {
            *o = match (*o, f) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    if let Some(m) = overrides[0] {
        eviction.0[MEMORY] = m;
    }
    if let Some(s) = overrides[1] {
        eviction.0[EPHEMERAL_STORAGE] = s;
    }

    Overhead {
        kube_reserved: kube,
        system_reserved: system,
        eviction_threshold: eviction,
    }
}

/// One on-demand offering per zone at the list price and, when the type supports spot, one
/// spot offering at the placeholder discount. Zones without a node-class subnet are
/// unavailable.
pub fn offerings(entry: &CatalogEntry, settings: &InstanceTypeSettings) -> Vec<Offering> {
    let mut out = Vec::with_capacity(entry.zones.len() * 2);
    for zone in &entry.zones {
        let available = settings.zones.as_ref().is_none_or(|z| z.contains(zone));
        out.push(Offering {
            zone: zone.clone(),
            capacity_type: labels::CAPACITY_ON_DEMAND.to_string(),
            price: entry.on_demand_price,
            available,
        });
        if entry.spot_supported {
            out.push(Offering {
                zone: zone.clone(),
                capacity_type: labels::CAPACITY_SPOT.to_string(),
                price: entry.on_demand_price * (1.0 - settings.spot_discount),
                available,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
