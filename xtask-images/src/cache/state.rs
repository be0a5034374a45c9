//! What earlier builds left: for every step key, the image podman made (or reused) for it, and
//! per image the last builds' steps with their inputs, to explain the next rebuild. Lives in
//! the project's state directory (`crate::statedir`), never in the project; every write merges
//! under a lock and renames into place, so two runs at once lose nothing and a reader never
//! sees half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::steps::{FileLine, Input, Step};
use super::storage::{Images, Location};
use crate::fsx;

/// Builds remembered per image for explanations (every key is remembered while its image
/// exists).
const RECORDS: usize = 10;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub storage: Option<Location>,
    /// Step key → image ID.
    #[serde(default)]
    pub steps: BTreeMap<String, String>,
    /// Final images: ID → what `build` reports without asking podman.
    #[serde(default)]
    pub finals: BTreeMap<String, Final>,
    /// Image name → its latest builds, newest first.
    #[serde(default)]
    pub builds: BTreeMap<String, Vec<Record>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Final {
    pub size: u64,
    pub platform: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Seconds since the epoch.
    pub at: i64,
    pub steps: Vec<Step>,
}

/// The files of one project's records and lock.
pub struct Dir {
    pub path: PathBuf,
    /// `--dry-run`: every write is skipped.
    pub read_only: bool,
}

impl Dir {
    fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }

    fn listing(&self, digest: &str) -> PathBuf {
        self.path.join("listings").join(digest)
    }

    /// The stat cache of one context directory.
    pub fn hashes(&self, context: &Path) -> PathBuf {
        let name: String = context
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.path.join("hashes").join(name)
    }

    /// What `check`'s secret scan found per file of one context directory.
    pub fn secrets(&self, context: &Path) -> PathBuf {
        let h = self.hashes(context);
        let name = h.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        self.path.join("secrets").join(name)
    }

    /// The state, or an empty one when there is none or it cannot be read (it is a cache).
    pub fn load(&self) -> State {
        std::fs::read(self.state())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The files a `COPY` step's listing digest stood for, if remembered.
    pub fn listing_files(&self, digest: &str) -> Option<Vec<FileLine>> {
        let b = std::fs::read(self.listing(digest)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Adds one build: the image each step got, and the build's record. Keys whose image is
    /// gone from storage are dropped on the way.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        name: &str,
        steps: &[Step],
        ids: &[Option<String>],
        image: (String, Final),
        storage: &Location,
        images: &Images,
        at: i64,
    ) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        // Listings are written under the lock too, so another run's pruning never removes
        // one that this run is about to refer to.
        let _lock = fsx::lock(&self.path.join("state.lock"))?;
        for s in steps {
            if let Input::Files { listing, files } = &s.input {
                let path = self.listing(listing);
                if !path.exists() {
                    fsx::write_atomic(&path, serde_json::to_vec(files)?)?;
                }
            }
        }
        let mut st = self.load();
        // A reused step's layer was made from the bind-mounted files of its first build: keep
        // those, so a later check can tell the layer is stale. A step podman made anew (its
        // image changed) takes today's.
        let mut steps = steps.to_vec();
        for (s, id) in steps.iter_mut().zip(ids) {
            let reused = id.is_some() && st.steps.get(&s.key) == id.as_ref();
            if let Input::Run { binds, .. } = &mut s.input {
                let earlier = st
                    .builds
                    .values()
                    .flatten()
                    .flat_map(|r| &r.steps)
                    .find_map(|o| match &o.input {
                        Input::Run { binds: b, .. } if o.key == s.key => Some(b.clone()),
                        _ => None,
                    });
                if let Some(b) = earlier.filter(|_| reused && !binds.is_empty()) {
                    *binds = b;
                }
            }
        }
        st.storage = Some(storage.clone());
        for (s, id) in steps.iter().zip(ids) {
            if let Some(id) = id {
                st.steps.insert(s.key.clone(), id.clone());
            }
        }
        st.steps.retain(|_, id| images.exists(id));
        st.finals.insert(image.0, image.1);
        st.finals.retain(|id, _| images.exists(id));
        let list = st.builds.entry(name.to_string()).or_default();
        list.insert(0, Record { at, steps });
        list.truncate(RECORDS);
        fsx::write_atomic(&self.state(), serde_json::to_vec(&st)?)?;
        self.prune_listings(&st);
        Ok(())
    }

    /// Deletes the listings no remembered build refers to any more (they only serve
    /// explanations, and a large context's listing is big).
    fn prune_listings(&self, st: &State) {
        let kept: std::collections::HashSet<&str> = st
            .builds
            .values()
            .flatten()
            .flat_map(|r| &r.steps)
            .filter_map(|s| match &s.input {
                Input::Files { listing, .. } => Some(listing.as_str()),
                _ => None,
            })
            .collect();
        let Ok(dir) = std::fs::read_dir(self.path.join("listings")) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            // Temporary files of a concurrent writer start with `.`; leave them.
            let name = name.to_string_lossy();
            if !name.starts_with('.') && !kept.contains(name.as_ref()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The machine's salt for secret build-argument hashes, made once from the system's random
/// source and kept in the state base (CI that caches the state directory keeps it too). Under
/// `--dry-run`, or when it can't be kept, a salt for this run only: nothing is recorded then.
pub fn salt(state: &crate::statedir::StateDir) -> [u8; 32] {
    let path = state.base.join("salt");
    if let Some(s) = std::fs::read(&path)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    {
        return s;
    }
    let mut s = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut s);
    }
    if s == [0u8; 32] {
        // No random source: the clock and pid at least differ between machines.
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        s.copy_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes()));
    }
    if !state.read_only && fsx::write_atomic(&path, s).is_ok() {
        // Another run may have written its own first: everyone uses the one that stayed.
        if let Some(kept) = std::fs::read(&path)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            return kept;
        }
    }
    s
}

