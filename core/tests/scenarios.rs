//! Scenario snapshot tests: each `tests/scenarios/*.yaml` is ordinary Kubernetes YAML
//! (NodePools, workloads, DaemonSets, Nodes with bound pods). The harness builds a snapshot with
//! a small fixed set of EC2-like instance types, solves it, and compares
//! [`render_text`] of the decision with the accepted snapshot in `tests/snapshots/`.
//!
//! Every file's leading comment says what it tests and what the correct outcome is; every
//! snapshot was reviewed by hand against that comment. A scenario the solver gets wrong is not
//! accepted as a snapshot: fix the solver first.
//!
//! A few invariants are also asserted directly (see [`check_invariants`]), so a snapshot
//! accepted by mistake cannot hide the most important facts.
//!
//! Accept changes with `INSTA_UPDATE=always cargo test -p karpenter-core --test scenarios`
//! (or `cargo insta review`), then review the diff like code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

use common::{TYPES, load};
use karpenter_core::labels;
use karpenter_core::resources::CPU;
use karpenter_core::scheduling::report::render_text;
use karpenter_core::scheduling::{Decision, SolveOptions, solve};
use karpenter_core::snapshot::{PodKey, Snapshot};

fn render(name: &str, snapshot: &Snapshot, decision: &Decision) -> String {
    format!("scenario: {name}\n{}", render_text(snapshot, decision, 50))
}

fn scenario_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

// ---- focused invariants -------------------------------------------------------------------

/// Where each placed pod went: `new:<index>` or `node:<name>`.
fn placements(d: &Decision) -> BTreeMap<PodKey, String> {
    let mut out = BTreeMap::new();
    for (i, c) in d.new_node_claims.iter().enumerate() {
        for p in &c.pods {
            out.insert(p.clone(), format!("new:{i}"));
        }
    }
    for e in &d.existing {
        for p in &e.pods {
            out.insert(p.clone(), format!("node:{}", e.node));
        }
    }
    out
}

fn pod_labels<'a>(snap: &'a Snapshot, key: &PodKey) -> &'a BTreeMap<String, String> {
    &snap
        .pods
        .iter()
        .find(|p| &p.key == key)
        .expect("pending pod")
        .labels
}

/// Per new claim, how many of its pods carry `app=<app>`.
fn app_per_claim(snap: &Snapshot, d: &Decision, app: &str) -> Vec<usize> {
    d.new_node_claims
        .iter()
        .map(|c| {
            c.pods
                .iter()
                .filter(|p| pod_labels(snap, p).get("app").is_some_and(|a| a == app))
                .count()
        })
        .collect()
}

/// Per zone, how many new-claim pods with `app=<app>` land there (by the claim's cheapest
/// option's zone).
fn app_per_zone(snap: &Snapshot, d: &Decision, app: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in &d.new_node_claims {
        let zone = c.instance_types[0].zone.clone();
        let n = c
            .pods
            .iter()
            .filter(|p| pod_labels(snap, p).get("app").is_some_and(|a| a == app))
            .count();
        *out.entry(zone).or_insert(0) += n;
    }
    out
}

fn first_type(d: &Decision, claim: usize) -> &str {
    &d.new_node_claims[claim].instance_types[0].name
}

fn all_options_match(d: &Decision, pred: impl Fn(&str) -> bool) -> bool {
    d.new_node_claims
        .iter()
        .all(|c| c.instance_types.iter().all(|o| pred(&o.name)))
}

fn skew(counts: &BTreeMap<String, usize>) -> usize {
    let max = counts.values().max().copied().unwrap_or(0);
    let min = counts.values().min().copied().unwrap_or(0);
    max - min
}

