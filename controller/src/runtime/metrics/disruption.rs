//! Disruption metrics under Karpenter v1's names (`karpenter_voluntary_disruption_*`,
//! `karpenter_nodepools_allowed_disruptions`); `karpenter_nodeclaims_disrupted_total` lives
//! with the other NodeClaim counters in [`super::Metrics`].

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::v1beta1::{eligible_consolidation_type, method_of};
use super::{CounterVec, GaugeVec, HistogramVec, duration_histogram, labels};

/// The disruption controller's metrics.
pub struct DisruptionMetrics {
    eligible_nodes: GaugeVec<1>,
    decisions: CounterVec<3>,
    evaluation_duration: HistogramVec<2>,
    consolidation_timeouts: CounterVec<1>,
    queue_failures: CounterVec<3>,
    failed_validations: CounterVec<1>,
    allowed_disruptions: GaugeVec<2>,
    eligible_nodes_v1beta1: GaugeVec<2>,
    actions_performed_v1beta1: CounterVec<3>,
    nodes_disrupted_v1beta1: CounterVec<4>,
}

impl DisruptionMetrics {
    /// The metrics, registered in `r` (whose prefix is `karpenter`).
    pub(super) fn register(r: &mut Registry) -> DisruptionMetrics {
        let m = DisruptionMetrics {
            eligible_nodes: Family::default(),
            decisions: Family::default(),
            evaluation_duration: Family::new_with_constructor(duration_histogram),
            consolidation_timeouts: Family::default(),
            queue_failures: Family::default(),
            failed_validations: Family::default(),
            allowed_disruptions: Family::default(),
            eligible_nodes_v1beta1: Family::default(),
            actions_performed_v1beta1: Family::default(),
            nodes_disrupted_v1beta1: Family::default(),
        };
        // Karpenter pre-creates both consolidation types at 0.
        for t in ["single", "multi"] {
            drop(
                m.consolidation_timeouts
                    .get_or_create(&labels(["consolidation_type"], [t])),
            );
        }
        r.register(
            "voluntary_disruption_eligible_nodes",
            "Number of nodes eligible for disruption by Karpenter. Labeled by disruption reason.",
            m.eligible_nodes.clone(),
        );
        r.register(
            "voluntary_disruption_decisions",
            "Number of disruption decisions performed. Labeled by disruption decision, reason, and consolidation type.",
            m.decisions.clone(),
        );
        r.register(
            "voluntary_disruption_decision_evaluation_duration_seconds",
            "Duration of the disruption decision evaluation process in seconds. Labeled by method and consolidation type.",
            m.evaluation_duration.clone(),
        );
        r.register(
            "voluntary_disruption_consolidation_timeouts",
            "Number of times the Consolidation algorithm has reached a timeout. Labeled by consolidation type.",
            m.consolidation_timeouts.clone(),
        );
        r.register(
            "voluntary_disruption_queue_failures",
            "The number of times that an enqueued disruption decision failed. Labeled by disruption method.",
            m.queue_failures.clone(),
        );
        r.register(
            "voluntary_disruption_failed_validations",
            "Number of candidates that were selected for disruption but failed validation. Labeled by consolidation type.",
            m.failed_validations.clone(),
        );
        r.register(
            "nodepools_allowed_disruptions",
            "The number of nodes for a given NodePool that can be concurrently disrupting at a point in time. Labeled by NodePool. Note that allowed disruptions can change very rapidly, as new nodes may be created and others may be deleted at any point.",
            m.allowed_disruptions.clone(),
        );
        m
    }

    /// Karpenter 0.36's disruption families (`karpenter_disruption_*`, see [`super::v1beta1`]).
    pub(super) fn register_v1beta1(&self, r: &mut Registry) {
        r.register(
            "disruption_eligible_nodes",
            "Number of nodes eligible for disruption by Karpenter. Labeled by disruption method and consolidation type. (Karpenter 0.36 name.)",
            self.eligible_nodes_v1beta1.clone(),
        );
        r.register(
            "disruption_actions_performed",
            "Number of disruption actions performed. Labeled by disruption action, method, and consolidation type. (Karpenter 0.36 name.)",
            self.actions_performed_v1beta1.clone(),
        );
        r.register(
            "disruption_nodes_disrupted",
            "Total number of nodes disrupted. Labeled by NodePool, disruption action, method, and consolidation type. (Karpenter 0.36 name.)",
            self.nodes_disrupted_v1beta1.clone(),
        );
    }

