//! The .dockerignore coverage verifier behind `check`: per image, what is sent that should not
//! be (secrets by content, files git doesn't know or ignores, build output, the tool's own
//! files, test suites in a production image), COPY/ADD sources the ignore file hides, files
//! sent but never copied, ignore lines that look like mistakes, and context budgets.
//!
//! Pure apart from reading the tree: git's view comes in as data.

pub mod content;
pub mod copies;
pub mod finding;
pub mod rules;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};

use crate::config::{ContextPolicy, Image};
use crate::context::{self, Scan};
use crate::git::{Known, Status};
use crate::size;
use copies::{Copies, Via};
pub use finding::{apply_allow, Finding, Severity, KINDS};

/// Files that hold keys or credentials whatever their content looks like (binary key stores,
/// infrastructure state): errors by name.
const KEY_STORES: &[&str] = &[
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.tfstate",
    "*.tfstate.backup",
];

/// Build output, caches, environments and VCS data, matched against every component of a path
/// that git does not track (and left out by the `.dockerignore` `init` writes).
pub const BLOAT: &[&str] = &[
    ".git",
    "target",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".DS_Store",
    ".tox",
    ".nox",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "htmlcov",
    ".coverage",
    ".vagrant",
];

/// Directories the tool itself writes inside a project (the OCI-layout destination, and the
/// state directory of versions before the state moved out).
pub const TOOL_OUTPUT: &[&str] = &["target/images", "target/xtask"];

/// Test suites, fixtures of recorded traffic and coverage output: a production image does
/// not need them. Directory names, then file globs.
const TEST_DIRS: &[&str] = &["tests", "test", "__tests__", "e2e", "cassettes", "htmlcov"];
const TEST_FILES: &[&str] = &[
    "conftest.py",
    "test_*.py",
    "*_test.py",
    "*_tests.py",
    "*.har",
    "coverage.xml",
    ".coverage",
    "*.spec.js",
    "*.spec.ts",
    "*.test.js",
    "*.test.ts",
    "*_test.go",
];

/// One Dockerfile of an image, read.
pub struct DockerfileText {
    pub display: String,
    pub text: String,
    /// The dev Dockerfile: test suites belong there.
    pub dev: bool,
}

/// Everything the checks of one image look at.
pub struct Input<'a> {
    pub image: &'a Image,
    pub context_dir: &'a Path,
    pub scan: &'a Scan,
    pub dockerfiles: &'a [DockerfileText],
    pub policy: &'a ContextPolicy,
    /// What git knows of the context's files; `None` outside git.
    pub git: Option<&'a Known>,
    /// The engine and its `major.minor`, when known, for syntax it can't build.
    pub engine: (crate::engine::EngineKind, Option<(u32, u32)>),
    /// Where the secret scan remembers unchanged files (`None`: read everything, keep nothing).
    pub scan_cache: Option<&'a Path>,
    /// Nanoseconds since the epoch, for the scan cache's racy-file rule.
    pub now_ns: i64,
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

/// What the checks share: the copies, and which sent paths a finding already names (so a
/// venv is reported once, by its best-fitting kind).
struct Shared<'a> {
    input: &'a Input<'a>,
    copies: Copies,
    ignore: String,
    claimed: HashSet<String>,
    /// `[context] allow` globs: exempt from the secret and bloat lists.
    allow: GlobSet,
}

