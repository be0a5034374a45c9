//! Where images are published and the exact commands that publish and read them back: a
//! registry (`docker://`) or the default local OCI layout (`oci:`). Pure: argv and parsing.

pub mod decide;
pub mod lock;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::cmd::{Cmd, Secret};
use crate::engine::Engine;

/// Where an image's tags go.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Dest {
    /// `REGISTRY/NAME:TAG`.
    Registry {
        repository: String,
        #[serde(skip)]
        insecure: bool,
    },
    /// One OCI image layout per image, tags as ref names.
    Layout { dir: PathBuf },
}

impl Dest {
    pub fn new(registry: Option<&str>, insecure: bool, root: &Path, name: &str) -> Dest {
        match registry {
            Some(r) => Dest::Registry {
                repository: format!("{r}/{name}"),
                insecure,
            },
            None => Dest::Layout {
                dir: root.join("target/images").join(name),
            },
        }
    }

    /// `docker://R/N:TAG` or `oci:DIR:TAG`, as podman and skopeo take it.
    pub fn transport(&self, tag: &str) -> String {
        match self {
            Dest::Registry { repository, .. } => format!("docker://{repository}:{tag}"),
            Dest::Layout { dir } => format!("oci:{}:{tag}", dir.display()),
        }
    }

    /// The immutable source of a copy: by digest in a registry; in a layout (whose transport
    /// has no digest references) the tag just verified to hold that digest.
    pub fn by_digest(&self, digest: &str, verified_tag: &str) -> String {
        match self {
            Dest::Registry { repository, .. } => format!("docker://{repository}@{digest}"),
            Dest::Layout { .. } => self.transport(verified_tag),
        }
    }

