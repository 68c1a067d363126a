use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS, Resources};
use crate::scheduling::optimal::test_support::{
    best_fleet, bin, kind, load, medium_instance, tiny_instance,
};
use crate::scheduling::optimal::{LpColumn, configuration_lp};

/// Every pod is placed exactly once (or reported unplaced), every node holds its pods, the
/// cost adds up and the order is canonical.
fn check_fleet(kinds: &[Kind], types: &[BinType], fleet: &Fleet) {
    for (i, k) in kinds.iter().enumerate() {
        let placed: u32 = fleet.nodes.iter().map(|n| n.counts[i]).sum();
        assert_eq!(placed + fleet.unplaced[i], k.count, "kind {i}");
    }
    for node in &fleet.nodes {
        assert!(node.counts.iter().any(|&c| c > 0), "empty node");
        let pods = load(kinds, &node.counts);
        let allocatable = types[node.type_index].allocatable;
        assert!(
            pods.fits_in(&allocatable),
            "{pods} does not fit {allocatable}"
        );
    }
    let cost: f64 = fleet.nodes.iter().map(|n| types[n.type_index].price).sum();
    assert!((cost - fleet.cost).abs() <= 1e-9 * cost.max(1.0));
    assert!(fleet.nodes.windows(2).all(|w| w[0] <= w[1]), "sorted");
}

fn lp_and_fleet(kinds: &[Kind], types: &[BinType]) -> (ConfigurationLp, Fleet) {
    let options = LpOptions::default();
    let lp = configuration_lp(kinds, types, &options).unwrap();
    let fleet = pack(kinds, types, &lp, &options);
    (lp, fleet)
}

proptest! {
    #[test]
    fn fleets_hold_every_pod_and_cost_at_least_the_bound((kinds, types) in tiny_instance()) {
        let (lp, fleet) = lp_and_fleet(&kinds, &types);
        check_fleet(&kinds, &types, &fleet);
        for (i, k) in kinds.iter().enumerate() {
            let expected = if lp.unplaceable.contains(&i) { k.count } else { 0 };
            prop_assert_eq!(fleet.unplaced[i], expected);
        }
        let best = best_fleet(&kinds, &types);
        prop_assert!(fleet.cost >= lp.bound - 1e-9);
        prop_assert!(fleet.cost >= best - 1e-9, "{} beats the optimum {best}", fleet.cost);
        // Deterministic.
        prop_assert_eq!(pack(&kinds, &types, &lp, &LpOptions::default()), fleet);
    }
}

#[test]
fn medium_instance_is_within_five_percent_of_the_bound() {
    let (kinds, types) = medium_instance();
    assert_eq!(kinds.iter().map(|k| k.count).sum::<u32>(), 1000);
    assert_eq!(types.len(), 20);
    let start = Instant::now();
    let options = LpOptions::default();
    let lp = configuration_lp(&kinds, &types, &options).unwrap();
    let lp_time = start.elapsed();
    let fleet = pack(&kinds, &types, &lp, &options);
    let elapsed = start.elapsed();
    println!("lp {lp_time:?}, pack {:?}", elapsed - lp_time);
    check_fleet(&kinds, &types, &fleet);
    assert!(fleet.unplaced.iter().all(|&u| u == 0));
    let ratio = fleet.cost / lp.bound;
    println!(
        "medium: bound {:.4} lp {:.4} converged {} rounds {} fleet {:.4} ({} nodes) ratio {ratio:.4} in {elapsed:?}",
        lp.bound,
        lp.lp_objective,
        lp.converged,
        lp.rounds,
        fleet.cost,
        fleet.nodes.len()
    );
    assert!(lp.bound > 0.0);
    assert!((1.0 - 1e-9..=1.05).contains(&ratio), "ratio {ratio}");
}

#[test]
fn leftovers_are_placed_from_the_lp_of_what_is_left() {
    // A big node holds 4 pods for 1.0, a small one 1 pod for 0.5: the LP opens 1.25 big
    // nodes; the fleet rounds down to one big node, and the LP of the fifth pod puts it on a
    // small one.
    let kinds = [kind(1000, 1024, 5)];
    let types = [bin(4000, 4096, 10, 1.0), bin(1000, 1024, 10, 0.5)];
    let (lp, fleet) = lp_and_fleet(&kinds, &types);
    assert!((lp.bound - 1.25).abs() < 1e-9);
    check_fleet(&kinds, &types, &fleet);
    assert_eq!(
        fleet.nodes,
        vec![
            FleetNode {
                type_index: 0,
                counts: vec![4]
            },
            FleetNode {
                type_index: 1,
                counts: vec![1]
            },
        ]
    );
    assert!((fleet.cost - 1.5).abs() < 1e-12);
}

