//! `cargo xtask clean`: prune dangling images and, with `--keep N`, this project's old versions.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::Serialize;

use crate::engine::{Engine, EngineKind};
use crate::flags::CleanArgs;
use crate::project::Ctx;

/// One local name of an image: `(image id, repository, tag)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name {
    pub id: String,
    pub repository: String,
    pub tag: String,
}

/// Parses [`crate::engine::Engine::list_names`] output.
pub fn parse_names(listing: &str) -> Vec<Name> {
    listing
        .lines()
        .filter_map(|l| {
            let (id, reference) = l.trim().split_once(' ')?;
            let (repository, tag) = reference.rsplit_once(':')?;
            if tag == "<none>" {
                return None;
            }
            Some(Name {
                id: id.strip_prefix("sha256:").unwrap_or(id).to_string(),
                repository: repository.to_string(),
                tag: tag.to_string(),
            })
        })
        .collect()
}

/// Tags that name one build (a version, a commit, a date), as opposed to moving pointers
/// (`latest`, `1.2`, `staging`), which `--keep` never removes.
fn names_one_build(tag: &str) -> bool {
    let commit = tag.len() == 7
        && tag
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let date = tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_digit());
    commit || date || semver::Version::parse(tag).is_ok()
}

/// The names to remove so only the newest `keep` versions remain; images a container uses are
/// left whole. Returns `(names to untag, image ids skipped because a container uses them)`.
pub fn plan_keep(
    names: &[Name],
    keep: usize,
    in_use: &BTreeSet<String>,
) -> (Vec<Name>, Vec<String>) {
    let mut newest: BTreeMap<&str, semver::Version> = BTreeMap::new();
    for n in names {
        if let Ok(v) = semver::Version::parse(&n.tag) {
            let e = newest.entry(n.id.as_str()).or_insert_with(|| v.clone());
            if v > *e {
                *e = v;
            }
        }
    }
    let mut versions: Vec<&semver::Version> = newest
        .values()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    versions.reverse();
    let cutoff: BTreeSet<&semver::Version> = versions.into_iter().skip(keep).collect();
    let old_ids: BTreeSet<&str> = newest
        .iter()
        .filter(|(_, v)| cutoff.contains(v))
        .map(|(id, _)| *id)
        .collect();
    let mut remove = Vec::new();
    let mut skipped = BTreeSet::new();
    for n in names {
        if !old_ids.contains(n.id.as_str()) || !names_one_build(&n.tag) {
            continue;
        }
        if in_use
            .iter()
            .any(|u| u.strip_prefix("sha256:").unwrap_or(u) == n.id)
        {
            skipped.insert(n.id.clone());
        } else {
            remove.push(n.clone());
        }
    }
    (remove, skipped.into_iter().collect())
}

#[derive(Serialize)]
struct Report {
    untagged: Vec<String>,
    skipped_in_use: Vec<String>,
    pruned: bool,
    /// Working containers of this project's builds that were killed.
    working_containers: Vec<String>,
    /// Manifest lists removed because they had lost a platform image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    repaired_lists: Vec<String>,
}

