//! Which files of a context the engine sends, walked the way podman's copier walks it for
//! `COPY . /dst/`, and why any one path is in or out.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::{Context as _, Result};
use regex::RegexSet;
use serde::Serialize;

use super::ignore::Rule;
use crate::engine::EngineKind;

/// The rules of one ignore file, ready to decide paths. The last matching rule wins.
pub struct Matcher {
    pub rules: Vec<Rule>,
    /// The rules' regexes in sets of at most `CHUNK`, with the index of each set's first rule:
    /// one set for a long ignore file outgrows the regex crate's size limit.
    sets: Vec<(usize, RegexSet)>,
    engine: EngineKind,
}

/// One file the engine sends: a regular file or a symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Relative to the context root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub symlink: bool,
    /// What the stat cache compares to know a file is unchanged without reading it.
    #[serde(skip)]
    pub stat: Stat,
    /// The file's exact path, where `path` is not: a name that is not UTF-8 (`caf\xe9.txt`) is
    /// matched and shown with U+FFFD for each bad byte, as Go's regexp reads it, but read
    /// from disk by its bytes.
    #[serde(skip)]
    pub exact: Option<PathBuf>,
}

impl Entry {
    /// Where to read the file, under the context directory.
    pub fn on_disk(&self, context: &Path) -> PathBuf {
        self.exact
            .clone()
            .unwrap_or_else(|| context.join(&self.path))
    }
}

/// The parts of `lstat` that change whenever a file's content or mode may have changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stat {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub mode: u32,
}

impl Stat {
    pub fn of(md: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            mode: md.mode(),
        }
    }
}

/// Rules per compiled set: small enough that thousands of lines stay within the regex crate's
/// limits, large enough that a usual ignore file is one set.
const CHUNK: usize = 256;

impl Matcher {
    pub fn new(rules: Vec<Rule>, engine: EngineKind) -> Matcher {
        let sets = rules
            .chunks(CHUNK)
            .enumerate()
            .map(|(n, chunk)| {
                let set = RegexSet::new(chunk.iter().map(|r| r.regex.as_str()))
                    .expect("each regex compiled alone, and a chunk stays small");
                (n * CHUNK, set)
            })
            .collect();
        Matcher {
            rules,
            sets,
            engine,
        }
    }

    /// The indexes of the rules that match `rel`, ascending.
    pub fn hits(&self, rel: &str) -> Vec<usize> {
        let mut out = Vec::new();
        for (offset, set) in &self.sets {
            out.extend(set.matches(rel).iter().map(|i| offset + i));
        }
        out
    }

    /// The rule that decides `rel`, if any matches.
    pub fn decisive(&self, rel: &str) -> Option<&Rule> {
        // The last matching rule wins: look in the last sets first.
        self.sets.iter().rev().find_map(|(offset, set)| {
            set.matches(rel)
                .iter()
                .next_back()
                .map(|i| &self.rules[offset + i])
        })
    }

    /// Whether the walk enters an excluded directory. Podman's copier enters only when some
    /// exception's text, with `/` appended, starts with the directory's path: a plain string
    /// test, so `!**/*.txt` never reaches into an excluded directory. Docker enters whenever an
    /// exception could match below it.
    pub fn enters_excluded_dir(&self, dir: &str) -> bool {
        let dir = dir.trim_matches('/');
        self.rules
            .iter()
            .filter(|r| r.exception)
            .any(|r| match self.engine {
                EngineKind::Podman => format!("{}/", r.pattern.trim_matches('/')).starts_with(dir),
                EngineKind::Docker => could_match_below(&r.pattern, dir),
            })
    }
}

/// Whether a pattern could match some path under `dir`: its literal start agrees with `dir`.
fn could_match_below(pattern: &str, dir: &str) -> bool {
    let literal: String = pattern
        .chars()
        .take_while(|c| !"*?[\\".contains(*c))
        .collect();
    let dir_slash = format!("{dir}/");
    literal.starts_with(&dir_slash) || dir_slash.starts_with(&literal)
}

/// Which rules of the ignore file ever mattered during a walk, one flag per rule.
#[derive(Debug, Default, Clone)]
pub struct RuleUse {
    /// It matched some path the walk looked at.
    pub matched: Vec<bool>,
    /// An exception that brought back some path an earlier line excluded.
    pub reincluded: Vec<bool>,
    /// It was the last to match some path, so it decided it.
    pub decided: Vec<bool>,
    /// A later rule of the other kind (exclusion or exception) overrode it for some path.
    pub overridden: Vec<bool>,
}

impl RuleUse {
    fn new(rules: usize) -> RuleUse {
        RuleUse {
            matched: vec![false; rules],
            reincluded: vec![false; rules],
            decided: vec![false; rules],
            overridden: vec![false; rules],
        }
    }

    /// Adds what another part of the walk saw.
    fn merge(&mut self, other: RuleUse) {
        for (mine, theirs) in [
            (&mut self.matched, other.matched),
            (&mut self.reincluded, other.reincluded),
            (&mut self.decided, other.decided),
            (&mut self.overridden, other.overridden),
        ] {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a |= b;
            }
        }
    }
}

