//! `cargo xtask tag`: give the built images their registry names.

use anyhow::Result;
use serde::Serialize;

use crate::flags::TagArgs;
use crate::input_error;
use crate::project::Ctx;

#[derive(Serialize)]
struct Tagged {
    name: String,
    source: String,
    targets: Vec<String>,
}

/// `REGISTRY/NAME:TAG` for every tag.
pub fn registry_refs(registry: &str, name: &str, tags: &[String]) -> Vec<String> {
    tags.iter()
        .map(|t| format!("{registry}/{name}:{t}"))
        .collect()
}

pub fn run(ctx: &Ctx, args: &TagArgs) -> Result<()> {
    let registry = ctx.registry(args.registry.as_deref())?.ok_or_else(|| {
        input_error!("no registry to tag for: pass --registry, set XTASK_REGISTRY, or set `registry` in docker/images.toml")
    })?;
    let images = ctx.images()?;
    let id = ctx.identity(&args.version)?;
    let engine = ctx.engine()?;
    let mut done = Vec::new();
    for image in images {
        let source = id.local_ref(&image.name);
        let exists = ctx
            .sh
            .probe(&engine.inspect_images(std::slice::from_ref(&source)))?
            .success();
        if !exists && !ctx.sh.dry_run {
            return Err(anyhow::anyhow!(
                "image `{source}` is not in local storage; build it first with `cargo xtask build`"
            ));
        }
        let targets = registry_refs(&registry, &image.name, &id.tags);
        for cmd in engine.tag(&source, &targets) {
            ctx.sh.run(&cmd)?;
        }
        done.push(Tagged {
            name: image.name.clone(),
            source,
            targets,
        });
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": done }));
    }
    for t in &done {
        println!("tagged {}  {}", t.source, t.targets.join(", "));
    }
    Ok(())
}
