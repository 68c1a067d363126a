use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::{NodeClaim, NodeClaimStatus};

use super::*;

const LAUNCH_TTL: Duration = Duration::from_secs(300);
const REG_TTL: Duration = Duration::from_secs(900);

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("valid test time")
}

fn claim(yaml_extra: &str) -> NodeClaim {
    let base = format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: default-abcde
  creationTimestamp: "1970-01-01T00:16:40Z"
  labels: {{karpenter.sh/nodepool: default, team: a}}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
  startupTaints: [{{key: example.com/agent, effect: NoSchedule}}]
  taints: [{{key: dedicated, value: db, effect: NoSchedule}}]
  {yaml_extra}
"#
    );
    serde_yaml::from_str(&base).expect("test claim parses")
}

fn cond(type_: &str, secs: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: type_.into(),
        message: String::new(),
        last_transition_time: Time(at(secs)),
        observed_generation: None,
    }
}

fn launched(mut c: NodeClaim, at_secs: i64, extra: &[&str]) -> NodeClaim {
    let mut status = NodeClaimStatus {
        provider_id: Some("aws:///us-east-1a/i-1".into()),
        ..NodeClaimStatus::default()
    };
    status.conditions.push(cond(conditions::LAUNCHED, at_secs));
    for t in extra {
        status.conditions.push(cond(t, at_secs));
    }
    c.status = Some(status);
    c
}

/// A node as it is once registered (with the termination finalizer).
fn node(ready: bool, taints: &[(&str, &str)], allocatable: &[(&str, &str)]) -> Node {
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            finalizers: Some(vec![TERMINATION_FINALIZER.to_owned()]),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some("aws:///us-east-1a/i-1".into()),
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: (*k).into(),
                        effect: (*e).into(),
                        ..Taint::default()
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..NodeCondition::default()
            }]),
            allocatable: Some(
                allocatable
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Quantity((*v).into())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..NodeStatus::default()
        }),
    }
}

#[test]
fn a_new_claim_is_launched_until_its_launch_ttl_passes() {
    let c = claim("");
    // Created at t=1000.
    assert_eq!(
        next_step(&c, None, at(1_100), LAUNCH_TTL, REG_TTL),
        LifecycleStep::Launch
    );
    match next_step(&c, None, at(1_300), LAUNCH_TTL, REG_TTL) {
        LifecycleStep::Delete { reason, .. } => assert_eq!(reason, "LaunchTimeout"),
        other => panic!("expected delete, got {other:?}"),
    }
}