/// The most important fact of each scenario, asserted outright.
fn check_invariants(name: &str, snap: &Snapshot, d: &Decision) {
    let unsched = |needle: &str| {
        d.unschedulable
            .iter()
            .all(|u| u.reason.to_lowercase().contains(&needle.to_lowercase()))
    };
    match name {
        "pod-affinity-to-later-pod" => {
            // web waits for its affinity target (cache) instead of relaxing anything.
            assert!(d.unschedulable.is_empty());
            assert_eq!(d.new_node_claims.len(), 1);
            assert_eq!(d.new_node_claims[0].instance_types[0].zone, "us-east-1b");
            assert!(
                d.relaxed.is_empty(),
                "spurious relaxations: {:?}",
                d.relaxed
            );
        }
        "resources-init-containers-overhead" => {
            assert!(d.unschedulable.is_empty());
            assert_eq!(first_type(d, 0), "t3.large");
            assert!(all_options_match(d, |n| n != "t3.medium" && n != "c5.large"));
        }
        "extended-resource-gpu" => {
            let p = placements(d);
            let gpu = &p[&PodKey {
                namespace: "ml".into(),
                name: "trainer".into(),
            }];
            let i: usize = gpu.trim_start_matches("new:").parse().expect("new claim");
            assert!(all_options_match_claim(d, i, |n| n == "g5.xlarge"));
            assert_eq!(d.unschedulable.len(), 1);
            assert!(unsched("example.com/fpga"));
        }
        "node-selector" => {
            assert!(all_options_match(d, |n| n.starts_with("c5.")));
        }
        "node-affinity-or-terms" => {
            assert!(d.unschedulable.is_empty());
            assert!(all_options_match(d, |n| n.starts_with("r5.")));
        }
        "pod-anti-affinity-hostname" => {
            assert!(app_per_claim(snap, d, "redis").iter().all(|&n| n <= 1));
            assert_eq!(d.new_node_claims.len(), 3);
        }
        "topology-spread-zone" => {
            let zones = app_per_zone(snap, d, "web");
            assert_eq!(zones.len(), 3);
            assert!(skew(&zones) <= 1);
        }
        "topology-spread-hostname" => {
            let per = app_per_claim(snap, d, "api");
            assert!(per.iter().max() == Some(&1) || per.iter().max() == per.iter().min());
        }
        "host-ports-conflict" => {
            assert_eq!(d.new_node_claims.len(), 2);
        }
        "nodepool-limits" => {
            assert!(!d.unschedulable.is_empty());
            assert!(unsched("limit"));
        }
        "nodepool-node-limit" => {
            // capped: 1 existing + 1 new = its limit of 2; the rest overflow.
            let per_pool = |pool: &str| {
                d.new_node_claims
                    .iter()
                    .filter(|c| c.node_pool == pool)
                    .count()
            };
            assert_eq!(per_pool("capped"), 1);
            assert_eq!(per_pool("overflow"), 2);
            assert_eq!(d.unschedulable.len(), 1);
            assert_eq!(d.unschedulable[0].pod.name, "pinned-1");
            assert!(unsched("node limit reached: spec.limits.nodes is 2"));
        }
        "nodepool-weights" => {
            assert!(
                d.new_node_claims
                    .iter()
                    .all(|c| c.node_pool == "reserved-first")
            );
        }
        "existing-node-first" => {
            assert!(!d.existing.is_empty());
            assert!(d.new_node_claims.is_empty());
        }
        "arm64-requirement" => {
            let p = placements(d);
            let graviton = PodKey {
                namespace: "default".into(),
                name: "graviton".into(),
            };
            let i: usize = p[&graviton]
                .trim_start_matches("new:")
                .parse()
                .expect("new claim");
            assert!(all_options_match_claim(d, i, |n| n.starts_with("m6g.")));
            assert_eq!(d.new_node_claims.len(), 2);
        }
        "spot-only" => {
            assert!(
                d.new_node_claims
                    .iter()
                    .flat_map(|c| &c.instance_types)
                    .all(|o| o.capacity_type == labels::CAPACITY_SPOT)
            );
        }
        "v1beta1-kubelet-max-pods" => {
            assert!(d.new_node_claims.iter().all(|c| c.pods.len() <= 10));
        }
        "instance-cpu-gt-lt" => {
            assert!(all_options_match(d, |n| {
                TYPES
                    .iter()
                    .any(|t| t.name == n && t.vcpu > 2 && t.vcpu < 8)
            }));
        }
        "daemonset-overhead" => {
            assert_eq!(first_type(d, 0), "c5.xlarge");
            assert_eq!(d.new_node_claims[0].daemon_overhead.0[CPU], 500);
        }
        "daemonset-not-tolerating-taint" => {
            assert!(d.new_node_claims[0].daemon_overhead.is_zero());
            assert_eq!(first_type(d, 0), "t3.medium");
        }
        "ephemeral-storage" => {
            assert_eq!(d.new_node_claims.len(), 2);
            assert!(unsched("ephemeral-storage"));
        }
        "max-pods-limit" => {
            assert_eq!(d.new_node_claims.len(), 3);
            assert!(d.new_node_claims.iter().all(|c| c.pods.len() <= 17));
        }
        "min-domains" => {
            assert_eq!(d.placed_pods(), 3);
            assert_eq!(app_per_zone(snap, d, "quorum").len(), 3);
            assert!(unsched("topology spread"));
        }
        "min-values-family" => {
            assert!(unsched("minValues"));
            let families: std::collections::BTreeSet<&str> = d.new_node_claims[0]
                .instance_types
                .iter()
                .map(|o| o.name.split('.').next().unwrap_or_default())
                .collect();
            assert!(families.len() >= 3, "{families:?}");
        }
        "preferred-anti-affinity" => {
            assert!(app_per_claim(snap, d, "frontend").iter().all(|&n| n == 1));
            assert!(d.relaxed.is_empty());
        }
        "topology-spread-existing-pods" => {
            let zones = app_per_zone(snap, d, "web");
            assert_eq!(zones.get("us-east-1a"), None);
            assert_eq!(zones.get("us-east-1b"), Some(&1));
            assert_eq!(zones.get("us-east-1c"), Some(&2));
        }
        "topology-spread-node-affinity-domains" => {
            let zones = app_per_zone(snap, d, "api");
            assert_eq!(zones.get("us-east-1a"), Some(&2));
            assert_eq!(zones.get("us-east-1b"), Some(&2));
        }
        "pod-anti-affinity-existing" => {
            let p = placements(d);
            let noisy = PodKey {
                namespace: "default".into(),
                name: "noisy".into(),
            };
            assert!(p[&noisy].starts_with("new:"));
        }
        "hostname-selector-unknown" => {
            // Only avoid-node (NotIn) gets a new node; the pinned pods launch nothing.
            assert_eq!(d.new_node_claims.len(), 1);
            assert_eq!(d.new_node_claims[0].pods[0].name, "avoid-node");
            assert_eq!(d.unschedulable.len(), 2);
            assert!(unsched("kubernetes.io/hostname In [ip-10-0-9-9"));
        }
        "hostname-selector-existing" => {
            assert!(d.new_node_claims.is_empty());
            assert_eq!(d.existing[0].pods.len(), 2);
            assert_eq!(d.unschedulable.len(), 1);
            assert!(unsched("node ip-10-0-2-20 cannot take the pod"));
        }
        "deprecated-labels" => {
            assert!(d.unschedulable.is_empty());
            assert!(d.relaxed.is_empty(), "{:?}", d.relaxed);
            let p = placements(d);
            let claim_of = |name: &str| -> usize {
                let key = PodKey {
                    namespace: "default".into(),
                    name: name.into(),
                };
                p[&key]
                    .trim_start_matches("new:")
                    .parse()
                    .expect("new claim")
            };
            let web = claim_of("web-0");
            assert!(all_options_match_claim(d, web, |n| n == "c5.xlarge"));
            let graviton = claim_of("graviton-0");
            assert_eq!(graviton, claim_of("graviton-1"));
            assert!(all_options_match_claim(d, graviton, |n| n == "m6g.xlarge"));
            let zone = &d.new_node_claims[graviton].instance_types[0].zone;
            assert_eq!(zone, "us-east-1b");
        }
        "mixed-realistic" => {
            assert!(d.unschedulable.is_empty());
            let gpu: Vec<_> = d
                .new_node_claims
                .iter()
                .filter(|c| c.node_pool == "gpu")
                .collect();
            assert_eq!(gpu.len(), 1);
            assert_eq!(gpu[0].pods.len(), 1);
            let p = placements(d);
            let redis: Vec<&String> = p
                .iter()
                .filter(|(k, _)| k.name.starts_with("redis-"))
                .map(|(_, v)| v)
                .collect();
            assert_eq!(redis.len(), 2);
            assert_ne!(redis[0], redis[1]);
            assert!(d.existing.iter().any(|e| e.node == "ip-10-0-9-90"));
        }
        _ => {}
    }
}

