//! `cargo xtask tags`: the tags a build would get, one per line.

use anyhow::Result;
use serde::Serialize;

use crate::flags::VersionArgs;
use crate::project::Ctx;
use crate::version::Kind;

#[derive(Serialize)]
struct Report<'a> {
    version: &'a str,
    kind: &'a Kind,
    tags: &'a [String],
}

pub fn run(ctx: &Ctx, args: &VersionArgs) -> Result<()> {
    let id = ctx.identity(args)?;
    if ctx.json {
        return ctx.print_json(&Report {
            version: &id.version.text,
            kind: &id.version.kind,
            tags: &id.tags,
        });
    }
    eprintln!(
        "version {} ({})",
        id.version.text,
        serde_json::to_value(&id.version.kind)?
            .as_str()
            .unwrap_or("")
    );
    for t in &id.tags {
        println!("{t}");
    }
    Ok(())
}
