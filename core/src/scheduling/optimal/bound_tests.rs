use proptest::prelude::*;

use super::*;
use crate::scheduling::optimal::simplex::{CoveringLp, SimplexOptions};
use crate::scheduling::optimal::test_support::{
    best_fleet, bin, configurations, full_lp, kind, tiny_instance,
};

fn tol(x: f64) -> f64 {
    1e-7 * x.abs().max(1.0)
}

fn solve(kinds: &[Kind], types: &[BinType]) -> ConfigurationLp {
    configuration_lp(kinds, types, &LpOptions::default()).unwrap()
}

proptest! {
    #[test]
    fn column_generation_matches_the_full_lp((kinds, types) in tiny_instance()) {
        let lp = solve(&kinds, &types);
        let full = full_lp(&kinds, &types, 0.0);
        prop_assert!(lp.converged);
        prop_assert!((lp.lp_objective - full).abs() <= tol(full), "{} vs {full}", lp.lp_objective);
        prop_assert!(lp.bound <= full + tol(full));
        prop_assert!(lp.bound >= full - tol(full), "converged: the bound is the LP value");
        let best = best_fleet(&kinds, &types);
        prop_assert!(lp.bound <= best + tol(best), "bound {} > best fleet {best}", lp.bound);

        // The duals are feasible for every configuration of every type.
        for t in &types {
            for config in configurations(&kinds, &t.allocatable) {
                let value: f64 = config.iter().zip(&lp.duals).map(|(&k, y)| f64::from(k) * y).sum();
                prop_assert!(value <= t.price + tol(t.price), "{config:?} worth {value} > {}", t.price);
            }
        }
        // The LP's columns cover every placeable pod.
        for (i, k) in kinds.iter().enumerate() {
            let covered: f64 = lp.columns.iter().map(|c| f64::from(c.counts[i]) * c.value).sum();
            if lp.unplaceable.contains(&i) {
                prop_assert_eq!(covered, 0.0);
            } else {
                prop_assert!(covered >= f64::from(k.count) - 1e-6);
            }
        }
        // Pruning dominated and useless types does not change the LP.
        let kept: Vec<BinType> = lp.types_considered.iter().map(|&t| types[t].clone()).collect();
        let pruned = full_lp(&kinds, &kept, 0.0);
        prop_assert!((pruned - full).abs() <= tol(full), "{pruned} vs {full}");
    }

    #[test]
    fn the_bound_holds_when_stopped_early(
        (kinds, types) in tiny_instance(),
        node_budget in 1u64..20,
    ) {
        let options = LpOptions {
            max_rounds: 1,
            node_budget,
            quick_node_budget: node_budget / 2,
            ..LpOptions::default()
        };
        let lp = configuration_lp(&kinds, &types, &options).unwrap();
        let full = full_lp(&kinds, &types, 0.0);
        prop_assert_eq!(lp.rounds, 1);
        prop_assert!(lp.bound <= full + tol(full), "{} > {full}", lp.bound);
        prop_assert!(lp.lp_objective >= full - tol(full));
    }

    #[test]
    fn node_cost_is_added_to_every_node((kinds, types) in tiny_instance(), cents in 1u32..100) {
        let node_cost = f64::from(cents) / 100.0;
        let options = LpOptions { node_cost, ..LpOptions::default() };
        let lp = configuration_lp(&kinds, &types, &options).unwrap();
        let full = full_lp(&kinds, &types, node_cost);
        prop_assert!(lp.converged);
        prop_assert!((lp.bound - full).abs() <= tol(full), "{} vs {full}", lp.bound);
    }
}

#[test]
fn configuration_lp_is_tighter_than_aggregate_resources() {
    // A CPU-heavy pod fits only the compute type, a memory-heavy one only the memory type:
    // each needs a node of its own (cost 2), but pooled resources would fit in 1.5 nodes.
    let kinds = [kind(3000, 1024, 1), kind(500, 7 * 1024, 1)];
    let types = [bin(4000, 2048, 10, 1.0), bin(1000, 8 * 1024, 10, 1.0)];
    let lp = solve(&kinds, &types);
    assert!(lp.converged);
    assert!((lp.bound - 2.0).abs() < 1e-9, "{}", lp.bound);

    // Aggregate LP in cores and GiB: rows CPU, memory; one column per type; dear single-row
    // columns give the simplex its starting basis and are never used.
    let mut aggregate = CoveringLp::new(&[3.5, 8.0], SimplexOptions::default()).unwrap();
    aggregate.add_column(1e6, &[(0, 1.0)]).unwrap();
    aggregate.add_column(1e6, &[(1, 1.0)]).unwrap();
    aggregate.add_column(1.0, &[(0, 4.0), (1, 2.0)]).unwrap();
    aggregate.add_column(1.0, &[(0, 1.0), (1, 8.0)]).unwrap();
    aggregate.solve().unwrap();
    assert!((aggregate.objective() - 1.5).abs() < 1e-9);
    assert!(aggregate.objective() < lp.bound - 0.4);
}