    /// What users pull: `R/N:TAG@sha256:…`, or the `oci:` reference for a layout.
    pub fn pinned(&self, tag: &str, digest: &str) -> String {
        match self {
            Dest::Registry { repository, .. } => format!("{repository}:{tag}@{digest}"),
            Dest::Layout { dir } => format!("oci:{}:{tag} ({digest})", dir.display()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Dest::Registry { repository, .. } => repository.clone(),
            Dest::Layout { dir } => format!("oci:{}", dir.display()),
        }
    }

    /// The host part, for `podman login`.
    pub fn host(&self) -> Option<&str> {
        match self {
            Dest::Registry { repository, .. } => repository.split('/').next(),
            Dest::Layout { .. } => None,
        }
    }

    fn insecure(&self) -> bool {
        matches!(self, Dest::Registry { insecure: true, .. })
    }
}

/// `podman push` of the tested image ID, recording the pushed manifest digest. Docker's `push`
/// takes only a name it has tagged and records no digest, so under Docker skopeo copies the
/// image by ID out of the daemon (`docker-daemon:`), to a registry or the layout alike.
pub fn push(engine: &Engine, dest: &Dest, image_id: &str, tag: &str, digestfile: &Path) -> Cmd {
    if engine.kind == crate::engine::EngineKind::Docker {
        let mut c = Cmd::new("skopeo").args(["copy", "--quiet"]);
        if dest.insecure() {
            c = c.arg("--dest-tls-verify=false");
        }
        return c
            .arg("--digestfile")
            .arg(digestfile.display().to_string())
            .arg(engine.local_ref(image_id))
            .arg(dest.transport(tag));
    }
    let mut c = Cmd::new(engine.program()).arg("push");
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg("--digestfile")
        .arg(digestfile.display().to_string())
        .arg(image_id)
        .arg(dest.transport(tag))
}

/// `podman manifest push --all` of a local manifest list: the list and every platform's image.
pub fn push_list(engine: &Engine, dest: &Dest, list: &str, tag: &str, digestfile: &Path) -> Cmd {
    let mut c = Cmd::new(engine.program()).args(["manifest", "push", "--all", "--quiet"]);
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg("--digestfile")
        .arg(digestfile.display().to_string())
        .arg(list)
        .arg(dest.transport(tag))
}

/// What a manifest list is, for comparing a local list with a published one: each platform
/// with its image ID (config digest), sorted. `linux/arm64/v8` is `linux/arm64`.
pub fn list_identity(instances: &[(String, String)]) -> String {
    let mut parts: Vec<String> = instances
        .iter()
        .map(|(p, id)| {
            let p = p
                .strip_suffix("/v8")
                .filter(|b| b.ends_with("/arm64"))
                .unwrap_or(p);
            format!("{p}={}", id.trim_start_matches("sha256:"))
        })
        .collect();
    parts.sort();
    format!("list:{}", parts.join(","))
}

/// The platforms whose images differ between two list identities (or that only one has).
pub fn list_differences(a: &str, b: &str) -> Vec<String> {
    let parse = |s: &str| -> std::collections::BTreeMap<String, String> {
        s.trim_start_matches("list:")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (x, y) = (parse(a), parse(b));
    let mut out: Vec<String> = x
        .keys()
        .chain(y.keys())
        .filter(|k| x.get(*k) != y.get(*k))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Each entry of an image index: its platform (`os/arch[/variant]`) and manifest digest.
pub fn index_entries(raw: &[u8]) -> Option<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let entries = v["manifests"].as_array()?;
    Some(
        entries
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let mut platform = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or("unknown"),
                    p["architecture"].as_str().unwrap_or("unknown")
                );
                if let Some(v) = p["variant"].as_str().filter(|v| !v.is_empty()) {
                    platform.push('/');
                    platform.push_str(v);
                }
                (
                    platform,
                    m["digest"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

/// A registry-side copy: the manifest is copied as is, so the digest stays the same; `--all`
/// keeps every platform of a list.
pub fn copy(dest: &Dest, from: &str, tag: &str) -> Cmd {
    let mut c = Cmd::new("skopeo").args(["copy", "--all", "--quiet"]);
    if dest.insecure() {
        c = c.args(["--src-tls-verify=false", "--dest-tls-verify=false"]);
    }
    c.arg(from).arg(dest.transport(tag))
}

/// The reserved tag a rollback leaves in the destination: it points at the release that was
/// rolled back, and no floating tag moves to that release, or an older one, while it does.
/// Every machine that publishes sees it; a newer release, or `rollback --clear` (which points
/// it at the current `latest`), lifts it.
pub const HOLD_TAG: &str = "xtask-rollback-hold";

/// One tag's image configuration, labels included (`skopeo inspect`, not raw).
pub fn inspect_config(dest: &Dest, tag: &str) -> Cmd {
    let mut c = Cmd::new("skopeo").arg("inspect");
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg(dest.transport(tag))
}

/// The raw manifest of one tag (its sha256 is the manifest digest).
pub fn inspect_raw(dest: &Dest, tag: &str) -> Cmd {
    let mut c = Cmd::new("skopeo").args(["inspect", "--raw"]);
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg(dest.transport(tag))
}

/// Deletes a registry's manifest `REPO@DIGEST` (and so every tag on it).
pub fn delete(dest: &Dest, digest: &str, tag: &str) -> Cmd {
    let mut c = Cmd::new("skopeo").arg("delete");
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg(dest.by_digest(digest, tag))
}

/// The raw manifest of a registry's `REPO@DIGEST`.
pub fn inspect_raw_at(dest: &Dest, digest: &str) -> Cmd {
    let mut c = Cmd::new("skopeo").args(["inspect", "--raw"]);
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    c.arg(dest.by_digest(digest, ""))
}

/// The registry's tag list (a layout's is read from its `index.json`).
pub fn list_tags(dest: &Dest) -> Option<Cmd> {
    match dest {
        Dest::Registry {
            repository,
            insecure,
        } => {
            let mut c = Cmd::new("skopeo").arg("list-tags");
            if *insecure {
                c = c.arg("--tls-verify=false");
            }
            Some(c.arg(format!("docker://{repository}")))
        }
        Dest::Layout { .. } => None,
    }
}

pub fn login(engine: &Engine, dest: &Dest, user: &str, password: &Secret) -> Option<Cmd> {
    let host = dest.host()?;
    // Under Docker every registry request is skopeo's (`push`, `pull` below), and `docker
    // login` has no way to allow plain HTTP: skopeo logs in.
    let program = match engine.kind {
        crate::engine::EngineKind::Podman => engine.program(),
        crate::engine::EngineKind::Docker => "skopeo",
    };
    let mut c = Cmd::new(program).arg("login");
    if dest.insecure() {
        c = c.arg("--tls-verify=false");
    }
    Some(
        c.args(["--username", user, "--password-stdin", host])
            .stdin(password.clone()),
    )
}

/// Brings a published image into local storage as `local` (`NAME:latest`), for rollback's
/// local retag. From a registry, `podman pull` by digest (the caller tags what it prints); from
/// a layout, a copy straight to the name: `podman pull oci:DIR` would also name the image after
/// the directory (`localhost/target/images/NAME`), a stray name nobody asked for.
pub fn pull(engine: &Engine, dest: &Dest, digest: &str, tag: &str, local: &str) -> (Cmd, bool) {
    if engine.kind == crate::engine::EngineKind::Docker {
        // Into the daemon by skopeo, named at once (Docker names `localhost/` nothing).
        let mut c = Cmd::new("skopeo").args(["copy", "--quiet"]);
        if dest.insecure() {
            c = c.arg("--src-tls-verify=false");
        }
        return (
            c.arg(dest.by_digest(digest, tag))
                .arg(engine.local_ref(local)),
            true,
        );
    }
    match dest {
        Dest::Layout { .. } => (
            Cmd::new("skopeo")
                .args(["copy", "--quiet"])
                .arg(dest.transport(tag))
                .arg(engine.local_ref(&format!("localhost/{local}"))),
            true,
        ),
        Dest::Registry { .. } => {
            let mut c = Cmd::new(engine.program()).args(["pull", "--quiet"]);
            if dest.insecure() {
                c = c.arg("--tls-verify=false");
            }
            (c.arg(dest.by_digest(digest, tag)), false)
        }
    }
}

/// A tag as the destination holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remote {
    /// Manifest digest, `sha256:…`.
    pub digest: String,
    /// The image ID (config digest) it holds, without `sha256:`; for a manifest list, the
    /// list's identity (`list_identity`).
    pub image_id: Option<String>,
    /// A manifest list's platforms: each one's manifest digest and image ID.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<RemoteInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteInstance {
    pub platform: String,
    pub digest: String,
    pub id: String,
}

/// The raw image config (`skopeo inspect --config`) of a transport reference: a local image
/// (`containers-storage:ID`) or a layout's tag.
pub fn raw_config(source: &str) -> Cmd {
    Cmd::new("skopeo").args(["inspect", "--config"]).arg(source)
}

/// Whether two image configs are the same image once in the OCI format: same layers, platform,
/// creation time, and every run-time field OCI has. An OCI layout holds a Docker-format image
/// (one with a HEALTHCHECK) converted, so its config, and image ID, differ from the local one
/// by exactly what OCI has no field for.
pub fn same_in_oci(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    const FIELDS: [&str; 9] = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
    ];
    // Absent, null and empty are one thing to the format converters.
    let norm = |v: Option<&Value>| -> Option<Value> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Array(x)) if x.is_empty() => None,
            Some(Value::Object(x)) if x.is_empty() => None,
            Some(Value::String(x)) if x.is_empty() => None,
            Some(v) => Some(v.clone()),
        }
    };
    let top = |k: &str| norm(a.get(k)) == norm(b.get(k));
    top("architecture")
        && top("os")
        && top("variant")
        && top("created")
        && norm(a.pointer("/rootfs/diff_ids")) == norm(b.pointer("/rootfs/diff_ids"))
        && norm(a.pointer("/rootfs/diff_ids")).is_some()
        && FIELDS.iter().all(|f| {
            norm(a.get("config").and_then(|c| c.get(f)))
                == norm(b.get("config").and_then(|c| c.get(f)))
        })
}