impl Shared<'_> {
    /// A path an exception line brings back by name was let in on purpose.
    fn deliberate(&self, p: &str) -> bool {
        self.input
            .scan
            .matcher
            .decisive(p)
            .is_some_and(|r| r.exception)
    }

    fn status(&self, p: &str) -> Option<Status> {
        self.input.git.map(|g| g.status(p))
    }

    /// Where a path goes, for messages: "a COPY puts it in the image" or "only sent".
    fn fate(&self, p: &str) -> (Severity, String) {
        match self.copies.via(p) {
            Some(Via::Named(s) | Via::Whole(s)) if s.final_stage || s.dev => (
                Severity::Error,
                format!("{} puts it in the image", s.cite()),
            ),
            Some(Via::Named(s) | Via::Whole(s)) => (
                Severity::Error,
                format!(
                    "{} copies it into a build stage, whose layers stay in the build cache",
                    s.cite()
                ),
            ),
            None if self.copies.unknown => (Severity::Error, "it may go into the image".into()),
            None => (
                Severity::Warning,
                "it is sent in the build context, though no COPY takes it".into(),
            ),
        }
    }
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
    let copies = copies::read(input, &ignore, &mut out);
    let mut sh = Shared {
        input,
        copies,
        ignore,
        claimed: HashSet::new(),
        allow: path_set(&input.policy.allow),
    };
    out.extend(tool_output(&mut sh));
    out.extend(secrets(&mut sh));
    out.extend(must_exclude(&mut sh));
    out.extend(bloat(&mut sh));
    out.extend(git_unknown(&mut sh));
    out.extend(tests_in_image(&mut sh));
    out.extend(unused(&sh));
    out.extend(budgets(input));
    out.extend(rules::dead_rules(scan));
    out.sort_by_key(|f| f.severity);
    out
}

/// The sent files under each of the tool's own output directories that has any.
pub fn tool_output_sent(entries: &[context::Entry]) -> Vec<(&'static str, Vec<&context::Entry>)> {
    TOOL_OUTPUT
        .iter()
        .filter_map(|dir| {
            let prefix = format!("{dir}/");
            let sent: Vec<&context::Entry> = entries
                .iter()
                .filter(|e| e.path.starts_with(&prefix))
                .collect();
            (!sent.is_empty()).then_some((*dir, sent))
        })
        .collect()
}

fn tool_output(sh: &mut Shared) -> Vec<Finding> {
    let mut out = Vec::new();
    for (dir, paths) in tool_output_sent(&sh.input.scan.entries) {
        let bytes: u64 = paths.iter().map(|e| e.size).sum();
        sh.claimed.extend(paths.iter().map(|e| e.path.clone()));
        out.push(
            Finding::new(
                "tool_output",
                Severity::Error,
                format!(
                    "{} file(s), {}, under `{dir}/` would be sent: that is this tool's own output, and each build would carry the earlier ones",
                    paths.len(),
                    size::human(bytes)
                ),
            )
            .paths(vec![format!("{dir}/")])
            .fix(format!("add `{dir}` to {}", sh.ignore)),
        );
    }
    out
}

fn secrets(sh: &mut Shared) -> Vec<Finding> {
    let entries = &sh.input.scan.entries;
    let stores = name_set(KEY_STORES);
    let mut hits: BTreeMap<usize, (Option<usize>, String, bool)> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        if stores.is_match(name) && !content::is_template(name) {
            hits.insert(
                i,
                (None, "a key store or state file, by its name".into(), true),
            );
        }
    }
    for (i, hit) in content::scan(
        sh.input.context_dir,
        entries,
        sh.input.scan_cache,
        sh.input.now_ns,
    ) {
        hits.entry(i)
            .or_insert((Some(hit.line), hit.what, hit.format));
    }
    let mut out = Vec::new();
    for (i, (line, what, format)) in hits {
        let p = &entries[i].path;
        let tracked = sh.status(p) == Some(Status::Tracked);
        // Test suites commit fake keys and tokens on purpose.
        if sh.allow.is_match(p) || sh.deliberate(p) || tracked && test_root(p).is_some() {
            continue;
        }
        sh.claimed.insert(p.clone());
        let (mut severity, mut fate) = sh.fate(p);
        // A committed value that only looks random is often a demo default; a committed
        // token in its vendor's format is a leak either way.
        if tracked && !format {
            severity = Severity::Warning;
            fate.push_str(
                " (it is committed: if it is real, rotate it and read it from the environment)",
            );
        }
        let fix = match sh.copies.via(p) {
            Some(Via::Named(s)) => format!(
                "{} needs `{}`, so don't exclude it: take the secret out of the tree and pass it as a build secret (`RUN --mount=type=secret,id=…` with `--secret id=…,src=FILE`) or as an environment variable at run time",
                s.cite(),
                s.path
            ),
            _ => format!(
                "add `{p}` to {} and pass the secret at run time (an environment variable or a mounted file)",
                sh.ignore
            ),
        };
        // With a line, the place names the file.
        let f = match line {
            Some(l) => Finding::new("secret", severity, format!("holds {what}; {fate}")).at(p, l),
            None => Finding::new("secret", severity, format!("`{p}` is {what}; {fate}")),
        };
        out.push(f.paths(vec![p.clone()]).fix(fix));
    }
    out
}

