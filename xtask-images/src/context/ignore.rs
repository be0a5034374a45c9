//! Ignore files: which one the engine reads, and its lines as rules, parsed the way the engine
//! parses them (podman: openshift/imagebuilder's `ParseIgnore`; docker: moby's `ignorefile`).

use std::path::{Path, PathBuf};

use regex::Regex;

use super::pattern::{check_match_syntax, to_regex, BadPattern};
use crate::engine::EngineKind;

/// One pattern line.
#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based line in the ignore file.
    pub line: usize,
    /// The line as written, without its line break.
    pub text: String,
    /// The cleaned pattern, without `!`.
    pub pattern: String,
    /// A `!` line: re-includes what it matches.
    pub exception: bool,
    pub regex: Regex,
}

/// A line the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub text: String,
    pub why: String,
}

/// The ignore file the engine uses for this build, if any: podman 4.3 (buildah 1.28,
/// `parse.ContainerIgnoreFile`) takes `<Dockerfile>.dockerignore`, else
/// `<Dockerfile>.containerignore`, next to the Dockerfile; else `.containerignore`, else
/// `.dockerignore`, in the context root. Docker reads only the `.dockerignore` names.
pub fn choose(context_dir: &Path, dockerfile: &Path, engine: EngineKind) -> Option<PathBuf> {
    let beside = |ext: &str| {
        let mut p = dockerfile.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let candidates = match engine {
        EngineKind::Podman => vec![
            beside(".dockerignore"),
            beside(".containerignore"),
            context_dir.join(".containerignore"),
            context_dir.join(".dockerignore"),
        ],
        EngineKind::Docker => vec![beside(".dockerignore"), context_dir.join(".dockerignore")],
    };
    candidates.into_iter().find(|p| p.is_file())
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn go_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Parses an ignore file's text into rules; every refused line is reported.
pub fn parse(text: &str, engine: EngineKind) -> Result<Vec<Rule>, Vec<LineError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        // A UTF-8 byte-order mark is dropped by both engines (measured with podman 4.3: a
        // `\u{feff}secret.txt` first line excludes `secret.txt`).
        let raw = if i == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let line = i + 1;
        let cleaned = match engine {
            EngineKind::Podman => podman_line(raw),
            EngineKind::Docker => docker_line(raw),
        };
        let Some(cleaned) = cleaned else { continue };
        let text = raw.trim_end_matches('\r').to_string();
        let fail = |why: String| LineError {
            line,
            text: text.clone(),
            why,
        };
        let (exception, pattern) = match cleaned.strip_prefix('!') {
            Some("") => {
                errors.push(fail(
                    "a lone `!` excludes nothing; podman refuses it".into(),
                ));
                continue;
            }
            Some(rest) => {
                let p = go_clean(rest);
                let p = if engine == EngineKind::Podman {
                    p.strip_prefix('/').map(str::to_string).unwrap_or(p)
                } else {
                    p
                };
                (true, p)
            }
            None => (false, cleaned),
        };
        let checked = check_match_syntax(&pattern).and_then(|()| to_regex(&pattern, engine));
        match checked {
            Ok(regex) => rules.push(Rule {
                line,
                text,
                pattern,
                exception,
                regex,
            }),
            Err(BadPattern(why)) => errors.push(fail(why)),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// imagebuilder's `ParseIgnore`, then storage's `NewPatternMatcher` up to the `!`: `#` only in
/// column 0, `/` trimmed from both ends *before* whitespace (so ` /x` keeps its `/` and never
/// matches), then whitespace trimmed and the path cleaned.
fn podman_line(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.starts_with('#') {
        return None;
    }
    let s = raw.trim_matches('/').trim();
    (!s.is_empty()).then(|| go_clean(s))
}

/// moby's `ignorefile.ReadAll` and `patternmatcher.New`: `#` in column 0 is a comment, whitespace
/// trimmed (around `!` too), the path cleaned and a leading `/` dropped.
fn docker_line(raw: &str) -> Option<String> {
    let raw = raw.trim_end_matches('\r');
    if raw.starts_with('#') {
        return None;
    }
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    let (invert, s) = match s.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, s),
    };
    let mut p = if s.is_empty() {
        String::new()
    } else {
        go_clean(s)
    };
    if p.len() > 1 && p.starts_with('/') {
        p.remove(0);
    }
    Some(if invert { format!("!{p}") } else { p })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(text: &str, engine: EngineKind) -> Vec<(usize, bool, String)> {
        parse(text, engine)
            .unwrap()
            .into_iter()
            .map(|r| (r.line, r.exception, r.pattern))
            .collect()
    }

    #[test]
    fn go_clean_cases() {
        let cases = [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("./a", "a"),
            ("a//b/", "a/b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/..", "."),
            ("!./x", "!./x"),
        ];
        for (p, want) in cases {
            assert_eq!(go_clean(p), want, "{p}");
        }
    }

    #[test]
    fn podman_lines() {
        let text = "# comment\n\n  # not a comment\n/abs/\n  spaced  \n!./keep\n!/root-keep\n ./x/../y\ndir/\n /lead\n";
        assert_eq!(
            patterns(text, EngineKind::Podman),
            vec![
                (3, false, "# not a comment".to_string()),
                (4, false, "abs".to_string()),
                (5, false, "spaced".to_string()),
                (6, true, "keep".to_string()),
                (7, true, "root-keep".to_string()),
                (8, false, "y".to_string()),
                (9, false, "dir".to_string()),
                // ` /lead`: the `/` survives (trimmed before whitespace) and the rule never matches.
                (10, false, "/lead".to_string()),
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_dropped_by_both_engines() {
        for engine in [EngineKind::Podman, EngineKind::Docker] {
            assert_eq!(
                patterns("\u{feff}secret.txt\nother\n", engine)[0],
                (1, false, "secret.txt".to_string())
            );
        }
    }

    #[test]
    fn docker_lines() {
        let text = "\u{feff}a\n  # not a comment\n ! spaced \n /lead\r\n";
        assert_eq!(
            patterns(text, EngineKind::Docker),
            vec![
                (1, false, "a".to_string()),
                (2, false, "# not a comment".to_string()),
                (3, true, "spaced".to_string()),
                (4, false, "lead".to_string()),
            ]
        );
    }

    #[test]
    fn refused_lines_are_all_reported_with_their_numbers() {
        let errs = parse("ok\n[abc\n!\nfine\nx\\\n\\y\n", EngineKind::Podman).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 5, 6]);
        assert!(errs[0].why.contains("never closed"), "{errs:?}");
        assert!(errs[1].why.contains("lone `!`"), "{errs:?}");
    }
}
