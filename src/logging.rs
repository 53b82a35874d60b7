//! Logs to stderr through `tracing`: the level follows `-v` (warn, info, debug, trace) unless
//! `RUST_LOG` says otherwise.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
