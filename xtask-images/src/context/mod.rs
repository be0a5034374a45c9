//! The build context: exactly which files the engine sends, and which ignore-file line decides
//! each path. Pure apart from reading the directory tree and the ignore file.

pub mod ignore;
pub mod pattern;
pub mod walk;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::engine::EngineKind;
pub use ignore::{LineError, Rule};
pub use walk::{Entry, Matcher, Stat};

/// The ignore file in force, as the engine reads it.
#[derive(Debug)]
pub struct IgnoreFile {
    /// Relative to the project root, for messages: `.dockerignore`, `docker/Dockerfile.dockerignore`.
    pub display: String,
    pub rules: Vec<Rule>,
    /// Lines the engine refuses (it will not build while there are any).
    pub errors: Vec<LineError>,
}

/// A context directory, scanned.
pub struct Scan {
    pub ignore: Option<IgnoreFile>,
    pub matcher: Matcher,
    pub entries: Vec<Entry>,
    /// Which rules of the ignore file mattered.
    pub rules: walk::RuleUse,
    /// Empty directories and special files the engine copies too (`walk::Walked::extra`).
    pub extra: Vec<Entry>,
}

/// Finds and parses the ignore file the engine uses for this Dockerfile and context.
pub fn read_ignore(
    root: &Path,
    context_dir: &Path,
    dockerfile: &Path,
    engine: EngineKind,
) -> Result<Option<IgnoreFile>> {
    let Some(path) = ignore::choose(&root.join(context_dir), &root.join(dockerfile), engine) else {
        return Ok(None);
    };
    let text = std::fs::read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    let display = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    let (rules, errors) = match ignore::parse(&text, engine) {
        Ok(rules) => (rules, Vec::new()),
        // Keep the usable lines so the rest of a check can still run.
        Err(errors) => {
            let bad: Vec<usize> = errors.iter().map(|e| e.line).collect();
            let usable: String = text
                .split('\n')
                .enumerate()
                .map(|(i, l)| if bad.contains(&(i + 1)) { "" } else { l })
                .collect::<Vec<_>>()
                .join("\n");
            (ignore::parse(&usable, engine).unwrap_or_default(), errors)
        }
    };
    Ok(Some(IgnoreFile {
        display,
        rules,
        errors,
    }))
}

/// Scans the context directory under its ignore file.
pub fn scan(
    root: &Path,
    context_dir: &Path,
    ignore: Option<IgnoreFile>,
    engine: EngineKind,
) -> Result<Scan> {
    let rules = ignore.as_ref().map(|i| i.rules.clone()).unwrap_or_default();
    let matcher = Matcher::new(rules, engine);
    let w = walk::walk(&root.join(context_dir), &matcher)?;
    Ok(Scan {
        ignore,
        matcher,
        entries: w.entries,
        rules: w.rules,
        extra: w.extra,
    })
}

/// `file:line: `text` — why` for each refused line, for error messages.
pub fn describe_errors(file: &str, errors: &[LineError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {file}:{}: `{}`: {}", e.line, e.text.trim(), e.why))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Sized {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    /// Every top-level directory (everything below it) and file, largest first.
    pub top_level: Vec<Sized>,
    pub largest_dirs: Vec<Sized>,
    pub largest_files: Vec<Sized>,
}

/// Totals and the `top` largest directories (everything below them) and files.
pub fn summarize(entries: &[Entry], top: usize) -> Summary {
    let mut dirs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut tops: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries {
        let first = e.path.split('/').next().unwrap_or(&e.path);
        *tops
            .entry(if first.len() < e.path.len() {
                &e.path[..first.len() + 1]
            } else {
                first
            })
            .or_default() += e.size;
        let mut at = 0;
        while let Some(i) = e.path[at..].find('/') {
            *dirs.entry(&e.path[..at + i]).or_default() += e.size;
            at += i + 1;
        }
    }
    let largest = |mut v: Vec<Sized>| {
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        v.truncate(top);
        v
    };
    let mut top_level: Vec<Sized> = tops
        .into_iter()
        .map(|(p, b)| Sized {
            path: p.to_string(),
            bytes: b,
        })
        .collect();
    top_level.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    Summary {
        files: entries.len(),
        bytes: entries.iter().map(|e| e.size).sum(),
        top_level,
        largest_dirs: largest(
            dirs.into_iter()
                .map(|(p, b)| Sized {
                    path: p.to_string(),
                    bytes: b,
                })
                .collect(),
        ),
        largest_files: largest(
            entries
                .iter()
                .map(|e| Sized {
                    path: e.path.clone(),
                    bytes: e.size,
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_rank_dirs_by_everything_below() {
        let e = |p: &str, size| Entry {
            path: p.into(),
            size,
            symlink: false,
            stat: Default::default(),
            exact: None,
        };
        let s = summarize(&[e("a/b/c", 5), e("a/d", 1), e("x", 9), e("y/z", 2)], 2);
        assert_eq!((s.files, s.bytes), (4, 17));
        let top: Vec<(&str, u64)> = s
            .top_level
            .iter()
            .map(|t| (t.path.as_str(), t.bytes))
            .collect();
        assert_eq!(top, [("x", 9), ("a/", 6), ("y/", 2)]);
        assert_eq!(
            s.largest_dirs,
            [
                Sized {
                    path: "a".into(),
                    bytes: 6
                },
                Sized {
                    path: "a/b".into(),
                    bytes: 5
                }
            ]
        );
        assert_eq!(
            s.largest_files[0],
            Sized {
                path: "x".into(),
                bytes: 9
            }
        );
    }

    #[test]
    fn ignore_file_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("docker")).unwrap();
        let df = d.join("docker/Dockerfile");
        let choose = |e| {
            ignore::choose(d, &df, e)
                .map(|p| p.strip_prefix(d).unwrap().to_string_lossy().into_owned())
        };
        assert_eq!(choose(EngineKind::Podman), None);
        std::fs::write(d.join(".dockerignore"), "").unwrap();
        assert_eq!(choose(EngineKind::Podman).as_deref(), Some(".dockerignore"));
        std::fs::write(d.join(".containerignore"), "").unwrap();
        assert_eq!(
            choose(EngineKind::Podman).as_deref(),
            Some(".containerignore")
        );
        assert_eq!(choose(EngineKind::Docker).as_deref(), Some(".dockerignore"));
        std::fs::write(d.join("docker/Dockerfile.containerignore"), "").unwrap();
        assert_eq!(
            choose(EngineKind::Podman).as_deref(),
            Some("docker/Dockerfile.containerignore")
        );
        std::fs::write(d.join("docker/Dockerfile.dockerignore"), "").unwrap();
        assert_eq!(
            choose(EngineKind::Podman).as_deref(),
            Some("docker/Dockerfile.dockerignore")
        );
        assert_eq!(
            choose(EngineKind::Docker).as_deref(),
            Some("docker/Dockerfile.dockerignore")
        );
    }
}
