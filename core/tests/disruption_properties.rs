//! Property tests of disruption planning: random clusters (nodes of several types, spot and
//! on-demand, some not initialized, not ready, deleting, drifted, expired or do-not-disrupt;
//! pods of every owner kind, some do-not-disrupt, some under PDBs; random budgets, policies,
//! consolidateAfter and feature gate) must give plans that
//! - are deterministic;
//! - list every managed node exactly once, in a command or kept with a reason;
//! - never exceed a budget (replayed command by command, as the controller would start them);
//! - never put a do-not-disrupt node or pod, or a pod whose PDB allows nothing, into a graceful
//!   command (drift of a claim with a terminationGracePeriod may);
//! - place every pod of a disrupted node, which the independent checker
//!   (`scheduling::verify`) confirms on the scheduler's decision;
//! - replace by strictly cheaper nodes when consolidating.
//!
//! `PROPTEST_CASES` overrides the case count (default 64).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use karpenter_core::api::nodepool::{Budget, ConsolidationPolicy, DisruptionReason};
use karpenter_core::disruption::budgets::allowed;
use karpenter_core::disruption::{
    ClaimFacts, DisruptionInput, DisruptionOptions, Drift, Method, NodeFacts, PdbFacts, PodFacts,
    PoolDisruption, plan, plan_traced,
};
use karpenter_core::fixtures::Rng;
use karpenter_core::labels;
use karpenter_core::resources::{CPU, MEMORY, PODS, Resources};
use karpenter_core::scheduling::verify;
use karpenter_core::snapshot::{ExistingNode, LabelSelector, NodePoolInput, Pod, Snapshot};
use proptest::prelude::*;

const TYPES: [&str; 6] = [
    "t3.medium",
    "t3.large",
    "m5.large",
    "m5.xlarge",
    "c5.large",
    "m5.2xlarge",
];
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const APPS: [&str; 3] = ["a", "b", "c"];
const OWNERS: [Option<&str>; 5] = [
    Some("ReplicaSet"),
    Some("ReplicaSet"),
    Some("DaemonSet"),
    Some("StatefulSet"),
    None,
];

fn chance(rng: &mut Rng, percent: usize) -> bool {
    rng.below(100) < percent
}

fn budget(rng: &mut Rng) -> Budget {
    let nodes = ["0", "1", "2", "50%", "100%", "10%"][rng.below(6)];
    let reasons = match rng.below(4) {
        0 => Some(vec![
            [
                DisruptionReason::Empty,
                DisruptionReason::Drifted,
                DisruptionReason::Underutilized,
            ][rng.below(3)],
        ]),
        _ => None,
    };
    Budget {
        nodes: nodes.into(),
        reasons,
        schedule: None,
        duration: None,
    }
}

