//! A small MILP model and the solver trait behind it, so that another backend can be added
//! next to microlp without touching the formulations.
//!
//! A [`Milp`] is a maximisation over bounded continuous and integer variables with linear
//! rows. A model without integer variables is a pure LP: the microlp backend then runs its
//! simplex path only (no branch and bound).

use std::time::Duration;

use crate::error::{PlannerError, Result};

/// Index of a variable in a [`Milp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub usize);

/// How a row compares its left-hand side with its right-hand side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `lhs <= rhs`
    Le,
    /// `lhs >= rhs`
    Ge,
    /// `lhs == rhs`
    Eq,
}

/// One variable.
#[derive(Clone, Debug)]
pub struct VarDef {
    /// Objective coefficient (maximised).
    pub obj: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound (may be infinite).
    pub hi: f64,
    /// Integer-valued.
    pub integer: bool,
}

/// One row: `sum(coef * var) cmp rhs`.
#[derive(Clone, Debug)]
pub struct Row {
    /// Terms, each variable at most once.
    pub terms: Vec<(Var, f64)>,
    /// Comparison.
    pub cmp: Cmp,
    /// Right-hand side.
    pub rhs: f64,
}

/// A maximisation problem.
#[derive(Clone, Debug, Default)]
pub struct Milp {
    /// Variables.
    pub vars: Vec<VarDef>,
    /// Rows.
    pub rows: Vec<Row>,
}

impl Milp {
    /// A continuous variable in `[lo, hi]`.
    pub fn continuous(&mut self, obj: f64, lo: f64, hi: f64) -> Var {
        self.vars.push(VarDef { obj, lo, hi, integer: false });
        Var(self.vars.len() - 1)
    }

    /// An integer variable in `[lo, hi]`.
    pub fn integer(&mut self, obj: f64, lo: f64, hi: f64) -> Var {
        self.vars.push(VarDef { obj, lo, hi, integer: true });
        Var(self.vars.len() - 1)
    }

    /// Adds a row.
    pub fn row(&mut self, terms: Vec<(Var, f64)>, cmp: Cmp, rhs: f64) {
        self.rows.push(Row { terms, cmp, rhs });
    }

    /// Number of integer variables.
    pub fn integers(&self) -> usize {
        self.vars.iter().filter(|v| v.integer).count()
    }

    /// The same model with every integer variable made continuous (the LP relaxation).
    pub fn relaxed(&self) -> Milp {
        let mut m = self.clone();
        for v in &mut m.vars {
            v.integer = false;
        }
        m
    }

    /// Objective of an assignment.
    pub fn objective_of(&self, x: &[f64]) -> f64 {
        self.vars.iter().zip(x).map(|(v, x)| v.obj * x).sum()
    }

    /// The first bound or row an assignment breaks by more than `tol` (scaled by the row's
    /// size), with its index, or None.
    pub fn violation(&self, x: &[f64], tol: f64) -> Option<String> {
        for (i, (v, &xi)) in self.vars.iter().zip(x).enumerate() {
            if xi < v.lo - tol || xi > v.hi + tol || (v.integer && (xi - xi.round()).abs() > tol) {
                return Some(format!(
                    "variable {i} = {xi} outside [{}, {}]{}",
                    v.lo,
                    v.hi,
                    if v.integer { " or not integral" } else { "" }
                ));
            }
        }
        for (r, row) in self.rows.iter().enumerate() {
            let lhs: f64 = row.terms.iter().map(|&(v, c)| c * x[v.0]).sum();
            let scale = 1.0 + row.rhs.abs() + row.terms.iter().map(|&(v, c)| (c * x[v.0]).abs()).sum::<f64>();
            let t = tol * scale;
            let bad = match row.cmp {
                Cmp::Le => lhs > row.rhs + t,
                Cmp::Ge => lhs < row.rhs - t,
                Cmp::Eq => (lhs - row.rhs).abs() > t,
            };
            if bad {
                return Some(format!("row {r}: {lhs} {:?} {}", row.cmp, row.rhs));
            }
        }
        None
    }
}

/// Limits of one solve.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock budget.
    pub time_limit: Option<Duration>,
    /// Relative gap at which the search may stop.
    pub mip_gap: f64,
    /// A known feasible assignment to start from (every variable).
    pub warm_start: Option<Vec<f64>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { time_limit: None, mip_gap: 0.0, warm_start: None }
    }
}

/// What a solve found.
#[derive(Clone, Debug)]
pub struct Solved {
    /// Value of every variable (integers rounded).
    pub values: Vec<f64>,
    /// Objective of `values`.
    pub objective: f64,
    /// Best proven upper bound on the objective.
    pub bound: f64,
    /// Proven relative gap (0: optimal).
    pub gap: f64,
    /// Optimality proven (within the solver's tolerances).
    pub optimal: bool,
    /// Branch-and-bound nodes solved (0 for an LP).
    pub nodes: u64,
    /// Time spent.
    pub seconds: f64,
}

