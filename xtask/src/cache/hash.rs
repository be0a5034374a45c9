//! Content digests of context files, with a stat cache so unchanged files are not read again.
//!
//! The cache maps a path to the `lstat` facts it had when it was hashed (size, mtime, ctime,
//! inode, mode). A file whose facts are unchanged keeps its digest, except one whose mtime was
//! not older than the run that hashed it: it may have changed again within the same timestamp
//! tick (git's "racy" rule), so it is read again.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use crate::context::{Entry, Stat};

const HEADER: &str = "xtask-hashes 1";
/// Files modified less than this before a hashing run started are not trusted by the next run:
/// filesystem timestamps come from a coarse clock that can lag the system clock.
const RACY_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    pub mode: u32,
    pub size: u64,
    /// sha256 of the content, or of the link target for a symlink.
    pub digest: [u8; 32],
}

#[derive(Clone, Copy)]
struct Cached {
    size: u64,
    stat: Stat,
    digest: [u8; 32],
    /// Modified too close to the hashing run to be trusted later.
    racy: bool,
}

/// Digests of `entries` (paths relative to `context`), in the same order. `key_prefix` tells
/// apart contexts sharing one cache file. Unchanged files come from `cache_file`; the rest are
/// read in parallel, and the cache is rewritten (atomically) when anything was read.
pub fn digests(
    context: &Path,
    key_prefix: &str,
    entries: &[Entry],
    cache_file: &Path,
    now_ns: i64,
) -> Result<Vec<Fact>> {
    let mut cache = load(cache_file).unwrap_or_default();
    let mut facts: Vec<Option<Fact>> = vec![None; entries.len()];
    let mut todo = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let key = format!("{key_prefix}{}", e.path);
        match cache.get(&key) {
            Some(c) if !c.racy && c.size == e.size && c.stat == e.stat => {
                facts[i] = Some(Fact {
                    mode: e.stat.mode,
                    size: e.size,
                    digest: c.digest,
                })
            }
            _ => todo.push(i),
        }
    }
    if !todo.is_empty() {
        let hashed = hash_parallel(context, entries, &todo)?;
        for (i, digest) in todo.iter().zip(hashed) {
            let e = &entries[*i];
            facts[*i] = Some(Fact {
                mode: e.stat.mode,
                size: e.size,
                digest,
            });
            cache.insert(
                format!("{key_prefix}{}", e.path),
                Cached {
                    size: e.size,
                    stat: e.stat,
                    digest,
                    racy: e.stat.mtime_ns >= now_ns - RACY_NS,
                },
            );
        }
        // Dropping a stale cache is harmless, so a failure to write it is not an error.
        let _ = save(cache_file, &cache);
    }
    Ok(facts.into_iter().map(|f| f.expect("every entry")).collect())
}

fn hash_parallel(context: &Path, entries: &[Entry], todo: &[usize]) -> Result<Vec<[u8; 32]>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len());
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Result<[u8; 32]>)>> = Mutex::new(Vec::with_capacity(todo.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; 256 * 1024];
                let mut mine = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    mine.push((k, hash_one(context, &entries[i], &mut buf)));
                }
                if let Ok(mut o) = out.lock() {
                    o.extend(mine);
                }
            });
        }
    });
    let mut all = out.into_inner().unwrap_or_default();
    all.sort_by_key(|(k, _)| *k);
    all.into_iter().map(|(_, r)| r).collect()
}

fn hash_one(context: &Path, e: &Entry, buf: &mut [u8]) -> Result<[u8; 32]> {
    let path = context.join(&e.path);
    let mut h = Sha256::new();
    if e.symlink {
        let target =
            std::fs::read_link(&path).with_context(|| format!("reading link `{}`", e.path))?;
        h.update(target.as_os_str().as_encoded_bytes());
    } else {
        let mut f = File::open(&path).with_context(|| format!("reading `{}`", path.display()))?;
        loop {
            let n = f
                .read(buf)
                .with_context(|| format!("reading `{}`", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().into())
}

fn load(path: &Path) -> Option<HashMap<String, Cached>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut entries = HashMap::new();
    for l in lines {
        let mut f = l.splitn(8, '\t');
        let mut digest = [0u8; 32];
        hex_decode(f.next()?, &mut digest)?;
        let size = f.next()?.parse().ok()?;
        let stat = Stat {
            mtime_ns: f.next()?.parse().ok()?,
            ctime_ns: f.next()?.parse().ok()?,
            ino: f.next()?.parse().ok()?,
            mode: f.next()?.parse().ok()?,
        };
        let racy = f.next()? == "1";
        entries.insert(
            f.next()?.to_string(),
            Cached {
                size,
                stat,
                digest,
                racy,
            },
        );
    }
    Some(entries)
}

fn save(path: &Path, cache: &HashMap<String, Cached>) -> Result<()> {
    use std::fmt::Write as _;
    let mut out = format!("{HEADER}\n");
    for (p, c) in cache {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{p}",
            hex(&c.digest),
            c.size,
            c.stat.mtime_ns,
            c.stat.ctime_ns,
            c.stat.ino,
            c.stat.mode,
            u8::from(c.racy)
        );
    }
    crate::fsx::write_atomic(path, out.as_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn hex_decode(s: &str, out: &mut [u8; 32]) -> Option<()> {
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, path: &str) -> Entry {
        let md = std::fs::symlink_metadata(dir.join(path)).unwrap();
        Entry {
            path: path.into(),
            size: md.len(),
            symlink: md.file_type().is_symlink(),
            stat: Stat::of(&md),
        }
    }

    #[test]
    fn unchanged_files_come_from_the_cache_and_racy_ones_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a"), "one").unwrap();
        std::os::unix::fs::symlink("a", d.join("l")).unwrap();
        let cache = d.join("cache");
        let es = [entry(d, "a"), entry(d, "l")];
        let far_future = i64::MAX / 2;
        let first = digests(d, "", &es, &cache, far_future).unwrap();
        assert_eq!(hex(&first[0].digest), hex(&Sha256::digest(b"one")));
        assert_eq!(hex(&first[1].digest), hex(&Sha256::digest(b"a")));
        // Same stat, different content: trusted, so the cached digest comes back (proof that
        // the file was not read again).
        let mut forged = es.clone();
        std::fs::write(d.join("a"), "two").unwrap();
        forged[0].stat = es[0].stat;
        forged[0].size = es[0].size;
        assert_eq!(digests(d, "", &forged, &cache, far_future).unwrap(), first);
        // A changed stat is read again.
        let fresh = [entry(d, "a"), entry(d, "l")];
        let again = digests(d, "", &fresh, &cache, far_future).unwrap();
        assert_eq!(hex(&again[0].digest), hex(&Sha256::digest(b"two")));
        // A file modified after the run that hashed it started is not trusted.
        let racy = d.join("racy");
        digests(d, "", &fresh, &racy, 0).unwrap();
        std::fs::write(d.join("a"), "six").unwrap();
        let mut same_stat = fresh.clone();
        same_stat[0].size = 3;
        let r = digests(d, "", &same_stat, &racy, 0).unwrap();
        assert_eq!(hex(&r[0].digest), hex(&Sha256::digest(b"six")));
    }
}
