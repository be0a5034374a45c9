//! `cargo xtask test`: the smoke suites, run against the images the last build made.

use std::time::Instant;

use anyhow::Result;

use crate::cmd::Secret;
use crate::config::Image;
use crate::engine::Engine;
use crate::flags::TestArgs;
use crate::project::{Ctx, Identity};
use crate::smoke::check::{self, Meta};
use crate::smoke::plan::{self, Mode, RunId};
use crate::smoke::report::{self, ImageReport, Masker, Outcome};
use crate::smoke::{run as runner, Kind};
use crate::{labels, size};

pub fn run(ctx: &Ctx, args: &TestArgs) -> Result<bool> {
    let images = ctx.built_images(args.version.dev)?;
    let id = ctx.identity(&args.version)?;
    let engine = ctx.engine()?;
    if ctx.sh.dry_run {
        for image in &images {
            print_plan(&engine, image, &id.local_ref(&image.name));
        }
        return Ok(true);
    }
    let start = Instant::now();
    let pins = platform_pins(ctx, &engine, &images, &id)?;
    let reports = suites(ctx, &engine, &images, &id, &pins, args.untested_platforms)?;
    let passed = reports.iter().all(|r| r.passed);
    if let Some(path) = &args.junit {
        crate::fsx::write_atomic(path, report::junit(&reports))?;
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "passed": passed, "images": reports }))?;
    } else {
        if !ctx.sh.quiet {
            print!("{}", report::human(&reports, crate::output::Stream::Out));
        }
        println!(
            "{}",
            report::summary(&reports, start.elapsed().as_secs_f64())
        );
    }
    Ok(passed)
}

/// The image a build of these inputs made before, when the version's own tag was never
/// built (podman only: the cache keys read podman's store).
fn built_from_same_inputs(
    ctx: &Ctx,
    engine: &Engine,
    image: &Image,
    id: &Identity,
) -> Option<String> {
    if engine.kind != crate::engine::EngineKind::Podman {
        return None;
    }
    let args = crate::flags::BuildArgs::default();
    let timestamp = ctx.reproducible_epoch(id);
    let nodes = ctx.nodes(false, &Default::default()).ok()?;
    let node = nodes.iter().find(|n| n.image.name == image.name)?;
    let p = super::build::plan(&ctx.root, engine, node, id, &args, timestamp, ctx.env.now).ok()?;
    let mut mem = crate::cache::Memory::load(&ctx.state);
    mem.locate(&ctx.sh).ok()?;
    let ip =
        crate::cache::plan_image(&ctx.root, engine.kind, &p.keys, &mem, ctx.env.now_ns).ok()?;
    crate::cache::same_content(&ip, p.keys.labels.len(), &mem)
}

/// Runs every image's suite; `ids` pins the image IDs a release built (name → ID), so what is
/// tested is what is pushed. Containers of the run are removed at the end, and on Ctrl-C.
/// An image a run tests by ID; for a manifest list's image, with its platform.
#[derive(Debug, Clone)]
pub struct Pin {
    pub name: String,
    pub id: String,
    pub platform: Option<String>,
}

/// The platform images of the multi-platform images (`NAME:PRIMARY-os-arch`), to test each.
fn platform_pins(ctx: &Ctx, engine: &Engine, images: &[&Image], id: &Identity) -> Result<Vec<Pin>> {
    let mut pins = Vec::new();
    for image in images.iter().filter(|i| i.platforms.len() > 1) {
        let list = id.local_ref(&image.name);
        for i in super::build::instances_of(ctx, engine, &list, &image.platforms)? {
            pins.push(Pin {
                name: image.name.clone(),
                id: i.id,
                platform: Some(i.platform),
            });
        }
    }
    Ok(pins)
}

