//! Why a plan ends, and the flag that asks a running plan to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// Why a plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminationReason {
    /// Coverage and every OAR objective inside its range.
    CriteriaMet,
    /// The protocol's iteration cap.
    MaxIterations,
    /// The advisor failed more often in a row than the settings allow
    /// ([`crate::PlannerSettings::max_advisor_failures`]).
    AdvisorFailed,
    /// An optimization failed after the first; the last good plan is kept.
    TpsFailed,
    /// A stop was asked for ([`StopFlag`]); the plan stopped after the step it was in.
    Interrupted,
}

impl TerminationReason {
    /// Whether the plan ran as far as the protocol wanted (criteria met or iteration cap), as
    /// opposed to being cut short.
    pub fn is_complete(self) -> bool {
        matches!(self, Self::CriteriaMet | Self::MaxIterations)
    }
}

/// A flag a signal handler (Ctrl-C) or another thread raises to stop a plan after its
/// current step. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A lowered flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every plan watching this flag to stop.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
