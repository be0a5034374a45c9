//! Content digests of context files, with a stat cache so unchanged files are not read again.
//!
//! The cache maps a path to the `lstat` facts it had when it was hashed (size, mtime, ctime,
//! inode, mode). A file whose facts are unchanged keeps its digest, except one whose mtime was
//! not older than the run that hashed it: it may have changed again within the same timestamp
//! tick (git's "racy" rule), so it is read again.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

use crate::context::{Entry, Stat};

const HEADER: &str = "xtask-hashes 2";
/// Files modified less than this before a hashing run started are not trusted by the next run:
/// filesystem timestamps come from a coarse clock that can lag the system clock.
const RACY_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    pub mode: u32,
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

/// Digests of `entries` (paths relative to `context`), in the same order. Unchanged files come
/// from `cache_file` (one per context); the rest are read in parallel, and the cache is
/// rewritten (atomically, holding exactly these entries) when anything was read or dropped.
pub fn digests(
    context: &Path,
    entries: &[Entry],
    cache_file: Option<&Path>,
    now_ns: i64,
) -> Result<Vec<Fact>> {
    let bytes = cache_file
        .and_then(|f| std::fs::read(f).ok())
        .unwrap_or_default();
    let cache = parse(&bytes).unwrap_or_default();
    let mut facts: Vec<Option<Fact>> = vec![None; entries.len()];
    let mut todo = Vec::new();
    // Both lists are sorted by path (the cache is written in the walk's order): a merge join.
    let mut c = cache.iter().peekable();
    for (i, e) in entries.iter().enumerate() {
        while c.next_if(|(p, _)| *p < e.path.as_bytes()).is_some() {}
        match c.peek() {
            Some((p, hit))
                if *p == e.path.as_bytes()
                    && !hit.racy
                    && hit.size == e.size
                    && hit.stat == e.stat =>
            {
                facts[i] = Some(Fact {
                    mode: e.stat.mode,
                    digest: hit.digest,
                })
            }
            _ => todo.push(i),
        }
    }
    let stale = cache.len() + todo.len() != entries.len();
    if !todo.is_empty() {
        let hashed = hash_parallel(context, entries, &todo)?;
        for (i, digest) in todo.iter().zip(hashed) {
            let e = &entries[*i];
            facts[*i] = Some(Fact {
                mode: e.stat.mode,
                digest,
            });
        }
    }
    let facts: Vec<Fact> = facts.into_iter().map(|f| f.expect("every entry")).collect();
    if let Some(f) = cache_file.filter(|_| !todo.is_empty() || stale) {
        // Dropping a stale cache is harmless, so a failure to write it is not an error.
        let _ = save(f, entries, &facts, now_ns);
    }
    Ok(facts)
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
    let path = e.on_disk(context);
    let mut h = Sha256::new();
    // Directories and special files carry no content: their mode (in the key) says it all,
    // and opening a FIFO would block.
    const TYPE: u32 = 0o170000;
    let regular = e.stat.mode & TYPE == 0o100000 || e.stat.mode == 0;
    if !e.symlink && !regular {
        return Ok(h.finalize().into());
    }
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

// The file: the header line, then per entry `path len (u32) | path | size | mtime | ctime | ino |
// mode | racy | digest`, little-endian. Binary because parsing 100,000 text lines is most of a
// warm run's time in the unoptimised dev profile `cargo xtask` uses.
fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], Cached)>> {
    let mut b = bytes.strip_prefix(HEADER.as_bytes())?.strip_prefix(b"\n")?;
    let mut entries = Vec::new();
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn u64_(b: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
    }
    while !b.is_empty() {
        let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        let p = take(&mut b, len)?;
        let size = u64_(&mut b)?;
        let stat = Stat {
            mtime_ns: u64_(&mut b)? as i64,
            ctime_ns: u64_(&mut b)? as i64,
            ino: u64_(&mut b)?,
            mode: u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?),
        };
        let racy = take(&mut b, 1)?[0] == 1;
        let digest: [u8; 32] = take(&mut b, 32)?.try_into().ok()?;
        entries.push((
            p,
            Cached {
                size,
                stat,
                digest,
                racy,
            },
        ));
    }
    // Written sorted; an unsorted (foreign) file would only cost re-hashing, but keep the
    // join correct anyway.
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_by(|a, b| a.0.cmp(b.0));
    }
    Some(entries)
}

fn save(path: &Path, entries: &[Entry], facts: &[Fact], now_ns: i64) -> Result<()> {
    let mut out = Vec::with_capacity(entries.len() * 100);
    out.extend_from_slice(HEADER.as_bytes());
    out.push(b'\n');
    for (e, f) in entries.iter().zip(facts) {
        out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
        out.extend_from_slice(e.path.as_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.stat.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.stat.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.stat.ino.to_le_bytes());
        out.extend_from_slice(&e.stat.mode.to_le_bytes());
        out.push(u8::from(e.stat.mtime_ns >= now_ns - RACY_NS));
        out.extend_from_slice(&f.digest);
    }
    crate::fsx::write_atomic(path, out)
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
            exact: None,
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
        let first = digests(d, &es, Some(&cache), far_future).unwrap();
        assert_eq!(hex(&first[0].digest), hex(&Sha256::digest(b"one")));
        assert_eq!(hex(&first[1].digest), hex(&Sha256::digest(b"a")));
        // Same stat, different content: trusted, so the cached digest comes back (proof that
        // the file was not read again).
        let mut forged = es.clone();
        std::fs::write(d.join("a"), "two").unwrap();
        forged[0].stat = es[0].stat;
        forged[0].size = es[0].size;
        assert_eq!(
            digests(d, &forged, Some(&cache), far_future).unwrap(),
            first
        );
        // A changed stat is read again.
        let fresh = [entry(d, "a"), entry(d, "l")];
        let again = digests(d, &fresh, Some(&cache), far_future).unwrap();
        assert_eq!(hex(&again[0].digest), hex(&Sha256::digest(b"two")));
        // A file modified after the run that hashed it started is not trusted.
        let racy = d.join("racy");
        digests(d, &fresh, Some(&racy), 0).unwrap();
        std::fs::write(d.join("a"), "six").unwrap();
        let mut same_stat = fresh.clone();
        same_stat[0].size = 3;
        let r = digests(d, &same_stat, Some(&racy), 0).unwrap();
        assert_eq!(hex(&r[0].digest), hex(&Sha256::digest(b"six")));
    }
}
