//! Step keys: for every step podman will run (`STEP n/N`, per stage), a sha256 over its parent's
//! key and exactly the inputs podman's layer cache compares for that step (buildah 1.28,
//! `imagebuildah/stage_executor.go`: the parent image, and the history line `getCreatedBy`
//! writes):
//! - `ARG`: only the names of the declared arguments that have a value, not the values;
//! - `RUN`: the instruction text and the values of the declared arguments (an `ENV` of the same
//!   name wins);
//! - `COPY`/`ADD` from the context: the copied files' names, modes and content (not mtimes),
//!   the flags and the destination, not the way the sources are spelt;
//! - `COPY --from=stage`: the sources, the destination, and what wrote the copied paths in that
//!   stage: podman compares the copied content, so a stage rebuilt for an unrelated path still
//!   reuses the step. A `COPY` is known by its files; a `RUN` may write anywhere and counts by its
//!   key, so a re-run whose output happens to be identical is predicted as a rebuild;
//! - every other instruction: its text as written, before substitution;
//! - `--label K=V`: one `LABEL` step per label, appended to the last stage.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hash::{hex, Fact};
use crate::context::Entry;
use crate::dockerfile::{arg_value, env_pairs, expand, Instruction, Stages};

/// Build arguments podman passes through without a declaring `ARG` (buildah's proxy list).
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Everything a build's keys depend on, already read.
pub struct Inputs<'a> {
    pub dockerfile: &'a Stages,
    pub target: Option<&'a str>,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// The platform, and `|format=docker` for a Docker-format build: both enter every FROM key.
    pub platform: Option<&'a str>,
    /// The context's files (ignored ones already left out) with their digests.
    pub entries: &'a [Entry],
    pub facts: &'a [Fact],
    /// The local image ID of a base image reference, if it is in storage.
    pub image_id: &'a dyn Fn(&str) -> Option<String>,
}

/// One copied file as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLine {
    /// Path in the context, for explanations.
    pub path: String,
    /// Name under the destination (what podman's content digest covers).
    pub name: String,
    pub mode: u32,
    #[serde(with = "hex_digest")]
    pub digest: [u8; 32],
}

/// Digests as hex strings in the remembered listings.
mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if text.len() != 64 {
            return Err(serde::de::Error::custom("a digest has 64 hex digits"));
        }
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

/// What a step's key was computed from, kept to explain the next rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// `FROM image` (`id` is None when it is not in local storage) or `FROM scratch`.
    Base { image: String, id: Option<String> },
    /// `FROM stage`: the image is that stage's result.
    Stage { stage: String },
    /// `COPY`/`ADD` from the context: the digest of the file listing.
    Files {
        listing: String,
        #[serde(skip)]
        files: Vec<FileLine>,
    },
    /// `COPY --from=stage`.
    FromStage { stage: String, key: String },
    /// `COPY --from=image`.
    FromImage { image: String, id: Option<String> },
    /// `RUN` with the declared build arguments' values. `binds` are the context files a
    /// `--mount=type=bind` reads, with a digest of their content: not part of the key
    /// (podman 4.3 leaves them out of its layer cache too), kept to say when a reused step
    /// is stale.
    Run {
        args: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        binds: BTreeMap<String, String>,
    },
    /// `ARG`: the names that have a value.
    Arg { names: Vec<String> },
    /// Only the instruction's text.
    Text,
}

/// The history line podman writes for a step (`getCreatedBy`), which its cache lookup compares
/// with the images already in storage whoever built them. Some parts are only known with the
/// parent image in hand (its `Env`, its `WorkingDir`) or by reading the copied files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum History {
    /// Not predicted: `COPY --from`, `ADD` of a URL or an archive, heredocs, a `--chown` by
    /// name (resolved in the image's own /etc/passwd), hundreds of ARGs.
    #[default]
    Unknown,
    /// A stage's start; `stage` is the index of the earlier stage it is built from (the base
    /// image is the step's [`Input::Base`]).
    From { stage: Option<usize> },
    /// The line itself.
    Line(String),
    /// `RUN`: `|N K=V … /bin/sh -c COMMAND`.
    Run {
        args: Vec<(String, String)>,
        command: String,
    },
    /// `COPY`/`ADD` from the context: `/bin/sh -c #(nop) COPY SUMMARY in DEST `.
    Copy {
        keyword: String,
        sources: Vec<String>,
        /// The destination with variables expanded (where the files land), and as written
        /// (what the line shows).
        dest: String,
        written: String,
        chown: (u32, u32),
        chmod: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// 1-based stage, as podman's `[stage/stages]` prefix.
    pub stage: usize,
    pub stages: usize,
    /// 1-based step within the stage, as podman's `STEP n/N`.
    pub step: usize,
    pub steps: usize,
    pub instruction: String,
    pub key: String,
    pub input: Input,
    #[serde(skip)]
    pub history: History,
}