/// Runs the suites; `pins` fixes the image IDs a release built (and a list's per platform).
/// With `untested_ok`, a test a platform can't run here does not fail its suite.
pub fn suites(
    ctx: &Ctx,
    engine: &Engine,
    images: &[&Image],
    id: &Identity,
    pins: &[Pin],
    untested_ok: bool,
) -> Result<Vec<ImageReport>> {
    let run_id = RunId::new();
    let _sweep = {
        let (sh, engine, run_id) = (ctx.sh.clone(), engine.clone(), run_id.clone());
        crate::interrupt::on_interrupt(move || {
            let _ = runner::sweep(&sh, &engine, &run_id);
            eprintln!("interrupted: removed the smoke tests' containers");
        })
    };
    let mut reports = Vec::new();
    let mut result = Ok(());
    // Container numbers continue across images, so two suites never share a name.
    let mut first = 0;
    'images: for image in images {
        let mine: Vec<&Pin> = pins.iter().filter(|p| p.name == image.name).collect();
        let runs: Vec<(Option<&str>, Option<&str>)> = if mine.is_empty() {
            vec![(None, None)]
        } else {
            mine.iter()
                .map(|p| (Some(p.id.as_str()), p.platform.as_deref()))
                .collect()
        };
        for (pinned, platform) in runs {
            match suite(
                ctx,
                engine,
                image,
                id,
                &run_id,
                pinned,
                platform,
                first,
                untested_ok,
            ) {
                Ok(r) => {
                    first += image.smoke.tests.len();
                    reports.push(r);
                }
                Err(e) => {
                    result = Err(e);
                    break 'images;
                }
            }
        }
    }
    let swept = runner::sweep(&ctx.sh, engine, &run_id);
    result?;
    swept?;
    Ok(reports)
}

#[allow(clippy::too_many_arguments)]
fn suite(
    ctx: &Ctx,
    engine: &Engine,
    image: &Image,
    id: &Identity,
    run_id: &RunId,
    pinned: Option<&str>,
    platform: Option<&str>,
    first: usize,
    untested_ok: bool,
) -> Result<ImageReport> {
    let start = Instant::now();
    let reference = id.local_ref(&image.name);
    let mut target = pinned.unwrap_or(&reference).to_string();
    if pinned.is_none() {
        crate::handoff::ensure_local(ctx, engine, &image.name, id)?;
    }
    let mut inspected = ctx
        .sh
        .probe(&engine.inspect_images(std::slice::from_ref(&target)))?;
    // The version moved (a commit, or a dirty tree) but nothing the image is built from did:
    // test the image built from these inputs, found by its cache key.
    let mut same_content = false;
    if !inspected.success() && pinned.is_none() {
        if let Some(found) = built_from_same_inputs(ctx, engine, image, id) {
            eprintln!(
                "note: `{reference}` was never built; testing image {} instead, built from the same inputs (only labels such as the version differ)",
                &found[..found.len().min(12)]
            );
            target = found;
            same_content = true;
            inspected = ctx
                .sh
                .probe(&engine.inspect_images(std::slice::from_ref(&target)))?;
        }
    }
    let mut tests = Vec::new();
    let meta: Option<serde_json::Value> = if inspected.success() {
        serde_json::from_str::<serde_json::Value>(&inspected.stdout)
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
    } else {
        None
    };
    let Some(meta) = meta else {
        tests.push(Outcome {
            name: "image exists".into(),
            kind: "builtin",
            failures: vec![format!(
                "`{target}` is not in local storage; build it first with `cargo xtask build`"
            )],
            ..Outcome::default()
        });
        return Ok(finish(
            image,
            run_id,
            reference,
            None,
            start,
            tests,
            platform,
            untested_ok,
        ));
    };
    let image_id = meta["Id"].as_str().unwrap_or_default().to_string();
    let bare = image_id
        .strip_prefix("sha256:")
        .unwrap_or(&image_id)
        .to_string();
    tests.push(builtin("image exists", Vec::new()));
    let m = Meta(&meta);
    if let Some(max) = image.max_size {
        let f = if m.size() > max {
            vec![format!(
                "size is {} ({} bytes), over max_size {}",
                size::human(m.size()),
                m.size(),
                size::human(max)
            )]
        } else {
            Vec::new()
        };
        tests.push(builtin(&format!("size <= {}", size::human(max)), f));
    }
    if image.budgets.any() {
        tests.extend(layer_budgets(ctx, engine, image, id, &bare)?);
    }
    let epoch = ctx.reproducible_epoch(id);
    let own = crate::tasks::build::dockerfile(&ctx.root, image, false)
        .ok()
        .and_then(|d| crate::dockerfile::read_text(&ctx.root.join(d)).ok())
        .map(|t| labels::dockerfile_labels(&t, image.target.as_deref()))
        .unwrap_or_default();
    let mut expected = labels::compute(
        image,
        &id.version,
        id.git.as_ref(),
        epoch.unwrap_or(0),
        &own,
    );
    if same_content {
        // The labels that name the build are the earlier build's; the rest must still hold.
        let actual = m.labels();
        for k in crate::config::COMPUTED_LABELS {
            match actual.get(k) {
                Some(v) => expected.insert(k.to_string(), v.clone()),
                None => expected.remove(k),
            };
        }
    }
    tests.push(builtin(
        "OCI labels",
        check::oci_labels(&m, &expected, epoch.is_some()),
    ));
    if !image.smoke.expect.is_empty() {
        tests.push(Outcome {
            name: "metadata".into(),
            kind: "metadata",
            failures: check::metadata(&m, &image.smoke.expect),
            ..Outcome::default()
        });
    }
    let host_env = host_env(image);
    let masker = Masker::new(
        host_env
            .iter()
            .map(|(_, v)| v.expose().to_string())
            .collect(),
    );
    let r = runner::Runner {
        sh: &ctx.sh,
        engine,
        id: run_id,
        image: &bare,
        masker: &masker,
        host_env: &host_env,
        first,
        platform,
        runnable: platform.is_none_or(crate::emulation::can_run),
    };
    tests.extend(runner::all(&r, &image.smoke.tests));
    let report = finish(
        image,
        run_id,
        reference,
        Some(bare.clone()),
        start,
        tests,
        platform,
        untested_ok,
    );
    if report.passed {
        // A handed-over image's pass travels with it to the `push` job.
        crate::handoff::record_pass(ctx, &image.name, &bare)?;
    }
    Ok(report)
}

