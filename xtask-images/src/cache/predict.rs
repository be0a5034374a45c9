//! Which steps podman will take from its layer cache, and why the first that it won't is
//! rebuilt. Pure: the steps, what earlier builds recorded, and which images storage holds.

use serde::Serialize;

use super::state::{Record, State};
use super::steps::{FileLine, Input, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// An image with this key holds every tag: nothing to run.
    UpToDate,
    /// An image with this key exists; only tags are missing.
    Retag,
    Build,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicted {
    pub cached: bool,
    pub reason: Option<String>,
    /// Something true of a reused step that the user should know (a stale bind mount).
    pub note: Option<String>,
}

/// What the prediction needs besides the steps.
pub struct Known<'a> {
    pub state: &'a State,
    pub exists: &'a dyn Fn(&str) -> bool,
    /// Files of a remembered listing digest.
    pub listing: &'a dyn Fn(&str) -> Option<Vec<FileLine>>,
    /// Earlier builds of this image, newest first.
    pub records: &'a [Record],
}

/// The stand-in ID of a base this run will rebuild before the image built from it:
/// `rebuilt:NAME:KEY`, so the key changes exactly when the base's key does.
pub const REBUILT: &str = "rebuilt:";

/// Why a step whose base (or `--from` image) is another one misses.
fn base_changed(what: &str, image: &str, id: Option<&str>) -> String {
    match id.and_then(|i| i.strip_prefix(REBUILT)) {
        Some(rest) => format!(
            "{what} `{}` rebuilt",
            rest.split_once(':').map_or(rest, |(n, _)| n)
        ),
        None => format!("{what} `{image}` changed"),
    }
}

/// Predicts each step. Within a stage podman stops looking in its cache at the first miss, so
/// every step after it is rebuilt too. A step identical to one an earlier stage of the same
/// build makes (same parent, same inputs) finds that image.
pub fn predict(steps: &[Step], k: &Known, use_cache: bool) -> Vec<Predicted> {
    let mut out: Vec<Predicted> = Vec::with_capacity(steps.len());
    let mut miss_at: Option<usize> = None;
    let mut made: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, s) in steps.iter().enumerate() {
        if s.is_from() {
            miss_at = None;
            let (cached, reason) = match &s.input {
                Input::Base { image, id: None } if image != "scratch" => (
                    false,
                    Some(format!("base image `{image}` is not in local storage")),
                ),
                _ => (true, None),
            };
            if !cached {
                miss_at = Some(s.step);
            }
            out.push(Predicted {
                cached,
                reason,
                note: None,
            });
            continue;
        }
        let p = if let Some(n) = miss_at {
            Predicted {
                cached: false,
                reason: Some(format!("step {n} is rebuilt")),
                note: None,
            }
        } else if !use_cache {
            Predicted {
                cached: false,
                reason: Some("the layer cache is off (--no-cache or several platforms)".into()),
                note: None,
            }
        } else if made.contains(s.key.as_str()) {
            Predicted {
                cached: true,
                reason: None,
                note: None,
            }
        } else {
            match k.state.steps.get(&s.key) {
                Some(id) if (k.exists)(id) => Predicted {
                    cached: true,
                    reason: None,
                    note: stale_binds(s, k),
                },
                Some(id) => Predicted {
                    cached: false,
                    reason: Some(format!(
                        "image {} built for this step earlier is no longer in storage",
                        &id[..id.len().min(12)]
                    )),
                    note: None,
                },
                None => Predicted {
                    cached: false,
                    reason: Some(explain(steps, i, k)),
                    note: None,
                },
            }
        };
        if !p.cached {
            miss_at = Some(s.step);
        }
        made.insert(&s.key);
        out.push(p);
    }
    out
}

/// The image's action, from its last step's key.
pub fn action(
    steps: &[Step],
    k: &Known,
    tags: &[String],
    names: &dyn Fn(&str) -> Vec<String>,
) -> (Action, Option<String>) {
    let Some(last) = steps.last() else {
        return (Action::Build, None);
    };
    match k.state.steps.get(&last.key) {
        Some(id) if (k.exists)(id) => {
            let have = names(id);
            let all = tags.iter().all(|t| {
                have.iter()
                    .any(|n| n == t || n == &format!("localhost/{t}"))
            });
            (
                if all { Action::UpToDate } else { Action::Retag },
                Some(id.clone()),
            )
        }
        _ => (Action::Build, None),
    }
}

