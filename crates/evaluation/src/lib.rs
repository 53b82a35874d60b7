//! Plan evaluation: the `Evaluator` trait.
//!
//! This crate will hold DVH metrics, the Paddick conformity index, the homogeneity index,
//! monitor units, gamma analysis, the Wilcoxon signed-rank test as SPSS reports it, and the
//! tables and figures of a study.