/// A random cluster from `seed`.
fn cluster(seed: u64) -> DisruptionInput {
    let mut rng = Rng::new(seed);
    let catalog = common::ec2_instance_types();
    let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let mut pool_input = NodePoolInput::new("default", catalog.clone());
    let spot_allowed = chance(&mut rng, 60);
    let cts: Vec<&str> = if spot_allowed {
        vec![labels::CAPACITY_SPOT, labels::CAPACITY_ON_DEMAND]
    } else {
        vec![labels::CAPACITY_ON_DEMAND]
    };
    pool_input.requirements.add(
        labels::CAPACITY_TYPE,
        karpenter_core::requirements::Requirement::is_in(&cts),
    );
    pool_input.requirements.add(
        labels::ARCH,
        karpenter_core::requirements::Requirement::single("amd64"),
    );
    let mut snapshot = Snapshot {
        node_pools: vec![pool_input],
        ..Snapshot::default()
    };
    let mut nodes = BTreeMap::new();
    let mut pods = BTreeMap::new();
    let n_nodes = 1 + rng.below(7);
    let mut pod_no = 0;
    for i in 0..n_nodes {
        let type_name = TYPES[rng.below(TYPES.len())];
        let it = catalog.iter().find(|t| t.name == type_name).unwrap();
        let zone = ZONES[rng.below(3)];
        let ct = if spot_allowed && chance(&mut rng, 40) {
            labels::CAPACITY_SPOT
        } else {
            labels::CAPACITY_ON_DEMAND
        };
        let name = format!("n-{i}");
        let mut node_labels = it.requirements.single_valued_labels();
        for (k, v) in [
            (labels::ZONE, zone),
            (labels::CAPACITY_TYPE, ct),
            (labels::NODE_POOL, "default"),
            (labels::HOSTNAME, name.as_str()),
        ] {
            node_labels.insert(k.into(), v.into());
        }
        let mut free = it.allocatable();
        let mut bound = Vec::new();
        for _ in 0..rng.below(6) {
            let requests = Resources::from_pairs(&[
                (CPU, [100, 250, 500, 1000][rng.below(4)]),
                (MEMORY, [128i64, 512, 1024, 2048][rng.below(4)] << 20),
                (PODS, 1),
            ]);
            if !requests.fits_in(&free) {
                continue;
            }
            free = free.saturating_sub(&requests);
            pod_no += 1;
            let mut pod = Pod::new("default", &format!("p-{pod_no}"), requests);
            pod.labels.insert("app".into(), APPS[rng.below(3)].into());
            pods.insert(
                pod.key.clone(),
                PodFacts {
                    owner_kind: OWNERS[rng.below(OWNERS.len())].map(Into::into),
                    do_not_disrupt: chance(&mut rng, 8),
                    priority: chance(&mut rng, 20).then(|| rng.below(1000) as i32),
                    terminating: chance(&mut rng, 3),
                    ..PodFacts::default()
                },
            );
            bound.push(pod);
        }
        let initialized = chance(&mut rng, 90);
        let created = now - SignedDuration::from_hours(rng.below(1000) as i64);
        snapshot.nodes.push(ExistingNode {
            name: name.clone(),
            labels: node_labels,
            taints: Vec::new(),
            allocatable: it.allocatable(),
            other_allocatable: BTreeMap::new(),
            pods: bound,
            in_flight: false,
            marked_for_deletion: false,
        });
        let tgp = chance(&mut rng, 30).then(|| Duration::from_secs(600));
        nodes.insert(
            name.clone(),
            NodeFacts {
                claim: Some(ClaimFacts {
                    name: format!("nc-{i}"),
                    node_pool: "default".into(),
                    created,
                    initialized_at: initialized.then_some(created),
                    last_pod_event: chance(&mut rng, 50)
                        .then(|| now - SignedDuration::from_mins(rng.below(60) as i64)),
                    drifted: chance(&mut rng, 20).then(|| Drift {
                        reason: "AMIDrift".into(),
                        since: now - SignedDuration::from_mins(rng.below(100) as i64),
                    }),
                    expire_after: chance(&mut rng, 30).then(|| Duration::from_secs(720 * 3600)),
                    termination_grace_period: tgp,
                    instance_type: Some(type_name.into()),
                    zone: Some(zone.into()),
                    capacity_type: Some(ct.into()),
                }),
                initialized,
                ready: chance(&mut rng, 95),
                deleting: chance(&mut rng, 5),
                instance_terminating: false,
                nominated_until: None,
                do_not_disrupt: chance(&mut rng, 5),
            },
        );
    }
    for j in 0..rng.below(3) {
        let mut p = Pod::new(
            "default",
            &format!("pending-{j}"),
            Resources::from_pairs(&[(CPU, 500), (MEMORY, 512 << 20), (PODS, 1)]),
        );
        p.labels.insert("app".into(), "pending".into());
        snapshot.pods.push(p);
    }
    let mut pdbs = Vec::new();
    for app in APPS {
        if chance(&mut rng, 40) {
            pdbs.push(PdbFacts {
                namespace: "default".into(),
                name: format!("pdb-{app}"),
                selector: LabelSelector {
                    match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
                    match_expressions: Vec::new(),
                },
                disruptions_allowed: rng.below(3) as i32,
                fully_blocking: chance(&mut rng, 10),
                always_allow_unhealthy: false,
            });
        }
    }
    let budgets = (0..1 + rng.below(2)).map(|_| budget(&mut rng)).collect();
    let pool = PoolDisruption {
        policy: if chance(&mut rng, 25) {
            ConsolidationPolicy::WhenEmpty
        } else {
            ConsolidationPolicy::WhenEmptyOrUnderutilized
        },
        consolidate_after: match rng.below(4) {
            0 => None,
            1 => Some(Duration::from_secs(600)),
            _ => Some(Duration::ZERO),
        },
        budgets,
        min_savings_per_hour: 0.0,
    };
    DisruptionInput {
        snapshot,
        nodes,
        pods,
        pdbs,
        pools: BTreeMap::from([("default".to_string(), pool)]),
        now,
        options: DisruptionOptions {
            spot_to_spot: chance(&mut rng, 50),
            replace_with_several: chance(&mut rng, 30),
            // Karpenter's cap, none, and one small enough to bind on these clusters.
            multi_node_cap: match rng.below(3) {
                0 => Some(100),
                1 => None,
                _ => Some(2),
            },
            ..DisruptionOptions::default()
        },
    }
}

