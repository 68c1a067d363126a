//! Typed manifests → a whole [`Snapshot`]: what `karpenter simulate` feeds the scheduler.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1 as k8s;

use super::IngestError;
use super::convert::object_name;
use super::manifests::Manifest;
use super::node::{existing_node_from_k8s, node_capacity};
use super::nodepool::compile_node_pool;
use super::pod::{is_daemonset_pod, is_pending, is_terminal, pod_from_k8s};
use super::workloads::{
    daemon_set_pod, pods_from_deployment, pods_from_job, pods_from_replica_set,
    pods_from_stateful_set,
};
use crate::api;
use crate::instance_type::InstanceType;
use crate::labels;
use crate::resources::Resources;
use crate::snapshot::{PodKey, Snapshot};

/// Label the API server puts on every namespace with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What [`build_snapshot`] produces.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotBuild {
    /// The scheduler's input.
    pub snapshot: Snapshot,
    /// Every NodePool as `karpenter.sh/v1` (v1beta1 ones converted), in manifest order.
    pub node_pools: Vec<api::NodePool>,
    /// Kubelet settings that came with v1beta1 NodePools, by pool name. v1 moved them to the
    /// node class, so the caller applies them (e.g. `maxPods` to the pool's instance types).
    pub kubelet: BTreeMap<String, api::KubeletConfiguration>,
}

