//! The cluster metrics controller (Karpenter's node, pod and nodepool metrics controllers in
//! one): every [`INTERVAL`] it computes from the shared model ([`decide::series`]) the gauges
//! the capacity dashboards read and publishes them, removing the series of nodes, pods and
//! resources that are gone so `label_values()` never lists a dead node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::ClusterState;
use crate::runtime::metrics::{Metrics, NodeGauge};

pub mod decide;
pub mod startup;

pub use decide::{ClusterSeries, series};

/// How often the gauges are recomputed (Karpenter's metric controllers follow events; a
/// scrape every 15–30 s sees the same thing).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What was published last, so what is gone can be removed.
#[derive(Default)]
pub struct Publisher {
    last: Mutex<ClusterSeries>,
}

impl Publisher {
    /// Sets every series of `now` and removes those of the last publication that `now` lacks.
    pub fn publish(&self, metrics: &Metrics, now: ClusterSeries) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for (name, old) in &last.nodes {
            let kept = now.nodes.get(name).filter(|n| n.labels == old.labels);
            let gauges = [
                (NodeGauge::Allocatable, &old.allocatable),
                (NodeGauge::PodRequests, &old.pod_requests),
                (NodeGauge::DaemonRequests, &old.daemon_requests),
            ];
            for (gauge, values) in gauges {
                for resource in values.keys() {
                    let still = kept.is_some_and(|n| match gauge {
                        NodeGauge::Allocatable => n.allocatable.contains_key(resource),
                        NodeGauge::PodRequests => n.pod_requests.contains_key(resource),
                        NodeGauge::DaemonRequests => n.daemon_requests.contains_key(resource),
                    });
                    if !still {
                        metrics.remove_node_gauge(gauge, &old.labels, resource);
                    }
                }
            }
        }
        for node in now.nodes.values() {
            for (gauge, values) in [
                (NodeGauge::Allocatable, &node.allocatable),
                (NodeGauge::PodRequests, &node.pod_requests),
                (NodeGauge::DaemonRequests, &node.daemon_requests),
            ] {
                for (resource, value) in values {
                    metrics.set_node_gauge(gauge, &node.labels, resource, *value);
                }
            }
        }
        for old in &last.pods {
            if !now.pods.contains(old) {
                metrics.remove_pod_state(old);
            }
        }
        for pod in &now.pods {
            metrics.set_pod_state(pod);
        }
        for (pool, old) in &last.pools {
            let resources = old.usage.keys().chain(old.limit.keys());
            for resource in resources {
                let still = now.pools.get(pool).is_some_and(|p| {
                    p.usage.contains_key(resource) || p.limit.contains_key(resource)
                });
                if !still {
                    metrics.remove_nodepool_gauges(pool, resource);
                }
            }
        }
        for (pool, s) in &now.pools {
            for (resource, value) in &s.usage {
                metrics.set_nodepool_usage(pool, resource, *value);
            }
            for (resource, value) in &s.limit {
                metrics.set_nodepool_limit(pool, resource, *value);
            }
        }
        metrics.set_cluster_state_node_count(now.node_count);
        *last = now;
    }
}

/// The `controller` label of this controller's reconcile metrics.
const CONTROLLER: &str = "metrics.cluster";

