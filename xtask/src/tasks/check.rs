//! `cargo xtask check`: the .dockerignore coverage verifier. Per image: secrets and bloat that
//! would be sent, COPY/ADD sources the ignore file hides, files sent but never copied, ignore
//! lines that do nothing, context budgets, and lines the engine refuses.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use globset::{GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::config::{ContextPolicy, Image};
use crate::context::{self, walk::explain, Scan};
use crate::dockerfile;
use crate::flags::CheckArgs;
use crate::project::Ctx;
use crate::size;

/// Name patterns, matched against every component of a sent path.
const SECRETS: &[&str] = &[
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "*.p12",
    "*.pfx",
    ".aws",
    ".ssh",
    ".npmrc",
    ".pypirc",
    "kubeconfig",
    "*.tfstate",
    "*.tfstate.backup",
];
const BLOAT: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    ".venv",
    "__pycache__",
    ".DS_Store",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The file and line the finding is about (an ignore file or a Dockerfile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Finding {
    fn new(kind: &'static str, severity: Severity, message: String) -> Finding {
        Finding {
            kind,
            severity,
            message,
            paths: Vec::new(),
            fix: None,
            file: None,
            line: None,
        }
    }
    fn paths(mut self, p: Vec<String>) -> Finding {
        self.paths = p;
        self
    }
    fn fix(mut self, f: String) -> Finding {
        self.fix = Some(f);
        self
    }
    fn at(mut self, file: &str, line: usize) -> Finding {
        self.file = Some(file.to_string());
        self.line = Some(line);
        self
    }
}

/// One Dockerfile of an image, read.
pub struct DockerfileText {
    pub display: String,
    pub text: String,
}

/// Everything the checks of one image look at.
pub struct Input<'a> {
    pub image: &'a Image,
    pub context_dir: &'a Path,
    pub scan: &'a Scan,
    pub dockerfiles: &'a [DockerfileText],
    pub policy: &'a ContextPolicy,
}

fn name_set(names: &[&str]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for n in names {
        b.add(crate::config::glob(n).expect("built-in patterns are valid"));
    }
    b.build().expect("built-in patterns are valid")
}

fn path_set(globs: &[crate::config::Located<String>]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(crate::config::glob(&g.value).expect("validated when the config was read"));
    }
    b.build().expect("validated when the config was read")
}

/// The ignore file to name in fixes.
fn ignore_name(scan: &Scan) -> String {
    scan.ignore
        .as_ref()
        .map_or_else(|| ".dockerignore".to_string(), |i| i.display.clone())
}

/// Every check for one image, most severe first.
pub fn check(input: &Input) -> Vec<Finding> {
    let mut out = Vec::new();
    let scan = input.scan;
    let ignore = ignore_name(scan);
    if let Some(i) = &scan.ignore {
        for e in &i.errors {
            out.push(
                Finding::new(
                    "malformed_pattern",
                    Severity::Error,
                    format!("`{}`: {}", e.text.trim(), e.why),
                )
                .at(&i.display, e.line)
                .fix(
                    "fix or remove the line: the engine refuses to build while it is there".into(),
                ),
            );
        }
    }
    out.extend(listed_names(input, &ignore));
    out.extend(must_exclude(input, &ignore));
    let copies = copy_sources(input, &ignore);
    // An exception for a COPY source that is not built yet is not dead; the missing source
    // is reported already.
    let missing: BTreeSet<String> = copies
        .iter()
        .filter(|f| f.kind == "missing_source")
        .flat_map(|f| f.paths.clone())
        .collect();
    out.extend(copies);
    out.extend(budgets(input));
    out.extend(dead_rules(scan, &missing));
    out.sort_by_key(|f| f.severity);
    out
}