    /// `karpenter_voluntary_disruption_eligible_nodes{reason}` = `count` (reason lowercase:
    /// `drifted`, `empty`, `underutilized`), and its 0.36 twin
    /// `karpenter_disruption_eligible_nodes{method,consolidation_type}`.
    pub fn set_eligible_nodes(&self, reason: &str, count: usize) {
        self.eligible_nodes
            .get_or_create(&labels(["reason"], [reason]))
            .set(count as f64);
        let l = labels(
            ["method", "consolidation_type"],
            [method_of(reason), eligible_consolidation_type(reason)],
        );
        self.eligible_nodes_v1beta1
            .get_or_create(&l)
            .set(count as f64);
    }

    /// `karpenter_voluntary_disruption_decisions_total{decision,reason,consolidation_type}` += 1,
    /// and its 0.36 twin `karpenter_disruption_actions_performed_total{action,method,consolidation_type}`.
    pub fn decision(&self, decision: &str, reason: &str, consolidation_type: &str) {
        let l = labels(
            ["decision", "reason", "consolidation_type"],
            [decision, reason, consolidation_type],
        );
        self.decisions.get_or_create(&l).inc();
        let l = labels(
            ["action", "method", "consolidation_type"],
            [decision, method_of(reason), consolidation_type],
        );
        self.actions_performed_v1beta1.get_or_create(&l).inc();
    }

    /// 0.36's `karpenter_disruption_nodes_disrupted_total{nodepool,action,method,consolidation_type}`
    /// += 1 for a node a voluntary disruption command deleted (v1 counts it in
    /// `karpenter_nodeclaims_disrupted_total`, whose labels differ).
    pub fn node_disrupted(
        &self,
        nodepool: &str,
        decision: &str,
        reason: &str,
        consolidation_type: &str,
    ) {
        let l = labels(
            ["nodepool", "action", "method", "consolidation_type"],
            [nodepool, decision, method_of(reason), consolidation_type],
        );
        self.nodes_disrupted_v1beta1.get_or_create(&l).inc();
    }

    /// `karpenter_voluntary_disruption_decision_evaluation_duration_seconds{reason,consolidation_type}`.
    pub fn observe_evaluation(&self, reason: &str, consolidation_type: &str, took: Duration) {
        let l = labels(
            ["reason", "consolidation_type"],
            [reason, consolidation_type],
        );
        self.evaluation_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// `karpenter_voluntary_disruption_queue_failures_total{decision,reason,consolidation_type}`
    /// += `count` (the replacements that never initialized).
    pub fn queue_failures(
        &self,
        decision: &str,
        reason: &str,
        consolidation_type: &str,
        count: u64,
    ) {
        let l = labels(
            ["decision", "reason", "consolidation_type"],
            [decision, reason, consolidation_type],
        );
        self.queue_failures.get_or_create(&l).inc_by(count);
    }

    /// `karpenter_voluntary_disruption_failed_validations_total{consolidation_type}` += 1.
    pub fn failed_validation(&self, consolidation_type: &str) {
        self.failed_validations
            .get_or_create(&labels(["consolidation_type"], [consolidation_type]))
            .inc();
    }

    /// `karpenter_nodepools_allowed_disruptions{nodepool,reason}` = `allowed` (reason as in
    /// the API: `Empty`, `Drifted`, `Underutilized`).
    pub fn set_allowed_disruptions(&self, nodepool: &str, reason: &str, allowed: u32) {
        self.allowed_disruptions
            .get_or_create(&labels(["nodepool", "reason"], [nodepool, reason]))
            .set(f64::from(allowed));
    }
}
