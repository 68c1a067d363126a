//! The pure part of a simulated kubelet: instance + instance type + userData settings → the
//! `Node` it registers, and the status it reports.
//!
//! Capacity and allocatable follow the EKS AL2 bootstrap (and Karpenter's model of it, see
//! `providers/src/aws/instance_types.rs`), so what the simulator reports matches what the
//! controller predicted:
//!
//! - cpu = vCPUs; memory = advertised MiB − 64 MiB on arm64 − ⌈MiB × vm overhead⌉ (7.5 % by
//!   default: a real kubelet sees less memory than EC2 advertises); pods = `maxPods` from
//!   userData, else 110 when AL2's `--use-max-pods false`, else the ENI limit
//!   `ENIs × (IPv4 per ENI − 1) + 2`; ephemeral-storage = root volume size (20Gi if unknown);
//!   `nvidia.com/gpu` = NVIDIA GPU count.
//! - kube-reserved: cpu 6 % of the first core + 1 % of the second + 0.5 % of the 3rd–4th +
//!   0.25 % of the rest; memory 11 MiB × pods + 255 MiB where pods is the ENI limit (what
//!   bootstrap.sh / nodeadm reserve even when `maxPods` is set; Bottlerocket uses its max-pods);
//!   ephemeral-storage 1Gi. Eviction threshold: memory 100Mi, nodefs 10 %. No system-reserved.
//! - allocatable = capacity − kube-reserved − eviction threshold.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::DaemonEndpoint;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
    Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::userdata::{AmiFamily, KubeletSettings};

/// Annotation marking Nodes this simulator registered (value: the instance id).
pub const INSTANCE_ANNOTATION: &str = "node-sim.e2e.karpenter-rs/instance-id";
/// The taint a kubelet registers with until it reports Ready; the node lifecycle controller
/// lifts it once the Ready condition is True.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// What the simulator needs to know about an EC2 instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `i-…`
    pub instance_id: String,
    /// e.g. `m5.large`.
    pub instance_type: String,
    /// Availability zone, e.g. `us-east-1a`.
    pub zone: String,
    /// EC2 state name (`pending`, `running`, …).
    pub state: String,
    /// Primary private IPv4 address.
    pub private_ip: Option<String>,
    /// Private DNS name, e.g. `ip-10-0-1-23.ec2.internal`.
    pub private_dns_name: Option<String>,
    /// Launch template id and version from the `aws:ec2launchtemplate:*` tags.
    pub launch_template: Option<(String, String)>,
    /// EBS volume id of the root device.
    pub root_volume_id: Option<String>,
}

impl InstanceInfo {
    /// The Node name: the private DNS name as on EKS, else the instance id.
    pub fn node_name(&self) -> String {
        match self.private_dns_name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => self.instance_id.clone(),
        }
    }

    /// `aws:///<zone>/<instance-id>`.
    pub fn provider_id(&self) -> String {
        format!("aws:///{}/{}", self.zone, self.instance_id)
    }
}

/// The facts of an instance type that shape a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    /// e.g. `m5.large`.
    pub name: String,
    /// Default vCPUs.
    pub vcpus: u32,
    /// Advertised memory.
    pub memory_mib: u64,
    /// Maximum network interfaces.
    pub max_enis: u32,
    /// IPv4 addresses per interface.
    pub ipv4_per_eni: u32,
    /// `amd64` or `arm64` (Kubernetes naming).
    pub arch: String,
    /// NVIDIA GPUs.
    pub nvidia_gpus: u32,
}

impl InstanceTypeInfo {
    /// The ENI-limited pod count `ENIs × (IPv4 per ENI − 1) + 2`.
    pub fn eni_max_pods(&self) -> u32 {
        self.max_enis * self.ipv4_per_eni.saturating_sub(1) + 2
    }
}

/// Simulator-wide settings that shape every node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeOptions {
    /// Region label; derived from the zone when `None`.
    pub region: Option<String>,
    /// `nodeInfo.kubeletVersion` (and kube-proxy's).
    pub kubelet_version: String,
    /// Share of advertised memory the OS does not see.
    pub vm_memory_overhead_percent: f64,
    /// Ephemeral storage when the root volume's size is unknown.
    pub default_ephemeral_storage_bytes: i64,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            region: None,
            kubelet_version: "v1.20.2".into(),
            vm_memory_overhead_percent: 0.075,
            default_ephemeral_storage_bytes: 20 * GIB,
        }
    }
}

/// Capacity and allocatable in plain numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_millis: i64,
    /// Bytes.
    pub memory_bytes: i64,
    /// Ephemeral storage bytes.
    pub ephemeral_bytes: i64,
    /// Pod slots.
    pub pods: i64,
    /// `nvidia.com/gpu`.
    pub gpus: i64,
}

