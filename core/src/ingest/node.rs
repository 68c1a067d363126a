//! Kubernetes `Node` (plus the pods bound to it) → scheduler [`ExistingNode`].

use k8s_openapi::api::core::v1 as k8s;

use super::IngestError;
use super::convert::{amounts, object_name, taints_from_k8s};
use super::pod::{is_terminal, pod_from_k8s};
use crate::labels;
use crate::resources::Resources;
use crate::snapshot::{ExistingNode, Taint, TaintEffect};

/// Taints that come and go with a node's health or registration. Karpenter ignores them when
/// deciding whether pods fit an existing node, since they are expected to clear.
pub const EPHEMERAL_TAINT_KEYS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
    labels::UNREGISTERED_TAINT,
];

/// Taint the node lifecycle controller puts on cordoned nodes (`spec.unschedulable`).
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Converts a Kubernetes node and the pods bound to it.
///
/// * allocatable comes from `status.allocatable` (native slots, others by name);
/// * labels are the node's, plus `kubernetes.io/hostname = <node name>` if the kubelet's label
///   is missing (hand-written manifests), so hostname topology still works;
/// * taints leave out [`EPHEMERAL_TAINT_KEYS`] and, while the node is not initialized (no
///   `karpenter.sh/initialized` label), any taint matching one of `startup_taints` by key and
///   effect (pass the owning NodePool's startup taints); a cordoned node gets the
///   `node.kubernetes.io/unschedulable:NoSchedule` taint if it lacks it;
/// * `marked_for_deletion` is set when the node is being deleted or carries the
///   `karpenter.sh/disrupted` taint;
/// * `bound_pods` are converted with [`pod_from_k8s`]; finished pods (`Succeeded`/`Failed`)
///   are skipped because they no longer hold resources. The caller picks the pods whose
///   `spec.nodeName` is this node.
pub fn existing_node_from_k8s(
    node: &k8s::Node,
    bound_pods: &[k8s::Pod],
    startup_taints: &[Taint],
) -> Result<ExistingNode, IngestError> {
    let object = object_name("Node", &node.metadata, false);
    let name = node
        .metadata
        .name
        .clone()
        .ok_or_else(|| IngestError::new(&object, "metadata.name", "missing"))?;
    let mut node_labels = node.metadata.labels.clone().unwrap_or_default();
    node_labels
        .entry(labels::HOSTNAME.to_string())
        .or_insert_with(|| name.clone());

    let (allocatable, other_allocatable) =
        match node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
            Some(list) => {
                let a = amounts(&object, "status.allocatable", list)?;
                (a.native, a.other)
            }
            None => (Resources::ZERO, Default::default()),
        };

    let spec = node.spec.as_ref();
    let raw = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let all_taints = taints_from_k8s(&object, "spec.taints", raw)?;
    let initialized = node_labels.contains_key(labels::NODE_INITIALIZED);
    let marked_for_deletion = node.metadata.deletion_timestamp.is_some()
        || all_taints.iter().any(|t| t.key == labels::DISRUPTED_TAINT);
    let mut taints: Vec<Taint> = all_taints
        .into_iter()
        .filter(|t| !EPHEMERAL_TAINT_KEYS.contains(&t.key.as_str()))
        .filter(|t| {
            initialized
                || !startup_taints
                    .iter()
                    .any(|s| s.key == t.key && s.effect == t.effect)
        })
        .collect();
    let cordoned = spec.and_then(|s| s.unschedulable) == Some(true);
    if cordoned && !taints.iter().any(|t| t.key == UNSCHEDULABLE_TAINT) {
        taints.push(Taint {
            key: UNSCHEDULABLE_TAINT.to_string(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
        });
    }

    let pods = bound_pods
        .iter()
        .filter(|p| !is_terminal(p))
        .map(pod_from_k8s)
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ExistingNode {
        name,
        labels: node_labels,
        taints,
        allocatable,
        other_allocatable,
        pods,
        in_flight: false,
        marked_for_deletion,
    })
}

