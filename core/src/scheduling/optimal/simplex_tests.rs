use proptest::prelude::*;

use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn lp(demand: &[f64], columns: &[(f64, &[(usize, f64)])]) -> CoveringLp {
    let mut lp = CoveringLp::new(demand, SimplexOptions::default()).unwrap();
    for (cost, entries) in columns {
        lp.add_column(*cost, entries).unwrap();
    }
    lp
}

/// Checks optimality by duality: x and y feasible, objectives equal.
fn assert_optimal(lp: &CoveringLp, demand: &[f64], columns: &Columns) {
    let x = lp.primal();
    let y = lp.duals();
    let mut covered = vec![0.0; demand.len()];
    for (xj, (_, entries)) in x.iter().zip(columns) {
        assert!(*xj >= 0.0);
        for &(r, a) in entries {
            covered[r] += a * xj;
        }
    }
    for (c, d) in covered.iter().zip(demand) {
        assert!(*c >= d - 1e-7 * d.max(1.0), "row covered {c} < {d}");
    }
    for yi in &y {
        assert!(*yi >= -1e-9, "negative dual {yi}");
    }
    for (cost, entries) in columns {
        let priced: f64 = entries.iter().map(|&(r, a)| y[r] * a).sum();
        assert!(
            priced <= cost + 1e-7 * cost.max(1.0),
            "dual infeasible {priced} > {cost}"
        );
    }
    let dual_objective: f64 = y.iter().zip(demand).map(|(a, b)| a * b).sum();
    assert!(
        (dual_objective - lp.objective()).abs() <= 1e-7 * lp.objective().max(1.0),
        "duality gap {dual_objective} vs {}",
        lp.objective()
    );
}

#[test]
fn separate_rows() {
    let mut lp = lp(&[2.0, 3.0], &[(1.0, &[(0, 1.0)]), (2.0, &[(1, 1.0)])]);
    lp.solve().unwrap();
    assert!(close(lp.objective(), 8.0));
    assert_eq!(lp.primal(), vec![2.0, 3.0]);
    assert_eq!(lp.duals(), vec![1.0, 2.0]);
}

#[test]
fn shared_column_wins_where_cheaper() {
    // Rows need 4 and 2; singles cost 1 each, a column covering both costs 1.5.
    // Optimum: 2 of the shared column and 2 of the first single, cost 5;
    // duals y0 = 1 (the single), y1 = 0.5 (from y0 + y1 = 1.5).
    let mut lp = lp(
        &[4.0, 2.0],
        &[
            (1.0, &[(0, 1.0)]),
            (1.0, &[(1, 1.0)]),
            (1.5, &[(0, 1.0), (1, 1.0)]),
        ],
    );
    lp.solve().unwrap();
    assert!(close(lp.objective(), 5.0));
    let x = lp.primal();
    assert!(
        close(x[0], 2.0) && close(x[1], 0.0) && close(x[2], 2.0),
        "{x:?}"
    );
    let y = lp.duals();
    assert!(close(y[0], 1.0) && close(y[1], 0.5), "{y:?}");
}

#[test]
fn coefficients_above_one() {
    // One node holds 3 pods of row 0 for 1.0, or 2 of row 0 and 2 of row 1 for 1.2.
    // Demand 6 and 4: two of the mixed column (4 + 4 covered) plus 2/3 of the first.
    let mut lp = lp(
        &[6.0, 4.0],
        &[
            (1.0, &[(0, 3.0)]),
            (1.0, &[(1, 2.0)]),
            (1.2, &[(0, 2.0), (1, 2.0)]),
        ],
    );
    lp.solve().unwrap();
    assert!(close(lp.objective(), 2.4 + 2.0 / 3.0), "{}", lp.objective());
    let y = lp.duals();
    assert!(
        close(y[0], 1.0 / 3.0) && close(y[1], 0.6 - 1.0 / 3.0),
        "{y:?}"
    );
}

#[test]
fn degenerate_problem_solves_under_both_rules() {
    // Many optimal bases, a zero-demand row and ties everywhere.
    let columns: Columns = vec![
        (1.0, vec![(0, 1.0)]),
        (1.0, vec![(1, 1.0)]),
        (1.0, vec![(2, 1.0)]),
        (1.0, vec![(0, 1.0), (1, 1.0)]),
        (1.0, vec![(1, 1.0), (2, 1.0)]),
        (1.0, vec![(0, 1.0), (2, 1.0)]),
        (1.0, vec![(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)]),
        (2.0, vec![(0, 2.0), (1, 2.0), (2, 2.0)]),
    ];
    let demand = [1.0, 1.0, 1.0, 0.0];
    for bland_after in [0, 1, 20] {
        let options = SimplexOptions {
            bland_after,
            ..SimplexOptions::default()
        };
        let mut lp = CoveringLp::new(&demand, options).unwrap();
        for (cost, entries) in &columns {
            lp.add_column(*cost, entries).unwrap();
        }
        lp.solve().unwrap();
        assert!(close(lp.objective(), 1.0), "{}", lp.objective());
        assert_optimal(&lp, &demand, &columns);
    }
}

#[test]
fn warm_start_after_adding_a_column() {
    let mut lp = lp(&[4.0, 2.0], &[(1.0, &[(0, 1.0)]), (1.0, &[(1, 1.0)])]);
    lp.solve().unwrap();
    assert!(close(lp.objective(), 6.0));
    lp.add_column(1.5, &[(0, 1.0), (1, 1.0)]).unwrap();
    let pivots = lp.solve().unwrap();
    assert!(close(lp.objective(), 5.0));
    assert_eq!(pivots, 1, "one pivot from the previous basis");
    assert_eq!(lp.solve().unwrap(), 0, "already optimal");
}

