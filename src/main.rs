//! `autoplan`: the command-line entry point. Every subcommand is a thin shell in `cmd/`; the
//! work is done by the library crates.

#[macro_use]
mod output;
mod args;
mod cli;
mod cmd;
mod cohort_run;
mod interrupt;
mod lock;
mod logging;
mod pictures;
mod study_file;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.verbose);
    match cli::run(cli) {
        Ok(()) if interrupt::interrupted() => ExitCode::from(interrupt::EXIT_INTERRUPTED),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<interrupt::Interrupted>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(interrupt::EXIT_INTERRUPTED)
        }
        Err(e) if e.downcast_ref::<cmd::plan::GoalsFailed>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(cmd::plan::EXIT_GOALS_FAILED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
