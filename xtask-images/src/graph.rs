//! Images that build from one another: which of the project's `[[image]]`s a Dockerfile names
//! as a base, the order builds run in, and what `--image` pulls in.
//!
//! A Dockerfile names another image of the project by its bare name or `localhost/NAME`, with
//! any tag (`FROM pybase`, `FROM localhost/pybase:latest`, `COPY --from=pybase …`). The build
//! then gets that image as this run built it (`--build-context REF=container-image://…`), not
//! whatever the tag happens to point at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::Image;
use crate::dockerfile::{self, arg_value, expand, Stages};
use crate::input_error;

/// One reference to another image of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The image it names.
    pub image: String,
    /// As the Dockerfile writes it, build arguments expanded: the name podman looks up.
    pub reference: String,
    pub line: usize,
}

/// An image as this run builds it.
#[derive(Debug)]
pub struct Node<'a> {
    pub image: &'a Image,
    /// The Dockerfile the build uses.
    pub dockerfile: PathBuf,
    /// `--dev` and the image has a dev Dockerfile (an image needed only as a base of dev
    /// builds is built from its production Dockerfile).
    pub dev: bool,
    /// Another selected image builds from this one.
    pub is_base: bool,
    pub deps: Vec<Dep>,
}

/// The image a reference names, if it is one of `names`: `NAME` or `localhost/NAME`, with any
/// tag or digest. Anything with another registry or a namespace is someone else's image.
pub fn named<'a>(reference: &str, names: &[&'a str]) -> Option<&'a str> {
    let r = reference.strip_prefix("localhost/").unwrap_or(reference);
    let r = r.split('@').next().unwrap_or(r);
    let repo = r.split_once(':').map_or(r, |(repo, _)| repo);
    names.iter().copied().find(|n| *n == repo)
}

