//! A small dense revised simplex for covering LPs, `min cᵀx  s.t.  A x ≥ d,  x ≥ 0`, with
//! `c ≥ 0`, `A ≥ 0` and `d ≥ 0`, to which columns are added over time (column generation).
//!
//! Rows are few (tens, up to a couple of hundred), columns up to a few thousand and sparse, so
//! the basis inverse is kept explicitly as a dense m×m matrix: each pivot updates it in product
//! form (one eta step), and every [`SimplexOptions::refactor_every`] pivots it is rebuilt from
//! the basis columns by Gauss–Jordan elimination with partial pivoting, which stops rounding
//! errors from piling up.
//!
//! Each `≥` row gets a surplus variable (column `-eᵢ`, cost 0). The first solve starts from a
//! diagonal basis: for a row with zero demand its surplus, otherwise the cheapest column that
//! covers that row alone (the caller guarantees one exists). Later solves start from the last
//! optimal basis (new columns enter at zero), which is what makes column generation cheap.
//!
//! Pricing is Dantzig's (most negative reduced cost) with a Harris-style ratio test; after a run
//! of degenerate pivots it switches to Bland's rule, which cannot cycle, and back after the
//! first pivot that makes progress.

/// Tuning of [`CoveringLp`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimplexOptions {
    /// Pivots allowed per [`CoveringLp::solve`] call before it gives up.
    pub max_iterations: usize,
    /// Rebuild the basis inverse from scratch after this many product-form updates.
    pub refactor_every: usize,
    /// Feasibility and pivot tolerance; optimality is tested against it times the largest cost.
    pub tolerance: f64,
    /// Switch to Bland's rule after this many degenerate pivots in a row.
    pub bland_after: usize,
}

impl Default for SimplexOptions {
    fn default() -> Self {
        SimplexOptions {
            max_iterations: 50_000,
            refactor_every: 50,
            tolerance: 1e-9,
            bland_after: 20,
        }
    }
}

/// Why a [`CoveringLp`] could not be built or solved.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimplexError {
    /// A demand is negative, NaN or infinite.
    #[error("demand of row {row} is {value}; it must be finite and at least 0")]
    InvalidDemand {
        /// The row.
        row: usize,
        /// The demand given.
        value: f64,
    },
    /// A column's cost is negative, NaN or infinite.
    #[error("cost of column {column} is {value}; it must be finite and at least 0")]
    InvalidCost {
        /// Index the column would have had.
        column: usize,
        /// The cost given.
        value: f64,
    },
    /// A column's coefficient is negative, NaN or infinite.
    #[error(
        "coefficient of column {column} in row {row} is {value}; it must be finite and at least 0"
    )]
    InvalidEntry {
        /// Index the column would have had.
        column: usize,
        /// The row of the coefficient.
        row: usize,
        /// The coefficient given.
        value: f64,
    },
    /// A column names a row that does not exist.
    #[error("column {column} has an entry in row {row}, but there are only {rows} rows")]
    RowOutOfRange {
        /// Index the column would have had.
        column: usize,
        /// The row named.
        row: usize,
        /// Number of rows.
        rows: usize,
    },
    /// The tolerance option is not a small positive number.
    #[error("simplex tolerance {0} must be finite and in (0, 0.01]")]
    InvalidTolerance(f64),
    /// A row with positive demand has no column covering it alone, so there is no starting basis.
    #[error("no column covers row {row} alone, so the simplex has no feasible starting basis")]
    NoInitialBasis {
        /// The row.
        row: usize,
    },
    /// The pivot limit was reached before optimality.
    #[error("simplex stopped after {iterations} pivots without reaching optimality")]
    IterationLimit {
        /// Pivots made in this solve.
        iterations: usize,
    },
    /// Rebuilding the basis inverse met a (numerically) singular basis.
    #[error("the simplex basis became numerically singular")]
    SingularBasis,
    /// Rounding made the basis infeasible beyond repair.
    #[error("the simplex lost primal feasibility (basic value {value} in row {row})")]
    LostFeasibility {
        /// Row position of the offending basic variable.
        row: usize,
        /// Its value.
        value: f64,
    },
    /// An improving column has no limiting row: impossible for a covering LP with `c ≥ 0`
    /// unless rounding went badly wrong.
    #[error("column {column} is an unbounded improving direction (numerical trouble)")]
    Unbounded {
        /// The entering column (surplus variables are numbered after the columns).
        column: usize,
    },
}

