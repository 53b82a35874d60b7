//! Transcripts: one JSON line per event of a plan (start, every report, every advice with its
//! model calls and the guard's decisions, the end), written and flushed as it happens, so a
//! crash loses nothing already done and any plan can be audited and replayed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use llm_providers::advice::Advice;
use serde::{Deserialize, Serialize};
use tps_api::{GoalChange, IterationReport, PlanSummary};

use crate::guard::{GuardSettings, Verdict};

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The plan starts.
    Start {
        /// Patient id.
        patient: String,
        /// Protocol file.
        protocol: String,
        /// Advisor name.
        advisor: String,
        /// Guard settings.
        guard: GuardSettings,
        /// Iteration cap.
        max_iterations: u32,
        /// Coverage window during planning, x prescription.
        coverage_window: [f64; 2],
        /// Which criteria end the loop.
        #[serde(default = "study_termination")]
        termination: tps_api::Termination,
        /// The few-shot examples the prompts draw on: pool, size, count per prompt and
        /// selection; absent without a pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        examples: Option<String>,
    },
    /// A report after an optimization.
    Report {
        /// The report (after the normalization, if there was one).
        report: IterationReport,
        /// The factor that brought the coverage back into its window, when it had left it.
        normalization: Option<f64>,
        /// Time in the TPS, s.
        tps_s: f64,
    },
    /// Advice after a report, the guard's verdict and what was applied.
    Advice {
        /// Iteration the advice is based on.
        iteration: u32,
        /// The advice as returned (with its model calls); `None` when the advisor failed.
        advice: Option<Advice>,
        /// The advisor's error, if it failed.
        error: Option<String>,
        /// The model calls of a failed advice (prompts, replies, the repair request,
        /// attempts), so a failure can be audited like a success.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed_calls: Vec<llm_providers::advice::CallRecord>,
        /// The guard's verdict.
        verdict: Verdict,
        /// Time in the advisor, s.
        advisor_s: f64,
    },
    /// The plan ends.
    End {
        /// Why: `CriteriaMet`, `MaxIterations`, `AdvisorFailed`, `TpsFailed` or `Interrupted`.
        reason: String,
        /// Optimizations run.
        iterations: u32,
        /// Factor of the final normalization, on the dose as evaluated
        /// ([`tps_api::Normalization::Dose`]), from the last optimized plan; absent when the
        /// TPS could not normalize (then `error` says why).
        normalization: Option<f64>,
        /// MU of the final plan; absent when the TPS could not give them.
        plan: Option<PlanSummary>,
        /// Time of the final normalization in the TPS, s.
        #[serde(default)]
        tps_s: f64,
        /// What failed, when the reason is a failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The clinical goals judged on the final plan's dose.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        goals: Vec<tps_api::goals::GoalResult>,
    },
}

/// Transcripts written before protocols chose their termination ended by the study's criteria.
fn study_termination() -> tps_api::Termination {
    tps_api::Termination::Study
}

impl Event {
    /// The changes an advice event applied.
    pub fn applied(&self) -> Option<&[GoalChange]> {
        match self {
            Event::Advice { verdict, .. } => Some(&verdict.applied),
            _ => None,
        }
    }
}

/// Writes a transcript line by line.
pub struct TranscriptWriter {
    path: PathBuf,
    file: File,
}

impl TranscriptWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: File::create(path)?,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and flushes it to disk.
    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let line = serde_json::to_string(event).map_err(std::io::Error::other)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }
}

/// Reads a transcript; a malformed line is an error naming the file and line.
pub fn read(path: &Path) -> Result<Vec<Event>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("{}: line {}: {e}", path.display(), n + 1))?,
        );
    }
    Ok(events)
}
