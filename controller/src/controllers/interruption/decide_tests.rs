use karpenter_providers::aws::interruption::parse;
use serde_json::json;

use super::*;

/// A launched spot claim of pool `default` for `instance` in us-east-1b, with `labels` as its
/// instance facts.
fn claim(name: &str, instance: &str, deleting: bool, with_labels: bool) -> Arc<NodeClaim> {
    let mut labels =
        json!({"karpenter.sh/nodepool": "default", "karpenter.sh/capacity-type": "spot"});
    if with_labels {
        labels["node.kubernetes.io/instance-type"] = json!("m5.large");
        labels["topology.kubernetes.io/zone"] = json!("us-east-1b");
    }
    let mut metadata = json!({"name": name, "uid": format!("uid-{name}"), "labels": labels});
    if deleting {
        metadata["deletionTimestamp"] = json!("2024-05-14T09:00:00Z");
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodeClaim",
            "metadata": metadata,
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": [],
            },
            "status": {"providerID": format!("aws:///us-east-1b/{instance}")},
        }))
        .expect("test claim"),
    )
}

fn node(name: &str, instance: &str) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"providerID": format!("aws:///us-east-1b/{instance}")},
        }))
        .expect("test node"),
    )
}

fn index() -> InstanceIndex {
    InstanceIndex::new(
        &[
            claim("a", "i-aaa", false, true),
            claim("b", "i-bbb", false, true),
            claim("gone", "i-del", true, true),
        ],
        &[node("node-a", "i-aaa"), node("other", "i-zzz")],
    )
}

fn event(source: &str, detail_type: &str, detail: serde_json::Value) -> String {
    json!({
        "version": "0", "id": "e-1", "detail-type": detail_type, "source": source,
        "time": "2024-05-14T09:12:03Z", "detail": detail,
    })
    .to_string()
}

fn spot(instance: &str) -> String {
    event(
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
        json!({"instance-id": instance, "instance-action": "terminate"}),
    )
}

fn read(body: &str) -> (InterruptionKind, Vec<ClaimAction>, Vec<String>) {
    match plan(parse(body), &index()) {
        MessagePlan::Read {
            kind,
            actions,
            unknown,
            ..
        } => (kind, actions, unknown),
        other => panic!("not read: {other:?}"),
    }
}

#[test]
fn the_index_joins_claims_and_nodes_by_instance_id() {
    let idx = index();
    assert_eq!(idx.len(), 3);
    let a = idx.get("i-aaa").unwrap();
    assert_eq!(a.claim_name(), "a");
    assert_eq!(
        a.node.as_ref().and_then(|n| n.metadata.name.as_deref()),
        Some("node-a")
    );
    assert!(idx.get("i-bbb").unwrap().node.is_none(), "not registered");
    assert!(
        idx.get("i-zzz").is_none(),
        "a node without a claim is not ours"
    );
}

#[test]
fn claims_without_a_provider_id_are_not_indexed() {
    let mut c = (*claim("new", "i-x", false, true)).clone();
    c.status = None;
    assert!(InstanceIndex::new(&[Arc::new(c)], &[]).is_empty());
}

#[test]
fn a_spot_interruption_deletes_the_claim_and_takes_its_offering_away() {
    let (kind, actions, unknown) = read(&spot("i-aaa"));
    assert_eq!(kind, InterruptionKind::SpotInterrupted);
    assert!(unknown.is_empty());
    let [a] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(a.target.claim_name(), "a");
    assert!(a.delete);
    assert_eq!(a.event.as_ref().unwrap().reason, "SpotInterrupted");
    assert_eq!(a.event.as_ref().unwrap().type_, EventType::Warning);
    assert_eq!(
        a.unavailable,
        Some(("m5.large".into(), "us-east-1b".into(), "spot".into()))
    );
    assert_eq!(
        (a.target.node_pool(), a.target.capacity_type()),
        ("default", "spot")
    );
}

#[test]
fn the_zone_comes_from_the_provider_id_when_the_claim_has_no_zone_label() {
    let mut c = (*claim("a", "i-aaa", false, true)).clone();
    c.metadata
        .labels
        .as_mut()
        .unwrap()
        .remove("topology.kubernetes.io/zone");
    let idx = InstanceIndex::new(&[Arc::new(c)], &[]);
    let MessagePlan::Read { actions, .. } = plan(parse(&spot("i-aaa")), &idx) else {
        panic!()
    };
    assert_eq!(actions[0].unavailable.as_ref().unwrap().1, "us-east-1b");
    // Without an instance type there is no offering to mark; the claim still goes.
    let idx = InstanceIndex::new(&[claim("a", "i-aaa", false, false)], &[]);
    let MessagePlan::Read { actions, .. } = plan(parse(&spot("i-aaa")), &idx) else {
        panic!()
    };
    assert_eq!(actions[0].unavailable, None);
    assert!(actions[0].delete);
}

