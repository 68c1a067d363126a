//! Cluster state: one kube-runtime reflector per kind the controller decides on, each feeding
//! an in-memory store. Decisions wait until every store has listed once
//! ([`ClusterState::wait_synced`]), so the provisioner never plans against a half-empty view.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use karpenter_core::api::{KubeletConfiguration, NodeClaim};
use karpenter_providers::NodePoolRef;
use karpenter_providers::aws::cloud::NodeClassSource;
use karpenter_providers::aws::nodeclass::EC2NodeClass;
use kube_client::api::{Api, ApiResource, DynamicObject};
use kube_client::core::GroupVersionKind;
use kube_client::runtime::reflector::{self, Store, store::Writer};
use kube_client::runtime::{WatchStreamExt, watcher};
use kube_client::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::objects::{self, PoolView};

/// The reflector stores.
#[derive(Clone)]
pub struct ClusterState {
    /// Every pod.
    pub pods: Store<Pod>,
    /// Every node.
    pub nodes: Store<Node>,
    /// NodePools, untyped (v1 and v1beta1 bodies; see [`objects`]).
    pub node_pools: Store<DynamicObject>,
    /// EC2NodeClasses, untyped.
    pub node_classes: Store<DynamicObject>,
    /// NodeClaims.
    pub node_claims: Store<NodeClaim>,
    /// DaemonSets (their pods' requests go on every new node).
    pub daemon_sets: Store<DaemonSet>,
    /// PersistentVolumeClaims (a pending pod's volumes restrict its zone).
    pub volume_claims: Store<PersistentVolumeClaim>,
    /// PersistentVolumes (a bound claim's node affinity).
    pub volumes: Store<PersistentVolume>,
    /// StorageClasses (an unbound claim's allowed topologies).
    pub storage_classes: Store<StorageClass>,
    /// PodDisruptionBudgets, untyped: `policy/v1`, or `policy/v1beta1` on API servers older
    /// than 1.21 (read through [`ClusterState::disruption_budgets`]).
    pub disruption_budgets: Store<DynamicObject>,
    /// Poked on every pod change, so the provisioner can open a batch.
    pub pod_changed: Arc<Notify>,
    /// Poked on every NodeClaim, Node or NodePool change.
    pub capacity_changed: Arc<Notify>,
}

impl ClusterState {
    /// Starts the reflectors on `tasks`; PodDisruptionBudgets are watched at `pdb_resource`
    /// (see [`disruption_budget_resource`]).
    pub fn start(
        client: &Client,
        pdb_resource: ApiResource,
        tasks: &mut JoinSet<()>,
    ) -> ClusterState {
        let pod_changed = Arc::new(Notify::new());
        let capacity_changed = Arc::new(Notify::new());
        let pods = reflect(
            Api::<Pod>::all(client.clone()),
            (),
            Some(pod_changed.clone()),
            tasks,
        );
        let nodes = reflect(
            Api::<Node>::all(client.clone()),
            (),
            Some(capacity_changed.clone()),
            tasks,
        );
        let pool_res = objects::node_pool_resource();
        let node_pools = reflect(
            Api::<DynamicObject>::all_with(client.clone(), &pool_res),
            pool_res,
            Some(capacity_changed.clone()),
            tasks,
        );
        let class_res = objects::node_class_resource();
        let node_classes = reflect(
            Api::<DynamicObject>::all_with(client.clone(), &class_res),
            class_res,
            None,
            tasks,
        );
        let node_claims = reflect(
            Api::<NodeClaim>::all(client.clone()),
            (),
            Some(capacity_changed.clone()),
            tasks,
        );
        let daemon_sets = reflect(Api::<DaemonSet>::all(client.clone()), (), None, tasks);
        // A claim, volume or class appearing can make a pending pod schedulable: re-plan.
        let volume_claims = reflect(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            (),
            Some(pod_changed.clone()),
            tasks,
        );
        let volumes = reflect(
            Api::<PersistentVolume>::all(client.clone()),
            (),
            Some(pod_changed.clone()),
            tasks,
        );
        let storage_classes = reflect(
            Api::<StorageClass>::all(client.clone()),
            (),
            Some(pod_changed.clone()),
            tasks,
        );
        let disruption_budgets = reflect(
            Api::<DynamicObject>::all_with(client.clone(), &pdb_resource),
            pdb_resource,
            None,
            tasks,
        );
        ClusterState {
            pods,
            nodes,
            node_pools,
            node_classes,
            node_claims,
            daemon_sets,
            volume_claims,
            volumes,
            storage_classes,
            disruption_budgets,
            pod_changed,
            capacity_changed,
        }
    }

    /// Waits until every store has its initial list.
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

/// Spawns a reflector for `api` and returns its store. The watch restarts with backoff on
/// errors (including objects that fail to deserialize), so one bad object or a flaky API
/// server never ends it.
fn reflect<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    changed: Option<Arc<Notify>>,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync + 'static,
{
    let kind = K::kind(&dyntype).into_owned();
    let writer: Writer<K> = Writer::new(dyntype);
    let store = writer.as_reader();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if let Some(n) = &changed {
                        n.notify_one();
                    }
                }
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch error; retrying"),
            }
        }
    });
    store
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
