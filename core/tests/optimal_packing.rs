//! `Packing::Optimal`: Karpenter's rule, then the new claims of pods nothing else depends on
//! re-packed from the configuration LP when that is cheaper. Its promises, asserted on
//! synthetic inputs: never dearer than Karpenter's rule, constrained pods' claims untouched,
//! pool limits honoured, the per-node cost and burstable options respected, and `verify`
//! finding nothing wrong.

use std::collections::BTreeMap;

use karpenter_core::fixtures::{benchmark_instance_types, generic_pods, snapshot_with};
use karpenter_core::instance_type::InstanceType;
use karpenter_core::labels;
use karpenter_core::requirements::Requirement;
use karpenter_core::resources::{CPU, MEMORY, PODS, Resources};
use karpenter_core::scheduling::{
    Burstable, Decision, Packing, SolveOptions, fleet_bound, solve, verify,
};
use karpenter_core::snapshot::{
    LabelSelector, Pod, Snapshot, TopologySpreadConstraint, WhenUnsatisfiable,
};

fn pod(name: &str, cpu: i64, mem_mi: i64) -> Pod {
    Pod::new(
        "default",
        name,
        Resources::from_pairs(&[(CPU, cpu), (MEMORY, mem_mi << 20), (PODS, 1)]),
    )
}

/// Synthetic types where the two smallest are cheap per vCPU and every larger one costs 1.5×
/// as much per unit, so Karpenter's rule (grow a claim while any type fits) overpays.
fn types_with_a_price_cliff() -> Vec<InstanceType> {
    let mut types = benchmark_instance_types(8);
    for t in types.iter_mut().skip(2) {
        for o in &mut t.offerings {
            o.price *= 1.5;
        }
    }
    types
}

fn with(packing: Packing) -> SolveOptions {
    SolveOptions {
        packing,
        ..SolveOptions::default()
    }
}

/// The decision is valid and places exactly what Karpenter's rule places.
fn check(snap: &Snapshot, karpenter: &Decision, optimal: &Decision) {
    let violations = verify(snap, optimal);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(optimal.placed_pods(), karpenter.placed_pods());
    assert!(optimal.new_cost_per_hour() <= karpenter.new_cost_per_hour() + 1e-9);
}

#[test]
fn plain_pods_are_repacked_onto_the_cheaper_small_types() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let snap = snapshot_with(pods, types_with_a_price_cliff());
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let optimal = solve(&snap, &with(Packing::Optimal));
    check(&snap, &karpenter, &optimal);
    // One 6-vCPU node past the cliff against three 2-vCPU nodes below it.
    assert_eq!(karpenter.new_node_claims.len(), 1);
    assert_eq!(optimal.new_node_claims.len(), 3);
    for claim in &optimal.new_node_claims {
        assert_eq!(claim.instance_types[0].name, "fake-it-1");
        assert_eq!(claim.pods.len(), 2);
        // Every option still holds the claim's pods (CreateFleet may pick any of them).
        assert!(claim.instance_types.len() > 1);
    }
    // The plan is the LP bound here: three full 2-vCPU nodes are the cheapest fleet.
    let bound = fleet_bound(&snap, &optimal, &with(Packing::Optimal)).expect("a bound");
    assert!(bound.converged);
    assert!(bound.bound <= optimal.new_cost_per_hour() + 1e-9);
    assert!(bound.gap().expect("positive bound") < 1e-6, "{bound:?}");
    assert!(karpenter.new_cost_per_hour() / bound.bound > 1.2);
}

#[test]
fn claims_holding_constrained_pods_are_left_as_karpenters_rule_made_them() {
    // `web` spreads over hostnames (its claims must not change: moving a pod would change the
    // spread); `batch` pods are plain.
    let mut pods: Vec<Pod> = (0..4)
        .map(|i| {
            let mut p = pod(&format!("web-{i}"), 900, 256);
            p.labels.insert("app".into(), "web".into());
            p.topology_spread.push(TopologySpreadConstraint {
                max_skew: 1,
                topology_key: labels::HOSTNAME.into(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                selector: LabelSelector {
                    match_labels: BTreeMap::from([("app".into(), "web".into())]),
                    match_expressions: vec![],
                },
                min_domains: None,
            });
            p
        })
        .collect();
    pods.extend((0..6).map(|i| pod(&format!("batch-{i}"), 900, 256)));
    let snap = snapshot_with(pods, types_with_a_price_cliff());
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let optimal = solve(&snap, &with(Packing::Optimal));
    check(&snap, &karpenter, &optimal);
    let holding_web = |d: &Decision| -> Vec<(Vec<String>, String)> {
        d.new_node_claims
            .iter()
            .filter(|c| c.pods.iter().any(|p| p.name.starts_with("web")))
            .map(|c| {
                (
                    c.pods.iter().map(|p| p.name.clone()).collect(),
                    c.instance_types[0].name.clone(),
                )
            })
            .collect()
    };
    assert_eq!(holding_web(&optimal), holding_web(&karpenter));
}

#[test]
fn a_node_limit_the_repacked_fleet_would_break_keeps_karpenters_fleet() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let mut snap = snapshot_with(pods, types_with_a_price_cliff());
    snap.node_pools[0].node_limit = Some(1);
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let optimal = solve(&snap, &with(Packing::Optimal));
    assert_eq!(optimal, karpenter);
}

