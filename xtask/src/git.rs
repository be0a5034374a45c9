//! Facts about the commit being built, read from git. The only git calls in the tool.

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
pub fn read(sh: &Sh) -> Result<Option<GitFacts>> {
    let inside = match sh.probe(&Cmd::new("git").args(["rev-parse", "--is-inside-work-tree"])) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("warning: {e:#}; building without commit facts (no commit or date tags)");
            return Ok(None);
        }
    };
    if !inside.success() || inside.stdout.trim() != "true" {
        return Ok(None);
    }
    let head = sh.probe(&Cmd::new("git").args(["show", "-s", "--format=%H %ct", "HEAD"]))?;
    if !head.success() {
        return Ok(None);
    }
    let (sha, epoch) = head
        .stdout
        .trim()
        .split_once(' ')
        .context("unexpected `git show` output")?;
    let describe = sh.read(&describe_cmd())?;
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

#[cfg(test)]
mod tests {
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
