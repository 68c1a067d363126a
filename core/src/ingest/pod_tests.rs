//! Tests of [`super`]: requests math, every field conversion, pending checks.

use super::*;
use crate::requirements::Requirements;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, NVIDIA_GPU, PODS};
use crate::snapshot::{LabelSelector, TaintEffect, Toleration};

fn k8s_pod(yaml: &str) -> k8s::Pod {
    serde_yaml::from_str(yaml).unwrap()
}

fn convert(yaml: &str) -> snapshot::Pod {
    pod_from_k8s(&k8s_pod(yaml)).unwrap()
}

const MI: i64 = 1 << 20;

#[test]
fn requests_take_max_of_init_and_sum_plus_overhead() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0}
spec:
  overhead: {cpu: 10m, memory: 1Mi}
  initContainers:
    - name: setup
      resources: {requests: {cpu: 500m, memory: 64Mi}}
  containers:
    - name: a
      resources: {requests: {cpu: 100m, memory: 128Mi, ephemeral-storage: 1Gi}}
    - name: b
      # Only a limit for cpu: the API server defaults the request to it.
      resources: {limits: {cpu: 200m, memory: 256Mi}, requests: {memory: 64Mi}}
"#,
    );
    assert_eq!(pod.key.to_string(), "default/web-0");
    assert_eq!(pod.requests.0[CPU], 500 + 10, "init container wins on cpu");
    assert_eq!(
        pod.requests.0[MEMORY],
        192 * MI + MI,
        "sum wins on memory; limit ignored"
    );
    assert_eq!(pod.requests.0[EPHEMERAL_STORAGE], 1 << 30);
    assert_eq!(pod.requests.0[PODS], 1);
}

#[test]
fn sidecars_add_to_the_sum_and_to_later_init_steps() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: jobs}
spec:
  initContainers:
    - {name: setup, resources: {requests: {cpu: 120m}}}
    - {name: proxy, restartPolicy: Always, resources: {requests: {cpu: 50m, memory: 10Mi}}}
    - {name: migrate, resources: {requests: {cpu: 200m}}}
  containers:
    - {name: app, resources: {requests: {cpu: 100m, memory: 20Mi}}}
"#,
    );
    // Steps: setup 120m, proxy 50m, migrate 200m + proxy 50m = 250m; sum 100m + 50m.
    assert_eq!(pod.requests.0[CPU], 250);
    assert_eq!(pod.requests.0[MEMORY], 30 * MI);
    assert_eq!(pod.key.namespace, "jobs");
}

#[test]
fn pod_level_resources_replace_cpu_and_memory() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  resources: {limits: {cpu: "2"}}
  containers:
    - {name: app, resources: {requests: {cpu: 100m, memory: 20Mi}}}
"#,
    );
    assert_eq!(pod.requests.0[CPU], 2000);
    assert_eq!(pod.requests.0[MEMORY], 20 * MI);
}

#[test]
fn extended_resources_go_to_slots_or_other_requests() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: app
      resources:
        limits: {nvidia.com/gpu: "2", example.com/dongle: "1", hugepages-2Mi: 4Mi}
"#,
    );
    assert_eq!(pod.requests.0[NVIDIA_GPU], 2);
    assert_eq!(pod.other_requests["example.com/dongle"], 1);
    assert_eq!(pod.other_requests["hugepages-2Mi"], 4 * MI);
}

#[test]
fn invalid_quantity_names_object_and_field() {
    let err = pod_from_k8s(&k8s_pod(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0}
spec:
  containers:
    - {name: a}
    - {name: b, resources: {requests: {cpu: abc}}}
"#,
    ))
    .unwrap_err();
    assert_eq!(err.object, "Pod/default/web-0");
    assert_eq!(err.field, "spec.containers[1].resources.requests.cpu");
    assert_eq!(
        err.to_string(),
        "Pod/default/web-0: spec.containers[1].resources.requests.cpu: invalid quantity \
             \"abc\": expected a number"
    );
    let err = pod_from_k8s(&k8s_pod(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: i, resources: {limits: {memory: 1Qi}}}]
  containers: [{name: a}]
"#,
    ))
    .unwrap_err();
    assert_eq!(err.field, "spec.initContainers[0].resources.limits.memory");
}

#[test]
fn node_selector_and_node_affinity() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeSelector: {kubernetes.io/arch: arm64}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: topology.kubernetes.io/zone, operator: In, values: [us-west-2a, us-west-2b]}
              - {key: karpenter.k8s.aws/instance-cpu, operator: Gt, values: ["3"]}
          - matchFields:
              - {key: metadata.name, operator: In, values: [node-a]}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 50
          preference:
            matchExpressions: [{key: karpenter.sh/capacity-type, operator: In, values: [spot]}]
  containers: [{name: a}]
