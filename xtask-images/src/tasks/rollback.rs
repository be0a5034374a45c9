//! `cargo xtask rollback`: point `latest` and the target's line (`X`, `X.Y`) at an earlier
//! release's digest, by copy, never by rebuilding; verify; retag locally; run the redeploy hooks.

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::flags::{PushArgs, RollbackArgs};
use crate::input_error;
use crate::project::Ctx;
use crate::publish::{self, decide};

use super::push;

#[derive(Serialize)]
struct RolledBack {
    name: String,
    from: Option<String>,
    to: String,
    digest: String,
    pinned: String,
    tags: Vec<String>,
    local: String,
}

/// `rollback --clear`: the hold tag points at what `latest` holds now, so nothing newer than
/// that is held; this machine's record of the hold goes.
fn clear(
    ctx: &Ctx,
    engine: &crate::engine::Engine,
    args: &RollbackArgs,
    attempts: u32,
) -> Result<()> {
    let limit = push::push_timeout(ctx)?;
    let mut cleared = Vec::new();
    for image in ctx.images()? {
        let dest = push::destination(ctx, args.registry.as_deref(), image)?;
        push::login(ctx, engine, &dest, attempts)?;
        let (existing, _) = push::read_remote(ctx, &dest, &[], attempts)?;
        crate::hold::set_local(&ctx.state, &image.name, None);
        let held = push::read_hold(ctx, &dest, &existing, attempts)?;
        let Some(held) = held else { continue };
        if !existing.iter().any(|t| t == "latest") {
            continue;
        }
        let latest = push::read_tag(ctx, &dest, "latest", attempts)?.digest;
        let cmd = publish::copy(&dest, &dest.by_digest(&latest, "latest"), publish::HOLD_TAG);
        push::retrying(attempts, "lifting the rollback hold", || {
            ctx.sh.run_within(&cmd, limit)
        })?;
        cleared.push(serde_json::json!({ "name": image.name, "held": held.to_string() }));
        if !ctx.json {
            println!(
                "{}: lifted the hold on {held}; floating tags move forward again",
                image.name
            );
        }
    }
    if ctx.json && !ctx.sh.dry_run {
        ctx.print_json(&serde_json::json!({ "cleared": cleared }))?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, args: &RollbackArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let to = match &args.to {
        Some(v) => Some(
            ctx.config
                .scheme
                .parse(v)
                .map(|p| p.semver)
                .ok_or_else(|| {
                    input_error!(
                        "--to `{v}` is not a version of version_scheme `{}`",
                        ctx.config.scheme.name()
                    )
                })?,
        ),
        None => None,
    };
    let attempts = push::attempts(ctx, &PushArgs::default());
    if args.clear {
        return clear(ctx, &engine, args, attempts);
    }
    let limit = push::push_timeout(ctx)?;
    let mut done = Vec::new();
    for image in ctx.images()? {
        let dest = push::destination(ctx, args.registry.as_deref(), image)?;
        push::login(ctx, &engine, &dest, attempts)?;
        let _lock = (!ctx.sh.dry_run)
            .then(|| {
                publish::lock::acquire(
                    &dest.describe(),
                    &format!("rollback of {}", image.name),
                    publish::lock::wait_limit(),
                )
            })
            .transpose()?;
        let (existing, _) = push::read_remote(ctx, &dest, &[], attempts)?;
        let published = push::published_releases(ctx, &dest, &existing, attempts)?;
        let tag_of = |v: &semver::Version| {
            published
                .iter()
                .find(|r| r.version == *v)
                .map_or_else(|| v.to_string(), |r| r.tag.clone())
        };
        let releases: Vec<(semver::Version, String)> = published
            .iter()
            .map(|r| (r.version.clone(), r.digest.clone()))
            .collect();
        let latest = if existing.iter().any(|t| t == "latest") {
            Some(push::read_tag(ctx, &dest, "latest", attempts)?.digest)
        } else {
            None
        };
        let from_version = releases
            .iter()
            .filter(|(_, d)| Some(d) == latest.as_ref())
            .map(|(v, _)| v.clone())
            .max();
        let from = from_version.as_ref().map(&tag_of);
        let (target, digest) = decide::rollback_target(&releases, latest.as_deref(), to.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", image.name))?;
        let target_tag = tag_of(&target);
        // A digest nobody signed with the release key (swapped in the registry) is never
        // rolled back to.
        push::signature_of(
            ctx,
            crate::signing::signer(ctx, &dest)?.as_ref(),
            &dest,
            &image.name,
            &target_tag,
            &digest,
            attempts,
            &format!("roll back {} to {target_tag}", image.name),
        )
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing moved"))?;
        let (major, minor) = ctx.config.scheme.parse(&target_tag).map_or_else(
            || {
                (
                    target.major.to_string(),
                    format!("{}.{}", target.major, target.minor),
                )
            },
            |p| p.line,
        );
        let tags = vec!["latest".to_string(), major, minor];
        // Hold what is rolled back, where every publishing machine sees it, before anything
        // moves: the hold tag points at that release, and no floating tag moves to it (or to
        // anything older) again.
        // An earlier hold on a newer release stays: rolling back further holds more, not less.
        let earlier = push::read_hold(ctx, &dest, &existing, attempts)?;
        let newer_held = |v: &semver::Version| earlier.as_ref().is_none_or(|e| v > e);
        if let (Some(latest), Some(held), Some(held_version)) = (
            latest.as_deref().filter(|d| **d != digest),
            from.as_deref(),
            from_version.as_ref().filter(|v| newer_held(v)),
        ) {
            let cmd = publish::copy(&dest, &dest.by_digest(latest, held), publish::HOLD_TAG);
            push::retrying(attempts, "recording the rollback hold", || {
                ctx.sh.run_within(&cmd, limit)
            })?;
            crate::hold::set_local(&ctx.state, &image.name, Some(held_version));
        }
        for tag in &tags {
            let cmd = publish::copy(&dest, &dest.by_digest(&digest, &target_tag), tag);
            push::retrying(attempts, &format!("copying to `{tag}`"), || {
                ctx.sh.run_within(&cmd, limit)
            })?;
            if !ctx.sh.dry_run {
                push::verify(ctx, &dest, tag, &digest, None, attempts)?;
            }
        }
        // The local `NAME:latest` follows, so a compose file using it runs the rolled-back image.
        let local = format!("{}:latest", image.name);
        let (pull, named) = publish::pull(&engine, &dest, &digest, &target_tag, &local);
        if named {
            ctx.sh.run(&pull)?;
        } else if ctx.sh.dry_run {
            println!("{pull}");
        } else {
            eprintln!("$ {pull}");
            let pulled = ctx.sh.read(&pull)?;
            let pulled_id = pulled.lines().last().unwrap_or_default().trim().to_string();
            for t in engine.tag(&pulled_id, std::slice::from_ref(&local)) {
                ctx.sh.run(&t)?;
            }
        }
        done.push(RolledBack {
            name: image.name.clone(),
            from,
            to: target_tag.clone(),
            pinned: dest.pinned(&target_tag, &digest),
            digest,
            tags,
            local,
        });
    }
    for argv in &ctx.config.rollback_commands {
        ctx.sh
            .run(&Cmd::new(&argv[0]).args(argv[1..].iter().cloned()))?;
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": done }));
    }
    for r in &done {
        println!(
            "rolled back {} from {} to {}: {} now hold {}",
            r.name,
            r.from.as_deref().unwrap_or("?"),
            r.to,
            r.tags.join(", "),
            r.pinned
        );
    }
    Ok(())
}