/// Every image reference of the stages a build runs that is not a stage: `FROM`, `COPY --from`,
/// `RUN --mount=from=`, with `ARG`s expanded as the engine does, and its line.
pub fn references(
    df: &Stages,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Vec<(usize, String)> {
    let mut heading: BTreeMap<String, String> = BTreeMap::new();
    for ins in &df.global_args {
        for a in &ins.args {
            if let Some((k, v)) = arg_value(build_args, a, &heading, &BTreeMap::new()) {
                heading.insert(k, v);
            }
        }
    }
    let Ok(stages) = df.up_to(target) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (si, st) in stages.iter().enumerate() {
        let mut refs = vec![(st.from.line, expand(&st.base, &heading))];
        for ins in &st.body {
            for (flag, value) in &ins.flags {
                match flag.as_str() {
                    "from" => refs.push((ins.line, expand(value, &heading))),
                    "mount" => refs.extend(
                        value
                            .split(',')
                            .filter_map(|kv| kv.strip_prefix("from="))
                            .map(|v| (ins.line, expand(v, &heading))),
                    ),
                    _ => {}
                }
            }
        }
        out.extend(
            refs.into_iter()
                .filter(|(_, r)| r != "scratch" && df.stage_index(si, r).is_none()),
        );
    }
    out
}

/// The images `image`'s Dockerfile builds from. A Dockerfile that can't be read or parsed has
/// none here: the build reports it with its line.
fn deps_of(
    root: &Path,
    image: &Image,
    dockerfile: &Path,
    names: &[&str],
    cli_args: &BTreeMap<String, String>,
) -> Vec<Dep> {
    let Ok(text) = dockerfile::read_text(&root.join(dockerfile)) else {
        return Vec::new();
    };
    let Ok(df) = dockerfile::parse(&text).and_then(dockerfile::stages) else {
        return Vec::new();
    };
    let mut args = image.build_args.clone();
    args.extend(cli_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut deps: Vec<Dep> = Vec::new();
    for (line, reference) in references(&df, image.target.as_deref(), &args) {
        if let Some(n) = named(&reference, names) {
            if !deps.iter().any(|d| d.reference == reference) {
                deps.push(Dep {
                    image: n.to_string(),
                    reference,
                    line,
                });
            }
        }
    }
    deps
}

/// The images a command acts on, bases before the images built from them (config order
/// otherwise): all of them, or `selected` and every image it builds from, directly or not.
pub fn nodes<'a>(
    root: &Path,
    images: &'a [Image],
    selected: Option<&str>,
    dev: bool,
    cli_args: &BTreeMap<String, String>,
) -> Result<Vec<Node<'a>>> {
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    let mut all: Vec<Node> = images
        .iter()
        .map(|image| {
            let own_dev = dev && image.dev_dockerfile.is_some();
            let dockerfile = match (&image.dev_dockerfile, own_dev) {
                (Some(d), true) => d.value.clone(),
                _ => image.dockerfile.value.clone(),
            };
            let deps = deps_of(root, image, &dockerfile, &names, cli_args);
            Node {
                image,
                dockerfile,
                dev: own_dev,
                is_base: false,
                deps,
            }
        })
        .collect();
    let order = order(&all)?;
    let keep: Vec<bool> = match selected {
        None => vec![true; all.len()],
        Some(s) => {
            let Some(start) = names.iter().position(|n| *n == s) else {
                return Err(input_error!(
                    "no image named `{s}`; this project has {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            let mut keep = vec![false; all.len()];
            let mut todo = vec![start];
            while let Some(i) = todo.pop() {
                if std::mem::replace(&mut keep[i], true) {
                    continue;
                }
                for d in &all[i].deps {
                    todo.extend(names.iter().position(|n| *n == d.image));
                }
            }
            keep
        }
    };
    for i in 0..all.len() {
        if !keep[i] {
            continue;
        }
        let bases: Vec<usize> = all[i]
            .deps
            .iter()
            .filter_map(|d| names.iter().position(|n| *n == d.image))
            .collect();
        for b in bases {
            all[b].is_base = true;
        }
    }
    let mut slots: Vec<Option<Node>> = all.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter(|&i| keep[i])
        .filter_map(|i| slots[i].take())
        .collect())
}

/// A topological order of the images (indices), stable: among images ready at once, config
/// order. A cycle is an error that walks it.
fn order(nodes: &[Node]) -> Result<Vec<usize>> {
    let index = |name: &str| nodes.iter().position(|n| n.image.name == name);
    for n in nodes {
        if let Some(d) = n.deps.iter().find(|d| d.image == n.image.name) {
            return Err(input_error!(
                "{}:{}: image `{}` builds from itself (`{}`); name another image, or write the reference in full (`registry/name:tag`) to use a published one",
                n.dockerfile.display(),
                d.line,
                n.image.name,
                d.reference
            ));
        }
    }
    let mut done = vec![false; nodes.len()];
    let mut out = Vec::with_capacity(nodes.len());
    while out.len() < nodes.len() {
        let ready = (0..nodes.len()).find(|&i| {
            !done[i]
                && nodes[i]
                    .deps
                    .iter()
                    .all(|d| index(&d.image).is_none_or(|j| done[j]))
        });
        match ready {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => return Err(cycle_error(nodes, &done)),
        }
    }
    Ok(out)
}

/// Walks from the first image left until a node repeats, and names each edge's line.
fn cycle_error(nodes: &[Node], done: &[bool]) -> anyhow::Error {
    let index = |name: &str| nodes.iter().position(|n| n.image.name == name);
    let mut at = (0..nodes.len()).find(|&i| !done[i]).unwrap_or(0);
    let mut path: Vec<usize> = Vec::new();
    while !path.contains(&at) {
        path.push(at);
        match nodes[at]
            .deps
            .iter()
            .filter_map(|d| index(&d.image))
            .find(|&j| !done[j])
        {
            Some(j) => at = j,
            None => break,
        }
    }
    let from = path.iter().position(|&i| i == at).unwrap_or(0);
    let cycle = &path[from..];
    let steps: Vec<String> = cycle
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let next = &nodes[cycle[(k + 1) % cycle.len()]].image.name;
            let d = nodes[i].deps.iter().find(|d| &d.image == next);
            format!(
                "`{}` builds from `{next}` ({}:{})",
                nodes[i].image.name,
                nodes[i].dockerfile.display(),
                d.map_or(0, |d| d.line)
            )
        })
        .collect();
    input_error!(
        "images build from one another in a cycle: {}; one of them must build from a published image or from `scratch` instead",
        steps.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_the_projects_own_images() {
        let names = ["pybase", "app"];
        assert_eq!(named("pybase", &names), Some("pybase"));
        assert_eq!(named("localhost/pybase:latest", &names), Some("pybase"));
        assert_eq!(named("pybase:1.2.3", &names), Some("pybase"));
        assert_eq!(named("pybase@sha256:abc", &names), Some("pybase"));
        assert_eq!(named("docker.io/library/pybase", &names), None);
        assert_eq!(named("acme/pybase", &names), None);
        assert_eq!(named("pybase2", &names), None);
        assert_eq!(named("localhost:5000/pybase", &names), None);
    }

    fn stages(text: &str) -> Stages {
        dockerfile::stages(dockerfile::parse(text).unwrap()).unwrap()
    }

    #[test]
    fn references_skip_stages_and_expand_args() {
        let df = stages(
            "ARG BASE=pybase\nFROM ${BASE} AS build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=tools:1 /t /t\nRUN --mount=type=bind,from=cachebase,target=/c true\n",
        );
        let refs = references(&df, None, &BTreeMap::new());
        assert_eq!(
            refs,
            [
                (2, "pybase".to_string()),
                (6, "tools:1".to_string()),
                (7, "cachebase".to_string())
            ]
        );
        let args = BTreeMap::from([("BASE".to_string(), "other".to_string())]);
        assert_eq!(references(&df, Some("build"), &args), [(2, "other".into())]);
    }
}