/// A basic or nonbasic variable. The derived order (all columns, then all surpluses) is the
/// fixed order Bland's rule needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Var {
    Column(usize),
    Surplus(usize),
}

/// A covering LP and its current basis; see the module docs.
#[derive(Clone, Debug)]
pub struct CoveringLp {
    options: SimplexOptions,
    demand: Vec<f64>,
    costs: Vec<f64>,
    /// Sparse columns: (row, coefficient > 0), rows ascending.
    columns: Vec<Vec<(usize, f64)>>,
    /// Largest cost seen, to scale the optimality test.
    cost_scale: f64,
    /// `basis[r]` is basic in row position `r`; empty until the first solve.
    basis: Vec<Var>,
    /// Row position of each basic column / surplus.
    column_position: Vec<Option<usize>>,
    surplus_position: Vec<Option<usize>>,
    /// Dense basis inverse, row-major m×m.
    inverse: Vec<f64>,
    /// Values of the basic variables, by row position.
    basic_values: Vec<f64>,
    pivots_since_refactor: usize,
    /// The inverse must be rebuilt before use (first solve, or after an error).
    stale: bool,
}

impl CoveringLp {
    /// An LP with these row demands and no columns yet.
    pub fn new(demand: &[f64], options: SimplexOptions) -> Result<CoveringLp, SimplexError> {
        if !(options.tolerance.is_finite() && options.tolerance > 0.0 && options.tolerance <= 0.01)
        {
            return Err(SimplexError::InvalidTolerance(options.tolerance));
        }
        if let Some((row, &value)) = demand
            .iter()
            .enumerate()
            .find(|(_, d)| !(d.is_finite() && **d >= 0.0))
        {
            return Err(SimplexError::InvalidDemand { row, value });
        }
        Ok(CoveringLp {
            options,
            demand: demand.to_vec(),
            costs: Vec::new(),
            columns: Vec::new(),
            cost_scale: 0.0,
            basis: Vec::new(),
            column_position: Vec::new(),
            surplus_position: vec![None; demand.len()],
            inverse: Vec::new(),
            basic_values: Vec::new(),
            pivots_since_refactor: 0,
            stale: true,
        })
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.demand.len()
    }

    /// Number of columns added so far.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// Adds a column with this cost and (row, coefficient) entries (zero coefficients are
    /// dropped, repeated rows are summed) and returns its index. It starts nonbasic at zero, so
    /// the current basis stays feasible.
    pub fn add_column(
        &mut self,
        cost: f64,
        entries: &[(usize, f64)],
    ) -> Result<usize, SimplexError> {
        let column = self.columns.len();
        if !(cost.is_finite() && cost >= 0.0) {
            return Err(SimplexError::InvalidCost {
                column,
                value: cost,
            });
        }
        let rows = self.num_rows();
        let mut sparse: Vec<(usize, f64)> = Vec::with_capacity(entries.len());
        for &(row, value) in entries {
            if row >= rows {
                return Err(SimplexError::RowOutOfRange { column, row, rows });
            }
            if !(value.is_finite() && value >= 0.0) {
                return Err(SimplexError::InvalidEntry { column, row, value });
            }
            if value > 0.0 {
                sparse.push((row, value));
            }
        }
        sparse.sort_by_key(|&(row, _)| row);
        sparse.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        self.costs.push(cost);
        self.columns.push(sparse);
        self.column_position.push(None);
        self.cost_scale = self.cost_scale.max(cost);
        Ok(column)
    }

    /// Solves to optimality from the current basis (or the diagonal starting basis the first
    /// time) and returns the number of pivots made. After an error the previous basis is kept
    /// and the next call rebuilds the inverse before continuing.
    pub fn solve(&mut self) -> Result<usize, SimplexError> {
        if self.num_rows() == 0 {
            return Ok(0);
        }
        let result = self.run();
        self.stale = result.is_err();
        result
    }