#[test]
fn last_resort_opens_the_best_value_per_dollar() {
    let kinds = [kind(1000, 1024, 5)];
    let types = [bin(4000, 4096, 10, 1.0), bin(1000, 1024, 10, 0.5)];
    let options = LpOptions::default();
    let packing = Packing::new(&kinds, &types, &options);
    let mut fleet = Building {
        remaining: vec![5],
        nodes: Vec::new(),
    };
    // No duals: pods are valued by size. Four on the big node are worth 1.0 per dollar, one
    // on the small node 0.5; then the last pod is worth twice as much per dollar on the small.
    packing.place_by_value(&mut fleet, &[], &options);
    assert_eq!(fleet.remaining, vec![0]);
    assert_eq!(
        fleet.nodes,
        vec![
            FleetNode {
                type_index: 0,
                counts: vec![4]
            },
            FleetNode {
                type_index: 1,
                counts: vec![1]
            },
        ]
    );
    // With duals the same choice, and a kind that fits nothing stays where it is.
    let kinds = [kind(1000, 1024, 5), kind(9000, 100, 2)];
    let packing = Packing::new(&kinds, &types, &options);
    let mut fleet = Building {
        remaining: vec![5, 2],
        nodes: Vec::new(),
    };
    packing.place_by_value(&mut fleet, &[0.25, 0.0], &options);
    assert_eq!(fleet.remaining, vec![0, 2]);
    assert_eq!(fleet.nodes.len(), 2);
}

#[test]
fn nodes_shrink_to_the_cheapest_type_that_holds_them() {
    let kinds = [kind(500, 512, 3)];
    let types = [
        bin(4000, 4096, 10, 1.0),
        bin(1000, 1024, 10, 0.4),
        bin(2000, 2048, 10, 0.7),
    ];
    // A hand-made LP that over-provisions: one big node per kind plus a capped copy.
    let lp = ConfigurationLp {
        bound: 0.0,
        lp_objective: 0.0,
        converged: false,
        rounds: 0,
        columns: vec![LpColumn {
            type_index: 0,
            counts: vec![2],
            value: 2.0,
        }],
        duals: vec![0.0],
        unplaceable: vec![],
        types_considered: vec![0, 1, 2],
        generated: vec![],
    };
    let fleet = pack(&kinds, &types, &lp, &LpOptions::default());
    check_fleet(&kinds, &types, &fleet);
    // 2 pods (1000m) shrink to type 1; the capped second copy holds 1 pod, also type 1.
    assert_eq!(fleet.nodes.len(), 2);
    assert!(
        fleet.nodes.iter().all(|n| n.type_index == 1),
        "{:?}",
        fleet.nodes
    );
}

#[test]
fn no_panics_on_empty_or_mismatched_input() {
    let options = LpOptions::default();
    let empty_lp = configuration_lp(&[], &[], &options).unwrap();
    let fleet = pack(&[], &[], &empty_lp, &options);
    assert!(fleet.nodes.is_empty() && fleet.unplaced.is_empty() && fleet.cost == 0.0);

    // No types: everything is unplaced.
    let kinds = [kind(100, 100, 3), kind(200, 100, 0)];
    let fleet = pack(&kinds, &[], &empty_lp, &options);
    assert_eq!(fleet.unplaced, vec![3, 0]);

    // An LP of other input (wrong lengths, unknown types) is ignored: the leftover pass
    // places everything, by size since there are no usable duals.
    let types = [bin(1000, 1024, 10, 1.0)];
    let other = configuration_lp(&[kind(100, 100, 1)], &[bin(500, 512, 5, 1.0)], &options).unwrap();
    let mut garbage = other.clone();
    garbage.columns[0].type_index = 7;
    for lp in [&empty_lp, &other, &garbage] {
        let fleet = pack(&kinds, &types, lp, &options);
        check_fleet(&kinds, &types, &fleet);
        assert_eq!(fleet.unplaced, vec![0, 0]);
        assert_eq!(fleet.nodes.len(), 1, "3 pods of 100m share one node");
    }

    // Invalid kinds and types are skipped rather than trusted.
    let mut negative = kind(100, 100, 2);
    negative.requests.0[crate::resources::CPU] = -1;
    let kinds = [negative, kind(9000, 100, 1), kind(100, 100, 1)];
    let types = [bin(1000, 1024, 10, f64::NAN), bin(1000, 1024, 10, 2.0)];
    let fleet = pack(&kinds, &types, &empty_lp, &options);
    assert_eq!(fleet.unplaced, vec![2, 1, 0]);
    assert_eq!(
        fleet.nodes,
        vec![FleetNode {
            type_index: 1,
            counts: vec![0, 0, 1]
        }]
    );
}

