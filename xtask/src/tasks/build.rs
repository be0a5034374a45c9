//! `cargo xtask build`: decide every image's build (pure), then run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::config::{check_platform, Image, DOCKERFILE_CANDIDATES};
use crate::engine::{
    manifest_platforms, parse_inspect, platform_matches, BuildSpec, Engine, EngineKind, ImageInfo,
};
use crate::flags::BuildArgs;
use crate::project::{Ctx, Identity};
use crate::{input_error, labels, size};

/// One image's build, fully decided.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub hooks: Vec<Cmd>,
    /// One build, or one per platform into the manifest list.
    pub builds: Vec<Cmd>,
    pub manifest: Option<Manifest>,
    /// Platforms asked for explicitly; what was built is checked against them.
    pub platforms: Vec<String>,
    /// `name:tag`, primary first.
    pub refs: Vec<String>,
}

/// A multi-platform build: a manifest list under the primary name, then the other names.
#[derive(Debug)]
pub struct Manifest {
    pub list: String,
    pub create: Cmd,
    pub tag: Vec<Cmd>,
}

pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(input_error!("--build-arg `{kv}` must be KEY=VALUE")),
        })
        .collect()
}

/// Which Dockerfile the build uses, checked to exist, with the config line in the error if not.
pub fn dockerfile(root: &Path, image: &Image, dev: bool) -> Result<PathBuf> {
    let chosen = if dev {
        image.dev_dockerfile.as_ref().ok_or_else(|| {
            input_error!(
                "image `{}` has no dev Dockerfile; create docker/Dockerfile.dev or set `dev_dockerfile` in docker/images.toml",
                image.name
            )
        })?
    } else {
        &image.dockerfile
    };
    if root.join(&chosen.value).is_file() {
        return Ok(chosen.value.clone());
    }
    if chosen.origin.starts_with("none of") {
        return Err(input_error!(
            "image `{}` has no Dockerfile: none of {} exists; create one or set `dockerfile` in docker/images.toml",
            image.name,
            DOCKERFILE_CANDIDATES.join(", ")
        ));
    }
    Err(input_error!(
        "Dockerfile `{}` not found (set at {}); create it or fix the path",
        chosen.value.display(),
        chosen.origin
    ))
}

/// Decides one image's build: hooks, the exact engine argv, and the names it gets.
pub fn plan(
    root: &Path,
    engine: &Engine,
    image: &Image,
    id: &Identity,
    args: &BuildArgs,
    timestamp: Option<i64>,
    now: i64,
) -> Result<Plan> {
    let dockerfile = dockerfile(root, image, args.version.dev)?;
    if !root.join(&image.context.value).is_dir() {
        return Err(input_error!(
            "build context `{}` of image `{}` is not a directory (set at {})",
            image.context.value.display(),
            image.name,
            image.context.origin
        ));
    }
    let platforms = if args.platform.is_empty() {
        image.platforms.clone()
    } else {
        args.platform.clone()
    };
    for p in &platforms {
        check_platform(p).map_err(|e| input_error!("--platform: {e}"))?;
    }
    let mut build_args = image.build_args.clone();
    build_args.extend(parse_build_args(&args.build_args)?);
    let labels = labels::compute(
        image,
        &id.version,
        id.git.as_ref(),
        timestamp.unwrap_or(now),
    );
    let refs: Vec<String> = id
        .tags
        .iter()
        .map(|t| format!("{}:{t}", image.name))
        .collect();
    let spec = BuildSpec {
        dockerfile: &dockerfile,
        context: &image.context.value,
        target: image.target.as_deref(),
        platform: None,
        manifest: None,
        layers: platforms.is_empty(),
        no_cache: args.no_cache,
        timestamp,
        build_args: &build_args,
        labels: &labels,
        tags: &refs,
    };
    let (builds, manifest) = if platforms.len() <= 1 {
        (
            vec![engine.build(&BuildSpec {
                platform: platforms.first().map(String::as_str),
                ..spec
            })],
            None,
        )
    } else {
        if engine.kind != EngineKind::Podman || !engine.features.manifest {
            return Err(input_error!(
                "building {} platforms at once needs podman's `--manifest`; build them one --platform at a time",
                platforms.len()
            ));
        }
        let list = &refs[0];
        // Each platform's image is named too: podman 4.3's `image prune` deletes unnamed list
        // members and leaves a list that breaks every later `podman images`.
        let builds = platforms
            .iter()
            .map(|p| {
                let own = [platform_ref(list, p)];
                engine.build(&BuildSpec {
                    platform: Some(p),
                    manifest: None,
                    tags: &own,
                    ..spec
                })
            })
            .collect();
        let manifest = Manifest {
            list: list.clone(),
            create: engine.manifest_create(
                list,
                &platforms
                    .iter()
                    .map(|p| platform_ref(list, p))
                    .collect::<Vec<_>>(),
            ),
            tag: engine.tag(list, &refs[1..]),
        };
        (builds, Some(manifest))
    };
    let hooks = image
        .before_build
        .iter()
        .map(|argv| Cmd::new(&argv[0]).args(argv[1..].iter().cloned()))
        .collect();
    Ok(Plan {
        name: image.name.clone(),
        hooks,
        builds,
        manifest,
        platforms,
        refs,
    })
}

