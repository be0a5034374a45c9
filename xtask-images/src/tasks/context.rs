//! `cargo xtask context`: what enters an image's build context, listed, summarised or explained.

use anyhow::Result;
use serde::Serialize;

use crate::context::{self, Summary};
use crate::flags::ContextArgs;
use crate::project::Ctx;
use crate::{input_error, size};

#[derive(Serialize)]
struct Report {
    name: String,
    context: String,
    ignore_file: Option<String>,
    #[serde(flatten)]
    summary: Summary,
}

pub fn run(ctx: &Ctx, args: &ContextArgs) -> Result<()> {
    let images = ctx.images()?;
    if (args.list || args.explain.is_some()) && images.len() > 1 {
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        return Err(input_error!(
            "this project has several images ({}); pick one with --image",
            names.join(", ")
        ));
    }
    let mut reports = Vec::new();
    for image in images {
        let dockerfile = crate::tasks::build::dockerfile(&ctx.root, image, false)?;
        let ignore = context::read_ignore(
            &ctx.root,
            &image.context.value,
            &dockerfile,
            ctx.engine_kind,
        )?;
        if let Some(i) = ignore.as_ref().filter(|i| !i.errors.is_empty()) {
            return Err(input_error!(
                "`{}` has lines {} refuses to build with:\n{}",
                i.display,
                crate::engine::program(ctx.engine_kind),
                context::describe_errors(&i.display, &i.errors)
            ));
        }
        let scan = context::scan(&ctx.root, &image.context.value, ignore, ctx.engine_kind)?;
        if let Some(path) = &args.explain {
            let e = context::walk::explain(&scan.matcher, path);
            if ctx.json {
                return ctx.print_json(&e);
            }
            let file = scan
                .ignore
                .as_ref()
                .map_or("no ignore file", |i| i.display.as_str());
            println!(
                "{}  {}  ({file}: {})",
                if e.included { "included" } else { "excluded" },
                e.path,
                e.reason
            );
            return Ok(());
        }
        if args.list {
            // Special files (FIFOs, sockets, devices) are copied like files; empty directories
            // are not listed (they are directories).
            let mut listed: Vec<&context::Entry> = scan
                .entries
                .iter()
                .chain(
                    scan.extra
                        .iter()
                        .filter(|e| e.stat.mode & 0o170000 != 0o040000),
                )
                .collect();
            listed.sort_by(|a, b| a.path.cmp(&b.path));
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "files": listed }));
            }
            let end = if args.null { b'\0' } else { b'\n' };
            // Names as bytes: one that is not UTF-8 is printed as it is on disk.
            let dir = ctx.root.join(&image.context.value);
            let mut out: Vec<u8> = Vec::with_capacity(listed.len() * 32);
            for e in &listed {
                match e.exact.as_ref().and_then(|x| x.strip_prefix(&dir).ok()) {
                    Some(rel) => out.extend_from_slice(rel.as_os_str().as_encoded_bytes()),
                    None => out.extend_from_slice(e.path.as_bytes()),
                }
                out.push(end);
            }
            // A reader that stops early (`| head`) has what it wanted.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
            return Ok(());
        }
        reports.push(Report {
            name: image.name.clone(),
            context: image.context.value.display().to_string(),
            ignore_file: scan.ignore.as_ref().map(|i| i.display.clone()),
            summary: context::summarize(&scan.entries, 10),
        });
    }
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "images": reports }));
    }
    for r in &reports {
        let s = &r.summary;
        println!(
            "{}: {} files, {} in context `{}` ({})",
            r.name,
            s.files,
            size::human(s.bytes),
            r.context,
            r.ignore_file.as_deref().unwrap_or("no ignore file")
        );
        let mut rows = Vec::new();
        // What is at the top first (the line to add to an ignore file is usually there),
        // then the largest deeper directories and files.
        for t in s.top_level.iter().take(15) {
            rows.push(vec![
                "  top".to_string(),
                size::human(t.bytes),
                t.path.clone(),
            ]);
        }
        if s.top_level.len() > 15 {
            let rest: u64 = s.top_level[15..].iter().map(|t| t.bytes).sum();
            rows.push(vec![
                "  top".to_string(),
                size::human(rest),
                format!("({} more)", s.top_level.len() - 15),
            ]);
        }
        for d in s.largest_dirs.iter().filter(|d| d.path.contains('/')) {
            rows.push(vec![
                "  dir".to_string(),
                size::human(d.bytes),
                format!("{}/", d.path),
            ]);
        }
        for f in &s.largest_files {
            rows.push(vec![
                "  file".to_string(),
                size::human(f.bytes),
                f.path.clone(),
            ]);
        }
        print!(
            "{}",
            crate::output::headed(
                &["  where", "size", "path"],
                rows,
                crate::output::Stream::Out
            )
        );
    }
    Ok(())
}
