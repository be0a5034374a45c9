//! `cargo xtask check`: the .dockerignore coverage verifier (`crate::coverage`) over every
//! image, with a short report or `--json`.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::context;
use crate::coverage::{self, DockerfileText, Finding, Input, Severity};
use crate::flags::CheckArgs;
use crate::project::Ctx;
use crate::size;

pub use crate::coverage::KINDS;

#[derive(Serialize)]
pub struct ImageReport {
    name: String,
    /// The image's context directory, relative to the root.
    #[serde(skip)]
    context: String,
    ignore_file: Option<String>,
    files: usize,
    bytes: u64,
    findings: Vec<Finding>,
}

/// Runs the checks; `Ok(false)` when they found errors (or, with `--strict`, warnings).
pub fn run(ctx: &Ctx, args: &CheckArgs) -> Result<bool> {
    let start = Instant::now();
    let reports = reports(ctx)?;
    let count = |s: Severity| {
        reports
            .iter()
            .flat_map(|r| &r.findings)
            .filter(|f| f.counts(s))
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let seconds = start.elapsed().as_secs_f64();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "images": reports, "errors": errors, "warnings": warnings, "seconds": seconds }))?;
    } else {
        print!("{}", human(&reports, errors, warnings, seconds));
    }
    if matches!(ctx.env.ci_system, crate::ci::Ci::GitHub { .. }) {
        // On stderr under --json, so stdout stays one document; the runner reads both.
        for line in annotations(&reports) {
            if ctx.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(errors == 0 && (!args.strict || warnings == 0))
}

/// What a release must not ship, from `check`'s findings: every error, and every file git
/// does not know (an untracked file is not part of any commit, wherever it goes). Allowed
/// findings pass. `Ok(())` when there is nothing; else the error names each finding.
pub fn gate(ctx: &Ctx, when: &str) -> Result<()> {
    let reports = reports(ctx)?;
    let mut lines = Vec::new();
    for r in &reports {
        for f in r.findings.iter().filter(|f| f.allowed.is_none()) {
            if f.severity != Severity::Error && f.kind != "untracked" {
                continue;
            }
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                _ => String::new(),
            };
            let paths = if f.paths.is_empty() || f.file.is_some() {
                String::new()
            } else {
                format!(" [{}]", f.paths.join(", "))
            };
            lines.push(format!("  {}: {place}{}{paths}", r.name, f.message));
            if let Some(fix) = &f.fix {
                lines.push(format!("      fix: {fix}"));
            }
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    Err(crate::input_error!(
        "{when}: the build context has what a release must not ship (`cargo xtask check` shows the same; `[check] allow` accepts a finding with its reason):\n{}",
        lines.join("\n")
    ))
}

/// Every image's findings, the project's `[check] allow` applied.
pub fn reports(ctx: &Ctx) -> Result<Vec<ImageReport>> {
    // The engine's version decides which Dockerfile syntax it can build. Remembered after the
    // first probe; where the engine isn't installed (a bare pre-commit runner) it is unknown.
    let version = crate::engine::installed(ctx.engine_kind)
        .then(|| ctx.engine().ok())
        .flatten()
        .and_then(|e| e.features.version);
    let mut reports = Vec::new();
    for image in ctx.images()? {
        let prod = crate::tasks::build::dockerfile(&ctx.root, image, false)?;
        let mut paths = vec![prod.clone()];
        paths.extend(
            image
                .dev_dockerfile
                .as_ref()
                .map(|d| d.value.clone())
                .filter(|d| ctx.root.join(d).is_file()),
        );
        let dockerfiles: Vec<DockerfileText> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let text = crate::dockerfile::read_text(&ctx.root.join(p))
                    .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", p.display()))?;
                Ok(DockerfileText {
                    display: p.display().to_string(),
                    text,
                    dev: i > 0,
                })
            })
            .collect::<Result<_>>()?;
        let ignore = context::read_ignore(&ctx.root, &image.context.value, &prod, ctx.engine_kind)?;
        let scan = context::scan(&ctx.root, &image.context.value, ignore, ctx.engine_kind)?;
        let context_dir = ctx.root.join(&image.context.value);
        // Relative to the root, where `sh` runs its commands.
        let git = crate::git::known(&ctx.sh, &image.context.value);
        let scan_cache = (!ctx.state.read_only)
            .then(|| crate::cache::state::dir(&ctx.state).secrets(&image.context.value));
        let input = Input {
            image,
            context_dir: &context_dir,
            scan: &scan,
            dockerfiles: &dockerfiles,
            policy: &ctx.config.context,
            git: git.as_ref(),
            engine: (ctx.engine_kind, version),
            scan_cache: scan_cache.as_deref(),
            now_ns: ctx.env.now_ns,
        };
        let mut findings = coverage::check(&input);
        // A source the context lacks that git ignores is what a `before_build` command makes
        // (`rootfs.tar`, `dist/`): not a finding before the first build.
        if !image.before_build.is_empty() && git.is_some() {
            findings.retain(|f| {
                !(f.kind == "missing_source"
                    && f.severity == Severity::Warning
                    && f.paths
                        .iter()
                        .all(|p| crate::git::ignores(&ctx.sh, &image.context.value, p)))
            });
        }
        findings.extend(unknown_from(ctx, &dockerfiles));
        findings.extend(stale_binds(
            ctx,
            image,
            &dockerfiles[0],
            &context_dir,
            &scan,
        ));
        findings.sort_by_key(|f| f.severity);
        let findings = coverage::apply_allow(findings, &ctx.config.check_allow);
        reports.push(ImageReport {
            name: image.name.clone(),
            context: image.context.value.display().to_string(),
            ignore_file: scan.ignore.as_ref().map(|i| i.display.clone()),
            files: scan.entries.len(),
            bytes: scan.entries.iter().map(|e| e.size).sum(),
            findings,
        });
    }
    Ok(reports)
}

