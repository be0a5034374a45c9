//! Build, tag, test, push and release container images with podman, as `cargo xtask`
//! subcommands in any repository.
//!
//! An application repository gets `cargo xtask build`, `check`, `release`, … from a thin
//! `xtask` crate of its own (what `cargo xtask init` writes). Either run every command as it
//! is:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     xtask_images::main()
//! }
//! ```
//!
//! or put them in your own clap CLI, next to subcommands of your own:
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//!
//! #[derive(Parser)]
//! #[command(name = "cargo xtask", bin_name = "cargo xtask")]
//! struct Cli {
//!     #[command(flatten)]
//!     global: xtask_images::Global,
//!     #[command(subcommand)]
//!     command: Cmd,
//! }
//!
//! #[derive(Subcommand)]
//! enum Cmd {
//!     #[command(flatten)]
//!     Images(xtask_images::Command),
//!     /// Load the demo data (a subcommand of this project's own)
//!     Seed,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let cli: Cli = xtask_images::parse();
//!     match cli.command {
//!         Cmd::Images(command) => xtask_images::run(&cli.global, &command),
//!         Cmd::Seed => std::process::ExitCode::SUCCESS,
//!     }
//! }
//! ```
//!
//! The public surface is these entry points and the two clap types; everything else is
//! private and may change. Exit codes: 0 success, 1 a command failed, 2 bad input.
//!
//! Inside, commands parse flags into domain values and dispatch to `tasks/`; decisions are
//! pure functions over data; `exec` is the only place that runs programs.

mod authfile;
mod cache;
mod ci;
mod cmd;
mod config;
mod context;
mod coverage;
mod dockerfile;
mod emulation;
mod engine;
mod error;
mod exec;
mod fault;
mod flags;
mod fsx;
#[cfg(test)]
mod fuzz;
mod git;
mod graph;
mod handoff;
mod hold;
mod interrupt;
mod labels;
mod layers;
mod output;
mod project;
mod publish;
mod reference;
mod scaffold;
mod scan;
mod secrets;
mod signing;
mod size;
mod smoke;
mod statedir;
mod tags;
mod tasks;
mod timefmt;
mod version;
mod working;

use std::process::ExitCode;

use crate::error::InputError;
use crate::exec::Sh;
use crate::flags::Xtask;
pub use crate::flags::{Command, Global};
use crate::project::{Ctx, Env};

/// Parses the process's arguments as `cargo xtask` does and runs the command: the whole
/// `main` of an xtask that adds nothing of its own.
pub fn main() -> ExitCode {
    let flags: Xtask = parse();
    run(&flags.global, &flags.command)
}

/// `P::parse()` with help and usage errors coloured as the rest of the output is: on a
/// terminal, honouring `--color`, `NO_COLOR` and `CLICOLOR_FORCE`. Use it for a CLI of your
/// own that flattens [`Global`] and [`Command`].
pub fn parse<P: clap::Parser>() -> P {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Help is printed while parsing, before `--color` is known from the parse itself.
    output::init(output::color_flag(&args));
    let parsed = P::command()
        .try_get_matches_from(args)
        .and_then(|mut m| P::from_arg_matches_mut(&mut m));
    match parsed {
        Ok(p) => p,
        Err(e) => {
            let stream = if e.use_stderr() {
                output::Stream::Err
            } else {
                output::Stream::Out
            };
            // clap's own colouring (its `color` feature) costs five more crates to compile for
            // every user; help has a fixed shape, so it is styled here instead.
            let text = e.render().to_string();
            let text = if output::colored(stream) {
                output::style_help(&text)
            } else {
                text
            };
            match stream {
                output::Stream::Err => eprint!("{text}"),
                output::Stream::Out => print!("{text}"),
            }
            std::process::exit(e.exit_code());
        }
    }
}

/// Runs one command with the global options (`-C`, `--image`, `--engine`, `--dry-run`,
/// `--json`, `-v`). Errors are printed (and, under `--json`, also given as a JSON document on
/// stdout); the exit code says what happened.
pub fn run(global: &Global, command: &Command) -> ExitCode {
    // A bug should read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        // `xtask context --list | head`: the reader has all it wanted. End quietly, with
        // success, as ripgrep does (Rust ignores SIGPIPE, so a closed stdout panics in print!).
        let what = info.to_string();
        if what.contains("failed printing to stdout") && what.contains("os error 32") {
            std::process::exit(0);
        }
        eprintln!("error: internal error ({info}); please report this with the command you ran");
    }));
    interrupt::install();
    output::init(global.color);
    let _auth = interrupt::on_interrupt(authfile::remove);
    let result = dispatch(global, command);
    authfile::remove();
    interrupt::wait_if_interrupted();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Under GitHub Actions a config or Dockerfile error lands on its line.
            if let Some(line) = located_annotation(&format!("{e:#}")) {
                println!("{line}");
            }
            let code = if e.downcast_ref::<InputError>().is_some() {
                2
            } else {
                1
            };
            // A `--json` caller reads stdout only: the failure is a document there too, unless
            // the command already printed its own (a release's failed tests).
            if global.json && !project::printed_json() {
                println!(
                    "{}",
                    serde_json::json!({ "error": format!("{e:#}"), "exit": code })
                );
            }
            ExitCode::from(code)
        }
    }
}