/// The manifest list a failed `podman images` names: on podman 4.3, a list whose platform
/// image was removed makes every listing fail ("fetching target platform image selected from
/// image index … for image with ID \"…\"").
pub fn broken_list(stderr: &str) -> Option<String> {
    let id = stderr
        .split("for image with ID \"")
        .nth(1)?
        .split('"')
        .next()?;
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The broken manifest list that makes `podman images` fail here, if one does.
pub fn find_broken_list(ctx: &Ctx, engine: &crate::engine::Engine) -> Option<String> {
    let out = ctx
        .sh
        .probe(&engine.cmd().args(["images", "--quiet"]))
        .ok()?;
    (!out.success()).then(|| broken_list(&out.stderr)).flatten()
}

/// Removes broken manifest lists until `podman images` works again: `manifest rm`, else
/// `rmi --force`. Returns their IDs.
fn repair_lists(ctx: &Ctx, engine: &crate::engine::Engine) -> Vec<String> {
    let mut repaired = Vec::new();
    while let Some(id) = find_broken_list(ctx, engine).filter(|_| repaired.len() < 20) {
        if repaired.contains(&id) {
            break;
        }
        eprintln!(
            "note: manifest list {} lost a platform image, which breaks every `podman images` (podman 4.3); removing the list",
            &id[..12]
        );
        let rm = engine.cmd().args(["manifest", "rm", &id]);
        if ctx.sh.run(&rm).is_err() {
            let _ = ctx.sh.run(&engine.cmd().args(["rmi", "--force", &id]));
        }
        repaired.push(id);
        if ctx.sh.dry_run {
            break;
        }
    }
    repaired
}

/// The bare IDs of the images containers use, running or not.
fn images_in_use(ctx: &Ctx, engine: &Engine) -> Result<BTreeSet<String>> {
    let listed = ctx.sh.read(&engine.container_images())?;
    let ids = match engine.kind {
        EngineKind::Podman => listed,
        EngineKind::Docker => {
            let containers: Vec<String> = listed.lines().map(str::to_string).collect();
            if containers.is_empty() {
                return Ok(BTreeSet::new());
            }
            // A container removed since the listing fails the inspect; the others are still said.
            ctx.sh.probe(&engine.images_of(&containers))?.stdout
        }
    };
    Ok(ids
        .lines()
        .map(|l| l.trim().trim_start_matches("sha256:").to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

pub fn run(ctx: &Ctx, args: &CleanArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let mut report = Report {
        untagged: Vec::new(),
        skipped_in_use: Vec::new(),
        pruned: false,
        working_containers: Vec::new(),
        repaired_lists: Vec::new(),
    };
    if engine.kind == EngineKind::Podman {
        report.repaired_lists = repair_lists(ctx, &engine);
        let left: Vec<String> = crate::working::leftovers(&ctx.state, &ctx.sh)
            .into_iter()
            .map(|w| w.id)
            .collect();
        crate::working::remove(&ctx.sh, &left);
        if !ctx.sh.dry_run {
            crate::working::forget_finished(&ctx.state);
        }
        report.working_containers = left;
    }
    if let Some(keep) = args.keep {
        let in_use = images_in_use(ctx, &engine)?;
        let registry = ctx.registry(None)?;
        for image in ctx.images()? {
            let mut repos = vec![image.name.clone()];
            repos.extend(registry.as_ref().map(|r| format!("{r}/{}", image.name)));
            let mut names = Vec::new();
            for repo in &repos {
                names.extend(parse_names(&ctx.sh.read(&engine.list_names(repo))?));
            }
            let (remove, skipped) = plan_keep(&names, keep, &in_use);
            let refs: Vec<String> = remove
                .iter()
                .map(|n| format!("{}:{}", n.repository, n.tag))
                .collect();
            for r in &refs {
                super::remove_name(ctx, &engine, r, true)?;
            }
            report.untagged.extend(refs);
            report.skipped_in_use.extend(skipped);
        }
    }
    ctx.sh.run(&engine.prune_dangling())?;
    report.pruned = true;
    // podman 4.3's prune also deletes unnamed images a manifest list still refers to, which
    // leaves that list broken: remove such lists too.
    if engine.kind == EngineKind::Podman {
        report.repaired_lists.extend(repair_lists(ctx, &engine));
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&report);
    }
    for id in &report.skipped_in_use {
        eprintln!("kept {}: a container uses it", &id[..id.len().min(12)]);
    }
    println!(
        "removed {} old tag(s) and {} working container(s) of interrupted builds, pruned dangling images",
        report.untagged.len(),
        report.working_containers.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str, tag: &str) -> Name {
        Name {
            id: id.into(),
            repository: "localhost/app".into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn parses_listings() {
        let got = parse_names(
            "sha256:aa localhost/app:1.0.0\nbb localhost/app:<none>\ncc r.io:5000/x/app:latest\n",
        );
        assert_eq!(
            got,
            vec![
                Name {
                    id: "aa".into(),
                    repository: "localhost/app".into(),
                    tag: "1.0.0".into()
                },
                Name {
                    id: "cc".into(),
                    repository: "r.io:5000/x/app".into(),
                    tag: "latest".into()
                },
            ]
        );
    }

    #[test]
    fn keeps_the_newest_versions() {
        let names = vec![
            n("a", "1.0.0"),
            n("a", "abc1234"),
            n("a", "20240101"),
            n("b", "1.1.0"),
            n("b", "1.1"),
            n("c", "2.0.0"),
            n("c", "latest"),
            n("c", "2"),
            n("d", "0.9.0"),
        ];
        let (remove, skipped) = plan_keep(&names, 2, &BTreeSet::from(["sha256:d".to_string()]));
        let tags: Vec<&str> = remove.iter().map(|n| n.tag.as_str()).collect();
        // 2.0.0 and 1.1.0 stay; 1.0.0 goes with its commit and date tags; 0.9.0 is in use.
        assert_eq!(tags, ["1.0.0", "abc1234", "20240101"]);
        assert_eq!(skipped, ["d"]);
        let (remove, _) = plan_keep(&names, 1, &BTreeSet::new());
        let tags: Vec<&str> = remove.iter().map(|n| n.tag.as_str()).collect();
        // Floating `1.1` is never removed by --keep.
        assert_eq!(tags, ["1.0.0", "abc1234", "20240101", "1.1.0", "0.9.0"]);
    }

    #[test]
    fn names_the_list_that_breaks_podman_images() {
        let err = "Error: fetching target platform image selected from image index: reading manifest for image with ID \"6f1c2a3b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8\": file does not exist";
        assert_eq!(
            broken_list(err).as_deref(),
            Some("6f1c2a3b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8")
        );
        assert_eq!(broken_list("Error: something else"), None);
    }
}
