//! Prometheus metrics under Karpenter v1's names and label names
//! (<https://karpenter.sh/v1.0/reference/metrics/>), so dashboards and alerts written for
//! Karpenter work unchanged.
//!
//! [`Metrics`] owns the registry and one typed handle per metric; callers go through its methods
//! (`nodeclaim_created(nodepool, reason)`, …), which fix the label names, so a label cannot be
//! misspelled or forgotten. [`Metrics::encode`] renders the Prometheus text exposition (format
//! 0.0.4, as Karpenter serves it; [`exposition`]) that
//! [`crate::runtime::http_server::serve_metrics`] serves, with the summaries ([`summary`]) and
//! Karpenter 0.36's names beside v1's ([`v1beta1`]).
//!
//! Where the brief of this module and Karpenter v1.0 differ, Karpenter wins: v1.0 has no
//! `karpenter_nodeclaims_{launched,registered,initialized}_total` (replaced by status-condition
//! metrics) and names the scheduler metrics `karpenter_scheduler_*` (formerly
//! `karpenter_provisioner_scheduling_*`).

mod cloudprovider;
mod disruption;
pub mod exposition;
mod interruption;
mod reconcile;
pub mod summary;
mod termination;
pub mod v1beta1;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use cloudprovider::{MeteredCloudProvider, error_label};
pub use disruption::DisruptionMetrics;
pub use interruption::InterruptionMetrics;
pub use reconcile::{ReconcileMetrics, ReconcileResult};
pub use termination::TerminationMetrics;

use summary::SummaryVec;
use v1beta1::BareCounterVec;

/// Content type of [`Metrics::encode`]'s output: the Prometheus text format 0.0.4, which
/// Karpenter serves and every Prometheus scrapes.
pub const CONTENT_TYPE: &str = exposition::TEXT_CONTENT_TYPE;

/// Karpenter v1's `reason` values for `karpenter_nodeclaims_created_total` and friends.
pub mod reason {
    /// A NodeClaim created for pending pods.
    pub const PROVISIONED: &str = "provisioned";
    /// A NodeClaim past its `expireAfter`.
    pub const EXPIRED: &str = "expired";
    /// A NodeClaim replaced for an unhealthy node (node repair).
    pub const UNHEALTHY: &str = "unhealthy";
    /// Disruption: a drifted NodeClaim.
    pub const DRIFTED: &str = "drifted";
    /// Disruption: an empty NodeClaim.
    pub const EMPTY: &str = "empty";
    /// Disruption: an underutilized NodeClaim (consolidation).
    pub const UNDERUTILIZED: &str = "underutilized";
}

