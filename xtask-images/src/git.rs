//! Facts about the commit being built, read from git. The only git calls in the tool.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::exec::Sh;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFacts {
    /// Full sha of HEAD.
    pub sha: String,
    /// Committer time of HEAD, seconds since the epoch.
    pub commit_epoch: i64,
    /// `git describe --tags --always --dirty` over version-looking tags (`v1.2.3`, `1.2.3`).
    pub describe: String,
    /// Tracked files differ from HEAD.
    pub dirty: bool,
    /// The `origin` remote (or the first one), credentials removed.
    pub remote: Option<String>,
    /// A tag on HEAD that the version scheme cannot read (skipped: a snapshot is built, and
    /// `release` refuses).
    pub foreign_on_head: Option<String>,
}

pub fn describe_cmd() -> Cmd {
    Cmd::new("git").args([
        "describe",
        "--tags",
        "--always",
        "--dirty",
        "--abbrev=7",
        "--match",
        "v[0-9]*",
        "--match",
        "[0-9]*",
    ])
}

/// `None` outside a git work tree, in a repository with no commit yet, or where git is not
/// installed (the xtask image has none), which is said on stderr.
pub fn read(sh: &Sh, scheme: &crate::version::Scheme) -> Result<Option<GitFacts>> {
    let inside = match sh.probe(&Cmd::new("git").args(["rev-parse", "--is-inside-work-tree"])) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("warning: {e:#}; building without commit facts (no commit or date tags)");
            return Ok(None);
        }
    };
    if !inside.success() || inside.stdout.trim() != "true" {
        // Outside a work tree is a fact; any other failure (a broken repository, git refusing
        // the directory's owner) is not quietly a `dev` build.
        if !inside.success() && !inside.stderr.contains("not a git repository") {
            return Err(crate::input_error!(
                "`git rev-parse` failed: {}; fix the repository, or pass --version to build without git facts",
                inside.stderr.trim()
            ));
        }
        return Ok(None);
    }
    let head = sh.probe(&Cmd::new("git").args(["show", "-s", "--format=%H %ct", "HEAD"]))?;
    if !head.success() {
        // A repository with no commit yet has no facts to give; anything else is an error.
        let unborn = [
            "ambiguous argument 'HEAD'",
            "unknown revision",
            "does not have any commits",
        ]
        .iter()
        .any(|m| head.stderr.contains(m));
        if unborn {
            return Ok(None);
        }
        return Err(crate::input_error!(
            "`git show HEAD` failed: {}; fix the repository, or pass --version to build without git facts",
            head.stderr.trim()
        ));
    }
    let (sha, epoch) = head
        .stdout
        .trim()
        .split_once(' ')
        .context("unexpected `git show` output")?;
    // Only version tags count: a tag the scheme cannot read (`2024.05` under semver, a tag of
    // another scheme) is excluded and git asked again. One on HEAD is remembered: the build is
    // a snapshot, said once, and `release` refuses it.
    let mut excluded: Vec<String> = Vec::new();
    let mut foreign_on_head = None;
    let describe = loop {
        let d = sh.read(&describe_cmd().args(excluded.iter().flat_map(|t| ["--exclude", t])))?;
        match crate::version::foreign_tag(&d, sha, scheme) {
            Some(tag) if excluded.len() < 50 && !excluded.iter().any(|t| t == tag) => {
                let base = d.strip_suffix("-dirty").unwrap_or(&d);
                if base == tag && foreign_on_head.is_none() {
                    foreign_on_head = Some(tag.to_string());
                }
                excluded.push(tag.to_string())
            }
            _ => break d,
        }
    };
    let remote = match sh.probe(&Cmd::new("git").args(["remote", "get-url", "origin"]))? {
        out if out.success() => Some(out.stdout.trim().to_string()),
        _ => {
            let first = sh.read(&Cmd::new("git").arg("remote"))?;
            match first.lines().next() {
                Some(name) => Some(sh.read(&Cmd::new("git").args(["remote", "get-url", name]))?),
                None => None,
            }
        }
    };
    Ok(Some(GitFacts {
        sha: sha.to_string(),
        commit_epoch: epoch
            .parse()
            .context("unexpected commit time from `git show`")?,
        dirty: describe.ends_with("-dirty"),
        describe,
        remote: remote
            .filter(|r| !r.is_empty())
            .map(|r| strip_credentials(&r)),
        foreign_on_head,
    }))
}

/// `https://user:token@host/x` → `https://host/x`: remotes can hold tokens, labels are public.
pub fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if let Some((_, host)) = authority.rsplit_once('@') {
            let sep = if rest.contains('/') { "/" } else { "" };
            return format!("{scheme}://{host}{sep}{path}");
        }
    }
    url.to_string()
}