pub fn dir(state: &crate::statedir::StateDir) -> Dir {
    Dir {
        path: state.project.clone(),
        read_only: state.read_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::steps::Input;

    fn step(key: &str) -> Step {
        Step {
            stage: 1,
            stages: 1,
            step: 2,
            steps: 2,
            instruction: "CMD x".into(),
            key: key.into(),
            input: Input::Text,
            history: Default::default(),
        }
    }

    #[test]
    fn runs_recording_at_once_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir {
            path: tmp.path().join("state"),
            read_only: false,
        };
        let ids: Vec<String> = (0..16).map(|i| format!("{i:064x}")).collect();
        let store = format!(
            "[{}]",
            ids.iter()
                .map(|id| format!("{{\"id\":\"{id}\"}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let images = Images::parse(store.as_bytes()).unwrap();
        let loc = Location {
            graphroot: "/nowhere".into(),
            driver: "overlay".into(),
        };
        std::thread::scope(|s| {
            for (i, id) in ids.iter().enumerate() {
                let (dir, images, loc) = (&dir, &images, &loc);
                s.spawn(move || {
                    let fin = Final {
                        size: i as u64,
                        platform: "linux/amd64".into(),
                    };
                    dir.record(
                        &format!("image{}", i % 2),
                        &[step(&format!("key{i}"))],
                        &[Some(id.clone())],
                        (id.clone(), fin),
                        loc,
                        images,
                        i as i64,
                    )
                    .unwrap();
                });
            }
        });
        let st = dir.load();
        assert_eq!(st.steps.len(), 16);
        assert_eq!(st.finals.len(), 16);
        assert_eq!(st.builds["image0"].len() + st.builds["image1"].len(), 16);
        // Keys whose image is gone are dropped by the next record.
        let fewer = Images::parse(format!("[{{\"id\":\"{}\"}}]", ids[0]).as_bytes()).unwrap();
        dir.record(
            "image0",
            &[],
            &[],
            (
                ids[0].clone(),
                Final {
                    size: 0,
                    platform: String::new(),
                },
            ),
            &loc,
            &fewer,
            99,
        )
        .unwrap();
        assert_eq!(dir.load().steps.len(), 1);
    }
}
