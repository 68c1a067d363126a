use super::*;

use karpenter_core::disruption::{Command, PodMove};
use karpenter_core::snapshot::PodKey;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_yaml::from_str(s).expect("test object parses")
}

fn disrupted(node: &str) -> Disrupted {
    Disrupted {
        node: node.into(),
        node_claim: format!("claim-{node}"),
        node_pool: "default".into(),
        instance_type: Some("m5.xlarge".into()),
        capacity_type: Some("on-demand".into()),
        zone: Some("us-east-1a".into()),
        price: Some(0.192),
    }
}

fn command(method: Method, nodes: &[&str], moves_to: &[&str]) -> Command {
    Command {
        method,
        action: Action::Delete,
        candidates: nodes.iter().map(|n| disrupted(n)).collect(),
        replacements: Vec::new(),
        moves: moves_to
            .iter()
            .enumerate()
            .map(|(i, to)| PodMove {
                pod: PodKey {
                    namespace: "default".into(),
                    name: format!("p{i}"),
                },
                from: nodes[0].into(),
                to: Destination::Node((*to).into()),
            })
            .collect(),
        price_before: 0.192 * nodes.len() as f64,
        price_after: 0.0,
    }
}

fn claim(name: &str, conditions: &[&str], deleting: bool) -> NodeClaim {
    let conds: Vec<String> = conditions
        .iter()
        .map(|c| {
            format!(
                "{{type: {c}, status: \"True\", reason: {c}, message: {c}, lastTransitionTime: \"2027-01-15T08:00:00Z\"}}"
            )
        })
        .collect();
    let deletion = if deleting {
        "\n  deletionTimestamp: \"2027-01-15T08:00:00Z\"\n  finalizers: [karpenter.sh/termination]"
    } else {
        ""
    };
    yaml(&format!(
        r#"
apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: {name}{deletion}
spec:
  nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
  requirements: []
status:
  nodeName: node-of-{name}
  conditions: [{}]
"#,
        conds.join(", ")
    ))
}

fn queued(replacements: &[&str]) -> QueuedCommand {
    let mut cmd = command(Method::SingleNodeConsolidation, &["n-1"], &[]);
    cmd.action = Action::Replace;
    QueuedCommand::new(
        7,
        &cmd,
        replacements.iter().map(|r| r.to_string()).collect(),
        t(0),
    )
}

const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_queue_waits_for_every_replacement_then_deletes() {
    let cmd = queued(&["r-1", "r-2"]);
    let launched = claim("r-1", &["Launched"], false);
    let ready = claim("r-2", &["Launched", "Initialized"], false);
    let step = queue_step(&cmd, &[&launched, &ready], t(30), TIMEOUT);
    assert_eq!(
        step,
        QueueStep::Wait {
            launching: vec![],
            waiting: vec!["r-1".into()],
            initialized: vec!["r-2".into()],
        },
        "one initialized replacement is not enough"
    );
    let r1_ready = claim("r-1", &["Launched", "Initialized"], false);
    assert_eq!(
        queue_step(&cmd, &[&r1_ready, &ready], t(40), TIMEOUT),
        QueueStep::Delete {
            initialized: vec!["r-1".into(), "r-2".into()]
        }
    );
}

#[test]
fn a_replacement_seen_initialized_once_is_not_looked_up_again() {
    let mut cmd = queued(&["r-1"]);
    cmd.initialized.insert("r-1".into());
    // Even if the replacement disappeared since (consolidated away, say).
    assert_eq!(
        queue_step(&cmd, &[], t(100), TIMEOUT),
        QueueStep::Delete {
            initialized: vec![]
        }
    );
}

#[test]
fn a_missing_replacement_rolls_back_after_the_grace_but_not_before() {
    let cmd = queued(&["r-1"]);
    assert_eq!(
        queue_step(&cmd, &[], t(2), TIMEOUT),
        QueueStep::Wait {
            launching: vec!["r-1".into()],
            waiting: vec![],
            initialized: vec![],
        },
        "the create may not be in the model yet"
    );
    match queue_step(&cmd, &[], t(6), TIMEOUT) {
        QueueStep::Rollback {
            why,
            never_initialized,
        } => {
            assert!(why.contains("r-1") && why.contains("gone"), "{why}");
            assert_eq!(never_initialized, 1);
        }
        other => panic!("{other:?}"),
    }
    let deleting = claim("r-1", &["Launched"], true);
    assert!(matches!(
        queue_step(&cmd, &[&deleting], t(3), TIMEOUT),
        QueueStep::Rollback { .. }
    ));
}

