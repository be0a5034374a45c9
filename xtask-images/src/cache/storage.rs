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
    /// `GRAPHROOT/DRIVER-WHAT`: the driver's `images` or `layers` store.
    fn store(&self, what: &str) -> PathBuf {
        Path::new(&self.graphroot).join(format!("{}-{what}", self.driver))
    }

    fn images_json(&self) -> PathBuf {
        self.store("images").join("images.json")
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
    layer: Option<String>,
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
    /// Every image's ID and top layer (empty for none), in the store's order: the order
    /// buildah's cache lookup tries them in.
    pub order: Vec<(String, String)>,
    /// Where each image's config and the layers' parents are read from.
    location: Option<Location>,
    /// Without a location: what podman said of them ([`Images::from_inspect`]).
    configs: HashMap<String, ImageConfig>,
    parents: HashMap<String, String>,
}

/// What buildah's cache lookup reads of one image: its history, its layers' diff IDs, the
/// working directory a relative `COPY` destination is under, and its manifest's format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub history: Vec<HistoryEntry>,
    pub diff_ids: Vec<String>,
    pub working_dir: String,
    /// Docker's image format (schema 2), rather than OCI.
    pub docker: bool,
}

/// One history entry, the fields buildah's `historyEntriesEqual` compares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HistoryEntry {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub empty_layer: bool,
}

impl Images {
    /// None when the store cannot be read (then nothing is predicted cached).
    pub fn read(loc: &Location) -> Option<Images> {
        let text = std::fs::read(loc.images_json()).ok()?;
        let mut images = Images::parse(&text)?;
        images.location = Some(loc.clone());
        Some(images)
    }

    pub fn parse(text: &[u8]) -> Option<Images> {
        let records: Vec<Record> = serde_json::from_slice(text).ok()?;
        let mut images = Images::default();
        for r in records {
            for d in r.digest.into_iter().chain(r.digests) {
                images.by_digest.insert(d, r.id.clone());
            }
            images
                .order
                .push((r.id.clone(), r.layer.unwrap_or_default()));
            images.names.insert(r.id, r.names);
        }
        Some(images)
    }