impl Resources {
    /// As a Kubernetes resource list (memory and storage in Ki like a kubelet reports).
    pub fn to_quantities(self) -> BTreeMap<String, Quantity> {
        let mut m = BTreeMap::new();
        let cpu = if self.cpu_millis % 1000 == 0 {
            (self.cpu_millis / 1000).to_string()
        } else {
            format!("{}m", self.cpu_millis)
        };
        m.insert("cpu".into(), Quantity(cpu));
        m.insert(
            "memory".into(),
            Quantity(format!("{}Ki", self.memory_bytes / 1024)),
        );
        m.insert(
            "ephemeral-storage".into(),
            Quantity(format!("{}Ki", self.ephemeral_bytes / 1024)),
        );
        m.insert("pods".into(), Quantity(self.pods.to_string()));
        if self.gpus > 0 {
            m.insert("nvidia.com/gpu".into(), Quantity(self.gpus.to_string()));
        }
        m
    }
}

/// The kubelet's `maxPods` for this node (see the module docs).
pub fn max_pods(ty: &InstanceTypeInfo, kubelet: &KubeletSettings) -> u32 {
    match (kubelet.max_pods, kubelet.use_max_pods) {
        (Some(n), _) => n,
        (None, Some(false)) => 110,
        (None, _) => ty.eni_max_pods(),
    }
}

/// Capacity and allocatable (see the module docs for the formulas).
pub fn resources(
    ty: &InstanceTypeInfo,
    kubelet: &KubeletSettings,
    ephemeral_bytes: i64,
    opts: &NodeOptions,
) -> (Resources, Resources) {
    let mut mib = ty.memory_mib as i64;
    if ty.arch == "arm64" {
        mib = (mib - 64).max(0);
    }
    mib -= (mib as f64 * opts.vm_memory_overhead_percent).ceil() as i64;
    let pods = max_pods(ty, kubelet);
    let capacity = Resources {
        cpu_millis: i64::from(ty.vcpus) * 1000,
        memory_bytes: mib.max(0) * MIB,
        ephemeral_bytes,
        pods: i64::from(pods),
        gpus: i64::from(ty.nvidia_gpus),
    };
    let reserved_pods = match kubelet.family {
        AmiFamily::Bottlerocket => pods,
        _ => ty.eni_max_pods(),
    };
    let reserved_memory = (11 * i64::from(reserved_pods) + 255) * MIB + 100 * MIB;
    let reserved_ephemeral = GIB + ephemeral_bytes / 10;
    let allocatable = Resources {
        cpu_millis: (capacity.cpu_millis - kube_reserved_cpu_millis(ty.vcpus)).max(0),
        memory_bytes: (capacity.memory_bytes - reserved_memory).max(0),
        ephemeral_bytes: (ephemeral_bytes - reserved_ephemeral).max(0),
        ..capacity
    };
    (capacity, allocatable)
}

/// EKS's CPU kube-reserved: 6 % of the first core, 1 % of the second, 0.5 % of the 3rd and
/// 4th, 0.25 % of every further core (in millicores).
pub fn kube_reserved_cpu_millis(vcpus: u32) -> i64 {
    let cores = i64::from(vcpus);
    [(0, 1, 600), (1, 2, 100), (2, 4, 50), (4, i64::MAX, 25)]
        .into_iter()
        .map(|(from, to, basis_points)| (cores.min(to) - from).max(0) * basis_points / 10)
        .sum()
}

/// The region of a zone: `us-east-1a` → `us-east-1`.
pub fn region_of_zone(zone: &str) -> String {
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
        .to_string()
}

/// The three states a node's Ready condition can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyStatus {
    /// The kubelet posts Ready.
    True,
    /// The kubelet posts NotReady.
    False,
    /// Nobody posts (what the node lifecycle controller writes for a silent kubelet).
    Unknown,
}

impl ReadyStatus {
    fn as_str(self) -> &'static str {
        match self {
            ReadyStatus::True => "True",
            ReadyStatus::False => "False",
            ReadyStatus::Unknown => "Unknown",
        }
    }
}

