//! What `cargo xtask init` writes into a repository, decided from what is already there:
//! every file is created when missing, appended to when only lines are missing, and otherwise
//! left alone with the lines to merge by hand. Pure: the caller reads the files and writes the
//! result.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::context::ignore;
use crate::context::walk::Matcher;
use crate::engine::EngineKind;

/// The toolchain this library is built and tested with; an adopter's xtask pins the same.
pub const TOOLCHAIN: &str = "1.95.0";

/// Where the adopter's xtask gets this library from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A path relative to the adopter's `xtask/` directory, or absolute.
    Path(String),
    Git {
        url: String,
        tag: String,
    },
}

/// What the repository holds now: each file's text, if it exists, by path.
#[derive(Debug, Default)]
pub struct Facts {
    pub files: BTreeMap<String, String>,
    /// Dockerfiles found (relative paths), with the text of each.
    pub dockerfiles: Vec<(String, String)>,
    /// The repository directory's name, for image names.
    pub dir_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Create {
        path: String,
        content: String,
    },
    Append {
        path: String,
        lines: String,
    },
    /// The file exists and differs: the lines to merge by hand, and why.
    Merge {
        path: String,
        why: String,
        snippet: String,
    },
    Keep {
        path: String,
    },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::Create { path, .. }
            | Action::Append { path, .. }
            | Action::Merge { path, .. }
            | Action::Keep { path } => path,
        }
    }

    pub fn changes(&self) -> bool {
        matches!(self, Action::Create { .. } | Action::Append { .. })
    }
}

const PRECOMMIT: &str = ".pre-commit-config.yaml";

/// GitHub Actions for an adopting repository: check, build and smoke-test on every push and pull
/// request; release on `v*` tags from the `release` environment's registry settings.
const GITHUB_WORKFLOW: &str = r#"# Written by `cargo xtask init`. Check, build and smoke-test the images on every push and pull
# request; release them on `v*` tags to the registry set in the `release` environment
# (variables XTASK_REGISTRY, XTASK_REGISTRY_USER; secret XTASK_REGISTRY_PASSWORD).
name: images

on:
  push:
    branches: [main]
    tags: ["v*"]
  pull_request:

permissions:
  contents: read

jobs:
  test:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
          fetch-depth: 0
      - name: Install podman
        run: sudo apt-get update -qq && sudo apt-get install -y -qq podman skopeo
      - name: Check, build, smoke-test
        run: |
          cargo xtask check
          cargo xtask build
          cargo xtask test

  release:
    if: startsWith(github.ref, 'refs/tags/v')
    needs: test
    runs-on: ubuntu-24.04
    environment: release
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
          fetch-depth: 0
      - name: Install podman
        run: sudo apt-get update -qq && sudo apt-get install -y -qq podman skopeo
      - name: Release
        env:
          XTASK_REGISTRY: ${{ vars.XTASK_REGISTRY }}
          XTASK_REGISTRY_USER: ${{ vars.XTASK_REGISTRY_USER }}
          XTASK_REGISTRY_PASSWORD: ${{ secrets.XTASK_REGISTRY_PASSWORD }}
        run: cargo xtask release
"#;

/// GitLab CI for an adopting repository: the staged build → test → push hand-off.
const GITLAB_PIPELINE: &str = r#"# Written by `cargo xtask init`: build → test → push, each job possibly on another runner; the
# image travels as an OCI archive (target/xtask/images/), and push refuses what test did not
# pass. The runner needs podman (a privileged or podman-enabled executor). Registry settings:
# CI/CD variables XTASK_REGISTRY, XTASK_REGISTRY_USER and the masked XTASK_REGISTRY_PASSWORD.
stages:
  - build
  - test
  - push

variables:
  GIT_DEPTH: "0"

build:
  stage: build
  script:
    - cargo xtask check
    - cargo xtask build --save
  artifacts:
    paths:
      - target/xtask/images/
    expire_in: 1 day

test:
  stage: test
  needs: [build]
  script:
    - cargo xtask test --junit target/xtask/junit.xml
  artifacts:
    when: always
    paths:
      - target/xtask/images/
    reports:
      junit: target/xtask/junit.xml
    expire_in: 1 day

push:
  stage: push
  needs: [test]
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
  script:
    - cargo xtask push
  artifacts:
    reports:
      dotenv: target/xtask/ci.env
"#;