/// A MILP backend.
pub trait Solver {
    /// Short name, reported in plans.
    fn name(&self) -> &'static str;
    /// Solves `model` within `limits`. Errors: infeasible or unbounded models, and no
    /// feasible point found within the limits.
    fn solve(&self, model: &Milp, limits: &Limits) -> Result<Solved>;
}

/// The pure-Rust microlp backend (simplex; branch and bound for integer variables).
#[derive(Clone, Copy, Debug, Default)]
pub struct Microlp;

fn solver_err(reason: impl Into<String>) -> PlannerError {
    PlannerError::Solver { reason: reason.into() }
}

impl Solver for Microlp {
    fn name(&self) -> &'static str {
        "microlp"
    }

    fn solve(&self, model: &Milp, limits: &Limits) -> Result<Solved> {
        use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOptions};
        let started = std::time::Instant::now();
        let mut p = Problem::new(OptimizationDirection::Maximize);
        let mut vars = Vec::with_capacity(model.vars.len());
        for v in &model.vars {
            vars.push(if v.integer {
                let lo = v.lo.ceil().max(i32::MIN as f64) as i32;
                let hi = if v.hi.is_finite() { v.hi.floor().min(i32::MAX as f64) as i32 } else { i32::MAX };
                p.add_integer_var(v.obj, (lo, hi))
            } else {
                p.add_var(v.obj, (v.lo, v.hi))
            });
        }
        for r in &model.rows {
            let terms: Vec<(microlp::Variable, f64)> = r.terms.iter().map(|&(v, c)| (vars[v.0], c)).collect();
            let op = match r.cmp {
                Cmp::Le => ComparisonOp::Le,
                Cmp::Ge => ComparisonOp::Ge,
                Cmp::Eq => ComparisonOp::Eq,
            };
            p.add_constraint(terms.as_slice(), op, r.rhs);
        }
        let mut o = SolveOptions::default();
        o.time_limit = limits.time_limit;
        o.mip_gap = limits.mip_gap;
        if let Some(w) = &limits.warm_start
            && model.integers() > 0
        {
            o.warm_start = Some(vars.iter().zip(w).map(|(&v, &x)| (v, x)).collect());
        }
        let outcome = p.solve_with(o).map_err(|e| match e {
            microlp::Error::Infeasible => solver_err("the model is infeasible"),
            microlp::Error::Unbounded => solver_err("the model is unbounded"),
            other => solver_err(other.to_string()),
        })?;
        let stats = outcome.stats();
        let optimal = outcome.is_optimal();
        let sol = outcome.into_solution().map_err(|_| {
            solver_err(format!(
                "no feasible plan found within the time limit ({:.1} s); raise it with --time-limit",
                limits.time_limit.map_or(0.0, |d| d.as_secs_f64())
            ))
        })?;
        let values: Vec<f64> = model
            .vars
            .iter()
            .zip(&vars)
            .map(|(d, &v)| {
                let x = sol.var_value(v);
                if d.integer { x.round() } else { x }
            })
            .collect();
        let objective = model.objective_of(&values);
        let bound = stats.best_bound.unwrap_or(objective).max(objective);
        let gap = if optimal { 0.0 } else { sol.gap().unwrap_or(f64::INFINITY) };
        Ok(Solved {
            values,
            objective,
            bound,
            gap,
            optimal,
            nodes: stats.nodes_solved,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_milp_and_its_relaxation() {
        // max x + 2y, x + y <= 4, 2x + y >= 2, y integer in [0, 3]: x = 1, y = 3.
        let mut m = Milp::default();
        let x = m.continuous(1.0, 0.0, f64::INFINITY);
        let y = m.integer(2.0, 0.0, 3.0);
        m.row(vec![(x, 1.0), (y, 1.0)], Cmp::Le, 4.0);
        m.row(vec![(x, 2.0), (y, 1.0)], Cmp::Ge, 2.0);
        let s = Microlp.solve(&m, &Limits::default()).unwrap();
        assert!((s.objective - 7.0).abs() < 1e-6, "{s:?}");
        assert!(s.optimal && s.gap == 0.0);
        assert!(m.violation(&s.values, 1e-7).is_none());
        // Knapsack whose relaxation is fractional: max 5a + 4b, 6a + 4b <= 9, a, b in {0, 1}.
        let mut k = Milp::default();
        let a = k.integer(5.0, 0.0, 1.0);
        let b = k.integer(4.0, 0.0, 1.0);
        k.row(vec![(a, 6.0), (b, 4.0)], Cmp::Le, 9.0);
        let s = Microlp.solve(&k, &Limits::default()).unwrap();
        assert!((s.objective - 5.0).abs() < 1e-6, "{s:?}");
        let r = Microlp.solve(&k.relaxed(), &Limits::default()).unwrap();
        assert!((r.objective - (4.0 + 5.0 * 5.0 / 6.0)).abs() < 1e-6, "{r:?}");
        assert_eq!(r.nodes, 0);
    }

    #[test]
    fn infeasible_models_are_errors() {
        let mut m = Milp::default();
        let x = m.integer(1.0, 0.0, 1.0);
        m.row(vec![(x, 1.0)], Cmp::Ge, 2.0);
        let e = Microlp.solve(&m, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("infeasible"), "{e}");
    }
}
