//! This repository's `cargo xtask`: every xtask-images command, nothing of its own. An
//! application repository's xtask is the same few lines (`cargo xtask init` writes them).

fn main() -> std::process::ExitCode {
    xtask_images::main()
}
