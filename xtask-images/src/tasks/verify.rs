//! `cargo xtask verify [TAG|DIGEST…]`: what each release in the destination is signed by.
//! Every version tag and floating tag (or the ones named) → its digest → the release it belongs
//! to → the signature in the lookaside, checked against the release key alone.

use anyhow::Result;
use serde::Serialize;

use crate::flags::VerifyArgs;
use crate::input_error;
use crate::project::Ctx;
use crate::signing::{Subject, Verdict};

use super::push;

#[derive(Serialize)]
struct Entry {
    reference: String,
    digest: String,
    /// The release (version tag) that holds the digest: the signature's identity.
    release: Option<String>,
    signature: Verdict,
}

pub fn run(ctx: &Ctx, args: &VerifyArgs) -> Result<bool> {
    let engine = ctx.engine()?;
    let attempts = push::attempts(ctx, &crate::flags::PushArgs::default());
    let mut report = Vec::new();
    let mut ok = true;
    for image in ctx.images()? {
        let dest = push::destination(ctx, args.registry.as_deref(), image)?;
        let Some(signer) = crate::signing::signer(ctx, &dest)? else {
            return Err(input_error!(
                "signing is not configured: add [sign] to docker/images.toml (or set XTASK_SIGN_KEY) to say which key releases are signed with"
            ));
        };
        push::login(ctx, &engine, &dest, attempts)?;
        let (existing, _) = push::read_remote(ctx, &dest, &[], attempts)?;
        let releases: Vec<(String, String)> =
            push::published_releases(ctx, &dest, &existing, attempts)?
                .into_iter()
                .map(|r| (r.tag, r.digest))
                .collect();
        let wanted: Vec<String> = if args.references.is_empty() {
            let floating = |t: &String| {
                t == "latest"
                    || (t.split('.').count() <= 2
                        && t.split('.').all(|p| {
                            !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit())
                        }))
            };
            releases
                .iter()
                .map(|(t, _)| t.clone())
                .chain(existing.iter().filter(|t| floating(t)).cloned())
                .collect()
        } else {
            args.references.clone()
        };
        let mut entries = Vec::new();
        for reference in wanted {
            let digest = if reference.starts_with("sha256:") {
                reference.clone()
            } else if existing.contains(&reference) {
                push::read_tag(ctx, &dest, &reference, attempts)?.digest
            } else {
                return Err(input_error!(
                    "{}: `{reference}` is neither a tag of {} nor a digest (sha256:…)",
                    image.name,
                    dest.describe()
                ));
            };
            // The newest release holding the digest names the identity it was signed as.
            let release = releases
                .iter()
                .rev()
                .find(|(_, d)| *d == digest)
                .map(|(t, _)| t.clone());
            let signature = match &release {
                Some(tag) => {
                    let manifest = push::manifest_at(ctx, &dest, &digest, attempts)?;
                    let identity = crate::signing::identity(&dest, &image.name, tag);
                    signer.verify(
                        ctx,
                        &Subject {
                            dest: &dest,
                            name: &image.name,
                            manifest: &manifest,
                            digest: &digest,
                            identity: &identity,
                        },
                    )?
                }
                None => Verdict::Invalid {
                    why: "no release version tag holds this digest, so nothing vouches for it"
                        .into(),
                },
            };
            ok &= signature.ok();
            entries.push(Entry {
                reference,
                digest,
                release,
                signature,
            });
        }
        report.push((image.name.clone(), dest.describe(), entries));
    }
    if ctx.json {
        let images: Vec<serde_json::Value> = report
            .iter()
            .map(|(name, dest, entries)| serde_json::json!({ "name": name, "destination": dest, "references": entries }))
            .collect();
        ctx.print_json(&serde_json::json!({ "verified": ok, "images": images }))?;
        return Ok(ok);
    }
    let mut rows = Vec::new();
    for (name, _, entries) in &report {
        for e in entries {
            rows.push(vec![
                name.clone(),
                e.reference.clone(),
                e.digest.chars().take(19).collect(),
                e.release.clone().unwrap_or_else(|| "-".into()),
                crate::output::status(&e.signature.describe(), crate::output::Stream::Out),
            ]);
        }
    }
    print!(
        "{}",
        crate::output::headed(
            &["image", "reference", "digest", "release", "signature"],
            rows,
            crate::output::Stream::Out
        )
    );
    let bad = report
        .iter()
        .flat_map(|(_, _, e)| e)
        .filter(|e| !e.signature.ok())
        .count();
    if bad > 0 {
        eprintln!("error: {bad} reference(s) not signed by the release key");
    }
    Ok(ok)
}
