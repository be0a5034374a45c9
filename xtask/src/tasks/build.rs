//! `cargo xtask build`: decide every image's build (pure), then run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::config::{Image, DOCKERFILE_CANDIDATES};
use crate::engine::{parse_inspect, BuildSpec, Engine};
use crate::flags::BuildArgs;
use crate::project::{Ctx, Identity};
use crate::{input_error, labels, size};

/// One image's build, fully decided.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub hooks: Vec<Cmd>,
    pub build: Cmd,
    /// `name:tag`, primary first.
    pub refs: Vec<String>,
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
    let build = engine.build(&BuildSpec {
        dockerfile: &dockerfile,
        context: &image.context.value,
        target: image.target.as_deref(),
        platform: args.platform.as_deref(),
        no_cache: args.no_cache,
        timestamp,
        build_args: &build_args,
        labels: &labels,
        tags: &refs,
    });
    let hooks = image
        .before_build
        .iter()
        .map(|argv| Cmd::new(&argv[0]).args(argv[1..].iter().cloned()))
        .collect();
    Ok(Plan {
        name: image.name.clone(),
        hooks,
        build,
        refs,
    })
}

#[derive(Serialize)]
pub struct Built {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub seconds: f64,
}

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let images = ctx.images()?;
    let id = ctx.identity(&args.version)?;
    let engine = ctx.engine()?;
    let timestamp = ctx.reproducible_epoch(&id);
    let plans = images
        .iter()
        .map(|i| plan(&ctx.root, &engine, i, &id, args, timestamp, ctx.env.now))
        .collect::<Result<Vec<_>>>()?;
    let mut built = Vec::new();
    for p in &plans {
        let start = Instant::now();
        for hook in &p.hooks {
            ctx.sh.run(hook)?;
        }
        ctx.sh.run(&p.build)?;
        if ctx.sh.dry_run {
            continue;
        }
        let info = parse_inspect(&ctx.sh.read(&engine.inspect_images(&p.refs[..1]))?)?;
        let info = info
            .first()
            .ok_or_else(|| anyhow::anyhow!("`{}` vanished right after its build", p.refs[0]))?;
        built.push(Built {
            name: p.name.clone(),
            id: info.bare_id().to_string(),
            size: info.size,
            tags: id.tags.clone(),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "version": id.version.text, "images": built }));
    }
    let rows: Vec<Vec<String>> = built
        .iter()
        .map(|b| {
            vec![
                format!("built {}", b.name),
                b.id.chars().take(12).collect(),
                size::human(b.size),
                format!("{:.1}s", b.seconds),
                b.tags.join(", "),
            ]
        })
        .collect();
    print!("{}", crate::output::table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
