//! `cargo xtask init`: makes a repository ready for `cargo xtask` (the workspace, the thin
//! xtask crate, the alias, the toolchain, the images config, ignore files, the pre-commit hook),
//! never overwriting what exists, then runs `check`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::flags::InitArgs;
use crate::project::Ctx;
use crate::scaffold::{self, Action, Facts, Source};

const FILES: &[&str] = &[
    "Cargo.toml",
    "xtask/Cargo.toml",
    "xtask/src/main.rs",
    ".cargo/config.toml",
    "rust-toolchain.toml",
    crate::config::CONFIG_PATH,
    ".dockerignore",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".github/workflows/images.yml",
    ".gitlab-ci.yml",
];

pub fn run(ctx: &Ctx, args: &InitArgs) -> Result<bool> {
    let facts = read_facts(&ctx.root)?;
    let source = source(&ctx.root, args)?;
    let actions = scaffold::plan(&facts, &source);
    if !ctx.sh.dry_run {
        for a in &actions {
            apply(&ctx.root, a)?;
        }
    }
    let changed = actions.iter().any(Action::changes);
    // The config may be new: check what the repository is now, not what it was.
    let fresh = Ctx::load(
        ctx.root.clone(),
        ctx.sh.clone(),
        ctx.json,
        Some(ctx.engine_kind),
        ctx.image.clone(),
        ctx.env.clone(),
    )?;
    if ctx.json {
        let report = super::check::reports(&fresh).unwrap_or_default();
        ctx.print_json(&serde_json::json!({
            "root": ctx.root.display().to_string(),
            "changed": changed,
            "files": actions,
            "check": report,
        }))?;
        return Ok(true);
    }
    print!("{}", human(&ctx.root, &actions, &source));
    // What check can't do yet (no Dockerfile) is said, not fatal: init has done its part.
    let clean = match super::check::run(&fresh, &crate::flags::CheckArgs { strict: false }) {
        Ok(clean) => clean,
        Err(e) => {
            println!("check: {e:#}");
            false
        }
    };
    println!(
        "{}",
        if !changed {
            "init: already set up; nothing changed".to_string()
        } else if ctx.sh.dry_run {
            "init: --dry-run, nothing was written".to_string()
        } else if clean {
            "next: commit these files, then run `cargo xtask release` (or `cargo xtask build` to try the image first)".to_string()
        } else {
            "next: fix what `check` found above (each finding says how), commit the new files, then run `cargo xtask release`".to_string()
        }
    );
    Ok(true)
}

fn read_facts(root: &Path) -> Result<Facts> {
    let mut f = Facts {
        dir_name: root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
        ..Facts::default()
    };
    for p in FILES {
        match std::fs::read_to_string(root.join(p)) {
            Ok(t) => {
                f.files.insert(p.to_string(), t);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("cannot read `{p}`: {e}")),
        }
    }
    for dir in ["", "docker"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_dockerfile(n))
            .collect();
        names.sort();
        for n in names {
            let rel = if dir.is_empty() {
                n
            } else {
                format!("{dir}/{n}")
            };
            let text = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
            f.dockerfiles.push((rel, text));
        }
    }
    Ok(f)
}

fn is_dockerfile(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let ignore_file = n.ends_with(".dockerignore") || n.ends_with(".containerignore");
    let named = |base: &str| {
        n == base
            || n.strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
            || n.ends_with(&format!(".{base}"))
    };
    !ignore_file && !n.ends_with(".md") && (named("dockerfile") || named("containerfile"))
}

/// `--path` (made relative to the new `xtask/` directory when it can be), `--git`, or the
/// library this binary was built from.
fn source(root: &Path, args: &InitArgs) -> Result<Source> {
    if let Some(url) = &args.git {
        let tag = args
            .tag
            .clone()
            .unwrap_or_else(|| format!("v{}", env!("CARGO_PKG_VERSION")));
        return Ok(Source::Git {
            url: url.clone(),
            tag,
        });
    }
    let lib = match &args.path {
        Some(p) => p.canonicalize().map_err(|e| {
            crate::input_error!(
                "--path `{}`: {e}; give the xtask-images directory",
                p.display()
            )
        })?,
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    if !lib.join("Cargo.toml").is_file() {
        return Err(crate::input_error!(
            "`{}` holds no Cargo.toml; --path takes the xtask-images directory",
            lib.display()
        ));
    }
    let xtask_dir = root
        .canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .join("xtask");
    Ok(Source::Path(relative(&xtask_dir, &lib)))
}

/// `to` as seen from `from` (both absolute): `../../lib`, or `to` itself when they share
/// nothing but the root.
fn relative(from: &Path, to: &Path) -> String {
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common <= 1 {
        return to.to_string_lossy().into_owned();
    }
    let mut parts: Vec<String> = vec!["..".into(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

fn apply(root: &Path, a: &Action) -> Result<()> {
    match a {
        Action::Create { path, content } => crate::fsx::write_atomic(&root.join(path), content),
        Action::Append { path, lines } => {
            let file = root.join(path);
            let mut text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read `{path}`: {e}"))?;
            text.push_str(lines);
            crate::fsx::write_atomic(&file, text)
        }
        Action::Merge { .. } | Action::Keep { .. } => Ok(()),
    }
}

fn human(root: &Path, actions: &[Action], source: &Source) -> String {
    let mut out = format!("init: {}\n", root.display());
    let mut rows = Vec::new();
    let mut merges = String::new();
    for a in actions {
        let (what, note) = match a {
            Action::Create { .. } => ("created", String::new()),
            Action::Append { lines, .. } => (
                "appended",
                format!(
                    "(+{} lines)",
                    lines.lines().filter(|l| !l.is_empty()).count()
                ),
            ),
            Action::Keep { .. } => ("kept", String::new()),
            Action::Merge { path, why, snippet } => {
                merges.push_str(&format!(
                    "  merge into {path}: {why}\n{}\n",
                    snippet
                        .lines()
                        .map(|l| format!("      {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
                ("merge", "(exists; see below)".to_string())
            }
        };
        rows.push(vec![format!("  {what}"), a.path().to_string(), note]);
    }
    out.push_str(&crate::output::table(&rows));
    out.push_str(&merges);
    if let Source::Path(p) = source {
        if Path::new(p).is_absolute() {
            out.push_str(&format!(
                "  note: xtask/Cargo.toml depends on xtask-images at `{p}`, a path on this machine; for CI, use `--git URL --tag TAG` or a path inside the repository\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_directories() {
        assert_eq!(
            relative(Path::new("/w/app/xtask"), Path::new("/w/tool/xtask-images")),
            "../../tool/xtask-images"
        );
        assert_eq!(relative(Path::new("/a/xtask"), Path::new("/b")), "/b");
        assert!(is_dockerfile("Dockerfile.dev") && is_dockerfile("worker.Dockerfile"));
        assert!(!is_dockerfile("Dockerfile.dockerignore") && !is_dockerfile("dockerfiles.md"));
    }
}
