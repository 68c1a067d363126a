use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::jiff::Timestamp;
use karpenter_core::api::NodeClaim;

use super::*;
use crate::controllers::termination::drain::Wave;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
}

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).expect("test object parses")
}

/// A claim deleted at t(0) (2023-11-14T22:13:20Z).
fn deleted_claim(extra_spec: &str, annotations: &str) -> NodeClaim {
    yaml(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: c1
  deletionTimestamp: '2023-11-14T22:13:20Z'
  finalizers: [karpenter.sh/termination]
  annotations: {{{annotations}}}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
  {extra_spec}
status:
  providerID: aws:///us-east-1a/i-1
"#
    ))
}

fn node(name: &str, deleting: bool, ready: bool, extra: &str) -> Node {
    let deletion = if deleting {
        "deletionTimestamp: '2023-11-14T22:13:20Z'"
    } else {
        ""
    };
    let status = if ready { "True" } else { "Unknown" };
    yaml(&format!(
        r#"
metadata:
  name: {name}
  {deletion}
  finalizers: [karpenter.sh/termination]
spec:
  providerID: aws:///us-east-1a/i-1
  {extra}
status:
  conditions: [{{type: Ready, status: '{status}'}}]
"#
    ))
}

fn running_pod(name: &str, extra_spec: &str) -> Pod {
    yaml(&format!(
        r#"
metadata: {{name: {name}, namespace: shop, uid: uid-{name}}}
spec:
  nodeName: n1
  terminationGracePeriodSeconds: 30
  containers: [{{name: c, image: i}}]
  {extra_spec}
status: {{phase: Running}}
"#
    ))
}

fn attachment(name: &str, pv: Option<&str>) -> VolumeAttachment {
    let source = match pv {
        Some(pv) => format!("{{persistentVolumeName: {pv}}}"),
        None => "{inlineVolumeSpec: {csi: {driver: d, volumeHandle: h}}}".to_owned(),
    };
    yaml(&format!(
        "metadata: {{name: {name}}}\nspec: {{attacher: ebs.csi.aws.com, nodeName: n1, source: {source}}}"
    ))
}

#[test]
fn a_claim_with_a_grace_period_gets_its_deadline_stamped_first() {
    let claim = deleted_claim("terminationGracePeriod: 5m", "");
    assert_eq!(claim_step(&claim, &[]), ClaimStep::StampDeadline(t(300)));
    let stamped = deleted_claim(
        "terminationGracePeriod: 5m",
        "karpenter.sh/nodeclaim-termination-timestamp: '2023-11-14T22:18:20Z'",
    );
    assert_eq!(claim_deadline(&stamped), Some(t(300)));
    assert_eq!(
        claim_step(&stamped, &[]),
        ClaimStep::TerminateInstance("aws:///us-east-1a/i-1".into())
    );
    // No grace period: no deadline, straight on.
    let plain = deleted_claim("", "");
    assert_eq!(claim_deadline(&plain), None);
    assert!(matches!(
        claim_step(&plain, &[]),
        ClaimStep::TerminateInstance(_)
    ));
}

#[test]
fn a_claim_deletes_its_nodes_waits_for_them_then_terminates() {
    let claim = deleted_claim("", "");
    let alive = node("n1", false, true, "");
    assert_eq!(
        claim_step(&claim, &[&alive]),
        ClaimStep::DeleteNodes(vec!["n1".into()])
    );
    let draining = node("n1", true, true, "");
    assert_eq!(claim_step(&claim, &[&draining]), ClaimStep::AwaitNodes);
    assert!(matches!(
        claim_step(&claim, &[]),
        ClaimStep::TerminateInstance(_)
    ));
    let mut never_launched = claim.clone();
    never_launched.status = None;
    assert_eq!(claim_step(&never_launched, &[]), ClaimStep::RemoveFinalizer);
}

fn inputs<'a>(
    node: &'a Node,
    claims: &'a [&'a NodeClaim],
    pods: &'a [&'a Pod],
    attachments: &'a [&'a VolumeAttachment],
    volume_claims: &'a [&'a PersistentVolumeClaim],
    now: Timestamp,
) -> NodeInputs<'a> {
    NodeInputs {
        node,
        claims,
        pods,
        attachments,
        volume_claims,
        instance: InstanceState::NotAsked,
        now,
    }
}

#[test]
fn a_deleted_node_deletes_its_claim_taints_itself_and_drains() {
    let n = node("n1", true, true, "");
    let mut claim = deleted_claim("", "");
    claim.metadata.deletion_timestamp = None;
    let web = running_pod("web", "");
    let plan = node_plan(&inputs(&n, &[&claim], &[&web], &[], &[], t(0)));
    assert_eq!(plan.delete_claims, vec!["c1".to_owned()]);
    assert!(plan.taint);
    match plan.phase {
        NodePhase::Drain(d) => {
            assert_eq!(d.wave, Some(Wave::NonCritical));
            assert_eq!(d.evict.len(), 1);
        }
        other => panic!("expected a drain, got {other:?}"),
    }
    // Tainted and labelled already: no second patch.
    let tainted = node(
        "n1",
        true,
        true,
        "taints: [{key: karpenter.sh/disrupted, effect: NoSchedule}]",
    );
    let mut tainted = tainted;
    tainted.metadata.labels = Some(
        [(
            EXCLUDE_FROM_LOAD_BALANCERS.to_owned(),
            "karpenter".to_owned(),
        )]
        .into_iter()
        .collect(),
    );
    let plan = node_plan(&inputs(&tainted, &[], &[], &[], &[], t(0)));
    assert!(!plan.taint);
    assert_eq!(plan.phase, NodePhase::TerminateInstance);
}

