use proptest::prelude::*;

use super::*;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY, PODS};
use crate::scheduling::optimal::test_support::res;

fn item(requests: Resources, max_count: u32, value: f64) -> Item {
    Item {
        requests,
        max_count,
        value,
    }
}

/// The best value by enumerating every count vector.
fn brute_force(capacity: &Resources, items: &[Item]) -> f64 {
    let mut best: f64 = 0.0;
    let mut counts = vec![0u32; items.len()];
    loop {
        let mut load = Resources::ZERO;
        let mut value = 0.0;
        for (it, &c) in items.iter().zip(&counts) {
            for _ in 0..c {
                load += it.requests;
            }
            if it.value.is_finite() && it.value > 0.0 {
                value += f64::from(c) * it.value;
            }
        }
        if load.fits_in(capacity) {
            best = best.max(value);
        }
        let mut i = 0;
        loop {
            if i == items.len() {
                return best;
            }
            if counts[i] < items[i].max_count {
                counts[i] += 1;
                break;
            }
            counts[i] = 0;
            i += 1;
        }
    }
}

fn check_feasible(capacity: &Resources, items: &[Item], solution: &KnapsackSolution) {
    let mut load = Resources::ZERO;
    for (it, &c) in items.iter().zip(&solution.counts) {
        assert!(c <= it.max_count);
        for _ in 0..c {
            load += it.requests;
        }
    }
    assert!(load.fits_in(capacity), "{load} does not fit {capacity}");
    let value: f64 = items
        .iter()
        .zip(&solution.counts)
        .map(|(it, &c)| f64::from(c) * it.value)
        .sum();
    assert!((value - solution.value).abs() <= 1e-9 * value.max(1.0));
}

#[test]
fn max_copies_respects_every_slot_and_the_limit() {
    let cap = res(1000, 1024, 3);
    assert_eq!(max_copies(&res(300, 100, 1), &cap, 10), 3, "pods slot");
    assert_eq!(max_copies(&res(300, 100, 0), &cap, 10), 3, "cpu");
    assert_eq!(max_copies(&res(100, 100, 0), &cap, 4), 4, "limit");
    assert_eq!(max_copies(&Resources::ZERO, &cap, 7), 7);
    let mut negative = cap;
    negative.0[EPHEMERAL_STORAGE] = -1;
    assert_eq!(max_copies(&Resources::ZERO, &negative, 7), 0);
}

#[test]
fn small_example_exact_beats_greedy() {
    // The denser pod (6 per 0.6 node) blocks a second one; two of the other (4.9 per 0.5
    // node) fill the node and are worth more.
    let cap = res(1000, 4096, 10);
    let items = [
        item(res(600, 100, 1), 2, 6.0),
        item(res(500, 100, 1), 2, 4.9),
    ];
    let greedy = greedy(&cap, &items);
    assert_eq!(greedy.counts, vec![1, 0]);
    let exact = branch_and_bound(&cap, &items, 1000);
    assert!(exact.exact);
    assert_eq!(exact.counts, vec![0, 2]);
    assert!((exact.value - 9.8).abs() < 1e-12);
    assert!(exact.upper_bound >= 9.8 && exact.upper_bound < 9.8 + 1e-9);
}

#[test]
fn out_of_budget_keeps_a_valid_bound() {
    let cap = res(1000, 4096, 10);
    let items = [
        item(res(600, 100, 1), 2, 6.0),
        item(res(500, 100, 1), 2, 4.9),
    ];
    let cut = branch_and_bound(&cap, &items, 1);
    assert!(!cut.exact);
    assert_eq!(cut.counts, vec![1, 0], "the greedy start");
    assert!(cut.upper_bound >= 9.8, "{}", cut.upper_bound);
    assert_eq!(cut.nodes, 1);
}

