//! What version a build is, and whether it is a release: from `--version`, from
//! `git describe`, or from the config outside git.

use anyhow::Result;
use serde::Serialize;

use crate::error::InputError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `X.Y.Z` exactly on its tag (or given explicitly), clean: gets the floating tags.
    Release,
    /// `X.Y.Z-rc.1` and the like: its own tag only.
    Prerelease,
    /// A commit past the last version tag, or with no version tag at all.
    Snapshot,
    /// Tracked files differ from the commit.
    Dirty,
    /// Outside git with no version given.
    Dev,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// The version as written in labels, `v` stripped: `1.2.3`, `1.2.3-4-gabc1234-dirty`, `abc1234`.
    pub text: String,
    pub kind: Kind,
    #[serde(skip)]
    pub semver: Option<semver::Version>,
}

impl Version {
    pub fn dev() -> Version {
        Version {
            text: "dev".into(),
            kind: Kind::Dev,
            semver: None,
        }
    }
}

/// The version of a release or prerelease exactly as tagged (or written).
fn tagged(v: semver::Version) -> Version {
    let kind = if v.pre.is_empty() && v.build.is_empty() {
        Kind::Release
    } else {
        Kind::Prerelease
    };
    Version {
        text: v.to_string(),
        kind,
        semver: Some(v),
    }
}

fn parse_semver(text: &str) -> Option<semver::Version> {
    semver::Version::parse(text.strip_prefix('v').unwrap_or(text)).ok()
}

/// A version someone wrote down (`--version`, or `version` in the config); `origin` says where.
pub fn explicit(text: &str, origin: &str) -> Result<Version> {
    let Some(v) = parse_semver(text.trim()) else {
        return Err(InputError(format!(
            "{origin}: `{text}` is not a semantic version; write MAJOR.MINOR.PATCH with an optional \
             -PRERELEASE, like `1.2.0` or `v2.0.0-rc.1`"
        ))
        .into());
    };
    Ok(tagged(v))
}

/// Classifies `git describe --tags --always --dirty` output for HEAD (`sha`).
pub fn from_describe(describe: &str, sha: &str) -> Result<Version> {
    let (base, dirty) = match describe.strip_suffix("-dirty") {
        Some(b) => (b, true),
        None => (describe, false),
    };
    let snapshot = |text: String, semver| Version {
        kind: if dirty { Kind::Dirty } else { Kind::Snapshot },
        text: if dirty { format!("{text}-dirty") } else { text },
        semver,
    };
    // No version tag reachable: describe falls back to the abbreviated sha.
    if !base.is_empty() && sha.starts_with(base) {
        return Ok(snapshot(base.to_string(), None));
    }
    let (tag, past_tag) = match split_distance(base) {
        Some(tag) => (tag, true),
        None => (base, false),
    };
    let Some(v) = parse_semver(tag) else {
        return Err(InputError(format!(
            "git tag `{tag}` is not a semantic version; tag releases as vMAJOR.MINOR.PATCH \
             (e.g. `v1.2.0`), or pass `--version`"
        ))
        .into());
    };
    if past_tag || dirty {
        let text = base.strip_prefix('v').unwrap_or(base).to_string();
        return Ok(snapshot(text, Some(v)));
    }
    Ok(tagged(v))
}

/// `v1.2.3-4-gabc1234` → `v1.2.3`; `None` when there is no `-N-gHEX` suffix.
/// The tag a describe output names, when it is not a semantic version and HEAD is past it
/// (`2024.05-3-gabc1234`): such a tag is somebody else's scheme, to skip, not to fail on.
pub fn foreign_tag_behind(describe: &str) -> Option<&str> {
    let base = describe.strip_suffix("-dirty").unwrap_or(describe);
    split_distance(base).filter(|tag| parse_semver(tag).is_none())
}

fn split_distance(s: &str) -> Option<&str> {
    let mut parts = s.rsplitn(3, '-');
    let hash = parts.next()?;
    let count = parts.next()?;
    let tag = parts.next()?;
    let hex = hash.strip_prefix('g')?;
    let ok = !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && !count.is_empty()
        && count.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_tags_behind_head_are_skipped_only_there() {
        assert_eq!(foreign_tag_behind("2024.05-3-gabc1234"), Some("2024.05"));
        assert_eq!(
            foreign_tag_behind("2024.05-3-gabc1234-dirty"),
            Some("2024.05")
        );
        assert_eq!(foreign_tag_behind("v1.2.0-3-gabc1234"), None);
        assert_eq!(
            foreign_tag_behind("2024.05"),
            None,
            "on HEAD it is an error"
        );
    }

    const SHA: &str = "abc1234def5678abc1234def5678abc1234def56";

    #[test]
    fn describe_cases() {
        let cases: &[(&str, &str, Kind)] = &[
            ("v1.2.3", "1.2.3", Kind::Release),
            ("1.2.3", "1.2.3", Kind::Release),
            ("v0.4.0", "0.4.0", Kind::Release),
            ("v2.0.0-rc.1", "2.0.0-rc.1", Kind::Prerelease),
            ("v1.2.3-dirty", "1.2.3-dirty", Kind::Dirty),
            ("v1.2.3-4-gabc1234", "1.2.3-4-gabc1234", Kind::Snapshot),
            (
                "v1.2.3-4-gabc1234-dirty",
                "1.2.3-4-gabc1234-dirty",
                Kind::Dirty,
            ),
            (
                "v2.0.0-rc.1-3-gabc1234",
                "2.0.0-rc.1-3-gabc1234",
                Kind::Snapshot,
            ),
            ("abc1234", "abc1234", Kind::Snapshot),
            ("abc1234-dirty", "abc1234-dirty", Kind::Dirty),
        ];
        for (describe, text, kind) in cases {
            let v = from_describe(describe, SHA).unwrap();
            assert_eq!((v.text.as_str(), &v.kind), (*text, kind), "{describe}");
        }
    }

    #[test]
    fn non_semver_tags_are_errors() {
        let err = from_describe("v1.2", SHA).unwrap_err().to_string();
        assert!(
            err.starts_with("git tag `v1.2` is not a semantic version"),
            "{err}"
        );
        let err = from_describe("v1.2-3-gabc1234", SHA)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`v1.2`"), "{err}");
    }

    #[test]
    fn explicit_versions() {
        assert_eq!(explicit("v1.2.3", "--version").unwrap().kind, Kind::Release);
        assert_eq!(explicit("1.2.3", "--version").unwrap().text, "1.2.3");
        assert_eq!(
            explicit("2.0.0-rc.1", "--version").unwrap().kind,
            Kind::Prerelease
        );
        assert_eq!(
            explicit("1.2.3+build.5", "--version").unwrap().kind,
            Kind::Prerelease
        );
        let err = explicit("1.2", "--version").unwrap_err().to_string();
        assert!(
            err.starts_with("--version: `1.2` is not a semantic version"),
            "{err}"
        );
        let err = explicit("banana", "docker/images.toml:1:11")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("docker/images.toml:1:11: `banana`"),
            "{err}"
        );
    }
}
