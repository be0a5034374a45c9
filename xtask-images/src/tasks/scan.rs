//! `cargo xtask scan`: the vulnerability gate on the built images, and the same gate in
//! `release` between the smoke tests and the push. The scanner reads each image from an OCI
//! archive (no daemon); its JSON report is judged by `crate::scan`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::cmd::Cmd;
use crate::config::ScanConfig;
use crate::engine::Engine;
use crate::input_error;
use crate::project::Ctx;
use crate::scan::{self, Status, Verdict};

#[derive(Debug, Serialize)]
pub struct ImageScan {
    pub name: String,
    pub id: String,
    pub scanner: scan::Scanner,
    pub fail_on: scan::Severity,
    /// Findings per severity, highest first.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The image as an OCI archive in `dir`, for tools that read images without a daemon.
pub fn save_archive(ctx: &Ctx, engine: &Engine, image_id: &str, dir: &Path) -> Result<PathBuf> {
    let archive = dir.join(format!("{}.tar", &image_id[..image_id.len().min(12)]));
    if !archive.exists() {
        ctx.sh
            .run(&engine.oci_archive(&archive.display().to_string(), image_id))?;
    }
    Ok(archive)
}

/// A configured command with its placeholders filled.
pub fn fill(argv: &[String], archive: &Path, format: &str) -> Cmd {
    let filled: Vec<String> = argv
        .iter()
        .map(|a| {
            a.replace("{archive}", &archive.display().to_string())
                .replace("{format}", format)
        })
        .collect();
    Cmd::new(&filled[0]).args(filled[1..].iter().cloned())
}

/// Scans each image (`ids`: name → image ID) and judges the reports; `report` is a report made
/// elsewhere, for a single image.
pub fn scan_images(
    ctx: &Ctx,
    engine: &Engine,
    config: &ScanConfig,
    ids: &[(String, String)],
    report: Option<&Path>,
    archives: &Path,
) -> Result<Vec<ImageScan>> {
    if report.is_some() && ids.len() != 1 {
        return Err(input_error!(
            "--report is one image's report; pick the image with --image (this project has {})",
            ids.len()
        ));
    }
    if report.is_none() && !crate::engine::on_path(&config.command[0]) {
        return Err(input_error!(
            "the scanner `{}` is not installed (not on PATH): {}; or pass --report FILE with a report made elsewhere",
            config.command[0],
            config.scanner.install_hint()
        ));
    }
    let mut out = Vec::new();
    for (name, image_id) in ids {
        let text = match report {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the report `{}`", path.display()))?,
            None => {
                if ctx.sh.dry_run {
                    println!("{}", fill(&config.command, &archives.join("IMAGE.tar"), ""));
                    continue;
                }
                let archive = save_archive(ctx, engine, image_id, archives)?;
                ctx.sh.read(&fill(&config.command, &archive, ""))?
            }
        };
        let findings = scan::parse_report(config.scanner, &text)
            .map_err(|e| anyhow!("the {:?} report of `{name}`: {e}", config.scanner))?;
        let verdict = scan::judge(&findings, &config.policy, ctx.env.now);
        out.push(ImageScan {
            name: name.clone(),
            id: image_id.clone(),
            scanner: config.scanner,
            fail_on: config.policy.fail_on,
            counts: scan::counts(&verdict.findings)
                .into_iter()
                .map(|(s, n)| (s.name(), n))
                .collect(),
            verdict,
        });
    }
    Ok(out)
}

/// Per image: the counts, then each blocking, waived or expired finding, and stale waivers.
pub fn human(scans: &[ImageScan]) -> String {
    let mut out = String::new();
    for s in scans {
        let counts = scan::counts(&s.verdict.findings)
            .iter()
            .map(|(sev, n)| format!("{n} {}", sev.name()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "scan {} ({:?}): {}; {} blocking (fail_on {})\n",
            s.name,
            s.scanner,
            if counts.is_empty() {
                "no findings".to_string()
            } else {
                counts
            },
            s.verdict.blocking,
            s.fail_on.name()
        ));
        let rows: Vec<Vec<String>> = s
            .verdict
            .findings
            .iter()
            .filter(|j| j.status == Status::Blocking || j.waiver.is_some())
            .map(|j| {
                let f = &j.finding;
                let state = match (&j.status, &j.waiver) {
                    (Status::Waived, Some(w)) => format!("waived until {}: {}", w.until, w.reason),
                    (_, Some(w)) if w.expired => format!("BLOCKS: waiver expired {}", w.until),
                    _ => "BLOCKS".to_string(),
                };
                vec![
                    format!("  {}", f.severity.name()),
                    f.id.clone(),
                    format!(
                        "{} {} → {}",
                        f.package,
                        f.installed,
                        f.fixed.as_deref().unwrap_or("no fix")
                    ),
                    state,
                ]
            })
            .collect();
        out.push_str(&crate::output::headed(
            &["  severity", "id", "package", "state"],
            rows,
            crate::output::Stream::Out,
        ));
        for w in &s.verdict.stale_waivers {
            out.push_str(&format!(
                "  stale waiver: {w} matches no finding; remove it\n"
            ));
        }
    }
    out
}

pub fn run(ctx: &Ctx, args: &crate::flags::ScanArgs) -> Result<bool> {
    let config = ctx.config.scan.as_ref().ok_or_else(|| {
        input_error!(
            "no `[scan]` in docker/images.toml; add `[scan] scanner = \"trivy\"` (or \"grype\") to scan images"
        )
    })?;
    let engine = ctx.engine()?;
    let id = ctx.identity(&args.version)?;
    let images = ctx.built_images(args.version.dev)?;
    let ids: Vec<(String, String)> = if ctx.sh.dry_run {
        images
            .iter()
            .map(|i| (i.name.clone(), format!("<ID of {}>", id.local_ref(&i.name))))
            .collect()
    } else {
        images
            .iter()
            .map(|i| {
                super::push::local_id(ctx, &engine, &id.local_ref(&i.name))
                    .map(|image_id| (i.name.clone(), image_id))
            })
            .collect::<Result<_>>()?
    };
    let tmp = crate::fsx::TempDir::new("scan")?;
    let scans = scan_images(ctx, &engine, config, &ids, args.report.as_deref(), &tmp.0)?;
    if ctx.sh.dry_run {
        return Ok(true);
    }
    if let Some(path) = &args.sarif {
        let runs: Vec<(String, String, Verdict)> = scans
            .iter()
            .map(|s| {
                let df = images
                    .iter()
                    .find(|i| i.name == s.name)
                    .map(|i| i.dockerfile.value.display().to_string())
                    .unwrap_or_default();
                (s.name.clone(), df, s.verdict.clone())
            })
            .collect();
        crate::fsx::write_atomic(
            path,
            serde_json::to_vec_pretty(&scan::sarif(config.scanner, &runs))?,
        )?;
    }
    let blocking: usize = scans.iter().map(|s| s.verdict.blocking).sum();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "images": scans, "blocking": blocking }))?;
    } else {
        print!("{}", human(&scans));
    }
    Ok(blocking == 0)
}
