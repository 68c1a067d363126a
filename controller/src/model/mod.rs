//! The shared cluster model: one kube-runtime reflector per kind the controllers decide on, each
//! feeding an in-memory store that every controller reads. Decisions wait until every store has listed once
//! ([`ClusterState::wait_synced`]), so the provisioner never plans against a half-empty view.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};
use karpenter_core::api::{KubeletConfiguration, NodeClaim};
use karpenter_providers::NodePoolRef;
use karpenter_providers::aws::cloud::NodeClassSource;
use karpenter_providers::aws::nodeclass::EC2NodeClass;
use kube_client::Client;
use kube_client::api::{Api, ApiResource, DynamicObject};
use kube_client::core::GroupVersionKind;
use tokio::sync::Notify;

pub mod gather;
pub mod objects;
pub mod snapshot;
pub mod volume_topology;
pub mod watch;

use objects::PoolView;
use watch::{WatchContext, watch, watch_decoded};
pub use watch::{WatchHealth, Watched};

use crate::runtime::metrics::Metrics;
use crate::runtime::supervisor::Supervisor;

/// The shared cluster model: a store (and a change broadcast) per kind. Every field derefs
/// to its reflector [`Store`], so `state.nodes.state()` lists every Node.
#[derive(Clone)]
pub struct ClusterState {
    /// Every pod.
    pub pods: Watched<Pod>,
    /// Every node.
    pub nodes: Watched<Node>,
    /// NodePools, untyped (v1 and v1beta1 bodies; see [`objects`]).
    pub node_pools: Watched<DynamicObject>,
    /// EC2NodeClasses, untyped.
    pub node_classes: Watched<DynamicObject>,
    /// NodeClaims (decoded one by one: one that does not decode is left out).
    pub node_claims: Watched<NodeClaim>,
    /// DaemonSets (their pods' requests go on every new node).
    pub daemon_sets: Watched<DaemonSet>,
    /// PersistentVolumeClaims (a pending pod's volumes restrict its zone).
    pub volume_claims: Watched<PersistentVolumeClaim>,
    /// PersistentVolumes (a bound claim's node affinity).
    pub volumes: Watched<PersistentVolume>,
    /// StorageClasses (an unbound claim's allowed topologies).
    pub storage_classes: Watched<StorageClass>,
    /// VolumeAttachments (termination waits for a drained node's volumes to detach).
    pub volume_attachments: Watched<VolumeAttachment>,
    /// PodDisruptionBudgets, untyped: `policy/v1`, or `policy/v1beta1` on API servers older
    /// than 1.21 (read through [`ClusterState::disruption_budgets`]).
    pub disruption_budgets: Watched<DynamicObject>,
    /// Poked on every pod change, so the provisioner can open a batch.
    pub pod_changed: Arc<Notify>,
    /// Poked on every NodeClaim, Node or NodePool change.
    pub capacity_changed: Arc<Notify>,
    /// Poked on every EC2NodeClass change.
    pub node_class_changed: Arc<Notify>,
    /// Which watches are failing.
    pub watch_health: WatchHealth,
}

impl ClusterState {
    /// Starts one watch per kind on `tasks`; PodDisruptionBudgets are watched at
    /// `pdb_resource` (see [`disruption_budget_resource`]).
    pub fn start(
        client: &Client,
        pdb_resource: ApiResource,
        metrics: Arc<Metrics>,
        tasks: &mut Supervisor,
    ) -> ClusterState {
        let pod_changed = Arc::new(Notify::new());
        let capacity_changed = Arc::new(Notify::new());
        let node_class_changed = Arc::new(Notify::new());
        let watch_health = WatchHealth::default();
        let ctx = WatchContext {
            metrics,
            health: watch_health.clone(),
        };
        let c = client;
        let pod_note = Some(pod_changed.clone());
        let capacity_note = Some(capacity_changed.clone());
        let pool_res = objects::node_pool_resource();
        let class_res = objects::node_class_resource();
        ClusterState {
            pods: watch(Api::all(c.clone()), (), pod_note.clone(), &ctx, tasks),
            nodes: watch(Api::all(c.clone()), (), capacity_note.clone(), &ctx, tasks),
            node_pools: watch(
                Api::all_with(c.clone(), &pool_res),
                pool_res,
                capacity_note.clone(),
                &ctx,
                tasks,
            ),
            node_classes: watch(
                Api::all_with(c.clone(), &class_res),
                class_res,
                Some(node_class_changed.clone()),
                &ctx,
                tasks,
            ),
            node_claims: watch_decoded(
                Api::all_with(c.clone(), &objects::node_claim_resource()),
                objects::read_node_claim,
                objects::node_claim_placeholder,
                capacity_note,
                &ctx,
                tasks,
            ),
            daemon_sets: watch(Api::all(c.clone()), (), None, &ctx, tasks),
            // A claim, volume or class appearing can make a pending pod schedulable: re-plan.
            volume_claims: watch(Api::all(c.clone()), (), pod_note.clone(), &ctx, tasks),
            volumes: watch(Api::all(c.clone()), (), pod_note.clone(), &ctx, tasks),
            storage_classes: watch(Api::all(c.clone()), (), pod_note, &ctx, tasks),
            volume_attachments: watch(Api::all(c.clone()), (), None, &ctx, tasks),
            disruption_budgets: watch(
                Api::all_with(c.clone(), &pdb_resource),
                pdb_resource,
                None,
                &ctx,
                tasks,
            ),
            pod_changed,
            capacity_changed,
            node_class_changed,
            watch_health,
        }
    }

