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
    /// Its place in the order of releases (the scheme's reading of it as MAJOR.MINOR.PATCH).
    #[serde(skip)]
    pub semver: Option<semver::Version>,
    /// The floating tags of its line, as the scheme writes them: (`X`, `X.Y`).
    #[serde(skip)]
    pub line: Option<(String, String)>,
}

impl Version {
    pub fn dev() -> Version {
        Version {
            text: "dev".into(),
            kind: Kind::Dev,
            semver: None,
            line: None,
        }
    }
}

/// How a project writes its release versions (`version_scheme`, `tag_pattern`).
#[derive(Debug, Clone, Default)]
pub enum Scheme {
    /// `vMAJOR.MINOR.PATCH[-PRE]`.
    #[default]
    Semver,
    /// Semver, but `X.Y` reads as `X.Y.0` and `X` as `X.0.0` (`v7.3`).
    Lenient,
    /// Calendar versions `YYYY.MM[.N]` (also `YY.MM`), ordered by date; written as tagged.
    Calver,
    /// A pattern with named groups `major`, `minor` and optionally `patch` (`12.1-0`); written as
    /// tagged.
    Pattern(regex::Regex),
}

/// A tag as a scheme reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub semver: semver::Version,
    /// The version as written in labels and as the version tag.
    pub text: String,
    /// (`X`, `X.Y`) as the scheme writes them.
    pub line: (String, String),
}

impl Parsed {
    /// A semantic version as written: `1.2.3`, in the line `1`, `1.2`.
    fn semver(v: semver::Version) -> Parsed {
        Parsed {
            text: v.to_string(),
            line: (v.major.to_string(), format!("{}.{}", v.major, v.minor)),
            semver: v,
        }
    }
}

impl Scheme {
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Semver => "semver",
            Scheme::Lenient => "semver-lenient",
            Scheme::Calver => "calver",
            Scheme::Pattern(_) => "tag_pattern",
        }
    }

    /// A tag (or a written version) as a release of this scheme; `None` if it is not one.
    pub fn parse(&self, tag: &str) -> Option<Parsed> {
        let t = tag.trim();
        let bare = t.strip_prefix('v').unwrap_or(t);
        let numbered = |major: &str, minor: &str, patch: Option<&str>| -> Option<semver::Version> {
            Some(semver::Version::new(
                major.parse().ok()?,
                minor.parse().ok()?,
                patch.map_or(Some(0), |p| p.parse().ok())?,
            ))
        };
        match self {
            Scheme::Semver => semver::Version::parse(bare).ok().map(Parsed::semver),
            Scheme::Lenient => {
                let (core, rest) = match bare.find(['-', '+']) {
                    Some(i) => bare.split_at(i),
                    None => (bare, ""),
                };
                let parts: Vec<&str> = core.split('.').collect();
                let ok = (1..=3).contains(&parts.len())
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return None;
                }
                let mut full = parts.clone();
                full.resize(3, "0");
                semver::Version::parse(&format!("{}{rest}", full.join(".")))
                    .ok()
                    .map(Parsed::semver)
            }
            Scheme::Calver => {
                let parts: Vec<&str> = bare.split('.').collect();
                let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
                let ok = (2..=3).contains(&parts.len())
                    && parts.iter().all(|p| digits(p))
                    && (parts[0].len() == 4 || parts[0].len() == 2)
                    && parts[1].len() <= 2
                    && (1..=12).contains(&parts[1].parse::<u32>().ok()?);
                if !ok {
                    return None;
                }
                Some(Parsed {
                    semver: numbered(parts[0], parts[1], parts.get(2).copied())?,
                    text: bare.to_string(),
                    line: (parts[0].to_string(), format!("{}.{}", parts[0], parts[1])),
                })
            }
            Scheme::Pattern(re) => {
                let c = re
                    .captures(t)
                    .filter(|c| c.get(0).is_some_and(|m| m.as_str() == t))?;
                let (major, minor) = (c.name("major")?.as_str(), c.name("minor")?.as_str());
                Some(Parsed {
                    semver: numbered(major, minor, c.name("patch").map(|m| m.as_str()))?,
                    text: bare.to_string(),
                    line: (major.to_string(), format!("{major}.{minor}")),
                })
            }
        }
    }

    fn example(&self) -> &'static str {
        match self {
            Scheme::Semver => "vMAJOR.MINOR.PATCH (e.g. `v1.2.0`)",
            Scheme::Lenient => "vMAJOR[.MINOR[.PATCH]] (e.g. `v7.3`)",
            Scheme::Calver => "YYYY.MM[.N] (e.g. `2024.05.1`)",
            Scheme::Pattern(_) => "a tag `tag_pattern` matches whole",
        }
    }
}