fn check(input: &DisruptionInput) -> Result<(), TestCaseError> {
    let (p, traces) = plan_traced(input);
    prop_assert_eq!(&p, &plan(input), "deterministic, traced or not");
    prop_assert_eq!(traces.len(), p.commands.len());

    // Every managed node exactly once.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &p.commands {
        for d in &c.candidates {
            *seen.entry(&d.node).or_default() += 1;
        }
    }
    for k in &p.kept {
        prop_assert!(!k.reasons.is_empty(), "{} kept without reason", k.node);
        *seen.entry(&k.node).or_default() += 1;
    }
    for (name, f) in &input.nodes {
        if f.claim.is_some() {
            prop_assert_eq!(seen.get(name.as_str()).copied(), Some(1), "node {}", name);
        }
    }

    // Budgets, replayed: before each budgeted command, count the pool's disrupting nodes.
    let pool = &input.pools["default"];
    let counted: Vec<&str> = input
        .nodes
        .iter()
        .filter(|(_, f)| f.initialized && !f.instance_terminating)
        .map(|(n, _)| n.as_str())
        .collect();
    let total = counted.len() as u32;
    let mut disrupting: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|(n, f)| f.initialized && (!f.ready || f.deleting) && counted.contains(&n.as_str()))
        .map(|(n, _)| n.as_str())
        .collect();
    for c in &p.commands {
        if let Some(reason) = c.reason() {
            let limit = allowed(&pool.budgets, reason, total, input.now)
                .unwrap()
                .nodes
                .unwrap_or(u32::MAX);
            let after = disrupting.len() as u32 + c.candidates.len() as u32;
            prop_assert!(
                after <= limit.max(disrupting.len() as u32),
                "{:?} command takes {} with {} disrupting, budget {}",
                reason,
                c.candidates.len(),
                disrupting.len(),
                limit
            );
        }
        // Only initialized nodes count towards budgets (an expired node may not be).
        for d in &c.candidates {
            if counted.contains(&d.node.as_str()) {
                disrupting.insert(d.node.as_str());
            }
        }
    }

    for (c, sim) in p.commands.iter().zip(&traces) {
        let graceful = matches!(
            c.method,
            Method::Emptiness | Method::MultiNodeConsolidation | Method::SingleNodeConsolidation
        );
        for d in &c.candidates {
            let f = &input.nodes[&d.node];
            let claim = f.claim.as_ref().unwrap();
            if c.method == Method::Expiration {
                continue;
            }
            prop_assert!(
                !f.do_not_disrupt,
                "do-not-disrupt node {} in {:?}",
                d.node,
                c.method
            );
            prop_assert!(f.initialized && !f.deleting, "{} not a candidate", d.node);
            let eventual = c.method == Method::Drift && claim.termination_grace_period.is_some();
            if graceful || !eventual {
                let node = input
                    .snapshot
                    .nodes
                    .iter()
                    .find(|n| n.name == d.node)
                    .unwrap();
                for pod in &node.pods {
                    let pf = input.pods.get(&pod.key).cloned().unwrap_or_default();
                    prop_assert!(
                        !(pf.active() && pf.do_not_disrupt),
                        "do-not-disrupt pod {} moved by {:?}",
                        pod.key,
                        c.method
                    );
                    if pf.evictable() {
                        for b in &input.pdbs {
                            if b.selector.matches(&pod.labels) {
                                prop_assert!(
                                    b.disruptions_allowed > 0,
                                    "pod {} under {} (allows 0) moved by {:?}",
                                    pod.key,
                                    b.name,
                                    c.method
                                );
                            }
                        }
                    }
                }
            }
        }
        if matches!(
            c.method,
            Method::MultiNodeConsolidation | Method::SingleNodeConsolidation
        ) && !c.replacements.is_empty()
        {
            prop_assert!(c.price_after < c.price_before, "not cheaper: {:?}", c);
        }
        if let Some(sim) = sim {
            let violations = verify(&sim.snapshot, &sim.decision);
            prop_assert!(violations.is_empty(), "{:?}: {:?}", c.method, violations);
            let unplaced: BTreeSet<_> = sim.decision.unschedulable.iter().map(|u| &u.pod).collect();
            for m in &c.moves {
                prop_assert!(!unplaced.contains(&m.pod), "{} moved but unplaced", m.pod);
            }
            for pod in sim.origin.keys() {
                prop_assert!(
                    !unplaced.contains(pod),
                    "pod {} of a removed node has no place",
                    pod
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn plans_keep_every_promise(seed in any::<u64>()) {
        check(&cluster(seed))?;
    }
}

/// The generator reaches every method and the main kept reasons, so the properties above are
/// not vacuous.
#[test]
fn random_clusters_exercise_every_method() {
    let mut methods = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for seed in 1..400u64 {
        let p = plan(&cluster(seed));
        methods.extend(p.commands.iter().map(|c| c.method));
        reasons.extend(
            p.kept
                .iter()
                .flat_map(|k| k.reasons.iter().map(|r| r.kind())),
        );
    }
    for m in [
        Method::Expiration,
        Method::Drift,
        Method::Emptiness,
        Method::MultiNodeConsolidation,
        Method::SingleNodeConsolidation,
    ] {
        assert!(
            methods.contains(&m),
            "no {m:?} command in 400 random clusters"
        );
    }
    for r in [
        "budget_exhausted",
        "pod_do_not_disrupt",
        "pdb_blocks",
        "node_do_not_disrupt",
        "not_initialized",
        "consolidate_after_pending",
        "no_cheaper_replacement",
    ] {
        assert!(
            reasons.contains(r),
            "no node kept for {r} in 400 random clusters: {reasons:?}"
        );
    }
}
