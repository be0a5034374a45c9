//! `cargo xtask push`, and the publishing sequence `release` shares: read what the destination
//! holds, decide every tag (pure), push the version tag from the image ID, verify it, then copy
//! the other tags by digest, floating tags last.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Image;
use crate::engine::Engine;
use crate::flags::PushArgs;
use crate::project::{Ctx, Identity};
use crate::publish::decide::{self, Action, Role, TagPlan};
use crate::publish::{self, Dest, Remote};
use crate::smoke::report::Masker;
use crate::{input_error, reference};

pub const DEFAULT_ATTEMPTS: u32 = 4;

#[derive(Debug, Serialize)]
pub struct Published {
    pub name: String,
    pub destination: Dest,
    pub version: String,
    pub image_id: String,
    /// The manifest digest every written tag now holds.
    pub digest: Option<String>,
    /// `R/N:X.Y.Z@sha256:…`.
    pub pinned: Option<String>,
    pub tags: Vec<TagPlan>,
    pub seconds: f64,
    /// A manifest list's platforms as published: each one's manifest digest and image ID.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<publish::RemoteInstance>,
    /// The version's signature, verified from the lookaside, when signing is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::Verdict>,
    /// What a consumer's `policy.json` and `registries.d` need to verify it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_policy: Option<String>,
}

pub fn run(ctx: &Ctx, args: &PushArgs) -> Result<()> {
    let images = ctx.built_images(args.version.dev)?;
    let id = ctx.identity(&args.version)?;
    let engine = ctx.engine()?;
    prove_signing(ctx, args.registry.as_deref(), &images)?;
    let mut done = Vec::new();
    for image in images {
        let dest = destination(ctx, args.registry.as_deref(), image)?;
        login(ctx, &engine, &dest, attempts(ctx, args))?;
        let source = id.local_ref(&image.name);
        let handed = crate::handoff::ensure_local(ctx, &engine, &image.name, &id)?;
        if image.platforms.len() > 1 {
            let instances = super::build::instances_of(ctx, &engine, &source, &image.platforms)?;
            let identity = list_identity(&instances);
            done.push(publish(
                ctx,
                &engine,
                image,
                &id,
                &identity,
                Some(&source),
                &dest,
                args,
            )?);
            continue;
        }
        let image_id = local_id(ctx, &engine, &source)?;
        if let Some(r) = handed.filter(|r| r.id == image_id && !args.untested) {
            if !r.passed.contains(&image_id) {
                return Err(input_error!(
                    "image `{source}` ({}) was handed over by `build --save`, and no `cargo xtask test` passed it: run the tests first, or pass --untested",
                    &image_id[..image_id.len().min(12)]
                ));
            }
        }
        done.push(publish(
            ctx, &engine, image, &id, &image_id, None, &dest, args,
        )?);
    }
    let json = serde_json::json!({ "images": done });
    ci_outputs(ctx, &id.version.text, &id.tags, &done, &[], &json)?;
    print(ctx, &done)
}

