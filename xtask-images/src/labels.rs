//! The OCI labels every build carries.

use std::collections::BTreeMap;

use crate::config::Image;
use crate::git::GitFacts;
use crate::timefmt;
use crate::version::Version;

pub const VERSION: &str = "org.opencontainers.image.version";
pub const REVISION: &str = "org.opencontainers.image.revision";
pub const CREATED: &str = "org.opencontainers.image.created";
pub const SOURCE: &str = "org.opencontainers.image.source";
pub const TITLE: &str = "org.opencontainers.image.title";
/// The key of everything the image is made from, but the labels (`plan`'s content key):
/// equal on every machine that builds the same inputs, whatever its layer cache made of the
/// image ID. Its value is filled in once the key is computed (`fill_inputs`).
pub const INPUTS: &str = "io.xtask.inputs";

/// Puts the computed inputs key into a build's `--label io.xtask.inputs=` argument.
pub fn fill_inputs(cmd: &crate::cmd::Cmd, key: &str) -> crate::cmd::Cmd {
    let mut c = cmd.clone();
    let empty = format!("{INPUTS}=");
    for a in &mut c.args {
        if *a == empty {
            *a = format!("{INPUTS}={key}");
        }
    }
    c
}

/// `created` is the commit time when there is a commit (`created_epoch` otherwise), so rebuilding
/// a commit gives the same labels. Labels the Dockerfile's final stage sets itself
/// (`own`) are the project's: the tool's defaults (title, source) give way to them; the config's
/// `labels` and the build facts (version, revision, created) do not.
pub fn compute(
    image: &Image,
    version: &Version,
    git: Option<&GitFacts>,
    created_epoch: i64,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if !own.contains_key(TITLE) {
        labels.insert(TITLE.to_string(), image.name.clone());
    }
    if let Some(url) = git.and_then(|g| g.remote.as_deref()).and_then(source_url) {
        if !own.contains_key(SOURCE) {
            labels.insert(SOURCE.to_string(), url);
        }
    }
    labels.extend(image.labels.clone());
    labels.insert(VERSION.to_string(), version.text.clone());
    labels.insert(
        CREATED.to_string(),
        timefmt::rfc3339(git.map_or(created_epoch, |g| g.commit_epoch)),
    );
    if let Some(g) = git {
        labels.insert(REVISION.to_string(), g.sha.clone());
    }
    labels
}

/// A remote as the web address registries link an image to: `https://host/owner/repo`, from
/// SSH (`git@host:owner/repo.git`, `ssh://git@host/owner/repo`) and HTTPS remotes alike
/// (credentials are already gone); `None` for a local path.
pub fn source_url(remote: &str) -> Option<String> {
    let r = remote.trim().trim_end_matches('/');
    let r = r.strip_suffix(".git").unwrap_or(r);
    let (host, path) = if let Some(rest) = r.strip_prefix("ssh://") {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let (authority, path) = rest.split_once('/')?;
        (authority.split(':').next()?.to_string(), path.to_string())
    } else if let Some(rest) = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
    {
        let (authority, path) = rest.split_once('/')?;
        (authority.to_string(), path.to_string())
    } else if !r.contains("://") && r.contains(':') && !r.starts_with('/') {
        // scp-like: [user@]host:path
        let (authority, path) = r.split_once(':')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (host.to_string(), path.trim_start_matches('/').to_string())
    } else {
        return None;
    };
    (!host.is_empty() && !path.is_empty()).then(|| format!("https://{host}/{path}"))
}

