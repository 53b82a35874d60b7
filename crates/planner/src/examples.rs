//! Few-shot examples for LLM advisors: worked iterations (report, changes, reason) collected
//! from plans of the training patients, and the choice of which ones a prompt shows: a fixed,
//! evenly spread set, or the iterations most similar to the current one.

use std::path::Path;

use llm_providers::advice::FewShotExample;
use serde::{Deserialize, Serialize};
use tps_api::{IterationReport, Protocol};

use crate::transcript::Event;

/// How examples are chosen for a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// The same examples every time, spread evenly over the pool.
    #[default]
    Fixed,
    /// The examples whose objective values are closest to the current report's.
    Nearest,
    /// Per objective: the pool's rows of that objective closest to its current value (same
    /// status first), gathered into one composite example per rank, each row with the change
    /// made in its case. A whole example shows one case's moves, which a small model copies for
    /// every objective; a composite shows each objective the move made in the case most like
    /// its own.
    PerObjective,
}

impl Selection {
    /// The selection as the command line and study files spell it.
    pub fn word(self) -> &'static str {
        match self {
            Selection::Fixed => "fixed",
            Selection::Nearest => "nearest",
            Selection::PerObjective => "per-objective",
        }
    }
}

/// Checks that every example of `pool` (read from `origin`) was planned with `protocol`'s
/// objectives (the same ids), so a pool from another site or protocol is refused instead of
/// shown to an advisor as if it applied.
pub fn check_pool(
    pool: &[FewShotExample],
    protocol: &Protocol,
    origin: &Path,
) -> Result<(), String> {
    let mut want: Vec<&str> = protocol.objectives.iter().map(|o| o.id.as_str()).collect();
    want.sort_unstable();
    for ex in pool {
        let mut have = ex.report.objective_ids();
        have.sort_unstable();
        if have != want {
            return Err(format!(
                "{}: example {:?} has objectives [{}], but {} has [{}]: the pool was planned with \
                 another protocol",
                origin.display(),
                ex.source,
                have.join(", "),
                protocol.origin.display(),
                want.join(", ")
            ));
        }
    }
    Ok(())
}

