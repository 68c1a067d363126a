//! Direct behavioural tests of the solver on synthetic inputs (the scenario snapshots cover
//! the same families through YAML; these assert the key facts explicitly).

use std::collections::{BTreeMap, BTreeSet};

use karpenter_core::fixtures::{ZONES, benchmark_instance_types, snapshot_with};
use karpenter_core::labels;
use karpenter_core::requirements::{Operator, Requirement};
use karpenter_core::resources::{CPU, MEMORY, NUM_RESOURCES, PODS, Resources};
use karpenter_core::scheduling::{Packing, SolveOptions, solve};
use karpenter_core::snapshot::{
    ExistingNode, LabelSelector, Pod, PodAffinityTerm, Snapshot, TopologySpreadConstraint,
    WhenUnsatisfiable,
};

fn pod(name: &str, cpu: i64, mem_mi: i64) -> Pod {
    Pod::new(
        "default",
        name,
        Resources::from_pairs(&[(CPU, cpu), (MEMORY, mem_mi << 20), (PODS, 1)]),
    )
}

fn app_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        match_expressions: vec![],
    }
}

fn snap_with(pods: Vec<Pod>) -> Snapshot {
    snapshot_with(pods, benchmark_instance_types(40))
}

#[test]
fn a_small_pod_gets_the_cheapest_type_that_fits() {
    let snap = snapshot_with(vec![pod("p", 1500, 1024)], benchmark_instance_types(20));
    let d = solve(&snap, &SolveOptions::default());
    assert_eq!(d.new_node_claims.len(), 1);
    let first = &d.new_node_claims[0].instance_types[0];
    // 1.5 vCPU needs fake-it-1 (2 vCPU); spot is cheaper than on-demand.
    assert_eq!(first.name, "fake-it-1");
    assert_eq!(first.capacity_type, labels::CAPACITY_SPOT);
}

#[test]
fn options_are_capped_at_sixty_cheapest_first() {
    let snap = snapshot_with(vec![pod("p", 100, 100)], benchmark_instance_types(400));
    let d = solve(&snap, &SolveOptions::default());
    let opts = &d.new_node_claims[0].instance_types;
    assert_eq!(opts.len(), 60);
    assert!(opts.windows(2).all(|w| w[0].price <= w[1].price));
}

#[test]
fn existing_nodes_with_room_are_used_before_new_nodes() {
    let mut snap = snapshot_with(vec![pod("p", 500, 512)], benchmark_instance_types(10));
    snap.nodes.push(ExistingNode {
        name: "node-a".into(),
        labels: BTreeMap::from([(labels::ZONE.to_string(), ZONES[0].to_string())]),
        taints: vec![],
        allocatable: Resources::from_pairs(&[(CPU, 2000), (MEMORY, 4 << 30), (PODS, 10)]),
        other_allocatable: BTreeMap::new(),
        pods: vec![pod("running", 1000, 1024)],
        in_flight: false,
        marked_for_deletion: false,
    });
    let d = solve(&snap, &SolveOptions::default());
    assert!(d.new_node_claims.is_empty());
    assert_eq!(d.existing[0].node, "node-a");
    // A node marked for deletion is never chosen.
    snap.nodes[0].marked_for_deletion = true;
    let d = solve(&snap, &SolveOptions::default());
    assert!(d.existing.is_empty());
    assert_eq!(d.new_node_claims.len(), 1);
}

#[test]
fn hostname_anti_affinity_puts_each_pod_on_its_own_node() {
    let pods: Vec<Pod> = (0..7)
        .map(|i| {
            let mut p = pod(&format!("redis-{i}"), 100, 100);
            p.labels.insert("app".into(), "redis".into());
            p.pod_anti_affinity.push(PodAffinityTerm {
                topology_key: labels::HOSTNAME.into(),
                selector: app_selector("redis"),
                namespaces: vec![],
                namespace_selector: None,
            });
            p
        })
        .collect();
    let d = solve(&snap_with(pods), &SolveOptions::default());
    assert_eq!(d.new_node_claims.len(), 7);
    assert!(d.new_node_claims.iter().all(|c| c.pods.len() == 1));
}

