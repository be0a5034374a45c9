//! The buildah working containers an interrupted `podman build` leaves behind (one per step in
//! flight, named `…working-container…`). A build records what existed when it started; on
//! interrupt the new ones are removed at once, and `clean` removes those of builds that were
//! killed outright, once no build of the project is running.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::exec::Sh;
use crate::statedir::StateDir;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Working {
    pub id: String,
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// Every working container in the engine's store (podman only: docker has none).
pub fn list(sh: &Sh) -> Vec<Working> {
    list_strict(sh).unwrap_or_default()
}

fn parse(json: &str) -> Vec<Working> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    v.iter()
        .filter_map(|c| {
            let name = c["Names"].as_array()?.first()?.as_str()?.to_string();
            name.contains("working-container").then(|| Working {
                id: c["Id"].as_str().unwrap_or_default().to_string(),
                name,
                created: c["Created"].as_i64().unwrap_or(0),
            })
        })
        .collect()
}

pub fn remove(sh: &Sh, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    // Best effort: what can't be removed now, `clean` finds again.
    let _ = sh.run(
        &Cmd::new("podman")
            .args(["rm", "--force"])
            .args(ids.iter().cloned()),
    );
}

/// Removes the working containers created since `started` that were not in `before`: after
/// an interrupt, while the engine may still be tearing its build down (its store lock held,
/// a container still stopping), so it looks again until none is left, for a few seconds.
pub fn remove_new(sh: &Sh, before: &[String], started: i64) {
    if other_builds_running() {
        eprintln!(
            "note: another build is running on this machine: the working containers are left for `cargo xtask clean`"
        );
        return;
    }
    for _ in 0..25 {
        let new: Vec<String> = list_strict(sh)
            .map(|all| {
                all.into_iter()
                    .filter(|w| w.created >= started - 1 && !before.contains(&w.id))
                    .map(|w| w.id)
                    .collect()
            })
            .unwrap_or_else(|| vec![String::new()]);
        if new.is_empty() {
            return;
        }
        let real: Vec<String> = new.into_iter().filter(|i| !i.is_empty()).collect();
        remove(sh, &real);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// [`list`], but `None` when podman could not answer (busy), rather than "nothing".
fn list_strict(sh: &Sh) -> Option<Vec<Working>> {
    let cmd = Cmd::new("podman").args(["ps", "--all", "--external", "--format", "json"]);
    sh.read(&cmd).ok().map(|out| parse(&out))
}

/// Whether some `podman build` or buildah process other than this one runs on the machine:
/// working containers carry no owner, so none is removed while one might be in use.
pub fn other_builds_running() -> bool {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        if pid == me {
            return false;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let program = args
            .first()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        let builder = program.ends_with("podman") || program.ends_with("buildah");
        builder && args.iter().skip(1).any(|a| *a == b"build" || *a == b"bud")
    })
}

/// A build in progress, recorded in the state directory until it ends.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pid: u32,
    started: i64,
    before: Vec<String>,
}

pub struct InProgress {
    path: Option<PathBuf>,
}

fn dir(state: &StateDir) -> PathBuf {
    state.project.join("building")
}

/// Records that a build starts now, with the working containers that exist already.
pub fn begin(state: &StateDir, sh: &Sh, now: i64) -> (InProgress, Vec<String>) {
    let before: Vec<String> = list(sh).into_iter().map(|w| w.id).collect();
    if state.read_only {
        return (InProgress { path: None }, before);
    }
    let path = dir(state).join(format!("{}.json", std::process::id()));
    let rec = Record {
        pid: std::process::id(),
        started: now,
        before: before.clone(),
    };
    let written = serde_json::to_vec(&rec)
        .ok()
        .and_then(|j| crate::fsx::write_atomic(&path, j).ok());
    (
        InProgress {
            path: written.map(|_| path),
        },
        before,
    )
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether process `pid` still runs.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The working containers this project's killed builds left: created after such a build
/// started, not there before it. Nothing while one of its builds still runs (its containers
/// are in use).
pub fn leftovers(state: &StateDir, sh: &Sh) -> Vec<Working> {
    let Ok(rd) = std::fs::read_dir(dir(state)) else {
        return Vec::new();
    };
    let records: Vec<(PathBuf, Record)> = rd
        .flatten()
        .filter_map(|e| {
            let rec = serde_json::from_slice::<Record>(&std::fs::read(e.path()).ok()?).ok()?;
            Some((e.path(), rec))
        })
        .collect();
    if records
        .iter()
        .any(|(_, r)| r.pid != std::process::id() && alive(r.pid))
        || other_builds_running()
    {
        return Vec::new();
    }
    let all = list(sh);
    let mut out: Vec<Working> = Vec::new();
    for (_, r) in &records {
        out.extend(
            all.iter()
                .filter(|w| w.created >= r.started && !r.before.contains(&w.id))
                .filter(|w| !out.iter().any(|o| o.id == w.id))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    out
}

/// Forgets the records of builds that are over (after their leftovers went).
pub fn forget_finished(state: &StateDir) {
    let Ok(rd) = std::fs::read_dir(dir(state)) else {
        return;
    };
    for e in rd.flatten() {
        let pid = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".json")
            .parse::<u32>()
            .ok();
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_containers_by_name() {
        let json = r#"[{"Id":"a1","Names":["41e913967558-working-container"],"Created":5},
                       {"Id":"b2","Names":["web"],"Created":6},
                       {"Id":"c3","Names":["working-container-1"],"Created":7}]"#;
        let w = parse(json);
        assert_eq!(
            w.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            ["a1", "c3"]
        );
    }
}
