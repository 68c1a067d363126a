use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use karpenter_core::api::NodeClaim;
use karpenter_core::fixtures;
use karpenter_core::scheduling::{SolveOptions, solve};
use kube_client::api::DynamicObject;

use super::*;
use crate::model::objects::read_node_pool;

fn pending_pod(name: &str, cpu: &str) -> Arc<Pod> {
    Arc::new(
        serde_yaml::from_str(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop}}
spec:
  containers: [{{name: c, image: x, resources: {{requests: {{cpu: "{cpu}", memory: 1Gi}}}}}}]
status:
  phase: Pending
  conditions: [{{type: PodScheduled, status: "False", reason: Unschedulable}}]
"#
        ))
        .expect("pod parses"),
    )
}

fn pool() -> PoolView {
    let obj: DynamicObject = serde_yaml::from_str(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default, uid: pool-uid}
spec:
  template:
    metadata: {labels: {team: a}}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: node.kubernetes.io/instance-type, operator: Exists, minValues: 2}
      startupTaints: [{key: example.com/agent, effect: NoSchedule}]
  limits: {cpu: "100"}
"#,
    )
    .expect("pool parses");
    read_node_pool(&obj).expect("pool reads")
}

fn types() -> BTreeMap<String, Vec<InstanceType>> {
    BTreeMap::from([(
        "default".to_string(),
        fixtures::benchmark_instance_types(20),
    )])
}

#[test]
fn pending_pods_become_claims_with_pool_labels_owner_and_requests() {
    let pods = vec![pending_pod("a", "1"), pending_pod("b", "1")];
    let pools = vec![pool()];
    let t = types();
    let built = build_snapshot(&ClusterObjects {
        pods: &pods,
        nodes: &[],
        pools: &pools,
        claims: &[],
        daemon_sets: &[],
        instance_types: &t,
        volumes: &VolumeObjects::default(),
    });
    assert!(built.problems.is_empty(), "{:?}", built.problems);
    assert_eq!(built.snapshot.pods.len(), 2);
    let decision = solve(&built.snapshot, &SolveOptions::default());
    assert_eq!(
        decision.new_node_claims.len(),
        1,
        "{:?}",
        decision.unschedulable
    );
    let claim = node_claim_for(&decision.new_node_claims[0], &pools[0]);
    let labels = claim.metadata.labels.clone().unwrap();
    assert_eq!(labels["karpenter.sh/nodepool"], "default");
    assert_eq!(labels["team"], "a");
    assert_eq!(claim.metadata.generate_name.as_deref(), Some("default-"));
    let annotations = claim.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations[karpenter_core::api::NODE_POOL_HASH_ANNOTATION_KEY],
        karpenter_core::api::nodepool_hash(&pools[0].node_pool),
        "the claim carries the hash of the template it is made from"
    );
    assert_eq!(
        annotations[karpenter_core::api::NODE_POOL_HASH_VERSION_ANNOTATION_KEY],
        karpenter_core::api::NODE_POOL_HASH_VERSION
    );
    let owner = &claim.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("NodePool", "pool-uid")
    );
    assert_eq!(claim.spec.resources.requests["cpu"].0, "2");
    assert_eq!(claim.spec.resources.requests["memory"].0, "2Gi");
    assert_eq!(claim.spec.startup_taints[0].key, "example.com/agent");
    let it = claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == labels::INSTANCE_TYPE)
        .expect("instance types listed");
    assert_eq!(
        it.values,
        decision.new_node_claims[0]
            .instance_types
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    );
    assert!(it.values.len() >= 2);
    assert_eq!(it.min_values, Some(2), "the pool's minValues is kept");
    let ct = claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == labels::CAPACITY_TYPE)
        .expect("capacity type kept");
    assert_eq!(ct.values, vec!["on-demand".to_string()]);
}

#[test]
fn an_in_flight_claim_absorbs_the_pods_it_was_made_for() {
    let pods = vec![pending_pod("a", "1"), pending_pod("b", "1")];
    let pools = vec![pool()];
    let t = types();
    let objects = ClusterObjects {
        pods: &pods,
        nodes: &[],
        pools: &pools,
        claims: &[],
        daemon_sets: &[],
        instance_types: &t,
        volumes: &VolumeObjects::default(),
    };
    let decision = solve(&build_snapshot(&objects).snapshot, &SolveOptions::default());
    let mut claim: NodeClaim = node_claim_for(&decision.new_node_claims[0], &pools[0]);
    claim.metadata.name = Some("default-abcde".into());
    let claims = vec![Arc::new(claim)];
    let again = build_snapshot(&ClusterObjects {
        claims: &claims,
        ..objects
    });
    let second = solve(&again.snapshot, &SolveOptions::default());
    assert!(second.new_node_claims.is_empty(), "{second:?}");
    assert_eq!(second.existing.len(), 1);
    assert_eq!(second.existing[0].node, "default-abcde");
    assert_eq!(second.existing[0].pods.len(), 2);
}