/// The standard node conditions: Ready as given, the pressure conditions False (Unknown when
/// Ready is Unknown, as the node lifecycle controller would set them).
pub fn conditions(
    ready: ReadyStatus,
    heartbeat: Timestamp,
    since: Timestamp,
) -> Vec<NodeCondition> {
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(heartbeat)),
        last_transition_time: Some(Time(since)),
    };
    let unknown = ready == ReadyStatus::Unknown;
    let pressure = |type_: &str, ok_reason: &str, ok_message: &str| {
        if unknown {
            cond(
                type_,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        } else {
            cond(type_, "False", ok_reason, ok_message)
        }
    };
    let (reason, message) = match ready {
        ReadyStatus::True => ("KubeletReady", "kubelet is posting ready status"),
        ReadyStatus::False => (
            "KubeletNotReady",
            "container runtime status check may not have completed yet",
        ),
        ReadyStatus::Unknown => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    vec![
        pressure(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        pressure(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        pressure(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        cond("Ready", ready.as_str(), reason, message),
    ]
}

/// Everything [`build_node`] needs beyond the instance and its type.
#[derive(Clone, Debug)]
pub struct NodeInputs<'a> {
    /// Settings read from userData.
    pub kubelet: &'a KubeletSettings,
    /// Root volume size, when known.
    pub ephemeral_bytes: Option<i64>,
    /// The pod CIDR the simulator gives this node.
    pub pod_cidr: Option<String>,
    /// Registration time.
    pub now: Timestamp,
}

/// The Node a kubelet on this instance registers: labels (well-known + userData), taints
/// (userData + not-ready), providerID, pod CIDR, and a NotReady status with capacity,
/// allocatable, addresses and nodeInfo.
pub fn build_node(
    instance: &InstanceInfo,
    ty: &InstanceTypeInfo,
    inputs: &NodeInputs<'_>,
    opts: &NodeOptions,
) -> Node {
    let name = instance.node_name();
    let region = opts
        .region
        .clone()
        .unwrap_or_else(|| region_of_zone(&instance.zone));
    // User labels first so the well-known ones a kubelet sets itself win.
    let mut labels = inputs.kubelet.labels.clone();
    for (k, v) in [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", ty.arch.as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", ty.arch.as_str()),
        ("node.kubernetes.io/instance-type", ty.name.as_str()),
        ("beta.kubernetes.io/instance-type", ty.name.as_str()),
        ("topology.kubernetes.io/zone", instance.zone.as_str()),
        ("topology.kubernetes.io/region", region.as_str()),
        (
            "failure-domain.beta.kubernetes.io/zone",
            instance.zone.as_str(),
        ),
        ("failure-domain.beta.kubernetes.io/region", region.as_str()),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    let mut taints: Vec<Taint> = inputs.kubelet.taints.clone();
    if !taints
        .iter()
        .any(|t| t.key == NOT_READY_TAINT && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: NOT_READY_TAINT.into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    let ephemeral = inputs
        .ephemeral_bytes
        .unwrap_or(opts.default_ephemeral_storage_bytes);
    let (capacity, allocatable) = resources(ty, inputs.kubelet, ephemeral, opts);
    let mut addresses = Vec::new();
    if let Some(ip) = instance.private_ip.as_deref().filter(|ip| !ip.is_empty()) {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.into(),
        });
    }
    for type_ in ["Hostname", "InternalDNS"] {
        addresses.push(NodeAddress {
            type_: type_.into(),
            address: name.clone(),
        });
    }
    let annotations = BTreeMap::from([
        (
            INSTANCE_ANNOTATION.to_string(),
            instance.instance_id.clone(),
        ),
        ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
        (
            "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
            "true".to_string(),
        ),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(instance.provider_id()),
            pod_cidr: inputs.pod_cidr.clone(),
            pod_cidrs: inputs.pod_cidr.clone().map(|c| vec![c]),
            taints: Some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity.to_quantities()),
            allocatable: Some(allocatable.to_quantities()),
            conditions: Some(conditions(ReadyStatus::False, inputs.now, inputs.now)),
            addresses: Some(addresses),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(node_info(instance, ty, inputs.kubelet.family, opts)),
            ..NodeStatus::default()
        }),
    }
}

fn node_info(
    instance: &InstanceInfo,
    ty: &InstanceTypeInfo,
    family: AmiFamily,
    opts: &NodeOptions,
) -> NodeSystemInfo {
    // Stable made-up ids derived from the instance id, like EC2's `ec2…` system UUIDs.
    let hex: String = instance
        .instance_id
        .trim_start_matches("i-")
        .chars()
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    NodeSystemInfo {
        architecture: ty.arch.clone(),
        boot_id: hex.clone(),
        container_runtime_version: "containerd://1.4.6".into(),
        kernel_version: "5.4.0-1.amzn2.x86_64".into(),
        kube_proxy_version: opts.kubelet_version.clone(),
        kubelet_version: opts.kubelet_version.clone(),
        machine_id: hex.clone(),
        operating_system: "linux".into(),
        os_image: family.os_image().into(),
        system_uuid: format!("ec2{}", &hex[3..]),
        ..NodeSystemInfo::default()
    }
}

#[cfg(test)]
mod tests;