fn must_exclude(sh: &mut Shared) -> Vec<Finding> {
    let mut out = Vec::new();
    for g in &sh.input.policy.must_exclude {
        let m = crate::config::glob(&g.value)
            .expect("validated")
            .compile_matcher();
        let paths: Vec<String> = sh
            .input
            .scan
            .entries
            .iter()
            .filter(|e| m.is_match(&e.path))
            .map(|e| e.path.clone())
            .collect();
        if !paths.is_empty() {
            sh.claimed.extend(paths.iter().cloned());
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
                .fix(format!("exclude them in {}", sh.ignore)),
            );
        }
    }
    out
}

fn bloat(sh: &mut Shared) -> Vec<Finding> {
    let set = name_set(BLOAT);
    // Per built-in name: the paths it catches, their bytes, and whether all sit at the root.
    let mut hits: Vec<(Vec<String>, u64, bool)> = vec![(Vec::new(), 0, true); BLOAT.len()];
    for e in &sh.input.scan.entries {
        let p = &e.path;
        // What git tracks is the project's own, whatever its name.
        if sh.claimed.contains(p)
            || sh.allow.is_match(p)
            || sh.deliberate(p)
            || sh.status(p) == Some(Status::Tracked)
        {
            continue;
        }
        let found = p
            .split('/')
            .enumerate()
            .find_map(|(depth, c)| set.matches(c).first().map(|i| (*i, depth)));
        if let Some((i, depth)) = found {
            hits[i].0.push(p.clone());
            hits[i].1 += e.size;
            hits[i].2 &= depth == 0;
        }
    }
    let mut out = Vec::new();
    for (i, (paths, bytes, top)) in hits.into_iter().enumerate() {
        if paths.is_empty() {
            continue;
        }
        let line = if top {
            BLOAT[i].to_string()
        } else {
            format!("**/{}", BLOAT[i])
        };
        sh.claimed.extend(paths.iter().cloned());
        out.push(
            Finding::new(
                "bloat",
                Severity::Warning,
                format!(
                    "{} file(s), {}, matching `{}` would be sent; they are build output, caches, environments or VCS data",
                    paths.len(),
                    size::human(bytes),
                    BLOAT[i]
                ),
            )
            .paths(paths)
            .fix(format!(
                "add `{line}` to {} (or list the path under `allow` in [context])",
                sh.ignore
            )),
        );
    }
    out
}

/// A group of sent paths under one root, for messages: `venv/ (2,301 files, 41 MB)`.
#[derive(Default)]
struct Group {
    files: usize,
    bytes: u64,
    dir: bool,
    severity: Option<Severity>,
    /// The instruction that needs it, when a COPY names it.
    needed_by: Option<String>,
}

/// The groups' roots as a finding's paths: directories with a trailing `/`.
fn group_paths(groups: &BTreeMap<String, Group>) -> Vec<String> {
    groups
        .iter()
        .map(|(r, g)| if g.dir { format!("{r}/") } else { r.clone() })
        .collect()
}

