//! Consolidation validation (`disruption::validate`): a command still holds on the input it
//! was planned from, and each change Karpenter's validation guards against (a new
//! do-not-disrupt pod, a budget closed, a node gone or filled, a destination gone) makes it
//! fail with the reason.

mod common;

use std::path::{Path, PathBuf};

use karpenter_core::api::nodepool::Budget;
use karpenter_core::disruption::{
    DisruptionInput, Invalid, KeptReason, Method, PodFacts, plan, validate,
};
use karpenter_core::snapshot::PodKey;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/disruption")
        .join(name)
}

/// The plan's first voluntary command, with the nodes expiration deletes marked deleting (the
/// expiration controller deletes them before the disruption loop plans).
fn first_voluntary(input: &mut DisruptionInput) -> Option<karpenter_core::disruption::Command> {
    let p = plan(input);
    for c in p.commands.iter().filter(|c| c.method == Method::Expiration) {
        for d in &c.candidates {
            if let Some(f) = input.nodes.get_mut(&d.node) {
                f.deleting = true;
            }
        }
    }
    p.commands
        .into_iter()
        .find(|c| c.method != Method::Expiration)
}

#[test]
fn every_scenarios_first_command_holds_on_its_own_input() {
    let mut checked = 0;
    let mut dir: Vec<_> = std::fs::read_dir(scenario(""))
        .expect("scenario dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    dir.sort();
    for path in dir {
        let mut input = common::disruption_input_of(&path);
        let Some(cmd) = first_voluntary(&mut input) else {
            continue;
        };
        if let Err(e) = validate(&input, &cmd) {
            panic!("{}: {:?} does not hold: {e}", path.display(), cmd.method);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} scenarios had a command");
}

fn multi_node() -> (DisruptionInput, karpenter_core::disruption::Command) {
    let mut input = common::disruption_input_of(&scenario("multi-node-replace.yaml"));
    let cmd = first_voluntary(&mut input).expect("a command");
    assert_eq!(cmd.method, Method::MultiNodeConsolidation);
    assert_eq!(cmd.candidates.len(), 3);
    (input, cmd)
}

#[test]
fn a_new_do_not_disrupt_pod_on_a_candidate_invalidates_the_command() {
    let (mut input, cmd) = multi_node();
    let key = PodKey {
        namespace: "default".into(),
        name: "b".into(),
    };
    input.pods.insert(
        key.clone(),
        PodFacts {
            do_not_disrupt: true,
            ..PodFacts::default()
        },
    );
    assert_eq!(
        validate(&input, &cmd),
        Err(Invalid::CandidateKept {
            node: "n-2".into(),
            reason: KeptReason::PodDoNotDisrupt { pod: key },
        })
    );
}

#[test]
fn a_closed_budget_invalidates_the_command() {
    let (mut input, cmd) = multi_node();
    let pool = input.pools.get_mut("default").expect("pool");
    pool.budgets = vec![Budget {
        nodes: "2".into(),
        ..Budget::default()
    }];
    assert_eq!(
        validate(&input, &cmd),
        Err(Invalid::BudgetExhausted { node: "n-3".into() }),
        "two of the three fit the budget of 2"
    );
}

#[test]
fn a_candidate_that_left_or_is_being_deleted_invalidates_the_command() {
    let (mut input, cmd) = multi_node();
    input.nodes.remove("n-3");
    assert_eq!(
        validate(&input, &cmd),
        Err(Invalid::CandidateGone { node: "n-3".into() })
    );
    let (mut input, cmd) = multi_node();
    input.nodes.get_mut("n-1").expect("n-1").deleting = true;
    assert_eq!(
        validate(&input, &cmd),
        Err(Invalid::CandidateKept {
            node: "n-1".into(),
            reason: KeptReason::Deleting,
        })
    );
}

#[test]
fn a_pod_event_that_restarts_consolidate_after_invalidates_the_command() {
    let (mut input, cmd) = multi_node();
    let pool = input.pools.get_mut("default").expect("pool");
    pool.consolidate_after = Some(std::time::Duration::from_secs(300));
    let now = input.now;
    let claim = input
        .nodes
        .get_mut("n-2")
        .and_then(|f| f.claim.as_mut())
        .expect("n-2 claim");
    claim.last_pod_event = Some(now - std::time::Duration::from_secs(10));
    match validate(&input, &cmd) {
        Err(Invalid::CandidateKept {
            node,
            reason: KeptReason::ConsolidateAfterPending { remaining },
        }) => {
            assert_eq!(node, "n-2");
            assert_eq!(remaining, std::time::Duration::from_secs(290));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_delete_whose_destination_went_away_needs_a_replacement_and_is_refused() {
    // multi-node-cap.yaml: n-1 and n-2 are deleted, their pods move to n-3.
    let mut input = common::disruption_input_of(&scenario("multi-node-cap.yaml"));
    let cmd = first_voluntary(&mut input).expect("a command");
    assert_eq!(cmd.candidates.len(), 2);
    assert!(cmd.replacements.is_empty(), "a delete");
    assert_eq!(validate(&input, &cmd), Ok(()));
    input.nodes.get_mut("n-3").expect("n-3").deleting = true;
    assert_eq!(
        validate(&input, &cmd),
        Err(Invalid::Changed {
            what: "the pods now need a replacement node".into()
        })
    );
}

#[test]
fn an_empty_node_that_got_a_pod_is_no_longer_removed_as_empty() {
    let mut input = common::disruption_input_of(&scenario("emptiness.yaml"));
    let cmd = first_voluntary(&mut input).expect("a command");
    assert_eq!(cmd.method, Method::Emptiness);
    let node = cmd.candidates[0].node.clone();
    // A pod bound to it since: give the snapshot's node a pod of the busy node.
    let busy = input
        .snapshot
        .nodes
        .iter()
        .find(|n| !n.pods.is_empty())
        .expect("a busy node")
        .pods[0]
        .clone();
    let mut moved = busy;
    moved.key.name = "arrived".into();
    input
        .snapshot
        .nodes
        .iter_mut()
        .find(|n| n.name == node)
        .expect("the empty node")
        .pods
        .push(moved);
    assert_eq!(validate(&input, &cmd), Err(Invalid::NotEmpty { node }));
}