/// Every file init is responsible for, in the order it reports them.
pub fn plan(f: &Facts, source: &Source) -> Vec<Action> {
    let text = |p: &str| f.files.get(p).map(String::as_str);
    let mut out = Vec::new();
    out.push(match text("Cargo.toml") {
        None => Action::Create {
            path: "Cargo.toml".into(),
            content: "[workspace]\nmembers = [\"xtask\"]\nresolver = \"2\"\n".into(),
        },
        Some(t) if t.contains("[workspace]") && t.contains("\"xtask\"") => keep("Cargo.toml"),
        Some(t) if t.contains("[workspace]") => merge(
            "Cargo.toml",
            "add `xtask` to the workspace's members",
            "members = [\"xtask\", …]",
        ),
        Some(_) => merge(
            "Cargo.toml",
            "this is a package manifest: make it a workspace that includes `xtask`",
            "[workspace]\nmembers = [\".\", \"xtask\"]",
        ),
    });
    let dependency = match source {
        Source::Path(p) => format!("xtask-images = {{ path = {} }}", toml_string(p)),
        Source::Git { url, tag } => format!(
            "xtask-images = {{ git = {}, tag = {} }}",
            toml_string(url),
            toml_string(tag)
        ),
    };
    out.push(match text("xtask/Cargo.toml") {
        None => Action::Create {
            path: "xtask/Cargo.toml".into(),
            content: format!(
                "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{dependency}\n"
            ),
        },
        Some(t) if t.contains("xtask-images") => keep("xtask/Cargo.toml"),
        Some(_) => merge(
            "xtask/Cargo.toml",
            "an xtask crate exists: depend on the library from it",
            &format!("[dependencies]\n{dependency}"),
        ),
    });
    let main = "//! `cargo xtask`: build, check, test and release this repository's images.\n\nfn main() -> std::process::ExitCode {\n    xtask_images::main()\n}\n";
    out.push(match text("xtask/src/main.rs") {
        None => Action::Create {
            path: "xtask/src/main.rs".into(),
            content: main.into(),
        },
        Some(t) if t.contains("xtask_images") => keep("xtask/src/main.rs"),
        Some(_) => merge(
            "xtask/src/main.rs",
            "run the library's commands from your xtask (or embed them next to your own: see the crate docs)",
            "xtask_images::main()",
        ),
    });
    let alias = "xtask = \"run --package xtask --\"";
    out.push(match text(".cargo/config.toml") {
        None => Action::Create {
            path: ".cargo/config.toml".into(),
            content: format!("[alias]\n{alias}\n"),
        },
        Some(t) if t.lines().any(|l| l.trim_start().starts_with("xtask")) => {
            keep(".cargo/config.toml")
        }
        Some(t) if t.lines().any(|l| l.trim() == "[alias]") => merge(
            ".cargo/config.toml",
            "add the alias to the existing [alias] table",
            alias,
        ),
        Some(t) => Action::Append {
            path: ".cargo/config.toml".into(),
            lines: format!("{}[alias]\n{alias}\n", separator(t)),
        },
    });
    out.push(match text("rust-toolchain.toml") {
        None => Action::Create {
            path: "rust-toolchain.toml".into(),
            content: format!("[toolchain]\nchannel = \"{TOOLCHAIN}\"\nprofile = \"minimal\"\n"),
        },
        Some(_) => keep("rust-toolchain.toml"),
    });
    out.push(match text(crate::config::CONFIG_PATH) {
        None => Action::Create {
            path: crate::config::CONFIG_PATH.into(),
            content: images_toml(f),
        },
        Some(_) => keep(crate::config::CONFIG_PATH),
    });
    out.push(dockerignore(f, !f.files.contains_key("Cargo.toml")));
    out.push(match text(".gitignore") {
        Some(t) if ignores_target(t) => keep(".gitignore"),
        Some(t) => Action::Append {
            path: ".gitignore".into(),
            lines: format!(
                "{}# Rust build output (the xtask)\n/target/\n",
                separator(t)
            ),
        },
        None => Action::Create {
            path: ".gitignore".into(),
            content: "# Rust build output (the xtask)\n/target/\n".into(),
        },
    });
    let workflow = ".github/workflows/images.yml";
    out.push(match text(workflow) {
        None => Action::Create {
            path: workflow.into(),
            content: GITHUB_WORKFLOW.into(),
        },
        Some(_) => keep(workflow),
    });
    out.push(match text(".gitlab-ci.yml") {
        None => Action::Create {
            path: ".gitlab-ci.yml".into(),
            content: GITLAB_PIPELINE.into(),
        },
        Some(t) if t.contains("cargo xtask") => keep(".gitlab-ci.yml"),
        Some(_) => merge(
            ".gitlab-ci.yml",
            "a pipeline exists: add the stages that run `cargo xtask` (the template is in the xtask-images README)",
            "build: cargo xtask build --save (artifacts: target/xtask/images/)\ntest: cargo xtask test --junit target/xtask/junit.xml\npush: cargo xtask push",
        ),
    });
    let hook = "  - repo: local\n    hooks:\n      - id: xtask-check\n        name: .dockerignore coverage (cargo xtask check)\n        entry: cargo xtask check\n        language: system\n        pass_filenames: false\n        always_run: true\n";
    out.push(match text(PRECOMMIT) {
        None => Action::Create {
            path: PRECOMMIT.into(),
            content: format!("repos:\n{hook}"),
        },
        Some(t) if t.contains("xtask check") => keep(PRECOMMIT),
        Some(_) => merge(PRECOMMIT, "add the hook under `repos:`", hook),
    });
    out
}

