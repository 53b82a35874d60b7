//! Projected limited-memory BFGS for bound-constrained minimization (`x >= lower`).
//!
//! The quasi-Newton direction of the two-loop recursion (Nocedal and Wright, Numerical
//! Optimization, 2nd ed., Algorithm 7.4) is computed in the free variables (those not held at
//! their bound by a gradient pushing outwards), the step is projected onto the bounds, and a
//! backtracking Armijo search along the projected path accepts it (Bertsekas, "Projected
//! Newton methods", SIAM J Control Optim 20:221, 1982). Curvature pairs with `s . y <= 0` are
//! skipped. A direction that is not a descent direction is replaced by the projected
//! steepest descent.

use tps_api::error::{Error, Result};

/// A function to minimize: returns `f(x)` and writes the gradient into `grad`.
pub trait Problem {
    /// Value at `x`, gradient into `grad`.
    fn eval(&mut self, x: &[f64], grad: &mut [f64]) -> f64;
}

/// Solver settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Curvature pairs kept.
    pub memory: usize,
    /// Largest number of iterations.
    pub max_iterations: usize,
    /// Stop when the relative decrease of `f` over one iteration stays below this for
    /// `patience` iterations.
    pub rel_tolerance: f64,
    /// Iterations the relative decrease must stay below tolerance.
    pub patience: usize,
    /// Stop when the norm of the projected gradient falls below this.
    pub grad_tolerance: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iterations: 200,
            rel_tolerance: 1e-5,
            patience: 3,
            grad_tolerance: 1e-10,
        }
    }
}

/// Why the solver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The relative decrease of `f` stayed below the tolerance.
    Converged,
    /// The projected gradient vanished.
    Stationary,
    /// The iteration cap was reached.
    MaxIterations,
    /// The line search found no decrease (at machine precision).
    LineSearchStalled,
}

/// Result of a minimization.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// The minimizer found.
    pub x: Vec<f64>,
    /// `f(x)`.
    pub value: f64,
    /// Iterations taken.
    pub iterations: usize,
    /// Function evaluations.
    pub evaluations: usize,
    /// Why it stopped.
    pub termination: Termination,
}

fn project(x: &mut [f64], lower: &[f64]) {
    for (v, l) in x.iter_mut().zip(lower) {
        if *v < *l {
            *v = *l;
        }
    }
}

fn projected_gradient_norm(x: &[f64], g: &[f64], lower: &[f64]) -> f64 {
    x.iter()
        .zip(g)
        .zip(lower)
        .map(|((x, g), l)| if *x <= *l && *g > 0.0 { 0.0 } else { g * g })
        .sum::<f64>()
        .sqrt()
}

