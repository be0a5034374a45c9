//! A registry login private to one run: unless the caller chose an auth file
//! (`REGISTRY_AUTH_FILE`), logins go to a file of this process's own, which every podman and
//! skopeo it starts reads, and which is removed when it ends. So credentials never stay in the
//! machine's shared `auth.json` for later processes (or users of a shared CI runner), and a
//! `--dry-run` can log in to read what a registry holds without touching anything shared.

use std::path::PathBuf;
use std::sync::OnceLock;

static PRIVATE: OnceLock<PathBuf> = OnceLock::new();

/// Points this process (and so its children) at a private auth file, once, unless the caller
/// set one.
pub fn ensure_private() {
    if std::env::var_os("REGISTRY_AUTH_FILE").is_some() && PRIVATE.get().is_none() {
        return;
    }
    PRIVATE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("xtask-auth-{}.json", std::process::id()));
        // Edition 2021: set_var is safe; this runs before any thread of ours reads the env.
        std::env::set_var("REGISTRY_AUTH_FILE", &path);
        path
    });
}

/// Removes the private auth file, if this process made one.
pub fn remove() {
    if let Some(p) = PRIVATE.get() {
        let _ = std::fs::remove_file(p);
    }
}
