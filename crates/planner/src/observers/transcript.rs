//! The transcript as an observer: every event appended and flushed as it happens.

use super::Observer;
use crate::PlanError;
use crate::transcript::{Event, TranscriptWriter};

impl Observer for TranscriptWriter {
    fn observe(&mut self, event: &Event) -> Result<(), PlanError> {
        self.write(event)
            .map_err(|err| PlanError::Transcript(format!("{}: {err}", self.path().display())))
    }
}
