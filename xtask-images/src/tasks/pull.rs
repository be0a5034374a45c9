//! `cargo xtask pull [VERSION]`: a released image into local storage by digest, verified
//! before it is trusted, then named `NAME:VERSION` (the seed's "Pulling Images"). From a
//! registry the copy itself runs under a private `policy.json` requiring the release key
//! (`skopeo copy --policy`), so the engine refuses what the tool's own check might miss.

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::flags::PullArgs;
use crate::project::Ctx;
use crate::publish::{decide, Dest};

use super::push;

#[derive(Serialize)]
struct Pulled {
    name: String,
    version: String,
    digest: String,
    local: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<crate::signing::Verdict>,
}

pub fn run(ctx: &Ctx, args: &PullArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let attempts = push::attempts(ctx, &crate::flags::PushArgs::default());
    let mut done = Vec::new();
    for image in ctx.images()? {
        let dest = push::destination(ctx, args.registry.as_deref(), image)?;
        push::login(ctx, &engine, &dest, attempts)?;
        let (existing, _) = push::read_remote(ctx, &dest, &[], attempts)?;
        let tag = args.version.clone().unwrap_or_else(|| "latest".into());
        if !existing.contains(&tag) {
            return Err(crate::input_error!(
                "{}: {} has no tag `{tag}`",
                image.name,
                dest.describe()
            ));
        }
        let digest = push::read_tag(ctx, &dest, &tag, attempts)?.digest;
        // The release holding the digest: its version names the local image.
        let mut version = None;
        for (_, t) in decide::releases(&existing, &ctx.config.scheme).iter().rev() {
            if push::read_tag(ctx, &dest, t, attempts)?.digest == digest {
                version = Some(t.clone());
                break;
            }
        }
        let version = version.unwrap_or_else(|| tag.clone());
        let signer = crate::signing::signer(ctx, &dest)?;
        let signature = push::signature_of(
            ctx,
            signer.as_ref(),
            &dest,
            &image.name,
            &version,
            &digest,
            attempts,
            &format!("pull {}:{tag}", image.name),
        )?;
        let docker = ctx.engine_kind == crate::engine::EngineKind::Docker;
        // Docker would take `localhost/NAME` for a registry's name, not the one it builds.
        let local = if docker {
            format!("{}:{version}", image.name)
        } else {
            format!("localhost/{}:{version}", image.name)
        };
        let mut copy = Cmd::new("skopeo").args(["copy", "--quiet"]);
        if docker {
            // The policy checks the signature on the way in; the daemon has nowhere to keep it.
            copy = copy.arg("--remove-signatures");
        }
        if let (Some(s), Dest::Registry { repository, .. }) = (&signer, &dest) {
            let (policy, registries_d) = s.pull_config(repository)?;
            copy = copy
                .arg("--policy")
                .arg(policy.to_string_lossy())
                .arg("--registries.d")
                .arg(registries_d.to_string_lossy());
        }
        if let Dest::Registry { insecure: true, .. } = &dest {
            copy = copy.arg("--src-tls-verify=false");
        }
        copy = copy
            .arg(dest.by_digest(&digest, &tag))
            .arg(crate::engine::local_ref(ctx.engine_kind, &local));
        ctx.sh.run(&copy)?;
        done.push(Pulled {
            name: image.name.clone(),
            version,
            digest,
            local,
            signature,
        });
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": done }));
    }
    for p in &done {
        println!(
            "pulled {} ({}){}",
            p.local,
            p.digest,
            p.signature
                .as_ref()
                .map(|v| format!(", {}", v.describe()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
