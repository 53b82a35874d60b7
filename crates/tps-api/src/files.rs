//! Writing a result file whole or not at all.
//!
//! Every file a run leaves (a patient's manifest and volumes, a plan's report, metric table
//! and pictures, a study's tables, an example pool) is written to `<name>.partial` beside its
//! place, synced to disk and renamed over it. A crash or a failed write leaves either the old
//! file or the new one, never a cut one (at worst a stale `.partial`, which no reader opens).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Suffix of a file being written.
pub const PARTIAL: &str = "partial";

/// Where `path` is written before it is renamed: `report.md` -> `report.md.partial`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(PARTIAL);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `path` whole or not at all through `write`, which gets a buffered writer on the
/// partial file; when it fails, the partial file is removed and `path` is left as it was. The
/// error names `path`.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = partial_path(path);
    let written = File::create(&tmp).and_then(|f| {
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tps-api-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_write_that_fails_midway_leaves_the_old_file_and_no_partial() {
        let dir = scratch("fail");
        let path = dir.join("report.md");
        write_atomic(&path, b"old report, whole\n").unwrap();
        let e = write_atomic_with(&path, |w| {
            w.write_all(b"new report, first half")?;
            w.flush()?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("report.md") && e.contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old report, whole\n");
        assert!(!partial_path(&path).exists());
        write_atomic(&path, b"new report\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new report\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_partial_file_sits_beside_its_place() {
        assert_eq!(
            partial_path(Path::new("out/plans.csv")),
            Path::new("out/plans.csv.partial")
        );
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_it() {
        let e = write_atomic(Path::new("/nonexistent-dir/x/metrics.csv"), b"a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-dir/x/metrics.csv"), "{e}");
    }
}