#[test]
fn a_rebalance_recommendation_only_publishes_an_event() {
    let (kind, actions, _) = read(&event(
        "aws.ec2",
        "EC2 Instance Rebalance Recommendation",
        json!({"instance-id": "i-aaa"}),
    ));
    assert_eq!(kind, InterruptionKind::RebalanceRecommendation);
    assert_eq!(actions.len(), 1);
    assert!(!actions[0].delete);
    assert_eq!(actions[0].unavailable, None);
    let e = actions[0].event.as_ref().unwrap();
    assert_eq!(
        (e.type_, e.reason),
        (EventType::Normal, "SpotRebalanceRecommendation")
    );
}

#[test]
fn state_changes_and_scheduled_changes_delete_with_their_reasons() {
    let state = |s: &str| {
        event(
            "aws.ec2",
            "EC2 Instance State-change Notification",
            json!({"instance-id": "i-bbb", "state": s}),
        )
    };
    for (body, reason) in [
        (state("stopping"), "InstanceStopping"),
        (state("terminated"), "InstanceTerminating"),
        (
            event(
                "aws.ec2",
                "EC2 Capacity Reservation Instance Interruption Warning",
                json!({"instance-id": "i-bbb"}),
            ),
            "CapacityReservationInstanceInterrupted",
        ),
    ] {
        let (_, actions, _) = read(&body);
        assert!(actions[0].delete, "{reason}");
        assert_eq!(actions[0].event.as_ref().unwrap().reason, reason);
        assert_eq!(actions[0].unavailable, None, "only spot marks an offering");
    }
    let (_, actions, _) = read(&state("running"));
    assert!(actions.is_empty(), "running is a no-op");
}

#[test]
fn a_health_event_acts_on_every_known_instance_once() {
    let body = event(
        "aws.health",
        "AWS Health Event",
        json!({
            "service": "EC2", "eventTypeCategory": "scheduledChange",
            "affectedEntities": [
                {"entityValue": "i-aaa"}, {"entityValue": "i-unknown"},
                {"entityValue": "i-bbb"}, {"entityValue": "i-aaa"},
            ],
        }),
    );
    let (kind, actions, unknown) = read(&body);
    assert_eq!(kind, InterruptionKind::ScheduledChange);
    let names: Vec<&str> = actions.iter().map(|a| a.target.claim_name()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        actions
            .iter()
            .all(|a| a.delete && a.event.as_ref().unwrap().reason == "InstanceUnhealthy")
    );
    assert_eq!(unknown, ["i-unknown"]);
}

#[test]
fn instances_that_are_not_ours_get_nothing() {
    let (kind, actions, unknown) = read(&spot("i-someone-elses"));
    assert_eq!(kind, InterruptionKind::SpotInterrupted);
    assert!(actions.is_empty());
    assert_eq!(unknown, ["i-someone-elses"]);
}

#[test]
fn a_claim_already_being_deleted_is_not_deleted_again_but_its_offering_is_marked() {
    let (_, actions, _) = read(&spot("i-del"));
    let [a] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(!a.delete);
    assert_eq!(a.event, None);
    assert!(a.unavailable.is_some());
}

#[test]
fn unreadable_bodies_and_no_ops() {
    assert!(matches!(
        plan(parse("not json"), &index()),
        MessagePlan::Unreadable(_)
    ));
    let (kind, actions, unknown) = read(&event(
        "aws.autoscaling",
        "EC2 Instance Launch Successful",
        json!({}),
    ));
    assert_eq!(kind, InterruptionKind::NoOp);
    assert!(actions.is_empty() && unknown.is_empty());
}

#[test]
fn every_kind_but_no_op_has_an_action_and_only_rebalance_keeps_the_node() {
    for kind in InterruptionKind::ALL {
        match kind_action(kind) {
            None => assert_eq!(kind, InterruptionKind::NoOp),
            Some(a) => assert_eq!(
                a.delete,
                kind != InterruptionKind::RebalanceRecommendation,
                "{kind}"
            ),
        }
    }
}