    /// Waits until every store has its initial list.
    ///
    /// Await it from one task at a time: kube-runtime's store readiness wakes a single waiter,
    /// so a second concurrent waiter may never wake (`karpenter run` lets its readiness task
    /// wait and publishes the result).
    pub async fn wait_synced(&self) {
        // An Err means the writer is gone, i.e. the process is shutting down.
        let _ = self.pods.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.node_pools.wait_until_ready().await;
        let _ = self.node_classes.wait_until_ready().await;
        let _ = self.node_claims.wait_until_ready().await;
        let _ = self.daemon_sets.wait_until_ready().await;
        let _ = self.volume_claims.wait_until_ready().await;
        let _ = self.volumes.wait_until_ready().await;
        let _ = self.storage_classes.wait_until_ready().await;
        let _ = self.volume_attachments.wait_until_ready().await;
        let _ = self.disruption_budgets.wait_until_ready().await;
    }

    /// Every PodDisruptionBudget, as `policy/v1` (one that does not read is logged and left
    /// out).
    pub fn disruption_budgets(&self) -> Vec<PodDisruptionBudget> {
        self.disruption_budgets
            .state()
            .iter()
            .filter_map(|o| match read_disruption_budget(o) {
                Ok(pdb) => Some(pdb),
                Err(e) => {
                    tracing::warn!(error = %e, "PodDisruptionBudget left out");
                    None
                }
            })
            .collect()
    }

    /// Every NodePool that reads, sorted by name; unreadable ones are returned as errors.
    pub fn pools(&self) -> (Vec<PoolView>, Vec<objects::ObjectError>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for obj in self.node_pools.state() {
            match objects::read_node_pool(&obj) {
                Ok(v) => ok.push(v),
                Err(e) => bad.push(e),
            }
        }
        ok.sort_by(|a, b| a.name().cmp(b.name()));
        (ok, bad)
    }

    /// The NodePool named `name`, if it reads.
    pub fn pool(&self, name: &str) -> Option<PoolView> {
        let obj = self
            .node_pools
            .find(|o| o.metadata.name.as_deref() == Some(name))?;
        objects::read_node_pool(&obj).ok()
    }

    /// The EC2NodeClass `name` as v1, with a v1beta1 pool's kubelet settings merged in.
    pub fn node_class(
        &self,
        name: &str,
        pool_kubelet: Option<&KubeletConfiguration>,
    ) -> Option<Result<EC2NodeClass, objects::ObjectError>> {
        let obj = self
            .node_classes
            .find(|o| o.metadata.name.as_deref() == Some(name))?;
        Some(objects::read_node_class(&obj, pool_kubelet))
    }
}

/// The provider reads node classes from the stores through this.
impl NodeClassSource for ClusterState {
    fn node_class_for(&self, pool: &NodePoolRef) -> Option<EC2NodeClass> {
        let kubelet = self.pool(&pool.name).and_then(|p| p.kubelet);
        self.node_class(&pool.node_class, kubelet.as_ref())?.ok()
    }
}

/// Where PodDisruptionBudgets are served: `policy/v1` (Kubernetes >= 1.21), else
/// `policy/v1beta1`. Watching a version the API server does not serve would never sync and
/// would hold every decision back.
pub async fn disruption_budget_resource(client: &Client) -> ApiResource {
    let served = client
        .list_api_group_resources("policy/v1")
        .await
        .is_ok_and(|list| {
            list.resources
                .iter()
                .any(|r| r.name == "poddisruptionbudgets")
        });
    let version = if served { "v1" } else { "v1beta1" };
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "policy",
        version,
        "PodDisruptionBudget",
    ))
}

/// A PodDisruptionBudget body of either version as `policy/v1`: the fields the controller uses
/// (selector, minAvailable, maxUnavailable, status) have the same shape in both.
pub fn read_disruption_budget(obj: &DynamicObject) -> Result<PodDisruptionBudget, String> {
    let mut value = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    value["apiVersion"] = "policy/v1".into();
    value["kind"] = "PodDisruptionBudget".into();
    let name = format!(
        "PodDisruptionBudget/{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    );
    serde_json::from_value(value).map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1beta1_disruption_budget_reads_as_v1() {
        let obj: DynamicObject = serde_yaml::from_str(
            r#"
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
status: {currentHealthy: 3, desiredHealthy: 2, disruptionsAllowed: 1, expectedPods: 3}
"#,
        )
        .expect("pdb parses");
        let pdb = read_disruption_budget(&obj).expect("reads as v1");
        let spec = pdb.spec.expect("spec");
        assert_eq!(
            spec.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        assert_eq!(pdb.status.expect("status").disruptions_allowed, 1);

        let mut broken = obj.clone();
        broken.data["spec"]["maxUnavailable"] = serde_json::json!({"not": "a number"});
        let err = read_disruption_budget(&broken).expect_err("bad field");
        assert!(err.starts_with("PodDisruptionBudget/shop/web"), "{err}");
    }
}