/// What a walk found: the files sent, and which rules ever mattered.
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: Vec<Entry>,
    pub rules: RuleUse,
    /// What the engine copies besides files and symlinks: empty directories and special files
    /// (FIFOs, sockets, devices). Not listed as context files, but part of the cache keys, as
    /// they are of podman's.
    pub extra: Vec<Entry>,
}

impl Walked {
    fn empty(rules: usize) -> Walked {
        Walked {
            rules: RuleUse::new(rules),
            ..Walked::default()
        }
    }
}

/// Every file the engine would send, sorted by path. Excluded directories are not entered
/// unless the engine would enter them.
///
/// Written on `std::fs::read_dir` rather than walkdir, and on several threads: std is
/// optimised even in the dev profile `cargo xtask` runs in, its `DirEntry::metadata` stats
/// relative to the open directory, and the kernel serves the stat calls of a large context
/// (most of a walk's time) in parallel.
pub fn walk(root: &Path, m: &Matcher) -> Result<Walked> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let queue = Queue {
        state: Mutex::new((vec![(root.to_path_buf(), String::new())], 0)),
        ready: Condvar::new(),
    };
    let parts: Vec<Result<Walked>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| worker(&queue, m)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a walk thread panicked")))
            })
            .collect()
    });
    let mut w = Walked::empty(m.rules.len());
    for part in parts {
        let part = part?;
        w.entries.extend(part.entries);
        w.extra.extend(part.extra);
        w.rules.merge(part.rules);
    }
    w.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    w.extra.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(w)
}

/// Directories still to read, and how many workers are reading one (the walk ends when both
/// are zero).
struct Queue {
    state: Mutex<(Vec<(PathBuf, String)>, usize)>,
    ready: Condvar,
}

fn worker(q: &Queue, m: &Matcher) -> Result<Walked> {
    let mut w = Walked::empty(m.rules.len());
    loop {
        let (dir, rel_dir) = {
            let mut st = q
                .state
                .lock()
                .map_err(|_| anyhow::anyhow!("walk queue poisoned"))?;
            loop {
                if let Some(d) = st.0.pop() {
                    st.1 += 1;
                    break d;
                }
                if st.1 == 0 {
                    q.ready.notify_all();
                    return Ok(w);
                }
                st = q
                    .ready
                    .wait(st)
                    .map_err(|_| anyhow::anyhow!("walk queue poisoned"))?;
            }
        };
        let found = read_one(&dir, &rel_dir, m, &mut w);
        let mut st = q
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("walk queue poisoned"))?;
        st.1 -= 1;
        match found {
            Ok(subdirs) => st.0.extend(subdirs),
            Err(e) => {
                // Stop everyone: the error is the walk's result.
                st.0.clear();
                q.ready.notify_all();
                return Err(e);
            }
        }
        q.ready.notify_all();
    }
}

/// Reads one directory: its files go into `w`, its subdirectories to walk are returned.
fn read_one(
    dir: &Path,
    rel_dir: &str,
    m: &Matcher,
    w: &mut Walked,
) -> Result<Vec<(PathBuf, String)>> {
    let mut subdirs = Vec::new();
    // What of this directory is sent; none makes it an empty directory the engine copies.
    let mut kept = 0usize;
    let read = std::fs::read_dir(dir)
        .with_context(|| format!("reading the build context `{}`", dir.display()))?;
    // Whether `rel_dir` names this directory exactly (no byte of its path was replaced).
    let dir_exact = rel_dir.is_empty() || dir.ends_with(rel_dir);
    for entry in read {
        let entry =
            entry.with_context(|| format!("reading the build context `{}`", dir.display()))?;
        let name = entry.file_name();
        let exact = (!dir_exact || name.to_str().is_none()).then(|| entry.path());
        let name = name.to_string_lossy();
        let rel = if rel_dir.is_empty() {
            name.into_owned()
        } else {
            format!("{rel_dir}/{name}")
        };
        let hits = m.hits(&rel);
        let mut excluded = false;
        if let Some(&last) = hits.last() {
            excluded = !m.rules[last].exception;
            w.rules.decided[last] = true;
            for &i in &hits {
                w.rules.matched[i] = true;
                if i < last && m.rules[i].exception != m.rules[last].exception {
                    w.rules.overridden[i] = true;
                }
            }
            if m.rules[last].exception && hits.iter().any(|&i| i < last && !m.rules[i].exception) {
                w.rules.reincluded[last] = true;
            }
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if !excluded || m.enters_excluded_dir(&rel) {
                subdirs.push((entry.path(), rel));
                kept += 1;
            }
            continue;
        }
        if excluded {
            continue;
        }
        if !(ft.is_file() || ft.is_symlink()) {
            // A FIFO, socket or device: the copier takes it as it is.
            let md = entry.metadata().ok();
            w.extra.push(Entry {
                path: rel,
                size: 0,
                symlink: false,
                stat: md.as_ref().map(Stat::of).unwrap_or_default(),
                exact,
            });
            kept += 1;
            continue;
        }
        kept += 1;
        // `lstat` relative to the directory; a file removed meanwhile keeps zeros, is then
        // hashed, fails to open, and the error names it.
        let md = entry.metadata().ok();
        w.entries.push(Entry {
            path: rel,
            size: md.as_ref().filter(|m| m.is_file()).map_or(0, |m| m.len()),
            symlink: ft.is_symlink(),
            stat: md.as_ref().map(Stat::of).unwrap_or_default(),
            exact,
        });
    }
    let own_exclusion = m.decisive(rel_dir).is_some_and(|r| !r.exception);
    if kept == 0 && !rel_dir.is_empty() && !own_exclusion {
        let md = std::fs::symlink_metadata(dir).ok();
        w.extra.push(Entry {
            path: rel_dir.to_string(),
            size: 0,
            symlink: false,
            stat: md.as_ref().map(Stat::of).unwrap_or_default(),
            exact: (!dir_exact).then(|| dir.to_path_buf()),
        });
    }
    Ok(subdirs)
}

