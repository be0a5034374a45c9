//! The content summary podman 4.3 (buildah 1.28) writes into a `COPY`/`ADD` step's history
//! line, `/bin/sh -c #(nop) COPY file:<hex> in /dest `, and compares to reuse a cached layer
//! whoever built it.
//!
//! Buildah reads each source item (each match of each source) as a tar stream, re-serialises
//! every header with Go's `archive/tar` writer after zeroing its times, and hashes the result:
//! `file:` or `dir:` and the sha256 of that stream for one item, `multi:` and the sha256 of
//! `file:hex,dir:hex,…` for several. So the summary covers names, modes, the owner given to the
//! copy (`--chown`, else 0:0), the host owner's user and group *names*, symlink targets,
//! hard links, directory entries and content; not mtimes. Measured against `podman history`
//! (`xtask/tests/cache.rs`, the foreign series).
//!
//! Only the USTAR form is written here: an entry that needs PAX records (a name that is not
//! ASCII or too long to split, a long link target or owner name, extended attributes, which
//! std cannot read) makes the summary unknown, and the step is predicted from the tool's own
//! records only.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::hash::hex;

/// One `COPY`/`ADD` from the context, as buildah's `Add` sees it.
pub struct Copy<'a> {
    pub context: &'a Path,
    /// The sources as written (variables expanded), relative to the context.
    pub sources: &'a [String],
    /// `--chown` (0:0 without it: buildah sets it either way).
    pub chown: (u32, u32),
    /// `--chmod`, for files and directories alike.
    pub chmod: Option<u32>,
    /// The destination's last name when it may name a file (no trailing `/`, not the working
    /// directory): a single file copied there is renamed before it is digested. (Buildah does
    /// not rename when that path is a directory in the image; then this summary differs and
    /// the step is predicted rebuilt, never wrongly reused.)
    pub dest_file: Option<String>,
    /// Whether the ignore file excludes a context-relative path.
    pub excluded: &'a dyn Fn(&str) -> bool,
    /// Whether the copier walks into an excluded directory (an exception may bring back
    /// something below it).
    pub enters: &'a dyn Fn(&str) -> bool,
}

/// Where file contents come from: the files themselves (the real summary), or a stand-in per
/// file (its content digest from the stat cache), which gives a fingerprint that changes
/// exactly when the summary does, without reading any file.
pub enum Content<'a> {
    Read,
    Known(&'a dyn Fn(&str) -> Option<[u8; 32]>),
}

/// Host user and group names, as Go's `os/user` finds them, and the owner IDs podman sees:
/// rootless podman runs in a user namespace where the user's own files belong to 0.
pub struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    /// The user's own uid and gid when not root (rootless podman maps them to 0, and any other
    /// owner, unmapped, to the overflow ID 65534).
    rootless: Option<(u32, u32)>,
}

impl Owners {
    pub fn of_host() -> Owners {
        let read = |path: &str| -> HashMap<u32, String> {
            let mut out = HashMap::new();
            for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
                let f: Vec<&str> = line.split(':').collect();
                if let (Some(name), Some(Ok(id))) = (f.first(), f.get(2).map(|i| i.parse())) {
                    // The first line with an ID wins, as getpwuid's does.
                    out.entry(id).or_insert_with(|| name.to_string());
                }
            }
            out
        };
        let me = std::fs::metadata("/proc/self").ok();
        Owners {
            users: read("/etc/passwd"),
            groups: read("/etc/group"),
            rootless: me.filter(|m| m.uid() != 0).map(|m| (m.uid(), m.gid())),
        }
    }

    fn names(&self, uid: u32, gid: u32) -> (String, String) {
        let (uid, gid) = match self.rootless {
            None => (uid, gid),
            Some((u, g)) => (
                if uid == u { 0 } else { 65534 },
                if gid == g { 0 } else { 65534 },
            ),
        };
        (
            self.users.get(&uid).cloned().unwrap_or_default(),
            self.groups.get(&gid).cloned().unwrap_or_default(),
        )
    }
}

