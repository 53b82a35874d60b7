//! Printing to stdout. Printing never decides whether a run finishes: when stdout is closed
//! (`autoplan plan ... | head -1`) or cannot be written, printing stops, stderr says so once,
//! and the run goes on to write its outputs.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout could not be written.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes a line to stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::emit(&format!("{}\n", format!($($arg)*))) };
}

/// Like `out!` without the newline.
macro_rules! outn {
    ($($arg:tt)*) => { $crate::output::emit(&format!($($arg)*)) };
}

/// Writes `s` to stdout and flushes it, unless stdout is gone.
pub fn emit(s: &str) {
    use std::io::Write;
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        if !STDOUT_GONE.swap(true, Ordering::Relaxed) {
            let why = if e.kind() == std::io::ErrorKind::BrokenPipe {
                "stdout was closed".to_string()
            } else {
                format!("stdout cannot be written ({e})")
            };
            eprintln!("note: {why}; printing stops, the run goes on and writes its outputs");
        }
    }
}

/// Writes `text` to `dir/name` whole or not at all ([`tps_api::files`]), naming the file in
/// the error.
pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<()> {
    write_text(&dir.join(name), text)
}

/// Writes `text` to `path` whole or not at all, naming the file in the error.
pub fn write_text(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    Ok(tps_api::files::write_atomic(path, text.as_bytes())?)
}