/// The one place a check's and an image's `passed` are decided: from the failures.
#[allow(clippy::too_many_arguments)]
fn finish(
    image: &Image,
    run_id: &RunId,
    reference: String,
    id: Option<String>,
    start: Instant,
    mut tests: Vec<Outcome>,
    platform: Option<&str>,
    untested_ok: bool,
) -> ImageReport {
    for t in &mut tests {
        t.passed = t.failures.is_empty() && (t.not_run.is_none() || untested_ok);
    }
    ImageReport {
        image: image.name.clone(),
        platform: platform.map(str::to_string),
        run: run_id.0.clone(),
        reference,
        id,
        passed: tests.iter().all(|t| t.passed),
        seconds: start.elapsed().as_secs_f64(),
        tests,
    }
}

/// The layer budgets as checks, each with its figure; failures name the layers and paths.
fn layer_budgets(
    ctx: &Ctx,
    engine: &Engine,
    image: &Image,
    id: &Identity,
    image_id: &str,
) -> Result<Vec<Outcome>> {
    let nodes = ctx.nodes(false, &Default::default())?;
    let Some(node) = nodes.iter().find(|n| n.image.name == image.name) else {
        return Ok(Vec::new());
    };
    let r = super::layers::analyze(ctx, engine, node, id, image_id)?;
    let b = &image.budgets;
    let worst = |n: usize| -> Vec<String> {
        r.wasted
            .iter()
            .take(n)
            .map(|w| {
                let mut line = format!(
                    "{} {} (layers {:?})",
                    size::human(w.bytes),
                    w.path,
                    w.layers
                );
                if let Some(h) = &w.hint {
                    line.push_str(&format!(": {h}"));
                }
                line
            })
            .collect()
    };
    let mut out = Vec::new();
    if let Some(max) = b.max_layer_size {
        let over: Vec<String> = r
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.size > max && !l.base)
            .map(|(i, l)| {
                let at = l
                    .line
                    .map_or(String::new(), |n| format!(" (Dockerfile line {n})"));
                let top = l
                    .largest
                    .iter()
                    .take(3)
                    .map(|f| format!("{} {}", f.path, size::human(f.bytes)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "layer {i}{at} is {}, over max_layer_size {}; largest: {top}",
                    size::human(l.size),
                    size::human(max)
                )
            })
            .collect();
        out.push(builtin(
            &format!("layers <= {} each", size::human(max)),
            over,
        ));
    }
    if let Some(min) = b.min_efficiency {
        let f = if r.efficiency < min {
            let mut f = vec![format!(
                "efficiency is {:.2}%, under min_efficiency {:.2}%",
                r.efficiency * 100.0,
                min * 100.0
            )];
            f.extend(worst(5));
            f
        } else {
            Vec::new()
        };
        out.push(builtin(&format!("efficiency >= {:.1}%", min * 100.0), f));
    }
    if let Some(max) = b.max_wasted {
        let f = if r.wasted_bytes > max {
            let mut f = vec![format!(
                "{} ({} bytes) wasted, over max_wasted {}",
                size::human(r.wasted_bytes),
                r.wasted_bytes,
                size::human(max)
            )];
            f.extend(worst(5));
            f
        } else {
            Vec::new()
        };
        out.push(builtin(&format!("wasted <= {}", size::human(max)), f));
    }
    if let Some(max) = b.max_user_wasted_percent {
        let f = if r.user_wasted_percent > max {
            let mut f = vec![format!(
                "{:.2}% of its own layers is wasted, over max_user_wasted_percent {max}%",
                r.user_wasted_percent
            )];
            f.extend(worst(5));
            f
        } else {
            Vec::new()
        };
        out.push(builtin(&format!("own layers wasted <= {max}%"), f));
    }
    Ok(out)
}