fn keep(path: &str) -> Action {
    Action::Keep { path: path.into() }
}

fn merge(path: &str, why: &str, snippet: &str) -> Action {
    Action::Merge {
        path: path.into(),
        why: why.into(),
        snippet: snippet.into(),
    }
}

/// A line break first when the file does not end with one.
fn separator(text: &str) -> &'static str {
    if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn ignores_target(gitignore: &str) -> bool {
    gitignore.lines().map(str::trim).any(|l| {
        matches!(
            l,
            "target" | "target/" | "/target" | "/target/" | "**/target"
        )
    })
}

/// Lines every ignore file needs, each with a path it must exclude (probed with the engine's
/// own matching, so a rule already written another way counts).
const MUST_EXCLUDE: &[(&str, &str)] = &[
    (".git", ".git/HEAD"),
    ("target", "target/debug/xtask"),
    (".env", ".env"),
    ("**/*.pem", "certs/server.pem"),
    ("**/*.key", "certs/server.key"),
    ("**/id_rsa*", "id_rsa"),
    ("**/id_ed25519*", "id_ed25519"),
];

/// Files of a developer's machine a new baseline also leaves out, besides `check`'s bloat
/// names (`coverage::BLOAT`).
const BASELINE_MORE: &[&str] = &["**/*.pyc", "coverage.xml", "*.log", "*.sqlite3"];

/// `check`'s bloat names as ignore lines: caches that appear at any depth get `**/`.
fn bloat_lines() -> impl Iterator<Item = String> {
    crate::coverage::BLOAT
        .iter()
        .filter(|n| !MUST_EXCLUDE.iter().any(|(l, _)| l == *n))
        .map(|n| match *n {
            "__pycache__" | ".DS_Store" => format!("**/{n}"),
            _ => n.to_string(),
        })
}

/// The xtask's own files, left out of the images of a repository that is not a Rust project
/// (its Cargo.toml is the one init writes).
const TOOLING: &[(&str, &str)] = &[
    ("xtask", "xtask/src/main.rs"),
    (".cargo", ".cargo/config.toml"),
    ("Cargo.toml", "Cargo.toml"),
    ("Cargo.lock", "Cargo.lock"),
    ("rust-toolchain.toml", "rust-toolchain.toml"),
    ("docker/images.toml", "docker/images.toml"),
    (".pre-commit-config.yaml", ".pre-commit-config.yaml"),
    (".github", ".github/workflows/images.yml"),
    (".gitlab-ci.yml", ".gitlab-ci.yml"),
];

