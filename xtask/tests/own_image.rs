//! End-to-end: this repository's own image, built by its own config and `before_build` hook.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;

use support::*;

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn this_repos_image_builds_and_its_binary_runs() {
    let root = repo_root();
    let p = Project::new(&[]);
    for item in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        ".cargo",
        ".dockerignore",
        "docker",
        "xtask/Cargo.toml",
        "xtask/src",
        "xtask-images",
    ] {
        let (from, to) = (root.join(item), p.path().join(item));
        if from.is_dir() {
            copy_tree(&from, &to);
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let config = std::fs::read_to_string(root.join("docker/images.toml")).unwrap();
    let renamed = config.replace("name = \"xtask\"", &format!("name = \"{}\"", p.name));
    assert_ne!(
        config, renamed,
        "docker/images.toml no longer names the image `xtask`"
    );
    p.write("docker/images.toml", &renamed);
    // Share the workspace's target dir so the static binary is built once, not from cold.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let out = run(p
        .xtask()
        .args(["--json", "build", "--version", "0.0.1"])
        .env("CARGO_TARGET_DIR", &target))
    .ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let size = report["images"][0]["size"].as_u64().unwrap();
    assert!(size > 1_000_000 && size < 20_000_000, "size {size}");
    let version = podman(&["run", "--rm", &p.reference("0.0.1"), "--version"]).ok();
    assert_eq!(
        version.stdout.trim(),
        format!("cargo xtask {}", env!("CARGO_PKG_VERSION"))
    );
    // The binary in the image acts on a mounted project, with no toolchain in sight.
    let mount = format!("{}:/src:ro", p.path().display());
    let tags = podman(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &p.reference("0.0.1"),
        "tags",
        "--version",
        "1.4.0",
    ])
    .ok();
    assert_eq!(tags.stdout, "1.4.0\n1.4\n1\nlatest\n");
}