#[test]
fn dominated_and_useless_types_are_dropped() {
    let kinds = [kind(500, 512, 3), kind(1000, 256, 2)];
    let types = [
        bin(1000, 1024, 4, 1.2),   // dominated by 2: smaller and dearer
        bin(200, 8192, 10, 0.1),   // nothing fits
        bin(2000, 2048, 10, 1.0),  // kept
        bin(2000, 2048, 10, 1.0),  // identical to 2: the first is kept
        bin(4000, 4096, 20, 1.9),  // larger and dearer: kept
        bin(2000, 2048, 10, 0.99), // cheaper and as large: dominates 2 and 3
    ];
    let lp = solve(&kinds, &types);
    assert_eq!(lp.types_considered, vec![4, 5]);
    let kept = [types[4].clone(), types[5].clone()];
    assert!((lp.lp_objective - solve(&kinds, &kept).lp_objective).abs() < 1e-9);
    assert!((lp.lp_objective - full_lp(&kinds, &types, 0.0)).abs() < 1e-9);
    assert!(
        lp.columns
            .iter()
            .all(|c| c.type_index == 4 || c.type_index == 5)
    );
}

#[test]
fn empty_and_degenerate_inputs() {
    let none = solve(&[], &[]);
    assert_eq!(
        (none.bound, none.lp_objective, none.converged),
        (0.0, 0.0, true)
    );
    assert!(none.columns.is_empty() && none.duals.is_empty());

    let no_types = solve(&[kind(100, 100, 3)], &[]);
    assert_eq!(no_types.unplaceable, vec![0]);
    assert_eq!(no_types.bound, 0.0);

    let no_kinds = solve(&[], &[bin(1000, 1024, 10, 1.0)]);
    assert_eq!(no_kinds.bound, 0.0);
    assert!(
        no_kinds.types_considered.is_empty(),
        "nothing fits a type with no pods"
    );

    // Zero-count kinds are ignored; a kind too big for every type is reported, not fatal.
    let kinds = [kind(100, 100, 0), kind(9000, 100, 2), kind(500, 512, 4)];
    let types = [bin(2000, 2048, 10, 1.0)];
    let lp = solve(&kinds, &types);
    assert_eq!(lp.unplaceable, vec![1]);
    assert!(lp.converged);
    assert!(
        (lp.bound - 1.0).abs() < 1e-9,
        "4 pods of 500m fill one node: {}",
        lp.bound
    );
    assert_eq!(lp.duals.len(), 3);
    assert_eq!((lp.duals[0], lp.duals[1]), (0.0, 0.0));
    assert_eq!(lp.columns.len(), 1);
    assert_eq!(lp.columns[0].counts, vec![0, 0, 4]);
}

#[test]
fn invalid_input_is_an_error_naming_it() {
    let kinds = [kind(100, 100, 1)];
    let err = configuration_lp(
        &kinds,
        &[bin(1000, 1024, 10, f64::NAN)],
        &LpOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LpError::InvalidPrice { type_index: 0, .. }));
    assert!(
        err.to_string().contains("price of bin type 0 is NaN"),
        "{err}"
    );
    for price in [-1.0, f64::INFINITY] {
        let types = [bin(1000, 1024, 10, 1.0), bin(1000, 1024, 10, price)];
        let err = configuration_lp(&kinds, &types, &LpOptions::default()).unwrap_err();
        assert!(matches!(err, LpError::InvalidPrice { type_index: 1, .. }));
    }

    let mut negative = kind(100, 100, 1);
    negative.requests.0[crate::resources::MEMORY] = -5;
    let err =
        configuration_lp(&[kinds[0].clone(), negative], &[], &LpOptions::default()).unwrap_err();
    assert_eq!(
        err,
        LpError::InvalidRequest {
            kind_index: 1,
            resource: "memory",
            amount: -5
        }
    );

    for options in [
        LpOptions {
            epsilon: f64::NAN,
            ..LpOptions::default()
        },
        LpOptions {
            node_cost: -1.0,
            ..LpOptions::default()
        },
    ] {
        assert!(matches!(
            configuration_lp(&kinds, &[], &options),
            Err(LpError::InvalidOption { .. })
        ));
    }
}

#[test]
fn free_types_give_a_zero_bound() {
    let kinds = [kind(500, 512, 4)];
    let types = [bin(1000, 1024, 10, 0.0), bin(2000, 2048, 10, 1.0)];
    let lp = solve(&kinds, &types);
    assert_eq!(lp.bound, 0.0);
    assert_eq!(lp.lp_objective, 0.0);
}

#[test]
fn farley_bound_scales_the_duals_down() {
    // Duals worth 3 per node of price 2 (θ = 1.5): 12 / 1.5.
    assert_eq!(farley_bound(12.0, &[3.0, 1.0], &[2.0, 2.0]), 8.0);
    assert_eq!(farley_bound(12.0, &[1.0], &[2.0]), 12.0, "θ is at least 1");
    assert_eq!(farley_bound(12.0, &[1.0], &[0.0]), 0.0);
    assert_eq!(
        farley_bound(12.0, &[0.0], &[0.0]),
        12.0,
        "a free type of no value"
    );
}
