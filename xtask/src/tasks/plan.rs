//! `cargo xtask plan`: each image's cache key, what `build` would do, and per step whether
//! podman would take it from its layer cache, with the reason for the first step it would not.

use std::time::Instant;

use anyhow::Result;

use crate::cache::{self, Action, Memory};
use crate::flags::BuildArgs;
use crate::project::Ctx;

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let start = Instant::now();
    let engine = ctx.engine()?;
    let id = ctx.identity(&args.version)?;
    let timestamp = ctx.reproducible_epoch(&id);
    let mem = Memory::load(&ctx.root);
    let mut plans = Vec::new();
    for image in ctx.images()? {
        let p = super::build::plan(&ctx.root, &engine, image, &id, args, timestamp, ctx.env.now)?;
        let mut ip = cache::plan_image(
            &ctx.root,
            engine.kind,
            &p.keys,
            &mem,
            super::build::now_ns(),
        )?;
        if args.force && ip.action != Action::Build {
            ip.action = Action::Build;
        }
        plans.push(ip);
    }
    if ctx.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            images: &'a [cache::ImagePlan],
        }
        return ctx.print_json(&Out { images: &plans });
    }
    for ip in &plans {
        let action = match ip.action {
            Action::UpToDate => "up to date: nothing to run",
            Action::Retag => "retag: the image exists, tags are missing",
            Action::Build => "build",
        };
        println!("{}  {}  {action}", ip.name, super::build::short(&ip.key));
        let rows: Vec<Vec<String>> = ip
            .steps
            .iter()
            .map(|s| {
                let state = if s.step == 1 {
                    ""
                } else if s.cached {
                    "cached"
                } else {
                    "build"
                };
                let text = match &s.reason {
                    Some(r) if !r.starts_with("step ") => format!("{}  ({r})", s.instruction),
                    _ => s.instruction.clone(),
                };
                vec![
                    format!("  [{}] {}", s.stage, s.step),
                    state.to_string(),
                    text,
                ]
            })
            .collect();
        print!("{}", crate::output::table(&rows));
    }
    eprintln!("planned in {:.2}s", start.elapsed().as_secs_f64());
    Ok(())
}