/// The summary (`file:hex`, `dir:hex`, `multi:hex`), or None when it cannot be computed
/// exactly here (a source that is not there, an entry that needs PAX, an unreadable file).
pub fn summary(c: &Copy, owners: &Owners, content: &Content) -> Option<String> {
    let mut parts: Vec<(&str, String)> = Vec::new();
    for src in c.sources {
        let items = glob(c.context, src)?;
        let single_file = c.sources.len() == 1
            && items.len() == 1
            && std::fs::metadata(&items[0]).is_ok_and(|m| m.is_file());
        let rename = c.dest_file.as_ref().filter(|_| single_file);
        for item in items {
            let rel = relative(c.context, &item)?;
            let md = std::fs::metadata(&item).ok()?;
            if rel != "." && (c.excluded)(&rel) && !(md.is_dir() && (c.enters)(&rel)) {
                continue;
            }
            let kind = if md.is_dir() { "dir" } else { "file" };
            let mut s = Stream::new(c, owners, content);
            s.item(&item, rename)?;
            parts.push((kind, s.finish()));
        }
    }
    match parts.as_slice() {
        [] => None,
        [(kind, hex)] => Some(format!("{kind}:{hex}")),
        _ => {
            let joined: Vec<String> = parts.iter().map(|(k, h)| format!("{k}:{h}")).collect();
            Some(format!(
                "multi:{}",
                hex(&Sha256::digest(joined.join(",").as_bytes()))
            ))
        }
    }
}

/// Go's `filepath.Glob` of one source under the context: the path itself when it has no
/// pattern characters, else the matches, sorted per directory level.
fn glob(context: &Path, src: &str) -> Option<Vec<PathBuf>> {
    let mut s = src.trim_start_matches('/');
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    if !s.contains(['*', '?', '[', '\\']) {
        let p = if s.is_empty() || s == "." {
            context.to_path_buf()
        } else {
            context.join(s)
        };
        return std::fs::symlink_metadata(&p).ok().map(|_| vec![p]);
    }
    let mut found = vec![context.to_path_buf()];
    for part in s.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        if !part.contains(['*', '?', '[', '\\']) {
            next.extend(
                found
                    .iter()
                    .map(|d| d.join(part))
                    .filter(|p| std::fs::symlink_metadata(p).is_ok()),
            );
        } else {
            let m = crate::config::go_path_glob(part)?;
            for dir in &found {
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<std::ffi::OsString> = rd
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .filter(|n| n.to_str().is_some_and(|n| m.is_match(n)))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            }
        }
        found = next;
    }
    Some(found)
}

fn relative(context: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(context).ok()?;
    let s = rel.to_str()?;
    Some(if s.is_empty() {
        ".".into()
    } else {
        s.to_string()
    })
}

/// One item's tar stream, hashed as buildah's digester hashes it.
struct Stream<'a> {
    c: &'a Copy<'a>,
    owners: &'a Owners,
    content: &'a Content<'a>,
    hash: Sha256,
    /// Hard links already written in this item: (device, inode) → name.
    links: HashMap<(u64, u64), String>,
}

