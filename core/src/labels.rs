//! Well-known label keys, annotations and taints, spelled as Karpenter and Kubernetes spell them.

/// Zone of a node (`topology.kubernetes.io/zone`).
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// Region of a node.
pub const REGION: &str = "topology.kubernetes.io/region";
/// Hostname of a node; every node is its own domain.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// Instance type of a node.
pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
/// CPU architecture (`amd64`, `arm64`).
pub const ARCH: &str = "kubernetes.io/arch";
/// Operating system (`linux`, `windows`).
pub const OS: &str = "kubernetes.io/os";
/// Windows build of a Windows node.
pub const WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";
/// `spot` or `on-demand` (or `reserved`).
pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
/// The NodePool that created a node.
pub const NODE_POOL: &str = "karpenter.sh/nodepool";
/// Set on a node once Karpenter has initialized it.
pub const NODE_INITIALIZED: &str = "karpenter.sh/initialized";
/// Set on a node once it has registered.
pub const NODE_REGISTERED: &str = "karpenter.sh/registered";

/// Deprecated label keys and the stable keys they stand for (Karpenter's `NormalizedLabels`).
pub const DEPRECATED: &[(&str, &str)] = &[
    ("failure-domain.beta.kubernetes.io/zone", ZONE),
    ("failure-domain.beta.kubernetes.io/region", REGION),
    ("beta.kubernetes.io/arch", ARCH),
    ("beta.kubernetes.io/os", OS),
    ("beta.kubernetes.io/instance-type", INSTANCE_TYPE),
];

/// The stable key a deprecated key stands for (`beta.kubernetes.io/arch` →
/// `kubernetes.io/arch`, see [`DEPRECATED`]); any other key is returned as is.
///
/// Karpenter applies this to every node selector requirement it builds (pod node selectors
/// and node affinity, NodePool requirements and labels, node labels), so
/// [`crate::requirements::Requirements::add`] does too. Topology keys of spread constraints
/// and pod (anti-)affinity are *not* normalised: Karpenter's topology groups use the key as
/// written, and so does this scheduler.
pub fn normalize(key: &str) -> &str {
    DEPRECATED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// Annotation that keeps a pod's node (or a node) from voluntary disruption.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// Taint key Karpenter puts on nodes it is disrupting.
pub const DISRUPTED_TAINT: &str = "karpenter.sh/disrupted";
/// Taint key on nodes that have not registered yet.
pub const UNREGISTERED_TAINT: &str = "karpenter.sh/unregistered";

/// Capacity type value for spot capacity.
pub const CAPACITY_SPOT: &str = "spot";
/// Capacity type value for on-demand capacity.
pub const CAPACITY_ON_DEMAND: &str = "on-demand";

/// AWS well-known labels Karpenter sets on nodes from the instance type.
pub mod aws {
    /// `c`, `m`, `r`, `t`, `g`, …
    pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
    /// `m5`, `c6g`, …
    pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
    /// `5` for m5.
    pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
    /// `large`, `2xlarge`, `metal`, …
    pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
    /// vCPU count.
    pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
    /// CPU manufacturer (`intel`, `amd`, `aws`).
    pub const INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
    /// Memory in MiB.
    pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
    /// `nitro` or `xen`.
    pub const INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
    /// Whether EBS optimization etc. applies; kept for compatibility.
    pub const INSTANCE_ENCRYPTION_IN_TRANSIT: &str =
        "karpenter.k8s.aws/instance-encryption-in-transit-supported";
    /// Network bandwidth in Mbps.
    pub const INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
    /// GPU name (`a10g`, `t4`).
    pub const INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
    /// GPU manufacturer (`nvidia`).
    pub const INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
    /// GPU count.
    pub const INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
    /// GPU memory in MiB.
    pub const INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
    /// Local NVMe storage in GB.
    pub const INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
    /// EBS bandwidth in Mbps.
    pub const INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
    /// Accelerator name (inferentia).
    pub const INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
    /// Accelerator manufacturer.
    pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
        "karpenter.k8s.aws/instance-accelerator-manufacturer";
    /// Accelerator count.
    pub const INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
    /// The EC2NodeClass a node was launched from.
    pub const EC2_NODE_CLASS: &str = "karpenter.k8s.aws/ec2nodeclass";
    /// Zone ID (`use1-az1`).
    pub const ZONE_ID: &str = "topology.k8s.aws/zone-id";
}

/// Label keys Karpenter treats as "well known": a pod may require them even when a NodePool does
/// not mention them, because instance types and offerings supply their values.
pub const WELL_KNOWN: &[&str] = &[
    ZONE,
    REGION,
    INSTANCE_TYPE,
    ARCH,
    OS,
    WINDOWS_BUILD,
    CAPACITY_TYPE,
    NODE_POOL,
    HOSTNAME,
    aws::INSTANCE_CATEGORY,
    aws::INSTANCE_FAMILY,
    aws::INSTANCE_GENERATION,
    aws::INSTANCE_SIZE,
    aws::INSTANCE_CPU,
    aws::INSTANCE_CPU_MANUFACTURER,
    aws::INSTANCE_MEMORY,
    aws::INSTANCE_HYPERVISOR,
    aws::INSTANCE_ENCRYPTION_IN_TRANSIT,
    aws::INSTANCE_NETWORK_BANDWIDTH,
    aws::INSTANCE_GPU_NAME,
    aws::INSTANCE_GPU_MANUFACTURER,
    aws::INSTANCE_GPU_COUNT,
    aws::INSTANCE_GPU_MEMORY,
    aws::INSTANCE_LOCAL_NVME,
    aws::INSTANCE_EBS_BANDWIDTH,
    aws::INSTANCE_ACCELERATOR_NAME,
    aws::INSTANCE_ACCELERATOR_MANUFACTURER,
    aws::INSTANCE_ACCELERATOR_COUNT,
    aws::EC2_NODE_CLASS,
    aws::ZONE_ID,
];

/// True for a well-known label key (see [`WELL_KNOWN`]).
pub fn is_well_known(key: &str) -> bool {
    WELL_KNOWN.contains(&key)
}
