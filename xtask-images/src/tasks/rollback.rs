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

pub fn run(ctx: &Ctx, args: &RollbackArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let to = match &args.to {
        Some(v) => Some(
            semver::Version::parse(v.trim_start_matches('v'))
                .map_err(|_| input_error!("--to `{v}` is not a version like 1.2.3"))?,
        ),
        None => None,
    };
    let attempts = push::attempts(ctx, &PushArgs::default());
    let mut done = Vec::new();
    for image in ctx.images()? {
        let dest = push::destination(ctx, args.registry.as_deref(), image)?;
        push::login(ctx, &engine, &dest, attempts)?;
        let (existing, _) = push::read_remote(ctx, &dest, &[], attempts)?;
        let mut releases = Vec::new();
        for v in decide::releases(&existing) {
            let r = push::read_tag(ctx, &dest, &v.to_string(), attempts)?;
            releases.push((v, r.digest));
        }
        let latest = if existing.iter().any(|t| t == "latest") {
            Some(push::read_tag(ctx, &dest, "latest", attempts)?.digest)
        } else {
            None
        };
        let from = releases
            .iter()
            .filter(|(_, d)| Some(d) == latest.as_ref())
            .map(|(v, _)| v.to_string())
            .max();
        let (target, digest) = decide::rollback_target(&releases, latest.as_deref(), to.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", image.name))?;
        let target_tag = target.to_string();
        let tags = vec![
            "latest".to_string(),
            target.major.to_string(),
            format!("{}.{}", target.major, target.minor),
        ];
        for tag in &tags {
            let cmd = publish::copy(&dest, &dest.by_digest(&digest, &target_tag), tag);
            push::retrying(attempts, &format!("copying to `{tag}`"), || {
                ctx.sh.run(&cmd)
            })?;
            if !ctx.sh.dry_run {
                push::verify(ctx, &dest, tag, &digest, None, attempts)?;
            }
        }
        // The local `NAME:latest` follows, so a compose file using it runs the rolled-back image.
        let pull = publish::pull(&engine, &dest, &digest, &target_tag);
        let local = format!("{}:latest", image.name);
        if ctx.sh.dry_run {
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