/// The version of a release or prerelease exactly as tagged (or written).
fn tagged(p: Parsed) -> Version {
    let kind = if p.semver.pre.is_empty() && p.semver.build.is_empty() {
        Kind::Release
    } else {
        Kind::Prerelease
    };
    Version {
        text: p.text,
        kind,
        semver: Some(p.semver),
        line: Some(p.line),
    }
}

/// A version someone wrote down (`--version`, or `version` in the config); `origin` says where.
pub fn explicit(text: &str, origin: &str, scheme: &Scheme) -> Result<Version> {
    let Some(p) = scheme.parse(text.trim()) else {
        let what = match scheme {
            Scheme::Semver => "a semantic version".to_string(),
            other => format!("a version of version_scheme `{}`", other.name()),
        };
        return Err(InputError(format!(
            "{origin}: `{text}` is not {what}; write {}, or MAJOR.MINOR.PATCH with an optional -PRERELEASE, like `1.2.0` or `v2.0.0-rc.1`, for semver",
            scheme.example()
        ))
        .into());
    };
    Ok(tagged(p))
}

/// The tag a describe output names (on HEAD, or behind it) when `scheme` cannot read it: a tag
/// of somebody else's scheme, to skip (`git describe --exclude`), not to fail on.
pub fn foreign_tag<'a>(describe: &'a str, sha: &str, scheme: &Scheme) -> Option<&'a str> {
    let base = describe.strip_suffix("-dirty").unwrap_or(describe);
    if base.is_empty() || sha.starts_with(base) {
        return None;
    }
    let tag = split_distance(base).unwrap_or(base);
    scheme.parse(tag).is_none().then_some(tag)
}

/// Classifies `git describe --tags --always --dirty` output for HEAD (`sha`).
pub fn from_describe(describe: &str, sha: &str, scheme: &Scheme) -> Result<Version> {
    let (base, dirty) = match describe.strip_suffix("-dirty") {
        Some(b) => (b, true),
        None => (describe, false),
    };
    let snapshot = |text: String, semver| Version {
        kind: if dirty { Kind::Dirty } else { Kind::Snapshot },
        text: if dirty { format!("{text}-dirty") } else { text },
        semver,
        line: None,
    };
    // No version tag reachable: describe falls back to the abbreviated sha.
    if !base.is_empty() && sha.starts_with(base) {
        return Ok(snapshot(base.to_string(), None));
    }
    let (tag, past_tag) = match split_distance(base) {
        Some(tag) => (tag, true),
        None => (base, false),
    };
    let Some(p) = scheme.parse(tag) else {
        return Err(InputError(format!(
            "git tag `{tag}` is not a version of version_scheme `{}`; tag releases as {}, set `version_scheme`, or pass `--version`",
            scheme.name(),
            scheme.example()
        ))
        .into());
    };
    if past_tag || dirty {
        let text = base.strip_prefix('v').unwrap_or(base).to_string();
        return Ok(snapshot(text, Some(p.semver)));
    }
    Ok(tagged(p))
}