/// `COPY --from=word` that names no stage above it and no image in local storage: the engine
/// would try to pull `docker.io/library/word` (what `plan` and `build` refuse too). Without a
/// known image store (no build here yet), only stage names are checked, and a bare word that
/// is not one is reported.
fn unknown_from(ctx: &Ctx, dockerfiles: &[DockerfileText]) -> Vec<Finding> {
    // The image store is read only when some `--from` needs it: `check` runs on every commit.
    let mut mem: Option<crate::cache::Memory> = None;
    let mut out = Vec::new();
    for df in dockerfiles {
        let Ok(st) = crate::dockerfile::parse(&df.text).and_then(crate::dockerfile::stages) else {
            continue;
        };
        for (si, stage) in st.stages.iter().enumerate() {
            for ins in &stage.body {
                let Some(from) = ins.flag("from") else {
                    continue;
                };
                let bare = !from.contains(['/', ':', '@', '.', '$']);
                if !bare || st.stage_index(si, from).is_some() {
                    continue;
                }
                let local = mem
                    .get_or_insert_with(|| crate::cache::Memory::load(&ctx.state))
                    .images
                    .as_ref()
                    .is_some_and(|i| i.resolve(from).is_some());
                if !local {
                    out.push(
                        Finding::new(
                            "dockerfile",
                            Severity::Error,
                            format!(
                                "`{} {}`: no stage above it is named `{from}`, and no image `{from}` is in local storage",
                                ins.keyword, ins.rest
                            ),
                        )
                        .at(&df.display, ins.line)
                        .fix("name a stage defined above it, or write the image in full (`registry/name:tag`)".into()),
                    );
                }
            }
        }
    }
    out
}

/// Files a `RUN --mount=type=bind` reads that changed since this image's last build: podman
/// 4.3 leaves them out of its cache key and reuses the step, so its output is stale.
fn stale_binds(
    ctx: &Ctx,
    image: &crate::config::Image,
    dockerfile: &DockerfileText,
    context_dir: &std::path::Path,
    scan: &context::Scan,
) -> Vec<Finding> {
    use crate::cache::steps::{bind_digest, bind_sources, Input as StepInput};
    let Ok(instrs) = crate::dockerfile::parse(&dockerfile.text) else {
        return Vec::new();
    };
    let binds: Vec<(usize, String)> = instrs
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| bind_sources(i).into_iter().map(move |s| (i.line, s)))
        .collect();
    if binds.is_empty() {
        return Vec::new();
    }
    let mem = crate::cache::Memory::load(&ctx.state);
    let Some(last) = mem.state.builds.get(&image.name).and_then(|r| r.first()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (line, src) in binds {
        let then = last.steps.iter().find_map(|s| match &s.input {
            StepInput::Run { binds, .. } => binds.get(&src),
            _ => None,
        });
        let below = format!("{src}/");
        let entries: Vec<context::Entry> = scan
            .entries
            .iter()
            .filter(|e| e.path == src || e.path.starts_with(&below))
            .cloned()
            .collect();
        let Ok(facts) = crate::cache::hash::digests(context_dir, &entries, None, ctx.env.now_ns)
        else {
            continue;
        };
        let now = bind_digest(&src, &entries, &facts);
        if let (Some(then), Some(now)) = (then, now) {
            if *then != now {
                out.push(
                    Finding::new(
                        "stale_bind",
                        Severity::Warning,
                        format!(
                            "`{src}` changed since `{}` was last built, and a bind mount is not part of podman's cache key: the RUN that reads it will be reused with its old output",
                            image.name
                        ),
                    )
                    .at(&dockerfile.display, line)
                    .paths(vec![src.clone()])
                    .fix(format!(
                        "build once with `cargo xtask build --no-cache`, or COPY `{src}` before that RUN so the cache sees it"
                    )),
                );
            }
        }
    }
    out
}