/// What a publish gives CI: step outputs (the first image's), and a summary of every image's
/// tags, with the reason for each one held back or refused, and the smoke tests if any ran.
pub fn ci_outputs(
    ctx: &Ctx,
    version: &str,
    tags: &[String],
    done: &[Published],
    tests: &[crate::smoke::report::ImageReport],
    json: &serde_json::Value,
) -> Result<()> {
    if ctx.sh.dry_run || ctx.env.ci_system == crate::ci::Ci::None {
        return Ok(());
    }
    let first = done.first();
    let image = first
        .map(|p| match &p.destination {
            Dest::Registry { repository, .. } => repository.clone(),
            Dest::Layout { .. } => p.name.clone(),
        })
        .unwrap_or_default();
    let mut summary = format!("### Released {version}\n\n");
    let rows: Vec<Vec<String>> = done
        .iter()
        .flat_map(|p| {
            p.tags.iter().map(move |t| {
                vec![
                    p.name.clone(),
                    format!("`{}`", t.tag),
                    t.action.verb().to_string(),
                    p.digest.clone().unwrap_or_default(),
                    t.reason.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    summary.push_str(&crate::ci::markdown_table(
        &["image", "tag", "action", "digest", "why"],
        &rows,
    ));
    if !tests.is_empty() {
        let rows: Vec<Vec<String>> = tests
            .iter()
            .flat_map(|r| {
                r.tests.iter().map(move |t| {
                    vec![
                        r.image.clone(),
                        t.name.clone(),
                        if t.failures.is_empty() {
                            "passed"
                        } else {
                            "FAILED"
                        }
                        .to_string(),
                    ]
                })
            })
            .collect();
        summary.push_str("\n#### Smoke tests\n\n");
        summary.push_str(&crate::ci::markdown_table(
            &["image", "test", "result"],
            &rows,
        ));
    }
    summary.push('\n');
    let outputs = crate::ci::Outputs {
        version: version.to_string(),
        tags: tags.to_vec(),
        image,
        digest: first.and_then(|p| p.digest.clone()),
        pinned: first.and_then(|p| p.pinned.clone()),
        json: serde_json::to_string(json)?,
        summary,
    };
    crate::ci::publish_outputs(&ctx.env.ci_system, &ctx.root, &outputs)
}

pub fn print(ctx: &Ctx, done: &[Published]) -> Result<()> {
    if ctx.sh.dry_run {
        return Ok(());
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": done }));
    }
    let mut rows = Vec::new();
    for p in done {
        for t in &p.tags {
            rows.push(vec![
                p.name.clone(),
                t.tag.clone(),
                crate::output::status(t.action.verb(), crate::output::Stream::Out),
                t.reason.clone().unwrap_or_default(),
            ]);
        }
    }
    if !ctx.sh.quiet {
        print!(
            "{}",
            crate::output::headed(
                &["image", "tag", "action", "why"],
                rows,
                crate::output::Stream::Out
            )
        );
    }
    for p in done {
        if let Some(pinned) = &p.pinned {
            println!(
                "published {} {} in {:.1}s: {pinned}",
                p.name, p.version, p.seconds
            );
        }
        if let (Some(v), Some(policy)) = (&p.signature, &p.consumer_policy) {
            println!(
                "{}: {}; consumers verify it with
{policy}",
                p.name,
                v.describe()
            );
        }
    }
    Ok(())
}

/// With `[sign]`: proves, before anything is pushed, that the key can sign for every image's
/// destination (a missing key, or one without its secret half, exits 2 with nothing pushed).
pub fn prove_signing(ctx: &Ctx, registry: Option<&str>, images: &[&Image]) -> Result<()> {
    for image in images {
        let dest = destination(ctx, registry, image)?;
        if let Some(s) = crate::signing::signer(ctx, &dest)? {
            s.precheck(ctx)?;
        }
    }
    Ok(())
}

pub fn destination(ctx: &Ctx, flag: Option<&str>, image: &Image) -> Result<Dest> {
    let registry = ctx.registry(flag)?;
    Ok(Dest::new(
        registry.as_deref(),
        ctx.env.registry_insecure || ctx.config.registry_insecure,
        &ctx.root,
        &image.name,
    ))
}

/// Logs in when credentials are in the environment; otherwise podman's stored ones are used.
pub fn login(ctx: &Ctx, engine: &Engine, dest: &Dest, attempts: u32) -> Result<()> {
    let Some(user) = &ctx.env.registry_user else {
        return Ok(());
    };
    let Some(password) = &ctx.env.registry_password else {
        return Err(input_error!(
            "XTASK_REGISTRY_USER is set but there is no password: set XTASK_REGISTRY_PASSWORD, or XTASK_REGISTRY_PASSWORD_FILE to a readable, non-empty file"
        ));
    };
    let Some(cmd) = publish::login(engine, dest, user, password) else {
        return Ok(());
    };
    // Into this run's own auth file: nothing shared changes, so `--dry-run` logs in too and
    // reads the registry with credentials.
    crate::authfile::ensure_private()?;
    // A refused password is not retried (it does not get better, and retries can lock the
    // account); an unreachable registry is.
    let host = dest.host().unwrap_or("?");
    retrying(attempts, &format!("logging in to {host}"), || {
        ctx.sh.read(&cmd).map(drop)
    })
    .map_err(|e| {
        let msg = Masker::new(vec![password.expose().to_string()]).mask(&format!("{e:#}"));
        let hint = if let Some(h) = publish::hint(&msg) {
            h
        } else if publish::retryable(&msg) {
            "is the registry up and the address right?"
        } else {
            "check XTASK_REGISTRY_USER and XTASK_REGISTRY_PASSWORD"
        };
        anyhow::anyhow!("login to {host} as `{user}` failed: {msg}; {hint}")
    })
}

pub fn local_id(ctx: &Ctx, engine: &Engine, source: &str) -> Result<String> {
    let out = ctx
        .sh
        .probe(&engine.inspect_images(&[source.to_string()]))?;
    let info = if out.success() {
        crate::engine::parse_inspect(&out.stdout)?
    } else {
        Vec::new()
    };
    let info = info.first().ok_or_else(|| {
        anyhow::anyhow!(
            "image `{source}` is not in local storage; build it first with `cargo xtask build`"
        )
    })?;
    Ok(info.bare_id().to_string())
}

/// Every tag the destination has, and the manifests of those of `ours` it has.
pub fn read_remote(
    ctx: &Ctx,
    dest: &Dest,
    ours: &[String],
    attempts: u32,
) -> Result<(Vec<String>, BTreeMap<String, Remote>)> {
    let existing = list_existing(ctx, dest, attempts)?;
    let mut remote = BTreeMap::new();
    for tag in ours.iter().filter(|t| existing.contains(t)) {
        remote.insert(tag.clone(), read_tag(ctx, dest, tag, attempts)?);
    }
    Ok((existing, remote))
}

/// Every tag the destination has.
fn list_existing(ctx: &Ctx, dest: &Dest, attempts: u32) -> Result<Vec<String>> {
    Ok(match (publish::list_tags(dest), dest) {
        (Some(cmd), _) => retrying(attempts, "listing the registry's tags", || {
            let out = ctx.sh.probe(&cmd)?;
            if out.success() {
                return Ok(publish::parse_tag_list(&out.stdout));
            }
            // A repository that was never pushed to has no tags.
            if out.stderr.contains("404") || out.stderr.contains("NAME_UNKNOWN") {
                return Ok(Vec::new());
            }
            Err(anyhow::anyhow!(
                "{}",
                crate::exec::failure(&cmd, out.code, &out.stderr, "")
            ))
        })?,
        (None, Dest::Layout { dir }) => match std::fs::read_to_string(dir.join("index.json")) {
            Ok(text) => publish::parse_layout_index(&text).into_keys().collect(),
            Err(_) => Vec::new(),
        },
        (None, _) => Vec::new(),
    })
}

/// A release published at the destination.
pub struct Release {
    pub version: semver::Version,
    /// Its version tag, as the scheme writes it.
    pub tag: String,
    /// The manifest digest that tag holds.
    pub digest: String,
}

/// Every release among `existing` (the destination's tags, read by the scheme), oldest first,
/// with the digest each version tag holds.
pub fn published_releases(
    ctx: &Ctx,
    dest: &Dest,
    existing: &[String],
    attempts: u32,
) -> Result<Vec<Release>> {
    decide::releases(existing, &ctx.config.scheme)
        .into_iter()
        .map(|(version, tag)| {
            let digest = read_tag(ctx, dest, &tag, attempts)?.digest;
            Ok(Release {
                version,
                tag,
                digest,
            })
        })
        .collect()
}

/// The release a rollback holds the floating tags below (its `HOLD_TAG`), read from the
/// held image's version label.
pub fn read_hold(
    ctx: &Ctx,
    dest: &Dest,
    existing: &[String],
    attempts: u32,
) -> Result<Option<semver::Version>> {
    if !existing.iter().any(|t| t == publish::HOLD_TAG) {
        return Ok(None);
    }
    let cmd = publish::inspect_config(dest, publish::HOLD_TAG);
    let out = retrying(attempts, "reading the rollback hold", || ctx.sh.read(&cmd))?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| anyhow::anyhow!("`{cmd}` printed something else than JSON: {e}"))?;
    Ok(v["Labels"]["org.opencontainers.image.version"]
        .as_str()
        .and_then(|s| ctx.config.scheme.parse(s))
        .map(|p| p.semver))
}

pub fn read_tag(ctx: &Ctx, dest: &Dest, tag: &str, attempts: u32) -> Result<Remote> {
    let raw = read_raw(ctx, &publish::inspect_raw(dest, tag), tag, attempts)?;
    let mut remote = publish::parse_manifest(&raw);
    // A manifest list is known by what each of its platforms holds.
    if let Some(entries) = publish::index_entries(&raw).filter(|_| remote.image_id.is_none()) {
        let mut instances = Vec::new();
        for (platform, digest) in entries {
            let raw = manifest_at(ctx, dest, &digest, attempts)?;
            let id = publish::parse_manifest(&raw).image_id.unwrap_or_default();
            instances.push(publish::RemoteInstance {
                platform,
                digest,
                id,
            });
        }
        let pairs: Vec<(String, String)> = instances
            .iter()
            .map(|i| (i.platform.clone(), i.id.clone()))
            .collect();
        remote.image_id = Some(publish::list_identity(&pairs));
        remote.instances = instances;
    }
    Ok(remote)
}

/// A manifest by digest (one platform's of a published list, or any): a registry's, or a
/// layout's blob.
pub fn manifest_at(ctx: &Ctx, dest: &Dest, digest: &str, attempts: u32) -> Result<Vec<u8>> {
    match dest {
        Dest::Layout { dir } => {
            let hex = digest.trim_start_matches("sha256:");
            std::fs::read(dir.join("blobs/sha256").join(hex))
                .with_context(|| format!("reading the manifest {digest} in `{}`", dir.display()))
        }
        Dest::Registry { .. } => read_raw(
            ctx,
            &publish::inspect_raw_at(dest, digest),
            digest,
            attempts,
        ),
    }
}

/// A raw manifest (`skopeo inspect --raw`), retried on network and server errors.
fn read_raw(ctx: &Ctx, cmd: &crate::cmd::Cmd, what: &str, attempts: u32) -> Result<Vec<u8>> {
    retrying(attempts, &format!("reading `{what}`"), || {
        let out = ctx.sh.probe_bytes(cmd)?;
        if out.code == Some(0) {
            Ok(out.stdout)
        } else {
            Err(anyhow::anyhow!(
                "{}",
                crate::exec::failure(cmd, out.code, &out.stderr, "")
            ))
        }
    })
}

/// Runs `f` up to `attempts` times, waiting 1 s, 2 s, 4 s… between tries, except for errors
/// that cannot get better (refused credentials).
pub fn retrying<T>(attempts: u32, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut delay = Duration::from_secs(1);
    let mut n = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                let msg = format!("{e:#}");
                if n >= attempts || !publish::retryable(&msg) {
                    let e = e.context(format!(
                        "{what} failed after {n} attempt{}",
                        if n == 1 { "" } else { "s" }
                    ));
                    return Err(match publish::hint(&msg) {
                        Some(h) => e.context(h),
                        None => e,
                    });
                }
                eprintln!(
                    "{what} failed (attempt {n} of {attempts}): {msg}; retrying in {}s",
                    delay.as_secs()
                );
                thread::sleep(delay);
                delay *= 2;
                n += 1;
            }
        }
    }
}

/// How long one push or copy may run before it counts as stalled.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub fn push_timeout(ctx: &Ctx) -> Result<Duration> {
    match std::env::var("XTASK_PUSH_TIMEOUT")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(v) => {
            crate::smoke::duration(&v).map_err(|e| input_error!("XTASK_PUSH_TIMEOUT `{v}`: {e}"))
        }
        None => Ok(ctx.config.push_timeout.unwrap_or(DEFAULT_PUSH_TIMEOUT)),
    }
}

