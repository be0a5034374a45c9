//! Layer reuse as podman decides it from its whole store, whoever built the images there:
//! another checkout, another branch's CI job on the same runner, a plain `podman build`.
//!
//! Buildah 1.28 (`imagebuildah/stage_executor.go`, `intermediateImageExists`) reuses, for a
//! step, the first image in its store that sits on the current layer (for a step that adds a
//! layer: whose top layer's parent is the current top layer), whose manifest format is the
//! build's, whose history is the current image's plus exactly one entry, with the same diff
//! IDs, and whose last entry's `created_by` is the line this step would write. This replays
//! that search over the store's own files; the lines come from [`History`], the content
//! summaries of `COPY` from [`super::summary`].

use std::collections::HashMap;

use super::predict::Predicted;
use super::steps::{History, Input, Step};
use super::storage::{ImageConfig, Images};

/// Where a stage stands: the image the next step builds on.
struct At {
    id: String,
    top: String,
    config: ImageConfig,
}

/// What the replay needs besides the steps.
pub struct Store<'a> {
    pub images: &'a Images,
    /// The build writes Docker's format (`--format docker`).
    pub docker: bool,
    /// The content summary of a `COPY`/`ADD` (its [`History::Copy`]), given the working
    /// directory the step runs in; None when it cannot be computed here.
    pub summary: &'a dyn Fn(&History, &str) -> Option<String>,
    /// Per step, the image the tool's own records say podman reuses: taken when it qualifies
    /// as a candidate, without computing the step's line (a warm plan reads no file for it).
    pub recorded: &'a [Option<String>],
}

/// For each step, the ID of the image podman will reuse for it; None where podman builds it,
/// and from the first step whose line cannot be predicted here on (then the tool's own
/// records decide).
pub fn reuse(steps: &[Step], store: &Store) -> Vec<Option<String>> {
    let parents = store.images.layer_parents();
    let mut configs: HashMap<String, Option<ImageConfig>> = HashMap::new();
    let mut config = |id: &str| -> Option<ImageConfig> {
        configs
            .entry(id.to_string())
            .or_insert_with(|| store.images.config(id))
            .clone()
    };
    let mut out: Vec<Option<String>> = vec![None; steps.len()];
    // Per stage (0-based), the image its last step reused, when every step was reused.
    let mut finals: HashMap<usize, String> = HashMap::new();
    let mut at: Option<At> = None;
    for (i, s) in steps.iter().enumerate() {
        if s.is_from() {
            at = match (&s.input, &s.history) {
                (Input::Base { image, .. }, _) if image == "scratch" => Some(At {
                    id: String::new(),
                    top: String::new(),
                    config: ImageConfig::default(),
                }),
                (Input::Base { id: Some(id), .. }, _) => start(store.images, id, &mut config),
                (Input::Stage { .. }, History::From { stage: Some(j), .. }) => finals
                    .get(j)
                    .and_then(|id| start(store.images, id, &mut config)),
                _ => None,
            };
            if let Some(a) = &at {
                out[i] = Some(a.id.clone()).filter(|id| !id.is_empty());
            }
        } else if let Some(a) = &at {
            let adds_layer = ["RUN", "COPY", "ADD"]
                .iter()
                .any(|k| s.instruction.split(' ').next() == Some(*k));
            let recorded = store.recorded.get(i).cloned().flatten().and_then(|id| {
                let top = store.images.top_layer(&id)?;
                candidate(store, &parents, a, &id, top, None, adds_layer, &mut config)
            });
            if let Some(hit) = recorded {
                out[i] = Some(hit.id.clone());
                at = Some(hit);
                continue_stage(&mut finals, &mut at, steps, i);
                continue;
            }
            let line = match &s.history {
                History::Line(l) => Some(l.clone()),
                History::Run { args, command } => Some(run_line(args, command)),
                h @ History::Copy { .. } => {
                    (store.summary)(h, &a.config.working_dir).map(|summary| copy_line(h, &summary))
                }
                _ => None,
            };
            at = line.and_then(|line| {
                find(store, &parents, a, &line, adds_layer, &mut config).inspect(|hit| {
                    out[i] = Some(hit.id.clone());
                })
            });
        }
        continue_stage(&mut finals, &mut at, steps, i);
    }
    out
}

/// At a stage's last step, keeps the image it ends on for the stages built from it.
fn continue_stage(
    finals: &mut HashMap<usize, String>,
    at: &mut Option<At>,
    steps: &[Step],
    i: usize,
) {
    let s = &steps[i];
    if steps.get(i + 1).is_none_or(|n| n.stage != s.stage) {
        if let Some(a) = at.take() {
            finals.insert(s.stage - 1, a.id);
        }
    }
}

/// The layer a candidate image must sit on: its top layer's parent for a step that adds a
/// layer, else its top layer (an image without layers sits on none).
fn parent_of<'p>(parents: &'p HashMap<String, String>, top: &'p str, adds_layer: bool) -> &'p str {
    if top.is_empty() {
        ""
    } else if adds_layer {
        parents.get(top).map_or("", String::as_str)
    } else {
        top
    }
}

fn start(
    images: &Images,
    id: &str,
    config: &mut impl FnMut(&str) -> Option<ImageConfig>,
) -> Option<At> {
    Some(At {
        id: id.to_string(),
        top: images.top_layer(id)?.to_string(),
        config: config(id)?,
    })
}

/// The first image in store order that buildah accepts for this step.
fn find(
    store: &Store,
    parents: &HashMap<String, String>,
    at: &At,
    line: &str,
    adds_layer: bool,
    config: &mut impl FnMut(&str) -> Option<ImageConfig>,
) -> Option<At> {
    store.images.order.iter().find_map(|(id, top)| {
        candidate(store, parents, at, id, top, Some(line), adds_layer, config)
    })
}

