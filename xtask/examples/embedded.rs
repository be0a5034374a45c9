//! An xtask that embeds every xtask-images command in its own clap CLI, next to a
//! subcommand of its own (`cargo run --example embedded -- greet`). `xtask/tests/adopt.rs`
//! runs it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(flatten)]
    global: xtask_images::Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Images(xtask_images::Command),
    /// This project's own subcommand
    Greet {
        #[arg(long, default_value = "world")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli: Cli = xtask_images::parse();
    match cli.command {
        Cmd::Images(command) => xtask_images::run(&cli.global, &command),
        Cmd::Greet { name } => {
            println!("hello, {name}");
            ExitCode::SUCCESS
        }
    }
}