#[test]
fn a_replacement_that_never_initializes_rolls_back_at_the_timeout() {
    let cmd = queued(&["r-1"]);
    let launched = claim("r-1", &["Launched"], false);
    assert!(matches!(
        queue_step(&cmd, &[&launched], t(599), TIMEOUT),
        QueueStep::Wait { .. }
    ));
    match queue_step(&cmd, &[&launched], t(601), TIMEOUT) {
        QueueStep::Rollback { why, .. } => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_deleted_command_is_done_once_the_model_shows_the_deletion() {
    let mut cmd = queued(&[]);
    cmd.deleted = true;
    let live = claim("claim-n-1", &["Initialized"], false);
    assert_eq!(
        queue_step(&cmd, &[&live], t(1), TIMEOUT),
        QueueStep::Delete {
            initialized: vec![]
        },
        "not visible yet: delete again"
    );
    let going = claim("claim-n-1", &["Initialized"], true);
    assert_eq!(queue_step(&cmd, &[&going], t(2), TIMEOUT), QueueStep::Done);
    assert_eq!(queue_step(&cmd, &[], t(3), TIMEOUT), QueueStep::Done);
}

fn node(name: &str, taints: &str, deleting: bool, managed: bool) -> Node {
    let deletion = if deleting {
        "\n  deletionTimestamp: \"2027-01-15T08:00:00Z\""
    } else {
        ""
    };
    let labels = if managed {
        "{karpenter.sh/nodepool: default}"
    } else {
        "{}"
    };
    yaml(&format!(
        r#"
apiVersion: v1
kind: Node
metadata:
  name: {name}
  resourceVersion: "5"
  labels: {labels}{deletion}
spec:
  taints: {taints}
"#
    ))
}

const DISRUPTED: &str = "[{key: karpenter.sh/disrupted, effect: NoSchedule}]";

#[test]
fn marks_no_command_holds_are_cleaned_up_but_not_those_of_deleting_nodes() {
    let stale = node("node-of-a", DISRUPTED, false, true);
    let queued_node = node("n-1", DISRUPTED, false, true);
    let draining = node("node-of-b", DISRUPTED, true, true);
    let claim_deleting = node("node-of-c", DISRUPTED, false, true);
    let unmanaged = node("other", DISRUPTED, false, false);
    let a = claim("a", &["Initialized", DISRUPTION_REASON], false);
    let b = claim("b", &["Initialized"], false);
    let c = claim("c", &["Initialized", DISRUPTION_REASON], true);
    let held = claim("claim-n-1", &["Initialized", DISRUPTION_REASON], false);
    let q = vec![queued(&[])];
    let marks = stale_marks(
        &[&stale, &queued_node, &draining, &claim_deleting, &unmanaged],
        &[&a, &b, &c, &held],
        &q,
    );
    assert_eq!(
        marks,
        StaleMarks {
            nodes: vec!["node-of-a".into()],
            claims: vec!["a".into()],
        }
    );
}

#[test]
fn the_mark_patch_replaces_other_effects_and_is_guarded() {
    let n = node(
        "n",
        "[{key: karpenter.sh/disrupted, effect: NoExecute}, {key: team, value: a, effect: NoSchedule}]",
        false,
        true,
    );
    let patch = mark_patch(&n).expect("a patch");
    assert_eq!(patch["metadata"]["resourceVersion"], "5");
    let taints = patch["spec"]["taints"].as_array().expect("taints");
    assert_eq!(taints.len(), 2, "{patch}");
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "karpenter.sh/disrupted" && t["effect"] == "NoSchedule")
    );
    assert!(taints.iter().any(|t| t["key"] == "team"));
    let marked = node("n", DISRUPTED, false, true);
    assert_eq!(mark_patch(&marked), None, "already marked");

    let unmark = unmark_patch(&marked).expect("a patch");
    assert_eq!(unmark["spec"]["taints"], serde_json::json!([]));
    assert_eq!(unmark_patch(&node("n", "[]", false, true)), None);
}