fn listed_names(input: &Input, ignore: &str) -> Vec<Finding> {
    let allow = path_set(&input.policy.allow);
    let mut out = Vec::new();
    for (names, kind, severity, what) in [
        (SECRETS, "secret", Severity::Error, "look like secrets"),
        (
            BLOAT,
            "bloat",
            Severity::Warning,
            "are build output, caches or VCS data",
        ),
    ] {
        let set = name_set(names);
        // Per built-in name: the paths it catches, and whether all sit at the context root.
        let mut hits: Vec<(Vec<String>, u64, bool)> = vec![(Vec::new(), 0, true); names.len()];
        // A path an exception line brings back by name was let in on purpose.
        let deliberate = |p: &str| input.scan.matcher.decisive(p).is_some_and(|r| r.exception);
        for e in input
            .scan
            .entries
            .iter()
            .filter(|e| !allow.is_match(&e.path) && !deliberate(&e.path))
        {
            let found = e
                .path
                .split('/')
                .enumerate()
                .find_map(|(depth, c)| set.matches(c).first().map(|i| (*i, depth)));
            if let Some((i, depth)) = found {
                hits[i].0.push(e.path.clone());
                hits[i].1 += e.size;
                hits[i].2 &= depth == 0;
            }
        }
        for (i, (paths, bytes, top)) in hits.into_iter().enumerate() {
            if paths.is_empty() {
                continue;
            }
            let line = if top {
                names[i].to_string()
            } else {
                format!("**/{}", names[i])
            };
            out.push(
                Finding::new(
                    kind,
                    severity,
                    format!(
                        "{} file(s), {}, matching `{}` would be sent; they {what}",
                        paths.len(),
                        size::human(bytes),
                        names[i]
                    ),
                )
                .paths(paths)
                .fix(format!(
                    "add `{line}` to {ignore} (or list the path under `allow` in [context])"
                )),
            );
        }
    }
    out
}

fn must_exclude(input: &Input, ignore: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for g in &input.policy.must_exclude {
        let m = crate::config::glob(&g.value)
            .expect("validated")
            .compile_matcher();
        let paths: Vec<String> = input
            .scan
            .entries
            .iter()
            .filter(|e| m.is_match(&e.path))
            .map(|e| e.path.clone())
            .collect();
        if !paths.is_empty() {
            out.push(
                Finding::new(
                    "must_exclude",
                    Severity::Error,
                    format!(
                        "{} file(s) matching `{}` (must_exclude at {}) would be sent",
                        paths.len(),
                        g.value,
                        g.origin
                    ),
                )
                .paths(paths)
                .fix(format!("exclude them in {ignore}")),
            );
        }
    }
    out
}