    fn run(&mut self) -> Result<usize, SimplexError> {
        let m = self.num_rows();
        if self.basis.is_empty() {
            self.start_basis()?;
        }
        if self.stale {
            self.refactor()?;
        }
        let tolerance = self.options.tolerance;
        let optimality = tolerance * self.cost_scale.max(1e-12);
        let mut degenerate_run = 0usize;
        let mut direction = vec![0.0; m];
        for iteration in 0..=self.options.max_iterations {
            let bland = degenerate_run >= self.options.bland_after;
            let duals = self.duals();
            let Some(entering) = self.choose_entering(&duals, optimality, bland) else {
                return Ok(iteration);
            };
            if iteration == self.options.max_iterations {
                break;
            }
            if self.pivots_since_refactor >= self.options.refactor_every.max(1) {
                self.refactor()?;
            }
            self.direction(entering, &mut direction);
            let Some(leaving) = self.choose_leaving(&direction, tolerance, bland) else {
                let column = match entering {
                    Var::Column(j) => j,
                    Var::Surplus(i) => self.columns.len() + i,
                };
                return Err(SimplexError::Unbounded { column });
            };
            let step = self.basic_values[leaving] / direction[leaving];
            if step <= tolerance {
                degenerate_run += 1;
            } else {
                degenerate_run = 0;
            }
            self.pivot(entering, leaving, &direction, step);
        }
        Err(SimplexError::IterationLimit {
            iterations: self.options.max_iterations,
        })
    }

    /// The objective value of the current basis.
    pub fn objective(&self) -> f64 {
        self.basis
            .iter()
            .zip(&self.basic_values)
            .map(|(&var, &x)| self.cost(var) * x)
            .sum()
    }

    /// The value of every column in the current basic solution (zero for nonbasic ones).
    pub fn primal(&self) -> Vec<f64> {
        self.column_position
            .iter()
            .map(|pos| {
                pos.and_then(|r| self.basic_values.get(r).copied())
                    .unwrap_or(0.0)
            })
            .collect()
    }

    /// The row duals `y = c_Bᵀ B⁻¹` of the current basis; at optimality `y ≥ 0` (up to the
    /// tolerance) and `cⱼ − yᵀAⱼ ≥ 0` for every column.
    pub fn duals(&self) -> Vec<f64> {
        let m = self.num_rows();
        let mut y = vec![0.0; m];
        if self.inverse.len() != m * m {
            return y;
        }
        for (r, &var) in self.basis.iter().enumerate() {
            let c = self.cost(var);
            if c == 0.0 {
                continue;
            }
            let row = &self.inverse[r * m..(r + 1) * m];
            for (yj, &b) in y.iter_mut().zip(row) {
                *yj += c * b;
            }
        }
        y
    }

    fn cost(&self, var: Var) -> f64 {
        match var {
            Var::Column(j) => self.costs.get(j).copied().unwrap_or(0.0),
            Var::Surplus(_) => 0.0,
        }
    }

    /// The diagonal starting basis; see the module docs.
    fn start_basis(&mut self) -> Result<(), SimplexError> {
        let m = self.num_rows();
        let mut cheapest: Vec<Option<(f64, usize)>> = vec![None; m];
        for (j, column) in self.columns.iter().enumerate() {
            if let [(row, a)] = column.as_slice() {
                let per_unit = self.costs[j] / a;
                let slot = &mut cheapest[*row];
                if slot.is_none_or(|(best, _)| per_unit < best) {
                    *slot = Some((per_unit, j));
                }
            }
        }
        let mut basis = Vec::with_capacity(m);
        for (row, choice) in cheapest.iter().enumerate() {
            basis.push(match choice {
                _ if self.demand[row] <= 0.0 => Var::Surplus(row),
                Some((_, j)) => Var::Column(*j),
                None => return Err(SimplexError::NoInitialBasis { row }),
            });
        }
        self.set_basis(basis);
        Ok(())
    }

