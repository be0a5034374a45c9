//! Command-line types. Parsing only: these become domain values in `main` before any logic runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::EngineKind;

/// The whole command line of an xtask that adds nothing of its own.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, tag, test, push and release container images with podman",
    after_help = "Configuration: docker/images.toml (see README.md). Without it: one image named after \
                  the directory, built from docker/Dockerfile, Dockerfile or Containerfile."
)]
pub struct Xtask {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command takes; `#[command(flatten)]` them into a CLI of your own.
#[derive(Args, Debug, Clone)]
#[command(about = None, long_about = None)]
pub struct Global {
    /// Act on the project in DIR (or the one above it) instead of this one
    #[arg(short = 'C', long = "project-dir", global = true, value_name = "DIR")]
    pub(crate) project_dir: Option<PathBuf>,
    /// Container engine to drive (default: XTASK_ENGINE, then `engine` in the config, then
    /// podman if installed, else docker)
    #[arg(long, global = true, value_enum)]
    pub(crate) engine: Option<EngineKind>,
    /// Act on this image only (default: every image in the config)
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) image: Option<String>,
    /// Print the commands that would change something, shell-quoted, and run none of them
    #[arg(long, global = true)]
    pub(crate) dry_run: bool,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Also echo read-only queries (git, inspect, --help probes)
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
    /// Only errors and each command's final result: no echoed commands, no engine output, no
    /// tables
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Colour status words: on a terminal (auto), always, or never (NO_COLOR, CLICOLOR_FORCE
    /// are honoured under auto)
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub(crate) color: crate::output::ColorChoice,
}

/// The commands; `#[command(flatten)]` them into a subcommand enum of your own.
#[derive(Subcommand, Debug)]
// The doc comment above is for the API docs, not for the --help of a CLI that embeds these.
#[command(about = None, long_about = None)]
#[non_exhaustive]
pub enum Command {
    /// Build images and apply their tags; an image whose cache key is already built is only tagged
    Build(BuildArgs),
    /// Show each image's cache key, what a build would do, and which steps podman would reuse
    Plan(BuildArgs),
    /// Add registry names (REGISTRY/NAME:TAG) for every tag of the built images
    Tag(TagArgs),
    /// Print the tags a build would get, without building
    Tags(VersionArgs),
    /// Run the smoke tests against the built images
    Test(TestArgs),
    /// Show each built image's layers: size, the Dockerfile line that made it, and what it wastes
    Layers(VersionArgs),
    /// Scan the built images for vulnerabilities (`[scan]`: trivy or grype), with expiring waivers
    Scan(ScanArgs),
    /// Push the built image's tags to the registry (or the local OCI layout), safely
    Push(PushArgs),
    /// Build, smoke-test and push in one safe sequence; resumable
    Release(ReleaseArgs),
    /// Point `latest` and its line's floating tags back at an earlier release, by digest
    Rollback(RollbackArgs),
    /// Check that releases in the destination are signed by the release key (`[sign]`)
    Verify(VerifyArgs),
    /// Pull a released version by digest, verified, and name it NAME:VERSION locally
    Pull(PullArgs),
    /// Verify .dockerignore coverage: secrets, bloat, ignored COPY sources, dead rules, budgets
    Check(CheckArgs),
    /// Show what enters an image's build context: a summary, every file, or why one path is in or out
    Context(ContextArgs),
    /// Remove dangling images and, with --keep, old version tags of this project
    Clean(CleanArgs),
    /// Report the engine, its features, and whether it can build and run images here
    Doctor,
    /// Make this repository ready for `cargo xtask`: workspace, xtask crate, alias, config, ignore files, pre-commit hook
    Init(InitArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Depend on the xtask-images library at DIR (default: where this binary was built from)
    #[arg(long, value_name = "DIR", conflicts_with = "git")]
    pub(crate) path: Option<PathBuf>,
    /// Depend on the library from this git repository
    #[arg(long, value_name = "URL")]
    pub(crate) git: Option<String>,
    /// The git tag to depend on (default: this version's, vX.Y.Z)
    #[arg(long, value_name = "TAG", requires = "git")]
    pub(crate) tag: Option<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct VersionArgs {
    /// Version to build instead of the one `git describe` gives (semver, leading `v` allowed)
    #[arg(long, value_name = "V")]
    pub(crate) version: Option<String>,
    /// Build the dev image (dev Dockerfile, tag `dev`)
    #[arg(long)]
    pub(crate) dev: bool,
    /// Channel tag such as `staging` (no floating tags)
    #[arg(long, value_name = "NAME")]
    pub(crate) channel: Option<String>,
    /// Pull-request build: tag `pr-N` (default: from GITHUB_REF or CI_MERGE_REQUEST_IID)
    #[arg(long, value_name = "N")]
    pub(crate) pr: Option<u64>,
    /// Branch build: tag with the branch name (default: from GITHUB_REF or CI_COMMIT_BRANCH)
    #[arg(long, value_name = "B")]
    pub(crate) branch: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    #[command(flatten)]
    pub(crate) version: VersionArgs,
    /// Ignore the layer cache
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Run podman even when an image with the same cache key exists (its layer cache still
    /// applies)
    #[arg(long)]
    pub(crate) force: bool,
    /// Build argument, overriding the config's (repeatable)
    #[arg(long = "build-arg", value_name = "K=V")]
    pub(crate) build_args: Vec<String>,
    /// Target platform(s), e.g. linux/arm64; several (comma-separated or repeated) build a
    /// manifest list. Overrides the config's `platforms`
    #[arg(long, value_name = "P", value_delimiter = ',')]
    pub(crate) platform: Vec<String>,
    /// Also write each built image as an OCI archive under target/xtask/images/, for a later
    /// CI job on another machine (`test` and `push` load it)
    #[arg(long)]
    pub(crate) save: bool,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    #[command(flatten)]
    pub(crate) version: VersionArgs,
    /// Registry to name the images for, `host[:port][/namespace]` (default: XTASK_REGISTRY, then the config)
    #[arg(long, value_name = "R")]
    pub(crate) registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Treat warnings as errors
    #[arg(long)]
    pub(crate) strict: bool,
}

#[derive(Args, Debug)]
pub struct ContextArgs {
    /// Print every file the engine would send (relative, `/`-separated, sorted), and nothing else
    #[arg(long, conflicts_with = "explain")]
    pub(crate) list: bool,
    /// Say whether PATH is sent, and which ignore-file line decided it
    #[arg(long, value_name = "PATH")]
    pub(crate) explain: Option<String>,
    /// With --list: end each name with a NUL byte instead of a newline (names may hold newlines)
    #[arg(short = 'z', requires = "list")]
    pub(crate) null: bool,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// Keep the newest N versions of each image and remove the older version tags
    #[arg(long, value_name = "N")]
    pub(crate) keep: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    pub(crate) version: VersionArgs,
    /// Also write the results as JUnit XML to FILE (for GitLab and GitHub test reports)
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// A platform this machine cannot run (no emulator) does not fail the tests; its command
    /// and service tests are reported as not run
    #[arg(long)]
    pub(crate) untested_platforms: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ScanArgs {
    #[command(flatten)]
    pub(crate) version: VersionArgs,
    /// Judge this scanner report (JSON) instead of running the scanner (one image)
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Also write the findings as SARIF 2.1.0 to FILE (code-scanning uploads)
    #[arg(long, value_name = "FILE")]
    pub(crate) sarif: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PushArgs {
    #[command(flatten)]
    pub(crate) version: VersionArgs,
    /// Registry, `host[:port][/namespace]` (default: XTASK_REGISTRY, then the config, then the
    /// local OCI layout under target/images/)
    #[arg(long, value_name = "R")]
    pub(crate) registry: Option<String>,
    /// Overwrite a published version that holds another image (loudly)
    #[arg(long)]
    pub(crate) force: bool,
    /// Attempts per push or copy on network and server errors (default: the config's
    /// `push_attempts`, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) attempts: Option<u32>,
    /// Push an image handed over by `build --save` that no `test` passed
    #[arg(long)]
    pub(crate) untested: bool,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub(crate) push: PushArgs,
    /// Build and test a dirty tree anyway; nothing is pushed
    #[arg(long)]
    pub(crate) allow_dirty: bool,
    /// Also write the smoke tests' results as JUnit XML to FILE
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Push a platform this machine cannot run (no emulator) though its command and service
    /// tests did not run
    #[arg(long)]
    pub(crate) untested_platforms: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Registry (default: XTASK_REGISTRY, then the config, then the local OCI layout)
    #[arg(long, value_name = "R")]
    pub(crate) registry: Option<String>,
    /// Tags or digests (sha256:…) to check (default: every release and floating tag)
    #[arg(value_name = "TAG|DIGEST")]
    pub(crate) references: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Registry (default: XTASK_REGISTRY, then the config, then the local OCI layout)
    #[arg(long, value_name = "R")]
    pub(crate) registry: Option<String>,
    /// The tag to pull (default: latest)
    #[arg(value_name = "TAG")]
    pub(crate) version: Option<String>,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Registry (default: XTASK_REGISTRY, then the config, then the local OCI layout)
    #[arg(long, value_name = "R")]
    pub(crate) registry: Option<String>,
    /// The release to return to (default: the one before what `latest` holds)
    #[arg(long, value_name = "X.Y.Z", conflicts_with = "clear")]
    pub(crate) to: Option<String>,
    /// Lift the hold an earlier rollback left, so releases move the floating tags again
    #[arg(long)]
    pub(crate) clear: bool,
}
