//! The project being acted on: its root, config, engine, and the identity (version, tags,
//! labels' inputs) of the commit being built.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::{self, Config};
use crate::engine::{Engine, EngineKind};
use crate::exec::Sh;
use crate::git::{self, GitFacts};
use crate::statedir::StateDir;
use crate::tags::{self, Commit, Flavor};
use crate::version::{self, Version};

static PRINTED_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this run has printed its JSON document (so an error adds none).
pub fn printed_json() -> bool {
    PRINTED_JSON.load(std::sync::atomic::Ordering::Relaxed)
}

/// What the process environment says, read once in `main`.
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `XTASK_ENGINE`.
    pub engine: Option<String>,
    pub registry: Option<String>,
    /// `XTASK_REGISTRY_INSECURE=1`: plain HTTP, no TLS verification.
    pub registry_insecure: bool,
    pub registry_user: Option<String>,
    /// From `XTASK_REGISTRY_PASSWORD`, or read from `XTASK_REGISTRY_PASSWORD_FILE`.
    pub registry_password: Option<crate::cmd::Secret>,
    /// `(pull request, branch)` from CI variables.
    pub ci: (Option<u64>, Option<String>),
    /// `SOURCE_DATE_EPOCH`: the created time of reproducible builds outside git.
    pub source_date_epoch: Option<i64>,
    /// Where the tool's records of every project live (`crate::statedir`).
    pub state_base: PathBuf,
    /// The CI system running us, if any, and the files it reads (`crate::ci`).
    pub ci_system: crate::ci::Ci,
    /// Seconds since the epoch when the command started.
    pub now: i64,
    /// The same instant in nanoseconds, for the stat cache's racy-file rule.
    pub now_ns: i64,
}

pub struct Ctx {
    pub root: PathBuf,
    pub sh: Sh,
    pub json: bool,
    pub engine_kind: EngineKind,
    /// What chose the engine (`--engine`, `XTASK_ENGINE`, the config, what is installed).
    pub engine_chosen_by: &'static str,
    pub image: Option<String>,
    pub config: Config,
    pub env: Env,
    /// Known only once the config has been read: nothing is written for a project that fails.
    pub state: StateDir,
}

/// Version, tags and git facts of one build.
#[derive(Debug, Clone)]
pub struct Identity {
    pub git: Option<GitFacts>,
    pub version: Version,
    pub tags: Vec<String>,
}

impl Identity {
    pub fn primary_tag(&self) -> &str {
        &self.tags[0]
    }

    /// `NAME:PRIMARY_TAG`: the local name a build gives and later commands act on.
    pub fn local_ref(&self, name: &str) -> String {
        format!("{name}:{}", self.primary_tag())
    }
}

/// The project's root, found from `-C DIR` (else the current directory) the way cargo finds a
/// workspace: the nearest directory at or above it holding `docker/images.toml`; else the git
/// work tree's top level; else the directory itself. So `cargo xtask` works from any
/// subdirectory, and never mistakes one for the project.
pub fn find_root(project_dir: Option<&Path>) -> Result<PathBuf> {
    let start = match project_dir {
        Some(d) if !d.is_dir() => {
            return Err(crate::input_error!(
                "project directory `{}` does not exist",
                d.display()
            ));
        }
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()?,
    };
    let absolute = start.canonicalize().unwrap_or_else(|_| start.clone());
    if let Some(dir) = absolute
        .ancestors()
        .find(|d| d.join(crate::config::CONFIG_PATH).is_file())
    {
        return Ok(relative_to(&start, &absolute, dir));
    }
    if let Some(top) = git_top(&absolute) {
        return Ok(relative_to(&start, &absolute, &top));
    }
    Ok(start)
}

/// `found` as the user would write it from `start`: `start` itself, or the absolute path.
fn relative_to(start: &Path, absolute: &Path, found: &Path) -> PathBuf {
    if found == absolute {
        start.to_path_buf()
    } else {
        found.to_path_buf()
    }
}

/// The nearest directory at or above `dir` that is a git work tree's top level (holds
/// `.git`, a directory or a worktree's file), without running git.
fn git_top(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The engine, and what chose it: `--engine`, `XTASK_ENGINE`, the config's `engine`, or what
/// is installed.
pub fn choose_engine(
    flag: Option<EngineKind>,
    env: Option<&str>,
    config: Option<EngineKind>,
) -> Result<(EngineKind, &'static str)> {
    if let Some(e) = flag {
        return Ok((e, "chosen by --engine"));
    }
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        let e = EngineKind::parse(v).ok_or_else(|| {
            crate::input_error!("XTASK_ENGINE={v}: one of \"podman\" or \"docker\"")
        })?;
        return Ok((e, "chosen by XTASK_ENGINE"));
    }
    if let Some(e) = config {
        return Ok((e, "chosen by `engine` in docker/images.toml"));
    }
    Ok(match EngineKind::installed() {
        EngineKind::Podman => (EngineKind::Podman, "installed (podman before docker)"),
        EngineKind::Docker => (EngineKind::Docker, "installed (no podman here)"),
    })
}

impl Ctx {
    pub fn load(
        root: PathBuf,
        sh: Sh,
        json: bool,
        engine: Option<EngineKind>,
        image: Option<String>,
        env: Env,
    ) -> Result<Ctx> {
        let config = config::load(&root)?;
        let (engine_kind, why) = choose_engine(engine, env.engine.as_deref(), config.engine)?;
        if sh.verbose {
            eprintln!("engine: {}, {why}", crate::engine::program(engine_kind));
        }
        let state = StateDir::locate(env.state_base.clone(), &root, sh.dry_run);
        Ok(Ctx {
            state,
            root,
            sh,
            json,
            engine_kind,
            engine_chosen_by: why,
            image,
            config,
            env,
        })
    }

