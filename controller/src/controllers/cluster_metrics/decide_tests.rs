use serde_json::json;

use super::*;
use crate::model::objects::read_node_pool;

fn node(name: &str, pool: Option<&str>) -> Arc<Node> {
    let mut labels = json!({
        "topology.kubernetes.io/zone": "us-east-1a",
        "kubernetes.io/arch": "amd64",
        "karpenter.sh/capacity-type": "spot",
        "node.kubernetes.io/instance-type": "m5.large",
    });
    if let Some(pool) = pool {
        labels["karpenter.sh/nodepool"] = json!(pool);
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "29", "ephemeral-storage": "17Gi"}},
        }))
        .unwrap(),
    )
}

fn pod(name: &str, node: Option<&str>, cpu: &str, daemon: bool, phase: &str) -> Arc<Pod> {
    let owner = if daemon {
        json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "d", "controller": true}])
    } else {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "r", "controller": true}])
    };
    let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "prod", "ownerReferences": owner},
            "spec": spec,
            "status": {"phase": phase},
        }))
        .unwrap(),
    )
}

fn claim(pool: &str, deleting: bool) -> Arc<NodeClaim> {
    let mut metadata =
        json!({"name": format!("{pool}-x"), "labels": {"karpenter.sh/nodepool": pool}});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": metadata,
            "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}, "requirements": []},
            "status": {"capacity": {"cpu": "2", "memory": "8Gi", "pods": "29"}},
        }))
        .unwrap(),
    )
}

fn pool(name: &str) -> PoolView {
    let obj: kube_client::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}, "requirements": []}},
            "limits": {"cpu": "100", "memory": "400Gi"},
        },
    }))
    .unwrap();
    read_node_pool(&obj).unwrap()
}

fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn node_series_carry_allocatable_and_the_requests_of_bound_pods() {
    let s = series(
        &[node("n1", Some("default")), node("n2", None)],
        &[
            pod("web-1", Some("n1"), "500m", false, "Running"),
            pod("agent-1", Some("n1"), "100m", true, "Running"),
            pod("done", Some("n1"), "4", false, "Succeeded"),
            pod("pending", None, "1", false, "Pending"),
        ],
        &[],
        &[],
    );
    assert_eq!(s.node_count, 2);
    let n1 = &s.nodes["n1"];
    assert_eq!(n1.labels.nodepool, "default");
    assert_eq!(n1.labels.instance_type, "m5.large");
    assert_eq!(
        n1.allocatable,
        map(&[
            ("cpu", 1.93),
            ("memory", 7.0 * 1024.0 * 1024.0 * 1024.0),
            ("pods", 29.0),
            ("ephemeral_storage", 17.0 * 1024.0 * 1024.0 * 1024.0)
        ])
    );
    assert!(
        (n1.pod_requests["cpu"] - 0.6).abs() < 1e-9,
        "DaemonSet pods included, terminal pods not: {:?}",
        n1.pod_requests
    );
    assert_eq!(n1.pod_requests["pods"], 2.0);
    assert_eq!(n1.pod_requests["memory"], 512.0 * 1024.0 * 1024.0);
    assert_eq!(
        n1.pod_requests["ephemeral_storage"], 0.0,
        "every allocatable resource has a series"
    );
    assert!((n1.daemon_requests["cpu"] - 0.1).abs() < 1e-9);
    assert_eq!(n1.daemon_requests["pods"], 1.0);
    let n2 = &s.nodes["n2"];
    assert_eq!(n2.labels.nodepool, NOT_APPLICABLE, "a node no pool owns");
    assert_eq!(n2.pod_requests["cpu"], 0.0);
}

#[test]
fn every_pod_has_a_state_with_its_nodes_labels() {
    let s = series(
        &[node("n1", Some("default"))],
        &[
            pod("web-1", Some("n1"), "500m", false, "Running"),
            pod("pending", None, "1", false, "Pending"),
        ],
        &[],
        &[],
    );
    let web = s.pods.iter().find(|p| p.name == "web-1").unwrap();
    assert_eq!(
        web,
        &PodState {
            name: "web-1".into(),
            namespace: "prod".into(),
            owner: "/apis/apps/v1/namespaces/prod/replicasets/web-7d9f".into(),
            node: "n1".into(),
            nodepool: "default".into(),
            zone: "us-east-1a".into(),
            arch: "amd64".into(),
            capacity_type: "spot".into(),
            instance_type: "m5.large".into(),
            phase: "Running".into(),
        }
    );
    let pending = s.pods.iter().find(|p| p.name == "pending").unwrap();
    assert_eq!(
        (
            pending.node.as_str(),
            pending.nodepool.as_str(),
            pending.phase.as_str()
        ),
        ("", "", "Pending")
    );
}

#[test]
fn pools_report_limits_and_the_capacity_of_their_live_claims() {
    let s = series(
        &[],
        &[],
        &[
            claim("default", false),
            claim("default", false),
            claim("default", true),
            claim("other", false),
        ],
        &[pool("default")],
    );
    let p = &s.pools["default"];
    assert_eq!(
        p.limit,
        map(&[("cpu", 100.0), ("memory", 400.0 * 1024.0 * 1024.0 * 1024.0)])
    );
    assert_eq!(
        p.usage,
        map(&[
            ("cpu", 4.0),
            ("memory", 16.0 * 1024.0 * 1024.0 * 1024.0),
            ("pods", 58.0)
        ]),
        "deleting claims do not count"
    );
    assert!(
        !s.pools.contains_key("other"),
        "claims of unknown pools are not reported"
    );
}

#[test]
fn resource_types_are_karpenters_form() {
    assert_eq!(resource_type("ephemeral-storage"), "ephemeral_storage");
    assert_eq!(resource_type("nvidia.com/gpu"), "nvidia.com/gpu");
    assert_eq!(resource_type("hugepages-1Gi"), "hugepages_1gi");
}