fn dockerignore(f: &Facts, tooling: bool) -> Action {
    let path = ".dockerignore";
    let wanted = || {
        MUST_EXCLUDE
            .iter()
            .chain(TOOLING.iter().filter(|_| tooling))
    };
    match f.files.get(path) {
        Some(t) => {
            let rules = ignore::parse(t, EngineKind::Podman).unwrap_or_default();
            let m = Matcher::new(rules, EngineKind::Podman);
            let missing: Vec<&str> = wanted()
                .filter(|(_, probe)| crate::context::walk::explain(&m, probe).included)
                .map(|(line, _)| *line)
                .collect();
            if missing.is_empty() {
                return keep(path);
            }
            Action::Append {
                path: path.into(),
                lines: format!(
                    "{}# Added by `cargo xtask init`: never in an image\n{}\n",
                    separator(t),
                    missing.join("\n")
                ),
            }
        }
        None => {
            let mut lines: Vec<String> = vec![
                "# Written by `cargo xtask init`: what never belongs in an image.".into(),
                "# `cargo xtask check` verifies this file against the Dockerfiles.".into(),
            ];
            lines.extend(wanted().map(|(l, _)| l.to_string()));
            lines.extend(bloat_lines());
            lines.extend(BASELINE_MORE.iter().map(|l| l.to_string()));
            let from_git: Vec<String> = f
                .files
                .get(".gitignore")
                .map(|g| g.lines().filter_map(gitignore_line).collect())
                .unwrap_or_default();
            let mut seen: std::collections::BTreeSet<String> = lines.iter().cloned().collect();
            let new: Vec<String> = from_git
                .into_iter()
                .filter(|l| seen.insert(l.clone()))
                .collect();
            if !new.is_empty() {
                lines.push("# From .gitignore: what git leaves out is somebody's machine".into());
                lines.extend(new);
            }
            Action::Create {
                path: path.into(),
                content: lines.join("\n") + "\n",
            }
        }
    }
}

/// A .gitignore line as an ignore-file line: a name without a slash matches at any depth in
/// git, and only at the root in an ignore file; negations are left out (they would bring
/// files back into the context).
fn gitignore_line(line: &str) -> Option<String> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
        return None;
    }
    let body = l.trim_end_matches('/');
    if let Some(rooted) = body.strip_prefix('/') {
        return Some(rooted.to_string());
    }
    if body.contains('/') || body.starts_with("**") {
        return Some(body.to_string());
    }
    Some(format!("**/{body}"))
}

/// One `[[image]]` per production Dockerfile found, its dev Dockerfile beside it, and a
/// commented smoke test that runs the image's own command with `--help`.
fn images_toml(f: &Facts) -> String {
    let base = crate::reference::repository_from(&f.dir_name);
    let base = if base.is_empty() {
        "app".to_string()
    } else {
        base
    };
    let is_dev = |p: &str| {
        let name = p.rsplit('/').next().unwrap_or(p).to_ascii_lowercase();
        name.contains(".dev") || name.contains("dev.") || name.ends_with("-dev")
    };
    let prod: Vec<&(String, String)> = f.dockerfiles.iter().filter(|(p, _)| !is_dev(p)).collect();
    let dev: Vec<&(String, String)> = f.dockerfiles.iter().filter(|(p, _)| is_dev(p)).collect();
    let mut out = String::from(
        "# Images this repository builds (written by `cargo xtask init`; every key is in the\n# xtask-images README). `cargo xtask release` builds, tests and publishes them.\n",
    );
    if prod.is_empty() {
        out.push_str(&format!(
            "\n[[image]]\nname = \"{base}\"\n# dockerfile = \"Dockerfile\"   # none was found: write one, or point at it here\n"
        ));
        return out;
    }
    for (i, (path, text)) in prod.iter().enumerate() {
        let name = if i == 0 {
            base.clone()
        } else {
            let file = path.rsplit('/').next().unwrap_or(path);
            let suffix = file
                .to_ascii_lowercase()
                .replace("dockerfile", "")
                .replace("containerfile", "")
                .trim_matches(|c: char| c == '.' || c == '-' || c == '_')
                .to_string();
            crate::reference::repository_from(&format!("{base}-{suffix}"))
        };
        out.push_str(&format!(
            "\n[[image]]\nname = \"{name}\"\ndockerfile = \"{path}\"\ncontext = \".\"\n"
        ));
        if i == 0 && dev.len() == 1 {
            out.push_str(&format!("dev_dockerfile = \"{}\"\n", dev[0].0));
        }
        let command = help_command(text);
        out.push_str(&format!(
            "\n# A first smoke test: the image starts and its command answers. `cargo xtask test` runs it.\n# [[image.smoke]]\n# name = \"the image's command prints its help\"\n# command = {command}\n# expect_exit = 0\n"
        ));
    }
    out
}

