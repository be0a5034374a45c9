//! Podman's image store, read directly: which image IDs exist and their names. Reading
//! `images.json` costs a millisecond where `podman images` costs a process and a lock, and it
//! lets a no-op build run no podman command at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where podman keeps images, as `podman info` reported it at the last build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub graphroot: String,
    pub driver: String,
}

impl Location {
    fn images_json(&self) -> PathBuf {
        Path::new(&self.graphroot).join(format!("{}-images/images.json", self.driver))
    }

    /// From `podman info --format json`.
    pub fn from_info(info: &str) -> Option<Location> {
        let v: serde_json::Value = serde_json::from_str(info).ok()?;
        let store = v.get("store")?;
        Some(Location {
            graphroot: store.get("graphRoot")?.as_str()?.to_string(),
            driver: store.get("graphDriverName")?.as_str()?.to_string(),
        })
    }
}

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    digests: Vec<String>,
}

/// The images in storage: ID → names, and manifest digest → ID.
#[derive(Debug, Default)]
pub struct Images {
    names: HashMap<String, Vec<String>>,
    by_digest: HashMap<String, String>,
}

impl Images {
    /// None when the store cannot be read (then nothing is predicted cached).
    pub fn read(loc: &Location) -> Option<Images> {
        let text = std::fs::read(loc.images_json()).ok()?;
        Images::parse(&text)
    }

    pub fn parse(text: &[u8]) -> Option<Images> {
        let records: Vec<Record> = serde_json::from_slice(text).ok()?;
        let mut images = Images::default();
        for r in records {
            for d in r.digest.into_iter().chain(r.digests) {
                images.by_digest.insert(d, r.id.clone());
            }
            images.names.insert(r.id, r.names);
        }
        Some(images)
    }

    pub fn exists(&self, id: &str) -> bool {
        self.names.contains_key(id)
    }

    pub fn names(&self, id: &str) -> &[String] {
        self.names.get(id).map_or(&[], Vec::as_slice)
    }

    /// The full ID of the one image whose ID starts with `short` (podman prints 11 digits).
    pub fn full_id(&self, short: &str) -> Option<String> {
        let mut hits = self.names.keys().filter(|id| id.starts_with(short));
        let first = hits.next()?;
        hits.next().is_none().then(|| first.clone())
    }

    /// The ID of a reference as podman resolves short names: `app:1` is `localhost/app:1`
    /// if built here, else `docker.io/library/app:1`.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        let r = reference.strip_prefix("sha256:").unwrap_or(reference);
        if r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.exists(r).then(|| r.to_string());
        }
        // `name@sha256:…` is pinned by the manifest digest, whatever the name.
        if let Some((_, digest)) = reference.split_once('@') {
            return self.by_digest.get(digest).cloned();
        }
        let last = reference.rsplit('/').next().unwrap_or(reference);
        let tagged = if last.contains(':') || last.contains('@') {
            reference.to_string()
        } else {
            format!("{reference}:latest")
        };
        let first = tagged.split('/').next().unwrap_or("");
        let has_domain = tagged.contains('/')
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let candidates = if has_domain {
            vec![tagged]
        } else if tagged.contains('/') {
            vec![format!("localhost/{tagged}"), format!("docker.io/{tagged}")]
        } else {
            vec![
                format!("localhost/{tagged}"),
                format!("docker.io/library/{tagged}"),
            ]
        };
        candidates.iter().find_map(|c| {
            self.names
                .iter()
                .find(|(_, names)| names.iter().any(|n| n == c))
                .map(|(id, _)| id.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_podman() {
        let json = br#"[{"id":"aaaa0000000000000000000000000000000000000000000000000000000000aa","names":["localhost/app:1","docker.io/library/python:3.12"],"digest":"sha256:d1","digests":["sha256:d1","sha256:d2"]},
                       {"id":"bbbb0000000000000000000000000000000000000000000000000000000000bb"},
                       {"id":"bbbc0000000000000000000000000000000000000000000000000000000000bb","names":["quay.io/x/y:latest"]}]"#;
        let i = Images::parse(json).unwrap();
        let a = "aaaa0000000000000000000000000000000000000000000000000000000000aa";
        assert_eq!(i.resolve("app:1").as_deref(), Some(a));
        assert_eq!(i.resolve("python:3.12").as_deref(), Some(a));
        assert_eq!(
            i.resolve("docker.io/library/python:3.12").as_deref(),
            Some(a)
        );
        assert!(i.resolve("quay.io/x/y").is_some());
        assert_eq!(i.resolve("python:3.13"), None);
        assert_eq!(i.resolve("python:3.12-slim@sha256:d2").as_deref(), Some(a));
        assert_eq!(i.resolve("python@sha256:d3"), None);
        assert_eq!(i.resolve(&format!("sha256:{a}")).as_deref(), Some(a));
        assert_eq!(i.full_id("aaaa").as_deref(), Some(a));
        assert_eq!(i.full_id("bbb"), None, "ambiguous");
        assert!(i.names(a).contains(&"localhost/app:1".to_string()));
        let info =
            r#"{"store":{"graphRoot":"/var/lib/containers/storage","graphDriverName":"overlay"}}"#;
        assert_eq!(
            Location::from_info(info).unwrap().images_json(),
            Path::new("/var/lib/containers/storage/overlay-images/images.json")
        );
    }
}