pub fn attempts(ctx: &Ctx, args: &PushArgs) -> u32 {
    args.attempts
        .or(ctx.config.push_attempts)
        .unwrap_or(DEFAULT_ATTEMPTS)
}

/// Publishes one image's tags. Nothing is written when any version tag would be overwritten
/// (without `--force`); floating tags move only after the version tag is verified.
/// The identity of a local list's images, as `read_tag` computes a published one's.
pub fn list_identity(instances: &[super::build::Instance]) -> String {
    let pairs: Vec<(String, String)> = instances
        .iter()
        .map(|i| (i.platform.clone(), i.id.clone()))
        .collect();
    publish::list_identity(&pairs)
}

/// `image_id` is the tested image's ID, or for a manifest list (`list`, its local name) the
/// list's identity (`list_identity`).
#[allow(clippy::too_many_arguments)]
pub fn publish(
    ctx: &Ctx,
    engine: &Engine,
    image: &Image,
    id: &Identity,
    image_id: &str,
    list: Option<&str>,
    dest: &Dest,
    args: &PushArgs,
) -> Result<Published> {
    let start = Instant::now();
    let attempts = attempts(ctx, args);
    let limit = push_timeout(ctx)?;
    // The commands proved the key can sign before anything was built or pushed
    // (`prove_signing`).
    let signer = crate::signing::signer(ctx, dest)?;
    let version_tag = reference::tag_from(&id.version.text);
    if !id.tags.contains(&version_tag) {
        return Err(input_error!(
            "`{}` is a dev build: it has no version to publish; commit and tag it (git tag v1.2.3) or pass --version",
            image.name
        ));
    }
    let sha7: Option<String> = id
        .git
        .as_ref()
        .filter(|g| !g.dirty)
        .map(|g| g.sha.chars().take(7).collect());
    let tags: Vec<(String, Role)> = id
        .tags
        .iter()
        .map(|t| {
            let r = decide::role(t, &version_tag, &id.version, sha7.as_deref());
            (t.clone(), r)
        })
        .collect();
    let names: Vec<String> = id.tags.clone();
    // Held until this image is published: a second publish to the destination from this
    // machine reads the registry only after this one has written it.
    let _lock = (!ctx.sh.dry_run)
        .then(|| {
            publish::lock::acquire(
                &dest.describe(),
                &format!("release of {} {}", image.name, id.version.text),
                publish::lock::wait_limit(),
            )
        })
        .transpose()?;
    let (existing, mut remote) = read_remote(ctx, dest, &names, attempts)?;
    // The image ID each tag really holds, where it differs from the tested one but is the same
    // release: built elsewhere from the same inputs (another machine's layer cache makes
    // another image ID), or converted to OCI by a layout.
    let mut published_ids: BTreeMap<String, String> = BTreeMap::new();
    for (tag, r) in remote.iter_mut() {
        let Some(there) = r.image_id.clone().filter(|t| t != image_id) else {
            continue;
        };
        if layout_converted(ctx, dest, tag, image_id)
            || same_inputs(ctx, dest, tag, image_id, list.is_some())
        {
            published_ids.insert(tag.clone(), there);
            r.image_id = Some(image_id.to_string());
        }
    }
    let hold = read_hold(ctx, dest, &existing, attempts)?;
    let plans = decide::decide(
        &tags,
        &id.version,
        image_id,
        &remote,
        &existing,
        hold.as_ref(),
        args.force,
        &ctx.config.scheme,
    );
    // A release newer than what this machine holds lifts its local hold too.
    if let (Some(local), Some(v)) = (
        crate::hold::local(&ctx.state, &image.name),
        &id.version.semver,
    ) {
        if *v > local && !ctx.sh.dry_run {
            crate::hold::set_local(&ctx.state, &image.name, None);
        }
    }
    let refused: Vec<&TagPlan> = plans
        .iter()
        .filter(|p| p.action == Action::Refuse)
        .collect();
    if !refused.is_empty() {
        let mut why: Vec<String> = refused.iter().filter_map(|p| p.reason.clone()).collect();
        for p in &refused {
            let there = remote.get(&p.tag).and_then(|r| r.image_id.as_deref());
            if let Some(there) =
                there.filter(|t| t.starts_with("list:") && image_id.starts_with("list:"))
            {
                why.push(format!(
                    "`{}` differs in {}",
                    p.tag,
                    publish::list_differences(there, image_id).join(", ")
                ));
            }
        }
        // The likely cause under Docker, where nothing else would say it.
        let docker = if engine.kind == crate::engine::EngineKind::Docker {
            " (Docker's builder has no --timestamp: a rebuild of one commit without its layer cache is another image; publish the image the build made, handing it to other jobs with `build --save`)"
        } else {
            ""
        };
        return Err(anyhow::anyhow!(
            "refusing to publish {} to {}: {}; published versions are immutable: release a new version, or pass --force to overwrite{docker}",
            image.name,
            dest.describe(),
            why.join("; ")
        ));
    }
    for p in plans.iter().filter(|p| p.action == Action::Overwrite) {
        eprintln!(
            "WARNING: --force: overwriting published `{}`: {}",
            p.tag,
            p.reason.as_deref().unwrap_or("")
        );
    }
    if let Dest::Layout { dir } = dest {
        if let Some(parent) = dir.parent().filter(|_| !ctx.sh.dry_run) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating `{}`", parent.display()))?;
            crate::fsx::mark_output_dir(parent, "released OCI layouts are output, not source")?;
        }
    }
    let version_plan = plans
        .iter()
        .find(|p| p.role == Role::Version)
        .expect("the version tag is among the tags");
    // The version tag as it is now (verified after a push, or just read), for its platforms.
    let (digest, version_remote) = if version_plan.action.writes() {
        let digestfile = digest_file();
        // Removed on every way out, a failed push included.
        let _remove = RemoveOnDrop(digestfile.clone());
        let cmd = match list {
            Some(l) => publish::push_list(engine, dest, l, &version_tag, &digestfile),
            None => publish::push(engine, dest, image_id, &version_tag, &digestfile),
        };
        retrying(attempts, &format!("pushing `{version_tag}`"), || {
            ctx.sh.run_within(&cmd, limit)
        })?;
        if ctx.sh.dry_run {
            ("sha256:<pushed>".to_string(), None)
        } else {
            let d = std::fs::read_to_string(&digestfile).with_context(|| {
                format!(
                    "reading the digest podman wrote to `{}`",
                    digestfile.display()
                )
            })?;
            let d = d.trim().to_string();
            let got = verify(ctx, dest, &version_tag, &d, Some(image_id), attempts)?;
            crate::fault::boundary(format_args!("verified `{version_tag}` at {d}"));
            (d, Some(got))
        }
    } else {
        // Already verified: `read_remote` just read this tag and `decide` matched its image ID.
        let r = remote[&version_tag].clone();
        (r.digest.clone(), Some(r))
    };
    // Signed (and the signature read back and verified) before any other tag points at it; a
    // version this run pushed is removed again if that fails.
    let signature = match (&signer, ctx.sh.dry_run) {
        (Some(s), false) => {
            let instances: Vec<String> = version_remote
                .as_ref()
                .map(|r| r.instances.iter().map(|i| i.digest.clone()).collect())
                .unwrap_or_default();
            let signed = sign_release(
                ctx,
                s,
                dest,
                &image.name,
                &version_tag,
                &digest,
                &instances,
                attempts,
            );
            match signed {
                Ok(v) => Some(v),
                Err(e) if version_plan.action.writes() => {
                    let reverted = revert_version(ctx, dest, &version_tag, &digest, attempts);
                    return Err(e.context(match reverted {
                        Ok(()) => format!("the unsigned `{version_tag}` this run pushed was removed again; nothing else moved"),
                        Err(r) => format!("the unsigned `{version_tag}` this run pushed could NOT be removed ({r:#}): remove {} by hand", dest.by_digest(&digest, &version_tag)),
                    }));
                }
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    // Floating tags last: they move only once everything they could point at is in place.
    // Another machine may be releasing too: each move is checked against the registry as it is
    // right then (compare, set, verify), and the floating tags are settled once all moved.
    let checked = !ctx.sh.dry_run && matches!(dest, Dest::Registry { .. });
    let now = Recheck {
        ctx,
        dest,
        attempts,
        limit,
        version_tag: &version_tag,
        digest: &digest,
    };
    let mut plans = plans;
    let order = [Role::Commit, Role::Moving, Role::Floating];
    for role in order {
        for p in plans
            .iter_mut()
            .filter(|p| p.role == role && p.action.writes())
        {
            if checked && matches!(role, Role::Moving | Role::Floating) {
                if let Some(why) = now.before_move(p, &tags, &id.version, image_id)? {
                    p.action = Action::HoldBack;
                    p.reason = Some(why);
                    continue;
                }
            }
            let cmd = publish::copy(dest, &dest.by_digest(&digest, &version_tag), &p.tag);
            retrying(attempts, &format!("copying to `{}`", p.tag), || {
                ctx.sh.run_within(&cmd, limit)
            })?;
            if !ctx.sh.dry_run {
                let expect = published_ids
                    .get(&version_tag)
                    .map_or(image_id, String::as_str);
                verify(ctx, dest, &p.tag, &digest, Some(expect), attempts)?;
            }
        }
    }
    if checked {
        now.settle(&mut plans, &id.version)?;
    }
    let instances = version_remote.map(|r| r.instances).unwrap_or_default();
    let consumer_policy = match (&signer, &signature) {
        (Some(s), Some(_)) => Some(
            s.consumer_snippet(
                &dest.describe(),
                &ctx.config
                    .sign
                    .as_ref()
                    .and_then(|c| c.public_key.as_ref())
                    .and_then(|p| p.strip_prefix(&ctx.root).ok())
                    .map_or_else(
                        || format!("/etc/pki/containers/{}.gpg", image.name),
                        |p| p.display().to_string(),
                    ),
            ),
        ),
        _ => None,
    };
    Ok(Published {
        signature,
        consumer_policy,
        instances,
        name: image.name.clone(),
        destination: dest.clone(),
        version: id.version.text.clone(),
        image_id: image_id.to_string(),
        pinned: Some(dest.pinned(&version_tag, &digest)),
        digest: Some(digest),
        tags: plans,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Signs the version's digest (and, for a list, every platform's) as `REPO:VERSION`, then reads
/// each signature back from the lookaside and verifies it with the public key alone.
#[allow(clippy::too_many_arguments)]
fn sign_release(
    ctx: &Ctx,
    signer: &crate::signing::Signer,
    dest: &Dest,
    name: &str,
    version_tag: &str,
    digest: &str,
    instances: &[String],
    attempts: u32,
) -> Result<crate::signing::Verdict> {
    let identity = crate::signing::identity(dest, name, version_tag);
    let mut verdict = None;
    for d in std::iter::once(digest).chain(instances.iter().map(String::as_str)) {
        let manifest = manifest_at(ctx, dest, d, attempts)?;
        let subject = crate::signing::Subject {
            dest,
            name,
            manifest: &manifest,
            digest: d,
            identity: &identity,
        };
        // A re-run finds what a killed run signed already.
        let mut v = signer.verify(ctx, &subject)?;
        if !v.ok() {
            signer.sign(ctx, &subject)?;
            crate::fault::boundary(format_args!("signed {identity} at {d}"));
            v = signer.verify(ctx, &subject)?;
        }
        if !v.ok() {
            anyhow::bail!(
                "the signature of {identity} ({d}) does not verify from {}: {}",
                signer.lookaside,
                v.describe()
            );
        }
        verdict.get_or_insert(v);
    }
    Ok(verdict.unwrap_or(crate::signing::Verdict::Unsigned))
}

/// What the lookaside says of the release `version_tag`'s `digest`, when signing is configured
/// (`None` otherwise). `Err` names `refused` when it is not signed by the release key: consumers
/// (`rollback`, `pull`) never trust such a digest.
#[allow(clippy::too_many_arguments)]
pub fn signature_of(
    ctx: &Ctx,
    signer: Option<&crate::signing::Signer>,
    dest: &Dest,
    name: &str,
    version_tag: &str,
    digest: &str,
    attempts: u32,
    refused: &str,
) -> Result<Option<crate::signing::Verdict>> {
    let Some(signer) = signer else {
        return Ok(None);
    };
    let manifest = manifest_at(ctx, dest, digest, attempts)?;
    let identity = crate::signing::identity(dest, name, version_tag);
    let verdict = signer.verify(
        ctx,
        &crate::signing::Subject {
            dest,
            name,
            manifest: &manifest,
            digest,
            identity: &identity,
        },
    )?;
    if !verdict.ok() {
        return Err(anyhow::anyhow!(
            "refusing to {refused} ({digest}): {}",
            verdict.describe()
        ));
    }
    Ok(Some(verdict))
}

/// Removes a version tag this run pushed (its signing failed): the registry's manifest by
/// digest, or the layout's ref.
fn revert_version(ctx: &Ctx, dest: &Dest, tag: &str, digest: &str, attempts: u32) -> Result<()> {
    match dest {
        Dest::Registry { .. } => {
            let cmd = publish::delete(dest, digest, tag);
            retrying(attempts, &format!("removing `{tag}`"), || ctx.sh.run(&cmd))
        }
        Dest::Layout { dir } => {
            let path = dir.join("index.json");
            let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            if let Some(list) = index["manifests"].as_array_mut() {
                list.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
            }
            crate::fsx::write_atomic(&path, serde_json::to_vec(&index)?)
        }
    }
}

/// The registry as it is right before a tag moves, and once all have: what another machine's
/// concurrent release changed since this one read it.
struct Recheck<'a> {
    ctx: &'a Ctx,
    dest: &'a Dest,
    attempts: u32,
    /// `push_timeout`, for the copies that settle a tag.
    limit: Duration,
    version_tag: &'a str,
    /// What this run pushed (or found) under its version tag.
    digest: &'a str,
}

impl Recheck<'_> {
    /// Why the tag must not move now, if it must not: the version tag no longer holds this
    /// run's image (a concurrent release of the same version won), or a newer release appeared
    /// in the tag's line.
    fn before_move(
        &self,
        plan: &TagPlan,
        tags: &[(String, Role)],
        version: &crate::version::Version,
        image_id: &str,
    ) -> Result<Option<String>> {
        let now = read_tag(self.ctx, self.dest, self.version_tag, self.attempts)?;
        if now.digest != self.digest {
            return Err(anyhow::anyhow!(
                "`{}` now holds {}, not {} as this run published it: a concurrent release of the same version won; `{}` and the tags not yet moved stay where they are",
                self.dest.transport(self.version_tag),
                now.digest,
                self.digest,
                plan.tag
            ));
        }
        let existing = list_existing(self.ctx, self.dest, self.attempts)?;
        let hold = read_hold(self.ctx, self.dest, &existing, self.attempts)?;
        let mine: Vec<(String, Role)> = tags
            .iter()
            .filter(|(t, _)| *t == plan.tag)
            .cloned()
            .collect();
        let fresh = decide::decide(
            &mine,
            version,
            image_id,
            &BTreeMap::new(),
            &existing,
            hold.as_ref(),
            false,
            &self.ctx.config.scheme,
        );
        Ok(fresh
            .into_iter()
            .find(|p| p.action == Action::HoldBack)
            .and_then(|p| p.reason)
            .map(|r| format!("{r} (a concurrent release, seen right before moving)")))
    }

    /// Settles the floating tags this run moved: each ends where the newest release of its
    /// line is, read now. A concurrent newer release that moved the tag before this run did
    /// (so this run's move took it back) gets it again.
    fn settle(&self, plans: &mut [TagPlan], version: &crate::version::Version) -> Result<()> {
        let Some(ours) = &version.semver else {
            return Ok(());
        };
        let existing = list_existing(self.ctx, self.dest, self.attempts)?;
        let releases = decide::releases(&existing, &self.ctx.config.scheme);
        let published: Vec<semver::Version> = releases.iter().map(|(v, _)| v.clone()).collect();
        for p in plans
            .iter_mut()
            .filter(|p| p.role == Role::Floating && p.action.writes())
        {
            let Some(newest) = decide::newest_in_line(&p.tag, ours, &published) else {
                continue;
            };
            let Some((_, newest_tag)) = releases.iter().find(|(v, _)| *v == newest) else {
                continue;
            };
            let want = read_tag(self.ctx, self.dest, newest_tag, self.attempts)?.digest;
            let have = read_tag(self.ctx, self.dest, &p.tag, self.attempts)?.digest;
            if want == have {
                if want != self.digest {
                    p.action = Action::HoldBack;
                    p.reason = Some(format!("a concurrent release of {newest} moved it there"));
                }
                continue;
            }
            let cmd = publish::copy(self.dest, &self.dest.by_digest(&want, newest_tag), &p.tag);
            retrying(self.attempts, &format!("settling `{}`", p.tag), || {
                self.ctx.sh.run_within(&cmd, self.limit)
            })?;
            verify(self.ctx, self.dest, &p.tag, &want, None, self.attempts)?;
            eprintln!(
                "note: `{}` was taken back by this run's move while {newest} (released concurrently) is the newest in its line: it points at {newest} again",
                p.tag
            );
            p.action = Action::HoldBack;
            p.reason = Some(format!(
                "a concurrent release of {newest} is newer; settled there"
            ));
        }
        Ok(())
    }
}

/// The destination's `tag` holds `digest` (and, when given, the image ID); returns the tag as read.
pub fn verify(
    ctx: &Ctx,
    dest: &Dest,
    tag: &str,
    digest: &str,
    image_id: Option<&str>,
    attempts: u32,
) -> Result<Remote> {
    let got = read_tag(ctx, dest, tag, attempts)?;
    if got.digest != digest {
        return Err(anyhow::anyhow!(
            "verification failed: `{}` holds {}, not the pushed {digest}",
            dest.transport(tag),
            got.digest
        ));
    }
    if let (Some(want), Some(have)) = (image_id, got.image_id.as_deref()) {
        if want != have && !layout_converted(ctx, dest, tag, want) {
            return Err(anyhow::anyhow!(
                "verification failed: `{}` holds image {have}, not the tested image {want}",
                dest.transport(tag)
            ));
        }
    }
    Ok(got)
}

/// Whether `tag` holds an image built from the same inputs as the local `image_id`, on another
/// machine: the same inputs key (`io.xtask.inputs`) and the same commit and version labels. A
/// release finished from a fresh clone or an empty store then completes instead of refusing
/// its own version (podman reuses cached layers with their old timestamps, so the image ID
/// depends on each machine's cache). Says so once.
fn same_inputs(ctx: &Ctx, dest: &Dest, tag: &str, image_id: &str, list: bool) -> bool {
    if ctx.sh.dry_run || list {
        return false;
    }
    let labels = |source: &str| -> Option<serde_json::Value> {
        let out = ctx.sh.probe(&raw_config_at(dest, source)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        out.success().then(|| v["config"]["Labels"].clone())
    };
    let (Some(local), Some(there)) = (
        labels(&crate::engine::local_ref(ctx.engine_kind, image_id)),
        labels(&dest.transport(tag)),
    ) else {
        return false;
    };
    let key = crate::labels::INPUTS;
    let same = [key, crate::labels::REVISION, crate::labels::VERSION]
        .iter()
        .all(|k| local[k].is_string() && local[k] == there[k]);
    if same {
        eprintln!(
            "note: `{}` holds an image built elsewhere from the same inputs ({key} {}) and commit as the tested {}: its image ID differs with the layer cache; the release goes on with the published image",
            dest.transport(tag),
            local[key].as_str().map_or("?", super::build::short),
            &image_id[..image_id.len().min(12)]
        );
    }
    same
}

/// `skopeo inspect --config` of a local image or a destination's tag, with the destination's
/// TLS setting for the latter.
fn raw_config_at(dest: &Dest, source: &str) -> crate::cmd::Cmd {
    let c = publish::raw_config(source);
    if source.starts_with("docker://") && matches!(dest, Dest::Registry { insecure: true, .. }) {
        let mut args = c.args.clone();
        args.insert(2, "--tls-verify=false".into());
        return crate::cmd::Cmd::new("skopeo").args(args);
    }
    c
}

/// Whether an OCI layout's `tag` holds the local image `image_id` converted to the OCI format
/// (a Docker-format image: its HEALTHCHECK, SHELL and ONBUILD have no place there). Says so
/// once, since the layout's copy lacks them.
fn layout_converted(ctx: &Ctx, dest: &Dest, tag: &str, image_id: &str) -> bool {
    if !matches!(dest, Dest::Layout { .. }) || ctx.sh.dry_run {
        return false;
    }
    let config = |source: &str| -> Option<serde_json::Value> {
        let out = ctx.sh.probe(&publish::raw_config(source)).ok()?;
        out.success()
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    };
    let (Some(local), Some(there)) = (
        config(&crate::engine::local_ref(ctx.engine_kind, image_id)),
        config(&dest.transport(tag)),
    ) else {
        return false;
    };
    let same = publish::same_in_oci(&local, &there);
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if same && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "note: `{}` holds the image converted to the OCI format, under another image ID: a Docker-format image's HEALTHCHECK, SHELL and ONBUILD have no place there (a registry keeps them)",
            dest.transport(tag)
        );
    }
    same
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn digest_file() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("xtask-digest-{}-{nanos}", std::process::id()))
}
