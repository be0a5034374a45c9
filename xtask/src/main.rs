//! `cargo xtask`: build, tag, test, push and release container images with podman.
//!
//! `main` parses flags, turns them into domain values and dispatches; each subcommand lives in
//! `tasks/`. Decisions are pure functions over data; `exec` is the only place that runs programs.

mod cache;
mod cmd;
mod config;
mod context;
mod coverage;
mod dockerfile;
mod engine;
mod error;
mod exec;
mod flags;
mod fsx;
mod git;
mod labels;
mod output;
mod project;
mod publish;
mod reference;
mod secrets;
mod size;
mod smoke;
mod statedir;
mod tags;
mod tasks;
mod timefmt;
mod version;

use std::process::ExitCode;

use clap::Parser;

use crate::error::InputError;
use crate::exec::Sh;
use crate::flags::{Command, Xtask};
use crate::project::{Ctx, Env};

fn main() -> ExitCode {
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
    let flags = Xtask::parse();
    match run(flags) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn read_env() -> Env {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let password = get("XTASK_REGISTRY_PASSWORD").or_else(|| {
        let file = get("XTASK_REGISTRY_PASSWORD_FILE")?;
        // A missing file shows up later as "no password", with the variable named.
        std::fs::read_to_string(file)
            .ok()
            .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
    });
    Env {
        registry: get("XTASK_REGISTRY"),
        registry_insecure: get("XTASK_REGISTRY_INSECURE").is_some_and(|v| v != "0" && v != "false"),
        registry_user: get("XTASK_REGISTRY_USER"),
        registry_password: password.map(cmd::Secret::new),
        ci: tags::from_ci_env(get),
        source_date_epoch: get("SOURCE_DATE_EPOCH").and_then(|s| s.parse().ok()),
        state_base: statedir::StateDir::base_from(get),
        now: now_ns / 1_000_000_000,
        now_ns,
    }
}

fn run(flags: Xtask) -> anyhow::Result<ExitCode> {
    let root = project::find_root(flags.project_dir.as_deref())?;
    let sh = Sh {
        dir: root.clone(),
        dry_run: flags.dry_run,
        verbose: flags.verbose,
    };
    let ctx = Ctx::load(root, sh, flags.json, flags.engine, flags.image, read_env())?;
    match &flags.command {
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
        Command::Push(args) => tasks::push::run(&ctx, args)?,
        Command::Release(args) => tasks::release::run(&ctx, args)?,
        Command::Rollback(args) => tasks::rollback::run(&ctx, args)?,
    }
    Ok(ExitCode::SUCCESS)
}
