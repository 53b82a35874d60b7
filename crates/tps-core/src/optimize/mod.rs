//! Fluence map optimization: a bound-constrained quasi-Newton solver.

pub mod fmo;
pub mod lbfgs;