/// The worked iterations of a finished plan's transcript: each report followed by an advice
/// that changed something, with the applied changes and the advice's reason.
pub fn from_transcript(events: &[Event]) -> Vec<FewShotExample> {
    let patient = events
        .iter()
        .find_map(|e| match e {
            Event::Start { patient, .. } => Some(patient.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut last: Option<&IterationReport> = None;
    for e in events {
        match e {
            Event::Report { report, .. } => last = Some(report),
            Event::Advice {
                advice, verdict, ..
            } if !verdict.applied.is_empty() => {
                if let Some(r) = last {
                    out.push(FewShotExample {
                        source: format!("{patient}, iteration {}", r.iteration),
                        report: r.clone(),
                        changes: verdict.applied.clone(),
                        rationale: advice
                            .as_ref()
                            .map_or_else(String::new, |a| a.rationale.clone()),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Distance between two reports: root mean square difference of log10(value + 1e-6) over the
/// objectives both have (by id); infinite when they share none.
pub fn distance(a: &IterationReport, b: &IterationReport) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for oa in &a.objectives {
        if let Some(ob) = b.objectives.iter().find(|o| o.id == oa.id) {
            let d = (oa.value + 1e-6).log10() - (ob.value + 1e-6).log10();
            sum += d * d;
            n += 1;
        }
    }
    if n == 0 {
        f64::INFINITY
    } else {
        (sum / n as f64).sqrt()
    }
}

/// Distance between one objective's values: difference of log10(value + 1e-6), as in
/// [`distance`], plus 100 when their status differs (a row of the same status always wins).
fn row_distance(a: &tps_api::ObjectiveReport, b: &tps_api::ObjectiveReport) -> f64 {
    let d = ((a.value + 1e-6).log10() - (b.value + 1e-6).log10()).abs();
    if a.status == b.status { d } else { d + 100.0 }
}

/// The `rank`-th composite example for `current` (rank 0: the nearest row of every objective).
fn composite(pool: &[FewShotExample], current: &IterationReport, rank: usize) -> FewShotExample {
    let mut report = current.clone();
    let mut changes = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    for row in &mut report.objectives {
        let mut ranked: Vec<(f64, usize, &tps_api::ObjectiveReport)> = pool
            .iter()
            .enumerate()
            .filter_map(|(k, e)| {
                let r = e.report.objectives.iter().find(|o| o.id == row.id)?;
                Some((row_distance(r, row), k, r))
            })
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some(&(_, k, found)) = ranked.get(rank.min(ranked.len().saturating_sub(1))) else {
            continue;
        };
        *row = found.clone();
        if let Some(c) = pool[k].changes.iter().find(|c| c.id == row.id) {
            changes.push(c.clone());
        }
        if !sources.contains(&pool[k].source) {
            sources.push(pool[k].source.clone());
        }
    }
    FewShotExample {
        source: "nearest case per objective".into(),
        report,
        changes,
        rationale: format!(
            "each objective's row and change from the case where its value was closest: {}",
            sources.join("; ")
        ),
    }
}

/// Up to `n` examples of `pool` for `current`.
pub fn select(
    pool: &[FewShotExample],
    current: &IterationReport,
    n: usize,
    how: Selection,
) -> Vec<FewShotExample> {
    if n == 0 || pool.is_empty() {
        return Vec::new();
    }
    match how {
        Selection::PerObjective => (0..n.min(pool.len()))
            .map(|rank| composite(pool, current, rank))
            .collect(),
        _ if n >= pool.len() => pool.to_vec(),
        Selection::Fixed => (0..n).map(|k| pool[k * pool.len() / n].clone()).collect(),
        Selection::Nearest => {
            let mut ranked: Vec<(f64, usize)> = pool
                .iter()
                .enumerate()
                .map(|(k, e)| (distance(&e.report, current), k))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            ranked
                .iter()
                .take(n)
                .map(|&(_, k)| pool[k].clone())
                .collect()
        }
    }
}

/// Writes a pool as JSON.
pub fn save(path: &Path, pool: &[FewShotExample]) -> Result<(), String> {
    let text = serde_json::to_string_pretty(pool).map_err(|e| e.to_string())?;
    tps_api::files::write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())
}

/// Reads a pool written by [`save`]; a malformed file is an error naming it.
pub fn load(path: &Path) -> Result<Vec<FewShotExample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not an example pool: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tps_api::report::GoalChange;
    use tps_api::{ObjectiveReport, RangeStatus, Role};

    fn row(id: &str, goal_cgy: f64, value: f64, status: RangeStatus) -> ObjectiveReport {
        ObjectiveReport {
            id: id.into(),
            structure: id.into(),
            role: Role::Oar,
            kind: "mean dose".into(),
            weight: 1.0,
            goal_cgy,
            current_cgy: goal_cgy,
            value,
            ideal_range: [1e-2, 5e-2],
            status,
        }
    }

    fn report(rows: Vec<ObjectiveReport>) -> IterationReport {
        IterationReport {
            iteration: 1,
            objectives: rows,
            coverage_cgy: 3600.0,
            prescription_cgy: 3600.0,
            total_objective: 0.0,
            solver_iterations: 0,
            wall_s: 0.0,
            goals: Vec::new(),
        }
    }

    fn changes(pairs: &[(&str, f64)]) -> Vec<GoalChange> {
        pairs
            .iter()
            .map(|&(id, goal_cgy)| GoalChange {
                id: id.into(),
                goal_cgy,
            })
            .collect()
    }

    fn case(source: &str, rows: Vec<ObjectiveReport>, pairs: &[(&str, f64)]) -> FewShotExample {
        FewShotExample {
            source: source.into(),
            report: report(rows),
            changes: changes(pairs),
            rationale: String::new(),
        }
    }

    /// Each objective's row comes from the case where its value was nearest, with that case's
    /// change to it; a row of another status loses to one of the same status even when its
    /// value is closer; the next rank takes the next-nearest rows.
    #[test]
    fn per_objective_selection_composes_the_nearest_rows() {
        use RangeStatus::{Above, Below, Inside};
        let pool = vec![
            case(
                "a/p01, iteration 1",
                vec![
                    row("bladder", 3000.0, 0.0, Below),
                    row("rectum", 2900.0, 0.03, Inside),
                ],
                &[("bladder", 2900.0)],
            ),
            case(
                "a/p02, iteration 2",
                vec![
                    row("bladder", 2800.0, 0.02, Inside),
                    row("rectum", 2700.0, 0.2, Above),
                ],
                &[("rectum", 2750.0)],
            ),
            case(
                "a/p03, iteration 1",
                vec![
                    row("bladder", 2600.0, 0.004, Below),
                    row("rectum", 2600.0, 0.06, Above),
                ],
                &[("bladder", 2500.0), ("rectum", 2700.0)],
            ),
        ];
        // bladder 0.006 below: p03 (0.004, below) is nearest; p02's 0.02 is nearer in value
        // than p01's 0 but inside, so p01 ranks second. rectum 0.15 above: p02, then p03.
        let current = report(vec![
            row("bladder", 2700.0, 0.006, Below),
            row("rectum", 2650.0, 0.15, Above),
        ]);
        let first = select(&pool, &current, 2, Selection::PerObjective);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].report.objectives[0], pool[2].report.objectives[0]);
        assert_eq!(first[0].report.objectives[1], pool[1].report.objectives[1]);
        assert_eq!(
            first[0].changes,
            changes(&[("bladder", 2500.0), ("rectum", 2750.0)])
        );
        assert!(
            first[0]
                .rationale
                .contains("a/p03, iteration 1; a/p02, iteration 2")
        );
        assert_eq!(first[1].report.objectives[0], pool[0].report.objectives[0]);
        assert_eq!(first[1].report.objectives[1], pool[2].report.objectives[1]);
        assert_eq!(
            first[1].changes,
            changes(&[("bladder", 2900.0), ("rectum", 2700.0)])
        );
        // Never more composites than cases.
        assert_eq!(select(&pool, &current, 9, Selection::PerObjective).len(), 3);
    }
}