/// `status.capacity` of a node in resource slots (what counts against NodePool limits).
/// Unknown resources are ignored: limits only cover native slots.
pub fn node_capacity(node: &k8s::Node) -> Result<Resources, IngestError> {
    let object = object_name("Node", &node.metadata, false);
    match node.status.as_ref().and_then(|s| s.capacity.as_ref()) {
        Some(list) => Ok(amounts(&object, "status.capacity", list)?.native),
        None => Ok(Resources::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{CPU, MEMORY, PODS};

    const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: ip-10-0-1-2
  labels:
    karpenter.sh/nodepool: default
    topology.kubernetes.io/zone: us-west-2a
spec:
  taints:
    - {key: node.kubernetes.io/not-ready, effect: NoSchedule}
    - {key: karpenter.sh/unregistered, effect: NoExecute}
    - {key: example.com/agent-not-ready, value: "true", effect: NoExecute}
    - {key: dedicated, value: gpu, effect: NoSchedule}
status:
  allocatable: {cpu: 1930m, memory: 7225Mi, pods: "29", example.com/dongle: "2"}
  capacity: {cpu: "2", memory: 7910Mi, pods: "29"}
"#;

    fn node(yaml: &str) -> k8s::Node {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn startup() -> Vec<Taint> {
        vec![Taint {
            key: "example.com/agent-not-ready".into(),
            value: "true".into(),
            effect: TaintEffect::NoExecute,
        }]
    }

    #[test]
    fn converts_allocatable_labels_and_taints() {
        let pod: k8s::Pod = serde_yaml::from_str(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: bound, namespace: kube-system}
spec:
  nodeName: ip-10-0-1-2
  containers: [{name: a, resources: {requests: {cpu: 250m}}}]
"#,
        )
        .unwrap();
        let mut finished = pod.clone();
        finished.metadata.name = Some("finished".into());
        finished.status = Some(k8s::PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        let n = existing_node_from_k8s(&node(NODE), &[pod, finished], &startup()).unwrap();
        assert_eq!(n.name, "ip-10-0-1-2");
        assert_eq!(n.allocatable.0[CPU], 1930);
        assert_eq!(n.allocatable.0[MEMORY], 7225 << 20);
        assert_eq!(n.allocatable.0[PODS], 29);
        assert_eq!(n.other_allocatable["example.com/dongle"], 2);
        assert_eq!(
            n.labels[labels::HOSTNAME],
            "ip-10-0-1-2",
            "hostname defaulted"
        );
        assert_eq!(n.labels[labels::ZONE], "us-west-2a");
        // Ephemeral and (not yet initialized) startup taints are dropped.
        let keys: Vec<_> = n.taints.iter().map(|t| t.to_string()).collect();
        assert_eq!(keys, vec!["dedicated=gpu:NoSchedule"]);
        assert!(!n.marked_for_deletion && !n.in_flight);
        assert_eq!(n.pods.len(), 1, "finished pods hold nothing");
        assert_eq!(n.pods[0].requests.0[CPU], 250);

        assert_eq!(node_capacity(&node(NODE)).unwrap().0[CPU], 2000);
    }

    #[test]
    fn initialized_nodes_keep_startup_taints() {
        let mut k = node(NODE);
        k.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(labels::NODE_INITIALIZED.into(), "true".into());
        let n = existing_node_from_k8s(&k, &[], &startup()).unwrap();
        assert_eq!(n.taints.len(), 2);
        assert_eq!(n.taints[0].key, "example.com/agent-not-ready");
    }

    #[test]
    fn disrupted_deleting_and_cordoned_nodes() {
        let mut k = node(NODE);
        k.spec
            .as_mut()
            .unwrap()
            .taints
            .as_mut()
            .unwrap()
            .push(k8s::Taint {
                key: labels::DISRUPTED_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        assert!(
            existing_node_from_k8s(&k, &[], &[])
                .unwrap()
                .marked_for_deletion
        );

        let mut k = node(NODE);
        k.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Default::default(),
        ));
        assert!(
            existing_node_from_k8s(&k, &[], &[])
                .unwrap()
                .marked_for_deletion
        );

        let mut k = node(NODE);
        k.spec.as_mut().unwrap().unschedulable = Some(true);
        let n = existing_node_from_k8s(&k, &[], &[]).unwrap();
        assert!(!n.marked_for_deletion);
        assert!(n.taints.iter().any(|t| t.key == UNSCHEDULABLE_TAINT));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut k = node(NODE);
        k.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "memory".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into()),
            );
        let err = existing_node_from_k8s(&k, &[], &[]).unwrap_err();
        assert_eq!(err.object, "Node/ip-10-0-1-2");
        assert_eq!(err.field, "status.allocatable.memory");

        let mut k = node(NODE);
        k.spec.as_mut().unwrap().taints.as_mut().unwrap()[3].effect = "NoWay".into();
        let err = existing_node_from_k8s(&k, &[], &[]).unwrap_err();
        assert_eq!(err.field, "spec.taints[3].effect");
    }
}