/// The `LABEL`s the final stage of a Dockerfile sets (`KEY=value` pairs, quotes removed).
pub fn dockerfile_labels(text: &str, target: Option<&str>) -> BTreeMap<String, String> {
    let Ok(st) = crate::dockerfile::parse(text).and_then(crate::dockerfile::stages) else {
        return BTreeMap::new();
    };
    let stage = match target {
        Some(t) => st
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str())),
        None => st.stages.last(),
    };
    stage
        .map(|s| {
            s.body
                .iter()
                .filter(|i| i.keyword == "LABEL")
                .flat_map(|i| crate::dockerfile::env_pairs(&i.args))
                .map(|(k, v)| (unquote(&k), unquote(&v)))
                .collect()
        })
        .unwrap_or_default()
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::version::explicit;
    use std::path::Path;

    #[test]
    fn labels_from_git_and_config() {
        let cfg = parse(
            Path::new("/nonexistent"),
            "t.toml",
            "[[image]]\nname = \"app\"\nlabels = { \"org.opencontainers.image.title\" = \"App\", \"com.acme.team\" = \"core\" }\n",
        )
        .unwrap();
        let git = GitFacts {
            sha: "abc1234def".into(),
            commit_epoch: 1_736_937_000,
            describe: "v1.2.3".into(),
            dirty: false,
            remote: Some("https://github.com/acme/app".into()),
            foreign_on_head: None,
        };
        let v = explicit("1.2.3", "x", &crate::version::Scheme::Semver).unwrap();
        let l = compute(&cfg.images[0], &v, Some(&git), 0, &BTreeMap::new());
        let want = [
            ("com.acme.team", "core"),
            (CREATED, "2025-01-15T10:30:00Z"),
            (REVISION, "abc1234def"),
            (SOURCE, "https://github.com/acme/app"),
            (TITLE, "App"),
            (VERSION, "1.2.3"),
        ];
        let got: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn source_labels_are_web_addresses() {
        for (remote, want) in [
            (
                "git@github.com:saleor/saleor.git",
                Some("https://github.com/saleor/saleor"),
            ),
            (
                "ssh://git@gitlab.example:2222/team/app.git",
                Some("https://gitlab.example/team/app"),
            ),
            (
                "https://github.com/acme/app.git",
                Some("https://github.com/acme/app"),
            ),
            (
                "https://github.com/acme/app",
                Some("https://github.com/acme/app"),
            ),
            ("/srv/git/app.git", None),
        ] {
            assert_eq!(source_url(remote).as_deref(), want, "{remote}");
        }
    }

    #[test]
    fn the_dockerfiles_own_labels_win_over_the_defaults() {
        let cfg = parse(
            Path::new("/nonexistent"),
            "t.toml",
            "[[image]]\nname = \"app\"\n",
        )
        .unwrap();
        let own = dockerfile_labels(
            "FROM scratch AS build\nLABEL org.opencontainers.image.title=nope\nFROM scratch\nLABEL org.opencontainers.image.source=\"https://github.com/saleor/saleor\" \\\n  org.opencontainers.image.title=\"saleor/saleor\"\n",
            None,
        );
        assert_eq!(own[SOURCE], "https://github.com/saleor/saleor");
        let git = GitFacts {
            sha: "abc".into(),
            commit_epoch: 0,
            describe: "v1.0.0".into(),
            dirty: false,
            remote: Some("git@github.com:fork/saleor.git".into()),
            foreign_on_head: None,
        };
        let l = compute(
            &cfg.images[0],
            &explicit("1.0.0", "x", &crate::version::Scheme::Semver).unwrap(),
            Some(&git),
            0,
            &own,
        );
        assert!(!l.contains_key(SOURCE) && !l.contains_key(TITLE), "{l:?}");
        assert_eq!(l[VERSION], "1.0.0");
    }

    #[test]
    fn outside_git_uses_the_given_time() {
        let cfg = parse(
            Path::new("/nonexistent"),
            "t.toml",
            "[[image]]\nname = \"app\"\n",
        )
        .unwrap();
        let l = compute(&cfg.images[0], &Version::dev(), None, 0, &BTreeMap::new());
        assert_eq!(l[CREATED], "1970-01-01T00:00:00Z");
        assert_eq!(l[TITLE], "app");
        assert!(!l.contains_key(REVISION));
    }
}
