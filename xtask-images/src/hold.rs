//! This machine's copy of a rollback hold (`publish::HOLD_TAG` is the one every machine sees):
//! while a release is held, a local `build` of it or of an older version does not re-point
//! `NAME:latest` (nor `X`, `X.Y`) at what was rolled back.

use std::collections::BTreeMap;

use crate::statedir::StateDir;

fn file(state: &StateDir) -> std::path::PathBuf {
    state.project.join("holds.json")
}

fn read(state: &StateDir) -> BTreeMap<String, String> {
    std::fs::read(file(state))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The release held for `image`, if a rollback on this machine recorded one.
pub fn local(state: &StateDir, image: &str) -> Option<semver::Version> {
    read(state)
        .get(image)
        .and_then(|v| semver::Version::parse(v).ok())
}

/// Records (`Some`) or lifts (`None`) the hold of `image`. A failure to write costs only the
/// local guard; the destination's hold tag still holds.
pub fn set_local(state: &StateDir, image: &str, held: Option<&semver::Version>) {
    if state.read_only {
        return;
    }
    let mut all = read(state);
    match held {
        Some(v) => all.insert(image.to_string(), v.to_string()),
        None => all.remove(image),
    };
    let _ = serde_json::to_vec(&all).map(|j| crate::fsx::write_atomic(&file(state), j));
}
