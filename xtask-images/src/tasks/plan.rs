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
    let mut mem = Memory::load(&ctx.state);
    if engine.kind == crate::engine::EngineKind::Podman {
        mem.locate(&ctx.sh)?;
    } else {
        // Only podman's image store is read; with docker nothing is known to be built.
        mem.images = None;
    }
    let mut plans = Vec::new();
    let mut keys_time = std::time::Duration::ZERO;
    let cli_args = super::build::parse_build_args(&args.build_args)?;
    // Bases come first: an image built from one is keyed on the base as its build would leave it.
    let mut made = std::collections::BTreeMap::new();
    for node in ctx.nodes(args.version.dev, &cli_args)? {
        let mut p =
            super::build::plan(&ctx.root, &engine, &node, &id, args, timestamp, ctx.env.now)?;
        for b in p.keys.bases.values_mut() {
            b.id = made.get(&b.name).cloned();
        }
        let keys_start = Instant::now();
        if p.manifest.is_some() && engine.kind == crate::engine::EngineKind::Podman {
            // A manifest list: one plan per platform, up to date when that platform's key has
            // its image. Podman's layer cache is off for explicit platforms.
            for pl in &p.platforms {
                let k = cache::KeyInputs {
                    platform: Some(pl.clone()),
                    ..p.keys.clone()
                };
                let mut ip = cache::plan_image(&ctx.root, engine.kind, &k, &mem, ctx.env.now_ns)?;
                let built = mem.state.steps.get(&ip.key).cloned();
                (ip.action, ip.id) = match built {
                    Some(id) if !args.force => (Action::UpToDate, Some(id)),
                    _ => (Action::Build, None),
                };
                for (i, s) in ip.steps.iter_mut().filter(|s| s.step > 1).enumerate() {
                    s.cached = false;
                    s.reason = None;
                    s.note = (i == 0).then(|| {
                        "no layer cache for explicit platforms: podman 4.3 hands one platform's cached layers to another".into()
                    });
                }
                ip.platform = Some(pl.clone());
                plans.push(ip);
            }
            keys_time += keys_start.elapsed();
            continue;
        }
        let mut ip = cache::plan_image(&ctx.root, engine.kind, &p.keys, &mem, ctx.env.now_ns)?;
        keys_time += keys_start.elapsed();
        if args.force && ip.action != Action::Build {
            ip.action = Action::Build;
        }
        made.insert(
            ip.name.clone(),
            cache::stand_in(&ip, p.keys.labels.len(), &mem),
        );
        plans.push(ip);
    }
    // On stderr, so `--json` output stays one document; the benchmark reads the key time here.
    let timing = format!(
        "planned in {:.3}s (keys {:.3}s)",
        start.elapsed().as_secs_f64(),
        keys_time.as_secs_f64()
    );
    if ctx.json {
        eprintln!("{timing}");
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
        let platform = ip
            .platform
            .as_deref()
            .map_or(String::new(), |p| format!(" {p}"));
        println!(
            "{}{platform}  {}  {action}",
            ip.name,
            super::build::short(&ip.key)
        );
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
                let text = match (&s.reason, &s.note) {
                    (Some(r), _) if !r.starts_with("step ") => format!("{}  ({r})", s.instruction),
                    (_, Some(n)) => format!("{}  (note: {n})", s.instruction),
                    _ => s.instruction.clone(),
                };
                vec![
                    format!("  [{}] {}", s.stage, s.step),
                    crate::output::status(state, crate::output::Stream::Out),
                    text,
                ]
            })
            .collect();
        print!(
            "{}",
            crate::output::headed(
                &["  [stage] step", "podman", "instruction"],
                rows,
                crate::output::Stream::Out
            )
        );
    }
    eprintln!("{timing}");
    Ok(())
}
