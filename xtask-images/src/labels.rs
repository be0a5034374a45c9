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

/// `created` is the commit time when there is a commit (`created_epoch` otherwise), so rebuilding
/// a commit gives the same labels.
pub fn compute(
    image: &Image,
    version: &Version,
    git: Option<&GitFacts>,
    created_epoch: i64,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(TITLE.to_string(), image.name.clone());
    labels.extend(image.labels.clone());
    labels.insert(VERSION.to_string(), version.text.clone());
    labels.insert(
        CREATED.to_string(),
        timefmt::rfc3339(git.map_or(created_epoch, |g| g.commit_epoch)),
    );
    if let Some(g) = git {
        labels.insert(REVISION.to_string(), g.sha.clone());
        if let Some(r) = &g.remote {
            labels
                .entry(SOURCE.to_string())
                .or_insert_with(|| r.clone());
        }
    }
    labels
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
        };
        let v = explicit("1.2.3", "x").unwrap();
        let l = compute(&cfg.images[0], &v, Some(&git), 0);
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
    fn outside_git_uses_the_given_time() {
        let cfg = parse(
            Path::new("/nonexistent"),
            "t.toml",
            "[[image]]\nname = \"app\"\n",
        )
        .unwrap();
        let l = compute(&cfg.images[0], &Version::dev(), None, 0);
        assert_eq!(l[CREATED], "1970-01-01T00:00:00Z");
        assert_eq!(l[TITLE], "app");
        assert!(!l.contains_key(REVISION));
    }
}