    /// The same, from `podman image inspect` of every image, where the store's files cannot be
    /// read here (a store inside a VM, as `podman machine` has it). The layer IDs are in the
    /// overlay driver's paths: the top layer's in `UpperDir`, its parents' in `LowerDir`, top
    /// first. With another driver no image has a known top layer, and nothing is predicted
    /// reused from the store.
    pub fn from_inspect(text: &[u8]) -> Option<Images> {
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "PascalCase")]
        struct Inner {
            working_dir: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "PascalCase")]
        struct RootFs {
            layers: Vec<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "PascalCase")]
        struct Driver {
            data: HashMap<String, String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Inspected {
            id: String,
            #[serde(default)]
            digest: Option<String>,
            #[serde(default)]
            repo_tags: Vec<String>,
            #[serde(default)]
            repo_digests: Vec<String>,
            #[serde(default)]
            config: Inner,
            #[serde(default, rename = "RootFS")]
            rootfs: RootFs,
            #[serde(default)]
            history: Vec<HistoryEntry>,
            #[serde(default)]
            manifest_type: String,
            #[serde(default)]
            graph_driver: Driver,
        }
        // `…/overlay/LAYER/diff` → LAYER.
        fn layer(path: &str) -> Option<String> {
            let p = Path::new(path.trim());
            (p.file_name()? == "diff")
                .then(|| p.parent()?.file_name()?.to_str().map(str::to_string))
                .flatten()
        }
        let list: Vec<Inspected> = serde_json::from_slice(text).ok()?;
        let mut images = Images::default();
        for i in list {
            let data = &i.graph_driver.data;
            let top = data
                .get("UpperDir")
                .and_then(|u| layer(u))
                .unwrap_or_default();
            let mut chain: Vec<String> = vec![top.clone()];
            chain.extend(
                data.get("LowerDir")
                    .into_iter()
                    .flat_map(|l| l.split(':'))
                    .filter_map(layer),
            );
            for pair in chain.windows(2).filter(|w| !w[0].is_empty()) {
                images.parents.insert(pair[0].clone(), pair[1].clone());
            }
            if let Some(last) = chain.last().filter(|l| !l.is_empty()) {
                images.parents.entry(last.clone()).or_default();
            }
            let digests = i.digest.into_iter().chain(
                i.repo_digests
                    .iter()
                    .filter_map(|r| r.split_once('@').map(|(_, d)| d.to_string())),
            );
            for d in digests {
                images.by_digest.insert(d, i.id.clone());
            }
            images.configs.insert(
                i.id.clone(),
                ImageConfig {
                    history: i.history,
                    diff_ids: i.rootfs.layers,
                    working_dir: i.config.working_dir,
                    docker: i
                        .manifest_type
                        .contains("application/vnd.docker.distribution.manifest.v2"),
                },
            );
            images.order.push((i.id.clone(), top));
            images.names.insert(i.id, i.repo_tags);
        }
        Some(images)
    }

    /// Each layer's parent (`DRIVER-layers/layers.json`); empty when it cannot be read.
    pub fn layer_parents(&self) -> HashMap<String, String> {
        #[derive(Deserialize)]
        struct Layer {
            id: String,
            #[serde(default)]
            parent: String,
        }
        let Some(loc) = &self.location else {
            return self.parents.clone();
        };
        let mut out = HashMap::new();
        let layers = loc.store("layers");
        for file in ["layers.json", "volatile-layers.json"] {
            let Ok(text) = std::fs::read(layers.join(file)) else {
                continue;
            };
            let list: Vec<Layer> = serde_json::from_slice(&text).unwrap_or_default();
            out.extend(list.into_iter().map(|l| (l.id, l.parent)));
        }
        out
    }

    /// An image's config and manifest format, read from the store's files (the config is the
    /// big-data item named by the image ID, in a file named `=` + its base64).
    pub fn config(&self, id: &str) -> Option<ImageConfig> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Inner {
            #[serde(rename = "WorkingDir")]
            working_dir: Option<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct RootFs {
            diff_ids: Vec<String>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Config {
            config: Option<Inner>,
            rootfs: RootFs,
            history: Vec<HistoryEntry>,
        }
        let Some(loc) = &self.location else {
            return self.configs.get(id).cloned();
        };
        let dir = loc.store("images").join(id);
        let name = format!("={}", base64(format!("sha256:{id}").as_bytes()));
        let c: Config = serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()?;
        let manifest = std::fs::read(dir.join("manifest")).unwrap_or_default();
        let inner = c.config.unwrap_or_default();
        Some(ImageConfig {
            history: c.history,
            diff_ids: c.rootfs.diff_ids,
            working_dir: inner.working_dir.unwrap_or_default(),
            docker: String::from_utf8_lossy(&manifest)
                .contains("application/vnd.docker.distribution.manifest.v2"),
        })
    }

    pub fn exists(&self, id: &str) -> bool {
        self.names.contains_key(id)
    }

    /// An image's top layer (empty for an image without layers).
    pub fn top_layer(&self, id: &str) -> Option<&str> {
        self.order
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, top)| top.as_str())
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
        if crate::engine::is_full_id(r) {
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

/// Standard base64 with padding, as Go's `base64.StdEncoding` names big-data files.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn big_data_files_are_named_in_base64() {
        assert_eq!(
            super::base64(b"sha256:ee8d3f135f1f1473e7c9d003c7ad6b4c9bf17d8991db08ff623cf6ba33500a4c"),
            "c2hhMjU2OmVlOGQzZjEzNWYxZjE0NzNlN2M5ZDAwM2M3YWQ2YjRjOWJmMTdkODk5MWRiMDhmZjYyM2NmNmJhMzM1MDBhNGM="
        );
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
    }

    use super::*;

    #[test]
    fn podman_inspect_gives_layers_parents_and_configs() {
        let dir = |l: &str| format!("/var/lib/containers/storage/overlay/{l}/diff");
        let text = serde_json::json!([
            {
                "Id": "b".repeat(64),
                "Digest": "sha256:d1",
                "RepoTags": ["localhost/app:1"],
                "RepoDigests": ["localhost/app@sha256:d2"],
                "Config": {"WorkingDir": "/srv"},
                "RootFS": {"Type": "layers", "Layers": ["sha256:x", "sha256:y"]},
                "History": [{"created_by": "/bin/sh -c #(nop) COPY file:1 in / "}, {"created_by": "/bin/sh -c #(nop) COPY file:2 in / ", "empty_layer": false}],
                "ManifestType": "application/vnd.docker.distribution.manifest.v2+json",
                "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": dir("top"), "LowerDir": format!("{}:{}", dir("mid"), dir("low"))}}
            },
            {"Id": "c".repeat(64), "GraphDriver": {"Name": "overlay", "Data": {}}}
        ])
        .to_string();
        let images = Images::from_inspect(text.as_bytes()).unwrap();
        let b = "b".repeat(64);
        assert_eq!(images.top_layer(&b), Some("top"));
        assert_eq!(images.top_layer(&"c".repeat(64)), Some(""));
        let parents = images.layer_parents();
        assert_eq!(parents["top"], "mid");
        assert_eq!(parents["mid"], "low");
        assert_eq!(parents["low"], "");
        assert_eq!(images.resolve("app:1").as_deref(), Some(b.as_str()));
        assert_eq!(images.names(&b), ["localhost/app:1"]);
        let c = images.config(&b).unwrap();
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.diff_ids, ["sha256:x", "sha256:y"]);
        assert_eq!(c.history.len(), 2);
        assert!(c.docker);
        assert_eq!(images.by_digest.get("sha256:d2"), Some(&b));
    }

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