/// Image `id` (top layer `top`) as buildah judges it for this step: it sits on the current
/// layer, is in the build's format, and extends the current history by one entry whose line
/// is `line` (None: whatever line it has, for an image the records already tie to the step).
#[allow(clippy::too_many_arguments)]
fn candidate(
    store: &Store,
    parents: &HashMap<String, String>,
    at: &At,
    id: &str,
    top: &str,
    line: Option<&str>,
    adds_layer: bool,
    config: &mut impl FnMut(&str) -> Option<ImageConfig>,
) -> Option<At> {
    // An image without layers cannot be a step that adds one: skip it unread.
    if (adds_layer && top.is_empty()) || parent_of(parents, top, adds_layer) != at.top {
        return None;
    }
    let c = config(id)?;
    let ok = c.docker == store.docker
        && match line {
            Some(l) => accepts(&at.config, &c, l, adds_layer),
            None => c
                .history
                .last()
                .is_some_and(|h| accepts(&at.config, &c, &h.created_by, adds_layer)),
        };
    ok.then(|| At {
        id: id.to_string(),
        top: top.to_string(),
        config: c,
    })
}

/// buildah's `historyAndDiffIDsMatch`.
fn accepts(base: &ImageConfig, c: &ImageConfig, line: &str, adds_layer: bool) -> bool {
    let n = base.history.len();
    if c.history.len() != n + 1 || c.history[..n] != base.history[..] {
        return false;
    }
    // The base's own layers must be those its history adds.
    if base.history.iter().filter(|h| !h.empty_layer).count() != base.diff_ids.len() {
        return false;
    }
    let layers = base.diff_ids.len() + usize::from(adds_layer);
    c.diff_ids.len() == layers
        && c.diff_ids[..base.diff_ids.len()] == base.diff_ids[..]
        && c.history[n].created_by == line
}

/// Adds what the store shows to the prediction from the tool's own records: a step podman
/// will reuse an image for that the records do not know of is cached ("layer built
/// elsewhere"); the steps after the first miss say it is the one rebuilt.
pub fn merge(steps: &[Step], predicted: &mut [Predicted], reused: &[Option<String>]) {
    let mut first_miss: Option<usize> = None;
    for ((s, p), hit) in steps.iter().zip(predicted.iter_mut()).zip(reused) {
        if s.is_from() {
            first_miss = (!p.cached).then_some(s.step);
            continue;
        }
        if let (false, None, Some(id)) = (p.cached, first_miss, hit) {
            p.cached = true;
            p.reason = None;
            p.note = Some(format!(
                "layer built elsewhere: image {}",
                &id[..id.len().min(12)]
            ));
        }
        if p.cached {
            continue;
        }
        match first_miss {
            Some(n) => p.reason = Some(format!("step {n} is rebuilt")),
            None => {
                first_miss = Some(s.step);
                if p.reason
                    .as_deref()
                    .is_some_and(|r| r.ends_with(" is rebuilt"))
                {
                    p.reason =
                        Some("no image in storage adds this step to the image it builds on".into());
                }
            }
        }
    }
}

/// `RUN`'s line: `|N K=V … /bin/sh -c COMMAND`, the pairs sorted as strings, N counting the
/// words as buildah does (a value with a space counts twice).
pub fn run_line(args: &[(String, String)], command: &str) -> String {
    let mut pairs: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() {
        return format!("/bin/sh -c {command}");
    }
    let joined = pairs.join(" ");
    format!(
        "|{} {joined} /bin/sh -c {command}",
        joined.split(' ').count()
    )
}

fn copy_line(h: &History, summary: &str) -> String {
    match h {
        History::Copy {
            keyword, written, ..
        } => format!("/bin/sh -c #(nop) {keyword} {summary} in {written} "),
        _ => String::new(),
    }
}

/// A history entry as [`accepts`] compares it (for tests).
#[cfg(test)]
fn entry(created_by: &str, empty: bool) -> super::storage::HistoryEntry {
    super::storage::HistoryEntry {
        created: Some("2026-01-01T00:00:00Z".into()),
        created_by: created_by.into(),
        empty_layer: empty,
        ..super::storage::HistoryEntry::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines_are_written_as_buildah_writes_them() {
        assert_eq!(run_line(&[], "echo hi"), "/bin/sh -c echo hi");
        let args = vec![
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "x y".to_string()),
        ];
        assert_eq!(run_line(&args, "make"), "|3 A=x y B=2 /bin/sh -c make");
    }

    #[test]
    fn a_candidate_must_extend_the_history_by_exactly_this_step() {
        let base = ImageConfig {
            history: vec![entry("/bin/sh -c #(nop) ENV A=1", true)],
            ..ImageConfig::default()
        };
        let mut child = base.clone();
        child
            .history
            .push(entry("/bin/sh -c #(nop) COPY file:ab in /x ", false));
        child.diff_ids.push("sha256:1".into());
        assert!(accepts(
            &base,
            &child,
            "/bin/sh -c #(nop) COPY file:ab in /x ",
            true
        ));
        assert!(!accepts(
            &base,
            &child,
            "/bin/sh -c #(nop) COPY file:cd in /x ",
            true
        ));
        assert!(!accepts(
            &base,
            &child,
            "/bin/sh -c #(nop) COPY file:ab in /x ",
            false
        ));
        let mut other = child.clone();
        other.history[0].created = Some("2026-01-02T00:00:00Z".into());
        assert!(!accepts(
            &base,
            &other,
            "/bin/sh -c #(nop) COPY file:ab in /x ",
            true
        ));
    }
}