"#,
    );
    let mut sel = Requirements::new();
    sel.add("kubernetes.io/arch", Requirement::single("arm64"));
    assert_eq!(pod.node_selector, sel);
    assert_eq!(pod.required_node_affinity.len(), 2);
    assert_eq!(
        pod.required_node_affinity[0].to_string(),
        "karpenter.k8s.aws/instance-cpu Gt 3, topology.kubernetes.io/zone In [us-west-2a \
             us-west-2b]"
    );
    assert_eq!(
        pod.required_node_affinity[1].to_string(),
        "kubernetes.io/hostname In [node-a]"
    );
    assert_eq!(pod.preferred_node_affinity.len(), 1);
    assert_eq!(pod.preferred_node_affinity[0].0, 50);
    assert_eq!(
        pod.preferred_node_affinity[0].1.to_string(),
        "karpenter.sh/capacity-type In [spot]"
    );
}

#[test]
fn deprecated_node_labels_are_read_as_stable_ones_but_topology_keys_are_not() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  nodeSelector: {beta.kubernetes.io/arch: arm64, beta.kubernetes.io/os: linux}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: failure-domain.beta.kubernetes.io/zone, operator: In, values: [us-west-2a]}
              - {key: failure-domain.beta.kubernetes.io/region, operator: In, values: [us-west-2]}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 10
          preference:
            matchExpressions:
              - {key: beta.kubernetes.io/instance-type, operator: In, values: [m5.large]}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: failure-domain.beta.kubernetes.io/zone
      whenUnsatisfiable: DoNotSchedule
      labelSelector: {matchLabels: {app: p}}
  containers: [{name: a}]
"#,
    );
    assert_eq!(
        pod.node_selector.to_string(),
        "kubernetes.io/arch In [arm64], kubernetes.io/os In [linux]"
    );
    assert_eq!(
        pod.required_node_affinity[0].to_string(),
        "topology.kubernetes.io/region In [us-west-2], topology.kubernetes.io/zone In [us-west-2a]"
    );
    assert_eq!(
        pod.preferred_node_affinity[0].1.to_string(),
        "node.kubernetes.io/instance-type In [m5.large]"
    );
    // Karpenter keeps topology keys as written.
    assert_eq!(
        pod.topology_spread[0].topology_key,
        "failure-domain.beta.kubernetes.io/zone"
    );
}

#[test]
fn pod_affinity_terms() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p, labels: {app: web, version: v2}}
spec:
  affinity:
    podAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: topology.kubernetes.io/zone
          labelSelector:
            matchLabels: {app: cache}
            matchExpressions: [{key: tier, operator: NotIn, values: [test]}]
          namespaces: [cache]
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 10
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app: db}}
            namespaceSelector: {}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app: web}}
          matchLabelKeys: [version]
          namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 5
          podAffinityTerm: {topologyKey: topology.kubernetes.io/zone}
  containers: [{name: a}]
"#,
    );
    let req = &pod.pod_affinity[0];
    assert_eq!(req.topology_key, "topology.kubernetes.io/zone");
    assert_eq!(req.namespaces, vec!["cache"]);
    assert_eq!(req.namespace_selector, None);
    assert_eq!(req.selector.match_labels["app"], "cache");
    assert_eq!(
        req.selector.match_expressions,
        vec![(
            "tier".to_string(),
            Operator::NotIn,
            vec!["test".to_string()]
        )]
    );
    let (w, pref) = &pod.preferred_pod_affinity[0];
    assert_eq!(*w, 10);
    assert_eq!(pref.namespace_selector, Some(LabelSelector::default()));

    let anti = &pod.pod_anti_affinity[0];
    assert_eq!(
        anti.selector.match_expressions,
        vec![("version".to_string(), Operator::In, vec!["v2".to_string()])],
        "matchLabelKeys merged with the pod's own value"
    );
    let ns_sel = anti.namespace_selector.as_ref().unwrap();
    assert_eq!(ns_sel.match_expressions[0].1, Operator::Exists);
    // A missing labelSelector matches no pods.
    let (_, nothing) = &pod.preferred_pod_anti_affinity[0];
    assert!(!nothing.selector.matches(&pod.labels));
    assert!(!nothing.selector.matches(&Default::default()));
    assert_eq!(pod.labels["app"], "web");
}

#[test]
fn topology_spread_tolerations_host_ports_owner() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-abc
  labels: {app: web, pod-template-hash: 7d9f8}
  ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f8, uid: u1, controller: true}
spec:
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: DoNotSchedule
      minDomains: 3
      labelSelector: {matchLabels: {app: web}}
      matchLabelKeys: [pod-template-hash, absent-key]
    - maxSkew: 2
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector: {matchLabels: {app: web}}
  tolerations:
    - {key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}
    - {key: spot, operator: Exists}
    - {operator: Exists}
  containers:
    - name: a
      ports:
        - {containerPort: 80, hostPort: 8080}
        - {containerPort: 53, hostPort: 53, protocol: UDP, hostIP: 10.0.0.1}
        - {containerPort: 9090}