#[test]
fn zero_demand_rows_need_no_column() {
    let mut lp = lp(&[0.0, 2.0], &[(1.0, &[(1, 2.0)])]);
    lp.solve().unwrap();
    assert!(close(lp.objective(), 1.0));
    assert_eq!(lp.duals(), vec![0.0, 0.5]);
}

#[test]
fn no_rows() {
    let mut lp = CoveringLp::new(&[], SimplexOptions::default()).unwrap();
    assert_eq!(lp.solve(), Ok(0));
    assert_eq!(lp.objective(), 0.0);
    assert!(lp.duals().is_empty());
}

#[test]
fn rejects_bad_input() {
    let opts = SimplexOptions::default;
    assert!(matches!(
        CoveringLp::new(&[1.0, f64::NAN], opts()),
        Err(SimplexError::InvalidDemand { row: 1, .. })
    ));
    assert!(matches!(
        CoveringLp::new(&[-1.0], opts()),
        Err(SimplexError::InvalidDemand { row: 0, .. })
    ));
    let bad_tolerance = SimplexOptions {
        tolerance: f64::NAN,
        ..opts()
    };
    assert!(matches!(
        CoveringLp::new(&[1.0], bad_tolerance),
        Err(SimplexError::InvalidTolerance(_))
    ));
    let mut lp = CoveringLp::new(&[1.0], opts()).unwrap();
    let err = lp.add_column(f64::NAN, &[(0, 1.0)]).unwrap_err();
    assert!(matches!(err, SimplexError::InvalidCost { column: 0, .. }));
    assert!(err.to_string().contains("cost of column 0 is NaN"), "{err}");
    for cost in [-1.0, f64::INFINITY] {
        assert!(lp.add_column(cost, &[(0, 1.0)]).is_err());
    }
    assert!(matches!(
        lp.add_column(1.0, &[(3, 1.0)]),
        Err(SimplexError::RowOutOfRange {
            row: 3,
            rows: 1,
            ..
        })
    ));
    for value in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            lp.add_column(1.0, &[(0, value)]),
            Err(SimplexError::InvalidEntry { row: 0, .. })
        ));
    }
    assert_eq!(lp.num_columns(), 0, "rejected columns are not added");
    // Nothing covers the row alone.
    assert_eq!(lp.solve(), Err(SimplexError::NoInitialBasis { row: 0 }));
}

#[test]
fn iteration_limit_is_an_error() {
    let options = SimplexOptions {
        max_iterations: 0,
        ..SimplexOptions::default()
    };
    let mut lp = CoveringLp::new(&[4.0, 2.0], options).unwrap();
    lp.add_column(1.0, &[(0, 1.0)]).unwrap();
    lp.add_column(1.0, &[(1, 1.0)]).unwrap();
    lp.add_column(1.0, &[(0, 1.0), (1, 1.0)]).unwrap();
    assert_eq!(
        lp.solve(),
        Err(SimplexError::IterationLimit { iterations: 0 })
    );
}

#[test]
fn repeated_rows_in_a_column_are_summed() {
    let mut lp = lp(&[4.0], &[(1.0, &[(0, 1.0), (0, 1.0), (0, 0.0)])]);
    lp.solve().unwrap();
    assert!(close(lp.objective(), 2.0));
}

/// Random covering LPs with a single-row column per row (the starting basis), columns added
/// in two batches (warm start), refactorizing often.
/// Columns as (cost, sparse entries).
type Columns = Vec<(f64, Vec<(usize, f64)>)>;

fn random_lp() -> impl Strategy<Value = (Vec<f64>, Columns)> {
    (1usize..=8).prop_flat_map(|m| {
        let demand = prop::collection::vec(0u32..=20, m);
        let singles = prop::collection::vec((1u32..=20, 1u32..=5), m);
        let extra = prop::collection::vec(
            (1u32..=30, prop::collection::vec((0..m, 0u32..=4), 1..=4)),
            0..=25,
        );
        (demand, singles, extra).prop_map(|(demand, singles, extra)| {
            let mut columns: Columns = singles
                .into_iter()
                .enumerate()
                .map(|(r, (c, a))| (f64::from(c), vec![(r, f64::from(a))]))
                .collect();
            for (c, entries) in extra {
                let mut entries: Vec<(usize, f64)> = entries
                    .into_iter()
                    .map(|(r, a)| (r, f64::from(a)))
                    .collect();
                entries.sort_by_key(|e| e.0);
                entries.dedup_by_key(|e| e.0);
                columns.push((f64::from(c) / 2.0, entries));
            }
            (demand.into_iter().map(f64::from).collect(), columns)
        })
    })
}

proptest! {
    #[test]
    fn random_lps_are_solved_to_optimality((demand, columns) in random_lp()) {
        let options = SimplexOptions { refactor_every: 3, ..SimplexOptions::default() };
        let mut lp = CoveringLp::new(&demand, options).unwrap();
        let half = columns.len() / 2;
        for (cost, entries) in &columns[..half.max(demand.len())] {
            lp.add_column(*cost, entries).unwrap();
        }
        lp.solve().unwrap();
        for (cost, entries) in &columns[half.max(demand.len())..] {
            lp.add_column(*cost, entries).unwrap();
        }
        lp.solve().unwrap();
        assert_optimal(&lp, &demand, &columns);
    }
}
