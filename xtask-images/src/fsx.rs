//! Files written so that a reader never sees half of one, and a lock for read-modify-write.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// Writes to a temporary name beside `path`, then renames, so a reader never sees half a file.
pub fn write_atomic(path: &Path, content: impl AsRef<[u8]>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    let file = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("`{}` is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.to_string_lossy(),
        std::process::id()
    ));
    // A failed write (a full disk) leaves no half-written temporary file behind.
    std::fs::write(&tmp, content).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write `{}`: {e}", tmp.display())
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write `{}`: {e}", path.display())
    })
}

/// Makes `dir` (created if missing) ignored by git whatever the project's own `.gitignore`
/// says: a `.gitignore` of `*` there, which ignores itself too. For what the tool writes into a
/// project (`what` says what it is).
pub fn mark_output_dir(dir: &Path, what: &str) -> Result<()> {
    let marker = dir.join(".gitignore");
    if marker.exists() {
        return Ok(());
    }
    write_atomic(&marker, format!("# Written by cargo xtask: {what}.\n*\n"))
}

/// Holds an exclusive lock on `path` (created if missing) until dropped, so two runs that
/// read, merge and rewrite the same state file do not lose each other's entries.
/// A private directory under the system's temporary directory, removed when dropped (saved
/// images for `layers`, `scan`, the SBOM).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("xtask-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lock file, opened (and made, with its directory, if missing) but not yet locked.
pub fn lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    }
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", path.display()))
}

/// [`lock_file`], locked: waits for whoever holds it.
pub fn lock(path: &Path) -> Result<File> {
    let f = lock_file(path)?;
    f.lock()
        .map_err(|e| anyhow::anyhow!("cannot lock `{}`: {e}", path.display()))?;
    Ok(f)
}

/// This process's user ID.
pub fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self")
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory holding a file: the rename fails.
        let target = dir.path().join("state.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "").unwrap();
        assert!(write_atomic(&target, "{}").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("state.json")]);
    }
}