/// `d[i] += a * v[i]` on the free variables.
fn add_free(d: &mut [f64], a: f64, v: &[f64], free: &[bool]) {
    for ((di, vi), f) in d.iter_mut().zip(v).zip(free) {
        if *f {
            *di += a * vi;
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimizes `problem` from `x0` subject to `x >= lower`. A non-finite value or gradient is an
/// error (the caller keeps its previous solution).
pub fn minimize(
    problem: &mut impl Problem,
    x0: &[f64],
    lower: &[f64],
    settings: &Settings,
) -> Result<Solution> {
    let n = x0.len();
    assert_eq!(lower.len(), n);
    let mut x = x0.to_vec();
    project(&mut x, lower);
    let mut g = vec![0.0; n];
    let mut f = problem.eval(&x, &mut g);
    let mut evals = 1;
    let bad = |what: &str, it: usize| {
        Error::invalid(
            "optimizer",
            "objective",
            what.to_string(),
            format!("not finite at iteration {it}: the optimization diverged"),
        )
    };
    if !f.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(bad("value or gradient", 0));
    }
    let m = settings.memory.max(1);
    let mut s_hist: Vec<Vec<f64>> = Vec::with_capacity(m);
    let mut y_hist: Vec<Vec<f64>> = Vec::with_capacity(m);
    let mut rho_hist: Vec<f64> = Vec::with_capacity(m);
    let mut small = 0usize;
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let mut alpha_buf = vec![0.0; m];
    for it in 1..=settings.max_iterations {
        if projected_gradient_norm(&x, &g, lower) <= settings.grad_tolerance {
            return Ok(Solution {
                x,
                value: f,
                iterations: it - 1,
                evaluations: evals,
                termination: Termination::Stationary,
            });
        }
        // Free variables: not at the bound with the gradient pushing outwards.
        let free: Vec<bool> = x
            .iter()
            .zip(&g)
            .zip(lower)
            .map(|((x, g), l)| !(*x <= *l && *g > 0.0))
            .collect();
        // Two-loop recursion on the free variables.
        for i in 0..n {
            d[i] = if free[i] { -g[i] } else { 0.0 };
        }
        // `d` is zero on the fixed variables and the updates below touch only free ones, so
        // plain dot products equal dot products over the free variables.
        let k = s_hist.len();
        for j in (0..k).rev() {
            let a = rho_hist[j] * dot(&s_hist[j], &d);
            alpha_buf[j] = a;
            add_free(&mut d, -a, &y_hist[j], &free);
        }
        if k > 0 {
            let (s, y) = (&s_hist[k - 1], &y_hist[k - 1]);
            let gamma = dot(s, y) / dot(y, y);
            if gamma.is_finite() && gamma > 0.0 {
                d.iter_mut().for_each(|v| *v *= gamma);
            }
        }
        for j in 0..k {
            let b = rho_hist[j] * dot(&y_hist[j], &d);
            add_free(&mut d, alpha_buf[j] - b, &s_hist[j], &free);
        }
        let mut slope = dot(&g, &d);
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction: projected steepest descent, memory cleared.
            for i in 0..n {
                d[i] = if free[i] { -g[i] } else { 0.0 };
            }
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            slope = dot(&g, &d);
        }
        // First step of a fresh memory: scale to a unit-length move.
        let mut step = if s_hist.is_empty() {
            1.0 / dot(&d, &d).sqrt().max(1e-300)
        } else {
            1.0
        };
        let mut accepted = false;
        let mut f_new = f;
        for _ in 0..40 {
            for i in 0..n {
                x_new[i] = x[i] + step * d[i];
            }
            project(&mut x_new, lower);
            f_new = problem.eval(&x_new, &mut g_new);
            evals += 1;
            if !f_new.is_finite() || g_new.iter().any(|v| !v.is_finite()) {
                return Err(bad("value or gradient", it));
            }
            // Armijo condition on the projected path.
            let decrease: f64 = g
                .iter()
                .zip(&x_new)
                .zip(&x)
                .map(|((g, xn), x)| g * (xn - x))
                .sum();
            if f_new <= f + 1e-4 * decrease.min(0.0) && f_new <= f {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return Ok(Solution {
                x,
                value: f,
                iterations: it,
                evaluations: evals,
                termination: Termination::LineSearchStalled,
            });
        }
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() && sy > 0.0 {
            if s_hist.len() == m {
                s_hist.remove(0);
                y_hist.remove(0);
                rho_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
            rho_hist.push(1.0 / sy);
        }
        let rel = (f - f_new) / f.abs().max(1e-300);
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        small = if rel < settings.rel_tolerance {
            small + 1
        } else {
            0
        };
        if small >= settings.patience {
            return Ok(Solution {
                x,
                value: f,
                iterations: it,
                evaluations: evals,
                termination: Termination::Converged,
            });
        }
    }
    Ok(Solution {
        x,
        value: f,
        iterations: settings.max_iterations,
        evaluations: evals,
        termination: Termination::MaxIterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rosenbrock;
    impl Problem for Rosenbrock {
        fn eval(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        }
    }

    /// Separable quadratic sum c_i (x_i - t_i)^2 with some targets below the bound: the
    /// solution is max(t_i, 0).
    struct Quadratic {
        c: Vec<f64>,
        t: Vec<f64>,
    }
    impl Problem for Quadratic {
        fn eval(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
            let mut f = 0.0;
            for i in 0..x.len() {
                let e = x[i] - self.t[i];
                f += self.c[i] * e * e;
                g[i] = 2.0 * self.c[i] * e;
            }
            f
        }
    }

    /// Non-negative least squares ||M x - b||^2 with a coupled matrix.
    struct Nnls {
        m: Vec<[f64; 3]>,
        b: Vec<f64>,
    }
    impl Problem for Nnls {
        fn eval(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
            g.iter_mut().for_each(|v| *v = 0.0);
            let mut f = 0.0;
            for (row, b) in self.m.iter().zip(&self.b) {
                let r = row[0] * x[0] + row[1] * x[1] + row[2] * x[2] - b;
                f += r * r;
                for j in 0..3 {
                    g[j] += 2.0 * r * row[j];
                }
            }
            f
        }
    }

    #[test]
    fn rosenbrock_with_bounds() {
        let s = minimize(
            &mut Rosenbrock,
            &[0.0, 3.0],
            &[0.0, 0.0],
            &Settings {
                max_iterations: 500,
                rel_tolerance: 1e-14,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            (s.x[0] - 1.0).abs() < 1e-4 && (s.x[1] - 1.0).abs() < 1e-4,
            "{s:?}"
        );
        // With the bound x0 >= 1.5 active the minimum is at (1.5, 2.25).
        let s = minimize(
            &mut Rosenbrock,
            &[2.0, 1.0],
            &[1.5, 0.0],
            &Settings {
                max_iterations: 500,
                rel_tolerance: 1e-14,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(
            (s.x[0] - 1.5).abs() < 1e-6 && (s.x[1] - 2.25).abs() < 1e-4,
            "{s:?}"
        );
    }

    #[test]
    fn separable_quadratic_clamps_at_the_bound() {
        let t: Vec<f64> = (0..50).map(|i| (i as f64 - 20.0) * 0.3).collect();
        let c: Vec<f64> = (0..50).map(|i| 1.0 + (i % 7) as f64).collect();
        let mut p = Quadratic { c, t: t.clone() };
        let s = minimize(
            &mut p,
            &vec![1.0; 50],
            &vec![0.0; 50],
            &Settings {
                rel_tolerance: 1e-14,
                ..Default::default()
            },
        )
        .unwrap();
        for (x, t) in s.x.iter().zip(&t) {
            assert!((x - t.max(0.0)).abs() < 1e-6, "{x} vs {t}");
        }
    }

    #[test]
    fn nonnegative_least_squares_matches_the_active_set_solution() {
        // b is built so that the NNLS solution is x = (2, 0, 1) with the second variable at its
        // bound (its unconstrained optimum would be negative).
        let m = vec![
            [1.0, 0.5, 0.0],
            [0.0, 1.0, 0.5],
            [0.5, 0.0, 1.0],
            [1.0, 1.0, 1.0],
        ];
        let x_true = [2.0, 0.0, 1.0];
        let mut b: Vec<f64> = m
            .iter()
            .map(|r| r[0] * x_true[0] + r[1] * x_true[1] + r[2] * x_true[2])
            .collect();
        // Push x1 below zero: move b against column 1 (KKT: gradient of x1 stays positive).
        b[1] -= 1.0;
        let mut p = Nnls {
            m: m.clone(),
            b: b.clone(),
        };
        let s = minimize(
            &mut p,
            &[1.0, 1.0, 1.0],
            &[0.0; 3],
            &Settings {
                rel_tolerance: 1e-15,
                max_iterations: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        // Reference: least squares on columns 0 and 2 only (the active set {1}), by normal
        // equations.
        let (mut a00, mut a02, mut a22, mut r0, mut r2) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (row, bb) in m.iter().zip(&b) {
            a00 += row[0] * row[0];
            a02 += row[0] * row[2];
            a22 += row[2] * row[2];
            r0 += row[0] * bb;
            r2 += row[2] * bb;
        }
        let det = a00 * a22 - a02 * a02;
        let x0 = (r0 * a22 - a02 * r2) / det;
        let x2 = (a00 * r2 - a02 * r0) / det;
        assert!(x0 > 0.0 && x2 > 0.0);
        // KKT at the reference: the gradient in x1 is positive, so x1 = 0 is optimal.
        let mut g = [0.0; 3];
        p.eval(&[x0, 0.0, x2], &mut g);
        assert!(g[1] > 0.0);
        assert!(
            (s.x[0] - x0).abs() < 1e-5 && s.x[1].abs() < 1e-7 && (s.x[2] - x2).abs() < 1e-5,
            "{:?} vs ({x0}, 0, {x2})",
            s.x
        );
    }

    #[test]
    fn divergence_is_an_error() {
        struct Nan;
        impl Problem for Nan {
            fn eval(&mut self, x: &[f64], g: &mut [f64]) -> f64 {
                g[0] = 1.0;
                if x[0] < 0.5 { f64::NAN } else { x[0] }
            }
        }
        let e = minimize(&mut Nan, &[1.0], &[0.0], &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("diverged"), "{e}");
    }
}