    pub fn images(&self) -> Result<Vec<&config::Image>> {
        self.config.select(self.image.as_deref())
    }

    /// The images a build acts on, bases first: `--image X` is X and what X builds from.
    pub fn nodes(
        &self,
        dev: bool,
        build_args: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<crate::graph::Node<'_>>> {
        crate::graph::nodes(
            &self.root,
            &self.config.images,
            self.image.as_deref(),
            dev,
            build_args,
        )
    }

    /// `nodes`' images, for the commands that follow a build (test, push, release).
    pub fn built_images(&self, dev: bool) -> Result<Vec<&config::Image>> {
        Ok(self
            .nodes(dev, &Default::default())?
            .into_iter()
            .map(|n| n.image)
            .collect())
    }

    pub fn engine(&self) -> Result<Engine> {
        Engine::detect(&self.sh, self.engine_kind, &self.state)
    }

    pub fn identity(&self, args: &crate::flags::VersionArgs) -> Result<Identity> {
        // With `--version`, a repository git can't read only costs the commit facts.
        let scheme = &self.config.scheme;
        let git = match git::read(&self.sh, scheme) {
            Ok(g) => g,
            Err(e) if args.version.is_some() => {
                eprintln!("warning: {e:#}; going on without commit facts (--version given)");
                None
            }
            Err(e) => return Err(e),
        };
        let version = match (&args.version, &git, &self.config.version) {
            (Some(v), _, _) => version::explicit(v, "--version", scheme)?,
            (None, Some(g), _) => {
                if let Some(tag) = &g.foreign_on_head {
                    warn_once(&format!(
                        "warning: git tag `{tag}` on HEAD is not a version of version_scheme `{}`: building a snapshot; to release it, set `version_scheme` (\"semver-lenient\" reads `v7.3` as 7.3.0, \"calver\") or `tag_pattern` in docker/images.toml",
                        scheme.name()
                    ));
                }
                version::from_describe(&g.describe, &g.sha, scheme)?
            }
            (None, None, Some(v)) => version::explicit(&v.value, &v.origin, scheme)?,
            (None, None, None) => Version::dev(),
        };
        let (pr, branch) = if args.pr.is_some() || args.branch.is_some() {
            (args.pr, args.branch.clone())
        } else {
            self.env.ci.clone()
        };
        let flavor = Flavor {
            dev: args.dev,
            channel: args.channel.clone(),
            pr,
            branch,
        };
        let commit = git.as_ref().map(|g| Commit {
            sha: &g.sha,
            epoch: g.commit_epoch,
            dirty: g.dirty,
        });
        let tags = tags::compute(&version, commit.as_ref(), &flavor);
        Ok(Identity { git, version, tags })
    }

    /// The time a reproducible build stamps on everything: the commit's, else `SOURCE_DATE_EPOCH`.
    pub fn reproducible_epoch(&self, id: &Identity) -> Option<i64> {
        id.git
            .as_ref()
            .map(|g| g.commit_epoch)
            .or(self.env.source_date_epoch)
    }

    /// The registry from `--registry`, `XTASK_REGISTRY`, or the config, validated.
    pub fn registry(&self, flag: Option<&str>) -> Result<Option<String>> {
        let (value, origin) = match (flag, &self.env.registry, &self.config.registry) {
            (Some(r), _, _) => (r.to_string(), "--registry".to_string()),
            (None, Some(r), _) => (r.clone(), "XTASK_REGISTRY".to_string()),
            (None, None, Some(r)) => (r.value.clone(), r.origin.clone()),
            (None, None, None) => return Ok(None),
        };
        crate::reference::check_registry(&value)
            .map_err(|e| crate::input_error!("{origin}: {e}"))?;
        Ok(Some(value))
    }

    pub fn print_json(&self, value: &impl serde::Serialize) -> Result<()> {
        let mut v = serde_json::to_value(value)?;
        // Under `--dry-run`, the commands that would have run belong to the document.
        if let (Some(p), Some(obj)) = (&self.sh.planned, v.as_object_mut()) {
            let commands = p.lock().map(|c| c.clone()).unwrap_or_default();
            obj.insert("dry_run".into(), true.into());
            obj.insert("commands".into(), commands.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        PRINTED_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Prints a warning once per process (`identity` runs more than once in some commands).
fn warn_once(text: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod engine_choice {
    use super::choose_engine;
    use crate::engine::EngineKind::{Docker, Podman};

    #[test]
    fn the_flag_then_the_environment_then_the_config_decide() {
        assert_eq!(
            choose_engine(Some(Docker), Some("podman"), Some(Podman))
                .unwrap()
                .0,
            Docker
        );
        assert_eq!(
            choose_engine(None, Some("docker"), Some(Podman)).unwrap().0,
            Docker
        );
        assert_eq!(
            choose_engine(None, None, Some(Docker)).unwrap().1,
            "chosen by `engine` in docker/images.toml"
        );
        assert!(choose_engine(None, Some("podmn"), None)
            .unwrap_err()
            .to_string()
            .contains("XTASK_ENGINE=podmn"));
        assert!(choose_engine(None, None, None)
            .unwrap()
            .1
            .starts_with("installed"));
    }
}
