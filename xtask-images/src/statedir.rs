//! Where the tool keeps what it remembers between runs (step keys, stat caches, the engine's
//! features): outside every project, so nothing it writes can enter a build context, change a
//! cache key, or show up in `git status`.
//!
//! The base is `$XTASK_STATE_DIR`, else `$XDG_CACHE_HOME/xtask`, else `~/.cache/xtask`; each
//! project gets a directory below it named for its root, so CI can cache one directory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct StateDir {
    /// Shared by every project: what depends only on the machine (the engine's features).
    pub base: PathBuf,
    /// This project's records.
    pub project: PathBuf,
    /// `--dry-run`: read what is there, write nothing.
    pub read_only: bool,
}

impl StateDir {
    /// `base` from the environment as `main` read it; `root` is the project's root.
    pub fn locate(base: PathBuf, root: &Path, read_only: bool) -> StateDir {
        // The canonical path, so `-C .` and `-C /abs/path` share one record.
        let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let name: String = canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        StateDir {
            project: base.join("projects").join(format!("{name}-{hex}")),
            base,
            read_only,
        }
    }

    /// The base directory from `XTASK_STATE_DIR`, `XDG_CACHE_HOME` or `HOME`; the system's
    /// temporary directory when none is set (a cache lost there costs a rebuild, nothing more).
    pub fn base_from(get: impl Fn(&str) -> Option<String>) -> PathBuf {
        if let Some(d) = get("XTASK_STATE_DIR") {
            return PathBuf::from(d);
        }
        if let Some(d) = get("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
            return Path::new(&d).join("xtask");
        }
        match get("HOME") {
            Some(h) => Path::new(&h).join(".cache").join("xtask"),
            None => std::env::temp_dir().join("xtask-state"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lives_outside_the_project_and_is_named_for_it() {
        let get = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            StateDir::base_from(get(&[("HOME", "/home/u")])),
            Path::new("/home/u/.cache/xtask")
        );
        assert_eq!(
            StateDir::base_from(get(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")])),
            Path::new("/c/xtask")
        );
        assert_eq!(
            StateDir::base_from(get(&[("XDG_CACHE_HOME", "/c"), ("XTASK_STATE_DIR", "/s")])),
            Path::new("/s")
        );
        let a = StateDir::locate("/s".into(), Path::new("/nonexistent/my app"), false);
        let b = StateDir::locate("/s".into(), Path::new("/nonexistent/other/my app"), false);
        assert!(a
            .project
            .to_string_lossy()
            .starts_with("/s/projects/my_app-"));
        assert_ne!(a.project, b.project);
    }
}