/// What git knows of the files below one directory (paths relative to it, `/`-separated):
/// tracked files are the project, untracked ones nobody committed, ignored ones somebody's
/// machine.
#[derive(Debug, Default)]
pub struct Known {
    tracked: HashSet<String>,
    /// Every directory that holds a tracked file somewhere below it.
    tracked_dirs: HashSet<String>,
    untracked: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Tracked,
    Untracked,
    Ignored,
}

impl Known {
    pub fn status(&self, path: &str) -> Status {
        if self.tracked.contains(path) {
            return Status::Tracked;
        }
        if self.untracked.contains(path) {
            return Status::Untracked;
        }
        // A file inside a tracked submodule (a tracked path that is a directory).
        let mut at = path;
        while let Some((parent, _)) = at.rsplit_once('/') {
            if self.tracked.contains(parent) {
                return Status::Tracked;
            }
            at = parent;
        }
        Status::Ignored
    }

    /// The highest directory above `path` (or `path` itself) with no tracked file below it: what
    /// one ignore line can exclude without touching the project's own files.
    pub fn untracked_root<'p>(&self, path: &'p str) -> &'p str {
        let mut end = 0;
        loop {
            match path[end..].find('/') {
                Some(i) => {
                    let dir = &path[..end + i];
                    if !self.tracked_dirs.contains(dir) {
                        return dir;
                    }
                    end += i + 1;
                }
                None => return path,
            }
        }
    }

    #[cfg(test)]
    pub fn from_lists(tracked: &[&str], untracked: &[&str]) -> Known {
        let mut k = Known::default();
        k.add_tracked(tracked.iter().map(|s| s.to_string()));
        k.untracked = untracked.iter().map(|s| s.to_string()).collect();
        k
    }

    fn add_tracked(&mut self, paths: impl Iterator<Item = String>) {
        for p in paths {
            let mut end = 0;
            while let Some(i) = p[end..].find('/') {
                self.tracked_dirs.insert(p[..end + i].to_string());
                end += i + 1;
            }
            self.tracked.insert(p);
        }
    }
}

/// What git knows of `dir`'s files (`dir` relative to where `sh` runs, or absolute); `None`
/// outside a work tree or without git.
/// Whether git ignores `path` (relative to `dir`), which need not exist: the outputs of
/// `before_build` commands are.
pub fn ignores(sh: &Sh, dir: &Path, path: &str) -> bool {
    sh.probe_bytes(&Cmd::new("git").arg("-C").arg(dir.to_string_lossy()).args([
        "check-ignore",
        "-q",
        "--",
        path,
    ]))
    .is_ok_and(|o| o.code == Some(0))
}

pub fn known(sh: &Sh, dir: &Path) -> Option<Known> {
    let list = |extra: &[&str]| -> Option<Vec<String>> {
        let out = sh
            .probe_bytes(
                &Cmd::new("git")
                    .arg("-C")
                    .arg(dir.to_string_lossy())
                    .args(["ls-files", "-z"])
                    .args(extra.iter().copied()),
            )
            .ok()?;
        if out.code != Some(0) {
            return None;
        }
        Some(
            out.stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
        )
    };
    let tracked = list(&["--cached"])?;
    let untracked = list(&["--others", "--exclude-standard"])?;
    let mut k = Known {
        untracked: untracked.into_iter().collect(),
        ..Known::default()
    };
    k.add_tracked(tracked.into_iter());
    Some(k)
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_git_knows() {
        let k = Known::from_lists(&["app/a.py", "media/.keep", "vendor/sub"], &["notes.txt"]);
        assert_eq!(k.status("app/a.py"), Status::Tracked);
        assert_eq!(k.status("vendor/sub/x.c"), Status::Tracked);
        assert_eq!(k.status("notes.txt"), Status::Untracked);
        assert_eq!(k.status("venv/bin/python"), Status::Ignored);
        assert_eq!(k.untracked_root("venv/lib/x.py"), "venv");
        assert_eq!(k.untracked_root("media/images/a.jpg"), "media/images");
        assert_eq!(k.untracked_root("app/local.py"), "app/local.py");
    }

    use super::*;

    #[test]
    fn credentials_are_removed() {
        let cases = [
            (
                "https://user:tok@github.com/acme/x.git",
                "https://github.com/acme/x.git",
            ),
            ("https://tok@github.com", "https://github.com"),
            ("https://github.com/acme/x", "https://github.com/acme/x"),
            ("git@github.com:acme/x.git", "git@github.com:acme/x.git"),
            ("ssh://git@host:22/acme/x", "ssh://host:22/acme/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_credentials(raw), want, "{raw}");
        }
    }
}