    fn set_basis(&mut self, basis: Vec<Var>) {
        self.column_position.iter_mut().for_each(|p| *p = None);
        self.surplus_position.iter_mut().for_each(|p| *p = None);
        for (r, &var) in basis.iter().enumerate() {
            match var {
                Var::Column(j) => self.column_position[j] = Some(r),
                Var::Surplus(i) => self.surplus_position[i] = Some(r),
            }
        }
        self.basis = basis;
    }

    fn is_basic(&self, var: Var) -> bool {
        match var {
            Var::Column(j) => self.column_position[j].is_some(),
            Var::Surplus(i) => self.surplus_position[i].is_some(),
        }
    }

    /// Writes the dense column of `var` into `out`.
    fn dense_column(&self, var: Var, out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        match var {
            Var::Column(j) => {
                for &(row, a) in &self.columns[j] {
                    out[row] = a;
                }
            }
            Var::Surplus(i) => out[i] = -1.0,
        }
    }

    /// The entering variable: most negative reduced cost (Dantzig), or the first negative one
    /// in variable order (Bland). `None` at optimality.
    fn choose_entering(&self, duals: &[f64], optimality: f64, bland: bool) -> Option<Var> {
        let mut best: Option<(f64, Var)> = None;
        let columns = self.columns.iter().enumerate().map(|(j, col)| {
            let priced: f64 = col.iter().map(|&(row, a)| duals[row] * a).sum();
            (Var::Column(j), self.costs[j] - priced)
        });
        // A surplus's reduced cost is 0 − yᵀ(−eᵢ) = yᵢ.
        let surpluses = duals.iter().enumerate().map(|(i, &y)| (Var::Surplus(i), y));
        for (var, reduced) in columns.chain(surpluses) {
            if reduced >= -optimality || self.is_basic(var) {
                continue;
            }
            if bland {
                return Some(var);
            }
            if best.is_none_or(|(b, _)| reduced < b) {
                best = Some((reduced, var));
            }
        }
        best.map(|(_, var)| var)
    }

    /// `direction = B⁻¹ A_entering`.
    fn direction(&self, entering: Var, direction: &mut [f64]) {
        let m = self.num_rows();
        for (r, out) in direction.iter_mut().enumerate() {
            let row = &self.inverse[r * m..(r + 1) * m];
            *out = match entering {
                Var::Column(j) => self.columns[j].iter().map(|&(i, a)| row[i] * a).sum(),
                Var::Surplus(i) => -row[i],
            };
        }
    }

    /// The leaving row position. Dantzig mode uses Harris's two passes (bounds relaxed by the
    /// tolerance, then the largest pivot among the near-minimal ratios) for stability; Bland
    /// mode takes the exact minimum ratio and breaks ties by the smallest variable.
    fn choose_leaving(&self, direction: &[f64], tolerance: f64, bland: bool) -> Option<usize> {
        let candidates = || {
            direction
                .iter()
                .enumerate()
                .filter(|&(_, &a)| a > tolerance)
                .map(|(r, &a)| (r, a, self.basic_values[r]))
        };
        if bland {
            let min_ratio = candidates()
                .map(|(_, a, x)| x / a)
                .fold(f64::INFINITY, f64::min);
            let tie = min_ratio + tolerance * min_ratio.abs().max(1e-12);
            return candidates()
                .filter(|&(_, a, x)| x / a <= tie)
                .min_by_key(|&(r, _, _)| self.basis[r])
                .map(|(r, _, _)| r);
        }
        let relaxed = candidates()
            .map(|(_, a, x)| (x + tolerance) / a)
            .fold(f64::INFINITY, f64::min);
        let mut best: Option<(f64, usize)> = None;
        for (r, a, x) in candidates() {
            if x / a <= relaxed && best.is_none_or(|(b, _)| a > b) {
                best = Some((a, r));
            }
        }
        best.map(|(_, r)| r)
    }