#[test]
fn in_flight_commands_make_their_candidates_deleting_and_nominate_destinations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/disruption/multi-node-cap.yaml");
    let text = std::fs::read_to_string(&path).expect("scenario");
    let manifests =
        karpenter_core::ingest::parse_manifests(&text, "multi-node-cap.yaml").expect("parses");
    let catalog = karpenter_providers::aws::catalog::Catalog::embedded();
    let types = karpenter_providers::aws::instance_types::catalog_instance_types(
        catalog,
        &Default::default(),
    );
    let types_for = |_: &karpenter_core::api::NodePool| types.clone();
    let build = karpenter_core::ingest::build_snapshot(&manifests, &types_for).expect("snapshot");
    let mut input = karpenter_core::ingest::disruption::disruption_input(
        &manifests,
        &build.snapshot,
        &build.node_pools,
        "2026-12-07T12:00:00Z".parse().unwrap(),
        // The scenario's `multi-node-cap: 2`: two nodes move onto the third.
        karpenter_core::disruption::DisruptionOptions {
            multi_node_cap: Some(2),
            ..Default::default()
        },
        0.0,
    )
    .expect("input");
    let plan = karpenter_core::disruption::plan(&input);
    let first = next_command(&plan).expect("a command").clone();
    let q = vec![QueuedCommand::new(1, &first, vec![], input.now)];
    assert_eq!(q[0].destinations, vec!["n-3".to_string()]);
    mark_in_flight(&mut input, &q);
    assert!(input.nodes["n-1"].deleting && input.nodes["n-2"].deleting);
    assert_eq!(
        input.nodes["n-3"].nominated_until,
        Some(input.now + NOMINATION)
    );
    // A node initialized just now is nominated for 20 s; one initialized long ago is not.
    let mut fresh = input.clone();
    let now = fresh.now;
    if let Some(c) = fresh.nodes.get_mut("n-1").and_then(|f| f.claim.as_mut()) {
        c.initialized_at = Some(now - Duration::from_secs(5));
    }
    fresh.nodes.get_mut("n-1").expect("n-1").nominated_until = None;
    nominate_new_nodes(&mut fresh);
    assert_eq!(
        fresh.nodes["n-1"].nominated_until,
        Some(now + Duration::from_secs(15))
    );
    let again = karpenter_core::disruption::plan(&input);
    assert!(
        again.commands.is_empty(),
        "nothing is disrupted twice and the destination stays: {again:?}"
    );
}

fn kept(reasons: Vec<KeptReason>) -> Kept {
    Kept {
        node: "n".into(),
        node_claim: "c".into(),
        node_pool: "default".into(),
        reasons,
    }
}

#[test]
fn kept_nodes_get_the_event_of_their_first_actionable_reason() {
    let pod = PodKey {
        namespace: "shop".into(),
        name: "web-0".into(),
    };
    let (reason, action, message) = kept_event(&kept(vec![
        KeptReason::ConsolidateAfterPending {
            remaining: Duration::from_secs(30),
        },
        KeptReason::PdbBlocks {
            pdb: "shop/web".into(),
            pod: pod.clone(),
        },
    ]))
    .expect("an event");
    assert_eq!(reason, "DisruptionBlocked");
    assert_eq!(action, "pdb_blocks");
    assert!(
        message.contains("shop/web") && message.contains("web-0"),
        "{message}"
    );
    let (reason, _, message) = kept_event(&kept(vec![KeptReason::NoCheaperReplacement {
        current: 0.1,
        best: Some(0.2),
    }]))
    .expect("an event");
    assert_eq!(reason, "Unconsolidatable");
    assert!(message.contains("0.1"), "{message}");
    assert_eq!(kept_event(&kept(vec![KeptReason::InUse])), None);
    assert_eq!(kept_event(&kept(vec![KeptReason::NotInitialized])), None);
}

