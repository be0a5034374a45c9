//! What CI systems read, written when the environment says which one runs us: GitHub Actions
//! step outputs (`$GITHUB_OUTPUT`), the job summary (`$GITHUB_STEP_SUMMARY`) and workflow-command
//! annotations; GitLab CI's dotenv report and collapsible sections. The formatting is pure; the
//! writes append to the files the CI names.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

/// The CI this process runs under, from its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ci {
    #[default]
    None,
    GitHub {
        output: Option<PathBuf>,
        summary: Option<PathBuf>,
    },
    GitLab,
    /// `CI` is set, by a system we don't write anything special for.
    Other,
}

impl Ci {
    pub fn detect(get: impl Fn(&str) -> Option<String>) -> Ci {
        let yes = |k: &str| get(k).is_some_and(|v| v == "true");
        if yes("GITHUB_ACTIONS") {
            return Ci::GitHub {
                output: get("GITHUB_OUTPUT").map(PathBuf::from),
                summary: get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            };
        }
        if yes("GITLAB_CI") {
            return Ci::GitLab;
        }
        if get("CI").is_some_and(|v| v != "false" && v != "0") {
            return Ci::Other;
        }
        Ci::None
    }
}

/// Where GitLab's dotenv report goes, relative to the project root (`artifacts:reports:dotenv`).
pub const GITLAB_DOTENV: &str = "target/xtask/ci.env";

/// One step's results, as outputs: `version`, `tags`, `image`, `digest`, `pinned`, `json`.
#[derive(Debug, Default)]
pub struct Outputs {
    pub version: String,
    pub tags: Vec<String>,
    /// The first image's name (or `R/NAME` once pushed).
    pub image: String,
    pub digest: Option<String>,
    pub pinned: Option<String>,
    /// The command's whole `--json` document.
    pub json: String,
    /// Markdown for the job summary.
    pub summary: String,
}

/// `key=value` lines of `$GITHUB_OUTPUT`; a value with line breaks uses the heredoc form with a
/// delimiter that the value can't contain.
pub fn github_outputs(o: &Outputs) -> String {
    let mut out = String::new();
    let mut put = |k: &str, v: &str| {
        if v.contains('\n') || v.contains('\r') {
            let mut delim = "XTASK_EOF".to_string();
            while v.contains(&delim) {
                delim.push('_');
            }
            out.push_str(&format!("{k}<<{delim}\n{v}\n{delim}\n"));
        } else {
            out.push_str(&format!("{k}={v}\n"));
        }
    };
    put("version", &o.version);
    put("tags", &o.tags.join("\n"));
    put("image", &o.image);
    put("digest", o.digest.as_deref().unwrap_or(""));
    put("pinned", o.pinned.as_deref().unwrap_or(""));
    put("json", &o.json);
    out
}

/// GitLab's dotenv report: `XTASK_`-prefixed, one line each (tags comma-separated).
pub fn gitlab_dotenv(o: &Outputs) -> String {
    let one_line = |v: &str| v.replace(['\n', '\r'], " ");
    format!(
        "XTASK_VERSION={}\nXTASK_TAGS={}\nXTASK_IMAGE={}\nXTASK_DIGEST={}\nXTASK_PINNED={}\n",
        one_line(&o.version),
        o.tags.join(","),
        one_line(&o.image),
        o.digest.as_deref().unwrap_or(""),
        o.pinned.as_deref().unwrap_or("")
    )
}

/// A GitHub workflow command's data: `%`, CR and LF escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::error file=F,line=N,title=T::message` (or `::warning`), which GitHub shows on that line.
pub fn github_annotation(
    error: bool,
    file: Option<&str>,
    line: Option<usize>,
    title: &str,
    message: &str,
) -> String {
    let mut props = Vec::new();
    if let Some(f) = file {
        props.push(format!("file={}", escape_property(f)));
    }
    if let Some(l) = line {
        props.push(format!("line={l}"));
    }
    props.push(format!("title={}", escape_property(title)));
    format!(
        "::{} {}::{}",
        if error { "error" } else { "warning" },
        props.join(","),
        escape_data(message)
    )
}

/// Appends to a file the CI gave us (it exists and others write to it too).
fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))
}

/// Writes a step's outputs where the CI reads them; nothing outside CI.
pub fn publish_outputs(ci: &Ci, root: &Path, o: &Outputs) -> Result<()> {
    match ci {
        Ci::GitHub { output, summary } => {
            if let Some(p) = output {
                append(p, &github_outputs(o))?;
            }
            if let Some(p) = summary.as_ref().filter(|_| !o.summary.is_empty()) {
                append(p, &o.summary)?;
            }
        }
        Ci::GitLab => {
            let path = root.join(GITLAB_DOTENV);
            crate::fsx::write_atomic(&path, gitlab_dotenv(o))?;
            crate::fsx::mark_output_dir(&root.join("target/xtask"), "CI reports and artifacts")?;
        }
        Ci::None | Ci::Other => {}
    }
    Ok(())
}

/// A Markdown table.
pub fn markdown_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for r in rows {
        out.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            Ci::detect(env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", "/o"),
                ("CI", "true")
            ])),
            Ci::GitHub {
                output: Some("/o".into()),
                summary: None
            }
        );
        assert_eq!(Ci::detect(env(&[("GITLAB_CI", "true")])), Ci::GitLab);
        assert_eq!(Ci::detect(env(&[("CI", "1")])), Ci::Other);
        assert_eq!(Ci::detect(env(&[])), Ci::None);
    }

    #[test]
    fn outputs_use_the_heredoc_form_for_lists() {
        let o = Outputs {
            version: "1.2.3".into(),
            tags: vec!["1.2.3".into(), "latest".into()],
            image: "r/app".into(),
            digest: Some("sha256:ab".into()),
            pinned: Some("r/app:1.2.3@sha256:ab".into()),
            json: "{\"a\": 1}".into(),
            summary: String::new(),
        };
        assert_eq!(
            github_outputs(&o),
            "version=1.2.3\ntags<<XTASK_EOF\n1.2.3\nlatest\nXTASK_EOF\nimage=r/app\ndigest=sha256:ab\npinned=r/app:1.2.3@sha256:ab\njson={\"a\": 1}\n"
        );
        assert!(gitlab_dotenv(&o).contains("XTASK_TAGS=1.2.3,latest\n"));
    }

    #[test]
    fn annotations_escape_what_would_break_them() {
        assert_eq!(
            github_annotation(
                true,
                Some("a,b.txt"),
                Some(3),
                "check: secret",
                "50% done\nnext"
            ),
            "::error file=a%2Cb.txt,line=3,title=check%3A secret::50%25 done%0Anext"
        );
    }
}