/// Why step `i` misses: what differs from the nearest earlier build of this image, that is the
/// newest one that shared the step before it, else the newest one.
fn explain(steps: &[Step], i: usize, k: &Known) -> String {
    let s = &steps[i];
    let parent = &steps[i - 1].key;
    let at = |r: &Record| {
        r.steps
            .iter()
            .position(|o| o.stage == s.stage && o.step == s.step)
    };
    let shared = k.records.iter().find_map(|r| {
        let j = r.steps.iter().position(|o| &o.key == parent)?;
        r.steps.get(j + 1).filter(|o| o.stage == s.stage).cloned()
    });
    let shares_parent = shared.is_some();
    let nearest = shared.or_else(|| {
        k.records
            .first()
            .and_then(|r| at(r).map(|j| r.steps[j].clone()))
    });
    let Some(old) = nearest else {
        return "not built before".into();
    };
    if let Some(why) = compare(&old, s, k) {
        return why;
    }
    if !shares_parent {
        // Same step, different parent: something before it changed that podman does not show
        // as a rebuilt step here (the stage's base).
        let from = steps[..i]
            .iter()
            .rev()
            .find(|o| o.is_from() && o.stage == s.stage);
        if let Some(Step {
            input: Input::Stage { stage },
            ..
        }) = from
        {
            return format!("stage `{stage}` was rebuilt");
        }
        if let Some(Step {
            input: Input::Base { image, id },
            ..
        }) = from
        {
            return base_changed("base image", image, id.as_deref());
        }
        return "an earlier step changed".into();
    }
    "not built before with these inputs".into()
}

/// For a reused `RUN --mount=type=bind`: the bound files that changed since the step was
/// built. Podman 4.3 reuses the step all the same, so its output is stale.
fn stale_binds(s: &Step, k: &Known) -> Option<String> {
    let Input::Run { binds: now, .. } = &s.input else {
        return None;
    };
    if now.is_empty() {
        return None;
    }
    let old = k
        .records
        .iter()
        .flat_map(|r| &r.steps)
        .find(|o| o.key == s.key)?;
    let Input::Run { binds: then, .. } = &old.input else {
        return None;
    };
    let changed: Vec<String> = now
        .iter()
        .filter(|(src, d)| then.get(*src).is_some_and(|t| t != *d))
        .map(|(src, _)| format!("`{src}`"))
        .collect();
    (!changed.is_empty()).then(|| {
        format!(
            "podman will reuse this step although {} changed since it was built (a bind mount is not part of podman's cache key): run `build --no-cache`, or COPY the file before this step",
            changed.join(", ")
        )
    })
}

/// How a secret build argument's value is recorded: this prefix and a keyed hash.
pub const SECRET_PREFIX: &str = "secret:";

/// A recorded argument value as a reason shows it.
fn shown(v: &str) -> &str {
    if v.starts_with(SECRET_PREFIX) {
        "(secret)"
    } else {
        v
    }
}

fn compare(old: &Step, new: &Step, k: &Known) -> Option<String> {
    match (&old.input, &new.input) {
        (Input::Arg { names: a }, Input::Arg { names: b }) if a != b => {
            return Some(format!(
                "build arguments with a value changed: [{}] → [{}]",
                a.join(", "),
                b.join(", ")
            ))
        }
        (Input::Arg { .. }, Input::Arg { .. }) => return None,
        (Input::Run { args: a, .. }, Input::Run { args: b, .. }) if a != b => {
            let mut parts = Vec::new();
            for key in a.keys().chain(b.keys().filter(|x| !a.contains_key(*x))) {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) if x != y && x.starts_with(SECRET_PREFIX) => {
                        parts.push(format!("build arg {key}: secret value changed"))
                    }
                    (Some(x), Some(y)) if x != y => {
                        parts.push(format!("build arg {key}: {x} → {y}"))
                    }
                    (Some(x), None) => parts.push(format!("build arg {key}: {} → unset", shown(x))),
                    (None, Some(y)) => parts.push(format!("build arg {key}: unset → {}", shown(y))),
                    _ => {}
                }
            }
            return Some(parts.join("; "));
        }
        (Input::Files { listing: a, .. }, Input::Files { listing: b, files }) if a != b => {
            if let Some(old_files) = (k.listing)(a) {
                let d = diff_files(&old_files, files);
                if !d.is_empty() {
                    return Some(d);
                }
            } else {
                return Some("the copied files changed".into());
            }
        }
        (Input::Base { id: a, image: ia }, Input::Base { id: b, image: ib })
            if a != b || ia != ib =>
        {
            return Some(base_changed("base image", ib, b.as_deref()))
        }
        (Input::FromStage { key: a, stage, .. }, Input::FromStage { key: b, .. }) if a != b => {
            return Some(format!("stage `{stage}` was rebuilt"))
        }
        (Input::FromImage { id: a, image, .. }, Input::FromImage { id: b, .. }) if a != b => {
            return Some(base_changed("image", image, b.as_deref()))
        }
        _ => {}
    }
    if old.instruction == new.instruction {
        return None;
    }
    let label = |i: &str| -> Option<(String, String)> {
        let (k, v) = i.strip_prefix("LABEL \"")?.split_once("\"=\"")?;
        Some((k.to_string(), v.strip_suffix('"')?.to_string()))
    };
    if let (Some((k, a)), Some((k2, b))) = (label(&old.instruction), label(&new.instruction)) {
        if k == k2 {
            return Some(format!("label {k}: {a} → {b}"));
        }
    }
    Some(format!(
        "instruction edited: `{}` → `{}`",
        old.instruction, new.instruction
    ))
}

