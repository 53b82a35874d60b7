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
    if n >= pool.len() {
        return pool.to_vec();
    }
    match how {
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