fn describe_groups(groups: &BTreeMap<String, Group>) -> String {
    let mut v: Vec<(&String, &Group)> = groups.iter().collect();
    v.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<String> = v
        .iter()
        .take(12)
        .map(|(root, g)| {
            if g.dir {
                let files = if g.files == 1 { "file" } else { "files" };
                format!("{root}/ ({} {files}, {})", g.files, size::human(g.bytes))
            } else {
                format!("{root} ({})", size::human(g.bytes))
            }
        })
        .collect();
    let more = v.len().saturating_sub(12);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Files git does not track, sent anyway: untracked ones nobody committed, and ignored ones
/// from somebody's machine. Grouped under the highest directory without tracked files.
fn git_unknown(sh: &mut Shared) -> Vec<Finding> {
    let Some(git) = sh.input.git else {
        return Vec::new();
    };
    let hooks = !sh.input.image.before_build.is_empty();
    // (kind, severity) → root → group
    let mut groups: BTreeMap<(&'static str, Severity), BTreeMap<String, Group>> = BTreeMap::new();
    for e in &sh.input.scan.entries {
        let p = &e.path;
        let status = git.status(p);
        if status == Status::Tracked || sh.claimed.contains(p) || sh.deliberate(p) {
            continue;
        }
        let via = sh.copies.via(p);
        let root = git.untracked_root(p);
        // A COPY source with no tracked file in it is build output (`COPY dist/`), not a
        // project directory a stray file slipped into.
        let output = |s: &copies::Source| {
            s.path.len() >= root.len()
                && (s.path == root || s.path.starts_with(&format!("{root}/")))
        };
        let (severity, needed_by) = match (status, via) {
            // Build output a `before_build` command makes and a COPY names: expected.
            (Status::Ignored, Some(Via::Named(s))) if output(s) && hooks => continue,
            (Status::Ignored, Some(Via::Named(s))) if output(s) => {
                (Severity::Warning, Some(s.cite()))
            }
            (Status::Ignored, Some(Via::Named(_))) => (Severity::Error, None),
            (_, Some(Via::Named(s))) => (Severity::Error, Some(s.cite())),
            (_, Some(Via::Whole(_))) => (Severity::Error, None),
            (_, None) if sh.copies.unknown => (Severity::Error, None),
            (_, None) => (Severity::Warning, None),
        };
        let kind = if status == Status::Untracked {
            "untracked"
        } else {
            "git_ignored"
        };
        let g = groups
            .entry((kind, severity))
            .or_default()
            .entry(root.to_string())
            .or_default();
        g.files += 1;
        g.bytes += e.size;
        g.dir |= root.len() < p.len();
        g.severity = Some(severity);
        if g.needed_by.is_none() {
            g.needed_by = needed_by;
        }
    }
    let mut out = Vec::new();
    for ((kind, severity), groups) in groups {
        let files: usize = groups.values().map(|g| g.files).sum();
        let bytes: u64 = groups.values().map(|g| g.bytes).sum();
        let what = if kind == "untracked" {
            "git does not know (untracked, not ignored)"
        } else {
            "git ignores"
        };
        let fate = if severity == Severity::Error {
            "a COPY puts them in the image"
        } else {
            "they are sent in the build context"
        };
        let excludable: Vec<String> = groups
            .iter()
            .filter(|(_, g)| g.needed_by.is_none())
            .map(|(r, _)| format!("`/{r}`"))
            .collect();
        let needed: Vec<String> = groups
            .iter()
            .filter_map(|(r, g)| g.needed_by.as_ref().map(|n| format!("`{r}` ({n})")))
            .collect();
        let mut fix = Vec::new();
        if !excludable.is_empty() {
            fix.push(if kind == "untracked" {
                format!(
                    "commit what belongs to the project; add the rest ({}) to {} and .gitignore, or delete it",
                    excludable.join(", "),
                    sh.ignore
                )
            } else {
                format!("add {} to {}", excludable.join(", "), sh.ignore)
            });
        }
        if !needed.is_empty() {
            fix.push(format!(
                "{} a COPY needs: commit {}, or make {} in a `before_build` command (whose outputs git should ignore)",
                needed.join(", "),
                if needed.len() == 1 { "it" } else { "them" },
                if needed.len() == 1 { "it" } else { "them" },
            ));
        }
        out.push(
            Finding::new(
                kind,
                severity,
                format!(
                    "{files} file(s), {}, that {what} would be sent, and {fate}: {}",
                    size::human(bytes),
                    describe_groups(&groups)
                ),
            )
            .paths(group_paths(&groups))
            .fix(fix.join("; ")),
        );
    }
    out
}

/// The test directory a path sits in (`saleor/graphql/tests`), or the path itself when the
/// file's own name marks it as a test.
fn test_root(p: &str) -> Option<&str> {
    static FILES: std::sync::OnceLock<GlobSet> = std::sync::OnceLock::new();
    let files = FILES.get_or_init(|| name_set(TEST_FILES));
    let mut end = 0;
    for comp in p.split('/') {
        end += comp.len();
        let is_last = end == p.len();
        if !is_last && TEST_DIRS.contains(&comp) {
            return Some(&p[..end]);
        }
        if is_last && files.is_match(comp) {
            return Some(p);
        }
        end += 1;
    }
    None
}

fn tests_in_image(sh: &mut Shared) -> Vec<Finding> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for e in &sh.input.scan.entries {
        let p = &e.path;
        if sh.claimed.contains(p) {
            continue;
        }
        let Some(root) = test_root(p) else { continue };
        if sh.copies.via_prod(p).is_none() {
            continue;
        }
        let g = groups.entry(root.to_string()).or_default();
        g.files += 1;
        g.bytes += e.size;
        g.dir |= root.len() < p.len();
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let files: usize = groups.values().map(|g| g.files).sum();
    let bytes: u64 = groups.values().map(|g| g.bytes).sum();
    let dev = sh.input.dockerfiles.iter().any(|d| d.dev);
    let prod = sh
        .input
        .dockerfiles
        .iter()
        .find(|d| !d.dev)
        .map_or("Dockerfile".into(), |d| d.display.clone());
    let fix = if dev {
        format!(
            "exclude them from the production image only, with a Dockerfile-specific ignore file `{prod}.dockerignore` (it replaces {} for that Dockerfile, so the dev image keeps its tests), e.g. `**/tests`",
            sh.ignore
        )
    } else {
        format!("add `**/tests` (and the like) to {}", sh.ignore)
    };
    vec![Finding::new(
        "tests_in_image",
        Severity::Warning,
        format!(
            "{files} test file(s), {}, go into the production image: {}",
            size::human(bytes),
            describe_groups(&groups)
        ),
    )
    .paths(group_paths(&groups))
    .fix(fix)]
}

fn unused(sh: &Shared) -> Vec<Finding> {
    if sh.copies.unknown || !sh.copies.whole.is_empty() || sh.input.dockerfiles.is_empty() {
        return Vec::new();
    }
    // The tool's own config is read by the tool, not sent for a COPY.
    let context = &sh.input.image.context.value;
    let config = if context.as_os_str().is_empty() || context == Path::new(".") {
        Some(crate::config::CONFIG_PATH.to_string())
    } else {
        Path::new(crate::config::CONFIG_PATH)
            .strip_prefix(context.strip_prefix("./").unwrap_or(context))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    let unused: Vec<&context::Entry> = sh
        .input
        .scan
        .entries
        .iter()
        .filter(|e| !sh.claimed.contains(&e.path) && !sh.copies.copied(&e.path))
        .filter(|e| config.as_deref() != Some(e.path.as_str()))
        .collect();
    if unused.is_empty() {
        return Vec::new();
    }
    let bytes: u64 = unused.iter().map(|e| e.size).sum();
    vec![Finding::new(
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
        "exclude them in {} to make the context smaller",
        sh.ignore
    ))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_roots() {
        assert_eq!(
            test_root("saleor/graphql/tests/test_x.py"),
            Some("saleor/graphql/tests")
        );
        assert_eq!(test_root("app/test_views.py"), Some("app/test_views.py"));
        assert_eq!(
            test_root("app/tests"),
            None,
            "a file named `tests` is not a directory"
        );
        assert_eq!(test_root("app/views.py"), None);
        assert_eq!(test_root("app/fixtures/initial.json"), None);
    }
}
