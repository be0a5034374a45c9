//! `cargo xtask release`: refuse a dirty tree and a context that would ship what git doesn't
//! know (or any `check` error), build, smoke-test the built image IDs, then publish exactly
//! those IDs. Re-running after any interruption finishes what is missing.

use std::time::Instant;

use anyhow::Result;

use crate::flags::{BuildArgs, ReleaseArgs};
use crate::input_error;
use crate::project::Ctx;
use crate::smoke::report;

use super::push::{self, Published};

pub fn run(ctx: &Ctx, args: &ReleaseArgs) -> Result<()> {
    let start = Instant::now();
    let engine = ctx.engine()?;
    let id = ctx.identity(&args.push.version)?;
    let dirty = id.git.as_ref().is_some_and(|g| g.dirty);
    // A release tag the scheme cannot read is not silently released as a snapshot.
    if let (Some(tag), false) = (
        id.git.as_ref().and_then(|g| g.foreign_on_head.as_deref()),
        matches!(
            id.version.kind,
            crate::version::Kind::Release | crate::version::Kind::Prerelease
        ),
    ) {
        return Err(input_error!(
            "git tag `{tag}` on HEAD is not a version of version_scheme `{}`, so there is no release to publish; set `version_scheme` (\"semver-lenient\", \"calver\") or `tag_pattern` in docker/images.toml, or pass --version",
            ctx.config.scheme.name()
        ));
    }
    if dirty && !args.allow_dirty {
        return Err(input_error!(
            "the working tree has uncommitted changes (version {}); commit or stash them, or pass --allow-dirty to build and test without pushing",
            id.version.text
        ));
    }
    // What the image would ship is checked before anything is built (and again after the
    // `before_build` commands ran, below). `--allow-dirty` does not skip it.
    super::check::gate(ctx, "release refused")?;
    // Bases first: an image is pushed only after the images it builds from.
    let images = ctx.built_images(args.push.version.dev)?;
    // Resolve every destination and log in first: a wrong password fails before any build.
    let mut dests = Vec::new();
    for image in &images {
        let dest = push::destination(ctx, args.push.registry.as_deref(), image)?;
        if !dirty {
            push::login(ctx, &engine, &dest, push::attempts(ctx, &args.push))?;
        }
        dests.push(dest);
    }
    // A key that cannot sign fails here, before a build.
    if !dirty {
        push::prove_signing(ctx, args.push.registry.as_deref(), &images)
            .map_err(|e| e.context("release refused; nothing was built or pushed"))?;
    }
    if !ctx.sh.dry_run {
        crate::fault::boundary("logged in");
    }
    let build_args = BuildArgs {
        version: args.push.version.clone(),
        no_cache: false,
        force: false,
        build_args: Vec::new(),
        platform: Vec::new(),
        save: false,
    };
    let built = super::build::build_all(ctx, &engine, &id, &build_args)?;
    if !ctx.sh.dry_run && images.iter().any(|i| !i.before_build.is_empty()) {
        super::check::gate(ctx, "release refused after `before_build`")?;
    }
    if !ctx.sh.dry_run && !ctx.json && !ctx.sh.quiet {
        eprint!(
            "{}",
            super::build::table(&built, crate::output::Stream::Err, false)
        );
    }
    let ids: Vec<(String, String)> = built
        .iter()
        .map(|b| (b.name.clone(), b.id.clone()))
        .collect();
    let mut tests = Vec::new();
    if !ctx.sh.dry_run {
        let pins: Vec<super::test::Pin> = built
            .iter()
            .flat_map(|b| {
                if b.instances.is_empty() {
                    vec![super::test::Pin {
                        name: b.name.clone(),
                        id: b.id.clone(),
                        platform: None,
                    }]
                } else {
                    b.instances
                        .iter()
                        .map(|i| super::test::Pin {
                            name: b.name.clone(),
                            id: i.id.clone(),
                            platform: Some(i.platform.clone()),
                        })
                        .collect()
                }
            })
            .collect();
        tests = super::test::suites(ctx, &engine, &images, &id, &pins, args.untested_platforms)?;
        if let Some(path) = &args.junit {
            crate::fsx::write_atomic(path, report::junit(&tests))?;
        }
        if !ctx.json && !ctx.sh.quiet {
            eprint!("{}", report::human(&tests, crate::output::Stream::Err));
        }
        if !tests.iter().all(|r| r.passed) {
            if ctx.json {
                ctx.print_json(
                    &serde_json::json!({ "released": false, "tests": tests, "images": [] }),
                )?;
            }
            return Err(anyhow::anyhow!(
                "smoke tests failed ({}); nothing was pushed",
                report::summary(&tests, start.elapsed().as_secs_f64())
            ));
        }
        crate::fault::boundary("smoke tests passed");
    }
    // The gates between the tests and the push: the vulnerability scan, then the SBOM, each
    // from one OCI archive of the tested image.
    let archives = crate::fsx::TempDir::new("release")?;
    let mut scans = Vec::new();
    if let Some(scan) = &ctx.config.scan {
        scans = super::scan::scan_images(
            ctx,
            &engine,
            scan,
            &pinned(&ids, &images, &id),
            None,
            &archives.0,
        )?;
        if !ctx.json && !ctx.sh.dry_run {
            eprint!("{}", super::scan::human(&scans));
        }
        let blocking: usize = scans.iter().map(|s| s.verdict.blocking).sum();
        if blocking > 0 {
            if ctx.json {
                ctx.print_json(&serde_json::json!({ "released": false, "tests": tests, "scan": scans, "images": [] }))?;
            }
            return Err(anyhow::anyhow!(
                "vulnerability scan: {blocking} blocking finding(s) at or above {}; nothing was pushed (fix them, or waive each with `[[scan.waive]]` id, until and reason)",
                scan.policy.fail_on.name()
            ));
        }
    }
    let mut sboms = Vec::new();
    if let Some(sbom) = ctx.config.sbom.as_ref().filter(|_| !dirty) {
        sboms = super::sbom::write(
            ctx,
            &engine,
            sbom,
            &pinned(&ids, &images, &id),
            &id.version.text,
            &archives.0,
        )?;
    }
    if dirty {
        let msg = "dirty tree (--allow-dirty): built and tested; nothing was pushed";
        if ctx.json {
            ctx.print_json(&serde_json::json!({ "released": false, "reason": msg, "tests": tests, "images": [] }))?;
        } else {
            println!("{msg}");
        }
        return Ok(());
    }
    let mut done: Vec<Published> = Vec::new();
    for (image, dest) in images.iter().zip(&dests) {
        let image_id = match ids.iter().find(|(n, _)| *n == image.name) {
            Some((_, i)) => i.clone(),
            // Under --dry-run nothing was built; show the push of the image the name holds.
            None => format!("<ID of {}>", id.local_ref(&image.name)),
        };
        let instances = built
            .iter()
            .find(|b| b.name == image.name)
            .map(|b| b.instances.as_slice())
            .unwrap_or_default();
        let (image_id, list) = if instances.is_empty() {
            (image_id, None)
        } else {
            (
                push::list_identity(instances),
                Some(id.local_ref(&image.name)),
            )
        };
        done.push(push::publish(
            ctx,
            &engine,
            image,
            &id,
            &image_id,
            list.as_deref(),
            dest,
            &args.push,
        )?);
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    let doc = serde_json::json!({
        "released": true,
        "version": id.version.text,
        "images": done,
        "tests": tests,
        "scan": scans,
        "sboms": sboms,
        "seconds": start.elapsed().as_secs_f64(),
    });
    push::ci_outputs(ctx, &id.version.text, &id.tags, &done, &tests, &doc)?;
    if ctx.json {
        return ctx.print_json(&doc);
    }
    push::print(ctx, &done)?;
    for s in &sboms {
        println!("sbom {}: {} ({}, {})", s.name, s.path, s.format, s.digest);
    }
    println!(
        "released {} in {:.1}s",
        id.version.text,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Each image's tested ID; under --dry-run, a placeholder naming it.
fn pinned(
    ids: &[(String, String)],
    images: &[&crate::config::Image],
    id: &crate::project::Identity,
) -> Vec<(String, String)> {
    images
        .iter()
        .map(|i| match ids.iter().find(|(n, _)| *n == i.name) {
            Some(p) => p.clone(),
            None => (i.name.clone(), format!("<ID of {}>", id.local_ref(&i.name))),
        })
        .collect()
}