/// `app/main.py: content changed; app/new.py: added` (the first few, then a count).
pub fn diff_files(old: &[FileLine], new: &[FileLine]) -> String {
    use std::collections::BTreeMap;
    let o: BTreeMap<&str, &FileLine> = old.iter().map(|f| (f.path.as_str(), f)).collect();
    let n: BTreeMap<&str, &FileLine> = new.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut changes = Vec::new();
    for (p, f) in &n {
        match o.get(p) {
            None => changes.push(format!("{p}: added")),
            Some(g) if g.digest != f.digest => changes.push(format!("{p}: content changed")),
            Some(g) if g.mode != f.mode => changes.push(format!(
                "{p}: mode {:o} → {:o}",
                g.mode & 0o7777,
                f.mode & 0o7777
            )),
            Some(g) if g.name != f.name => changes.push(format!("{p}: copied as {}", f.name)),
            _ => {}
        }
    }
    for p in o.keys().filter(|p| !n.contains_key(*p)) {
        changes.push(format!("{p}: removed"));
    }
    const SHOWN: usize = 5;
    let more = changes.len().saturating_sub(SHOWN);
    changes.truncate(SHOWN);
    let mut s = changes.join("; ");
    if more > 0 {
        s.push_str(&format!("; and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn step(n: usize, ins: &str, key: &str, input: Input) -> Step {
        Step {
            stage: 1,
            stages: 1,
            step: n,
            steps: 4,
            instruction: ins.into(),
            key: key.into(),
            input,
            history: Default::default(),
        }
    }

    fn file(path: &str, digest: &str, mode: u32) -> FileLine {
        let mut d = [0u8; 32];
        d[..digest.len()].copy_from_slice(digest.as_bytes());
        FileLine {
            path: path.into(),
            name: path.into(),
            mode,
            digest: d,
        }
    }

    fn scratch() -> Input {
        Input::Base {
            image: "scratch".into(),
            id: None,
        }
    }

    #[test]
    fn first_miss_is_explained_and_the_rest_follow_it() {
        let old_files = vec![
            file("app/a.py", "1", 0o100644),
            file("app/b.py", "2", 0o100644),
        ];
        let new_files = vec![
            file("app/a.py", "9", 0o100644),
            file("app/b.py", "2", 0o100755),
            file("app/c.py", "3", 0o100644),
        ];
        let old = vec![
            step(1, "FROM scratch", "k1", scratch()),
            step(
                2,
                "COPY app /app",
                "k2",
                Input::Files {
                    listing: "L1".into(),
                    files: vec![],
                },
            ),
            step(
                3,
                "RUN x",
                "k3",
                Input::Run {
                    args: BTreeMap::from([("M".into(), "a".into())]),
                    binds: BTreeMap::new(),
                },
            ),
            step(4, "CMD x", "k4", Input::Text),
        ];
        let mut state = State::default();
        for (k, id) in [("k1", "i1"), ("k2", "i2"), ("k3", "i3"), ("k4", "i4")] {
            state.steps.insert(k.into(), id.into());
        }
        let records = vec![Record {
            at: 0,
            steps: old.clone(),
        }];
        let exists = |id: &str| id != "gone";
        let listing = |d: &str| (d == "L1").then(|| old_files.clone());
        let known = Known {
            state: &state,
            exists: &exists,
            listing: &listing,
            records: &records,
        };

        let same = predict(&old, &known, true);
        assert!(same.iter().all(|p| p.cached));
        let tags = ["app:1".to_string()];
        let names = |_: &str| vec!["localhost/app:1".to_string()];
        assert_eq!(action(&old, &known, &tags, &names).0, Action::UpToDate);
        let none = |_: &str| Vec::new();
        assert_eq!(action(&old, &known, &tags, &none).0, Action::Retag);

        let mut new = old.clone();
        new[1] = step(
            2,
            "COPY app /app",
            "k2b",
            Input::Files {
                listing: "L2".into(),
                files: new_files,
            },
        );
        new[2].key = "k3b".into();
        new[3].key = "k4b".into();
        let p = predict(&new, &known, true);
        assert_eq!(
            p.iter().map(|p| p.cached).collect::<Vec<_>>(),
            [true, false, false, false]
        );
        assert_eq!(
            p[1].reason.as_deref(),
            Some("app/a.py: content changed; app/b.py: mode 644 → 755; app/c.py: added")
        );
        assert_eq!(p[2].reason.as_deref(), Some("step 2 is rebuilt"));
        assert_eq!(action(&new, &known, &tags, &names).0, Action::Build);

        let mut argd = old.clone();
        argd[2] = step(
            3,
            "RUN x",
            "k3c",
            Input::Run {
                args: BTreeMap::from([("M".into(), "b".into())]),
                binds: BTreeMap::new(),
            },
        );
        argd[3].key = "k4c".into();
        let p = predict(&argd, &known, true);
        assert_eq!(p[2].reason.as_deref(), Some("build arg M: a → b"));

        let mut edited = old.clone();
        edited[3] = step(4, "CMD y", "k4d", Input::Text);
        let p = predict(&edited, &known, true);
        assert_eq!(
            p[3].reason.as_deref(),
            Some("instruction edited: `CMD x` → `CMD y`")
        );

        let mut relabeled = old.clone();
        relabeled[3] = step(4, "LABEL \"version\"=\"1.1\"", "k4e", Input::Text);
        let mut before = old.clone();
        before[3] = step(4, "LABEL \"version\"=\"1.0\"", "k4", Input::Text);
        let records2 = vec![Record {
            at: 0,
            steps: before,
        }];
        let known_l = Known {
            records: &records2,
            ..known
        };
        let p = predict(&relabeled, &known_l, true);
        assert_eq!(p[3].reason.as_deref(), Some("label version: 1.0 → 1.1"));

        let mut st2 = State {
            steps: state.steps.clone(),
            ..Default::default()
        };
        st2.steps.insert("k2".into(), "gone".into());
        let known2 = Known {
            state: &st2,
            ..known
        };
        let p = predict(&old, &known2, true);
        assert!(p[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("no longer in storage"));
        assert!(predict(&old, &known, false)
            .iter()
            .skip(1)
            .all(|p| !p.cached));
    }

    #[test]
    fn reverting_finds_the_older_chain() {
        // Two builds: M=a then M=b. Going back to a finds a's keys still remembered.
        let mut state = State::default();
        state.steps.insert("ka".into(), "ia".into());
        state.steps.insert("kb".into(), "ib".into());
        let back = vec![
            step(1, "FROM scratch", "k1", scratch()),
            step(
                2,
                "RUN x",
                "ka",
                Input::Run {
                    args: BTreeMap::new(),
                    binds: BTreeMap::new(),
                },
            ),
        ];
        let exists = |_: &str| true;
        let listing = |_: &str| None;
        let known = Known {
            state: &state,
            exists: &exists,
            listing: &listing,
            records: &[],
        };
        assert!(predict(&back, &known, true)[1].cached);
    }

    #[test]
    fn file_diffs_are_short() {
        let old: Vec<FileLine> = (0..8).map(|i| file(&format!("f{i}"), "x", 0o644)).collect();
        let d = diff_files(&old, &[]);
        assert_eq!(
            d,
            "f0: removed; f1: removed; f2: removed; f3: removed; f4: removed; and 3 more"
        );
    }
}