/// Builds a snapshot from manifests.
///
/// * NodePools (v1, and v1beta1 through [`api::convert_to_v1`]) are compiled with
///   [`compile_node_pool`], with the instance types `instance_types_for` gives and as usage
///   the `status.capacity` of the Nodes labelled `karpenter.sh/nodepool=<name>`;
/// * Nodes become existing nodes carrying the Pods whose `spec.nodeName` names them (a Pod
///   bound to a Node that is not in the manifests is an error); a node's startup taints are
///   those of its NodePool;
/// * unbound Pods that are pending become pending pods, except DaemonSet pods; pending pods
///   are the bare Pods, then the expanded workloads, each in manifest order;
/// * Deployments, ReplicaSets, StatefulSets and Jobs are expanded (see [`super::workloads`])
///   into pending pods; each DaemonSet gives one template in `daemon_sets`;
/// * namespace labels come from Namespace objects; every namespace in use also gets the
///   API server's `kubernetes.io/metadata.name` label.
///
/// Every problem found is returned, not just the first.
pub fn build_snapshot(
    manifests: &[Manifest],
    instance_types_for: &dyn Fn(&api::NodePool) -> Vec<InstanceType>,
) -> Result<SnapshotBuild, Vec<IngestError>> {
    let mut errors = Vec::new();
    let mut snapshot = Snapshot::default();

    let mut node_pools: Vec<api::NodePool> = Vec::new();
    let mut kubelet = BTreeMap::new();
    let mut nodes: Vec<&k8s::Node> = Vec::new();
    let mut bare_pods: Vec<&k8s::Pod> = Vec::new();
    for m in manifests {
        match m {
            Manifest::NodePoolV1(np) => node_pools.push((**np).clone()),
            Manifest::NodePoolV1beta1(old) => match api::convert_to_v1(old) {
                Ok(converted) => {
                    let name = converted
                        .node_pool
                        .metadata
                        .name
                        .clone()
                        .unwrap_or_default();
                    if let Some(k) = converted.kubelet {
                        kubelet.insert(name, k);
                    }
                    node_pools.push(converted.node_pool);
                }
                Err(e) => errors.push(IngestError::new(
                    object_name("NodePool", &old.metadata, false),
                    "",
                    format!("cannot convert v1beta1 to v1: {e}"),
                )),
            },
            Manifest::Node(n) => nodes.push(n),
            Manifest::Pod(p) => bare_pods.push(p),
            Manifest::Namespace(ns) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let mut ns_labels = ns.metadata.labels.clone().unwrap_or_default();
                ns_labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                snapshot.namespace_labels.insert(name, ns_labels);
            }
            _ => {}
        }
    }
    check_unique(
        node_pools
            .iter()
            .map(|np| np.metadata.name.clone().unwrap_or_default()),
        "NodePool",
        &mut errors,
    );
    check_unique(
        nodes
            .iter()
            .map(|n| n.metadata.name.clone().unwrap_or_default()),
        "Node",
        &mut errors,
    );

    // Pool usage is the capacity of its nodes, as Karpenter counts it against limits.
    let mut usage: BTreeMap<String, Resources> = BTreeMap::new();
    for node in &nodes {
        let pool = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NODE_POOL));
        if let Some(pool) = pool {
            match node_capacity(node) {
                Ok(cap) => *usage.entry(pool.clone()).or_default() += cap,
                Err(e) => errors.push(e),
            }
        }
    }
    let mut startup_taints = BTreeMap::new();
    for np in &node_pools {
        let name = np.metadata.name.clone().unwrap_or_default();
        let pool_usage = usage.get(&name).copied().unwrap_or_default();
        match compile_node_pool(np, instance_types_for(np), pool_usage) {
            Ok(input) => {
                startup_taints.insert(name, input.startup_taints.clone());
                snapshot.node_pools.push(input);
            }
            Err(errs) => errors.extend(errs),
        }
    }

    // Bare pods: bound ones go to their node, pending ones are scheduled.
    let node_names: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    let mut bound: BTreeMap<&str, Vec<k8s::Pod>> = BTreeMap::new();
    let mut seen_pods: BTreeMap<PodKey, String> = BTreeMap::new();
    for pod in bare_pods {
        if is_terminal(pod) {
            continue;
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        if !node_name.is_empty() {
            match node_names.get(node_name) {
                Some(n) => bound.entry(n).or_default().push(pod.clone()),
                None => errors.push(IngestError::new(
                    object_name("Pod", &pod.metadata, true),
                    "spec.nodeName",
                    format!("node {node_name:?} is not in the manifests"),
                )),
            }
            continue;
        }
        if is_daemonset_pod(pod) || !is_pending(pod) {
            continue;
        }
        match pod_from_k8s(pod) {
            Ok(p) => snapshot.pods.push(p),
            Err(e) => errors.push(e),
        }
    }

    for node in &nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let pool = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NODE_POOL));
        let startup = pool.and_then(|p| startup_taints.get(p)).map(Vec::as_slice);
        let pods = bound.get(name).map(Vec::as_slice).unwrap_or_default();
        match existing_node_from_k8s(node, pods, startup.unwrap_or_default()) {
            Ok(n) => snapshot.nodes.push(n),
            Err(e) => errors.push(e),
        }
    }

    for m in manifests {
        let expanded = match m {
            Manifest::Deployment(d) => pods_from_deployment(d),
            Manifest::ReplicaSet(rs) => pods_from_replica_set(rs),
            Manifest::StatefulSet(s) => pods_from_stateful_set(s),
            Manifest::Job(j) => pods_from_job(j),
            Manifest::DaemonSet(ds) => {
                match daemon_set_pod(ds) {
                    Ok(p) => snapshot.daemon_sets.push(p),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            _ => continue,
        };
        match expanded {
            Ok(pods) => snapshot.pods.extend(pods),
            Err(e) => errors.push(e),
        }
    }

    // Two pods with one key would make decisions ambiguous (e.g. StatefulSet `web` and a
    // Deployment `web` both give `web-0`).
    let all_pods = snapshot
        .pods
        .iter()
        .chain(snapshot.nodes.iter().flat_map(|n| &n.pods));
    for pod in all_pods {
        let by = pod
            .owner
            .clone()
            .unwrap_or_else(|| "a bare Pod".to_string());
        if let Some(first) = seen_pods.insert(pod.key.clone(), by.clone()) {
            errors.push(IngestError::new(
                format!("Pod/{}", pod.key),
                "metadata.name",
                format!("defined twice (by {first} and by {by})"),
            ));
        }
    }

    let used_namespaces: BTreeSet<String> = snapshot
        .pods
        .iter()
        .chain(snapshot.daemon_sets.iter())
        .chain(snapshot.nodes.iter().flat_map(|n| &n.pods))
        .map(|p| p.key.namespace.clone())
        .collect();
    for ns in used_namespaces {
        snapshot
            .namespace_labels
            .entry(ns.clone())
            .or_insert_with(|| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), ns)]));
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(SnapshotBuild {
        snapshot,
        node_pools,
        kubelet,
    })
}

fn check_unique(names: impl Iterator<Item = String>, kind: &str, errors: &mut Vec<IngestError>) {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name.clone()) {
            errors.push(IngestError::new(
                format!("{kind}/{name}"),
                "metadata.name",
                "defined twice",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_manifests;
    use crate::requirements::Requirements;
    use crate::resources::{CPU, MEMORY, PODS};

    const CLUSTER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, resources: {requests: {cpu: "1", memory: 1Gi}}}]
---
apiVersion: karpenter.sh/v1beta1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}
      startupTaints: [{key: example.com/agent-not-ready, effect: NoExecute}]
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
      kubelet: {maxPods: 20}
  limits: {cpu: "64"}
  disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: 720h}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: agent, resources: {requests: {cpu: 100m, memory: 128Mi}}}]
---
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {karpenter.sh/nodepool: default, topology.kubernetes.io/zone: us-west-2a}
spec:
  taints: [{key: example.com/agent-not-ready, effect: NoExecute}]
