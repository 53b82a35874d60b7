//! Ctrl-C: the first asks running plans to stop after their current step (transcript flushed,
//! reason recorded, outputs written) and the program to exit with status 130; a second ends
//! the program at once.

use std::sync::OnceLock;

use planner::StopFlag;

/// Exit status after an interrupt (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

static FLAG: OnceLock<StopFlag> = OnceLock::new();

/// The program's stop flag, with the Ctrl-C handler installed on first use.
pub fn stop_flag() -> StopFlag {
    FLAG.get_or_init(|| {
        let flag = StopFlag::new();
        let raised = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if raised.is_raised() {
                eprintln!("interrupted again: exiting now");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
            eprintln!("interrupt: stopping after the current step (Ctrl-C again to exit now)");
            raised.raise();
        });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        flag
    })
    .clone()
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    FLAG.get().is_some_and(StopFlag::is_raised)
}

/// The error a command returns when Ctrl-C cut it short (after its outputs were written);
/// `main` exits with [`EXIT_INTERRUPTED`].
#[derive(Debug, thiserror::Error)]
#[error("interrupted (Ctrl-C): the plan stopped after its current step; its outputs are written")]
pub struct Interrupted;
