//! Reads the sent files for secrets, in parallel and with a size cap, so `check` stays fast
//! enough for a pre-commit hook.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::context::{Entry, Stat};
use crate::secrets::{self, Hit};

/// Bytes read from the start of each file: settings and key files are small, and a secret in
/// the middle of a large data file is rare enough not to read every byte of the context for it.
const CAP: usize = 128 * 1024;

/// Extensions that never hold a readable secret (media, archives, compiled code, fonts).
const BINARY: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "ico", "svg", "bmp", "tif", "tiff", "mp3", "mp4", "webm",
    "wav", "ogg", "zip", "gz", "tgz", "bz2", "xz", "zst", "tar", "whl", "egg", "jar", "so", "a",
    "o", "dylib", "dll", "exe", "pyc", "pyo", "woff", "woff2", "ttf", "otf", "eot", "pdf", "mo",
    "sqlite3", "sqlite", "db", "wasm", "map",
];

/// Templates of secret files, which hold placeholders by design.
pub fn is_template(name: &str) -> bool {
    [".example", ".sample", ".template", ".dist", ".tmpl", ".tpl"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn worth_reading(e: &Entry) -> bool {
    let name = e.path.rsplit('/').next().unwrap_or(&e.path);
    let ext = name.rsplit_once('.').map(|(_, x)| x.to_ascii_lowercase());
    !e.symlink
        && e.size > 0
        && !is_template(name)
        && !ext.is_some_and(|x| BINARY.contains(&x.as_str()))
}

/// What an earlier scan found in a file, valid while its size and `lstat` are unchanged.
#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    size: u64,
    stat: Stat,
    hit: Option<(usize, String, bool)>,
}

/// A file changed within this margin of the scan may change again within the same mtime
/// tick, unseen by `lstat`: it is read every time (git's "racy" rule).
const RACY_NS: i64 = 1_000_000_000;

/// The first secret in each sent file that has one, as `(index into entries, hit)`. Files
/// unchanged since the last scan (`cache`, one per context) are not read again, so a
/// pre-commit `check` reads only what was edited.
pub fn scan(
    context_dir: &Path,
    entries: &[Entry],
    cache: Option<&Path>,
    now_ns: i64,
) -> Vec<(usize, Hit)> {
    let seen: HashMap<String, Seen> = cache
        .and_then(|c| std::fs::read_to_string(c).ok())
        .map(|t| parse(&t))
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.path.clone(), s))
        .collect();
    let mut known: Vec<(usize, Hit)> = Vec::new();
    let mut todo: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if !worth_reading(e) {
            continue;
        }
        match seen.get(&e.path) {
            Some(s) if s.size == e.size && s.stat == e.stat => {
                if let Some((line, what, format)) = &s.hit {
                    known.push((
                        i,
                        Hit {
                            line: *line,
                            what: what.clone(),
                            format: *format,
                        },
                    ));
                }
            }
            _ => todo.push(i),
        }
    }
    let mut found = read_all(context_dir, entries, &todo);
    if let Some(c) = cache.filter(|_| !todo.is_empty() || seen.len() != known.len() + todo.len()) {
        let hits: HashMap<usize, &Hit> = found.iter().chain(&known).map(|(i, h)| (*i, h)).collect();
        let keep: Vec<Seen> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                worth_reading(e) && e.stat.mtime_ns < now_ns - RACY_NS && !e.path.contains('\n')
            })
            .map(|(i, e)| Seen {
                path: e.path.clone(),
                size: e.size,
                stat: e.stat,
                hit: hits.get(&i).map(|h| (h.line, h.what.clone(), h.format)),
            })
            .collect();
        // Only a cache: a failure to write it costs a full read next time.
        let _ = crate::fsx::write_atomic(c, format(&keep));
    }
    found.extend(known);
    found.sort_by_key(|(i, _)| *i);
    found
}

/// One line per file, `F size mtime ctime ino mode path`, and after a file with a secret
/// `H line format what`: plain text, because a pre-commit run parses it every time.
fn format(seen: &[Seen]) -> String {
    let mut out = String::with_capacity(seen.len() * 80);
    out.push_str(&format!("V {}\n", secrets::rules_id()));
    for s in seen {
        let t = &s.stat;
        out.push_str(&format!(
            "F {} {} {} {} {} {}\n",
            s.size, t.mtime_ns, t.ctime_ns, t.ino, t.mode, s.path
        ));
        if let Some((line, what, format)) = &s.hit {
            out.push_str(&format!("H {line} {} {what}\n", u8::from(*format)));
        }
    }
    out
}

/// Reads what [`format`] wrote; a line it can't read ends the cache there (it is only a cache).
fn parse(text: &str) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    let mut lines = text.lines();
    // Results of other rules are not results.
    if lines.next() != Some(&format!("V {}", secrets::rules_id())) {
        return out;
    }
    for line in lines {
        let mut f = line.splitn(7, ' ');
        match f.next() {
            Some("F") => {
                let mut n = || f.next().and_then(|x| x.parse::<i64>().ok());
                let (Some(size), Some(mtime_ns), Some(ctime_ns), Some(ino), Some(mode)) =
                    (n(), n(), n(), n(), n())
                else {
                    break;
                };
                let Some(path) = f.next() else { break };
                out.push(Seen {
                    path: path.to_string(),
                    size: size as u64,
                    stat: Stat {
                        mtime_ns,
                        ctime_ns,
                        ino: ino as u64,
                        mode: mode as u32,
                    },
                    hit: None,
                });
            }
            Some("H") => {
                let mut h = line[2..].splitn(3, ' ');
                let (Some(l), Some(fmt), Some(what)) = (h.next(), h.next(), h.next()) else {
                    break;
                };
                let (Ok(l), Some(last)) = (l.parse(), out.last_mut()) else {
                    break;
                };
                last.hit = Some((l, what.to_string(), fmt == "1"));
            }
            _ => break,
        }
    }
    out
}

fn read_all(context_dir: &Path, entries: &[Entry], todo: &[usize]) -> Vec<(usize, Hit)> {
    if todo.is_empty() {
        return Vec::new();
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len());
    let next = AtomicUsize::new(0);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = Vec::with_capacity(CAP);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(n) else { break };
                    buf.clear();
                    // A file that vanished or can't be read has nothing to say here; the
                    // build reports it if it matters.
                    let Ok(f) = std::fs::File::open(entries[i].on_disk(context_dir)) else {
                        continue;
                    };
                    if f.take(CAP as u64).read_to_end(&mut buf).is_err() {
                        continue;
                    }
                    let path = &entries[i].path;
                    let name = path.rsplit('/').next().unwrap_or(path);
                    if let Some(hit) = secrets::find(name, &buf) {
                        found
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, hit));
                    }
                }
            });
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_cache_reads_back_what_it_wrote() {
        let seen = vec![
            Seen {
                path: "a dir/settings.py".into(),
                size: 12,
                stat: Stat {
                    mtime_ns: 1,
                    ctime_ns: 2,
                    ino: 3,
                    mode: 0o100644,
                },
                hit: Some((4, "a random value assigned to `SECRET_KEY`".into(), false)),
            },
            Seen {
                path: "b".into(),
                size: 0,
                stat: Stat::default(),
                hit: None,
            },
        ];
        assert_eq!(parse(&format(&seen)), seen);
        assert_eq!(parse("V 0\nF 1 2 3 4 5 x\n"), vec![]);
        let v = format!("V {}\n", secrets::rules_id());
        assert_eq!(parse(&format!("{v}F 1 2\nF 1 2 3 4 5 x\n")), vec![]);
    }
}
