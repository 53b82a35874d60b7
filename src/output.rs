//! Printing to stdout. A closed pipe (`autoplan ... | head`) ends the program quietly instead
//! of panicking; any other write error ends it with a message.

/// Writes a line to stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::emit(&format!("{}\n", format!($($arg)*))) };
}

/// Like `out!` without the newline.
macro_rules! outn {
    ($($arg:tt)*) => { $crate::output::emit(&format!($($arg)*)) };
}

/// Writes `s` to stdout and flushes it.
pub fn emit(s: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(s.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` to `dir/name`, naming the file in the error.
pub fn write_file(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
