//! Repository hygiene, checked as tests: README and CI agree, every source file says what it is.

use std::path::Path;

fn read(rel: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The commands in fenced `sh` blocks of README's quick start, in order.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let quick = readme
        .split("## Quick start")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    quick
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn ci_runs_the_readme_commands() {
    let cmds = readme_commands();
    assert_eq!(
        cmds.len(),
        2,
        "README's quick start should hold the main job and the test command: {cmds:?}"
    );
    let ci = read(".ci/run");
    let ci_lines: Vec<&str> = ci.lines().map(str::trim).collect();
    for c in &cmds {
        assert!(
            ci_lines.contains(&c.as_str()),
            ".ci/run does not run README's `{c}`"
        );
    }
}

#[test]
fn every_source_file_starts_with_a_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sources = [
        "xtask/src",
        "xtask/examples",
        "xtask/tests",
        "xtask-images/src",
    ];
    for entry in sources
        .iter()
        .flat_map(|d| walkdir::WalkDir::new(root.join(d)))
    {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert!(
                text.starts_with("//!"),
                "{} does not start with a `//!` line",
                entry.path().display()
            );
        }
    }
}

#[test]
fn readme_documents_every_config_key() {
    let readme = read("README.md");
    let config = read("xtask-images/src/config.rs");
    // Field names of the raw config structs, as serde reads them.
    let raw = config
        .split("struct RawConfig")
        .nth(1)
        .unwrap()
        .split("/// Reads the project's config")
        .next()
        .unwrap();
    let mut keys = Vec::new();
    for line in raw.lines().map(str::trim) {
        if let Some((field, _)) = line.split_once(": ") {
            if !field.starts_with("//")
                && !field.starts_with('#')
                && field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                keys.push(field.to_string());
            }
        }
    }
    assert!(keys.len() >= 10, "found too few config keys: {keys:?}");
    // Tables themselves (`image`, `context`) are documented through their keys.
    for k in keys.iter().filter(|k| {
        !matches!(
            k.as_str(),
            "image"
                | "context"
                | "rollback"
                | "cache"
                | "check"
                | "scan"
                | "sbom"
                | "sign"
                | "waive"
        )
    }) {
        let documented =
            readme.contains(&format!("| `{k}` |")) || readme.contains(&format!(".{k}` |"));
        assert!(documented, "README's config table does not document `{k}`");
    }
}
