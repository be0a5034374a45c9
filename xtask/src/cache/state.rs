//! What earlier builds left: for every step key, the image podman made (or reused) for it, and
//! per image the last builds' steps with their inputs, to explain the next rebuild. Lives under
//! `target/xtask/`; every write merges under a lock and renames into place, so two runs at
//! once lose nothing and a reader never sees half a file.

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

/// The files of one build's records and lock.
pub struct Dir(pub PathBuf);

impl Dir {
    fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }

    fn listing(&self, digest: &str) -> PathBuf {
        self.0.join("listings").join(digest)
    }

    /// The stat cache of one context directory.
    pub fn hashes(&self, context: &Path) -> PathBuf {
        let name: String = context
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.0.join("hashes").join(name)
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
        for s in steps {
            if let Input::Files { listing, files } = &s.input {
                let path = self.listing(listing);
                if !path.exists() {
                    fsx::write_atomic(&path, serde_json::to_vec(files)?)?;
                }
            }
        }
        let _lock = fsx::lock(&self.0.join("state.lock"))?;
        let mut st = self.load();
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
        list.insert(
            0,
            Record {
                at,
                steps: steps.to_vec(),
            },
        );
        list.truncate(RECORDS);
        fsx::write_atomic(&self.state(), serde_json::to_vec(&st)?)
    }
}

pub fn dir(root: &Path) -> Dir {
    Dir(root.join("target/xtask"))
}
