//! What the Dockerfiles take from the context: each `COPY`/`ADD` source, expanded against the
//! tree, and whether a path ends up in an image (and through which instruction).

use std::path::Path;

use super::finding::{Finding, Severity};
use crate::context::{self, walk::explain};
use crate::dockerfile;

/// One context source of one `COPY`/`ADD`.
#[derive(Debug, Clone)]
pub struct Source {
    /// Cleaned and expanded: a path relative to the context.
    pub path: String,
    pub dockerfile: String,
    pub line: usize,
    pub instruction: String,
    /// From the dev Dockerfile.
    pub dev: bool,
    /// In the stage the image is made of (the target, else the last); other stages' files
    /// reach the image only through what a `COPY --from` takes.
    pub final_stage: bool,
}

/// How a path enters an image.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// A source that names it or a directory above it: the build needs it.
    Named(&'a Source),
    /// `COPY . …`: everything sent goes in.
    Whole(&'a Source),
}

#[derive(Debug, Default)]
pub struct Copies {
    pub named: Vec<Source>,
    pub whole: Vec<Source>,
    /// Sources of `RUN --mount=type=bind`: read by the build, not put in the image.
    pub bound: Vec<String>,
    /// A Dockerfile could not be read: nothing is known about what it copies.
    pub unknown: bool,
}

impl Copies {
    /// How `path` enters an image, if it does: a named source first (the stronger claim).
    pub fn via(&self, path: &str) -> Option<Via<'_>> {
        self.via_in(path, |_| true)
    }

    /// [`Copies::via`] for the production image's own stage only.
    pub fn via_prod(&self, path: &str) -> Option<Via<'_>> {
        self.via_in(path, |s| !s.dev && s.final_stage)
    }

    fn via_in(&self, path: &str, keep: impl Fn(&Source) -> bool) -> Option<Via<'_>> {
        let below = |s: &Source| {
            path == s.path
                || path
                    .strip_prefix(s.path.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        };
        if let Some(s) = self.named.iter().filter(|s| keep(s)).find(|s| below(s)) {
            return Some(Via::Named(s));
        }
        self.whole.iter().find(|s| keep(s)).map(Via::Whole)
    }

    /// Every sent path some instruction copies or bind-mounts, or all of them when a
    /// Dockerfile is unreadable.
    pub fn copied(&self, path: &str) -> bool {
        self.unknown
            || self.via(path).is_some()
            || self.bound.iter().any(|b| {
                b == "."
                    || path == b
                    || path
                        .strip_prefix(b.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
    }
}

impl Source {
    /// `COPY src /dst` (Dockerfile:12), for messages.
    pub fn cite(&self) -> String {
        format!("`{}` ({}:{})", self.instruction, self.dockerfile, self.line)
    }
}

/// A Go `filepath.Match` pattern as a globset one: Go's `[!…]` is a class holding `!`.
pub fn go_glob(component: &str) -> Option<globset::GlobMatcher> {
    let mut s = String::new();
    let mut chars = component.chars().peekable();
    while let Some(c) = chars.next() {
        // Go has no `{a,b}` alternation: braces are literal characters there.
        if c == '{' || c == '}' {
            s.push('\\');
            s.push(c);
            continue;
        }
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

pub fn has_meta(s: &str) -> bool {
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

/// Reads every Dockerfile's sources; missing and ignored sources and unreadable Dockerfiles
/// become findings.
pub fn read(input: &super::Input, ignore: &str, out: &mut Vec<Finding>) -> Copies {
    let (context_dir, scan) = (input.context_dir, input.scan);
    let build_args = &input.image.build_args;
    let target = input.image.target.as_deref();
    let hooks = !input.image.before_build.is_empty();
    let mut copies = Copies::default();
    for df in input.dockerfiles {
        // The same reading `plan` and `build` do, stage rules included: what they refuse, the
        // pre-commit hook reports.
        let instrs = match dockerfile::parse(&df.text)
            .and_then(|i| dockerfile::stages(i.clone()).map(|_| i))
        {
            Ok(i) => i,
            Err(e) => {
                out.push(
                    Finding::new("dockerfile", Severity::Error, e.message).at(&df.display, e.line),
                );
                copies.unknown = true;
                continue;
            }
        };
        for (line, why) in
            crate::engine::unsupported_syntax(input.engine.0, input.engine.1, &instrs)
        {
            out.push(Finding::new("engine", Severity::Error, why).at(&df.display, line));
        }
        copies.bound.extend(
            instrs
                .iter()
                .filter(|i| i.keyword == "RUN")
                .flat_map(crate::cache::steps::bind_sources),
        );
        // Per platform the image is built for: `COPY app-${TARGETARCH}` names one file each.
        let platforms: Vec<Option<&str>> = if input.image.platforms.is_empty() {
            vec![None]
        } else {
            input
                .image
                .platforms
                .iter()
                .map(|p| Some(p.as_str()))
                .collect()
        };
        let mut sources = Vec::new();
        for platform in platforms {
            let mut args = dockerfile::automatic_args(platform);
            args.extend(build_args.iter().map(|(k, v)| (k.clone(), v.clone())));
            for src in dockerfile::context_sources(&instrs, &args) {
                if !sources
                    .iter()
                    .any(|s: &dockerfile::ContextSource| s.line == src.line && s.path == src.path)
                {
                    sources.push(src);
                }
            }
        }
        let stages = instrs.iter().filter(|i| i.keyword == "FROM").count();
        let final_stage = |s: &dockerfile::ContextSource| match target.filter(|_| !df.dev) {
            Some(t) => s.stage_name.as_deref() == Some(t.to_ascii_lowercase().as_str()),
            None => s.stage + 1 == stages,
        };
        for src in sources {
            let cleaned = context::ignore::go_clean(src.path.trim_start_matches('/'));
            let source = |path: String| Source {
                path,
                dockerfile: df.display.clone(),
                line: src.line,
                instruction: src.instruction.clone(),
                dev: df.dev,
                final_stage: final_stage(&src),
            };
            if cleaned == "." {
                copies.whole.push(source(String::new()));
                continue;
            }
            let paths = expand_source(context_dir, &cleaned);
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
                let e = explain(&scan.matcher, &p);
                let under = format!("{p}/");
                let sent_below = scan.entries.iter().any(|x| x.path.starts_with(&under));
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
                            format!(
                                "`{}`: `{p}` is excluded{rule}, so the build fails or silently misses it",
                                src.instruction
                            ),
                        )
                        .at(&df.display, src.line)
                        .paths(vec![p.clone()])
                        .fix(format!("add `!{p}` to {ignore} after that line, or stop copying it")),
                    );
                }
                copies.named.push(source(p));
            }
        }
    }
    copies
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
        // Braces are literal in Go, and any nesting is harmless.
        assert!(m("{a,b}.txt", "{a,b}.txt") && !m("{a,b}.txt", "a.txt"));
        let nested = format!("{}x{}", "{".repeat(400), "}".repeat(400));
        assert!(m(&nested, &nested));
    }
}
