//! The safety rules of publishing, as pure decisions over what the destination already holds:
//! versions are immutable, floating tags only move forward, rollback picks an earlier release.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Remote;
use crate::version::{Kind, Scheme, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `X.Y.Z` (or the snapshot's version): never changes once published.
    Version,
    /// The short sha: names one commit's image, so never changes either.
    Commit,
    /// `latest`, `X`, `X.Y`: move only forward.
    Floating,
    /// Date, channel, PR and branch tags: always point at the newest build.
    Moving,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Push,
    AlreadyThere,
    Move,
    HoldBack,
    Refuse,
    Overwrite,
}

impl Action {
    pub fn verb(self) -> &'static str {
        match self {
            Action::Push => "pushed",
            Action::AlreadyThere => "already there",
            Action::Move => "moved",
            Action::HoldBack => "held back",
            Action::Refuse => "REFUSED",
            Action::Overwrite => "OVERWRITTEN",
        }
    }

    /// Whether the tag gets written.
    pub fn writes(self) -> bool {
        matches!(self, Action::Push | Action::Move | Action::Overwrite)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TagPlan {
    pub tag: String,
    pub role: Role,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The role of each of a build's tags.
pub fn role(tag: &str, version_tag: &str, version: &Version, sha7: Option<&str>) -> Role {
    if tag == version_tag {
        return Role::Version;
    }
    if Some(tag) == sha7 {
        return Role::Commit;
    }
    if let (Kind::Release, Some((major, minor))) = (&version.kind, &version.line) {
        let floating = ["latest".to_string(), major.clone(), minor.clone()];
        if floating.iter().any(|f| f == tag) {
            return Role::Floating;
        }
    }
    Role::Moving
}

/// Releases (no prerelease) among a destination's tags, as the scheme reads them, oldest
/// first, each with its tag. Floating tags (`1`, `1.2`, `2024.05`) are the lines', not
/// releases, even where the scheme could read them as one.
pub fn releases(tags: &[String], scheme: &Scheme) -> Vec<(semver::Version, String)> {
    let mut v: Vec<(semver::Version, String)> = tags
        .iter()
        .filter_map(|t| scheme.parse(t).map(|p| (p, t)))
        .filter(|(p, t)| {
            p.semver.pre.is_empty()
                && p.semver.build.is_empty()
                && **t != p.line.0
                && **t != p.line.1
        })
        .map(|(p, t)| (p.semver, t.clone()))
        .collect();
    v.sort();
    v
}

/// What to do with each tag. `remote` holds the destination's view of the build's own tags;
/// `existing` is every tag the destination has, for the forward-only rule.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    tags: &[(String, Role)],
    version: &Version,
    image_id: &str,
    remote: &BTreeMap<String, Remote>,
    existing: &[String],
    hold: Option<&semver::Version>,
    force: bool,
    scheme: &Scheme,
) -> Vec<TagPlan> {
    let published: Vec<semver::Version> = releases(existing, scheme)
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    tags.iter()
        .map(|(tag, role)| {
            let here = remote.get(tag);
            let same = here.is_some_and(|r| r.image_id.as_deref() == Some(image_id));
            let (action, reason) = match role {
                _ if same => (Action::AlreadyThere, None),
                Role::Version | Role::Commit => match here {
                    None => (Action::Push, None),
                    Some(r) => {
                        let why = format!(
                            "`{tag}` already holds {} (image {}), not this build's image {}",
                            r.digest,
                            short(r.image_id.as_deref().unwrap_or("?")),
                            short(image_id)
                        );
                        if force {
                            (Action::Overwrite, Some(why))
                        } else {
                            (Action::Refuse, Some(why))
                        }
                    }
                },
                Role::Floating => match (newer_in_line(tag, version, &published), hold) {
                    (Some(newer), _) => (
                        Action::HoldBack,
                        Some(format!("{newer} is newer; `{tag}` stays where it is")),
                    ),
                    (None, Some(h)) if version.semver.as_ref().is_some_and(|v| v <= h) => (
                        Action::HoldBack,
                        Some(format!(
                            "{h} was rolled back (tag `{}`); floating tags move again for a release newer than {h}, or after `cargo xtask rollback --clear`",
                            super::HOLD_TAG
                        )),
                    ),
                    (None, _) => (Action::Move, None),
                },
                // A shared moving tag (the date tag) never goes back to an older release either:
                // re-running yesterday's release today must not take today's tag from a newer one.
                Role::Moving => match newer_in_line("latest", version, &published) {
                    Some(newer) if version.kind == Kind::Release => (
                        Action::HoldBack,
                        Some(format!("{newer} is newer; `{tag}` stays where it is")),
                    ),
                    _ => (Action::Move, None),
                },
            };
            TagPlan {
                tag: tag.clone(),
                role: *role,
                action,
                reason,
            }
        })
        .collect()
}

/// The newest published release in the line a floating tag covers (ours included, when it is
/// published).
pub fn newest_in_line(
    tag: &str,
    ours: &semver::Version,
    published: &[semver::Version],
) -> Option<semver::Version> {
    published
        .iter()
        .filter(|v| in_line(tag, ours, v))
        .max()
        .cloned()
}

fn in_line(tag: &str, ours: &semver::Version, v: &semver::Version) -> bool {
    match tag.split('.').count() {
        _ if tag == "latest" => true,
        1 => v.major == ours.major,
        _ => v.major == ours.major && v.minor == ours.minor,
    }
}

/// The newest published release above ours in the line a floating tag covers.
fn newer_in_line(
    tag: &str,
    version: &Version,
    published: &[semver::Version],
) -> Option<semver::Version> {
    let ours = version.semver.as_ref()?;
    published
        .iter()
        .filter(|v| in_line(tag, ours, v) && *v > ours)
        .max()
        .cloned()
}

/// The release to roll back to: `to`, or the newest release below the one `latest` holds.
pub fn rollback_target(
    releases: &[(semver::Version, String)],
    latest: Option<&str>,
    to: Option<&semver::Version>,
) -> Result<(semver::Version, String), String> {
    if let Some(to) = to {
        return releases
            .iter()
            .find(|(v, _)| v == to)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<String> = releases.iter().map(|(v, _)| v.to_string()).collect();
                format!(
                    "release {to} is not published; published releases: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            });
    }
    let latest = latest.ok_or("nothing to roll back: the destination has no `latest` tag")?;
    let current = releases
        .iter()
        .filter(|(_, d)| d == latest)
        .map(|(v, _)| v)
        .max()
        .ok_or("`latest` holds no published release; name one with --to X.Y.Z")?;
    releases
        .iter()
        .filter(|(v, _)| v < current)
        .max_by(|a, b| a.0.cmp(&b.0))
        .cloned()
        .ok_or_else(|| {
            format!("`latest` is {current}, the oldest release; there is nothing before it")
        })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::explicit;

    fn remote(id: &str) -> Remote {
        Remote {
            digest: format!("sha256:{id}{id}"),
            image_id: Some(id.into()),
            instances: Vec::new(),
        }
    }

    fn plan(
        version: &str,
        existing: &[&str],
        remote_tags: &[(&str, &str)],
    ) -> Vec<(String, Action)> {
        plan_held(version, existing, remote_tags, None)
    }

    fn plan_held(
        version: &str,
        existing: &[&str],
        remote_tags: &[(&str, &str)],
        hold: Option<&str>,
    ) -> Vec<(String, Action)> {
        let hold = hold.map(|h| semver::Version::parse(h).unwrap());
        let v = explicit(version, "test", &crate::version::Scheme::Semver).unwrap();
        let tags: Vec<(String, Role)> = crate::tags::compute(&v, None, &Default::default())
            .into_iter()
            .map(|t| {
                let r = role(&t, version, &v, None);
                (t, r)
            })
            .collect();
        let remote: BTreeMap<String, Remote> = remote_tags
            .iter()
            .map(|(t, id)| (t.to_string(), remote(id)))
            .collect();
        let existing: Vec<String> = existing.iter().map(|s| s.to_string()).collect();
        decide(
            &tags,
            &v,
            "new",
            &remote,
            &existing,
            hold.as_ref(),
            false,
            &crate::version::Scheme::Semver,
        )
        .into_iter()
        .map(|p| (p.tag, p.action))
        .collect()
    }

    #[test]
    fn a_tag_pattern_scheme_keeps_floating_tags_forward_only() {
        let scheme = crate::version::Scheme::Pattern(
            regex::Regex::new(r"(?P<major>\d+)\.(?P<minor>\d+)-(?P<patch>\d+)").unwrap(),
        );
        let v = explicit("12.1-1", "test", &scheme).unwrap();
        let tags: Vec<(String, Role)> = crate::tags::compute(&v, None, &Default::default())
            .into_iter()
            .map(|t| {
                let r = role(&t, "12.1-1", &v, None);
                (t, r)
            })
            .collect();
        let existing: Vec<String> = ["12.1-0", "12.2-0", "12.1", "12", "latest"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got: Vec<(String, Action)> = decide(
            &tags,
            &v,
            "new",
            &BTreeMap::new(),
            &existing,
            None,
            false,
            &scheme,
        )
        .into_iter()
        .map(|p| (p.tag, p.action))
        .collect();
        let want: Vec<(String, Action)> = [
            ("12.1-1", Action::Push),
            ("12.1", Action::Move),
            ("12", Action::HoldBack),
            ("latest", Action::HoldBack),
        ]
        .iter()
        .map(|(t, a)| (t.to_string(), *a))
        .collect();
        assert_eq!(got, want);
        // The lines' own tags are not releases.
        let r: Vec<String> = releases(&existing, &scheme)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(r, ["12.1-0", "12.2-0"]);
    }

    #[test]
    fn the_newest_in_a_floating_tags_line_settles_it() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let published = [v("1.0.0"), v("1.1.0"), v("1.1.3"), v("2.0.0")];
        let ours = v("1.1.0");
        assert_eq!(
            newest_in_line("latest", &ours, &published),
            Some(v("2.0.0"))
        );
        assert_eq!(newest_in_line("1", &ours, &published), Some(v("1.1.3")));
        assert_eq!(newest_in_line("1.1", &ours, &published), Some(v("1.1.3")));
        assert_eq!(
            newest_in_line("1.0", &v("1.0.0"), &published),
            Some(v("1.0.0"))
        );
        assert_eq!(newest_in_line("3", &v("3.0.0"), &published), None);
    }

    #[test]
    fn floating_tags_only_move_forward() {
        use Action::*;
        let got = plan(
            "1.0.1",
            &["1.0.0", "1.1.0", "latest", "1", "1.0", "1.1"],
            &[],
        );
        assert_eq!(
            got,
            [
                ("1.0.1".into(), Push),
                ("1.0".into(), Move),
                ("1".into(), HoldBack),
                ("latest".into(), HoldBack)
            ]
        );
        let got = plan("2.0.0", &["1.1.0"], &[]);
        assert!(got.iter().all(|(_, a)| *a == Push || *a == Move));
    }

    #[test]
    fn a_shared_date_tag_never_moves_back_to_an_older_release() {
        use Action::*;
        let v = explicit("1.0.0", "test", &crate::version::Scheme::Semver).unwrap();
        let tags = vec![
            ("1.0.0".to_string(), Role::Version),
            ("20250115".to_string(), Role::Moving),
        ];
        let existing: Vec<String> = ["1.0.0", "1.1.0", "20250115"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = decide(
            &tags,
            &v,
            "new",
            &BTreeMap::new(),
            &existing,
            None,
            false,
            &crate::version::Scheme::Semver,
        );
        assert_eq!(got[1].action, HoldBack, "{got:?}");
        let v = explicit("1.2.0", "test", &crate::version::Scheme::Semver).unwrap();
        let got = decide(
            &tags,
            &v,
            "new",
            &BTreeMap::new(),
            &existing,
            None,
            false,
            &crate::version::Scheme::Semver,
        );
        assert_eq!(got[1].action, Move, "{got:?}");
    }

    #[test]
    fn a_rollback_hold_keeps_floating_tags_until_a_newer_release() {
        use Action::*;
        let existing = [
            "1.0.0",
            "1.1.0",
            "latest",
            "1",
            "1.0",
            "1.1",
            "xtask-rollback-hold",
        ];
        // 1.1.0 was rolled back to 1.0.0: re-releasing it moves nothing that floats.
        let got = plan_held("1.1.0", &existing, &[], Some("1.1.0"));
        assert!(got.iter().skip(1).all(|(_, a)| *a == HoldBack), "{got:?}");
        let got = plan_held("1.2.0", &existing, &[], Some("1.1.0"));
        assert!(got.iter().skip(1).all(|(_, a)| *a == Move), "{got:?}");
    }

    #[test]
    fn versions_are_immutable() {
        let got = plan("1.0.0", &["1.0.0"], &[("1.0.0", "old")]);
        assert_eq!(got[0], ("1.0.0".into(), Action::Refuse));
        let got = plan("1.0.0", &["1.0.0"], &[("1.0.0", "new")]);
        assert_eq!(got[0], ("1.0.0".into(), Action::AlreadyThere));
    }

    #[test]
    fn rollback_picks_the_release_before_latest() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let rel = vec![
            (v("1.0.0"), "d0".to_string()),
            (v("1.0.1"), "d1".to_string()),
            (v("1.1.0"), "d2".to_string()),
        ];
        assert_eq!(
            rollback_target(&rel, Some("d2"), None).unwrap().0,
            v("1.0.1")
        );
        assert_eq!(
            rollback_target(&rel, Some("d2"), Some(&v("1.0.0")))
                .unwrap()
                .1,
            "d0"
        );
        assert!(rollback_target(&rel, Some("d0"), None)
            .unwrap_err()
            .contains("oldest"));
        assert!(rollback_target(&rel, None, None).is_err());
        assert!(rollback_target(&rel, Some("d2"), Some(&v("9.9.9")))
            .unwrap_err()
            .contains("not published"));
    }
}