#[test]
fn a_launched_claim_waits_for_its_node_then_times_out() {
    let c = launched(claim(""), 2_000, &[]);
    assert_eq!(
        next_step(&c, None, at(2_895), LAUNCH_TTL, REG_TTL),
        LifecycleStep::WaitForRegistration {
            recheck: Duration::from_secs(5)
        }
    );
    assert_eq!(
        next_step(&c, None, at(2_010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::WaitForRegistration {
            recheck: Duration::from_secs(10)
        }
    );
    match next_step(&c, None, at(2_900), LAUNCH_TTL, REG_TTL) {
        LifecycleStep::Delete { reason, .. } => assert_eq!(reason, "RegistrationTimeout"),
        other => panic!("expected delete, got {other:?}"),
    }
    let n = node(false, &[], &[]);
    assert_eq!(
        next_step(&c, Some(&n), at(2_900), LAUNCH_TTL, REG_TTL),
        LifecycleStep::Register
    );
}

#[test]
fn initialization_waits_for_ready_startup_taints_and_extended_resources() {
    let c = launched(
        claim("resources: {requests: {cpu: '1', nvidia.com/gpu: '1'}}"),
        2_000,
        &[conditions::REGISTERED],
    );
    let now = at(2_100);
    let not_ready = node(false, &[], &[("nvidia.com/gpu", "1")]);
    let tainted = node(
        true,
        &[("example.com/agent", "NoSchedule")],
        &[("nvidia.com/gpu", "1")],
    );
    let no_gpu = node(true, &[], &[("nvidia.com/gpu", "0")]);
    let good = node(
        true,
        &[("dedicated", "NoSchedule")],
        &[("nvidia.com/gpu", "1")],
    );
    for n in [&not_ready, &tainted, &no_gpu] {
        assert_eq!(
            next_step(&c, Some(n), now, LAUNCH_TTL, REG_TTL),
            LifecycleStep::WaitForInitialization
        );
    }
    assert_eq!(
        next_step(&c, Some(&good), now, LAUNCH_TTL, REG_TTL),
        LifecycleStep::Initialize
    );
    let done = launched(
        claim(""),
        2_000,
        &[conditions::REGISTERED, conditions::INITIALIZED],
    );
    assert_eq!(
        next_step(&done, Some(&good), now, LAUNCH_TTL, REG_TTL),
        LifecycleStep::Done
    );
}

#[test]
fn registration_takes_the_node_over() {
    let c = claim("");
    let n = node(
        false,
        &[
            ("karpenter.sh/unregistered", "NoExecute"),
            ("dedicated", "NoSchedule"),
        ],
        &[],
    );
    let owner = OwnerReference {
        api_version: "karpenter.sh/v1".into(),
        kind: "NodeClaim".into(),
        name: "default-abcde".into(),
        uid: "u-1".into(),
        ..OwnerReference::default()
    };
    let mut n = n;
    n.metadata.resource_version = Some("41".into());
    let patch = registration_patch(&c, &n, owner);
    // The taint list is replaced whole, so the patch only applies to the Node we read.
    assert_eq!(patch["metadata"]["resourceVersion"], "41");
    assert_eq!(
        patch["metadata"]["labels"]["karpenter.sh/registered"],
        "true"
    );
    assert_eq!(patch["metadata"]["labels"]["team"], "a");
    assert_eq!(patch["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let keys: Vec<&str> = patch["spec"]["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    // Unregistered removed, existing kept once, startup taint added.
    assert_eq!(keys, vec!["dedicated", "example.com/agent"]);
}

#[test]
fn a_registered_node_that_gets_the_unregistered_taint_back_has_it_removed_again() {
    // kube-controller-manager can write a stale taint list back after registration.
    let registered = launched(claim(""), 1000, &[conditions::REGISTERED]);
    let mut n = node(
        true,
        &[
            ("dedicated", "NoSchedule"),
            ("karpenter.sh/unregistered", "NoExecute"),
        ],
        &[],
    );
    n.metadata.resource_version = Some("77".into());
    assert_eq!(
        next_step(&registered, Some(&n), at(1010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::RemoveUnregisteredTaint
    );
    // Also after initialization: the stale write can land after we marked the claim.
    let initialized = launched(
        claim(""),
        1000,
        &[conditions::REGISTERED, conditions::INITIALIZED],
    );
    assert_eq!(
        next_step(&initialized, Some(&n), at(1010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::RemoveUnregisteredTaint
    );
    assert!(!is_initialized(&registered, &n));

    let patch = unregistered_taint_removal(&n);
    assert_eq!(patch["metadata"]["resourceVersion"], "77");
    let keys: Vec<&str> = patch["spec"]["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(keys, vec!["dedicated"]);

    // Once it is gone the claim proceeds as before.
    let clean = node(true, &[("dedicated", "NoSchedule")], &[]);
    assert_eq!(
        next_step(&registered, Some(&clean), at(1010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::Initialize
    );
    assert_eq!(
        next_step(&initialized, Some(&clean), at(1010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::Done
    );
}

#[test]
fn registration_puts_the_termination_finalizer_on_the_node_and_a_registered_node_gets_it_back() {
    let c = launched(claim(""), 2_000, &[]);
    let mut fresh = node(false, &[], &[]);
    fresh.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let owner = OwnerReference {
        uid: "claim-uid".into(),
        ..OwnerReference::default()
    };
    let patch = registration_patch(&c, &fresh, owner);
    assert_eq!(
        patch["metadata"]["finalizers"],
        serde_json::json!(["example.com/keep", TERMINATION_FINALIZER])
    );

    let registered = launched(claim(""), 2_000, &[conditions::REGISTERED]);
    let mut stripped = node(false, &[], &[]);
    stripped.metadata.finalizers = None;
    assert_eq!(
        next_step(&registered, Some(&stripped), at(2_010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::AddNodeFinalizer
    );
    // A Node being deleted is left to termination.
    stripped.metadata.deletion_timestamp = Some(Time(at(2_005)));
    assert_eq!(
        next_step(&registered, Some(&stripped), at(2_010), LAUNCH_TTL, REG_TTL),
        LifecycleStep::WaitForInitialization
    );
}