#[test]
fn expiration_is_left_to_its_controller_and_consolidation_is_validated() {
    let plan = Plan {
        commands: vec![
            command(Method::Expiration, &["old"], &[]),
            command(Method::Drift, &["d"], &[]),
        ],
        kept: vec![],
    };
    let next = next_command(&plan).expect("a command");
    assert_eq!(next.method, Method::Drift);
    assert!(!needs_validation(next));
    assert!(needs_validation(&command(Method::Emptiness, &["e"], &[])));
    assert!(needs_validation(&command(
        Method::MultiNodeConsolidation,
        &["a", "b"],
        &[]
    )));
    assert_eq!(reason_label(Method::Emptiness), "empty");
    assert_eq!(reason_label(Method::Drift), "drifted");
}

#[test]
fn the_next_wake_is_the_earliest_timer_of_the_kept_nodes() {
    let now = t(0);
    let plan = Plan {
        commands: vec![],
        kept: vec![
            kept(vec![KeptReason::ConsolidateAfterPending {
                remaining: Duration::from_secs(90),
            }]),
            kept(vec![KeptReason::BudgetExhausted {
                pool: "default".into(),
                reason: DisruptionReason::Underutilized,
                allowed: 0,
                disrupting: 0,
                until: Some(t(40)),
                error: None,
            }]),
            kept(vec![KeptReason::InUse]),
        ],
    };
    assert_eq!(next_wake(&plan, now), Some(Duration::from_secs(40)));
    assert_eq!(next_wake(&Plan::default(), now), None);
}

#[test]
fn a_pool_with_nodes_and_no_allowed_disruptions_gets_a_nodepool_event() {
    use karpenter_core::disruption::budgets::{BudgetDetail, BudgetMap};
    let detail = |allowed: Option<u32>, total: u32, budget: Option<usize>| BudgetDetail {
        allowed,
        total,
        disrupting: 0,
        budget,
        until: budget.map(|_| t(3600)),
        error: None,
    };
    let mut map = BudgetMap::default();
    map.detail.insert(
        ("frozen".into(), DisruptionReason::Underutilized),
        detail(Some(0), 3, Some(1)),
    );
    map.detail.insert(
        ("frozen".into(), DisruptionReason::Drifted),
        detail(Some(2), 3, Some(0)),
    );
    map.detail.insert(
        ("empty".into(), DisruptionReason::Underutilized),
        detail(Some(0), 0, Some(0)),
    );
    map.detail.insert(
        ("open".into(), DisruptionReason::Empty),
        detail(None, 5, None),
    );
    let mut broken = detail(Some(0), 2, None);
    broken.error = Some("budgets[0].schedule: bad cron".into());
    map.detail
        .insert(("broken".into(), DisruptionReason::Empty), broken);

    let events = blocked_pools(&map);
    let pools: Vec<(&str, &str)> = events.iter().map(|(p, r, _)| (p.as_str(), *r)).collect();
    // Only pools that have nodes and allow nothing; a pool without nodes has nothing to block.
    assert_eq!(pools, [("broken", "Empty"), ("frozen", "Underutilized")]);
    assert!(events[1].2.starts_with(
        "No allowed disruptions for disruption reason Underutilized due to blocking budget"
    ));
    assert!(
        events[1].2.contains("spec.disruption.budgets[1]"),
        "{}",
        events[1].2
    );
    assert!(events[0].2.contains("bad cron"), "{}", events[0].2);
}

#[test]
fn moved_pods_are_told_where_they_will_run() {
    let mut cmd = command(Method::SingleNodeConsolidation, &["a"], &[]);
    let key = |n: &str| PodKey {
        namespace: "web".into(),
        name: n.into(),
    };
    cmd.moves = vec![
        PodMove {
            pod: key("p1"),
            from: "a".into(),
            to: Destination::Node("b".into()),
        },
        PodMove {
            pod: key("p2"),
            from: "a".into(),
            to: Destination::Replacement(0),
        },
        PodMove {
            pod: key("p3"),
            from: "a".into(),
            to: Destination::Replacement(1),
        },
    ];
    let notes = nominations(&cmd, &["default-x7k2p".to_string()]);
    assert_eq!(
        notes,
        [
            (key("p1"), "Pod should schedule on: node/b".to_string()),
            (
                key("p2"),
                "Pod should schedule on: nodeclaim/default-x7k2p".to_string()
            ),
        ],
        "a replacement that was not created nominates nothing"
    );
}
