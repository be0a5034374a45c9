//! Cache keys from hashed inputs: which of a build's steps podman will reuse, why the others
//! are rebuilt, and whether a build would change nothing at all.

pub mod foreign;
pub mod hash;
pub mod predict;
pub mod state;
pub mod steps;
pub mod storage;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::engine::EngineKind;
use crate::{context, dockerfile, input_error};
pub use predict::Action;
use predict::{Known, Predicted};
use state::{Dir, State};
use steps::Step;
use storage::Images;

/// What one image's keys are computed from, as the build decided it.
#[derive(Debug, Clone)]
pub struct KeyInputs {
    pub name: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub platform: Option<String>,
    /// Built in Docker's image format (`--format docker`): podman reuses no layer built in
    /// the OCI format for it, so it enters every stage's key.
    pub docker_format: bool,
    /// The layer cache is used at all (not `--no-cache`, not several platforms).
    pub use_cache: bool,
    /// Full names the image must carry, `name:tag`.
    pub refs: Vec<String>,
    /// The project's own images this one builds from, by the reference the Dockerfile writes.
    pub bases: BTreeMap<String, Base>,
}

/// A base image this project builds, as this run has it.
#[derive(Debug, Clone)]
pub struct Base {
    pub name: String,
    /// `localhost/NAME:TAG`, what the build is given.
    pub local: String,
    /// Its image ID this run: built or found up to date, or `predict::REBUILT…` for one a
    /// build would make first. None: looked up by `local`.
    pub id: Option<String>,
}