#[test]
fn degenerate_inputs() {
    let cap = res(1000, 1024, 10);
    let empty = branch_and_bound(&cap, &[], 100);
    assert_eq!(
        (empty.value, empty.upper_bound, empty.exact),
        (0.0, 0.0, true)
    );
    // Worthless, unfitting and zero-count items are never chosen.
    let items = [
        item(res(100, 100, 1), 5, 0.0),
        item(res(100, 100, 1), 5, f64::NAN),
        item(res(100, 100, 1), 5, -1.0),
        item(res(2000, 100, 1), 5, 1.0),
        item(res(100, 100, 1), 0, 1.0),
    ];
    let none = branch_and_bound(&cap, &items, 100);
    assert_eq!(none.counts, vec![0; 5]);
    assert_eq!(none.value, 0.0);
    // A pod requesting nothing goes in up to its limit.
    let free = branch_and_bound(&cap, &[item(Resources::ZERO, 4, 1.5)], 100);
    assert_eq!(free.counts, vec![4]);
    assert!(free.upper_bound >= 6.0 && free.upper_bound < 6.0 + 1e-9);
    // A node with a negative slot holds nothing.
    let mut broken = cap;
    broken.0[CPU] = -5;
    let nothing = greedy(&broken, &[item(Resources::ZERO, 4, 1.5)]);
    assert_eq!(nothing.counts, vec![0]);
}

#[test]
fn deterministic_with_ties() {
    let cap = res(1000, 1024, 10);
    let items = [
        item(res(500, 100, 1), 3, 1.0),
        item(res(500, 100, 1), 3, 1.0),
        item(res(100, 500, 1), 3, 1.0),
    ];
    let a = branch_and_bound(&cap, &items, 1000);
    let b = branch_and_bound(&cap, &items, 1000);
    assert_eq!(a, b);
    assert_eq!(a.value, brute_force(&cap, &items));
}

fn instance() -> impl Strategy<Value = (Resources, Vec<Item>)> {
    let slots = prop::sample::select(vec![2usize, 3]);
    (slots, 1usize..=4).prop_flat_map(|(used, n)| {
        let capacity = (1i64..=12, 1i64..=12, 1i64..=6);
        let items = prop::collection::vec((0i64..=5, 0i64..=5, 0u32..=4, 0u32..=20), n);
        (capacity, items).prop_map(move |((c, m, p), items)| {
            let pods = if used == 3 { p } else { i64::MAX };
            let capacity = Resources::from_pairs(&[(CPU, c), (MEMORY, m), (PODS, pods)]);
            let items = items
                .into_iter()
                .map(|(rc, rm, max, v)| Item {
                    requests: Resources::from_pairs(&[(CPU, rc), (MEMORY, rm), (PODS, 1)]),
                    max_count: max,
                    value: f64::from(v) / 4.0,
                })
                .collect();
            (capacity, items)
        })
    })
}

proptest! {
    #[test]
    fn exact_matches_brute_force((capacity, items) in instance()) {
        let best = brute_force(&capacity, &items);
        let fast = greedy(&capacity, &items);
        let exact = branch_and_bound(&capacity, &items, 1_000_000);
        check_feasible(&capacity, &items, &fast);
        check_feasible(&capacity, &items, &exact);
        prop_assert!(exact.exact);
        prop_assert!((exact.value - best).abs() <= 1e-9, "{} vs {best}", exact.value);
        prop_assert!(fast.value <= exact.value + 1e-9);
        prop_assert!(exact.upper_bound >= best - 1e-12);
        prop_assert!(fast.upper_bound >= best - 1e-9);
        prop_assert!(relaxation_bound(&capacity, &items) >= best - 1e-9);
    }

    #[test]
    fn a_cut_search_still_bounds((capacity, items) in instance(), budget in 1u64..6) {
        let best = brute_force(&capacity, &items);
        let cut = branch_and_bound(&capacity, &items, budget);
        check_feasible(&capacity, &items, &cut);
        prop_assert!(cut.value <= best + 1e-9);
        prop_assert!(cut.upper_bound >= best - 1e-9);
    }
}