#[test]
fn a_not_ready_node_whose_instance_is_gone_skips_the_drain_but_a_ready_one_does_not() {
    let web = running_pod("web", "");
    let dead = node("n1", true, false, "");
    let pods = [&web];
    let mut input = inputs(&dead, &[], &pods, &[], &[], t(0));
    input.instance = InstanceState::Gone;
    assert_eq!(node_plan(&input).phase, NodePhase::InstanceGone);
    // NotReady but the instance is still there: drain as usual.
    input.instance = InstanceState::Present;
    assert!(matches!(node_plan(&input).phase, NodePhase::Drain(_)));
    // Ready with the instance gone: still drained.
    let live = node("n1", true, true, "");
    let mut input = inputs(&live, &[], &pods, &[], &[], t(0));
    input.instance = InstanceState::Gone;
    assert!(matches!(node_plan(&input).phase, NodePhase::Drain(_)));
}

#[test]
fn volume_attachments_are_awaited_except_those_of_pods_that_stay() {
    let n = node("n1", true, true, "");
    let db = attachment("va-db", Some("pv-db"));
    let logs = attachment("va-logs", Some("pv-logs"));
    let inline = attachment("va-inline", None);
    let stays = running_pod(
        "agent",
        "tolerations: [{key: karpenter.sh/disrupted, operator: Exists}]\n  volumes: [{name: v, persistentVolumeClaim: {claimName: logs}}]",
    );
    let logs_claim: PersistentVolumeClaim =
        yaml("metadata: {name: logs, namespace: shop}\nspec: {volumeName: pv-logs}");
    let plan = node_plan(&inputs(
        &n,
        &[],
        &[&stays],
        &[&db, &logs, &inline],
        &[&logs_claim],
        t(0),
    ));
    assert_eq!(plan.phase, NodePhase::AwaitVolumes(vec!["va-db".into()]));
    // Once it detaches, on to the instance.
    let plan = node_plan(&inputs(
        &n,
        &[],
        &[&stays],
        &[&logs, &inline],
        &[&logs_claim],
        t(0),
    ));
    assert_eq!(plan.phase, NodePhase::TerminateInstance);
}

#[test]
fn past_the_deadline_termination_carries_on_whatever_is_left() {
    let n = node("n1", true, true, "");
    let claim = deleted_claim(
        "terminationGracePeriod: 1m",
        "karpenter.sh/nodeclaim-termination-timestamp: '2023-11-14T22:14:20Z'",
    );
    let keep: Pod = yaml(
        r#"
metadata: {name: keep, namespace: shop, uid: u, annotations: {karpenter.sh/do-not-disrupt: 'true'}}
spec: {nodeName: n1, terminationGracePeriodSeconds: 30, containers: [{name: c, image: i}]}
status: {phase: Running}
"#,
    );
    let va = attachment("va-db", Some("pv-db"));
    let before = node_plan(&inputs(&n, &[&claim], &[&keep], &[&va], &[], t(10)));
    match before.phase {
        NodePhase::Drain(d) => {
            assert!(d.evict.is_empty());
            assert_eq!(d.do_not_disrupt.len(), 1);
        }
        other => panic!("expected the do-not-disrupt pod to hold the drain: {other:?}"),
    }
    let after = node_plan(&inputs(&n, &[&claim], &[&keep], &[&va], &[], t(60)));
    assert_eq!(after.phase, NodePhase::TerminateInstance);
}

#[test]
fn the_taint_patch_replaces_other_effects_and_keeps_other_taints() {
    let n = node(
        "n1",
        true,
        true,
        "taints: [{key: karpenter.sh/disrupted, effect: NoExecute}, {key: example.com/gpu, effect: NoSchedule}]",
    );
    let patch = disrupted_taint_patch(&n);
    let taints = patch["spec"]["taints"].as_array().expect("taints");
    let keys: Vec<(String, String)> = taints
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap().to_owned(),
                t["effect"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("example.com/gpu".into(), "NoSchedule".into()),
            ("karpenter.sh/disrupted".into(), "NoSchedule".into()),
        ]
    );
    assert_eq!(
        patch["metadata"]["labels"][EXCLUDE_FROM_LOAD_BALANCERS],
        "karpenter"
    );
}

#[test]
fn finalizer_removal_keeps_other_finalizers_and_is_guarded_by_the_resource_version() {
    let current = vec!["other".to_owned(), "karpenter.sh/termination".to_owned()];
    let patch =
        finalizer_removal(&current, Some("42"), "karpenter.sh/termination").expect("present");
    assert_eq!(
        patch["metadata"]["finalizers"],
        serde_json::json!(["other"])
    );
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    assert!(
        finalizer_removal(
            &["other".to_owned()],
            Some("42"),
            "karpenter.sh/termination"
        )
        .is_none()
    );
}
