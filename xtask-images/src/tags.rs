//! Which tags a build gets: the semantic-version fan-out, commit and date, and the dev, channel,
//! pull-request and branch tags.

use crate::reference::tag_from;
use crate::timefmt;
use crate::version::{Kind, Version};

/// The commit being built, for the commit and date tags.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    pub sha: &'a str,
    pub epoch: i64,
    pub dirty: bool,
}

/// What kind of build this is beyond its version. Flags first, then the CI environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flavor {
    pub dev: bool,
    pub channel: Option<String>,
    pub pr: Option<u64>,
    pub branch: Option<String>,
}

impl Flavor {
    /// Builds that are not the release line itself never get `latest`, `X` or `X.Y`.
    fn is_side_build(&self) -> bool {
        self.channel.is_some() || self.pr.is_some() || self.branch.is_some()
    }
}

/// The pull request or branch a CI job builds, from GitHub Actions' or GitLab CI's variables.
pub fn from_ci_env(get: impl Fn(&str) -> Option<String>) -> (Option<u64>, Option<String>) {
    if let Some(r) = get("GITHUB_REF") {
        if let Some(n) = r
            .strip_prefix("refs/pull/")
            .and_then(|r| r.split('/').next())
        {
            if let Ok(n) = n.parse() {
                return (Some(n), None);
            }
        }
        if let Some(b) = r.strip_prefix("refs/heads/") {
            return (None, Some(b.to_string()));
        }
    }
    if let Some(n) = get("CI_MERGE_REQUEST_IID").and_then(|n| n.parse().ok()) {
        return (Some(n), None);
    }
    (None, get("CI_COMMIT_BRANCH").filter(|b| !b.is_empty()))
}

/// The tags, primary (full version) first, each valid and each once.
pub fn compute(version: &Version, commit: Option<&Commit>, flavor: &Flavor) -> Vec<String> {
    if flavor.dev || version.kind == Kind::Dev {
        return vec!["dev".into()];
    }
    let mut tags = vec![tag_from(&version.text)];
    if let (Kind::Release, Some(v), Some((major, minor)), false) = (
        &version.kind,
        &version.semver,
        &version.line,
        flavor.is_side_build(),
    ) {
        tags.push(tag_from(minor));
        if v.major > 0 {
            tags.push(tag_from(major));
        }
        tags.push("latest".into());
    }
    // A dirty tree is not the commit, so it must not take the commit's tags.
    if let Some(c) = commit.filter(|c| !c.dirty) {
        tags.push(c.sha.chars().take(7).collect());
        tags.push(timefmt::yyyymmdd(c.epoch));
    }
    tags.extend(flavor.channel.as_deref().map(tag_from));
    tags.extend(flavor.pr.map(|n| format!("pr-{n}")));
    tags.extend(flavor.branch.as_deref().map(tag_from));
    let mut seen = std::collections::HashSet::new();
    tags.retain(|t| seen.insert(t.clone()));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{explicit, from_describe};

    const SHA: &str = "abc1234def5678abc1234def5678abc1234def56";
    const EPOCH: i64 = 1_736_937_000; // 2025-01-15

    fn tags(describe: &str, dirty: bool, flavor: Flavor) -> Vec<String> {
        let v = from_describe(describe, SHA, &crate::version::Scheme::Semver).unwrap();
        let c = Commit {
            sha: SHA,
            epoch: EPOCH,
            dirty,
        };
        compute(&v, Some(&c), &flavor)
    }

    fn flavor(f: impl FnOnce(&mut Flavor)) -> Flavor {
        let mut fl = Flavor::default();
        f(&mut fl);
        fl
    }

    #[test]
    fn fan_out() {
        let d = Flavor::default;
        let cases: Vec<(&str, bool, Flavor, &str)> = vec![
            ("v1.2.3", false, d(), "1.2.3 1.2 1 latest abc1234 20250115"),
            ("v0.4.1", false, d(), "0.4.1 0.4 latest abc1234 20250115"),
            ("v2.0.0-rc.1", false, d(), "2.0.0-rc.1 abc1234 20250115"),
            (
                "v1.2.3-4-gabc1234",
                false,
                d(),
                "1.2.3-4-gabc1234 abc1234 20250115",
            ),
            ("v1.2.3-dirty", true, d(), "1.2.3-dirty"),
            ("abc1234", false, d(), "abc1234 20250115"),
            ("v1.2.3", false, flavor(|f| f.dev = true), "dev"),
            (
                "v1.2.3",
                false,
                flavor(|f| f.channel = Some("staging".into())),
                "1.2.3 abc1234 20250115 staging",
            ),
            (
                "v1.2.3",
                false,
                flavor(|f| f.pr = Some(123)),
                "1.2.3 abc1234 20250115 pr-123",
            ),
            (
                "v1.2.3-4-gabc1234",
                false,
                flavor(|f| f.branch = Some("feature/login#2".into())),
                "1.2.3-4-gabc1234 abc1234 20250115 feature-login-2",
            ),
        ];
        for (describe, dirty, fl, want) in cases {
            assert_eq!(
                tags(describe, dirty, fl.clone()).join(" "),
                want,
                "{describe} {fl:?}"
            );
        }
    }

    #[test]
    fn long_branches_stay_valid_and_distinct() {
        let a = tags(
            "abc1234",
            false,
            flavor(|f| f.branch = Some(format!("x/{}", "y".repeat(200)))),
        );
        let b = tags(
            "abc1234",
            false,
            flavor(|f| f.branch = Some(format!("x/{}z", "y".repeat(199)))),
        );
        let (la, lb) = (a.last().unwrap(), b.last().unwrap());
        assert_eq!(la.len(), 128);
        assert_ne!(la, lb);
        assert!(a
            .iter()
            .chain(&b)
            .all(|t| crate::reference::is_valid_tag(t)));
    }

    #[test]
    fn outside_git() {
        let v = explicit("1.2.3", "--version", &crate::version::Scheme::Semver).unwrap();
        assert_eq!(
            compute(&v, None, &Flavor::default()).join(" "),
            "1.2.3 1.2 1 latest"
        );
        assert_eq!(
            compute(&Version::dev(), None, &Flavor::default()),
            vec!["dev"]
        );
        let v = explicit(
            "1.2.3+build.7",
            "--version",
            &crate::version::Scheme::Semver,
        )
        .unwrap();
        assert_eq!(compute(&v, None, &Flavor::default()), vec!["1.2.3-build.7"]);
    }

    #[test]
    fn ci_environments() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            from_ci_env(env(&[("GITHUB_REF", "refs/pull/42/merge")])),
            (Some(42), None)
        );
        assert_eq!(
            from_ci_env(env(&[("GITHUB_REF", "refs/heads/feat/x")])),
            (None, Some("feat/x".into()))
        );
        assert_eq!(
            from_ci_env(env(&[("GITHUB_REF", "refs/tags/v1.2.3")])),
            (None, None)
        );
        assert_eq!(
            from_ci_env(env(&[
                ("CI_MERGE_REQUEST_IID", "7"),
                ("CI_COMMIT_BRANCH", "x")
            ])),
            (Some(7), None)
        );
        assert_eq!(
            from_ci_env(env(&[("CI_COMMIT_BRANCH", "main")])),
            (None, Some("main".into()))
        );
        assert_eq!(from_ci_env(env(&[])), (None, None));
    }
}