/// One image's plan: its key, what a build must do, and each step's prediction.
#[derive(Debug, Serialize)]
pub struct ImagePlan {
    pub name: String,
    /// One platform's plan of a manifest list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub key: String,
    pub action: Action,
    /// The image that already has this key, for `up-to-date` and `retag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub steps: Vec<PlannedStep>,
    #[serde(skip)]
    pub keyed: Vec<Step>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub stage: usize,
    pub step: usize,
    pub instruction: String,
    pub key: String,
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What earlier builds left and what storage holds now, read once per command.
pub struct Memory {
    pub dir: Dir,
    /// Keys the hash that stands in for secret build-argument values (`state::salt`).
    pub salt: [u8; 32],
    pub state: State,
    pub images: Option<Images>,
}

impl Memory {
    pub fn load(state_dir: &crate::statedir::StateDir) -> Memory {
        let dir = state::dir(state_dir);
        let mut state = dir.load();
        if state.storage.is_none() {
            state.storage = std::fs::read(dir.path.join("storage.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        }
        let images = state
            .storage
            .as_ref()
            .filter(|_| !through_podman())
            .and_then(Images::read);
        let salt = state::salt(state_dir);
        Memory {
            dir,
            state,
            images,
            salt,
        }
    }

    /// Asks podman where its images are when no earlier build recorded it (once per project:
    /// the next build records it), so even a first plan resolves base images. Where the
    /// store's files cannot be read, podman is asked for the images themselves.
    pub fn locate(&mut self, sh: &crate::exec::Sh) -> Result<()> {
        if self.state.storage.is_none() {
            let info =
                sh.read(&crate::cmd::Cmd::new("podman").args(["info", "--format", "json"]))?;
            let loc = storage::Location::from_info(&info).ok_or_else(|| {
                anyhow::anyhow!("`podman info` did not say where images are stored")
            })?;
            // Remembered apart from the state, so a `plan` (which records nothing) asks only once.
            if !self.dir.read_only {
                let _ = serde_json::to_vec(&loc)
                    .map(|j| crate::fsx::write_atomic(&self.dir.path.join("storage.json"), j));
            }
            self.state.storage = Some(loc);
        }
        if self.images.is_none() {
            self.images = self.store_now(sh);
        }
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        self.images.as_ref().is_some_and(|i| i.exists(id))
    }

    /// The store as it is now (after a build): its files, else podman's own answer.
    pub fn store_now(&self, sh: &crate::exec::Sh) -> Option<Images> {
        self.state
            .storage
            .as_ref()
            .filter(|_| !through_podman())
            .and_then(Images::read)
            .or_else(|| inspect_store(sh))
    }
}

/// `XTASK_STORE=podman`: read the image store through podman even where its files are
/// readable (how the fallback is tested, and a way out should a podman lay its files out
/// otherwise).
fn through_podman() -> bool {
    std::env::var("XTASK_STORE").is_ok_and(|v| v == "podman")
}

/// Every image, from `podman image inspect`: two podman calls instead of reading two files.
/// Asked again when an image goes between the listing and the inspect.
fn inspect_store(sh: &crate::exec::Sh) -> Option<Images> {
    let podman = || crate::cmd::Cmd::new("podman");
    for _ in 0..3 {
        let listed = sh
            .read(&podman().args(["images", "--all", "--no-trunc", "--quiet"]))
            .ok()?;
        let mut ids: Vec<String> = Vec::new();
        for l in listed
            .lines()
            .map(|l| l.trim().trim_start_matches("sha256:"))
        {
            if !l.is_empty() && !ids.iter().any(|i| i == l) {
                ids.push(l.to_string());
            }
        }
        if ids.is_empty() {
            return Some(Images::default());
        }
        let out = sh
            .probe(&podman().args(["image", "inspect"]).args(ids))
            .ok()?;
        if out.success() {
            return Images::from_inspect(out.stdout.as_bytes());
        }
    }
    None
}

/// Build arguments whose names look secret, with each value replaced by a keyed hash: keys and
/// reasons still see a change, and the records never hold the value (nor anything that can be
/// checked against a guess without the machine's salt).
pub fn mask_secrets(args: &BTreeMap<String, String>, salt: &[u8]) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    args.iter()
        .map(|(k, v)| {
            if !crate::secrets::secret_name(k) {
                return (k.clone(), v.clone());
            }
            let mut h = Sha256::new();
            h.update(salt);
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            let hex: String = h.finalize()[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (k.clone(), format!("{}{hex}", predict::SECRET_PREFIX))
        })
        .collect()
}

/// The image an earlier build made from exactly these inputs but other labels (another
/// version or commit): the newest whose steps up to the labels have the keys this build would
/// have, and that is still in storage. For `test` after an edit that only touched the smoke
/// tests: the version moved, the image did not.
pub fn same_content(plan: &ImagePlan, labels: usize, mem: &Memory) -> Option<String> {
    let content = plan.keyed.len().checked_sub(labels + 1)?;
    let key = &plan.keyed[content].key;
    mem.state
        .builds
        .get(&plan.name)?
        .iter()
        .filter(|r| r.steps.iter().any(|s| &s.key == key))
        .filter_map(|r| mem.state.steps.get(&r.steps.last()?.key))
        .find(|id| mem.exists(id))
        .cloned()
}

/// The key of a build's last step before the labels the tool adds (`labels` of them).
pub fn content_key(plan: &ImagePlan, labels: usize) -> Option<&str> {
    let i = plan.keyed.len().checked_sub(labels + 1)?;
    Some(plan.keyed[i].key.as_str())
}

/// The image of that step, if an earlier build made it and storage still has it: what images
/// built from this one start from, so a new commit (new labels, same content) leaves them be.
pub fn content_image(plan: &ImagePlan, labels: usize, mem: &Memory) -> Option<String> {
    let key = content_key(plan, labels)?;
    mem.state
        .steps
        .get(key)
        .filter(|id| mem.exists(id))
        .cloned()
}

/// What an image built from `plan`'s is keyed on before a build: the content image when it
/// exists, else a stand-in derived from the content's key (`predict::REBUILT`).
pub fn stand_in(plan: &ImagePlan, labels: usize, mem: &Memory) -> String {
    content_image(plan, labels, mem).unwrap_or_else(|| {
        format!(
            "{}{}:{}",
            predict::REBUILT,
            plan.name,
            content_key(plan, labels).unwrap_or(&plan.key)
        )
    })
}

/// Fails when the context would send what this tool wrote into the project (released OCI
/// layouts): each release would otherwise carry all the earlier ones.
pub fn refuse_tool_output(image: &str, scan: &context::Scan) -> Result<()> {
    let Some((dir, sent)) = crate::coverage::tool_output_sent(&scan.entries)
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    let ignore = scan
        .ignore
        .as_ref()
        .map_or(".dockerignore", |i| i.display.as_str());
    Err(input_error!(
        "image `{image}`: the build context would send `{dir}/` ({} files, {}), this tool's own output; add `{dir}` to {ignore}",
        sent.len(),
        crate::size::human(sent.iter().map(|e| e.size).sum())
    ))
}

/// Computes the keys of one image's build and predicts it.
pub fn plan_image(
    root: &Path,
    engine: EngineKind,
    k: &KeyInputs,
    mem: &Memory,
    now_ns: i64,
) -> Result<ImagePlan> {
    let text = dockerfile::read_text(&root.join(&k.dockerfile))
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", k.dockerfile.display()))?;
    let df = dockerfile::parse(&text)
        .and_then(dockerfile::stages)
        .map_err(|e| input_error!("{}:{}: {}", k.dockerfile.display(), e.line, e.message))?;
    let ignore = context::read_ignore(root, &k.context, &k.dockerfile, engine)?;
    if let Some(i) = ignore.as_ref().filter(|i| !i.errors.is_empty()) {
        return Err(input_error!(
            "the engine refuses lines of `{}`:\n{}",
            i.display,
            context::describe_errors(&i.display, &i.errors)
        ));
    }
    let scan = context::scan(root, &k.context, ignore, engine)?;
    refuse_tool_output(&k.name, &scan)?;
    // Everything the engine copies: files and symlinks, and empty directories and special
    // files (a new empty directory makes podman miss its cache too).
    let mut copied: Vec<context::Entry> = scan.entries.iter().chain(&scan.extra).cloned().collect();
    if !scan.extra.is_empty() {
        copied.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    }
    let facts = hash::digests(
        &root.join(&k.context),
        &copied,
        (!mem.dir.read_only)
            .then(|| mem.dir.hashes(&k.context))
            .as_deref(),
        now_ns,
    )?;
    let variant = match (&k.platform, k.docker_format) {
        (p, false) => p.clone(),
        (p, true) => Some(format!("{}|format=docker", p.as_deref().unwrap_or(""))),
    };
    let resolve = |r: &str| match k.bases.get(r) {
        Some(Base { id: Some(id), .. }) => Some(id.clone()),
        Some(b) => mem.images.as_ref().and_then(|i| i.resolve(&b.local)),
        None => mem.images.as_ref().and_then(|i| i.resolve(r)),
    };
    let keyed = steps::steps(&steps::Inputs {
        dockerfile: &df,
        target: k.target.as_deref(),
        build_args: &{
            let mut args = crate::dockerfile::automatic_args(k.platform.as_deref());
            args.extend(mask_secrets(&k.build_args, &mem.salt));
            args
        },
        labels: &k.labels,
        platform: variant.as_deref(),
        entries: &copied,
        facts: &facts,
        image_id: &resolve,
    })
    .map_err(|e| input_error!("image `{}`: {e}", k.name))?;
    // `COPY --from=word` that names no stage and no local image: podman would try to pull
    // `docker.io/library/word` and fail late; a typo of a stage name is the likely cause.
    for s in &keyed {
        if let steps::Input::FromImage { image, id: None } = &s.input {
            if !image.contains(['/', ':', '@', '.']) {
                return Err(input_error!(
                    "{}: `{}`: no stage is named `{image}`, and no image `{image}` is in local storage; name a stage defined above it, or write the image in full (`registry/name:tag`)",
                    k.dockerfile.display(),
                    s.instruction
                ));
            }
        }
    }
    let records = mem.state.builds.get(&k.name).map_or(&[][..], Vec::as_slice);
    let exists = |id: &str| mem.exists(id);
    let listing = |d: &str| mem.dir.listing_files(d);
    let known = Known {
        state: &mem.state,
        exists: &exists,
        listing: &listing,
        records,
    };
    let mut predicted = predict::predict(&keyed, &known, k.use_cache);
    if let (true, EngineKind::Podman, Some(images)) = (k.use_cache, engine, &mem.images) {
        let context_dir = root.join(&k.context);
        let recorded: Vec<Option<String>> = keyed
            .iter()
            .zip(&predicted)
            .map(|(s, p)| {
                p.cached
                    .then(|| mem.state.steps.get(&s.key).cloned())
                    .flatten()
            })
            .collect();
        let reused = reused_from_store(
            &keyed,
            images,
            k.docker_format,
            &context_dir,
            &scan.matcher,
            &copied,
            &facts,
            &mem.dir,
            &recorded,
        );
        foreign::merge(&keyed, &mut predicted, &reused);
    }
    let names = |id: &str| {
        mem.images
            .as_ref()
            .map(|i| i.names(id).to_vec())
            .unwrap_or_default()
    };
    let (action, id) = if k.use_cache {
        predict::action(&keyed, &known, &k.refs, &names)
    } else {
        (Action::Build, None)
    };
    Ok(ImagePlan {
        name: k.name.clone(),
        platform: None,
        key: keyed.last().map(|s| s.key.clone()).unwrap_or_default(),
        action,
        id,
        steps: keyed
            .iter()
            .zip(predicted)
            .map(
                |(
                    s,
                    Predicted {
                        cached,
                        reason,
                        note,
                    },
                )| PlannedStep {
                    stage: s.stage,
                    step: s.step,
                    instruction: s.instruction.clone(),
                    key: s.key.clone(),
                    cached,
                    reason,
                    note,
                },
            )
            .collect(),
        keyed,
    })
}

/// What podman's store holds for each step, whoever built it ([`foreign::reuse`]), with the
/// `COPY` summaries computed from the context: from the files' digests first (a fingerprint),
/// and by reading the files only for a fingerprint not seen before (`summaries.json`).
#[allow(clippy::too_many_arguments)]
fn reused_from_store(
    keyed: &[Step],
    images: &Images,
    docker: bool,
    context_dir: &Path,
    matcher: &context::Matcher,
    copied: &[context::Entry],
    facts: &[hash::Fact],
    dir: &Dir,
    recorded: &[Option<String>],
) -> Vec<Option<String>> {
    use std::cell::{Cell, OnceCell, RefCell};
    use std::collections::HashMap;
    // Only a `COPY` whose line must be computed needs these: a plan whose steps the records
    // already know reads neither /etc/passwd nor summaries.json, nor indexes the files.
    let owners = OnceCell::new();
    let digests: OnceCell<HashMap<&str, [u8; 32]>> = OnceCell::new();
    let known = |rel: &str| {
        digests
            .get_or_init(|| {
                copied
                    .iter()
                    .zip(facts)
                    .map(|(e, f)| (e.path.as_str(), f.digest))
                    .collect()
            })
            .get(rel)
            .copied()
    };
    let file = dir.path.join("summaries.json");
    let seen: OnceCell<RefCell<BTreeMap<String, String>>> = OnceCell::new();
    let seen = || {
        seen.get_or_init(|| {
            RefCell::new(
                std::fs::read(&file)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default(),
            )
        })
    };
    let added = Cell::new(false);
    let excluded = |rel: &str| matcher.decisive(rel).is_some_and(|r| !r.exception);
    let enters = |rel: &str| matcher.enters_excluded_dir(rel);
    let summarize = |h: &steps::History, workdir: &str| -> Option<String> {
        let steps::History::Copy {
            sources,
            dest,
            chown,
            chmod,
            ..
        } = h
        else {
            return None;
        };
        let workdir = steps::absolute("/", workdir);
        let target = steps::absolute(&workdir, dest);
        let dest_file = (!dest.ends_with('/') && target != "/" && target != workdir)
            .then(|| target.rsplit('/').next().unwrap_or("").to_string());
        let copy = summary::Copy {
            context: context_dir,
            sources,
            chown: *chown,
            chmod: *chmod,
            dest_file,
            excluded: &excluded,
            enters: &enters,
        };
        let owners = owners.get_or_init(summary::Owners::of_host);
        let print = summary::summary(&copy, owners, &summary::Content::Known(&known))?;
        if let Some(s) = seen().borrow().get(&print) {
            return Some(s.clone());
        }
        let real = summary::summary(&copy, owners, &summary::Content::Read)?;
        seen().borrow_mut().insert(print, real.clone());
        added.set(true);
        Some(real)
    };
    let reused = foreign::reuse(
        keyed,
        &foreign::Store {
            images,
            docker,
            summary: &summarize,
            recorded,
        },
    );
    if added.get() && !dir.read_only {
        let mut seen = seen().take();
        // A bound on what old contexts leave: start over rather than grow without end.
        if seen.len() > 4096 {
            seen.clear();
        }
        let _ = serde_json::to_vec(&seen).map(|j| crate::fsx::write_atomic(&file, j));
    }
    reused
}

/// One step as podman reported it while building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub stage: usize,
    pub step: usize,
    /// N of `STEP n/N`.
    pub of: usize,
    pub cached: bool,
    /// Full, or the 11-digit short ID podman prints for a step it ran.
    pub id: Option<String>,
}

/// Reads `[s/S] STEP n/N: …`, `--> Using cache ID` and `--> ID` lines of `podman build`.
pub fn parse_build_output(text: &str) -> Vec<Observed> {
    let mut out: Vec<Observed> = Vec::new();
    for line in text.lines() {
        let l = line.trim_end();
        let (stage, rest) = match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((s, rest)) => (
                s.split('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                rest,
            ),
            None => (1, l),
        };
        if let Some(r) = rest.strip_prefix("STEP ") {
            let nums = r.split(':').next().unwrap_or("");
            if let Some((n, of)) = nums
                .split_once('/')
                .and_then(|(n, of)| Some((n.parse().ok()?, of.parse().ok()?)))
            {
                out.push(Observed {
                    stage,
                    step: n,
                    of,
                    cached: false,
                    id: None,
                });
            }
            continue;
        }
        let Some(cur) = out.last_mut().filter(|o| o.id.is_none()) else {
            continue;
        };
        let hexy = |s: &str| s.len() >= 11 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Some(id) = l.strip_prefix("--> Using cache ").filter(|s| hexy(s)) {
            cur.cached = true;
            cur.id = Some(id.to_string());
        } else if let Some(id) = l.strip_prefix("--> ").filter(|s| hexy(s)) {
            cur.id = Some(id.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_podman_build_output() {
        let text = "[1/2] STEP 1/3: FROM scratch AS base
[1/2] STEP 2/3: COPY busybox /bin/busybox
--> Using cache e17133dc0ad1fdcdabc407e6fbffc201d7f43d547219537aba1dc23662f9bf48
--> e17133dc0ad
[1/2] STEP 3/3: RUN [\"/bin/busybox\", \"echo\", \"--> not an id\"]
--> not an id
--> aa2c9ae97e6
[2/2] STEP 1/2: FROM scratch
[2/2] STEP 2/2: CMD [\"/x\"]
[2/2] COMMIT pexp:1
--> 2fe8b6891a5
Successfully tagged localhost/pexp:1
2fe8b6891a5602f4c3239990cf0f7a79e3534c30d63dc05a5b0d354434ca065f
";
        let o = parse_build_output(text);
        let brief: Vec<(usize, usize, bool, Option<&str>)> = o
            .iter()
            .map(|o| (o.stage, o.step, o.cached, o.id.as_deref()))
            .collect();
        assert_eq!(
            brief,
            [
                (1, 1, false, None),
                (
                    1,
                    2,
                    true,
                    Some("e17133dc0ad1fdcdabc407e6fbffc201d7f43d547219537aba1dc23662f9bf48")
                ),
                (1, 3, false, Some("aa2c9ae97e6")),
                (2, 1, false, None),
                (2, 2, false, Some("2fe8b6891a5")),
            ]
        );
        let single =
            parse_build_output("STEP 1/2: FROM scratch\nSTEP 2/2: COPY a /a\n--> 0123456789a\n");
        assert_eq!(single[1].id.as_deref(), Some("0123456789a"));
    }
}