impl<'a> Stream<'a> {
    fn new(c: &'a Copy<'a>, owners: &'a Owners, content: &'a Content<'a>) -> Stream<'a> {
        Stream {
            c,
            owners,
            content,
            hash: Sha256::new(),
            links: HashMap::new(),
        }
    }

    /// A source item: a file (its link followed, named as the link) or a directory's
    /// contents, walked in name order.
    fn item(&mut self, item: &Path, rename: Option<&String>) -> Option<()> {
        let name = item.file_name()?.to_str()?.to_string();
        let mut target = item.to_path_buf();
        let mut md = std::fs::symlink_metadata(&target).ok()?;
        let mut followed = 0;
        while md.file_type().is_symlink() {
            followed += 1;
            let link = std::fs::read_link(&target).ok()?;
            target = if link.is_absolute() {
                self.c.context.join(link.strip_prefix("/").ok()?)
            } else {
                target.parent()?.join(link)
            };
            md = std::fs::symlink_metadata(&target).ok()?;
            if followed > 16 {
                return None;
            }
        }
        if md.is_dir() {
            return self.walk(&target, "");
        }
        let rel = relative(self.c.context, &target)?;
        if (self.c.excluded)(&rel) {
            return Some(());
        }
        let name = rename.cloned().unwrap_or(name);
        self.entry(&target, &rel, &name, &md)
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Option<()> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .ok()?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .ok()?;
        names.sort();
        for n in names {
            let name = format!("{prefix}{}", n.to_str()?);
            let path = dir.join(&n);
            let md = std::fs::symlink_metadata(&path).ok()?;
            let rel = relative(self.c.context, &path)?;
            if (self.c.excluded)(&rel) {
                if md.is_dir() && (self.c.enters)(&rel) {
                    self.walk(&path, &format!("{name}/"))?;
                }
                continue;
            }
            if md.file_type().is_socket() {
                continue;
            }
            self.entry(&path, &rel, &name, &md)?;
            if md.is_dir() {
                self.walk(&path, &format!("{name}/"))?;
            }
        }
        Some(())
    }

    fn entry(&mut self, path: &Path, rel: &str, name: &str, md: &std::fs::Metadata) -> Option<()> {
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        let (uname, gname) = self.owners.names(md.uid(), md.gid());
        let mut h = Header {
            name: name.to_string(),
            mode: self.c.chmod.unwrap_or(md.mode() & 0o7777),
            uid: self.c.chown.0,
            gid: self.c.chown.1,
            size: 0,
            typeflag: b'0',
            linkname: String::new(),
            uname,
            gname,
        };
        let mut data = false;
        if ft.is_file() {
            let id = (md.dev(), md.ino());
            match self.links.get(&id) {
                Some(first) if md.nlink() > 1 => {
                    h.typeflag = b'1';
                    h.linkname = first.clone();
                }
                _ => {
                    if md.nlink() > 1 {
                        self.links.insert(id, name.to_string());
                    }
                    h.size = md.len();
                    data = true;
                }
            }
        } else if ft.is_dir() {
            h.typeflag = b'5';
        } else if ft.is_symlink() {
            h.typeflag = b'2';
            h.linkname = std::fs::read_link(path).ok()?.to_str()?.to_string();
        } else if ft.is_fifo() {
            h.typeflag = b'6';
        } else {
            // Devices need their numbers; they do not occur in build contexts.
            return None;
        }
        match self.content {
            Content::Read => self.hash.update(h.blocks()?),
            // The fingerprint needs only what the header is made from, not Go's packing of it
            // (which would cost as much as the walk, in the dev profile `cargo xtask` runs).
            Content::Known(_) => h.fingerprint(&mut self.hash),
        }
        if data {
            match self.content {
                Content::Read => {
                    let mut f = std::fs::File::open(path).ok()?;
                    // A file that changed size since it was stat'ed is not what buildah reads.
                    if std::io::copy(&mut f, &mut self.hash).ok()? != h.size {
                        return None;
                    }
                }
                Content::Known(digest) => self.hash.update(digest(rel)?),
            }
            if let Content::Read = self.content {
                let pad = (512 - (h.size % 512) as usize) % 512;
                self.hash.update(&[0u8; 512][..pad]);
            }
        }
        Some(())
    }

    fn finish(mut self) -> String {
        // The archive's end: two zero blocks.
        self.hash.update([0u8; 1024]);
        hex(&self.hash.finalize())
    }
}

/// A tar header as Go's writer packs it in the USTAR format.
struct Header {
    name: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    typeflag: u8,
    linkname: String,
    uname: String,
    gname: String,
}

impl Header {
    /// The header as Go's writer emits it: one USTAR block, or, when a name or owner does not
    /// fit USTAR, a PAX extended header (its records) and then the main block. None for what
    /// is not written here (huge sizes or IDs).
    fn blocks(&self) -> Option<Vec<u8>> {
        if self.size >= 1 << 33 || self.uid >= 1 << 21 || self.gid >= 1 << 21 {
            return None;
        }
        let fits = |s: &str, max: usize| is_ascii(s) && s.len() <= max;
        let split = (self.name.len() > 100)
            .then(|| split_ustar(&self.name))
            .flatten();
        let name_fits = fits(&self.name, 100) || split.is_some();
        if name_fits && fits(&self.linkname, 100) && fits(&self.uname, 32) && fits(&self.gname, 32)
        {
            let (prefix, name) = split.unwrap_or(("", &self.name));
            return Some(self.main(name, prefix).to_vec());
        }
        // Go records every field that does not fit as it is, sorted by key.
        let mut records: Vec<(&str, &str)> = Vec::new();
        for (key, value, max) in [
            ("gname", self.gname.as_str(), 32),
            ("linkpath", self.linkname.as_str(), 100),
            ("path", self.name.as_str(), 100),
            ("uname", self.uname.as_str(), 32),
        ] {
            if !fits(value, max) {
                records.push((key, value));
            }
        }
        let mut data = String::new();
        for (k, v) in records {
            data.push_str(&pax_record(k, v));
        }
        let (dir, file) = match self.name.rfind('/') {
            Some(i) => (&self.name[..=i], &self.name[i + 1..]),
            None => ("", self.name.as_str()),
        };
        let xname = path_join(dir, "PaxHeaders.0", file);
        let mut xname = to_ascii(&xname);
        xname.truncate(100);
        let xname = xname.trim_end_matches('/');
        let mut out = Vec::with_capacity(1536);
        let mut x = [0u8; 512];
        put_str(&mut x[0..100], xname);
        put_octal(&mut x[100..108], 0);
        put_octal(&mut x[108..116], 0);
        put_octal(&mut x[116..124], 0);
        put_octal(&mut x[124..136], data.len() as u64);
        put_octal(&mut x[136..148], 0);
        x[156] = b'x';
        x[257..263].copy_from_slice(b"ustar\0");
        x[263..265].copy_from_slice(b"00");
        checksum(&mut x);
        out.extend_from_slice(&x);
        out.extend_from_slice(data.as_bytes());
        out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
        // The main block holds what fits of each field, in ASCII; the records hold the rest.
        let main = Header {
            name: String::new(),
            linkname: to_ascii(&self.linkname).chars().take(100).collect(),
            uname: to_ascii(&self.uname).chars().take(32).collect(),
            gname: to_ascii(&self.gname).chars().take(32).collect(),
            ..*self
        };
        out.extend_from_slice(&main.main(&truncate_name(&to_ascii(&self.name)), ""));
        Some(out)
    }

