//! The schema of the e2e bed's state files, `cluster.json` and `aws.json`.
//!
//! One source file for both sides: the `e2e` crate reads these files and the `xtask` crate
//! (which does not depend on `e2e`, to keep its build small) writes them, including this file
//! with `#[path]`. Only serde here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The local control plane (`cluster.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    /// `local` (etcd + kube-apiserver/-controller-manager/-scheduler processes) or `kind`.
    pub kind: String,
    /// API server URL, e.g. `https://127.0.0.1:41234`.
    pub server: String,
    /// Admin kubeconfig for the cluster.
    pub kubeconfig: PathBuf,
    /// Kubernetes version of the control plane, e.g. `v1.20.2`.
    pub kubernetes_version: String,
    /// PIDs the xtask started (and is the only one allowed to kill).
    #[serde(default)]
    pub pids: Vec<u32>,
}

/// One seeded subnet of the fake account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SubnetInfo {
    /// `subnet-…`
    pub id: String,
    /// Availability zone, e.g. `us-east-1a`.
    pub zone: String,
    /// CIDR block.
    pub cidr: String,
}

/// The fake AWS endpoint and the account seeded in it (`aws.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AwsInfo {
    /// moto's own URL (no faults), e.g. `http://127.0.0.1:40001`.
    pub endpoint: String,
    /// Region of the seeded account (`us-east-1`).
    pub region: String,
    /// The `karpenter.sh/discovery` tag value the subnets and security groups carry.
    pub cluster_name: String,
    /// The seeded VPC.
    pub vpc_id: String,
    /// Private subnets tagged for discovery, one or more per zone.
    pub subnets: Vec<SubnetInfo>,
    /// Security groups tagged for discovery.
    pub security_group_ids: Vec<String>,
    /// SQS interruption queue name and URL.
    pub interruption_queue_name: String,
    /// SQS interruption queue URL.
    pub interruption_queue_url: String,
    /// PID of the moto launcher the xtask started.
    #[serde(default)]
    pub pid: Option<u32>,
}
