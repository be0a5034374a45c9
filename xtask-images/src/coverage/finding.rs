//! One thing `check` reports, and the project's `[check] allow` entries applied to it.

use serde::Serialize;

use crate::config::Allow;

/// Every kind of finding, as `[check] allow` names them.
pub const KINDS: &[&str] = &[
    "malformed_pattern",
    "dockerfile",
    "engine",
    "secret",
    "tool_output",
    "must_exclude",
    "bloat",
    "untracked",
    "git_ignored",
    "missing_source",
    "ignored_source",
    "unused_file",
    "tests_in_image",
    "budget",
    "dead_rule",
    "stale_bind",
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
    /// The file and line the finding is about (an ignore file, a Dockerfile, a sent file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The reason of the `[check] allow` entry that accepts it; allowed findings are shown but
    /// counted neither as errors nor as warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

impl Finding {
    pub fn new(kind: &'static str, severity: Severity, message: String) -> Finding {
        debug_assert!(KINDS.contains(&kind), "{kind}");
        Finding {
            kind,
            severity,
            message,
            paths: Vec::new(),
            fix: None,
            file: None,
            line: None,
            allowed: None,
        }
    }
    pub fn paths(mut self, p: Vec<String>) -> Finding {
        self.paths = p;
        self
    }
    pub fn fix(mut self, f: String) -> Finding {
        self.fix = Some(f);
        self
    }
    pub fn at(mut self, file: &str, line: usize) -> Finding {
        self.file = Some(file.to_string());
        self.line = Some(line);
        self
    }
    /// Counts towards the exit status.
    pub fn counts(&self, s: Severity) -> bool {
        self.severity == s && self.allowed.is_none()
    }
}

/// Marks what the project accepts. A finding whose paths are only partly allowed is split in
/// two, so the rest still counts; one without paths is matched by its `file` or `file:line`.
pub fn apply_allow(findings: Vec<Finding>, allow: &[Allow]) -> Vec<Finding> {
    if allow.is_empty() {
        return findings;
    }
    let rules: Vec<(&Allow, globset::GlobMatcher)> = allow
        .iter()
        .filter_map(|a| Some((a, crate::config::glob(&a.path).ok()?.compile_matcher())))
        .collect();
    let mut out = Vec::new();
    for f in findings {
        let mine: Vec<&(&Allow, globset::GlobMatcher)> = rules
            .iter()
            .filter(|(a, _)| a.kind == "*" || a.kind == f.kind)
            .collect();
        if mine.is_empty() {
            out.push(f);
            continue;
        }
        let reason_for = |p: &str| {
            mine.iter()
                .find(|(_, m)| m.is_match(p.trim_end_matches('/')))
                .map(|(a, _)| format!("{} ({})", a.reason, a.origin))
        };
        if f.paths.is_empty() {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => {
                    reason_for(&format!("{file}:{line}")).or_else(|| reason_for(file))
                }
                (Some(file), None) => reason_for(file),
                _ => None,
            };
            let mut f = f;
            f.allowed = place;
            out.push(f);
            continue;
        }
        let (allowed, rest): (Vec<String>, Vec<String>) = f
            .paths
            .iter()
            .cloned()
            .partition(|p| reason_for(p).is_some());
        if allowed.is_empty() {
            out.push(f);
            continue;
        }
        let reason = reason_for(&allowed[0]);
        if !rest.is_empty() {
            out.push(f.clone().paths(rest));
        }
        let mut a = f.paths(allowed);
        a.allowed = reason;
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_accept_what_they_name_and_no_more() {
        let allow = [Allow {
            kind: "git_ignored".into(),
            path: "media/**".into(),
            reason: "uploads are baked in on purpose".into(),
            origin: "docker/images.toml:3:1".into(),
        }];
        let f = Finding::new("git_ignored", Severity::Error, "x".into())
            .paths(vec!["media/a.jpg".into(), "venv/".into()]);
        let other =
            Finding::new("secret", Severity::Error, "y".into()).paths(vec!["media/k".into()]);
        let out = apply_allow(vec![f, other], &allow);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].paths, ["venv/"]);
        assert!(out[0].counts(Severity::Error));
        assert_eq!(out[1].paths, ["media/a.jpg"]);
        assert!(out[1].allowed.as_deref().unwrap().starts_with("uploads"));
        assert!(!out[1].counts(Severity::Error));
        assert!(out[2].allowed.is_none());
    }
}