#[test]
fn a_resource_limit_the_repacked_fleet_would_break_keeps_karpenters_fleet() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let mut snap = snapshot_with(pods, types_with_a_price_cliff());
    // 8 vCPU: room for Karpenter's one claim (which reserves its largest option, 8 vCPU)
    // but not for three claims of 2-vCPU nodes whose options reach 8 vCPU each.
    let mut limits = Resources::UNLIMITED;
    limits.0[CPU] = 8000;
    snap.node_pools[0].limits = limits;
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    assert!(
        karpenter.unschedulable.is_empty(),
        "{:?}",
        karpenter.unschedulable
    );
    let optimal = solve(&snap, &with(Packing::Optimal));
    assert_eq!(optimal, karpenter);
}

#[test]
fn a_per_node_cost_can_make_fewer_larger_nodes_the_better_fleet() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let snap = snapshot_with(pods, types_with_a_price_cliff());
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let dear_nodes = SolveOptions {
        packing: Packing::Optimal,
        node_cost: 1.0,
        ..SolveOptions::default()
    };
    assert_eq!(solve(&snap, &dear_nodes), karpenter);
}

/// Options of burstable types (`fake-it-0`, `fake-it-1` below) on claims the repack made.
fn repacked_burstable(karpenter: &Decision, d: &Decision) -> usize {
    d.new_node_claims
        .iter()
        .filter(|c| !karpenter.new_node_claims.contains(c))
        .flat_map(|c| &c.instance_types)
        .filter(|o| ["fake-it-0", "fake-it-1"].contains(&o.name.as_str()))
        .count()
}

#[test]
fn burstable_types_can_be_excluded_from_the_repacked_nodes() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let mut types = types_with_a_price_cliff();
    // The cheap small types are burstable; fake-it-2 and up are not.
    for t in &mut types[..2] {
        t.requirements
            .add(labels::aws::INSTANCE_CATEGORY, Requirement::single("t"));
    }
    for t in &mut types[2..] {
        t.requirements
            .add(labels::aws::INSTANCE_CATEGORY, Requirement::single("m"));
    }
    let snap = snapshot_with(pods, types);
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let allowed = solve(&snap, &with(Packing::Optimal));
    assert!(
        allowed
            .new_node_claims
            .iter()
            .all(|c| c.instance_types[0].name == "fake-it-1")
    );
    let options = SolveOptions {
        packing: Packing::Optimal,
        burstable: Burstable::Exclude,
        ..SolveOptions::default()
    };
    let excluded = solve(&snap, &options);
    check(&snap, &karpenter, &excluded);
    assert_eq!(repacked_burstable(&karpenter, &excluded), 0);
    // Derated to a tenth of their CPU, a 2-vCPU burstable node takes no 900m pod.
    let derated = SolveOptions {
        packing: Packing::Optimal,
        burstable: Burstable::Derate(0.1),
        ..SolveOptions::default()
    };
    let d = solve(&snap, &derated);
    check(&snap, &karpenter, &d);
    assert_eq!(repacked_burstable(&karpenter, &d), 0);
}

#[test]
fn daemonset_overhead_is_packed_around_and_generic_fleets_come_close_to_the_bound() {
    let mut snap = snapshot_with(generic_pods(400, 7), benchmark_instance_types(40));
    snap.daemon_sets = vec![pod("ds", 250, 350)];
    let karpenter = solve(&snap, &with(Packing::Karpenter));
    let optimal = solve(&snap, &with(Packing::Optimal));
    check(&snap, &karpenter, &optimal);
    let bound = fleet_bound(&snap, &optimal, &with(Packing::Optimal)).expect("a bound");
    let ratio = optimal.new_cost_per_hour() / bound.bound;
    assert!(
        (1.0 - 1e-9..=1.05).contains(&ratio),
        "fleet ÷ bound {ratio:.4}"
    );
}
