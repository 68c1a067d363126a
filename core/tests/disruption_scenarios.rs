//! Disruption scenario snapshot tests: each `tests/disruption/*.yaml` is ordinary Kubernetes
//! YAML (NodePools, Nodes with their bound Pods, optionally NodeClaims and
//! PodDisruptionBudgets). The harness plans disruption with the shared EC2-like catalog and
//! compares the rendered plan with the accepted snapshot in `tests/snapshots/`.
//!
//! A file's leading comment says what it tests and what the right plan is; every snapshot was
//! reviewed against it. `# now: <RFC 3339>` in a file fixes the plan's clock (default
//! 2026-12-07T12:00:00Z); `# spot-to-spot: true` turns the feature gate on; `# catalog: extended`
//! adds `common::EXTRA_TYPES` to the instance types (26 instead of 14);
//! `# replace-with-several: true` lets consolidation replace one node by several;
//! `# multi-node-cap: N|none` caps multi-node consolidation's batch at N candidates (default
//! Karpenter's 100) or lifts the cap.
//!
//! Besides the snapshot, every plan is checked for what must hold whatever the scenario: each
//! managed node appears exactly once, in a command or kept with a reason; every pod of a
//! disrupted node lands (verified with `scheduling::verify` on the simulation); replacements are
//! cheaper than what consolidation removes.
//!
//! Accept changes with `INSTA_UPDATE=always cargo test -p karpenter-core --test
//! disruption_scenarios`, then review the diff like code.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use karpenter_core::disruption::report::render_text;
use karpenter_core::disruption::{DisruptionInput, Method, Plan, plan};
use karpenter_core::snapshot::PodKey;

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/disruption");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// What must hold for any plan.
fn check_invariants(name: &str, input: &DisruptionInput, plan: &Plan) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &plan.commands {
        for d in &c.candidates {
            *seen.entry(d.node.as_str()).or_default() += 1;
        }
    }
    for k in &plan.kept {
        *seen.entry(k.node.as_str()).or_default() += 1;
        assert!(
            !k.reasons.is_empty(),
            "{name}: {} kept without a reason",
            k.node
        );
    }
    for (node, facts) in &input.nodes {
        if facts.claim.is_some() {
            assert_eq!(
                seen.get(node.as_str()).copied(),
                Some(1),
                "{name}: managed node {node} must appear exactly once"
            );
        }
    }
    for c in &plan.commands {
        if matches!(
            c.method,
            Method::SingleNodeConsolidation | Method::MultiNodeConsolidation
        ) && !c.replacements.is_empty()
        {
            assert!(
                c.price_after < c.price_before,
                "{name}: consolidation must save money: {c:?}"
            );
        }
        if c.method != Method::Expiration {
            // Every pod that must move lands somewhere: on a node or a replacement.
            let moved: BTreeSet<&PodKey> = c.moves.iter().map(|m| &m.pod).collect();
            for d in &c.candidates {
                let node = input
                    .snapshot
                    .nodes
                    .iter()
                    .find(|n| n.name == d.node)
                    .expect("candidate in snapshot");
                for p in &node.pods {
                    let f = input.pods.get(&p.key).cloned().unwrap_or_default();
                    let pinned = input.pdbs.iter().any(|b| {
                        b.fully_blocking
                            && b.namespace == p.key.namespace
                            && b.selector.matches(&p.labels)
                    });
                    let must_move = f.reschedulable() && !f.do_not_disrupt && !pinned;
                    assert_eq!(
                        moved.contains(&p.key),
                        must_move,
                        "{name}: pod {} of {} (must move: {must_move})",
                        p.key,
                        d.node
                    );
                }
            }
        }
    }
}

#[test]
fn disruption_scenarios() {
    let files = files();
    assert!(!files.is_empty());
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let input = common::disruption_input_of(&path);
        let first = plan(&input);
        let again = plan(&input);
        assert_eq!(first, again, "{name}: the plan is deterministic");
        check_invariants(&name, &input, &first);
        let text = format!("scenario: {name}\n{}", render_text(&first));
        insta::assert_snapshot!(format!("disruption__{name}"), text);
    }
}