    /// Every field, length-prefixed: what decides the header's bytes.
    fn fingerprint(&self, hash: &mut Sha256) {
        for text in [&self.name, &self.linkname, &self.uname, &self.gname] {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        hash.update(self.mode.to_le_bytes());
        hash.update(self.uid.to_le_bytes());
        hash.update(self.gid.to_le_bytes());
        hash.update(self.size.to_le_bytes());
        hash.update([self.typeflag]);
    }

    /// The main block (USTAR and PAX share its layout and magic).
    fn main(&self, name: &str, prefix: &str) -> [u8; 512] {
        let mut b = [0u8; 512];
        put_str(&mut b[0..100], name);
        put_octal(&mut b[100..108], u64::from(self.mode));
        put_octal(&mut b[108..116], u64::from(self.uid));
        put_octal(&mut b[116..124], u64::from(self.gid));
        put_octal(&mut b[124..136], self.size);
        // The zeroed ModTime is written as the Unix epoch.
        put_octal(&mut b[136..148], 0);
        b[156] = self.typeflag;
        put_str(&mut b[157..257], &self.linkname);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        put_str(&mut b[265..297], &self.uname);
        put_str(&mut b[297..329], &self.gname);
        put_octal(&mut b[329..337], 0);
        put_octal(&mut b[337..345], 0);
        put_str(&mut b[345..500], prefix);
        checksum(&mut b);
        b
    }
}

fn checksum(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    put_octal(&mut b[148..155], sum);
    b[155] = b' ';
}

/// Go's `isASCII`: no byte above 0x7f, and no NUL.
fn is_ascii(s: &str) -> bool {
    s.bytes().all(|b| b != 0 && b < 0x80)
}

/// Go's `toASCII`: the string without its non-ASCII characters (and NULs).
fn to_ascii(s: &str) -> String {
    s.chars().filter(|&c| c != '\0' && c.is_ascii()).collect()
}

/// What Go's `formatString` leaves of a long name in the 100-byte field: its first 100 bytes,
/// a trailing `/` there replaced by the end of the string.
fn truncate_name(name: &str) -> String {
    if name.len() <= 100 {
        return name.to_string();
    }
    let head = &name[..100];
    if head.ends_with('/') {
        head[..99].trim_end_matches('/').to_string()
    } else {
        head.to_string()
    }
}

/// Go's `path.Join(dir, "PaxHeaders.0", file)`.
fn path_join(dir: &str, middle: &str, file: &str) -> String {
    let parts: Vec<&str> = [dir.trim_end_matches('/'), middle, file]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("/")
}

/// Go's `formatPAXRecord`: `LEN key=value\n`, LEN counting itself.
fn pax_record(k: &str, v: &str) -> String {
    let base = k.len() + v.len() + 3;
    let mut size = base + base.to_string().len();
    if (base + size.to_string().len()) != size {
        size = base + size.to_string().len();
    }
    format!("{size} {k}={v}\n")
}

/// Go's `splitUSTARPath`: a long name as prefix and name at a `/`, when both fit.
fn split_ustar(name: &str) -> Option<(&str, &str)> {
    if !name.is_ascii() {
        return None;
    }
    let mut length = name.len();
    if length > 156 {
        length = 156;
    } else if name.as_bytes()[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].rfind('/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    if i == 0 || rest.len() > 100 || rest.is_empty() || prefix.len() > 155 {
        return None;
    }
    Some((prefix, rest))
}

/// Go's `formatString`: the bytes, NUL-terminated when shorter than the field.
fn put_str(field: &mut [u8], s: &str) {
    field[..s.len()].copy_from_slice(s.as_bytes());
    if s.len() < field.len() {
        field[s.len()] = 0;
    }
}

/// Go's `formatOctal`: zero-padded octal, leaving room for a NUL.
fn put_octal(field: &mut [u8], n: u64) {
    let s = format!("{n:o}");
    let width = field.len() - 1;
    let s = if s.len() < width {
        format!("{}{s}", "0".repeat(width - s.len()))
    } else {
        s
    };
    put_str(field, &s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_packed_as_go_packs_them() {
        let h = Header {
            name: "a.txt".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 6,
            typeflag: b'0',
            linkname: String::new(),
            uname: "root".into(),
            gname: "root".into(),
        };
        let b = h.blocks().unwrap();
        assert_eq!(&b[100..108], b"0000644\0");
        assert_eq!(&b[124..136], b"00000000006\0");
        assert_eq!(&b[136..148], b"00000000000\0");
        assert_eq!(&b[257..265], b"ustar\x0000");
        // The checksum: six octal digits, NUL, space.
        assert_eq!(b[154], 0);
        assert_eq!(b[155], b' ');
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(20));
        assert_eq!(split_ustar(&long), Some((&long[..120], &long[121..])));
        assert!(split_ustar(&"x".repeat(130)).is_none());
        assert_eq!(pax_record("path", "café.txt"), "18 path=café.txt\n");
        assert_eq!(
            pax_record("path", &"a".repeat(91)),
            "101 path=".to_string() + &"a".repeat(91) + "\n"
        );
        let pax = Header {
            name: "app/café.txt".into(),
            ..h
        };
        let blocks = pax.blocks().unwrap();
        assert_eq!(blocks.len(), 3 * 512);
        assert_eq!(&blocks[..22], b"app/PaxHeaders.0/caf.t");
    }

    /// The summaries `podman history` showed for these files on podman 4.3.1, as root: the
    /// oracle runs in `xtask/tests/cache.rs`; this keeps the packing honest without podman.
    #[test]
    fn a_file_and_a_directory_as_buildah_digests_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.txt"), "hello\n").unwrap();
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::create_dir_all(root.join("d/empty")).unwrap();
        std::fs::write(root.join("d/b.txt"), "world\n").unwrap();
        std::fs::write(root.join("d/sub/c.txt"), "x\n").unwrap();
        std::os::unix::fs::symlink("b.txt", root.join("d/link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &str, m: u32| {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        for (p, m) in [
            ("a.txt", 0o644),
            ("d", 0o755),
            ("d/sub", 0o755),
            ("d/empty", 0o755),
            ("d/b.txt", 0o644),
            ("d/sub/c.txt", 0o600),
        ] {
            set(p, m);
        }
        let owners = Owners {
            users: [(0, "root".to_string())].into(),
            groups: [(0, "root".to_string())].into(),
            rootless: None,
        };
        let none = |_: &str| false;
        let me = std::fs::metadata("/proc/self").unwrap();
        if me.uid() != 0 {
            // The expected digests carry the owner name `root`.
            return;
        }
        let copy = |sources: &[String], rename: Option<&str>, chown| {
            summary(
                &Copy {
                    context: root,
                    sources,
                    chown,
                    chmod: None,
                    dest_file: rename.map(String::from),
                    excluded: &none,
                    enters: &none,
                },
                &owners,
                &Content::Read,
            )
            .unwrap()
        };
        assert_eq!(
            copy(&["a.txt".into()], None, (0, 0)),
            "file:bbc289087bb09cf11e806d6c3338e32d7294054b8439eb951216e07b18929f49"
        );
        assert_eq!(
            copy(&["d".into()], None, (0, 0)),
            "dir:29b986138ad96df7cc564de32694f7fafc9744c689e28762d6bf0d0033964671"
        );
        assert_eq!(
            copy(&["a.txt".into(), "d".into()], None, (0, 0)),
            "multi:f5e14a9325409aedf91b1bd1a8599799893ec9983194b3d294a38059c68852e3"
        );
        assert_eq!(
            copy(&["a.txt".into()], Some("renamed.txt"), (0, 0)),
            "file:34dbc6cfa4c67342abca63fc8492d80b2e46ae7717824f2d1fc8cdfcfd656a64"
        );
        assert_eq!(
            copy(&["a.txt".into()], None, (1000, 1000)),
            "file:68f9c9141a25d35f9ddd328d269b76167507fc1790043ccd58a109700a147835"
        );
    }
}