/// Why a path is in the context or not.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    pub path: String,
    pub included: bool,
    /// The deciding line of the ignore file, when one decided.
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub reason: String,
}

/// Explains `rel` as the walk would decide it, ancestors first: a file under a directory the
/// walk does not enter is out whatever later lines say.
pub fn explain(m: &Matcher, rel: &str) -> Explanation {
    let rel = rel.trim_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    for i in 1..parts.len() {
        let dir = parts[..i].join("/");
        if let Some(r) = m.decisive(&dir).filter(|r| !r.exception) {
            if !m.enters_excluded_dir(&dir) {
                return Explanation {
                    path: rel.to_string(),
                    included: false,
                    line: Some(r.line),
                    rule: Some(r.text.clone()),
                    reason: format!(
                        "directory `{dir}` is excluded by line {} (`{}`) and no exception can reach inside it, so the engine never looks in",
                        r.line,
                        r.text.trim()
                    ),
                };
            }
        }
    }
    match m.decisive(rel) {
        Some(r) => Explanation {
            path: rel.to_string(),
            included: r.exception,
            line: Some(r.line),
            rule: Some(r.text.clone()),
            reason: format!(
                "line {} (`{}`) is the last line that matches it",
                r.line,
                r.text.trim()
            ),
        },
        None => Explanation {
            path: rel.to_string(),
            included: true,
            line: None,
            rule: None,
            reason: "no line of the ignore file matches it".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::ignore::parse;
    use super::*;

    fn matcher(text: &str) -> Matcher {
        Matcher::new(parse(text, EngineKind::Podman).unwrap(), EngineKind::Podman)
    }

    fn listing(files: &[&str], ignore: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        walk(dir.path(), &matcher(ignore))
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn last_match_wins_and_exceptions_reach_inside_named_dirs() {
        let files = [
            "a.txt",
            "b.md",
            "dir/keep.txt",
            "dir/drop.md",
            "dir/sub/x.txt",
            "other/y.txt",
        ];
        assert_eq!(
            listing(&files, "*.md\n"),
            [
                "a.txt",
                "dir/drop.md",
                "dir/keep.txt",
                "dir/sub/x.txt",
                "other/y.txt"
            ]
        );
        assert_eq!(
            listing(&files, "dir\n!dir/keep.txt\n"),
            ["a.txt", "b.md", "dir/keep.txt", "other/y.txt"]
        );
        assert_eq!(
            listing(&files, "!dir/keep.txt\ndir\n"),
            ["a.txt", "b.md", "other/y.txt"]
        );
        assert_eq!(listing(&files, "*\n!dir/sub\n"), ["dir/sub/x.txt"]);
    }

    #[test]
    fn podman_does_not_enter_excluded_dirs_for_wildcard_exceptions() {
        let files = ["a.txt", "dir/b.txt", "dir/c.md"];
        // `!**/*.txt` re-includes `a.txt` at the top, but the copier never enters `dir`.
        assert_eq!(listing(&files, "*\n!**/*.txt\n"), ["a.txt"]);
        let m = matcher("*\n!**/*.txt\n");
        let e = explain(&m, "dir/b.txt");
        assert!(!e.included && e.line == Some(1), "{e:?}");
        assert!(e.reason.contains("never looks in"), "{e:?}");
        // The string-prefix test also enters `di` for an exception under `dir`.
        assert!(matcher("*\n!dir/x\n").enters_excluded_dir("di"));
    }

    #[test]
    fn dead_rules_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.log", "keep.log", "src/x.rs"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let w = walk(dir.path(), &matcher("*.log\n*.tmp\n!keep.log\n!src/x.rs\n")).unwrap();
        assert_eq!(w.rules.matched, [true, false, true, true]);
        // `!src/x.rs` matches, but nothing had excluded it.
        assert_eq!(w.rules.reincluded, [false, false, true, false]);
    }

    #[test]
    fn explanations_name_the_deciding_line() {
        let m = matcher("# c\n*.log\n!important.log\n");
        assert_eq!(explain(&m, "debug.log").line, Some(2));
        assert!(!explain(&m, "debug.log").included);
        assert!(explain(&m, "important.log").included);
        assert_eq!(explain(&m, "x.txt").line, None);
    }
}
