//! Registry logins private to one run. A login made from `XTASK_REGISTRY_USER`/`_PASSWORD`
//! goes to an auth file in a directory of this process's own (mode 0700, the file 0600), which
//! every podman, skopeo and docker it starts reads (`REGISTRY_AUTH_FILE`, `DOCKER_CONFIG`), and
//! which is removed when the command ends, on errors and Ctrl-C too. So credentials never stay
//! in the machine's shared `auth.json` for later processes (or other users of a shared CI
//! runner), and a `--dry-run` can log in to read a registry without touching anything shared.
//!
//! The file starts as a copy of the logins the engine would have read (the user's own auth
//! files, which are only read), so pulls from other registries keep their credentials.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use anyhow::{Context, Result};

const PREFIX: &str = "xtask-auth-";

static PRIVATE: OnceLock<PathBuf> = OnceLock::new();

/// Points this process (and so its children) at a private auth file, made once. Returns the
/// file.
pub fn ensure_private() -> Result<PathBuf> {
    if let Some(dir) = PRIVATE.get() {
        return Ok(dir.join("auth.json"));
    }
    sweep_dead();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating the private auth directory `{}`", dir.display()))?;
    let dir = PRIVATE.get_or_init(|| dir);
    let seed = serde_json::to_vec_pretty(&merged(&sources())).unwrap_or_default();
    for name in ["auth.json", "config.json"] {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating `{}`", path.display()))?;
        f.write_all(&seed)
            .with_context(|| format!("writing `{}`", path.display()))?;
    }
    // Edition 2021: set_var is safe; the engine commands that read these start after this.
    std::env::set_var("REGISTRY_AUTH_FILE", dir.join("auth.json"));
    std::env::set_var("DOCKER_CONFIG", dir);
    Ok(dir.join("auth.json"))
}

/// Removes the private auth directory, if this process made one.
pub fn remove() {
    if let Some(dir) = PRIVATE.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A run killed with SIGKILL cannot clean up: the next one removes what it left.
fn sweep_dead() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let mine = e
            .metadata()
            .is_ok_and(|m| Some(std::os::unix::fs::MetadataExt::uid(&m)) == crate::fsx::own_uid());
        if mine && !crate::working::alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The auth files the engines read, in their order of precedence (containers-auth.json(5),
/// then Docker's): the user's choice, the runtime one, the persistent one, Docker's.
pub fn sources() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mine = PRIVATE.get().map(|d| d.join("auth.json"));
    let mut out = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE").filter(|p| Some(p) != mine.as_ref()) {
        out.push(p);
    }
    match env("XDG_RUNTIME_DIR") {
        Some(d) => out.push(d.join("containers/auth.json")),
        None => out.push(PathBuf::from(format!(
            "/run/containers/{}/auth.json",
            crate::fsx::own_uid().unwrap_or(0)
        ))),
    }
    let home = env("HOME");
    if let Some(c) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        out.push(c.join("containers/auth.json"));
    }
    let docker = env("DOCKER_CONFIG")
        .filter(|d| PRIVATE.get() != Some(d))
        .or_else(|| home.map(|h| h.join(".docker")));
    if let Some(d) = docker {
        out.push(d.join("config.json"));
    }
    out
}

/// One auth document from several: the first file naming a registry wins, as in the engines.
/// A credential store (`credsStore`) is left out, so a login goes to the private file and not
/// into the desktop keychain.
fn merged(files: &[PathBuf]) -> serde_json::Value {
    let mut auths = serde_json::Map::new();
    let mut helpers = serde_json::Map::new();
    for doc in files.iter().filter_map(|f| read_json(f)) {
        for (key, into) in [("auths", &mut auths), ("credHelpers", &mut helpers)] {
            if let Some(m) = doc[key].as_object() {
                for (k, v) in m {
                    into.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("auths".into(), auths.into());
    if !helpers.is_empty() {
        doc.insert("credHelpers".into(), helpers.into());
    }
    doc.into()
}

/// Which stored login the engine would use for `host`: the file holding it and its user name
/// (decoded; the password is never read out).
pub fn stored_login(host: &str) -> Option<(PathBuf, Option<String>)> {
    for f in sources() {
        let Some(doc) = read_json(&f) else {
            continue;
        };
        let Some(entry) = doc["auths"].as_object().and_then(|m| {
            m.iter()
                .find(|(k, _)| {
                    let k = k
                        .trim_start_matches("https://")
                        .trim_start_matches("http://");
                    k == host || k.starts_with(&format!("{host}/"))
                })
                .map(|(_, v)| v.clone())
        }) else {
            continue;
        };
        let user = entry["auth"]
            .as_str()
            .and_then(base64_decode)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, _)| u.to_string()));
        return Some((f, user));
    }
    None
}

/// An auth file's document; `None` when it is missing or not JSON (the engines skip it too).
fn read_json(f: &Path) -> Option<serde_json::Value> {
    std::fs::read(f)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Standard base64 (the `auth` field of an auth file), padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_naming_a_registry_wins_and_no_credential_store_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            r#"{"auths":{"r.example":{"auth":"YTpi"}},"credsStore":"desktop"}"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"{"auths":{"r.example":{"auth":"eDp5"},"q.example":{"auth":"cTpx"}},"credHelpers":{"gcr.io":"gcloud"}}"#,
        )
        .unwrap();
        let m = merged(&[a, dir.path().join("missing.json"), b]);
        assert_eq!(m["auths"]["r.example"]["auth"], "YTpi");
        assert_eq!(m["auths"]["q.example"]["auth"], "cTpx");
        assert_eq!(m["credHelpers"]["gcr.io"], "gcloud");
        assert!(m.get("credsStore").is_none());
        assert_eq!(base64_decode("YWxpY2U6c2VjcmV0").unwrap(), b"alice:secret");
        assert_eq!(base64_decode("YTpi").unwrap(), b"a:b");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a!").is_none());
    }
}