fn all_options_match_claim(d: &Decision, i: usize, pred: impl Fn(&str) -> bool) -> bool {
    d.new_node_claims[i]
        .instance_types
        .iter()
        .all(|o| pred(&o.name))
}

/// Every pod placed at most once and every pending pod either placed or unschedulable.
fn check_accounting(name: &str, snap: &Snapshot, d: &Decision) {
    let placed = placements(d);
    assert_eq!(
        placed.len(),
        d.placed_pods(),
        "{name}: a pod was placed twice"
    );
    assert_eq!(
        d.placed_pods() + d.unschedulable.len(),
        snap.pods.len(),
        "{name}: pods lost or invented"
    );
    for c in &d.new_node_claims {
        assert!(
            !c.instance_types.is_empty(),
            "{name}: claim without options"
        );
    }
}

#[test]
fn scenarios() {
    let files = scenario_files("scenarios");
    assert!(files.len() >= 25, "expected at least 25 scenarios");
    let mut failed = Vec::new();
    for path in &files {
        let name = stem(path);
        let result = std::panic::catch_unwind(|| {
            let snapshot = load(path);
            let decision = solve(&snapshot, &SolveOptions::default());
            let again = solve(&snapshot, &SolveOptions::default());
            assert_eq!(decision, again, "{name}: solve is not deterministic");
            check_accounting(&name, &snapshot, &decision);
            check_invariants(&name, &snapshot, &decision);
            let file = format!("{name}.yaml");
            insta::assert_snapshot!(name.as_str(), render(&file, &snapshot, &decision));
        });
        if result.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "scenarios failed: {failed:?}");
}

