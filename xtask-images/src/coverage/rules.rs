//! Ignore lines that look like mistakes. Guard lines for paths that are absent (`media`,
//! `node_modules`, `*.pyc` in a clean checkout) are how people keep a tree safe, so a line
//! that matches nothing is reported only when a near miss is sent: the line was meant for it.

use super::copies::go_glob;
use super::finding::{Finding, Severity};
use crate::context::Scan;

/// A path the pattern was probably meant for, and the pattern that would catch it.
fn near_miss(scan: &Scan, pattern: &str) -> Option<(String, String)> {
    let last = pattern.rsplit('/').next().unwrap_or(pattern);
    // Plain directory names (`media`, `./data`, `static`) guard one place on purpose; a
    // package of the same name deeper down is not what they were written for. Only file
    // patterns (`*.sqlite`, `.env`) have near misses worth a word.
    if last.is_empty() || last == "**" || !last.contains(['*', '.', '?']) {
        return None;
    }
    let exact = go_glob(last)?;
    let rooted = !pattern.contains('/') && !pattern.starts_with("**");
    // Shown with `**/` only when that is what it needs.
    let wider = (!last.ends_with('*'))
        .then(|| go_glob(&format!("{last}*")))
        .flatten();
    for e in &scan.entries {
        let comps: Vec<&str> = e.path.split('/').collect();
        for (depth, c) in comps.iter().enumerate() {
            if rooted && depth > 0 && exact.is_match(c) {
                return Some((e.path.clone(), format!("**/{pattern}")));
            }
            if let Some(w) = &wider {
                if !exact.is_match(c) && w.is_match(c) && (depth == 0 || !rooted) {
                    let sent: String = comps[..=depth].join("/");
                    return Some((sent, format!("{pattern}*")));
                }
            }
        }
    }
    None
}

pub fn dead_rules(scan: &Scan) -> Vec<Finding> {
    let Some(ignore) = &scan.ignore else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let rules = &scan.matcher.rules;
    for (i, r) in rules.iter().enumerate() {
        let text = r.text.trim();
        let finding = |what: String, fix: String| {
            Finding::new("dead_rule", Severity::Warning, format!("`{text}` {what}"))
                .at(&ignore.display, r.line)
                .fix(fix)
        };
        if !scan.rules.matched[i] {
            if let Some((sent, better)) = near_miss(scan, &r.pattern) {
                let bang = if r.exception { "!" } else { "" };
                out.push(finding(
                    format!("matches nothing, while `{sent}` is sent"),
                    format!("if it was meant for `{sent}`, write `{bang}{better}`"),
                ));
            }
            continue;
        }
        if !scan.rules.decided[i] && scan.rules.overridden[i] {
            let later = rules[i + 1..]
                .iter()
                .enumerate()
                .find(|(j, l)| l.exception != r.exception && scan.rules.decided[i + 1 + j])
                .map_or(String::new(), |(_, l)| {
                    format!(" (line {}: `{}`)", l.line, l.text.trim())
                });
            out.push(finding(
                format!("is overridden by a later line{later} for every path it matches"),
                "move it below the line that overrides it, or remove it".into(),
            ));
            continue;
        }
        if r.exception && !scan.rules.reincluded[i] {
            out.push(finding(
                "re-includes nothing: no earlier line excludes what it matches".into(),
                "remove it, or put it after the line it is meant to make an exception to".into(),
            ));
        }
    }
    out
}