fn builtin(name: &str, failures: Vec<String>) -> Outcome {
    Outcome {
        name: name.into(),
        kind: "builtin",
        failures,
        ..Outcome::default()
    }
}

/// Host values of the suite's `pass_env` variables that are set.
fn host_env(image: &Image) -> Vec<(String, Secret)> {
    let mut out: Vec<(String, Secret)> = Vec::new();
    for t in &image.smoke.tests {
        let Some(run) = t.kind.run() else { continue };
        for var in &run.pass_env {
            if out.iter().any(|(k, _)| k == var) {
                continue;
            }
            if let Ok(v) = std::env::var(var) {
                out.push((var.clone(), Secret::new(v)));
            }
        }
    }
    out
}

fn print_plan(engine: &Engine, image: &Image, reference: &str) {
    let id = RunId("RUN".into());
    for (n, t) in image.smoke.tests.iter().enumerate() {
        let name = id.container(n);
        let secrets: Vec<(String, Secret)> = t
            .kind
            .run()
            .map(|run| {
                run.pass_env
                    .iter()
                    .map(|v| (v.clone(), Secret::new("")))
                    .collect()
            })
            .unwrap_or_default();
        let start = |run, mode| plan::run(engine, &id, &name, reference, run, &mode, &secrets);
        match &t.kind {
            Kind::Command(run, _) => println!("{}", start(run, Mode::Foreground)),
            Kind::Service(run, wait) => {
                println!("{}", start(run, Mode::Detached { port: wait.port() }));
                println!("{}", plan::remove(engine, &name));
            }
            Kind::File(f) => {
                println!("{}", plan::create_for_files(engine, &id, &name, reference));
                println!("{}", plan::copy_out(engine, &name, &f.path));
                println!("{}", plan::remove(engine, &name));
            }
        }
    }
}
