//! `cargo xtask`: build, check, test and release this repository's images.

fn main() -> std::process::ExitCode {
    xtask_images::main()
}
