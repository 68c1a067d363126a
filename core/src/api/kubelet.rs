//! Kubelet settings Karpenter lets users override.
//!
//! In `karpenter.sh/v1beta1` these live at `NodePool.spec.template.spec.kubelet`; in v1 they
//! moved to the provider's node class (`EC2NodeClass.spec.kubelet` on AWS), so the type lives
//! here on its own for both to share.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;

/// Resource names accepted as keys of `systemReserved` / `kubeReserved`.
pub const SUPPORTED_RESERVED_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "pid"];

/// Eviction signals accepted as keys of `evictionHard` / `evictionSoft` /
/// `evictionSoftGracePeriod`.
pub const SUPPORTED_EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];

/// A subset of the upstream `KubeletConfiguration`, named exactly as Karpenter names it.
///
/// Every field is optional; an empty map or list means "not set" (Go's `omitempty` makes nil
/// and empty indistinguishable on the wire, so nothing is lost).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    /// IP addresses of the cluster DNS servers.
    #[serde(rename = "clusterDNS", default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// Overrides the maximum number of pods per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_pods: Option<i32>,
    /// Pods allowed per CPU core; capped by `maxPods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pods_per_core: Option<i32>,
    /// Resources reserved for OS system daemons (`cpu`, `memory`, `ephemeral-storage`, `pid`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system_reserved: BTreeMap<String, Quantity>,
    /// Resources reserved for Kubernetes system daemons.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kube_reserved: BTreeMap<String, Quantity>,
    /// Hard eviction thresholds by signal, as quantities or percentages (`"5%"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft eviction thresholds by signal; each needs a matching grace period.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_soft: BTreeMap<String, String>,
    /// Grace period per soft eviction signal (Go durations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_soft_grace_period: BTreeMap<String, GoDuration>,
    /// Maximum pod grace period, in seconds, used for soft evictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_max_pod_grace_period: Option<i32>,
    /// Disk usage percent above which image GC always runs; must exceed the low threshold.
    #[serde(
        rename = "imageGCHighThresholdPercent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_high_threshold_percent: Option<i32>,
    /// Disk usage percent below which image GC never runs.
    #[serde(
        rename = "imageGCLowThresholdPercent",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 100))]
    pub image_gc_low_threshold_percent: Option<i32>,
    /// Enables CPU CFS quota enforcement for containers with CPU limits.
    #[serde(
        rename = "cpuCFSQuota",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_cfs_quota: Option<bool>,
}

impl KubeletConfiguration {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self == &KubeletConfiguration::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_kubelet_block_round_trips() {
        let yaml = r#"
clusterDNS: ["10.0.1.100"]
systemReserved: {cpu: 100m, memory: 100Mi, ephemeral-storage: 1Gi}
kubeReserved: {cpu: 200m, memory: 100Mi, ephemeral-storage: 3Gi}
evictionHard: {memory.available: 5%, nodefs.available: 10%, nodefs.inodesFree: 10%}
evictionSoft: {memory.available: 500Mi, nodefs.available: 15%, nodefs.inodesFree: 15%}
evictionSoftGracePeriod: {memory.available: 1m, nodefs.available: 1m30s, nodefs.inodesFree: 2m}
evictionMaxPodGracePeriod: 60
imageGCHighThresholdPercent: 85
imageGCLowThresholdPercent: 80
cpuCFSQuota: true
podsPerCore: 2
maxPods: 20
"#;
        let k: KubeletConfiguration = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(k.cluster_dns, vec!["10.0.1.100"]);
        assert_eq!(k.max_pods, Some(20));
        assert_eq!(k.pods_per_core, Some(2));
        assert_eq!(k.system_reserved["cpu"], Quantity("100m".into()));
        assert_eq!(k.eviction_hard["memory.available"], "5%");
        assert_eq!(
            k.eviction_soft_grace_period["nodefs.available"].as_str(),
            "1m30s"
        );
        assert_eq!(k.image_gc_high_threshold_percent, Some(85));
        assert_eq!(k.image_gc_low_threshold_percent, Some(80));
        assert_eq!(k.cpu_cfs_quota, Some(true));
        let json = serde_json::to_value(&k).unwrap();
        for key in [
            "clusterDNS",
            "imageGCHighThresholdPercent",
            "cpuCFSQuota",
            "maxPods",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        let back: KubeletConfiguration = serde_json::from_value(json).unwrap();
        assert_eq!(back, k);
        assert!(KubeletConfiguration::default().is_empty());
        assert!(!k.is_empty());
    }
}