/// Digest and image ID from a raw manifest.
pub fn parse_manifest(raw: &[u8]) -> Remote {
    let digest = format!("sha256:{:x}", Sha256::digest(raw));
    let image_id = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["config"]["digest"].as_str().map(str::to_string))
        .map(|d| d.trim_start_matches("sha256:").to_string());
    Remote {
        digest,
        image_id,
        instances: Vec::new(),
    }
}

/// Tags of `skopeo list-tags` output.
pub fn parse_tag_list(json: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| {
            v["Tags"].as_array().map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Tag → manifest digest of an OCI layout's `index.json`.
pub fn parse_layout_index(json: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v["manifests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let tag = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
                    Some((tag.to_string(), m["digest"].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a failed push or copy may succeed when tried again: not for refused credentials,
/// nor for a TLS mismatch (the same handshake fails the same way every time).
pub fn retryable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ![
        "unauthorized",
        "authentication required",
        "denied",
        "invalid username/password",
        "invalid reference format",
        "server gave http response to https client",
        "x509: certificate",
        "tls: ",
        // The machine, not the network: trying again fails the same way.
        "no space left on device",
        "disk quota exceeded",
        "read-only file system",
        "inappropriate ioctl",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// What to do about a registry error the user can fix by configuration, if it is one.
pub fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("no space left on device") || m.contains("disk quota exceeded") {
        return Some("the disk is full: free space (`cargo xtask clean`, `podman system prune`) and run it again; nothing half-pushed stays published");
    }
    if m.contains("server gave http response to https client") {
        return Some("the registry speaks plain HTTP: set XTASK_REGISTRY_INSECURE=1, or `registry_insecure = true` in docker/images.toml (only for a registry you trust, such as one on localhost)");
    }
    if m.contains("x509: certificate") {
        return Some("the registry's TLS certificate is not trusted here: install its CA, or for a registry you trust set XTASK_REGISTRY_INSECURE=1 (`registry_insecure = true`)");
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_layout_copy_is_the_same_image_in_oci_terms() {
        let local = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2025-01-15T10:30:00Z",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b"]},
            "config": {"User": "app", "Cmd": ["web"], "Healthcheck": {"Test": ["CMD", "true"]},
                       "Labels": {"x": "1"}, "Volumes": null}
        });
        let mut layout = local.clone();
        layout["config"]
            .as_object_mut()
            .unwrap()
            .remove("Healthcheck");
        layout["config"].as_object_mut().unwrap().remove("Volumes");
        assert!(super::same_in_oci(&local, &layout));
        for (path, value) in [
            ("/config/Cmd", serde_json::json!(["worker"])),
            ("/config/Labels", serde_json::json!({"x": "2"})),
            ("/rootfs/diff_ids", serde_json::json!(["sha256:a"])),
            ("/created", serde_json::json!("2025-01-16T10:30:00Z")),
        ] {
            let mut other = layout.clone();
            *other.pointer_mut(path).unwrap() = value;
            assert!(!super::same_in_oci(&local, &other), "{path}");
        }
    }

    use super::*;
    use crate::engine::{EngineKind, Features};

    #[test]
    fn commands() {
        let e = Engine {
            kind: EngineKind::Podman,
            features: Features::default(),
        };
        let reg = Dest::new(Some("127.0.0.1:5000/team"), true, Path::new("/p"), "app");
        assert_eq!(
            push(&e, &reg, "abc", "1.0.0", Path::new("/tmp/d")).to_string(),
            "podman push --tls-verify=false --digestfile /tmp/d abc docker://127.0.0.1:5000/team/app:1.0.0"
        );
        assert_eq!(
            copy(&reg, &reg.by_digest("sha256:1", "1.0.0"), "latest").to_string(),
            "skopeo copy --all --quiet --src-tls-verify=false --dest-tls-verify=false docker://127.0.0.1:5000/team/app@sha256:1 docker://127.0.0.1:5000/team/app:latest"
        );
        let layout = Dest::new(None, false, Path::new("/p"), "app");
        assert_eq!(layout.transport("1.0.0"), "oci:/p/target/images/app:1.0.0");
        assert!(list_tags(&layout).is_none());
        let login = login(&e, &reg, "alice", &Secret::new("pw")).unwrap();
        assert_eq!(
            login.to_string(),
            "podman login --tls-verify=false --username alice --password-stdin 127.0.0.1:5000 <<<<secret>"
        );
    }

    #[test]
    fn parsing() {
        let raw = br#"{"schemaVersion":2,"config":{"digest":"sha256:beef"}}"#;
        let r = parse_manifest(raw);
        assert_eq!(r.image_id.as_deref(), Some("beef"));
        assert!(r.digest.starts_with("sha256:") && r.digest.len() == 71);
        assert_eq!(
            parse_tag_list(r#"{"Repository":"x","Tags":["latest","1.0.0"]}"#),
            ["latest", "1.0.0"]
        );
        let idx = parse_layout_index(
            r#"{"manifests":[{"digest":"sha256:a","annotations":{"org.opencontainers.image.ref.name":"1.0.0"}}]}"#,
        );
        assert_eq!(idx["1.0.0"], "sha256:a");
        assert!(!retryable("Error: unauthorized: authentication required"));
        assert!(retryable("connection refused"));
    }
}