/// One GitHub annotation per counted finding, on the file and line it is about (a sent file's
/// path is made relative to the repository through the image's context).
fn annotations(reports: &[ImageReport]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        for f in r.findings.iter().filter(|f| f.allowed.is_none()) {
            let in_context = f.file.is_some() && f.kind == "secret";
            let file = f.file.as_ref().map(|file| {
                if in_context && r.context != "." {
                    format!("{}/{file}", r.context.trim_end_matches('/'))
                } else {
                    file.clone()
                }
            });
            let message = match (&f.fix, f.paths.is_empty() || f.file.is_some()) {
                (Some(fix), true) => format!("{}\nfix: {fix}", f.message),
                (Some(fix), false) => format!("{} [{}]\nfix: {fix}", f.message, f.paths.join(", ")),
                (None, _) => f.message.clone(),
            };
            out.push(crate::ci::github_annotation(
                f.severity == Severity::Error,
                file.as_deref(),
                f.line,
                &format!("check: {} ({})", f.kind, r.name),
                &message,
            ));
        }
    }
    out
}

fn human(reports: &[ImageReport], errors: usize, warnings: usize, seconds: f64) -> String {
    let mut out = String::new();
    let files: usize = reports.iter().map(|r| r.files).sum();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let images = if reports.len() == 1 {
        "1 image".to_string()
    } else {
        format!("{} images", reports.len())
    };
    let allowed = reports
        .iter()
        .flat_map(|r| &r.findings)
        .filter(|f| f.allowed.is_some())
        .count();
    let allowed_note = if allowed > 0 {
        format!(", {allowed} allowed")
    } else {
        String::new()
    };
    if errors + warnings == 0 {
        return format!(
            "check: {images}, {files} files ({}) sent, no problems{allowed_note} ({seconds:.2}s)\n",
            size::human(bytes)
        );
    }
    let stream = crate::output::Stream::Out;
    let rows = reports
        .iter()
        .map(|r| {
            let n = |s: Severity| r.findings.iter().filter(|f| f.counts(s)).count();
            let (e, w) = (n(Severity::Error), n(Severity::Warning));
            let word = |count: usize, what: &str| match count {
                0 => "0".to_string(),
                c => crate::output::paint(&c.to_string(), what, stream),
            };
            vec![
                r.name.clone(),
                r.files.to_string(),
                size::human(r.bytes),
                word(e, "error"),
                word(w, "warning"),
                r.ignore_file
                    .clone()
                    .unwrap_or_else(|| "no ignore file".into()),
            ]
        })
        .collect();
    out.push_str(&crate::output::headed(
        &[
            "image",
            "files",
            "sent",
            "errors",
            "warnings",
            "ignore file",
        ],
        rows,
        stream,
    ));
    for r in reports.iter().filter(|r| !r.findings.is_empty()) {
        out.push_str(&format!("\n{}:\n", r.name));
        for f in &r.findings {
            let sev = match (f.severity, &f.allowed) {
                (_, Some(_)) => "allowed",
                (Severity::Error, None) => "error",
                (Severity::Warning, None) => "warning",
            };
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {}: {place}{}\n",
                crate::output::status(sev, crate::output::Stream::Out),
                f.message
            ));
            let named = f.paths.len() == 1
                && (f.message.contains(&format!("`{}`", f.paths[0]))
                    || f.file.as_ref() == Some(&f.paths[0]));
            if !f.paths.is_empty() && !named {
                let shown: Vec<&str> = f.paths.iter().take(5).map(String::as_str).collect();
                let more = if f.paths.len() > 5 {
                    format!(" and {} more", f.paths.len() - 5)
                } else {
                    String::new()
                };
                out.push_str(&format!("      {}{more}\n", shown.join(", ")));
            }
            if let Some(reason) = &f.allowed {
                out.push_str(&format!("      reason: {reason}\n"));
            } else if let Some(fix) = &f.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
    }
    out.push_str(&format!(
        "check: {images}, {errors} error(s), {warnings} warning(s){allowed_note} ({seconds:.2}s)\n"
    ));
    out
}