#[test]
fn zone_spread_balances_pods_across_zones() {
    let pods: Vec<Pod> = (0..9)
        .map(|i| {
            let mut p = pod(&format!("web-{i}"), 1000, 1024);
            p.labels.insert("app".into(), "web".into());
            p.topology_spread.push(TopologySpreadConstraint {
                max_skew: 1,
                topology_key: labels::ZONE.into(),
                when_unsatisfiable: WhenUnsatisfiable::DoNotSchedule,
                selector: app_selector("web"),
                min_domains: None,
            });
            p
        })
        .collect();
    let d = solve(&snap_with(pods), &SolveOptions::default());
    assert!(d.unschedulable.is_empty(), "{:?}", d.unschedulable);
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for c in &d.new_node_claims {
        let zone = c.requirements.get(labels::ZONE).expect("zone pinned");
        assert_eq!(zone.values().len(), 1, "claim zone must be pinned: {zone}");
        *per_zone
            .entry(zone.values().iter().next().unwrap().clone())
            .or_default() += c.pods.len();
    }
    assert_eq!(per_zone.len(), 3, "{per_zone:?}");
    assert!(per_zone.values().all(|n| *n == 3), "{per_zone:?}");
}

#[test]
fn node_pool_limits_stop_launches_with_a_reason() {
    let mut snap = snap_with((0..10).map(|i| pod(&format!("p{i}"), 3000, 1024)).collect());
    let mut limits = Resources::UNLIMITED;
    limits.0[CPU] = 8000;
    snap.node_pools[0].limits = limits;
    let d = solve(&snap, &SolveOptions::default());
    // The pool reserves the largest option of each claim, as Karpenter does.
    let reserved: i64 = d
        .new_node_claims
        .iter()
        .map(|c| {
            c.instance_types
                .iter()
                .map(|o| {
                    snap.node_pools[0]
                        .instance_types
                        .iter()
                        .find(|t| t.name == o.name)
                        .unwrap()
                        .capacity
                        .0[CPU]
                })
                .max()
                .unwrap()
        })
        .sum();
    assert!(reserved <= 8000, "options exceed the limit: {reserved}m");
    assert!(!d.new_node_claims.is_empty());
    assert!(!d.unschedulable.is_empty());
    assert!(
        d.unschedulable[0].reason.contains("limits"),
        "{}",
        d.unschedulable[0].reason
    );
    assert_eq!(NUM_RESOURCES, limits.0.len());
}

#[test]
fn a_pool_without_instance_types_says_why_instead_of_zero_allocatable() {
    // A NodeClass that is not ready yet offers no types; the pod's reason must say so (it once
    // read "insufficient cpu … at most 0 is allocatable").
    let mut snap = snapshot_with(vec![pod("p", 1500, 256)], Vec::new());
    let d = solve(&snap, &SolveOptions::default());
    assert_eq!(d.unschedulable.len(), 1);
    let reason = &d.unschedulable[0].reason;
    assert!(reason.contains("no instance type"), "{reason}");
    assert!(!reason.contains("allocatable"), "{reason}");

    snap.node_pools[0].unavailable = Some("node class default is not ready".into());
    let d = solve(&snap, &SolveOptions::default());
    let reason = &d.unschedulable[0].reason;
    assert!(
        reason.contains("no instance types are available: node class default is not ready"),
        "{reason}"
    );
}

#[test]
fn impossible_preferences_are_relaxed_and_reported() {
    let mut p = pod("p", 100, 100);
    let mut pref = karpenter_core::requirements::Requirements::new();
    pref.add(
        labels::ARCH,
        Requirement::new(Operator::In, &["arm64"]).unwrap(),
    );
    p.preferred_node_affinity.push((10, pref));
    let d = solve(&snap_with(vec![p]), &SolveOptions::default());
    assert_eq!(d.placed_pods(), 1);
    let notes = d.relaxed.values().next().expect("relaxation recorded");
    assert!(notes[0].contains("preferred node affinity"), "{notes:?}");
}

#[test]
fn unsatisfiable_requirements_name_the_label() {
    let mut p = pod("p", 100, 100);
    p.node_selector.add("team", Requirement::single("payments"));
    let d = solve(&snap_with(vec![p]), &SolveOptions::default());
    assert_eq!(d.unschedulable.len(), 1);
    assert!(
        d.unschedulable[0].reason.contains("\"team\""),
        "{}",
        d.unschedulable[0].reason
    );
}

#[test]
fn same_snapshot_same_decision() {
    let snap = snapshot_with(
        karpenter_core::fixtures::diverse_pods(500, 7),
        benchmark_instance_types(100),
    );
    let a = solve(&snap, &SolveOptions::default());
    let b = solve(&snap, &SolveOptions::default());
    assert_eq!(a, b);
    let names: BTreeSet<_> = a
        .new_node_claims
        .iter()
        .map(|c| c.hostname.clone())
        .collect();
    assert_eq!(names.len(), a.new_node_claims.len(), "hostnames are unique");
}

