//! What an image's layers hold and waste, with dive's figures: per path, `cumulative` (the sizes
//! of all its occurrences across layers; a whiteout counts the size of what it deletes below)
//! and `min` (its smallest occurrence); efficiency `Σ min / Σ cumulative` over every path,
//! wasted bytes `Σ cumulative` over the paths found in two layers or more. Pure: the layers'
//! tar entries come in, figures go out (`read` streams them from an OCI directory).

pub mod read;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One tar entry of a layer, as its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute, without a trailing `/`: `/var/lib/apt/lists/x`.
    pub path: String,
    /// The header's size (0 for directories, links and whiteouts).
    pub size: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symlinks, hard links, devices: present, sized as the header says.
    Other,
    /// `.wh.NAME`: `path` is the deleted path.
    Whiteout,
    /// `.wh..wh..opq`: `path` is the directory whose earlier contents are hidden.
    Opaque,
}

/// One layer's entries, in tar order.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    /// Σ of the header sizes of the entries it adds.
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| !matches!(e.kind, Kind::Whiteout | Kind::Opaque))
            .map(|e| e.size)
            .sum()
    }

    /// The `n` largest files it adds, largest first.
    pub fn largest(&self, n: usize) -> Vec<(String, u64)> {
        let mut files: Vec<(String, u64)> = self
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| (e.path.clone(), e.size))
            .collect();
        files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        files.truncate(n);
        files
    }
}

/// A path found in two layers or more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Waste {
    pub path: String,
    /// Its cumulative size: what it costs across the layers.
    pub bytes: u64,
    /// The layers (0-based) it occurs in, a whiteout's included.
    pub layers: Vec<usize>,
    /// Whether its last occurrence deletes it.
    #[serde(skip)]
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Efficiency {
    /// `Σ min / Σ cumulative`; 1.0 for an image of no bytes.
    pub efficiency: f64,
    pub wasted_bytes: u64,
    /// Largest first, then by path.
    pub wasted: Vec<Waste>,
}

#[derive(Default)]
struct PathData {
    cumulative: u64,
    min: Option<u64>,
    layers: Vec<usize>,
    deleted: bool,
}

/// dive's efficiency over the layers, bottom first. Only a layer's leaves count as occurrences
/// (an entry no other entry of the same layer is below): a directory listed because a file was
/// added in it is not an occurrence of the directory.
pub fn efficiency(layers: &[Layer]) -> Efficiency {
    // The image as the layers so far make it: path → size of every leaf present.
    let mut stacked: BTreeMap<String, u64> = BTreeMap::new();
    let mut paths: BTreeMap<String, PathData> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let listed: BTreeSet<&str> = layer.entries.iter().map(|e| e.path.as_str()).collect();
        let has_child = |p: &str| {
            let prefix = format!("{}/", p.trim_end_matches('/'));
            listed
                .range::<str, _>((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded))
                .next()
                .is_some_and(|n| n.starts_with(&prefix))
        };
        for e in &layer.entries {
            let size = match e.kind {
                Kind::Opaque => continue,
                Kind::Whiteout => below(&stacked, &e.path),
                _ if has_child(&e.path) => continue,
                _ => e.size,
            };
            let d = paths.entry(e.path.clone()).or_default();
            d.cumulative += size;
            d.min = Some(d.min.map_or(size, |m| m.min(size)));
            d.layers.push(i);
            d.deleted = e.kind == Kind::Whiteout;
        }
        // Then the layer is applied: deletions first, as the engine does.
        for e in &layer.entries {
            match e.kind {
                Kind::Whiteout => remove_below(&mut stacked, &e.path, true),
                Kind::Opaque => remove_below(&mut stacked, &e.path, false),
                _ => {}
            }
        }
        for e in &layer.entries {
            if !matches!(e.kind, Kind::Whiteout | Kind::Opaque) {
                stacked.insert(e.path.clone(), e.size);
            }
        }
    }
    let (mut min_sum, mut cum_sum) = (0u64, 0u64);
    let mut wasted: Vec<Waste> = Vec::new();
    for (path, d) in paths {
        min_sum += d.min.unwrap_or(0);
        cum_sum += d.cumulative;
        if d.layers.len() >= 2 && d.cumulative > 0 {
            wasted.push(Waste {
                path,
                bytes: d.cumulative,
                layers: d.layers,
                deleted: d.deleted,
            });
        }
    }
    wasted.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    Efficiency {
        efficiency: if cum_sum == 0 {
            1.0
        } else {
            min_sum as f64 / cum_sum as f64
        },
        wasted_bytes: wasted.iter().map(|w| w.bytes).sum(),
        wasted,
    }
}

/// The size of `path` in the image so far: the file, or everything below the directory.
fn below(stacked: &BTreeMap<String, u64>, path: &str) -> u64 {
    let prefix = format!("{path}/");
    stacked.get(path).copied().unwrap_or(0)
        + stacked
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(_, s)| s)
            .sum::<u64>()
}

fn remove_below(stacked: &mut BTreeMap<String, u64>, path: &str, itself: bool) {
    let prefix = format!("{path}/");
    let doomed: Vec<String> = stacked
        .range(prefix.clone()..)
        .take_while(|(p, _)| p.starts_with(&prefix))
        .map(|(p, _)| p.clone())
        .collect();
    for p in doomed {
        stacked.remove(&p);
    }
    if itself {
        stacked.remove(path);
    }
}