impl Step {
    pub fn is_from(&self) -> bool {
        self.step == 1
    }
}

fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"xtask-step-1");
    for p in parts {
        // Length-prefixed so no two part lists hash alike.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// Every step of the build, with its key. Errors name the stage a `--target` lacks.
pub fn steps(inp: &Inputs) -> Result<Vec<Step>, String> {
    let df = inp.dockerfile;
    let stages = df.up_to(inp.target)?;
    let mut heading: BTreeMap<String, String> = BTreeMap::new();
    for ins in &df.global_args {
        for a in &ins.args {
            if let Some((k, v)) = arg_value(inp.build_args, a, &heading, &BTreeMap::new()) {
                heading.insert(k, v);
            }
        }
    }
    let platform = inp.platform.unwrap_or("");
    let mut stage_keys: Vec<String> = Vec::new();
    // Per stage: (path written, or `*` for anywhere; content key), in order.
    let mut stage_writes: Vec<Vec<(String, String)>> = Vec::new();
    let mut out = Vec::new();
    let needed = needed_stages(df, stages, &heading);
    for (si, st) in stages.iter().enumerate() {
        if !needed[si] {
            // Podman skips a stage the target does not use; keep the indexes aligned.
            stage_keys.push(String::new());
            stage_writes.push(Vec::new());
            continue;
        }
        let last = si + 1 == stages.len();
        let labels: Vec<(&String, &String)> = if last {
            inp.labels.iter().collect()
        } else {
            Vec::new()
        };
        let total = 1 + st.body.len() + labels.len();
        let mut push = |n: usize, ins: String, key: String, input: Input, history: History| {
            out.push(Step {
                stage: si + 1,
                stages: stages.len(),
                step: n,
                steps: total,
                instruction: ins,
                key,
                input,
                history,
            })
        };
        let base = expand(&st.base, &heading);
        let mut writes: Vec<(String, String)> = Vec::new();
        let mut workdir = "/".to_string();
        let base_stage = df.stage_index(si, &base);
        let (input, mut parent) = match base_stage {
            Some(j) => {
                writes = stage_writes[j].clone();
                (
                    Input::Stage {
                        stage: base.clone(),
                    },
                    stage_keys[j].clone(),
                )
            }
            None if base == "scratch" => (
                Input::Base {
                    image: base.clone(),
                    id: None,
                },
                key(&["FROM scratch", platform]),
            ),
            None => {
                let id = (inp.image_id)(&base);
                let k = key(&[
                    "FROM",
                    id.as_deref().unwrap_or(&format!("missing:{base}")),
                    platform,
                ]);
                writes.push(("*".into(), k.clone()));
                (Input::Base { image: base, id }, k)
            }
        };
        let from = History::From { stage: base_stage };
        push(1, st.from.text(), parent.clone(), input, from);
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        // `args` overlaid with `env`, kept up to date as they change (rebuilding it for every
        // instruction made a Dockerfile of thousands of ARGs quadratic).
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let proxies: Vec<String> = PROXY_ARGS
            .iter()
            .filter(|p| inp.build_args.contains_key(**p))
            .map(|p| p.to_string())
            .collect();
        let mut names_sum = NameSum::default();
        for p in &proxies {
            names_sum.add(p);
        }
        for (i, ins) in st.body.iter().enumerate() {
            let text = ins.text();
            let history = history(ins, &text, &args, &env, &vars);
            let (input, material) = match ins.keyword.as_str() {
                "ARG" => {
                    for a in &ins.args {
                        if let Some((k, v)) = arg_value(inp.build_args, a, &vars, &heading) {
                            if !env.contains_key(&k) {
                                vars.insert(k.clone(), v.clone());
                            }
                            if !args.contains_key(&k) && !proxies.contains(&k) {
                                names_sum.add(&k);
                            }
                            args.insert(k, v);
                        }
                    }
                    arg_step(&args, &proxies, &names_sum)
                }
                "ENV" => {
                    for (k, v) in env_pairs(&ins.args) {
                        let v = expand(&v, &vars);
                        vars.insert(k.clone(), v.clone());
                        env.insert(k, v);
                    }
                    (Input::Text, with_heredocs(&text, ins))
                }
                "RUN" => {
                    let resolved: BTreeMap<String, String> = args
                        .iter()
                        .map(|(k, v)| (k.clone(), env.get(k).unwrap_or(v).clone()))
                        .collect();
                    let m = format!(
                        "{} {}",
                        resolved
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        with_heredocs(&text, ins)
                    );
                    let binds = bind_digests(ins, &vars, inp);
                    (
                        Input::Run {
                            args: resolved,
                            binds,
                        },
                        m,
                    )
                }
                "COPY" | "ADD" => copy_input(inp, df, si, &stage_writes, &workdir, ins, &vars),
                "WORKDIR" => {
                    if let Some(d) = ins.args.first() {
                        workdir = absolute(&workdir, &expand(d, &vars));
                    }
                    (Input::Text, with_heredocs(&text, ins))
                }
                _ => (Input::Text, with_heredocs(&text, ins)),
            };
            parent = key(&[&parent, &material]);
            match ins.keyword.as_str() {
                "RUN" => writes.push(("*".into(), parent.clone())),
                "COPY" | "ADD" => {
                    let dest = ins
                        .args
                        .last()
                        .map(|d| expand(d, &vars))
                        .unwrap_or_default();
                    writes.push((absolute(&workdir, &dest), key(&[&material])));
                }
                _ => {}
            }
            // An ARG's line has the names it makes known: computed once they are.
            let history = if ins.keyword == "ARG" {
                arg_history(&args, &proxies, &names_sum)
            } else {
                history
            };
            push(i + 2, text, parent.clone(), input, history);
        }
        // The inputs label holds the key of the content before the labels: what a release
        // made from the same inputs on another machine (another cache) also carries.
        let content = parent.clone();
        for (j, (k, v)) in labels.iter().enumerate() {
            let v = if k.as_str() == crate::labels::INPUTS {
                &content
            } else {
                *v
            };
            let text = format!("LABEL {k:?}={v:?}");
            parent = key(&[&parent, &text]);
            let line = History::Line(format!("/bin/sh -c #(nop) {text}"));
            push(
                st.body.len() + 2 + j,
                text,
                parent.clone(),
                Input::Text,
                line,
            );
        }
        stage_keys.push(parent);
        stage_writes.push(writes);
    }
    Ok(out)
}

/// A step's history line, as far as it is known before the parent image is.
fn history(
    ins: &Instruction,
    text: &str,
    args: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    vars: &BTreeMap<String, String>,
) -> History {
    if !ins.heredocs.is_empty() {
        return History::Unknown;
    }
    match ins.keyword.as_str() {
        // An `ENV` of this stage wins over the argument's value; the base image's does not
        // (measured: `podman history` shows the ARG's value).
        "RUN" => History::Run {
            args: args
                .iter()
                .map(|(k, v)| (k.clone(), env.get(k).unwrap_or(v).clone()))
                .collect(),
            command: text.get(4..).unwrap_or("").to_string(),
        },
        "COPY" | "ADD" => copy_history(ins, vars),
        "ARG" => History::Unknown,
        _ => History::Line(format!("/bin/sh -c #(nop) {text}")),
    }
}

/// `ARG`: the names of the build arguments known so far that have a value, sorted.
fn arg_history(args: &BTreeMap<String, String>, proxies: &[String], sum: &NameSum) -> History {
    if sum.count > ARG_NAMES_KEPT {
        return History::Unknown;
    }
    let names: BTreeSet<&str> = args
        .keys()
        .map(String::as_str)
        .chain(proxies.iter().map(String::as_str))
        .collect();
    History::Line(format!(
        "/bin/sh -c #(nop) ARG {}",
        names.into_iter().collect::<Vec<_>>().join(" ")
    ))
}

/// `COPY`/`ADD` from the context, when its summary can be computed here.
fn copy_history(ins: &Instruction, vars: &BTreeMap<String, String>) -> History {
    let Some((written, srcs)) = ins.args.split_last() else {
        return History::Unknown;
    };
    let sources: Vec<String> = srcs.iter().map(|s| expand(s, vars)).collect();
    let remote = |s: &String| s.contains("://") || s.starts_with("git@");
    // ADD unpacks archives (by content) and fetches URLs: neither is digested here.
    let archive = |s: &String| {
        [
            ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".tbz2", ".txz",
        ]
        .iter()
        .any(|x| s.ends_with(x))
    };
    if sources.is_empty()
        || sources.iter().any(remote)
        || (ins.keyword == "ADD" && sources.iter().any(archive))
    {
        return History::Unknown;
    }
    let mut chown = (0, 0);
    let mut chmod = None;
    for (name, value) in &ins.flags {
        let value = expand(value, vars);
        match name.as_str() {
            "chown" => {
                let ids = value
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                match ids {
                    Some(ids) => chown = ids,
                    None => return History::Unknown,
                }
            }
            "chmod" => match u32::from_str_radix(&value, 8) {
                Ok(m) => chmod = Some(m),
                Err(_) => return History::Unknown,
            },
            _ => return History::Unknown,
        }
    }
    History::Copy {
        keyword: ins.keyword.clone(),
        sources,
        dest: expand(written, vars),
        written: written.clone(),
        chown,
        chmod,
    }
}

/// Names kept in an `ARG` step's record (for the reason of a rebuild); beyond that only their
/// count and a digest, so thousands of ARGs stay linear in time and memory.
const ARG_NAMES_KEPT: usize = 64;

/// An order-independent digest of a set of names, updated in O(1) per name added: the sum of
/// each name's sha256, as four wrapping 64-bit words.
#[derive(Default)]
struct NameSum {
    count: usize,
    words: [u64; 4],
}

impl NameSum {
    fn add(&mut self, name: &str) {
        let d = Sha256::digest(name.as_bytes());
        for (w, chunk) in self.words.iter_mut().zip(d.chunks(8)) {
            *w = w.wrapping_add(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        }
        self.count += 1;
    }

    fn hex(&self) -> String {
        self.words.iter().map(|w| format!("{w:016x}")).collect()
    }
}

/// An `ARG` step's input and key material: the names of the declared arguments that have a
/// value (buildah keys the step by them, not by the values).
fn arg_step(args: &BTreeMap<String, String>, proxies: &[String], sum: &NameSum) -> (Input, String) {
    if sum.count <= ARG_NAMES_KEPT {
        let names: BTreeSet<String> = args
            .keys()
            .cloned()
            .chain(proxies.iter().cloned())
            .collect();
        let names: Vec<String> = names.into_iter().collect();
        let m = format!("ARG {}", names.join(" "));
        return (Input::Arg { names }, m);
    }
    let digest = sum.hex();
    (
        Input::Arg {
            names: vec![format!("({} names, {})", sum.count, &digest[..12])],
        },
        format!("ARG #{} {digest}", sum.count),
    )
}

/// The context files each `RUN --mount=type=bind,source=…` (without `from=`) reads, as one
/// digest per source over the files' paths, modes and contents.
fn bind_digests(
    ins: &crate::dockerfile::Instruction,
    vars: &BTreeMap<String, String>,
    inp: &Inputs,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, spec) in ins.flags.iter().filter(|(n, _)| n == "mount") {
        let opts: BTreeMap<&str, &str> = spec
            .split(',')
            .filter_map(|o| o.split_once('=').or(Some((o, ""))))
            .collect();
        if opts.get("type").copied() != Some("bind") || opts.contains_key("from") {
            continue;
        }
        let Some(src) = opts.get("source").or(opts.get("src")) else {
            continue;
        };
        let src = crate::context::ignore::go_clean(expand(src, vars).trim_start_matches('/'));
        if let Some(d) = bind_digest(&src, inp.entries, inp.facts) {
            out.insert(src, d);
        }
    }
    out
}

/// The bind mounts of a RUN: `(source, line)` for each `--mount=type=bind` without `from=`.
pub fn bind_sources(ins: &crate::dockerfile::Instruction) -> Vec<String> {
    ins.flags
        .iter()
        .filter(|(n, _)| n == "mount")
        .filter_map(|(_, spec)| {
            let opts: BTreeMap<&str, &str> = spec
                .split(',')
                .filter_map(|o| o.split_once('=').or(Some((o, ""))))
                .collect();
            if opts.get("type").copied() != Some("bind") || opts.contains_key("from") {
                return None;
            }
            let src = opts.get("source").or(opts.get("src"))?;
            Some(crate::context::ignore::go_clean(
                src.trim_start_matches('/'),
            ))
        })
        .collect()
}

/// One digest over the paths, modes and contents of the files at or below `src`.
pub fn bind_digest(src: &str, entries: &[Entry], facts: &[Fact]) -> Option<String> {
    let below = format!("{src}/");
    let mut h = Sha256::new();
    let mut any = false;
    for (e, f) in entries.iter().zip(facts) {
        if src == "." || e.path == src || e.path.starts_with(&below) {
            h.update(e.path.as_bytes());
            h.update(f.mode.to_le_bytes());
            h.update(f.digest);
            any = true;
        }
    }
    any.then(|| {
        h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// The stages the last one depends on (through `FROM stage`, `COPY --from`, `RUN --mount=from=`),
/// as buildah 1.28 decides which stages to run.
fn needed_stages(
    df: &Stages,
    stages: &[crate::dockerfile::Stage],
    heading: &BTreeMap<String, String>,
) -> Vec<bool> {
    let mut needed = vec![false; stages.len()];
    if let Some(last) = needed.last_mut() {
        *last = true;
    }
    for si in (0..stages.len()).rev() {
        if !needed[si] {
            continue;
        }
        let st = &stages[si];
        let mut refs = vec![expand(&st.base, heading)];
        for ins in &st.body {
            for (name, value) in &ins.flags {
                match name.as_str() {
                    "from" => refs.push(expand(value, heading)),
                    "mount" => refs.extend(
                        value
                            .split(',')
                            .filter_map(|kv| kv.strip_prefix("from="))
                            .map(|v| expand(v, heading)),
                    ),
                    _ => {}
                }
            }
        }
        for r in refs {
            if let Some(j) = df.stage_index(si, &r) {
                needed[j] = true;
            }
        }
    }
    needed
}

/// `dest` resolved against the working directory, without a trailing `/`.
pub fn absolute(workdir: &str, dest: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether writing `written` can change what copying `src` reads.
fn overlaps(written: &str, src: &str) -> bool {
    if written == "*" || src.contains(['*', '?', '[']) {
        return true;
    }
    let under = |a: &str, b: &str| a == b || b == "/" || a.starts_with(&format!("{b}/"));
    under(written, src) || under(src, written)
}

fn with_heredocs(text: &str, ins: &Instruction) -> String {
    let mut s = text.to_string();
    for h in &ins.heredocs {
        s.push('\n');
        s.push_str(h);
    }
    s
}

fn copy_input(
    inp: &Inputs,
    df: &Stages,
    si: usize,
    stage_writes: &[Vec<(String, String)>],
    workdir: &str,
    ins: &Instruction,
    vars: &BTreeMap<String, String>,
) -> (Input, String) {
    let (srcs, dest) = ins.args.split_at(ins.args.len().saturating_sub(1));
    let dest = dest
        .first()
        .map(|d| absolute(workdir, &expand(d, vars)))
        .unwrap_or_default();
    let srcs: Vec<String> = srcs.iter().map(|s| expand(s, vars)).collect();
    let flags: Vec<String> = ins
        .flags
        .iter()
        .filter(|(n, _)| n != "from")
        .map(|(n, v)| format!("--{n}={}", expand(v, vars)))
        // Buildah gives copied files 0:0 when no --chown is given: the same step to podman.
        .filter(|f| f != "--chown=0:0")
        .collect();
    let head = format!("{} {} in {dest}", ins.keyword, flags.join(" "));
    let heredocs = ins.heredocs.join("\n");
    if let Some(from) = ins.flag("from") {
        let from = expand(from, vars);
        let what = format!("{head} {} {heredocs}", srcs.join(" "));
        return match df.stage_index(si, &from) {
            Some(j) => {
                let srcs: Vec<String> = srcs.iter().map(|s| absolute("/", s)).collect();
                let contributors: Vec<&str> = stage_writes[j]
                    .iter()
                    .filter(|(w, _)| srcs.iter().any(|s| overlaps(w, s)))
                    .map(|(_, k)| k.as_str())
                    .collect();
                let k = key(&contributors);
                let m = format!("{what} content {k}");
                (
                    Input::FromStage {
                        stage: from,
                        key: k,
                    },
                    m,
                )
            }
            None => {
                let id = (inp.image_id)(&from);
                let m = format!(
                    "{what} image {}",
                    id.as_deref().unwrap_or(&format!("missing:{from}"))
                );
                (Input::FromImage { image: from, id }, m)
            }
        };
    }
    let excludes: Vec<globset::GlobMatcher> = ins
        .flags
        .iter()
        .filter(|(n, _)| n == "exclude")
        .filter_map(|(_, v)| crate::config::go_path_glob(v))
        .collect();
    let mut files = Vec::new();
    for s in srcs.iter().filter(|s| !s.starts_with("<<")) {
        files.extend(
            select(inp.entries, inp.facts, s)
                .into_iter()
                .filter(|f| !excludes.iter().any(|e| e.is_match(&f.name))),
        );
    }
    let mut h = Sha256::new();
    for f in &files {
        h.update((f.name.len() as u64).to_le_bytes());
        h.update(f.name.as_bytes());
        h.update(f.mode.to_le_bytes());
        h.update(f.digest);
    }
    let listing = hex(&h.finalize());
    let m = format!("{head} {listing} {heredocs}");
    (Input::Files { listing, files }, m)
}

/// The context files one `COPY` source brings in, named as they land under the destination.
pub fn select(entries: &[Entry], facts: &[Fact], src: &str) -> Vec<FileLine> {
    let mut s = src.trim_start_matches('/');
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    let s = if s == "." { "" } else { s };
    let glob = s
        .contains(['*', '?', '['])
        .then(|| crate::config::go_path_glob(s))
        .flatten();
    let line = |i: usize, name: &str| FileLine {
        path: entries[i].path.clone(),
        name: name.to_string(),
        mode: facts[i].mode,
        digest: facts[i].digest,
    };
    let basename = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let p = e.path.as_str();
        if s.is_empty() {
            out.push(line(i, p));
        } else if let Some(g) = &glob {
            // The shortest matching prefix decides, as a glob naming a directory copies it whole.
            let hit = p
                .match_indices('/')
                .map(|(at, _)| &p[..at])
                .chain(std::iter::once(p))
                .find(|prefix| g.is_match(prefix));
            if let Some(prefix) = hit {
                let name = if prefix == p {
                    basename(p)
                } else {
                    p[prefix.len() + 1..].to_string()
                };
                out.push(line(i, &name));
            }
        } else if p == s {
            out.push(line(i, &basename(p)));
        } else if let Some(rest) = p.strip_prefix(s).and_then(|r| r.strip_prefix('/')) {
            out.push(line(i, rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{parse, stages};

    fn entries(paths: &[(&str, &str, u32)]) -> (Vec<Entry>, Vec<Fact>) {
        let e = paths
            .iter()
            .map(|(p, _, _)| Entry {
                path: p.to_string(),
                size: 1,
                symlink: false,
                stat: Default::default(),
                exact: None,
            })
            .collect();
        let f = paths
            .iter()
            .map(|(_, content, mode)| Fact {
                mode: *mode,
                digest: Sha256::digest(content.as_bytes()).into(),
            })
            .collect();
        (e, f)
    }

    struct Case {
        df: &'static str,
        files: Vec<(&'static str, &'static str, u32)>,
        args: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    }

    impl Case {
        fn new(df: &'static str) -> Case {
            Case {
                df,
                files: vec![
                    ("app/main.py", "print()", 0o100644),
                    ("app/util.py", "x = 1", 0o100644),
                    ("requirements.txt", "django", 0o100644),
                ],
                args: BTreeMap::new(),
                labels: BTreeMap::new(),
            }
        }
        fn keys(&self) -> Vec<String> {
            let st = stages(parse(self.df).unwrap()).unwrap();
            let (e, f) = entries(&self.files);
            let id = |r: &str| (r == "python:3.12").then(|| "abc".to_string());
            steps(&Inputs {
                dockerfile: &st,
                target: None,
                build_args: &self.args,
                labels: &self.labels,
                platform: None,
                entries: &e,
                facts: &f,
                image_id: &id,
            })
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect()
        }
    }

    /// Index of the first key that differs.
    fn first_change(a: &[String], b: &[String]) -> Option<usize> {
        a.iter().zip(b).position(|(x, y)| x != y)
    }

    const PY: &str = "ARG PY=3.12\nFROM python:${PY}\nARG MODE=prod\nCOPY requirements.txt /tmp/\nRUN pip install -r /tmp/requirements.txt\nCOPY app /app\nENV DEBUG=0\nCMD [\"run\"]\n";

    #[test]
    fn each_input_changes_its_own_step_and_after() {
        let base = Case::new(PY);
        let k0 = base.keys();
        assert_eq!(k0.len(), 7);
        // Content of a copied file: the COPY step.
        let mut c = Case::new(PY);
        c.files[0].1 = "print(1)";
        assert_eq!(first_change(&k0, &c.keys()), Some(4));
        // Mode: the same step.
        let mut c = Case::new(PY);
        c.files[1].2 = 0o100755;
        assert_eq!(first_change(&k0, &c.keys()), Some(4));
        // A new file in the copied directory; a file nothing copies changes nothing.
        let mut c = Case::new(PY);
        c.files.push(("app/new.py", "", 0o100644));
        assert_eq!(first_change(&k0, &c.keys()), Some(4));
        let mut c = Case::new(PY);
        c.files.push(("README.md", "", 0o100644));
        assert_eq!(first_change(&k0, &c.keys()), None);
        // A build arg's value: not the ARG step, the first RUN.
        let mut c = Case::new(PY);
        c.args.insert("MODE".into(), "dev".into());
        assert_eq!(first_change(&k0, &c.keys()), Some(3));
        // An undeclared build arg changes nothing.
        let mut c = Case::new(PY);
        c.args.insert("OTHER".into(), "1".into());
        assert_eq!(first_change(&k0, &c.keys()), None);
        // CMD edited: only the last step.
        let mut c = Case::new(PY);
        c.df = "ARG PY=3.12\nFROM python:${PY}\nARG MODE=prod\nCOPY requirements.txt /tmp/\nRUN pip install -r /tmp/requirements.txt\nCOPY app /app\nENV DEBUG=0\nCMD [\"serve\"]\n";
        assert_eq!(first_change(&k0, &c.keys()), Some(6));
        // The base image: everything.
        let mut c = Case::new(PY);
        c.args.insert("PY".into(), "3.13".into());
        assert_eq!(first_change(&k0, &c.keys()), Some(0));
        // A label adds a step after the last.
        let mut c = Case::new(PY);
        c.labels.insert("a".into(), "b".into());
        let k = c.keys();
        assert_eq!((k.len(), first_change(&k0, &k)), (8, None));
    }

    #[test]
    fn spelling_of_sources_does_not_matter_but_destination_does() {
        let a = Case::new("FROM scratch\nCOPY ./app/ /app\n").keys();
        let b = Case::new("FROM scratch\nCOPY app /app\n").keys();
        let c = Case::new("FROM scratch\nCOPY app /srv\n").keys();
        assert_eq!(a, b);
        assert_ne!(b[1], c[1]);
    }

    #[test]
    fn copy_from_a_stage_follows_that_stage() {
        let df =
            "FROM scratch AS build\nCOPY app /src\nFROM scratch\nCOPY --from=build /src /app\n";
        let k0 = Case::new(df).keys();
        let mut c = Case::new(df);
        c.files[0].1 = "changed";
        let k1 = c.keys();
        assert_ne!(k0[1], k1[1]);
        assert_eq!(k0[2], k1[2], "the second stage's FROM scratch is the same");
        assert_ne!(k0[3], k1[3]);
    }

    #[test]
    fn copy_from_a_stage_follows_only_what_wrote_the_copied_paths() {
        let df = "FROM scratch AS build\nCOPY app /src\nCOPY requirements.txt /req/\nRUN make\nFROM build AS more\nCOPY app /more\nFROM scratch\nCOPY --from=more /src /app\nCOPY --from=build /req /req\n";
        let k0 = Case::new(df).keys();
        let mut c = Case::new(df);
        c.files[2].1 = "flask";
        let k1 = c.keys();
        // requirements.txt reaches /req and, through RUN (which may write anywhere), /src.
        assert_ne!(k0[7], k1[7]);
        assert_ne!(k0[8], k1[8]);
        let df2 = "FROM scratch AS build\nCOPY app /src\nCOPY requirements.txt /req/\nFROM scratch\nCOPY --from=build /src /app\nCOPY --from=build /req /req\n";
        let k0 = Case::new(df2).keys();
        let mut c = Case::new(df2);
        c.df = df2;
        c.files[0].1 = "changed";
        let k1 = c.keys();
        assert_ne!(k0[4], k1[4], "/src holds app/");
        let mut c2 = Case::new(df2);
        c2.files[2].1 = "flask";
        let k2 = c2.keys();
        assert_eq!(k0[4], k2[4], "/src does not hold requirements.txt");
        assert_ne!(k0[5], k2[5]);
    }

    #[test]
    fn stages_the_target_does_not_use_are_skipped() {
        let df = "FROM scratch AS unused\nCOPY app /u\nFROM scratch AS used\nCOPY app /x\nFROM used AS mid\nCMD x\nFROM scratch\nCOPY --from=mid /x /y\n";
        let st = stages(parse(df).unwrap()).unwrap();
        let (e, f) = entries(&[("app/a", "", 0o644)]);
        let none = BTreeMap::new();
        let id = |_: &str| None;
        let steps = steps(&Inputs {
            dockerfile: &st,
            target: None,
            build_args: &none,
            labels: &none,
            platform: None,
            entries: &e,
            facts: &f,
            image_id: &id,
        })
        .unwrap();
        let at: Vec<(usize, usize, usize)> =
            steps.iter().map(|s| (s.stage, s.stages, s.step)).collect();
        assert_eq!(
            at,
            [
                (2, 4, 1),
                (2, 4, 2),
                (3, 4, 1),
                (3, 4, 2),
                (4, 4, 1),
                (4, 4, 2)
            ]
        );
    }

    #[test]
    fn paths_resolve_against_workdir() {
        assert_eq!(absolute("/app", "x/"), "/app/x");
        assert_eq!(absolute("/app", "/etc/./a/../b"), "/etc/b");
        assert_eq!(absolute("/", "."), "/");
        assert!(overlaps("/app", "/app/main.py"));
        assert!(overlaps("/app/x", "/app"));
        assert!(!overlaps("/application", "/app"));
        assert!(overlaps("*", "/x"));
        assert!(overlaps("/", "/x"));
    }

    #[test]
    fn sources_select_files_like_copy() {
        let (e, f) = entries(&[
            ("a.txt", "", 0o644),
            ("app/x/y.py", "", 0o644),
            ("app/z.py", "", 0o644),
            ("b.txt", "", 0o644),
        ]);
        let names =
            |s: &str| -> Vec<String> { select(&e, &f, s).into_iter().map(|l| l.name).collect() };
        assert_eq!(names("app"), ["x/y.py", "z.py"]);
        assert_eq!(names("./app/"), ["x/y.py", "z.py"]);
        assert_eq!(names("*.txt"), ["a.txt", "b.txt"]);
        assert_eq!(names("ap*"), ["x/y.py", "z.py"]);
        assert_eq!(names("app/z.py"), ["z.py"]);
        assert_eq!(names(".").len(), 4);
        assert!(names("missing").is_empty());
    }
}
