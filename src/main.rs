//! `autoplan`: the command-line entry point.

#[macro_use]
mod commands;
mod agreement;
mod calibrate;
mod cohort_run;
mod logging;
mod plan_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    logging::init(cli.verbose);
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
