//! Reads an image from an OCI image directory (`podman save --format oci-dir`): its config,
//! history, and each layer's tar entries, streamed (gzip layers decompressed on the way); no
//! layer is extracted to disk.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use super::{Entry, Kind, Layer};

/// One image of an OCI directory.
pub struct OciImage {
    pub config: Value,
    pub layers: Vec<Layer>,
    /// Each layer's blob digest, as the manifest lists it.
    pub digests: Vec<String>,
}

fn blob(dir: &Path, digest: &str) -> Result<std::path::PathBuf> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| anyhow!("malformed digest `{digest}` in the OCI directory"))?;
    if hex.contains(['/', '.']) {
        return Err(anyhow!("malformed digest `{digest}` in the OCI directory"));
    }
    Ok(dir.join("blobs").join(algo).join(hex))
}

fn json(path: &Path) -> Result<Value> {
    let f = File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    serde_json::from_reader(BufReader::new(f))
        .with_context(|| format!("reading `{}`", path.display()))
}

/// The directory's only image (the first manifest of its index).
pub fn oci_dir(dir: &Path) -> Result<OciImage> {
    let index = json(&dir.join("index.json"))?;
    let mut manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("`{}` lists no image", dir.join("index.json").display()))?
        .to_string();
    let mut manifest = json(&blob(dir, &manifest_digest)?)?;
    // An index of platforms: the first one.
    if let Some(d) = manifest["manifests"][0]["digest"].as_str() {
        manifest_digest = d.to_string();
        manifest = json(&blob(dir, &manifest_digest)?)?;
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| anyhow!("manifest {manifest_digest} has no config"))?;
    let config = json(&blob(dir, config_digest)?)?;
    let mut layers = Vec::new();
    let mut digests = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let digest = l["digest"].as_str().unwrap_or_default().to_string();
        let media = l["mediaType"].as_str().unwrap_or_default();
        let path = blob(dir, &digest)?;
        let f = BufReader::with_capacity(
            1 << 20,
            File::open(&path).with_context(|| format!("opening layer {digest}"))?,
        );
        let layer = if media.ends_with("+gzip") || media.ends_with(".gzip") {
            entries(flate2::read::GzDecoder::new(f))
        } else if media.ends_with("+zstd") {
            return Err(anyhow!(
                "layer {digest} is zstd-compressed, which this tool does not read; save the image uncompressed (`podman save --format oci-dir`)"
            ));
        } else {
            entries(f)
        }
        .with_context(|| format!("reading layer {digest}"))?;
        layers.push(layer);
        digests.push(digest);
    }
    Ok(OciImage {
        config,
        layers,
        digests,
    })
}

/// The entries of one layer tar, with whiteouts recognised.
pub fn entries(r: impl Read) -> Result<Layer> {
    let mut archive = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in archive.entries()? {
        let e = e?;
        let header = e.header();
        let raw = e.path_bytes();
        let name = String::from_utf8_lossy(&raw);
        let path = absolute(&name);
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", &path));
        let kind = header.entry_type();
        let (path, kind) = if base == ".wh..wh..opq" {
            (slash_or(parent), Kind::Opaque)
        } else if let Some(deleted) = base.strip_prefix(".wh.") {
            (format!("{parent}/{deleted}"), Kind::Whiteout)
        } else if kind.is_dir() {
            (path.clone(), Kind::Dir)
        } else if kind.is_file() {
            (path.clone(), Kind::File)
        } else {
            (path.clone(), Kind::Other)
        };
        if path == "/" {
            continue;
        }
        let size = match kind {
            Kind::File | Kind::Other => header.size().unwrap_or(0),
            _ => 0,
        };
        out.push(Entry { path, size, kind });
    }
    Ok(Layer { entries: out })
}

fn slash_or(p: &str) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        p.to_string()
    }
}

/// `./usr/bin/`, `usr/bin` → `/usr/bin`.
fn absolute(name: &str) -> String {
    let trimmed = name.trim_start_matches("./").trim_matches('/');
    format!("/{trimmed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            } else {
                h.set_size(data.len() as u64);
            }
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn reads_entries_and_whiteouts() {
        let t = tar_of(&[
            ("./app/", b""),
            ("./app/a.txt", b"hello"),
            ("app/.wh.old", b""),
            ("cache/.wh..wh..opq", b""),
        ]);
        let l = entries(&t[..]).unwrap();
        let got: Vec<(&str, u64, Kind)> = l
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.size, e.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("/app", 0, Kind::Dir),
                ("/app/a.txt", 5, Kind::File),
                ("/app/old", 0, Kind::Whiteout),
                ("/cache", 0, Kind::Opaque),
            ]
        );
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &t).unwrap();
            e.finish().unwrap()
        };
        let again = entries(flate2::read::GzDecoder::new(&gz[..])).unwrap();
        assert_eq!(again.entries, l.entries);
    }
}