"#,
    );
    let zone = &pod.topology_spread[0];
    assert_eq!(zone.max_skew, 1);
    assert_eq!(zone.when_unsatisfiable, WhenUnsatisfiable::DoNotSchedule);
    assert_eq!(zone.min_domains, Some(3));
    assert_eq!(
        zone.selector.match_expressions,
        vec![(
            "pod-template-hash".to_string(),
            Operator::In,
            vec!["7d9f8".to_string()]
        )]
    );
    let host = &pod.topology_spread[1];
    assert_eq!(host.when_unsatisfiable, WhenUnsatisfiable::ScheduleAnyway);
    assert!(host.selector.match_expressions.is_empty());

    assert_eq!(
        pod.tolerations,
        vec![
            Toleration {
                key: "dedicated".into(),
                exists: false,
                value: "gpu".into(),
                effect: Some(TaintEffect::NoSchedule),
            },
            Toleration {
                key: "spot".into(),
                exists: true,
                value: String::new(),
                effect: None,
            },
            Toleration {
                key: String::new(),
                exists: true,
                value: String::new(),
                effect: None,
            },
        ]
    );
    assert_eq!(
        pod.host_ports,
        vec![
            HostPort {
                ip: String::new(),
                port: 8080,
                protocol: "TCP".into()
            },
            HostPort {
                ip: "10.0.0.1".into(),
                port: 53,
                protocol: "UDP".into()
            },
        ]
    );
    assert_eq!(pod.owner.as_deref(), Some("ReplicaSet/web-7d9f8"));
}

#[test]
fn host_network_exposes_every_container_port() {
    let pod = convert(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostNetwork: true
  containers: [{name: a, ports: [{containerPort: 9100}]}]
"#,
    );
    assert_eq!(pod.host_ports[0].port, 9100);
}

#[test]
fn bad_fields_are_named() {
    let cases = [
        (
            "tolerations: [{key: k, operator: Matches}]",
            "spec.tolerations[0].operator",
        ),
        (
            "tolerations: [{key: k, effect: Sometimes}]",
            "spec.tolerations[0].effect",
        ),
        (
            "topologySpreadConstraints: [{maxSkew: 1, topologyKey: z, whenUnsatisfiable: Maybe}]",
            "spec.topologySpreadConstraints[0].whenUnsatisfiable",
        ),
        (
            "topologySpreadConstraints: [{maxSkew: 0, topologyKey: z, whenUnsatisfiable: DoNotSchedule}]",
            "spec.topologySpreadConstraints[0].maxSkew",
        ),
        (
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
                 {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Gte, values: ['1']}]}]}}}",
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.\
                 nodeSelectorTerms[0].matchExpressions[0].operator",
        ),
        (
            "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
                 {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Gt, values: [x]}]}]}}}",
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.\
                 nodeSelectorTerms[0].matchExpressions[0]",
        ),
        (
            "affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: \
                 [{topologyKey: z, labelSelector: {matchExpressions: [{key: a, operator: Gt}]}}]}}",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].\
                 labelSelector.matchExpressions[0].operator",
        ),
    ];
    for (spec, field) in cases {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: \
                 a}}]\n  {spec}\n"
        );
        let err = pod_from_k8s(&k8s_pod(&yaml)).unwrap_err();
        assert_eq!(err.field, field, "{spec}: {err}");
    }
}

#[test]
fn pending_checks() {
    let base = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: a}]}
"#;
    let manifest = k8s_pod(base);
    assert!(is_pending(&manifest));
    assert!(
        !is_pending_unschedulable(&manifest),
        "no scheduler verdict yet"
    );

    let mut unschedulable = manifest.clone();
    unschedulable.status = Some(k8s::PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![k8s::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    assert!(is_pending_unschedulable(&unschedulable));
    assert!(is_provisionable(&unschedulable));

    let mut preempting = unschedulable.clone();
    preempting.status.as_mut().unwrap().nominated_node_name = Some("n1".into());
    assert!(!is_pending_unschedulable(&preempting));

    let mut bound = unschedulable.clone();
    bound.spec.as_mut().unwrap().node_name = Some("n1".into());
    assert!(!is_pending(&bound));

    let mut deleting = unschedulable.clone();
    deleting.metadata.deletion_timestamp = Some(meta::Time(Default::default()));
    assert!(!is_pending(&deleting));

    let mut ds = unschedulable.clone();
    ds.metadata.owner_references = Some(vec![meta::OwnerReference {
        kind: "DaemonSet".into(),
        name: "agent".into(),
        ..Default::default()
    }]);
    assert!(is_daemonset_pod(&ds));
    assert!(!is_daemonset_pod(&unschedulable));
    assert!(is_pending_unschedulable(&ds) && !is_provisionable(&ds));

    let mut done = manifest;
    done.status = Some(k8s::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    assert!(is_terminal(&done) && !is_pending(&done));
}