#[test]
fn bound_pods_stay_on_their_node_and_bad_pods_are_reported_not_fatal() {
    let node: Arc<Node> = Arc::new(
        serde_yaml::from_str(
            r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {karpenter.sh/nodepool: default}}
spec: {providerID: "aws:///us-east-1a/i-1"}
status:
  capacity: {cpu: "4", memory: 16Gi, pods: "110"}
  allocatable: {cpu: "4", memory: 16Gi, pods: "110"}
"#,
        )
        .expect("node parses"),
    );
    let mut bound = (*pending_pod("bound", "1")).clone();
    bound.spec.as_mut().unwrap().node_name = Some("n1".into());
    bound.status = None;
    let mut bad = (*pending_pod("bad", "1")).clone();
    bad.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()),
        );
    let pods = vec![Arc::new(bound), Arc::new(bad), pending_pod("ok", "1")];
    let nodes = vec![node];
    let pools = vec![pool()];
    let t = types();
    let built = build_snapshot(&ClusterObjects {
        pods: &pods,
        nodes: &nodes,
        pools: &pools,
        claims: &[],
        daemon_sets: &[],
        instance_types: &t,
        volumes: &VolumeObjects::default(),
    });
    assert_eq!(built.problems.len(), 1);
    assert!(
        built.problems[0].to_string().contains("shop/bad"),
        "{}",
        built.problems[0]
    );
    assert_eq!(built.snapshot.pods.len(), 1);
    assert_eq!(built.snapshot.nodes.len(), 1);
    assert_eq!(built.snapshot.nodes[0].pods.len(), 1);
    // The node's capacity counts against the pool's limits.
    assert_eq!(built.snapshot.node_pools[0].usage.cpu_millis(), 4000);
}

#[test]
fn resource_lists_are_exact() {
    let mut r = Resources::ZERO;
    r.0[resources::CPU] = 1500;
    r.0[resources::MEMORY] = (3 << 30) + (512 << 20);
    let list = resource_list(&r);
    assert_eq!(list["cpu"].0, "1500m");
    assert_eq!(list["memory"].0, "3584Mi");
    assert!(!list.contains_key("pods"));
}

fn pod_with_claim(name: &str, claim: &str) -> Arc<Pod> {
    let mut pod = (*pending_pod(name, "1")).clone();
    let volume = serde_json::from_value(serde_json::json!({
        "name": "data", "persistentVolumeClaim": {"claimName": claim},
    }))
    .expect("volume");
    pod.spec.as_mut().expect("spec").volumes = Some(vec![volume]);
    Arc::new(pod)
}

#[test]
fn a_pod_whose_volume_lives_in_one_zone_gets_a_claim_in_that_zone() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claim: Arc<PersistentVolumeClaim> = Arc::new(
        serde_yaml::from_str(
            "metadata: {name: data-a, namespace: shop}\nspec: {volumeName: pv-a, accessModes: [ReadWriteOnce]}",
        )
        .expect("claim parses"),
    );
    let volume: Arc<PersistentVolume> = Arc::new(
        serde_yaml::from_str(
            r#"
metadata: {name: pv-a}
spec:
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [test-zone-3]}]
"#,
        )
        .expect("pv parses"),
    );
    let volumes = VolumeObjects::new(&[claim], &[volume], &[]);
    // A pod without volumes places anywhere; the one with the zonal volume must follow it.
    let pods = vec![
        pod_with_claim("a", "data-a"),
        pod_with_claim("b", "missing"),
    ];
    let pools = vec![pool()];
    let t = types();
    let built = build_snapshot(&ClusterObjects {
        pods: &pods,
        nodes: &[],
        pools: &pools,
        claims: &[],
        daemon_sets: &[],
        instance_types: &t,
        volumes: &volumes,
    });
    // The pod whose claim does not exist is left out, naming the field.
    assert_eq!(built.snapshot.pods.len(), 1, "{:?}", built.problems);
    assert_eq!(built.problems.len(), 1);
    assert_eq!(built.problems[0].object, "Pod/shop/b");
    assert_eq!(
        built.problems[0].field,
        "spec.volumes[0].persistentVolumeClaim.claimName"
    );
    let decision = solve(&built.snapshot, &SolveOptions::default());
    assert_eq!(decision.new_node_claims.len(), 1, "{decision:?}");
    let claim = node_claim_for(&decision.new_node_claims[0], &pools[0]);
    let zone = claim
        .spec
        .requirements
        .iter()
        .find(|r| r.key == "topology.kubernetes.io/zone")
        .map(|r| r.values.clone());
    assert_eq!(zone, Some(vec!["test-zone-3".to_owned()]));
}