/// A package manager's cache a layer ships: every file under one of the known cache
/// directories, summed per directory and layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    pub path: String,
    pub bytes: u64,
    pub layer: usize,
}

/// The caches the layers ship (files under the known cache directories), largest first.
pub fn caches(layers: &[Layer]) -> Vec<Cache> {
    let mut out: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    for (i, l) in layers.iter().enumerate() {
        for e in l.entries.iter().filter(|e| e.kind == Kind::File) {
            if let Some((dir, _)) = CACHES.iter().find(|(d, _)| e.path.starts_with(d)) {
                *out.entry((i, dir)).or_default() += e.size;
            }
        }
    }
    let mut v: Vec<Cache> = out
        .into_iter()
        .filter(|(_, b)| *b > 0)
        .map(|((layer, dir), bytes)| Cache {
            path: dir.trim_end_matches('/').to_string(),
            bytes,
            layer,
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.layer.cmp(&b.layer)));
    v
}

/// A known cause of waste, with what to change.
pub fn hint(path: &str, deleted: bool) -> Option<&'static str> {
    if let Some((_, h)) = CACHES.iter().find(|(p, _)| path.starts_with(p)) {
        return Some(h);
    }
    deleted.then_some(
        "added in one layer and deleted in a later one, so it is still shipped: delete it in the RUN that makes it, or make it in an earlier stage",
    )
}

const CACHES: [(&str, &str); 6] = [
    (
        "/var/lib/apt/lists/",
        "apt lists left in a layer: end the `apt-get install` RUN with `&& rm -rf /var/lib/apt/lists/*`",
    ),
    (
        "/var/cache/apt/",
        "apt's package cache left in a layer: `apt-get clean` in the same RUN",
    ),
    (
        "/root/.cache/pip/",
        "pip's cache left in a layer: `pip install --no-cache-dir`",
    ),
    (
        "/var/cache/apk/",
        "apk's cache left in a layer: `apk add --no-cache`",
    ),
    (
        "/root/.npm/",
        "npm's cache left in a layer: `npm ci && npm cache clean --force` in one RUN",
    ),
    (
        "/usr/lib/gcc/",
        "a compiler in the final image: build in an earlier stage and COPY --from it",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            size,
            kind: Kind::File,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 0,
            kind: Kind::Dir,
        }
    }

    fn whiteout(path: &str) -> Entry {
        Entry {
            path: path.into(),
            size: 0,
            kind: Kind::Whiteout,
        }
    }

    fn layer(entries: Vec<Entry>) -> Layer {
        Layer { entries }
    }

    #[test]
    fn dives_figures_for_added_deleted_and_overwritten_files() {
        let layers = [
            layer(vec![
                dir("/app"),
                file("/app/a", 100),
                file("/app/keep", 50),
            ]),
            // Overwrites /app/a with a smaller copy; adds a big file and a cache directory.
            layer(vec![
                dir("/app"),
                file("/app/a", 40),
                file("/big", 5000),
                dir("/cache"),
                file("/cache/x", 10),
                file("/cache/y", 20),
            ]),
            // Deletes the big file and the cache directory.
            layer(vec![whiteout("/big"), whiteout("/cache")]),
        ];
        let e = efficiency(&layers);
        // /app/a: 100 + 40, min 40; /big: 5000 + 5000 (the whiteout), min 5000;
        // /cache: a leaf only as a whiteout (30); /app/keep 50; /cache/x 10; /cache/y 20.
        let cumulative = 140 + 10_000 + 30 + 50 + 10 + 20;
        let min = 40 + 5000 + 30 + 50 + 10 + 20;
        assert_eq!(e.efficiency, min as f64 / cumulative as f64);
        assert_eq!(e.wasted_bytes, 10_000 + 140);
        let paths: Vec<(&str, u64, &[usize])> = e
            .wasted
            .iter()
            .map(|w| (w.path.as_str(), w.bytes, w.layers.as_slice()))
            .collect();
        assert_eq!(
            paths,
            [("/big", 10_000, &[1, 2][..]), ("/app/a", 140, &[0, 1][..])]
        );
        assert!(e.wasted[0].deleted);
        assert_eq!(layers[1].size(), 5070);
        assert_eq!(layers[1].largest(1), [("/big".to_string(), 5000)]);
    }

    #[test]
    fn a_clean_image_wastes_nothing() {
        let layers = [
            layer(vec![dir("/usr"), file("/usr/bin/python3", 1000)]),
            layer(vec![dir("/app"), file("/app/main.py", 10)]),
        ];
        let e = efficiency(&layers);
        assert_eq!(e.efficiency, 1.0);
        assert_eq!(e.wasted_bytes, 0);
        assert!(e.wasted.is_empty());
    }

    #[test]
    fn hints_name_the_usual_culprits() {
        assert!(hint("/var/lib/apt/lists/deb.debian.org_dists", false)
            .unwrap()
            .contains("rm -rf /var/lib/apt/lists"));
        assert!(hint("/tmp/big.bin", true)
            .unwrap()
            .contains("still shipped"));
        assert_eq!(hint("/app/a", false), None);
    }
}
