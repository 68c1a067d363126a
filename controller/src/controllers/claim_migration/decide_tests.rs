use super::*;
use crate::model::objects::read_node_pool;
use karpenter_core::api::v1beta1::nodeclaim::CONVERTED_MESSAGE;

/// As Karpenter 0.36 stores a claim of the seed's staging pool (served through v1, the API
/// server only relabels `apiVersion`).
fn claim_036(name: &str, pool: &str) -> DynamicObject {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: {name}
  uid: 4b9f0c8e-0000-4000-8000-00000000000{n}
  resourceVersion: "77"
  labels: {{karpenter.sh/nodepool: {pool}}}
  finalizers: [karpenter.sh/termination]
  managedFields: [{{manager: karpenter, operation: Update, apiVersion: karpenter.sh/v1beta1}}]
spec:
  requirements: [{{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}}]
  kubelet: {{maxPods: 110}}
  nodeClassRef: {{name: default}}
status:
  providerID: aws:///us-west-2a/i-0123456789abcdef0
"#,
        n = name.len() % 10
    ))
    .unwrap()
}

fn claim_v1(name: &str) -> DynamicObject {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata: {{name: {name}, labels: {{karpenter.sh/nodepool: staging}}}}
spec:
  requirements: []
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  expireAfter: 720h
"#
    ))
    .unwrap()
}

fn staging_pool(expire_after: &str) -> PoolView {
    let obj: DynamicObject = serde_yaml::from_str(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: staging}}
spec:
  template:
    spec:
      nodeClassRef: {{apiVersion: karpenter.k8s.aws/v1beta1, kind: EC2NodeClass, name: default}}
      requirements: []
  disruption: {{consolidationPolicy: WhenUnderutilized, expireAfter: {expire_after}}}
"#
    ))
    .unwrap();
    read_node_pool(&obj).unwrap()
}

#[test]
fn only_v1beta1_claims_are_rewritten_each_with_its_pools_lifetime() {
    let claims = [
        claim_v1("already-v1"),
        claim_036("staging-b", "staging"),
        claim_036("staging-a", "staging"),
    ];
    let plan = migrations(&claims, &[staging_pool("168h")]);
    let names: Vec<&str> = plan.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["staging-a", "staging-b"]);
    let claim = plan[0].outcome.as_ref().unwrap();
    assert_eq!(claim.spec.expire_after.as_str(), "168h");
    assert_eq!(claim.spec.node_class_ref.group, "karpenter.k8s.aws");
    // Conditional on the version read, and keeping what protects the node.
    assert_eq!(claim.metadata.resource_version.as_deref(), Some("77"));
    assert_eq!(
        claim.metadata.finalizers.as_deref(),
        Some(&["karpenter.sh/termination".to_owned()][..])
    );
    assert_eq!(claim.metadata.managed_fields, None);
    assert_eq!(
        claim.status.as_ref().and_then(|s| s.provider_id.as_deref()),
        Some("aws:///us-west-2a/i-0123456789abcdef0")
    );
}

#[test]
fn a_claim_whose_pool_is_gone_is_rewritten_without_expiry() {
    let plan = migrations(
        &[claim_036("orphan-a", "deleted-pool")],
        &[staging_pool("720h")],
    );
    assert!(
        plan[0]
            .outcome
            .as_ref()
            .unwrap()
            .spec
            .expire_after
            .is_never()
    );
}

#[test]
fn the_model_reads_a_v1beta1_claim_without_expiry_until_it_is_migrated() {
    let claim = crate::model::objects::read_node_claim(&claim_036("staging-a", "staging")).unwrap();
    assert!(claim.spec.expire_after.is_never());
    assert_eq!(claim.spec.node_class_ref.kind, "EC2NodeClass");
}

#[test]
fn a_claim_that_does_not_convert_is_reported_by_name_and_field() {
    let mut bad = claim_036("staging-bad", "staging");
    bad.data["spec"]["nodeClassRef"]["apiVersion"] = "no-version".into();
    let plan = migrations(&[bad], &[]);
    let err = plan[0].outcome.as_ref().unwrap_err();
    assert!(
        err.contains("NodeClaim/staging-bad") && err.contains("spec.nodeClassRef.apiVersion"),
        "{err}"
    );
}

#[test]
fn knative_conditions_are_completed_through_v1beta1_before_the_spec_is_rewritten() {
    let mut claim = claim_036("staging-a", "staging");
    claim.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    claim.data["status"]["conditions"] = serde_json::json!([
        {"type": "Launched", "status": "True", "severity": "Info"},
        {"type": "Initialized", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:01:00Z"},
    ]);
    let plan = migrations(&[claim], &[staging_pool("720h")]);
    let first = plan[0].status_first.as_ref().expect("a status write first");
    assert_eq!(
        first.types.as_ref().unwrap().api_version,
        "karpenter.sh/v1beta1"
    );
    assert_eq!(first.metadata.managed_fields, None);
    assert_eq!(
        first.data["status"]["conditions"],
        serde_json::json!([
            {"type": "Launched", "status": "True", "severity": "Info", "reason": "Launched", "message": CONVERTED_MESSAGE, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Initialized", "status": "True", "reason": "Ready", "message": CONVERTED_MESSAGE, "lastTransitionTime": "2026-01-01T00:01:00Z"},
        ])
    );
    // The spec write still carries everything.
    let claim = plan[0].outcome.as_ref().unwrap();
    assert_eq!(claim.spec.node_class_ref.group, "karpenter.k8s.aws");
}

#[test]
fn complete_conditions_need_no_status_write() {
    let mut claim = claim_036("staging-a", "staging");
    claim.data["status"]["conditions"] = serde_json::json!([
        {"type": "Launched", "status": "True", "reason": "Launched", "message": "launched", "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ]);
    assert_eq!(migrations(&[claim], &[]).remove(0).status_first, None);
}