/// `v1.2.3-4-gabc1234` → `v1.2.3`; `None` when there is no `-N-gHEX` suffix.
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
    fn foreign_tags_are_skipped_on_head_and_behind_it() {
        let s = Scheme::Semver;
        assert_eq!(foreign_tag("2024.05-3-gabc1234", SHA, &s), Some("2024.05"));
        assert_eq!(
            foreign_tag("2024.05-3-gabc1234-dirty", SHA, &s),
            Some("2024.05")
        );
        assert_eq!(foreign_tag("v1.2.0-3-gabc1234", SHA, &s), None);
        assert_eq!(foreign_tag("v7.3", SHA, &s), Some("v7.3"));
        assert_eq!(foreign_tag("abc1234", SHA, &s), None, "no tag at all");
        assert_eq!(foreign_tag("v7.3", SHA, &Scheme::Lenient), None);
    }

    fn pattern(p: &str) -> Scheme {
        Scheme::Pattern(regex::Regex::new(p).unwrap())
    }

    #[test]
    fn schemes_read_tags_as_real_projects_write_them() {
        let zulip = pattern(r"(?P<major>\d+)\.(?P<minor>\d+)-(?P<patch>\d+)");
        // (scheme, tag, Some((text, order, X, X.Y)) or None)
        type Read<'a> = Option<(&'a str, &'a str, &'a str, &'a str)>;
        let cases: Vec<(&Scheme, &str, Read)> = vec![
            (
                &Scheme::Semver,
                "v1.2.3",
                Some(("1.2.3", "1.2.3", "1", "1.2")),
            ),
            (&Scheme::Semver, "v7.3", None),
            (
                &Scheme::Lenient,
                "v7.3",
                Some(("7.3.0", "7.3.0", "7", "7.3")),
            ),
            (&Scheme::Lenient, "v7", Some(("7.0.0", "7.0.0", "7", "7.0"))),
            (
                &Scheme::Lenient,
                "2.0-rc.1",
                Some(("2.0.0-rc.1", "2.0.0-rc.1", "2", "2.0")),
            ),
            (&Scheme::Lenient, "v7.x", None),
            (
                &Scheme::Calver,
                "2024.05",
                Some(("2024.05", "2024.5.0", "2024", "2024.05")),
            ),
            (
                &Scheme::Calver,
                "2024.05.2",
                Some(("2024.05.2", "2024.5.2", "2024", "2024.05")),
            ),
            (
                &Scheme::Calver,
                "24.11",
                Some(("24.11", "24.11.0", "24", "24.11")),
            ),
            (&Scheme::Calver, "2024.13", None),
            (&Scheme::Calver, "v1.2.3", None),
            (&zulip, "12.1-0", Some(("12.1-0", "12.1.0", "12", "12.1"))),
            (
                &zulip,
                "12.10-3",
                Some(("12.10-3", "12.10.3", "12", "12.10")),
            ),
            (&zulip, "12.1-0-rc", None),
            (&zulip, "x12.1-0", None),
        ];
        for (scheme, tag, want) in cases {
            let got = scheme
                .parse(tag)
                .map(|p| (p.text, p.semver.to_string(), p.line.0, p.line.1));
            let want = want.map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()));
            assert_eq!(got, want, "{} {tag}", scheme.name());
        }
        // Ordering follows the scheme: 12.1-1 is below 12.2-0.
        let v = |t: &str| zulip.parse(t).unwrap().semver;
        assert!(v("12.1-1") < v("12.2-0") && v("12.1-0") < v("12.1-1"));
        let c = |t: &str| Scheme::Calver.parse(t).unwrap().semver;
        assert!(c("2024.05.2") < c("2024.11") && c("2024.11") < c("2025.01"));
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
            let v = from_describe(describe, SHA, &Scheme::Semver).unwrap();
            assert_eq!((v.text.as_str(), &v.kind), (*text, kind), "{describe}");
        }
    }

    #[test]
    fn non_semver_tags_are_errors() {
        let err = from_describe("v1.2", SHA, &Scheme::Semver)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("git tag `v1.2` is not a version of version_scheme `semver`"),
            "{err}"
        );
        let err = from_describe("v1.2-3-gabc1234", SHA, &Scheme::Semver)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`v1.2`"), "{err}");
    }

    #[test]
    fn explicit_versions() {
        assert_eq!(
            explicit("v1.2.3", "--version", &Scheme::Semver)
                .unwrap()
                .kind,
            Kind::Release
        );
        assert_eq!(
            explicit("1.2.3", "--version", &Scheme::Semver)
                .unwrap()
                .text,
            "1.2.3"
        );
        assert_eq!(
            explicit("2.0.0-rc.1", "--version", &Scheme::Semver)
                .unwrap()
                .kind,
            Kind::Prerelease
        );
        assert_eq!(
            explicit("1.2.3+build.5", "--version", &Scheme::Semver)
                .unwrap()
                .kind,
            Kind::Prerelease
        );
        let err = explicit("1.2", "--version", &Scheme::Semver)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--version: `1.2` is not a semantic version"),
            "{err}"
        );
        let err = explicit("banana", "docker/images.toml:1:11", &Scheme::Semver)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("docker/images.toml:1:11: `banana`"),
            "{err}"
        );
    }
}