/// Runs until the process ends.
pub async fn run(state: ClusterState, metrics: Arc<Metrics>) {
    let watching_since = k8s_openapi::jiff::Timestamp::now();
    state.wait_synced().await;
    let publisher = Publisher::default();
    let mut observed = std::collections::BTreeSet::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pass = async {
            let (pools, _) = state.pools();
            let pods = state.pods.state();
            let now = series(
                &state.nodes.state(),
                &pods,
                &state.node_claims.state(),
                &pools,
            );
            publisher.publish(&metrics, now);
            let (fresh, keep) = startup::new_startups(&pods, &observed, watching_since);
            for (_, took) in fresh {
                metrics.observe_pod_startup(took);
            }
            observed = keep;
        };
        metrics
            .reconcile
            .measure_pass(CONTROLLER, pass, |_| true)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::decide::{NodeSeries, PoolSeries};
    use super::*;
    use crate::runtime::metrics::{NodeLabels, PodState};

    fn node(name: &str, pool: &str, cpu: f64) -> NodeSeries {
        NodeSeries {
            labels: NodeLabels {
                node_name: name.into(),
                nodepool: pool.into(),
                ..NodeLabels::default()
            },
            allocatable: BTreeMap::from([("cpu".into(), cpu)]),
            pod_requests: BTreeMap::from([("cpu".into(), cpu / 2.0)]),
            daemon_requests: BTreeMap::from([("cpu".into(), 0.1)]),
        }
    }

    fn lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn gone_nodes_pods_and_pools_lose_their_series() {
        let m = Metrics::new();
        let p = Publisher::default();
        let pod = PodState {
            name: "web-1".into(),
            namespace: "prod".into(),
            phase: "Pending".into(),
            ..PodState::default()
        };
        let first = ClusterSeries {
            nodes: BTreeMap::from([
                ("a".into(), node("a", "default", 2.0)),
                ("b".into(), node("b", "default", 4.0)),
            ]),
            pods: vec![pod.clone()],
            pools: BTreeMap::from([(
                "default".into(),
                PoolSeries {
                    usage: BTreeMap::from([("cpu".into(), 6.0), ("memory".into(), 1e9)]),
                    limit: BTreeMap::from([("cpu".into(), 100.0)]),
                },
            )]),
            node_count: 2,
        };
        p.publish(&m, first.clone());
        assert_eq!(lines(&m, "karpenter_nodes_allocatable{").len(), 2);
        assert_eq!(lines(&m, "karpenter_nodes_total_pod_requests{").len(), 2);
        assert_eq!(lines(&m, "karpenter_nodes_total_daemon_requests{").len(), 2);
        assert_eq!(lines(&m, "karpenter_pods_state{").len(), 1);
        assert_eq!(lines(&m, "karpenter_nodepools_usage{").len(), 2);

        // Node b goes, the pod starts running, the pool's memory usage goes.
        let mut second = first;
        second.nodes.remove("b");
        second.pods[0].phase = "Running".into();
        second
            .pools
            .get_mut("default")
            .unwrap()
            .usage
            .remove("memory");
        second.node_count = 1;
        p.publish(&m, second);
        let alloc = lines(&m, "karpenter_nodes_allocatable{");
        assert_eq!(alloc.len(), 1, "{alloc:?}");
        assert!(alloc[0].contains("node_name=\"a\""));
        assert_eq!(lines(&m, "karpenter_nodes_total_pod_requests{").len(), 1);
        let pods = lines(&m, "karpenter_pods_state{");
        assert_eq!(pods.len(), 1);
        assert!(pods[0].contains("phase=\"Running\""), "{pods:?}");
        assert_eq!(lines(&m, "karpenter_nodepools_usage{").len(), 1);
        assert_eq!(lines(&m, "karpenter_nodepools_limit{").len(), 1);
        assert_eq!(
            lines(&m, "karpenter_cluster_state_node_count"),
            ["karpenter_cluster_state_node_count 1.0"]
        );
    }

    #[test]
    fn a_node_whose_labels_change_keeps_only_its_new_series() {
        let m = Metrics::new();
        let p = Publisher::default();
        let mut s = ClusterSeries::default();
        s.nodes.insert("a".into(), node("a", "N/A", 2.0));
        p.publish(&m, s.clone());
        s.nodes.insert("a".into(), node("a", "default", 2.0));
        p.publish(&m, s);
        let alloc = lines(&m, "karpenter_nodes_allocatable{");
        assert_eq!(alloc.len(), 1, "{alloc:?}");
        assert!(alloc[0].contains("nodepool=\"default\""));
    }
}