/// Larger random instances (no brute force): up to 8 kinds of up to 60 pods on up to 6 types.
fn random_instance() -> impl Strategy<Value = (Vec<Kind>, Vec<BinType>)> {
    let kinds = prop::collection::vec((1i64..=16, 1i64..=16, 0u32..=60), 1..=8).prop_map(|v| {
        v.into_iter()
            .map(|(c, m, n)| kind(125 * c, 128 * m, n))
            .collect::<Vec<_>>()
    });
    let types = prop::collection::vec((1i64..=32, 1i64..=64, 4i64..=110, 1u32..=400), 1..=6)
        .prop_map(|v| {
            v.into_iter()
                .map(|(c, m, p, price)| bin(500 * c, 512 * m, p, f64::from(price) / 100.0))
                .collect::<Vec<_>>()
        });
    (kinds, types)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn larger_fleets_are_valid((kinds, types) in random_instance()) {
        let (lp, fleet) = lp_and_fleet(&kinds, &types);
        check_fleet(&kinds, &types, &fleet);
        for (i, k) in kinds.iter().enumerate() {
            let expected = if lp.unplaceable.contains(&i) { k.count } else { 0 };
            prop_assert_eq!(fleet.unplaced[i], expected);
        }
        prop_assert!(lp.bound <= lp.lp_objective + 1e-9);
        prop_assert!(fleet.cost >= lp.bound - 1e-9 * lp.bound.max(1.0));
    }
}

/// Anything at all: negative, zero and huge requests and capacities, unusable prices.
fn garbage_instance() -> impl Strategy<Value = (Vec<Kind>, Vec<BinType>)> {
    let amount = prop_oneof![
        Just(0i64),
        Just(-1),
        Just(i64::MAX),
        Just(i64::MIN),
        1i64..5000
    ];
    let resources = prop::collection::vec(amount, 4).prop_map(|v| {
        Resources::from_pairs(&[
            (CPU, v[0]),
            (MEMORY, v[1]),
            (EPHEMERAL_STORAGE, v[2]),
            (PODS, v[3]),
        ])
    });
    let price = prop_oneof![
        Just(f64::NAN),
        Just(-1.0),
        Just(f64::INFINITY),
        Just(0.0),
        0.01f64..10.0
    ];
    let kinds = prop::collection::vec((resources.clone(), 0u32..6), 0..5).prop_map(|v| {
        v.into_iter()
            .map(|(requests, count)| Kind { requests, count })
            .collect()
    });
    let types = prop::collection::vec((resources, price), 0..5).prop_map(|v| {
        v.into_iter()
            .map(|(allocatable, price)| BinType { allocatable, price })
            .collect()
    });
    (kinds, types)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics((kinds, types) in garbage_instance()) {
        let options = LpOptions::default();
        let empty = configuration_lp(&[], &[], &options).unwrap();
        let lp = configuration_lp(&kinds, &types, &options).unwrap_or(empty);
        let fleet = pack(&kinds, &types, &lp, &options);
        for (i, k) in kinds.iter().enumerate() {
            let placed: u32 = fleet.nodes.iter().map(|n| n.counts[i]).sum();
            prop_assert_eq!(placed + fleet.unplaced[i], k.count);
        }
        for node in &fleet.nodes {
            prop_assert!(load(&kinds, &node.counts).fits_in(&types[node.type_index].allocatable));
        }
    }
}
