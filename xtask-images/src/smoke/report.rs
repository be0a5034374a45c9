//! What a suite run found, and the three ways it is shown: a table, JSON, JUnit XML.

use std::fmt::Write as _;

use serde::Serialize;

/// Lines of a failed test's output that the report keeps.
pub const OUTPUT_LINES: usize = 20;

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub name: String,
    /// `builtin`, `metadata`, `command`, `file` or `service`.
    pub kind: &'static str,
    pub passed: bool,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The engine command the test ran, secrets shown as `<secret>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of output of a failed test, masked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Why the test did not run (a platform this machine cannot run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub image: String,
    /// The platform of a manifest list's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The run's label value: its containers carry `io.xtask.smoke=RUN`.
    pub run: String,
    pub reference: String,
    /// The tested image's ID: what a release pushes.
    pub id: Option<String>,
    pub passed: bool,
    pub seconds: f64,
    pub tests: Vec<Outcome>,
}

/// Replaces secret values in text the way CI systems mask them.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    values: Vec<String>,
}

impl Masker {
    pub fn new(mut values: Vec<String>) -> Masker {
        values.retain(|v| !v.is_empty());
        // Longest first, so a secret containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut t = text.to_string();
        for v in &self.values {
            if t.contains(v.as_str()) {
                t = t.replace(v.as_str(), "***");
            }
        }
        t
    }
}

/// The last [`OUTPUT_LINES`] lines of stdout then stderr, masked.
pub fn tail(masker: &Masker, stdout: &str, stderr: &str) -> Vec<String> {
    let all: Vec<String> = stdout
        .lines()
        .chain(stderr.lines())
        .map(|l| masker.mask(l))
        .collect();
    all[all.len().saturating_sub(OUTPUT_LINES)..].to_vec()
}

/// `ok`, `FAILED` or `not run`.
pub fn result_word(t: &Outcome) -> &'static str {
    match (t.passed, &t.not_run) {
        (_, Some(_)) => "not run",
        (true, None) => "ok",
        (false, None) => "FAILED",
    }
}

pub fn human(reports: &[ImageReport], stream: crate::output::Stream) -> String {
    let mut rows = Vec::new();
    let subject = |r: &ImageReport| match &r.platform {
        Some(p) => format!("{} {p}", r.image),
        None => r.image.clone(),
    };
    for r in reports {
        for t in &r.tests {
            rows.push(vec![
                subject(r),
                t.name.clone(),
                crate::output::status(result_word(t), stream),
                format!("{:.1}s", t.seconds),
            ]);
        }
    }
    let mut out = crate::output::headed(&["image", "test", "result", "time"], rows, stream);
    for r in reports {
        for t in r.tests.iter().filter(|t| !t.passed || t.not_run.is_some()) {
            let _ = writeln!(out, "\n--- {} / {} ({})", subject(r), t.name, t.kind);
            if let Some(why) = &t.not_run {
                let _ = writeln!(
                    out,
                    "{why}{}",
                    if t.passed {
                        " (--untested-platforms)"
                    } else {
                        ""
                    }
                );
            }
            if let Some(c) = &t.command {
                let _ = writeln!(out, "command: {c}");
            }
            if let Some(c) = t.exit_code {
                let _ = writeln!(out, "exit code: {c}");
            }
            for f in &t.failures {
                let _ = writeln!(out, "failed: {f}");
            }
            if !t.output.is_empty() {
                let _ = writeln!(out, "last {} lines of output:", t.output.len());
                for l in &t.output {
                    let _ = writeln!(out, "  | {l}");
                }
            }
        }
    }
    out
}

pub fn summary(reports: &[ImageReport], seconds: f64) -> String {
    let total: usize = reports.iter().map(|r| r.tests.len()).sum();
    let failed: usize = reports
        .iter()
        .map(|r| r.tests.iter().filter(|t| !t.passed).count())
        .sum();
    if failed == 0 {
        format!("{total} checks passed in {seconds:.1}s")
    } else {
        format!("{failed} of {total} checks FAILED in {seconds:.1}s")
    }
}

/// JUnit XML as GitLab and GitHub test reports read it: a suite per image, a case per check.
pub fn junit(reports: &[ImageReport]) -> String {
    let count = |r: &ImageReport| r.tests.iter().filter(|t| !t.passed).count();
    let total: usize = reports.iter().map(|r| r.tests.len()).sum();
    let failures: usize = reports.iter().map(count).sum();
    let time: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"xtask smoke tests\" tests=\"{total}\" failures=\"{failures}\" time=\"{time:.3}\">"
    );
    for r in reports {
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
            esc(&r.image),
            r.tests.len(),
            count(r),
            r.seconds
        );
        for t in &r.tests {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                esc(&r.image),
                esc(&t.name),
                t.seconds
            );
            if t.passed {
                x.push_str("/>\n");
                continue;
            }
            let mut body = String::new();
            if let Some(c) = &t.command {
                let _ = writeln!(body, "command: {c}");
            }
            for f in &t.failures {
                let _ = writeln!(body, "failed: {f}");
            }
            for l in &t.output {
                let _ = writeln!(body, "| {l}");
            }
            let _ = write!(
                x,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                esc(&t.failures.join("; ")),
                t.kind,
                esc(&body)
            );
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// XML-escaped, with the control characters XML 1.0 forbids (terminal colours) dropped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 => {}
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first() {
        let m = Masker::new(vec!["abc".into(), "abcdef".into(), String::new()]);
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
    }

    #[test]
    fn junit_escapes() {
        let r = ImageReport {
            image: "app".into(),
            platform: None,
            run: "1".into(),
            reference: "app:1".into(),
            id: None,
            passed: false,
            seconds: 1.0,
            tests: vec![Outcome {
                name: "a<b>".into(),
                kind: "command",
                failures: vec!["stdout has no match for `\"x\" & y`".into()],
                output: vec!["\u{1b}[31mred".into()],
                ..Outcome::default()
            }],
        };
        let x = junit(&[r]);
        assert!(x.contains("name=\"a&lt;b&gt;\""), "{x}");
        assert!(x.contains("&quot;x&quot; &amp; y"), "{x}");
        assert!(!x.contains('\u{1b}'));
        assert!(x.contains("tests=\"1\" failures=\"1\""));
    }
}