#[test]
fn volume_zone_requirements_are_strict() {
    // A pod whose bound volume lives in zone 3 must land there, even though spot (cheaper) is
    // only offered in zones 1 and 2.
    let mut p = pod("db-0", 500, 512);
    p.volume_requirements
        .add(labels::ZONE, Requirement::single(ZONES[2]));
    let d = solve(&snap_with(vec![p.clone()]), &SolveOptions::default());
    assert_eq!(d.new_node_claims.len(), 1);
    let opt = &d.new_node_claims[0].instance_types[0];
    assert_eq!(opt.zone, ZONES[2]);
    assert_eq!(opt.capacity_type, labels::CAPACITY_ON_DEMAND);
    // A volume in a zone no offering covers makes the pod unschedulable, naming the zone.
    let mut q = p;
    q.volume_requirements = Default::default();
    q.volume_requirements
        .add(labels::ZONE, Requirement::single("elsewhere-1a"));
    let d = solve(&snap_with(vec![q]), &SolveOptions::default());
    assert_eq!(d.unschedulable.len(), 1);
    assert!(
        d.unschedulable[0].reason.contains("elsewhere-1a"),
        "{}",
        d.unschedulable[0].reason
    );
}

/// Synthetic types where the three smallest are cheap per vCPU and every larger one costs
/// 1.5× as much per unit (like the jump from Graviton to the largest x86 sizes).
fn types_with_a_price_cliff() -> Vec<karpenter_core::instance_type::InstanceType> {
    let mut types = benchmark_instance_types(8);
    for t in types.iter_mut().skip(2) {
        for o in &mut t.offerings {
            o.price *= 1.5;
        }
    }
    types
}

#[test]
fn cost_aware_packing_opens_a_new_node_instead_of_growing_past_a_price_cliff() {
    let pods: Vec<Pod> = (0..6).map(|i| pod(&format!("p{i}"), 900, 256)).collect();
    let snap = snapshot_with(pods, types_with_a_price_cliff());
    let karpenter = solve(
        &snap,
        &SolveOptions {
            packing: Packing::Karpenter,
            ..SolveOptions::default()
        },
    );
    let cost_aware = solve(
        &snap,
        &SolveOptions {
            packing: Packing::CostAware,
            ..SolveOptions::default()
        },
    );
    // Karpenter fills one claim to a 6-vCPU type above the cliff.
    assert_eq!(karpenter.new_node_claims.len(), 1);
    assert_eq!(
        karpenter.new_node_claims[0].instance_types[0].name,
        "fake-it-5"
    );
    // Cost-aware: a 1-vCPU claim grows to 2 vCPU (the rise equals a new node), then stops.
    assert_eq!(cost_aware.new_node_claims.len(), 3);
    for claim in &cost_aware.new_node_claims {
        assert_eq!(claim.instance_types[0].name, "fake-it-1");
        assert_eq!(claim.pods.len(), 2);
    }
    assert!(cost_aware.new_cost_per_hour() < karpenter.new_cost_per_hour());
    assert_eq!(cost_aware.placed_pods(), 6);
    // `Cheapest` runs both and keeps the cheaper plan.
    let cheapest = solve(
        &snap,
        &SolveOptions {
            packing: Packing::Cheapest,
            ..SolveOptions::default()
        },
    );
    assert_eq!(cheapest, cost_aware);
}

#[test]
fn cost_aware_packing_still_grows_a_node_when_no_new_node_may_take_the_pod() {
    // Required hostname affinity to each other: every pod must share the first pod's node,
    // so growing past the cliff is the only way (not a new node, not unschedulable).
    let pods: Vec<Pod> = (0..4)
        .map(|i| {
            let mut p = pod(&format!("web-{i}"), 900, 256);
            p.labels.insert("app".into(), "web".into());
            p.pod_affinity.push(PodAffinityTerm {
                topology_key: labels::HOSTNAME.into(),
                selector: app_selector("web"),
                namespaces: vec![],
                namespace_selector: None,
            });
            p
        })
        .collect();
    let snap = snapshot_with(pods, types_with_a_price_cliff());
    let d = solve(
        &snap,
        &SolveOptions {
            packing: Packing::CostAware,
            ..SolveOptions::default()
        },
    );
    assert!(d.unschedulable.is_empty(), "{:?}", d.unschedulable);
    assert_eq!(d.new_node_claims.len(), 1);
    assert_eq!(d.new_node_claims[0].pods.len(), 4);
}
