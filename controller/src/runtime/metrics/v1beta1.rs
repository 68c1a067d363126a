//! Karpenter 0.36's names for the metrics v1 renamed, so the 0.36 Grafana dashboards (and
//! alerts) keep working after a swap. They are always exported beside the v1 names: every one
//! is per NodePool, disruption reason or message type, never per node or pod, so they add a
//! few dozen series at most. The v1 writer of each metric writes its 0.36 twin in the same
//! call ([`super::Metrics`], [`super::DisruptionMetrics`], [`super::InterruptionMetrics`]);
//! gauges whose only change is the name (`karpenter_nodepool_usage`/`_limit`) are the same
//! family registered twice, and the summaries are written under both names.
//!
//! | 0.36 | v1 |
//! |---|---|
//! | `karpenter_nodes_created`, `karpenter_nodes_terminated` | `…_total` |
//! | `karpenter_nodeclaims_created`, `karpenter_nodeclaims_terminated` | `…_total` |
//! | `karpenter_interruption_received_messages`, `…_deleted_messages` | `…_total` |
//! | `karpenter_nodepool_usage`, `karpenter_nodepool_limit` | `karpenter_nodepools_*` |
//! | `karpenter_nodes_termination_time_seconds`, `karpenter_pods_startup_time_seconds` | `…_duration_seconds` |
//! | `karpenter_disruption_eligible_nodes{method,consolidation_type}` | `karpenter_voluntary_disruption_eligible_nodes{reason}` |
//! | `karpenter_disruption_actions_performed_total{action,method,consolidation_type}` | `karpenter_voluntary_disruption_decisions_total{decision,reason,consolidation_type}` |
//! | `karpenter_disruption_nodes_disrupted_total{nodepool,action,method,consolidation_type}` | `karpenter_nodeclaims_disrupted_total{reason,nodepool,capacity_type}` |

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A counter exported the way client_golang wrote 0.36's counters: the sample is named as the
/// family, without `_total` (`karpenter_nodes_created{nodepool="default"} 3`).
#[derive(Clone, Debug, Default)]
pub struct BareCounter(Counter);

impl BareCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }
}

impl EncodeMetric for BareCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // A gauge sample is the bare name; the family's type line still says counter.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

impl TypedMetric for BareCounter {
    const TYPE: MetricType = MetricType::Counter;
}

/// A family of [`BareCounter`]s.
pub type BareCounterVec<const N: usize> = Family<super::Labels<N>, BareCounter>;

/// 0.36's `method` and `consolidation_type` for a v1 disruption `reason` (and the v1
/// consolidation type, when the caller has one): consolidation of empty or underutilized
/// nodes is the `consolidation` method; drift and expiry were methods of their own.
pub fn method_of(reason: &str) -> &'static str {
    match reason {
        "empty" | "underutilized" => "consolidation",
        "drifted" => "drift",
        "expired" => "expiration",
        _ => "",
    }
}

/// 0.36's `consolidation_type` for a node eligible for `reason` (v1 does not split eligible
/// nodes by type; empty nodes are the `empty` type, the rest are not typed until a decision).
pub fn eligible_consolidation_type(reason: &str) -> &'static str {
    if reason == "empty" { "empty" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_reason_has_a_036_method() {
        assert_eq!(method_of("empty"), "consolidation");
        assert_eq!(method_of("underutilized"), "consolidation");
        assert_eq!(method_of("drifted"), "drift");
        assert_eq!(method_of("expired"), "expiration");
        assert_eq!(eligible_consolidation_type("empty"), "empty");
        assert_eq!(eligible_consolidation_type("drifted"), "");
    }
}