/// A Go `filepath.Match` pattern as a globset one: Go's `[!…]` is a class holding `!`.
fn go_glob(component: &str) -> Option<globset::GlobMatcher> {
    let mut s = String::new();
    let mut chars = component.chars().peekable();
    while let Some(c) = chars.next() {
        s.push(c);
        if c == '\\' {
            s.extend(chars.next());
        } else if c == '[' {
            match chars.peek() {
                Some('^') => {
                    chars.next();
                    s.push('!');
                }
                Some('!') => {
                    chars.next();
                    // Move the literal `!` off the negating position.
                    let mut class = String::new();
                    for d in chars.by_ref() {
                        if d == ']' {
                            break;
                        }
                        class.push(d);
                    }
                    s.push_str(&class);
                    s.push_str("!]");
                }
                _ => {}
            }
        }
    }
    crate::config::glob(&s).ok().map(|g| g.compile_matcher())
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// The context paths a COPY source names: itself if it exists, or what its glob matches.
fn expand_source(context_dir: &Path, src: &str) -> Vec<String> {
    if !has_meta(src) {
        return if context_dir.join(src).symlink_metadata().is_ok() {
            vec![src.to_string()]
        } else {
            Vec::new()
        };
    }
    let mut found = vec![String::new()];
    for comp in src.split('/') {
        let mut next = Vec::new();
        for base in &found {
            let dir = context_dir.join(base);
            let join = |n: &str| {
                if base.is_empty() {
                    n.to_string()
                } else {
                    format!("{base}/{n}")
                }
            };
            if !has_meta(comp) {
                if dir.join(comp).symlink_metadata().is_ok() {
                    next.push(join(comp));
                }
                continue;
            }
            let Some(m) = go_glob(comp) else {
                return Vec::new();
            };
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            next.extend(names.iter().filter(|n| m.is_match(n)).map(|n| join(n)));
        }
        found = next;
    }
    found
}

fn copy_sources(input: &Input, ignore: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut whole_context = false;
    let hooks = !input.image.before_build.is_empty();
    for df in input.dockerfiles {
        let instrs = match dockerfile::parse(&df.text) {
            Ok(i) => i,
            Err(e) => {
                out.push(
                    Finding::new("dockerfile", Severity::Error, e.message).at(&df.display, e.line),
                );
                whole_context = true; // nothing is known about what it copies
                continue;
            }
        };
        for src in dockerfile::context_sources(&instrs, &input.image.build_args) {
            let cleaned = context::ignore::go_clean(src.path.trim_start_matches('/'));
            if cleaned == "." {
                whole_context = true;
                continue;
            }
            let paths = expand_source(input.context_dir, &cleaned);
            if paths.is_empty() {
                let (severity, note) = if hooks {
                    (
                        Severity::Warning,
                        " (a `before_build` command may create it)",
                    )
                } else {
                    (Severity::Error, "")
                };
                out.push(
                    Finding::new(
                        "missing_source",
                        severity,
                        format!(
                            "`{}`: `{}` is not in the build context{note}",
                            src.instruction, src.path
                        ),
                    )
                    .at(&df.display, src.line)
                    .paths(vec![cleaned]),
                );
                continue;
            }
            for p in paths {
                let e = explain(&input.scan.matcher, &p);
                let under = format!("{p}/");
                let sent_below = input
                    .scan
                    .entries
                    .iter()
                    .any(|x| x.path.starts_with(&under));
                if !e.included && !sent_below {
                    let rule = e.line.map_or(String::new(), |l| {
                        format!(
                            " by {ignore}:{l} (`{}`)",
                            e.rule.as_deref().unwrap_or("").trim()
                        )
                    });
                    out.push(
                        Finding::new(
                            "ignored_source",
                            Severity::Error,
                            format!("`{}`: `{p}` is excluded{rule}, so the build fails or silently misses it", src.instruction),
                        )
                        .at(&df.display, src.line)
                        .paths(vec![p.clone()])
                        .fix(format!("add `!{p}` to {ignore} after that line, or stop copying it")),
                    );
                }
                reached.insert(p);
            }
        }
    }
    if !whole_context && !input.dockerfiles.is_empty() {
        let unused: Vec<&context::Entry> = input
            .scan
            .entries
            .iter()
            .filter(|e| {
                !reached
                    .iter()
                    .any(|r| e.path == *r || e.path.starts_with(&format!("{r}/")))
            })
            .collect();
        if !unused.is_empty() {
            let bytes: u64 = unused.iter().map(|e| e.size).sum();
            out.push(
                Finding::new(
                    "unused_file",
                    Severity::Warning,
                    format!(
                        "{} file(s), {}, are sent but no COPY or ADD uses them",
                        unused.len(),
                        size::human(bytes)
                    ),
                )
                .paths(unused.iter().map(|e| e.path.clone()).collect())
                .fix(format!(
                    "exclude them in {ignore} to make the context smaller"
                )),
            );
        }
    }
    out
}

fn budgets(input: &Input) -> Vec<Finding> {
    let entries = &input.scan.entries;
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    let largest = || {
        let mut v: Vec<&context::Entry> = entries.iter().collect();
        v.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        v.iter()
            .take(10)
            .map(|e| format!("{} ({})", e.path, size::human(e.size)))
            .collect()
    };
    let mut out = Vec::new();
    if let Some(max) = input.policy.max_size.filter(|m| bytes > *m) {
        out.push(
            Finding::new(
                "budget",
                Severity::Error,
                format!(
                    "the context is {}, over its {} budget ([context] max_size)",
                    size::human(bytes),
                    size::human(max)
                ),
            )
            .paths(largest()),
        );
    }
    if let Some(max) = input.policy.max_files.filter(|m| entries.len() as u64 > *m) {
        out.push(
            Finding::new(
                "budget",
                Severity::Error,
                format!(
                    "the context has {} files, over its budget of {max} ([context] max_files)",
                    entries.len()
                ),
            )
            .paths(largest()),
        );
    }
    out
}

fn dead_rules(scan: &Scan, missing_sources: &BTreeSet<String>) -> Vec<Finding> {
    let Some(ignore) = &scan.ignore else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in scan.matcher.rules.iter().enumerate() {
        let (dead, what) = if r.exception {
            (
                !scan.reincluded[i] && !missing_sources.contains(&r.pattern),
                "re-includes nothing that an earlier line excludes",
            )
        } else {
            (!scan.matched[i], "excludes nothing")
        };
        if dead {
            out.push(
                Finding::new(
                    "dead_rule",
                    Severity::Warning,
                    format!("`{}` {what}", r.text.trim()),
                )
                .at(&ignore.display, r.line)
                .fix("remove it, or fix the pattern".into()),
            );
        }
    }
    out
}

#[derive(Serialize)]
struct ImageReport {
    name: String,
    ignore_file: Option<String>,
    files: usize,
    bytes: u64,
    findings: Vec<Finding>,
}

/// Runs the checks; `Ok(false)` when they found errors (or, with `--strict`, warnings).
pub fn run(ctx: &Ctx, args: &CheckArgs) -> Result<bool> {
    let start = Instant::now();
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
            .map(|p| {
                let text = std::fs::read_to_string(ctx.root.join(p))
                    .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", p.display()))?;
                Ok(DockerfileText {
                    display: p.display().to_string(),
                    text,
                })
            })
            .collect::<Result<_>>()?;
        let ignore = context::read_ignore(&ctx.root, &image.context.value, &prod, ctx.engine_kind)?;
        let scan = context::scan(&ctx.root, &image.context.value, ignore, ctx.engine_kind)?;
        let context_dir = ctx.root.join(&image.context.value);
        let input = Input {
            image,
            context_dir: &context_dir,
            scan: &scan,
            dockerfiles: &dockerfiles,
            policy: &ctx.config.context,
        };
        let findings = check(&input);
        reports.push(ImageReport {
            name: image.name.clone(),
            ignore_file: scan.ignore.as_ref().map(|i| i.display.clone()),
            files: scan.entries.len(),
            bytes: scan.entries.iter().map(|e| e.size).sum(),
            findings,
        });
    }
    let count = |s: Severity| {
        reports
            .iter()
            .flat_map(|r| &r.findings)
            .filter(|f| f.severity == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let seconds = start.elapsed().as_secs_f64();
    if ctx.json {
        ctx.print_json(&serde_json::json!({ "images": reports, "errors": errors, "warnings": warnings, "seconds": seconds }))?;
    } else {
        print!("{}", human(&reports, errors, warnings, seconds));
    }
    Ok(errors == 0 && (!args.strict || warnings == 0))
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
    if errors + warnings == 0 {
        return format!(
            "check: {images}, {files} files ({}) sent, no problems ({seconds:.2}s)\n",
            size::human(bytes)
        );
    }
    for r in reports.iter().filter(|r| !r.findings.is_empty()) {
        let ignore = r.ignore_file.as_deref().unwrap_or("no ignore file");
        out.push_str(&format!(
            "{}: {} files, {} sent ({ignore})\n",
            r.name,
            r.files,
            size::human(r.bytes)
        ));
        for f in &r.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}: "),
                _ => String::new(),
            };
            out.push_str(&format!("  {sev}: {place}{}\n", f.message));
            let named = f.paths.len() == 1 && f.message.contains(&format!("`{}`", f.paths[0]));
            if !f.paths.is_empty() && !named {
                let shown: Vec<&str> = f.paths.iter().take(5).map(String::as_str).collect();
                let more = if f.paths.len() > 5 {
                    format!(" and {} more", f.paths.len() - 5)
                } else {
                    String::new()
                };
                out.push_str(&format!("      {}{more}\n", shown.join(", ")));
            }
            if let Some(fix) = &f.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
    }
    out.push_str(&format!(
        "check: {images}, {errors} error(s), {warnings} warning(s) ({seconds:.2}s)\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_globs_keep_go_class_meaning() {
        let m = |p: &str, s: &str| go_glob(p).unwrap().is_match(s);
        assert!(m("*.py", "app.py") && !m("*.py", "app.pyc"));
        assert!(m("[!a]x", "!x") && !m("[!a]x", "bx"));
        assert!(m("[^a]x", "bx") && !m("[^a]x", "ax"));
        assert!(m("\\*", "*"));
    }
}