/// `app:1.2.3` + `linux/arm64` → `app:1.2.3-linux-arm64`, the name of one platform's image.
pub fn platform_ref(primary: &str, platform: &str) -> String {
    let (name, tag) = primary.rsplit_once(':').unwrap_or((primary, "latest"));
    let tag = crate::reference::tag_from(&format!("{tag}-{}", platform.replace('/', "-")));
    format!("{name}:{tag}")
}

/// The platforms that were built, checked against those asked for.
fn verify_platforms(ctx: &Ctx, engine: &Engine, p: &Plan, info: &ImageInfo) -> Result<Vec<String>> {
    let built = match &p.manifest {
        Some(m) => manifest_platforms(&ctx.sh.read(&engine.manifest_inspect(&m.list))?)?,
        None => vec![format!("{}/{}", info.os, info.architecture)],
    };
    let missing: Vec<&String> = p
        .platforms
        .iter()
        .filter(|a| !built.iter().any(|b| platform_matches(a, b)))
        .collect();
    if !missing.is_empty() {
        return Err(anyhow::anyhow!(
            "`{}` was asked for {} but holds {}; the engine reused a build of another platform (try --no-cache)",
            p.refs[0],
            p.platforms.join(", "),
            built.join(", ")
        ));
    }
    Ok(built)
}

#[derive(Serialize)]
pub struct Built {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub platforms: Vec<String>,
    pub seconds: f64,
}

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let id = ctx.identity(&args.version)?;
    let built = build_all(ctx, &engine, &id, args)?;
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "version": id.version.text, "images": built }));
    }
    print!("{}", table(&built));
    Ok(())
}

pub fn table(built: &[Built]) -> String {
    let rows: Vec<Vec<String>> = built
        .iter()
        .map(|b| {
            vec![
                format!("built {}", b.name),
                b.id.chars().take(12).collect(),
                size::human(b.size),
                format!("{:.1}s", b.seconds),
                format!("{}  {}", b.platforms.join(","), b.tags.join(", ")),
            ]
        })
        .collect();
    crate::output::table(&rows)
}

/// Builds every selected image; returns what was built (nothing under `--dry-run`).
pub fn build_all(
    ctx: &Ctx,
    engine: &Engine,
    id: &Identity,
    args: &BuildArgs,
) -> Result<Vec<Built>> {
    let images = ctx.images()?;
    let engine = engine.clone();
    let timestamp = ctx.reproducible_epoch(id);
    let plans = images
        .iter()
        .map(|i| plan(&ctx.root, &engine, i, id, args, timestamp, ctx.env.now))
        .collect::<Result<Vec<_>>>()?;
    let mut built = Vec::new();
    for p in &plans {
        let start = Instant::now();
        for hook in &p.hooks {
            ctx.sh.run(hook)?;
        }
        if let Some(m) = &p.manifest {
            // Every name this build will give must leave any old list, so the old list is
            // deleted with its last name instead of lingering nameless: podman 4.3 breaks on a
            // list whose member images are later removed.
            for r in &p.refs {
                super::remove_name(ctx, &engine, r, r == &m.list)?;
            }
        }
        for b in &p.builds {
            ctx.sh.run(b)?;
        }
        if let Some(m) = &p.manifest {
            ctx.sh.run(&m.create)?;
        }
        for t in p.manifest.iter().flat_map(|m| &m.tag) {
            ctx.sh.run(t)?;
        }
        if ctx.sh.dry_run {
            continue;
        }
        let info = parse_inspect(&ctx.sh.read(&engine.inspect_images(&p.refs[..1]))?)?;
        let info = info
            .first()
            .ok_or_else(|| anyhow::anyhow!("`{}` vanished right after its build", p.refs[0]))?;
        let platforms = verify_platforms(ctx, &engine, p, info)?;
        built.push(Built {
            name: p.name.clone(),
            id: info.bare_id().to_string(),
            size: info.size,
            tags: id.tags.clone(),
            platforms,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_images_are_named_after_the_list() {
        assert_eq!(
            platform_ref("app:1.2.3", "linux/arm64"),
            "app:1.2.3-linux-arm64"
        );
        assert_eq!(
            platform_ref("reg.io:5000/app:1.2.3", "linux/arm/v7"),
            "reg.io:5000/app:1.2.3-linux-arm-v7"
        );
    }

    #[test]
    fn build_args_must_be_pairs() {
        let ok = parse_build_args(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(ok["B"], "x=y");
        assert_eq!(ok["C"], "");
        let err = parse_build_args(&["A".into()]).unwrap_err().to_string();
        assert_eq!(err, "--build-arg `A` must be KEY=VALUE");
        assert!(parse_build_args(&["=1".into()]).is_err());
    }
}