/// `Packing::Optimal` on every scenario: never a dearer fleet than Karpenter's rule, the same
/// pods placed, and a decision `verify` finds nothing wrong with (every constraint the
/// scenarios exercise: spread, affinity, limits, minValues, taints, host ports …).
#[test]
fn optimal_packing_is_never_dearer_than_karpenters_rule_and_violates_nothing() {
    use karpenter_core::scheduling::{Packing, verify};
    let optimal = SolveOptions {
        packing: Packing::Optimal,
        ..SolveOptions::default()
    };
    let mut cheaper = Vec::new();
    for path in scenario_files("scenarios") {
        let name = stem(&path);
        let snapshot = load(&path);
        let karpenter = solve(&snapshot, &SolveOptions::default());
        let decision = solve(&snapshot, &optimal);
        assert_eq!(
            decision,
            solve(&snapshot, &optimal),
            "{name}: not deterministic"
        );
        check_accounting(&name, &snapshot, &decision);
        let unplaced = |d: &Decision| {
            d.unschedulable
                .iter()
                .map(|u| u.pod.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            unplaced(&decision),
            unplaced(&karpenter),
            "{name}: other pods unschedulable"
        );
        let (before, after) = (karpenter.new_cost_per_hour(), decision.new_cost_per_hour());
        assert!(
            after <= before + 1e-9,
            "{name}: optimal ${after:.4}/h > Karpenter's ${before:.4}/h"
        );
        let violations = verify(&snapshot, &decision);
        assert!(violations.is_empty(), "{name}: {violations:?}");
        if after < before - 1e-9 {
            cheaper.push(format!("{name}: ${before:.4} → ${after:.4}"));
        }
    }
    eprintln!("optimal packing was cheaper on: {cheaper:#?}");
}