status:
  capacity: {cpu: "4", memory: 16Gi, pods: "20"}
  allocatable: {cpu: 3920m, memory: 15Gi, pods: "20"}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  nodeName: node-a
  containers: [{name: db, resources: {requests: {cpu: "2", memory: 4Gi}}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: agent-x1
  namespace: kube-system
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u, controller: true}]
spec:
  containers: [{name: agent, resources: {requests: {cpu: 100m}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: lonely, namespace: shop}
spec:
  containers: [{name: a}]
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {env: prod}}
"#;

    fn instance_types(np: &api::NodePool) -> Vec<InstanceType> {
        vec![InstanceType {
            name: format!("{}-type", np.metadata.name.as_deref().unwrap_or("")),
            requirements: Requirements::new(),
            capacity: Resources::from_pairs(&[(CPU, 4000), (MEMORY, 16 << 30), (PODS, 29)]),
            overhead: Resources::ZERO,
            offerings: Vec::new(),
        }]
    }

    #[test]
    fn builds_the_snapshot_of_a_small_cluster() {
        let manifests = parse_manifests(CLUSTER, "cluster.yaml").unwrap();
        let build = build_snapshot(&manifests, &instance_types).unwrap();
        let s = &build.snapshot;

        // Pending: the Deployment's three pods and the bare pod; not the DaemonSet's pod.
        let pending: Vec<_> = s.pods.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(
            pending,
            vec!["shop/lonely", "shop/web-0", "shop/web-1", "shop/web-2"]
        );
        let web = &s.pods[1];
        assert_eq!(web.requests.0[CPU], 1000);
        assert_eq!(web.owner.as_deref(), Some("Deployment/web"));

        // The v1beta1 pool is converted and compiled; its kubelet settings are handed back.
        assert_eq!(build.node_pools.len(), 1);
        assert_eq!(
            build.node_pools[0].metadata.name.as_deref(),
            Some("default")
        );
        assert_eq!(build.kubelet["default"].max_pods, Some(20));
        let pool = &s.node_pools[0];
        assert_eq!(pool.name, "default");
        assert_eq!(pool.instance_types[0].name, "default-type");
        assert_eq!(pool.limits.0[CPU], 64_000);
        assert_eq!(
            pool.usage.0[CPU], 4000,
            "node-a's capacity counts against limits"
        );
        assert_eq!(
            pool.requirements
                .get(labels::CAPACITY_TYPE)
                .unwrap()
                .to_string(),
            "In [on-demand]"
        );

        // The node carries its bound pod; its startup taint is ignored while initializing.
        assert_eq!(s.nodes.len(), 1);
        let node = &s.nodes[0];
        assert_eq!(node.name, "node-a");
        assert!(node.taints.is_empty(), "{:?}", node.taints);
        assert_eq!(node.allocatable.0[CPU], 3920);
        let bound: Vec<_> = node.pods.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(bound, vec!["shop/db-0"]);

        assert_eq!(s.daemon_sets.len(), 1);
        assert_eq!(s.daemon_sets[0].key.to_string(), "kube-system/agent");
        assert_eq!(s.daemon_sets[0].requests.0[MEMORY], 128 << 20);

        assert_eq!(s.namespace_labels["shop"]["env"], "prod");
        assert_eq!(s.namespace_labels["shop"][NAMESPACE_NAME_LABEL], "shop");
        assert_eq!(
            s.namespace_labels["kube-system"][NAMESPACE_NAME_LABEL], "kube-system",
            "namespaces in use get the API server's name label"
        );
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: stray}
spec: {nodeName: nowhere, containers: [{name: a}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  selector: {}
  template: {spec: {containers: [{name: a}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {}
  template: {spec: {containers: [{name: a, resources: {requests: {cpu: lots}}}]}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  selector: {}
  template: {spec: {containers: [{name: a}]}}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: p}
spec:
  limits: {nodes: "10", example.com/widgets: "3"}
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements: []
"#;
        let manifests = parse_manifests(text, "bad.yaml").unwrap();
        let errs = build_snapshot(&manifests, &|_| Vec::new()).unwrap_err();
        let shown: Vec<_> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with(
                "NodePool/p: spec.limits[example.com/widgets]: limits on \
                 \"example.com/widgets\" are not supported (supported: nodes, cpu, memory,"
            ),
            "{shown:#?}"
        );
        assert_eq!(
            shown[1..],
            [
                "Pod/default/stray: spec.nodeName: node \"nowhere\" is not in the manifests",
                "Deployment/default/web: spec.template.spec.containers[0].resources.requests.cpu: \
                 invalid quantity \"lots\": expected a number",
                "Pod/default/web-0: metadata.name: defined twice (by StatefulSet/web and by \
                 ReplicaSet/web)",
            ]
        );
    }
}