/// The `command` of a smoke test asking the image's own program for help: the ENTRYPOINT takes
/// `--help` as its argument; without one, the CMD's program does.
fn help_command(dockerfile: &str) -> String {
    let Ok(instrs) = crate::dockerfile::parse(dockerfile) else {
        return "[\"--help\"]".into();
    };
    let last_stage = instrs
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .map_or(&instrs[..], |at| &instrs[at..]);
    let entrypoint = last_stage.iter().rev().find(|i| i.keyword == "ENTRYPOINT");
    let cmd = last_stage.iter().rev().find(|i| i.keyword == "CMD");
    let argv = match (entrypoint, cmd) {
        (Some(_), _) | (None, None) => vec!["--help".to_string()],
        (None, Some(c)) => vec![c.args.first().cloned().unwrap_or_default(), "--help".into()],
    };
    serde_json::to_string(&argv).unwrap_or_else(|_| "[\"--help\"]".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: &[(&str, &str)], dockerfiles: &[(&str, &str)]) -> Facts {
        Facts {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            dockerfiles: dockerfiles
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
            dir_name: "My Shop".into(),
        }
    }

    fn find<'a>(actions: &'a [Action], path: &str) -> &'a Action {
        actions.iter().find(|a| a.path() == path).unwrap()
    }

    #[test]
    fn a_bare_repository_gets_every_file() {
        let f = facts(
            &[(".gitignore", "*.pyc\n/media/\ndb.sqlite3\n!keep.log\n")],
            &[
                ("Dockerfile", "FROM python\nCMD [\"gunicorn\", \"app\"]\n"),
                ("Dockerfile.dev", "FROM python\n"),
                (
                    "docker/worker.Dockerfile",
                    "FROM python\nENTRYPOINT [\"celery\"]\n",
                ),
            ],
        );
        let a = plan(&f, &Source::Path("../../lib".into()));
        let Action::Create { content, .. } = find(&a, "xtask/Cargo.toml") else {
            panic!()
        };
        assert!(
            content.contains("xtask-images = { path = \"../../lib\" }"),
            "{content}"
        );
        let Action::Create { content, .. } = find(&a, "docker/images.toml") else {
            panic!()
        };
        let config =
            crate::config::parse(std::path::Path::new("/x"), "docker/images.toml", content)
                .expect("the generated config parses");
        let names: Vec<&str> = config.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["my-shop", "my-shop-worker"]);
        assert!(
            content.contains("dev_dockerfile = \"Dockerfile.dev\""),
            "{content}"
        );
        assert!(
            content.contains("# command = [\"gunicorn\",\"--help\"]"),
            "{content}"
        );
        assert!(content.contains("# command = [\"--help\"]"), "{content}");
        let Action::Create { content, .. } = find(&a, ".dockerignore") else {
            panic!()
        };
        for line in [
            "\n.git\n",
            "\ntarget\n",
            "\n.env\n",
            "\n**/*.pyc\n",
            "\nmedia\n",
            "\n**/db.sqlite3\n",
        ] {
            assert!(content.contains(line), "{line:?} in {content}");
        }
        assert!(!content.contains("keep.log"), "{content}");
        assert_eq!(
            find(&a, ".gitignore"),
            &Action::Append {
                path: ".gitignore".into(),
                lines: "# Rust build output (the xtask)\n/target/\n".into()
            }
        );
    }

    #[test]
    fn existing_files_are_appended_to_or_merged_never_overwritten() {
        let f = facts(
            &[
                ("Cargo.toml", "[package]\nname = \"app\"\n"),
                (".cargo/config.toml", "[build]\njobs = 2"),
                (".dockerignore", "**/.git\n*.pem\n"),
                (".gitignore", "target/\n"),
                (".pre-commit-config.yaml", "repos: []\n"),
            ],
            &[],
        );
        let a = plan(
            &f,
            &Source::Git {
                url: "https://example.org/x.git".into(),
                tag: "v0.1.0".into(),
            },
        );
        assert!(matches!(find(&a, "Cargo.toml"), Action::Merge { .. }));
        assert_eq!(
            find(&a, ".cargo/config.toml"),
            &Action::Append {
                path: ".cargo/config.toml".into(),
                lines: "\n[alias]\nxtask = \"run --package xtask --\"\n".into()
            }
        );
        // `.git` and `*.pem` are covered already (written another way); the rest is appended.
        let Action::Append { lines, .. } = find(&a, ".dockerignore") else {
            panic!("{a:?}")
        };
        assert!(
            !lines.contains("\n.git\n") && lines.contains("\ntarget\n"),
            "{lines}"
        );
        assert!(lines.contains("**/*.key"), "{lines}");
        assert_eq!(find(&a, ".gitignore"), &keep(".gitignore"));
        assert!(matches!(find(&a, PRECOMMIT), Action::Merge { .. }));
    }
}