/// `::error file=F,line=N::…` for a message that starts with `F:N:` (config and Dockerfile
/// errors do), under GitHub Actions.
fn located_annotation(message: &str) -> Option<String> {
    if !matches!(
        ci::Ci::detect(|k| std::env::var(k).ok()),
        ci::Ci::GitHub { .. }
    ) {
        return None;
    }
    let mut parts = message.splitn(3, ':');
    let (file, line) = (parts.next()?, parts.next()?.parse::<usize>().ok()?);
    (!file.contains(' '))
        .then(|| ci::github_annotation(true, Some(file), Some(line), "cargo xtask", message))
}

fn read_env() -> Env {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let password = get("XTASK_REGISTRY_PASSWORD").or_else(|| {
        let file = get("XTASK_REGISTRY_PASSWORD_FILE")?;
        // A missing or empty file shows up later as "no password", with the variable named.
        std::fs::read_to_string(file)
            .ok()
            .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
            .filter(|p| !p.is_empty())
    });
    Env {
        engine: get("XTASK_ENGINE"),
        registry: get("XTASK_REGISTRY"),
        registry_insecure: get("XTASK_REGISTRY_INSECURE").is_some_and(|v| v != "0" && v != "false"),
        registry_user: get("XTASK_REGISTRY_USER"),
        registry_password: password.map(cmd::Secret::new),
        ci: tags::from_ci_env(get),
        source_date_epoch: get("SOURCE_DATE_EPOCH").and_then(|s| s.parse().ok()),
        state_base: statedir::StateDir::base_from(get),
        ci_system: ci::Ci::detect(get),
        now: now_ns / 1_000_000_000,
        now_ns,
    }
}

fn dispatch(flags: &Global, command: &Command) -> anyhow::Result<ExitCode> {
    let root = project::find_root(flags.project_dir.as_deref())?;
    if flags.verbose {
        eprintln!("project: {}", root.display());
    }
    let planned = (flags.dry_run && flags.json).then(Default::default);
    let env = read_env();
    let sh = Sh {
        dir: root.clone(),
        dry_run: flags.dry_run,
        verbose: flags.verbose,
        quiet: flags.quiet,
        planned: planned.clone(),
        fold: match env.ci_system {
            ci::Ci::GitHub { .. } => exec::Fold::GitHub,
            ci::Ci::GitLab => exec::Fold::GitLab,
            _ => exec::Fold::None,
        },
    };
    let ctx = Ctx::load(root, sh, flags.json, flags.engine, flags.image.clone(), env)?;
    match command {
        Command::Build(args) => tasks::build::run(&ctx, args)?,
        Command::Plan(args) => tasks::plan::run(&ctx, args)?,
        Command::Tag(args) => tasks::tag::run(&ctx, args)?,
        Command::Tags(args) => tasks::tags::run(&ctx, args)?,
        Command::Clean(args) => tasks::clean::run(&ctx, args)?,
        Command::Context(args) => tasks::context::run(&ctx, args)?,
        Command::Check(args) => {
            if !tasks::check::run(&ctx, args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Doctor => {
            if !tasks::doctor::run(&ctx)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Test(args) => {
            if !tasks::test::run(&ctx, args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Layers(args) => tasks::layers::run(&ctx, args)?,
        Command::Scan(args) => {
            if !tasks::scan::run(&ctx, args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Push(args) => tasks::push::run(&ctx, args)?,
        Command::Release(args) => tasks::release::run(&ctx, args)?,
        Command::Rollback(args) => tasks::rollback::run(&ctx, args)?,
        Command::Verify(args) => {
            if !tasks::verify::run(&ctx, args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Pull(args) => tasks::pull::run(&ctx, args)?,
        Command::Init(args) => {
            if !tasks::init::run(&ctx, args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if let Some(p) = planned.filter(|_| !project::printed_json()) {
        let commands = p.lock().map(|c| c.clone()).unwrap_or_default();
        ctx.print_json(&serde_json::json!({ "dry_run": true, "commands": commands }))?;
    }
    Ok(ExitCode::SUCCESS)
}
