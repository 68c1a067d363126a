//! One consistent read of the shared model for a decision pass: the NodePools that read, their
//! instance types from the cloud provider, the objects, and the scheduler's snapshot built
//! from them. The provisioner and the disruption loop both start their passes here.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_core::api::NodeClaim;
use karpenter_core::instance_type::InstanceType;
use karpenter_providers::{CloudProvider, NodePoolRef};

use super::ClusterState;
use super::objects::PoolView;
use super::snapshot::{ClusterObjects, ClusterSnapshot, build_snapshot};
use super::volume_topology::VolumeObjects;

/// What one pass reads.
pub struct Gathered {
    /// NodePools that read, by name.
    pub pools: Vec<PoolView>,
    /// Instance types per NodePool (a pool whose types could not be listed is missing).
    pub instance_types: BTreeMap<String, Vec<InstanceType>>,
    /// Every pod.
    pub pods: Vec<Arc<Pod>>,
    /// Every node.
    pub nodes: Vec<Arc<Node>>,
    /// Every NodeClaim.
    pub claims: Vec<Arc<NodeClaim>>,
    /// The scheduler's snapshot and what was left out of it.
    pub built: ClusterSnapshot,
}

/// Reads the model and asks the provider for each pool's instance types. Unreadable pools and
/// pools without types are logged and left out.
pub async fn gather(state: &ClusterState, provider: &dyn CloudProvider) -> Gathered {
    let (pools, bad_pools) = state.pools();
    for e in bad_pools {
        tracing::warn!(error = %e, "NodePool skipped");
    }
    let mut instance_types: BTreeMap<String, Vec<InstanceType>> = BTreeMap::new();
    let mut unavailable: BTreeMap<String, String> = BTreeMap::new();
    for pool in &pools {
        let key = NodePoolRef {
            name: pool.name().to_owned(),
            node_class: pool.node_class().to_owned(),
        };
        match provider.instance_types(&key).await {
            Ok(types) => {
                instance_types.insert(key.name, types);
            }
            Err(e) => {
                tracing::warn!(nodepool = %key.name, error = %e, "no instance types");
                unavailable.insert(key.name, e.to_string());
            }
        }
    }
    let pods = state.pods.state();
    let nodes = state.nodes.state();
    let claims = state.node_claims.state();
    let daemon_sets = state.daemon_sets.state();
    let volumes = VolumeObjects::new(
        &state.volume_claims.state(),
        &state.volumes.state(),
        &state.storage_classes.state(),
    );
    let mut built = build_snapshot(&ClusterObjects {
        pods: &pods,
        nodes: &nodes,
        pools: &pools,
        claims: &claims,
        daemon_sets: &daemon_sets,
        instance_types: &instance_types,
        volumes: &volumes,
    });
    // Pending pods are told why a pool had nothing to offer.
    for input in &mut built.snapshot.node_pools {
        input.unavailable = unavailable.remove(&input.name);
    }
    Gathered {
        pools,
        instance_types,
        pods,
        nodes,
        claims,
        built,
    }
}

impl Gathered {
    /// The NodePools as `core` reads them.
    pub fn node_pools(&self) -> Vec<karpenter_core::api::NodePool> {
        self.pools.iter().map(|p| p.node_pool.clone()).collect()
    }
}
