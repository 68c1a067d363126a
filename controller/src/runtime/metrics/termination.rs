//! Termination and runtime-health metrics, under Karpenter v1's names where Karpenter has them.

use std::time::{Duration, Instant};

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::summary::SummaryVec;
use super::{CounterVec, HistogramVec, duration_histogram, labels};

/// The termination controller's metrics and the controller's own health counters.
pub struct TerminationMetrics {
    nodes_drained: CounterVec<1>,
    nodes_termination_duration: SummaryVec<1>,
    nodes_lifetime: HistogramVec<1>,
    nodeclaims_termination_duration: HistogramVec<1>,
    instance_termination_duration: HistogramVec<1>,
    eviction_requests: CounterVec<1>,
    watch_errors: CounterVec<1>,
}

impl TerminationMetrics {
    /// The metrics, registered in `r` (whose prefix is `karpenter`); the termination summary
    /// is written by [`TerminationMetrics::encode_summaries`].
    pub(super) fn register(r: &mut Registry) -> TerminationMetrics {
        let m = TerminationMetrics {
            nodes_drained: Family::default(),
            nodes_termination_duration: SummaryVec::new(["nodepool"]),
            nodes_lifetime: Family::new_with_constructor(lifetime_histogram),
            nodeclaims_termination_duration: Family::new_with_constructor(duration_histogram),
            instance_termination_duration: Family::new_with_constructor(duration_histogram),
            eviction_requests: Family::default(),
            watch_errors: Family::default(),
        };
        r.register(
            "nodes_drained",
            "The total number of nodes drained by Karpenter",
            m.nodes_drained.clone(),
        );
        r.register(
            "nodes_lifetime_duration_seconds",
            "The lifetime duration of the nodes since creation.",
            m.nodes_lifetime.clone(),
        );
        r.register(
            "nodeclaims_termination_duration_seconds",
            "Duration of NodeClaim termination in seconds.",
            m.nodeclaims_termination_duration.clone(),
        );
        r.register(
            "nodeclaims_instance_termination_duration_seconds",
            "Duration of CloudProvider Instance termination in seconds.",
            m.instance_termination_duration.clone(),
        );
        r.register(
            "nodes_eviction_requests",
            "The total number of eviction requests made by Karpenter",
            m.eviction_requests.clone(),
        );
        r.register(
            "cluster_state_watch_errors",
            "Watch errors per kind of the shared cluster model (karpenter-rs).",
            m.watch_errors.clone(),
        );
        m
    }

    /// Writes the summary `karpenter_nodes_termination_duration_seconds{nodepool}` and its
    /// 0.36 name `karpenter_nodes_termination_time_seconds`.
    pub(super) fn encode_summaries(&self, now: Instant, out: &mut String) {
        for name in [
            "karpenter_nodes_termination_duration_seconds",
            "karpenter_nodes_termination_time_seconds",
        ] {
            self.nodes_termination_duration.encode(
                name,
                "The time taken between a node's deletion request and the removal of its finalizer",
                now,
                out,
            );
        }
    }

    /// `karpenter_nodes_drained_total{nodepool}` += 1.
    pub fn node_drained(&self, nodepool: &str) {
        self.nodes_drained
            .get_or_create(&labels(["nodepool"], [nodepool]))
            .inc();
    }

    /// A node's termination finished: its duration (deletion → finalizer removed) and the
    /// node's lifetime.
    pub fn node_termination_finished(&self, nodepool: &str, took: Duration, lifetime: Duration) {
        self.nodes_termination_duration
            .observe([nodepool], took.as_secs_f64(), Instant::now());
        let l = labels(["nodepool"], [nodepool]);
        self.nodes_lifetime
            .get_or_create(&l)
            .observe(lifetime.as_secs_f64());
    }

    /// A NodeClaim's termination finished (deletion → finalizer removed).
    pub fn nodeclaim_termination_finished(&self, nodepool: &str, took: Duration) {
        self.nodeclaims_termination_duration
            .get_or_create(&labels(["nodepool"], [nodepool]))
            .observe(took.as_secs_f64());
    }

    /// The cloud took `took` from the first terminate call to reporting the instance gone.
    pub fn instance_termination_finished(&self, nodepool: &str, took: Duration) {
        self.instance_termination_duration
            .get_or_create(&labels(["nodepool"], [nodepool]))
            .observe(took.as_secs_f64());
    }

    /// `karpenter_nodes_eviction_requests_total{code}` += 1 (the HTTP status, or `error`).
    pub fn eviction_request(&self, code: &str) {
        self.eviction_requests
            .get_or_create(&labels(["code"], [code]))
            .inc();
    }

    /// `karpenter_cluster_state_watch_errors_total{kind}` += 1.
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors
            .get_or_create(&labels(["kind"], [kind]))
            .inc();
    }
}

/// Lifetimes run from minutes to months.
fn lifetime_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new([
        60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 604800.0,
        1209600.0, 2592000.0, 7776000.0,
    ])
}