/// A label set with fixed names: the array length pins how many labels a metric has.
type Labels<const N: usize> = [(&'static str, String); N];
type CounterVec<const N: usize> = Family<Labels<N>, Counter>;
type GaugeVec<const N: usize> = Family<Labels<N>, Gauge<f64, AtomicU64>>;
type HistogramVec<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Pairs label names with values.
fn labels<const N: usize>(names: [&'static str; N], values: [&str; N]) -> Labels<N> {
    let mut i = 0;
    names.map(|name| {
        let value = values[i].to_string();
        i += 1;
        (name, value)
    })
}

/// Karpenter's duration buckets (controller-runtime's, plus long ones for singleton
/// controllers), in seconds.
const DURATION_BUCKETS: [f64; 45] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0, 120.0, 150.0, 300.0, 450.0, 600.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Labels of `karpenter_pods_state`: one series per pod, value 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Owner reference (`ReplicaSet/web-abc`), empty when unowned.
    pub owner: String,
    /// Node the pod is bound to, empty while pending.
    pub node: String,
    /// NodePool of that node.
    pub nodepool: String,
    /// Zone of that node.
    pub zone: String,
    /// Architecture of that node.
    pub arch: String,
    /// Capacity type of that node (`spot`, `on-demand`).
    pub capacity_type: String,
    /// Instance type of that node.
    pub instance_type: String,
    /// Pod phase (`Pending`, `Running`, …).
    pub phase: String,
}

impl PodState {
    fn labels(&self) -> Labels<10> {
        labels(
            [
                "name",
                "namespace",
                "owner",
                "node",
                "nodepool",
                "zone",
                "arch",
                "capacity_type",
                "instance_type",
                "phase",
            ],
            [
                &self.name,
                &self.namespace,
                &self.owner,
                &self.node,
                &self.nodepool,
                &self.zone,
                &self.arch,
                &self.capacity_type,
                &self.instance_type,
                &self.phase,
            ],
        )
    }
}

/// The per-node gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeGauge {
    /// `karpenter_nodes_allocatable`.
    Allocatable,
    /// `karpenter_nodes_total_pod_requests`.
    PodRequests,
    /// `karpenter_nodes_total_daemon_requests`.
    DaemonRequests,
}

/// The node-identifying labels of `karpenter_nodes_*` gauges (Karpenter adds the node's
/// well-known labels, snake_cased, to `node_name` and `phase`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeLabels {
    /// Node name.
    pub node_name: String,
    /// Node phase (usually empty on current Kubernetes).
    pub phase: String,
    /// `karpenter.sh/nodepool`.
    pub nodepool: String,
    /// `topology.kubernetes.io/zone`.
    pub zone: String,
    /// `kubernetes.io/arch`.
    pub arch: String,
    /// `karpenter.sh/capacity-type`.
    pub capacity_type: String,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: String,
}

impl NodeLabels {
    fn with_resource(&self, resource_type: &str) -> Labels<8> {
        labels(
            [
                "node_name",
                "phase",
                "nodepool",
                "zone",
                "arch",
                "capacity_type",
                "instance_type",
                "resource_type",
            ],
            [
                &self.node_name,
                &self.phase,
                &self.nodepool,
                &self.zone,
                &self.arch,
                &self.capacity_type,
                &self.instance_type,
                resource_type,
            ],
        )
    }
}

