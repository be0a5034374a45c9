//! Images handed from one CI job to the next, when each runs on another machine: `build --save`
//! writes each image as an archive (OCI from podman, Docker's own from the daemon) with a
//! record of what was built (`target/xtask/images/`, a CI artifact); `test` and `push` load it
//! where storage lacks the image, and refuse an
//! archive whose image is not the recorded one. `test` records each image ID it passed, and
//! `push` of a handed-over image refuses one without a pass (`--untested` overrides): what is
//! pushed is what was tested.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::engine::Engine;
use crate::project::{Ctx, Identity};

/// Relative to the project root; `target/xtask/` carries its own `.gitignore`.
pub const DIR: &str = "target/xtask/images";

/// What `build --save` recorded next to an archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub version: String,
    /// The image ID (config digest, 64 hex) the archive must load as.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub tags: Vec<String>,
    /// Image IDs `test` passed (on whichever machine ran it).
    #[serde(default)]
    pub passed: Vec<String>,
}

fn dir(ctx: &Ctx) -> PathBuf {
    ctx.root.join(DIR)
}

fn archive(name: &str) -> String {
    format!("{DIR}/{name}.tar")
}

fn record_path(ctx: &Ctx, name: &str) -> PathBuf {
    dir(ctx).join(format!("{name}.json"))
}

pub fn read(ctx: &Ctx, name: &str) -> Option<Record> {
    std::fs::read(record_path(ctx, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn write(ctx: &Ctx, r: &Record) -> Result<()> {
    crate::fsx::mark_output_dir(&ctx.root.join("target/xtask"), "CI reports and artifacts")?;
    crate::fsx::write_atomic(&record_path(ctx, &r.name), serde_json::to_vec_pretty(r)?)
}

/// `build --save`: the archive (the primary name inside it), then the record.
pub fn save(
    ctx: &Ctx,
    engine: &Engine,
    name: &str,
    image_id: &str,
    key: Option<&str>,
    id: &Identity,
) -> Result<()> {
    if !ctx.sh.dry_run {
        std::fs::create_dir_all(dir(ctx))?;
        // The old record goes first: until the new archive is whole, no record vouches for
        // what is under the archive's name.
        let _ = std::fs::remove_file(record_path(ctx, name));
    }
    // Written under a temporary name and renamed once whole, so a full disk or a kill leaves
    // no truncated archive under the name `test` and `push` load.
    let partial = format!("{}.partial-{}", archive(name), std::process::id());
    let saved = ctx.sh.run(&engine.save(&partial, &id.local_ref(name)));
    if ctx.sh.dry_run {
        return saved;
    }
    if let Err(e) = saved {
        let _ = std::fs::remove_file(ctx.root.join(&partial));
        return Err(e.context(format!(
            "saving `{}` to {}: nothing was left under that name",
            id.local_ref(name),
            archive(name)
        )));
    }
    std::fs::rename(ctx.root.join(&partial), ctx.root.join(archive(name)))
        .map_err(|e| anyhow::anyhow!("cannot rename `{partial}` to `{}`: {e}", archive(name)))?;
    write(
        ctx,
        &Record {
            name: name.to_string(),
            version: id.version.text.clone(),
            id: image_id.to_string(),
            key: key.map(str::to_string),
            tags: id.tags.clone(),
            passed: Vec::new(),
        },
    )
}

/// Makes `NAME:PRIMARY` local from the archive when storage lacks it and a record of this
/// version exists; refuses an archive that loads as another image. `Ok(None)`: nothing to do
/// (the image is local, or there is no archive of this version).
pub fn ensure_local(
    ctx: &Ctx,
    engine: &Engine,
    name: &str,
    id: &Identity,
) -> Result<Option<Record>> {
    let reference = id.local_ref(name);
    let Some(record) = read(ctx, name).filter(|r| r.version == id.version.text) else {
        return Ok(None);
    };
    let exists = ctx
        .sh
        .probe(&engine.inspect_images(std::slice::from_ref(&reference)))?;
    if exists.success() {
        return Ok(Some(record));
    }
    eprintln!(
        "note: `{reference}` is not in local storage; loading it from {}",
        archive(name)
    );
    ctx.sh.run(&engine.load(&archive(name)))?;
    let loaded = crate::engine::parse_inspect(
        &ctx.sh
            .read(&engine.inspect_images(std::slice::from_ref(&reference)))?,
    )?;
    let got = loaded
        .first()
        .map(|i| i.bare_id().to_string())
        .unwrap_or_default();
    if got != record.id {
        // Never leave the impostor under the release's name.
        let _ = ctx
            .sh
            .run(&Cmd::new(engine.program()).args(["rmi", "--force", &got]));
        return Err(anyhow::anyhow!(
            "{} loads as image {}, but the build recorded {}: the archive was changed between jobs; refusing to use it",
            archive(name),
            &got[..got.len().min(12)],
            &record.id[..record.id.len().min(12)]
        ));
    }
    let others: Vec<String> = record
        .tags
        .iter()
        .map(|t| format!("{name}:{t}"))
        .filter(|r| *r != reference)
        .collect();
    for c in engine.tag(&reference, &others) {
        ctx.sh.run(&c)?;
    }
    Ok(Some(record))
}

/// `test` passed this image: recorded where the next job (and `push`) will find it.
pub fn record_pass(ctx: &Ctx, name: &str, image_id: &str) -> Result<()> {
    let Some(mut r) = read(ctx, name) else {
        return Ok(());
    };
    if r.id == image_id && !r.passed.iter().any(|p| p == image_id) {
        r.passed.push(image_id.to_string());
        write(ctx, &r)?;
    }
    Ok(())
}
