//! `cargo xtask layers`: each built image's layers, what made them, what they add, and what
//! they waste (dive's figures, with the paths responsible and what to change).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::config::Image;
use crate::engine::{Engine, EngineKind};
use crate::flags::VersionArgs;
use crate::graph::Node;
use crate::layers::{self, read};
use crate::project::{Ctx, Identity};
use crate::size;

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub id: String,
    /// Σ of the layers' sizes (tar header sizes).
    pub size: u64,
    pub efficiency: f64,
    pub wasted_bytes: u64,
    /// Wasted bytes of paths that occur in the image's own layers, over those layers' size.
    pub user_wasted_percent: f64,
    pub layers: Vec<LayerReport>,
    pub wasted: Vec<WasteReport>,
    /// Known culprits the image's own layers ship: package-manager caches, compilers.
    pub culprits: Vec<Culprit>,
}

#[derive(Debug, Serialize)]
pub struct Culprit {
    /// The directory, such as `/var/lib/apt/lists`.
    pub path: String,
    pub bytes: u64,
    pub layer: usize,
    pub line: Option<usize>,
    pub hint: String,
}

#[derive(Debug, Serialize)]
pub struct LayerReport {
    /// The layer's uncompressed digest (the config's diff ID).
    pub digest: String,
    pub size: u64,
    pub created_by: String,
    /// The Dockerfile line of the instruction that made it, when the layers map onto them.
    pub line: Option<usize>,
    /// Part of the `FROM` image (all its layers, not only the first).
    pub base: bool,
    pub largest: Vec<FileSize>,
}

#[derive(Debug, Serialize)]
pub struct FileSize {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct WasteReport {
    pub path: String,
    pub bytes: u64,
    pub layers: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

pub fn run(ctx: &Ctx, args: &VersionArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let id = ctx.identity(args)?;
    let mut reports = Vec::new();
    for node in ctx.nodes(args.dev, &Default::default())? {
        let image_id = super::push::local_id(ctx, &engine, &id.local_ref(&node.image.name))?;
        reports.push(analyze(ctx, &engine, &node, &id, &image_id)?);
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": reports }));
    }
    for r in &reports {
        print!("{}", human(r));
    }
    Ok(())
}

/// Saves the image as an OCI directory (uncompressed layers) and reads every layer's entries.
pub fn analyze(
    ctx: &Ctx,
    engine: &Engine,
    node: &Node,
    id: &Identity,
    image_id: &str,
) -> Result<Report> {
    let tmp = crate::fsx::TempDir::new("layers")?;
    let dir = tmp.0.join("oci");
    let save = engine.oci_dir(&dir.display().to_string(), image_id);
    ctx.sh.read(&save)?;
    let image = read::oci_dir(&dir)?;
    let chain = final_chain(&ctx.root, node);
    let base = chain
        .as_ref()
        .and_then(|(_, base)| base_layers(ctx, engine, node, id, base));
    let instructions = chain
        .as_ref()
        .map(|(stages, _)| layer_instructions(stages))
        .unwrap_or_default();
    Ok(report(
        node.image,
        image_id,
        &image,
        base.as_deref(),
        &instructions,
    ))
}

/// The diff IDs of the final stage's `FROM` image `base`, if it is in local storage (none for
/// `scratch`).
fn base_layers(
    ctx: &Ctx,
    engine: &Engine,
    node: &Node,
    id: &Identity,
    base: &str,
) -> Option<Vec<String>> {
    if base == "scratch" {
        return Some(Vec::new());
    }
    // The project's own base: its content as this build was given it has the same layers.
    let reference = match node.deps.iter().find(|d| d.reference == base) {
        Some(d) if engine.kind == EngineKind::Podman => {
            format!("localhost/{}", id.local_ref(&d.image))
        }
        Some(d) => id.local_ref(&d.image),
        None => base.to_string(),
    };
    let out = ctx
        .sh
        .probe(
            &engine
                .cmd()
                .args(["image", "inspect", "--format", "{{json .RootFS.Layers}}"])
                .arg(reference),
        )
        .ok()?;
    out.success()
        .then(|| serde_json::from_str(out.stdout.trim()).ok())
        .flatten()
}

/// The stages the final image is made of, root first, and the root's base as written (ARGs
/// expanded with their defaults and the image's build args).
fn final_chain(root: &Path, node: &Node) -> Option<(Vec<crate::dockerfile::Stage>, String)> {
    let text = crate::dockerfile::read_text(&root.join(&node.dockerfile)).ok()?;
    let df = crate::dockerfile::parse(&text)
        .and_then(crate::dockerfile::stages)
        .ok()?;
    let stages = df.up_to(node.image.target.as_deref()).ok()?.to_vec();
    let refs = crate::graph::references(&df, node.image.target.as_deref(), &node.image.build_args);
    let mut chain = vec![stages.len() - 1];
    loop {
        let i = *chain.last()?;
        match df.stage_index(i, &stages[i].base) {
            Some(j) if !chain.contains(&j) => chain.push(j),
            Some(_) => return None,
            None => {
                let line = stages[i].from.line;
                let base = refs
                    .iter()
                    .find(|(l, _)| *l == line)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| stages[i].base.clone());
                chain.reverse();
                return Some((chain.into_iter().map(|k| stages[k].clone()).collect(), base));
            }
        }
    }
}

/// The instructions that make layers (RUN, COPY, ADD) along the final chain, with their lines.
fn layer_instructions(chain: &[crate::dockerfile::Stage]) -> Vec<(usize, String)> {
    chain
        .iter()
        .flat_map(|s| &s.body)
        .filter(|i| matches!(i.keyword.as_str(), "RUN" | "COPY" | "ADD"))
        .map(|i| (i.line, i.text()))
        .collect()
}

/// The figures, from the saved image: `base` is the `FROM` image's diff IDs, `instructions` the
/// Dockerfile's layer-making instructions in order.
pub fn report(
    image: &Image,
    image_id: &str,
    saved: &read::OciImage,
    base: Option<&[String]>,
    instructions: &[(usize, String)],
) -> Report {
    let diff_ids: Vec<String> = saved.config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let base_count = base
        .filter(|b| diff_ids.starts_with(b))
        .map_or(0, <[String]>::len);
    let history: Vec<String> = saved.config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .map(|h| h["created_by"].as_str().unwrap_or_default().to_string())
        .collect();
    let own = saved.layers.len().saturating_sub(base_count);
    let lines: Vec<Option<usize>> = if instructions.len() == own {
        instructions.iter().map(|(l, _)| Some(*l)).collect()
    } else {
        vec![None; own]
    };
    let layers: Vec<LayerReport> = saved
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerReport {
            digest: diff_ids
                .get(i)
                .cloned()
                .unwrap_or_else(|| saved.digests[i].clone()),
            size: l.size(),
            created_by: history.get(i).cloned().unwrap_or_default(),
            line: i.checked_sub(base_count).and_then(|k| lines[k]),
            base: i < base_count,
            largest: l
                .largest(5)
                .into_iter()
                .map(|(path, bytes)| FileSize { path, bytes })
                .collect(),
        })
        .collect();
    let eff = layers::efficiency(&saved.layers);
    let user_size: u64 = layers.iter().filter(|l| !l.base).map(|l| l.size).sum();
    let user_wasted: u64 = eff
        .wasted
        .iter()
        .filter(|w| w.layers.iter().any(|&i| i >= base_count))
        .map(|w| w.bytes)
        .sum();
    let wasted = eff
        .wasted
        .iter()
        .map(|w| {
            let at = |i: usize| match layers.get(i).and_then(|l| l.line) {
                Some(line) => format!("line {line}"),
                None => format!("layer {i}"),
            };
            WasteReport {
                path: w.path.clone(),
                bytes: w.bytes,
                layers: w.layers.clone(),
                hint: layers::hint(&w.path, w.deleted).map(|h| {
                    let places: Vec<String> = w.layers.iter().map(|&i| at(i)).collect();
                    format!("{h} ({})", places.join(", "))
                }),
            }
        })
        .collect();
    let culprits = layers::caches(&saved.layers)
        .into_iter()
        .filter(|c| c.layer >= base_count)
        .map(|c| Culprit {
            line: layers.get(c.layer).and_then(|l| l.line),
            hint: layers::hint(&format!("{}/", c.path), false)
                .unwrap_or_default()
                .to_string(),
            path: c.path,
            bytes: c.bytes,
            layer: c.layer,
        })
        .collect();
    Report {
        culprits,
        name: image.name.clone(),
        id: image_id.to_string(),
        size: layers.iter().map(|l| l.size).sum(),
        efficiency: eff.efficiency,
        wasted_bytes: eff.wasted_bytes,
        user_wasted_percent: if user_size == 0 {
            0.0
        } else {
            user_wasted as f64 * 100.0 / user_size as f64
        },
        layers,
        wasted,
    }
}