    /// Moves `step` along the direction and swaps `entering` into row position `leaving`,
    /// updating the inverse by one product-form (eta) step.
    fn pivot(&mut self, entering: Var, leaving: usize, direction: &[f64], step: f64) {
        let m = self.num_rows();
        for (x, &a) in self.basic_values.iter_mut().zip(direction) {
            // Harris's test allows tiny overshoots below zero; clip them.
            *x = (*x - step * a).max(0.0);
        }
        self.basic_values[leaving] = step.max(0.0);

        let pivot = direction[leaving];
        let (before, rest) = self.inverse.split_at_mut(leaving * m);
        let (pivot_row, after) = rest.split_at_mut(m);
        pivot_row.iter_mut().for_each(|v| *v /= pivot);
        let other_rows = before.chunks_exact_mut(m).chain(after.chunks_exact_mut(m));
        let other_directions = direction[..leaving].iter().chain(&direction[leaving + 1..]);
        for (row, &a) in other_rows.zip(other_directions) {
            if a != 0.0 {
                for (v, &p) in row.iter_mut().zip(pivot_row.iter()) {
                    *v -= a * p;
                }
            }
        }

        match self.basis[leaving] {
            Var::Column(j) => self.column_position[j] = None,
            Var::Surplus(i) => self.surplus_position[i] = None,
        }
        match entering {
            Var::Column(j) => self.column_position[j] = Some(leaving),
            Var::Surplus(i) => self.surplus_position[i] = Some(leaving),
        }
        self.basis[leaving] = entering;
        self.pivots_since_refactor += 1;
    }

    /// Rebuilds the inverse of the basis by Gauss–Jordan elimination with partial pivoting and
    /// recomputes the basic values from it.
    fn refactor(&mut self) -> Result<(), SimplexError> {
        let m = self.num_rows();
        // Work on [B | I], row-major with 2m columns.
        let width = 2 * m;
        let mut work = vec![0.0; m * width];
        let mut column = vec![0.0; m];
        for (c, &var) in self.basis.iter().enumerate() {
            self.dense_column(var, &mut column);
            for (r, &v) in column.iter().enumerate() {
                work[r * width + c] = v;
            }
        }
        for r in 0..m {
            work[r * width + m + r] = 1.0;
        }
        let mut scale: f64 = 0.0;
        for r in 0..m {
            for c in 0..m {
                scale = scale.max(work[r * width + c].abs());
            }
        }
        let singular = 1e-12 * scale.max(1.0);
        for c in 0..m {
            let (pivot_row, pivot_abs) =
                (c..m)
                    .map(|r| (r, work[r * width + c].abs()))
                    .fold(
                        (c, -1.0),
                        |best, cur| if cur.1 > best.1 { cur } else { best },
                    );
            if pivot_abs <= singular {
                return Err(SimplexError::SingularBasis);
            }
            if pivot_row != c {
                for k in 0..width {
                    work.swap(c * width + k, pivot_row * width + k);
                }
            }
            let pivot = work[c * width + c];
            for k in 0..width {
                work[c * width + k] /= pivot;
            }
            for r in 0..m {
                let factor = work[r * width + c];
                if r == c || factor == 0.0 {
                    continue;
                }
                for k in 0..width {
                    work[r * width + k] -= factor * work[c * width + k];
                }
            }
        }
        self.inverse.clear();
        for r in 0..m {
            self.inverse
                .extend_from_slice(&work[r * width + m..(r + 1) * width]);
        }
        self.pivots_since_refactor = 0;

        let demand_scale = self.demand.iter().fold(1.0f64, |a, &d| a.max(d));
        let mut values = vec![0.0; m];
        for (r, value) in values.iter_mut().enumerate() {
            let row = &self.inverse[r * m..(r + 1) * m];
            let x: f64 = row.iter().zip(&self.demand).map(|(b, d)| b * d).sum();
            if x < -1e-6 * demand_scale {
                return Err(SimplexError::LostFeasibility { row: r, value: x });
            }
            *value = x.max(0.0);
        }
        self.basic_values = values;
        Ok(())
    }
}

#[cfg(test)]
#[path = "simplex_tests.rs"]
mod tests;
