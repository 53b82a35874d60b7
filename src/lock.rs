//! An exclusive lock on an output directory, so two runs never write into one directory (an
//! interleaved transcript, one patient's dose replaced by another's, a study planned twice).
//!
//! The lock is a file, `.autoplan.lock`, created only if absent, that names its holder (PID,
//! host, command, start time) and is removed when the run ends. A second run stops at once and
//! names the holder. A lock left by a run that was killed is taken over, with a note, when its
//! holder was on this host and its PID is no longer running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Name of the lock file inside the directory.
pub const LOCK_FILE: &str = ".autoplan.lock";

/// Held while a run writes into its directory; the file goes when this is dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
}

/// This machine's name, as far as it can be told.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` runs on this host; `None` where that cannot be told.
fn running(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        Some(Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
    }
}

/// The holder named in a lock file: (pid, host, the whole text).
fn holder(text: &str) -> (Option<u32>, Option<String>) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    (field("pid").and_then(|p| p.parse().ok()), field("host"))
}

impl OutputLock {
    /// Locks `dir` (created when missing) for this run.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let me = host();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "pid = {}\nhost = \"{me}\"\nstarted-unix-s = {started}\ncommand = {:?}\n",
            std::process::id(),
            command.join(" ")
        );
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(text.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held = std::fs::read_to_string(&path).unwrap_or_default();
                    let (pid, their_host) = holder(&held);
                    let same_host = their_host.as_deref() == Some(me.as_str());
                    let stale = match pid {
                        Some(pid) if same_host => running(pid) == Some(false),
                        _ => false,
                    };
                    if !stale {
                        let who = match (pid, &their_host) {
                            (Some(pid), Some(h)) => format!("autoplan PID {pid} on host {h}"),
                            _ => "another run (its lock file names no PID and host)".into(),
                        };
                        bail!(
                            "{} is in use by {who} ({}); wait for that run to end or choose \
                             another --out (if that run is gone, remove {})",
                            dir.display(),
                            held.lines()
                                .find(|l| l.starts_with("command"))
                                .unwrap_or("command unknown"),
                            path.display()
                        );
                    }
                    eprintln!(
                        "note: {} was locked by PID {} on this host, which no longer runs (a \
                         killed run); taking the lock over",
                        dir.display(),
                        pid.unwrap_or(0)
                    );
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing the stale {}", path.display()))?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        bail!(
            "{}: another run took the lock while a stale one was being removed",
            path.display()
        )
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_a_dead_holder_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let first = OutputLock::acquire(&dir).unwrap();
        let e = OutputLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("PID {}", std::process::id())) && e.contains("in use"),
            "{e}"
        );
        drop(first);
        assert!(!dir.join(LOCK_FILE).exists());
        // A lock whose holder has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(
            dir.join(LOCK_FILE),
            format!("pid = {dead}\nhost = \"{}\"\n", host()),
        )
        .unwrap();
        let taken = OutputLock::acquire(&dir).unwrap();
        assert!(
            std::fs::read_to_string(dir.join(LOCK_FILE))
                .unwrap()
                .contains(&format!("pid = {}", std::process::id()))
        );
        drop(taken);
        // Another host's lock cannot be judged: refused.
        std::fs::write(dir.join(LOCK_FILE), "pid = 1\nhost = \"elsewhere\"\n").unwrap();
        let e = OutputLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains("host elsewhere"), "{e}");
    }
}