/// A few lines per image: totals, each layer, then the waste with its hints.
pub fn human(r: &Report) -> String {
    let mut out = format!(
        "{}  {}  {}  efficiency {:.1}%  wasted {} ({:.1}% of its own layers)\n",
        r.name,
        &r.id[..r.id.len().min(12)],
        size::human(r.size),
        r.efficiency * 100.0,
        size::human(r.wasted_bytes),
        r.user_wasted_percent
    );
    let rows: Vec<Vec<String>> = r
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let what = l
                .created_by
                .trim_start_matches("/bin/sh -c ")
                .trim_start_matches("#(nop) ");
            let what: String = what.chars().take(70).collect();
            vec![
                format!("  {i}"),
                size::human(l.size),
                if l.base {
                    "base".to_string()
                } else {
                    l.line.map_or(String::new(), |n| format!("line {n}"))
                },
                what,
            ]
        })
        .collect();
    out.push_str(&crate::output::headed(
        &["  layer", "size", "made by", "what"],
        rows,
        crate::output::Stream::Out,
    ));
    for w in r.wasted.iter().take(10) {
        out.push_str(&format!(
            "  wasted {:>9}  {}  (layers {})\n",
            size::human(w.bytes),
            w.path,
            w.layers
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(h) = &w.hint {
            out.push_str(&format!("           {h}\n"));
        }
    }
    for c in &r.culprits {
        let at = c
            .line
            .map_or(format!("layer {}", c.layer), |n| format!("line {n}"));
        out.push_str(&format!(
            "  ships   {:>9}  {}/  ({at}): {}\n",
            size::human(c.bytes),
            c.path,
            c.hint
        ));
    }
    if r.wasted.len() > 10 {
        out.push_str(&format!(
            "  … and {} more paths (--json lists all)\n",
            r.wasted.len() - 10
        ));
    }
    out
}