/// The controller's metrics: a registry and typed handles, shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    nodeclaims_created: CounterVec<2>,
    nodeclaims_terminated: CounterVec<1>,
    nodeclaims_disrupted: CounterVec<3>,
    nodes_created: CounterVec<1>,
    nodes_terminated: CounterVec<1>,
    nodes_allocatable: GaugeVec<8>,
    nodes_pod_requests: GaugeVec<8>,
    nodes_daemon_requests: GaugeVec<8>,
    nodepools_limit: GaugeVec<2>,
    nodepools_usage: GaugeVec<2>,
    scheduling_duration: HistogramVec<1>,
    scheduler_queue_depth: GaugeVec<2>,
    pods_state: GaugeVec<10>,
    pods_startup_duration: SummaryVec<0>,
    cloudprovider_duration: HistogramVec<3>,
    cloudprovider_errors: CounterVec<4>,
    offering_price_estimate: GaugeVec<3>,
    offering_available: GaugeVec<3>,
    cluster_state_node_count: Gauge<f64, AtomicU64>,
    cluster_state_synced: Gauge<f64, AtomicU64>,
    nodeclaims_created_v1beta1: BareCounterVec<2>,
    nodeclaims_terminated_v1beta1: BareCounterVec<1>,
    nodes_created_v1beta1: BareCounterVec<1>,
    nodes_terminated_v1beta1: BareCounterVec<1>,
    /// controller-runtime's reconcile metrics.
    pub reconcile: ReconcileMetrics,
    /// Termination and runtime-health metrics.
    pub termination: TerminationMetrics,
    /// Disruption metrics.
    pub disruption: DisruptionMetrics,
    /// Interruption-queue metrics.
    pub interruption: InterruptionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (and `karpenter_build_info` set).
    pub fn new() -> Self {
        // Counters are registered without `_total`: prometheus-client appends it to the sample
        // name, which then matches Karpenter's (`karpenter_nodeclaims_created_total`).
        let mut root = Registry::default();
        let reconcile = ReconcileMetrics::register(&mut root);
        let r = root.sub_registry_with_prefix("karpenter");
        let m = Metrics {
            nodeclaims_created: Family::default(),
            nodeclaims_terminated: Family::default(),
            nodeclaims_disrupted: Family::default(),
            nodes_created: Family::default(),
            nodes_terminated: Family::default(),
            nodes_allocatable: Family::default(),
            nodes_pod_requests: Family::default(),
            nodes_daemon_requests: Family::default(),
            nodepools_limit: Family::default(),
            nodepools_usage: Family::default(),
            scheduling_duration: Family::new_with_constructor(duration_histogram),
            scheduler_queue_depth: Family::default(),
            pods_state: Family::default(),
            pods_startup_duration: SummaryVec::new([]),
            cloudprovider_duration: Family::new_with_constructor(duration_histogram),
            cloudprovider_errors: Family::default(),
            offering_price_estimate: Family::default(),
            offering_available: Family::default(),
            cluster_state_node_count: Gauge::default(),
            cluster_state_synced: Gauge::default(),
            nodeclaims_created_v1beta1: Family::default(),
            nodeclaims_terminated_v1beta1: Family::default(),
            nodes_created_v1beta1: Family::default(),
            nodes_terminated_v1beta1: Family::default(),
            reconcile,
            termination: TerminationMetrics::register(r),
            disruption: DisruptionMetrics::register(r),
            interruption: InterruptionMetrics::register(r),
            registry: Registry::default(),
        };
        r.register(
            "build",
            "A metric with a constant '1' value labeled by version from which karpenter was built.",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "nodeclaims_created",
            "Number of nodeclaims created in total by Karpenter. Labeled by reason the nodeclaim was created and the owning nodepool.",
            m.nodeclaims_created.clone(),
        );
        r.register(
            "nodeclaims_terminated",
            "Number of nodeclaims terminated in total by Karpenter. Labeled by the owning nodepool.",
            m.nodeclaims_terminated.clone(),
        );
        r.register(
            "nodeclaims_disrupted",
            "Number of nodeclaims disrupted in total by Karpenter. Labeled by reason the nodeclaim was disrupted and the owning nodepool.",
            m.nodeclaims_disrupted.clone(),
        );
        r.register(
            "nodes_created",
            "Number of nodes created in total by Karpenter. Labeled by owning nodepool.",
            m.nodes_created.clone(),
        );
        r.register(
            "nodes_terminated",
            "Number of nodes terminated in total by Karpenter. Labeled by owning nodepool.",
            m.nodes_terminated.clone(),
        );
        r.register(
            "nodes_allocatable",
            "Node allocatable are the resources allocatable by nodes.",
            m.nodes_allocatable.clone(),
        );
        r.register(
            "nodes_total_pod_requests",
            "Node total pod requests are the resources requested by pods bound to nodes, including the DaemonSet pods bound to nodes.",
            m.nodes_pod_requests.clone(),
        );
        r.register(
            "nodes_total_daemon_requests",
            "Node total daemon requests are the resource requested by DaemonSet pods bound to nodes.",
            m.nodes_daemon_requests.clone(),
        );
        r.register(
            "nodepools_limit",
            "Limits specified on the nodepool that restrict the quantity of resources provisioned. Labeled by nodepool name and resource type.",
            m.nodepools_limit.clone(),
        );
        r.register(
            "nodepools_usage",
            "The amount of resources that have been provisioned for a nodepool. Labeled by nodepool name and resource type.",
            m.nodepools_usage.clone(),
        );
        r.register(
            "scheduler_scheduling_duration_seconds",
            "Duration of scheduling simulations used for deprovisioning and provisioning in seconds.",
            m.scheduling_duration.clone(),
        );
        r.register(
            "scheduler_queue_depth",
            "The number of pods currently waiting to be scheduled.",
            m.scheduler_queue_depth.clone(),
        );
        r.register(
            "pods_state",
            "Pod state is the current state of pods. Labeled by the pod name, namespace, owner, node, nodepool name, zone, architecture, capacity type, instance type and pod phase.",
            m.pods_state.clone(),
        );
        r.register(
            "cloudprovider_duration_seconds",
            "Duration of cloud provider method calls. Labeled by the controller, method name and provider.",
            m.cloudprovider_duration.clone(),
        );
        r.register(
            "cloudprovider_errors",
            "Total number of errors returned from CloudProvider calls.",
            m.cloudprovider_errors.clone(),
        );
        r.register(
            "cloudprovider_instance_type_offering_price_estimate",
            "Instance type offering estimated hourly price used when making informed decisions on node cost calculation, based on instance type, capacity type, and zone.",
            m.offering_price_estimate.clone(),
        );
        r.register(
            "cloudprovider_instance_type_offering_available",
            "Instance type offering availability, based on instance type, capacity type, and zone",
            m.offering_available.clone(),
        );
        r.register(
            "cluster_state_node_count",
            "Current count of nodes in cluster state",
            m.cluster_state_node_count.clone(),
        );
        r.register(
            "cluster_state_synced",
            "Returns 1 if cluster state is synced and 0 otherwise. Synced checks that nodeclaims and nodes that are stored in the APIServer have the same representation as Karpenter's cluster state",
            m.cluster_state_synced.clone(),
        );
        m.register_v1beta1(r);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Karpenter 0.36's names ([`v1beta1`]) of the families this struct writes.
    fn register_v1beta1(&self, r: &mut Registry) {
        r.register(
            "nodeclaims_created",
            "Number of nodeclaims created in total by Karpenter. Labeled by reason the nodeclaim was created and the owning nodepool. (Karpenter 0.36 name.)",
            self.nodeclaims_created_v1beta1.clone(),
        );
        r.register(
            "nodeclaims_terminated",
            "Number of nodeclaims terminated in total by Karpenter. Labeled by the owning nodepool. (Karpenter 0.36 name.)",
            self.nodeclaims_terminated_v1beta1.clone(),
        );
        r.register(
            "nodes_created",
            "Number of nodes created in total by Karpenter. Labeled by owning nodepool. (Karpenter 0.36 name.)",
            self.nodes_created_v1beta1.clone(),
        );
        r.register(
            "nodes_terminated",
            "Number of nodes terminated in total by Karpenter. Labeled by owning nodepool. (Karpenter 0.36 name.)",
            self.nodes_terminated_v1beta1.clone(),
        );
        r.register(
            "nodepool_limit",
            "The nodepool limits are the limits specified on the nodepool that restrict the quantity of resources provisioned. Labeled by nodepool name and resource type. (Karpenter 0.36 name.)",
            self.nodepools_limit.clone(),
        );
        r.register(
            "nodepool_usage",
            "The nodepool usage is the amount of resources that have been provisioned by a particular nodepool. Labeled by nodepool name and resource type. (Karpenter 0.36 name.)",
            self.nodepools_usage.clone(),
        );
        self.disruption.register_v1beta1(r);
        self.interruption.register_v1beta1(r);
    }

    /// The text exposition (format 0.0.4) of every metric, the summaries' quantiles as of now.
    pub fn encode(&self) -> String {
        self.encode_at(Instant::now())
    }

    /// [`Metrics::encode`] with the summaries' window ending at `now`.
    pub fn encode_at(&self, now: Instant) -> String {
        let mut openmetrics = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder, and
        // an empty scrape is better than a crashed controller.
        if let Err(e) = text::encode(&mut openmetrics, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        let mut out = exposition::from_openmetrics(&openmetrics);
        for name in [
            "karpenter_pods_startup_duration_seconds",
            "karpenter_pods_startup_time_seconds",
        ] {
            self.pods_startup_duration.encode(
                name,
                "The time from pod creation until the pod is running.",
                now,
                &mut out,
            );
        }
        self.termination.encode_summaries(now, &mut out);
        out
    }

    /// `karpenter_nodeclaims_created_total{reason,nodepool}` += 1.
    pub fn nodeclaim_created(&self, nodepool: &str, reason: &str) {
        let l = labels(["reason", "nodepool"], [reason, nodepool]);
        self.nodeclaims_created.get_or_create(&l).inc();
        self.nodeclaims_created_v1beta1.get_or_create(&l).inc();
    }

    /// `karpenter_nodeclaims_terminated_total{nodepool}` += 1.
    pub fn nodeclaim_terminated(&self, nodepool: &str) {
        let l = labels(["nodepool"], [nodepool]);
        self.nodeclaims_terminated.get_or_create(&l).inc();
        self.nodeclaims_terminated_v1beta1.get_or_create(&l).inc();
    }

    /// `karpenter_nodeclaims_disrupted_total{reason,nodepool,capacity_type}` += 1.
    pub fn nodeclaim_disrupted(&self, nodepool: &str, reason: &str, capacity_type: &str) {
        let l = labels(
            ["reason", "nodepool", "capacity_type"],
            [reason, nodepool, capacity_type],
        );
        self.nodeclaims_disrupted.get_or_create(&l).inc();
    }

    /// `karpenter_nodes_created_total{nodepool}` += 1.
    pub fn node_created(&self, nodepool: &str) {
        let l = labels(["nodepool"], [nodepool]);
        self.nodes_created.get_or_create(&l).inc();
        self.nodes_created_v1beta1.get_or_create(&l).inc();
    }

    /// `karpenter_nodes_terminated_total{nodepool}` += 1.
    pub fn node_terminated(&self, nodepool: &str) {
        let l = labels(["nodepool"], [nodepool]);
        self.nodes_terminated.get_or_create(&l).inc();
        self.nodes_terminated_v1beta1.get_or_create(&l).inc();
    }

    /// Sets one of the per-node gauges (`karpenter_nodes_allocatable`,
    /// `_total_pod_requests`, `_total_daemon_requests`) of one resource of a node.
    pub fn set_node_gauge(
        &self,
        gauge: NodeGauge,
        node: &NodeLabels,
        resource_type: &str,
        value: f64,
    ) {
        self.node_family(gauge)
            .get_or_create(&node.with_resource(resource_type))
            .set(value);
    }

    /// Forgets one series of a per-node gauge.
    pub fn remove_node_gauge(&self, gauge: NodeGauge, node: &NodeLabels, resource_type: &str) {
        self.node_family(gauge)
            .remove(&node.with_resource(resource_type));
    }

    fn node_family(&self, gauge: NodeGauge) -> &GaugeVec<8> {
        match gauge {
            NodeGauge::Allocatable => &self.nodes_allocatable,
            NodeGauge::PodRequests => &self.nodes_pod_requests,
            NodeGauge::DaemonRequests => &self.nodes_daemon_requests,
        }
    }

    /// Forgets `karpenter_nodepools_{limit,usage}{nodepool,resource_type}`.
    pub fn remove_nodepool_gauges(&self, nodepool: &str, resource_type: &str) {
        let l = labels(["nodepool", "resource_type"], [nodepool, resource_type]);
        self.nodepools_limit.remove(&l);
        self.nodepools_usage.remove(&l);
    }

    /// Sets `karpenter_nodepools_limit{nodepool,resource_type}`.
    pub fn set_nodepool_limit(&self, nodepool: &str, resource_type: &str, value: f64) {
        let l = labels(["nodepool", "resource_type"], [nodepool, resource_type]);
        self.nodepools_limit.get_or_create(&l).set(value);
    }

    /// Sets `karpenter_nodepools_usage{nodepool,resource_type}`.
    pub fn set_nodepool_usage(&self, nodepool: &str, resource_type: &str, value: f64) {
        let l = labels(["nodepool", "resource_type"], [nodepool, resource_type]);
        self.nodepools_usage.get_or_create(&l).set(value);
    }

    /// Observes one scheduling simulation in
    /// `karpenter_scheduler_scheduling_duration_seconds{controller}` (`provisioner`,
    /// `disruption`).
    pub fn observe_scheduling_duration(&self, controller: &str, took: Duration) {
        let l = labels(["controller"], [controller]);
        self.scheduling_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// Sets `karpenter_scheduler_queue_depth{controller,scheduling_id}`.
    pub fn set_scheduler_queue_depth(&self, controller: &str, scheduling_id: &str, depth: usize) {
        let l = labels(["controller", "scheduling_id"], [controller, scheduling_id]);
        self.scheduler_queue_depth
            .get_or_create(&l)
            .set(depth as f64);
    }

    /// Forgets a finished simulation's queue depth series, so old ids do not linger.
    pub fn remove_scheduler_queue_depth(&self, controller: &str, scheduling_id: &str) {
        let l = labels(["controller", "scheduling_id"], [controller, scheduling_id]);
        self.scheduler_queue_depth.remove(&l);
    }

    /// Sets `karpenter_pods_state{…}` to 1 for the pod as described.
    pub fn set_pod_state(&self, pod: &PodState) {
        self.pods_state.get_or_create(&pod.labels()).set(1.0);
    }

    /// Forgets a pod's `karpenter_pods_state` series (call with the previous state when the
    /// pod changes or goes away).
    pub fn remove_pod_state(&self, pod: &PodState) {
        self.pods_state.remove(&pod.labels());
    }

    /// Observes the summary `karpenter_pods_startup_duration_seconds` (creation to ready).
    pub fn observe_pod_startup(&self, took: Duration) {
        self.pods_startup_duration
            .observe([], took.as_secs_f64(), Instant::now());
    }

    /// Observes `karpenter_cloudprovider_duration_seconds{controller,method,provider}`.
    pub fn observe_cloudprovider_call(
        &self,
        controller: &str,
        method: &str,
        provider: &str,
        took: Duration,
    ) {
        let l = labels(
            ["controller", "method", "provider"],
            [controller, method, provider],
        );
        self.cloudprovider_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// `karpenter_cloudprovider_errors_total{controller,method,provider,error}` += 1.
    pub fn cloudprovider_error(&self, controller: &str, method: &str, provider: &str, error: &str) {
        let l = labels(
            ["controller", "method", "provider", "error"],
            [controller, method, provider, error],
        );
        self.cloudprovider_errors.get_or_create(&l).inc();
    }

    /// Sets `karpenter_cloudprovider_instance_type_offering_price_estimate` (hourly price).
    pub fn set_offering_price_estimate(
        &self,
        instance_type: &str,
        capacity_type: &str,
        zone: &str,
        price: f64,
    ) {
        let l = labels(
            ["instance_type", "capacity_type", "zone"],
            [instance_type, capacity_type, zone],
        );
        self.offering_price_estimate.get_or_create(&l).set(price);
    }

    /// Sets `karpenter_cloudprovider_instance_type_offering_available` (1 or 0).
    pub fn set_offering_available(
        &self,
        instance_type: &str,
        capacity_type: &str,
        zone: &str,
        available: bool,
    ) {
        let l = labels(
            ["instance_type", "capacity_type", "zone"],
            [instance_type, capacity_type, zone],
        );
        let v = if available { 1.0 } else { 0.0 };
        self.offering_available.get_or_create(&l).set(v);
    }

    /// Sets `karpenter_cluster_state_node_count`.
    pub fn set_cluster_state_node_count(&self, count: usize) {
        self.cluster_state_node_count.set(count as f64);
    }

    /// Sets `karpenter_cluster_state_synced` (1 or 0).
    pub fn set_cluster_state_synced(&self, synced: bool) {
        self.cluster_state_synced
            .set(if synced { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_exposition;
