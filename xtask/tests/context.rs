//! End-to-end: `context --list` must be exactly what podman copies for `COPY . /ctx/`. Trees
//! and ignore files (hand-picked tricky ones and seeded random ones) are built with podman, the
//! image's files read through `podman image mount`, and compared with our listing.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::sync::Mutex;

use support::*;

/// One comparison: files (a trailing `@` makes a symlink to `a.txt`), ignore files by path.
struct Case {
    name: String,
    files: Vec<String>,
    ignores: Vec<(String, String)>,
    dockerfile: &'static str,
}

fn podman_listing(dir: &Path, dockerfile: &str, image: &str) -> Result<Vec<String>, String> {
    let build = podman(&[
        "build",
        "--layers=false",
        "-q",
        "-t",
        image,
        "-f",
        &dir.join(dockerfile).to_string_lossy(),
        &dir.to_string_lossy(),
    ]);
    if build.code != 0 {
        return Err(build.stderr);
    }
    let mount = podman(&["image", "mount", image]).ok();
    let root = Path::new(mount.stdout.trim()).join("ctx");
    let mut files = Vec::new();
    if root.exists() {
        for e in walkdir::WalkDir::new(&root).min_depth(1) {
            let e = e.unwrap();
            if !e.file_type().is_dir() {
                files.push(
                    e.path()
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    podman(&["image", "unmount", image]);
    podman(&["rmi", image]);
    Ok(files)
}

fn run_case(case: &Case) -> Result<(), String> {
    let p = Project::new(&[]);
    std::fs::remove_file(p.path().join("docker/images.toml")).unwrap();
    p.write(case.dockerfile, "FROM scratch\nCOPY . /ctx/\n");
    p.write(
        "docker/images.toml",
        &format!(
            "[[image]]\nname = \"{}\"\ndockerfile = \"{}\"\n",
            p.name, case.dockerfile
        ),
    );
    for f in &case.files {
        match f.strip_suffix('@') {
            Some(link) => {
                let at = p.path().join(link);
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink("a.txt", at).unwrap();
            }
            None => p.write(f, &format!("content of {f}\n")),
        }
    }
    for (path, text) in &case.ignores {
        p.write(path, text);
    }
    let ours = run(p.xtask().args(["context", "--list"]));
    let theirs = podman_listing(p.path(), case.dockerfile, &format!("{}:ctx", p.name));
    let describe = || {
        format!(
            "case {}\nfiles: {:?}\nignores: {:?}",
            case.name, case.files, case.ignores
        )
    };
    match (ours.code, theirs) {
        (0, Ok(theirs)) => {
            let ours: Vec<String> = ours.stdout.lines().map(str::to_string).collect();
            if ours != theirs {
                return Err(format!(
                    "{}\n ours:   {ours:?}\n podman: {theirs:?}",
                    describe()
                ));
            }
        }
        (2, Err(_)) => {} // both refuse the ignore file
        (code, theirs) => {
            return Err(format!(
                "{}\n ours: exit {code}: {}{}\n podman: {theirs:?}",
                describe(),
                ours.stdout,
                ours.stderr
            ));
        }
    }
    Ok(())
}

fn case(name: &str, files: &[&str], ignore: &str) -> Case {
    Case {
        name: name.into(),
        files: files.iter().map(|s| s.to_string()).collect(),
        ignores: vec![(".dockerignore".into(), ignore.into())],
        dockerfile: "Dockerfile",
    }
}

const TREE: &[&str] = &[
    "a.txt",
    "b.md",
    "c.log",
    ".env",
    ".hidden/x",
    "dir/keep.txt",
    "dir/drop.md",
    "dir/sub/deep.txt",
    "other/y.txt",
    "x+y",
    "notes (1).txt",
    "[k]",
    "über.txt",
    "link@",
    "node_modules/pkg/index.js",
    "target/debug/app",
    "target/image/xtask",
];

fn handpicked() -> Vec<Case> {
    let mut cases = vec![
        case(
            "comments and blanks",
            TREE,
            "# a comment\n\n*.md\n  # not a comment\n",
        ),
        case("surrounding whitespace", TREE, "  a.txt  \n\tc.log\n"),
        case("a byte-order mark", TREE, "\u{feff}a.txt\nb.md\n"),
        case("leading slash and dot", TREE, "/a.txt\n./b.md\n /c.log\n"),
        case("dot-dot cleaning", TREE, "dir/../a.txt\n../b.md\n"),
        case("trailing slash", TREE, "dir/\ntarget/\n"),
        case("last match wins", TREE, "*.txt\n!a.txt\n"),
        case("exception before exclusion", TREE, "!a.txt\n*.txt\n"),
        case(
            "re-include inside excluded dir",
            TREE,
            "dir\n!dir/keep.txt\n",
        ),
        case("re-include deeper", TREE, "dir\n!dir/sub/deep.txt\n"),
        case("wildcard exception cannot reach in", TREE, "*\n!**/*.txt\n"),
        case("allow-list", TREE, "*\n!target/image/xtask\n"),
        case("double star", TREE, "**/*.txt\n"),
        case("double star tail", TREE, "dir/**\n"),
        case("question mark", TREE, "?.md\n"),
        case("classes", TREE, "[ab].*\n[!a]*.log\n"),
        case("escapes", TREE, "\\[k]\n"),
        case("regex metacharacters", TREE, "x+y\nnotes (1).txt\n"),
        case("unicode", TREE, "ü*\n"),
        case(
            "the dockerfile and ignore file themselves",
            TREE,
            "Dockerfile\n.dockerignore\n",
        ),
        case("symlink", TREE, "link\n"),
        case("secrets and bloat", TREE, ".env\nnode_modules\n**/*.log\n"),
        case("everything", TREE, "*\n"),
        case("malformed", TREE, "[abc\n"),
        case("lone bang", TREE, "!\n"),
    ];
    let mut both = case("containerignore wins over dockerignore", TREE, "*.md\n");
    both.ignores
        .push((".containerignore".into(), "*.txt\n".into()));
    cases.push(both);
    let mut specific = case("dockerfile-specific ignore file", TREE, "*.md\n");
    specific.dockerfile = "docker/Dockerfile";
    specific
        .ignores
        .push(("docker/Dockerfile.containerignore".into(), "*.txt\n".into()));
    specific
        .ignores
        .push(("docker/Dockerfile.dockerignore".into(), "*.log\n".into()));
    cases.push(specific);
    // Thousands of lines, as generated ignore files have: more than one compiled set holds.
    let mut long = String::new();
    for i in 0..8000 {
        long.push_str(&if i % 3 == 0 {
            format!("!dir/keep{i}.txt\n")
        } else {
            format!("gen{i}/**/*.o\n")
        });
    }
    long.push_str("*.md\n!dir/drop.md\n");
    cases.push(case("8,000 lines", TREE, &long));
    cases
}

/// xorshift64*: reproducible without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn random_cases(seed: u64, count: usize) -> Vec<Case> {
    let names = [
        "a", "b", "ab", "a.txt", "b.md", "c.log", ".env", "dir", "sub", "x+y", "[k]", "k",
    ];
    let atoms = [
        "*",
        "**",
        "?",
        "a*",
        "*.txt",
        "*.md",
        "dir",
        "dir/*",
        "**/*.md",
        "[ab]*",
        "[!a]*",
        "sub",
        "*/sub",
        "**/sub/**",
        "a?",
        "x+y",
        "\\[k]",
        "dir/sub",
        "*.log",
        ".env",
        "k",
    ];
    let mut rng = Rng(seed.max(1));
    (0..count)
        .map(|n| {
            let mut files = Vec::new();
            for _ in 0..(4 + rng.next() % 10) {
                let depth = 1 + rng.next() % 3;
                let parts: Vec<&str> = (0..depth).map(|_| *rng.pick(&names)).collect();
                files.push(parts.join("/"));
            }
            // A name can't be both a file and a directory.
            files.sort();
            files.dedup();
            let all = files.clone();
            files.retain(|f| !all.iter().any(|g| g.starts_with(&format!("{f}/"))));
            let mut lines = Vec::new();
            for _ in 0..(1 + rng.next() % 5) {
                let mut l = rng.pick(&atoms).to_string();
                if rng.chance(25) {
                    l = format!("{l}/{}", rng.pick(&atoms));
                }
                if rng.chance(10) {
                    l = format!("/{l}");
                }
                if rng.chance(10) {
                    l.push('/');
                }
                if rng.chance(35) {
                    l = format!("!{l}");
                }
                lines.push(l);
            }
            Case {
                name: format!("random #{n} (seed {seed})"),
                files,
                ignores: vec![(".dockerignore".into(), lines.join("\n") + "\n")],
                dockerfile: "Dockerfile",
            }
        })
        .collect()
}

#[test]
fn listing_equals_what_podman_copies() {
    let seed = std::env::var("XTASK_CONTEXT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_124);
    let count = std::env::var("XTASK_CONTEXT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut cases = handpicked();
    cases.extend(random_cases(seed, count));
    let total = cases.len();
    let queue = Mutex::new(cases);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some(c) = queue.lock().unwrap().pop() else {
                    break;
                };
                if let Err(e) = run_case(&c) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from podman:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn explain_names_the_deciding_line() {
    let p = Project::new(&[
        ("Dockerfile", "FROM scratch\n"),
        ("dir/keep.txt", "k"),
        ("dir/drop.md", "d"),
        ("a.log", ""),
    ]);
    p.write(".dockerignore", "# comment\n*.log\ndir\n!dir/keep.txt\n");
    let out = run(p.xtask().args(["context", "--explain", "dir/keep.txt"])).ok();
    assert!(
        out.stdout
            .starts_with("included  dir/keep.txt  (.dockerignore: line 4 (`!dir/keep.txt`)"),
        "{}",
        out.stdout
    );
    let out = run(p.xtask().args(["--json", "context", "--explain", "a.log"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["included"].as_bool(), v["line"].as_u64()),
        (Some(false), Some(2))
    );
    let bad = Project::new(&[
        ("Dockerfile", "FROM scratch\n"),
        (".dockerignore", "ok\n[abc\n"),
    ]);
    let out = run(bad.xtask().args(["context", "--list"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains(".dockerignore:2: `[abc`: a `[` is never closed"),
        "{}",
        out.stderr
    );
}

#[test]
fn summary_counts_files_and_bytes() {
    let p = Project::new(&[
        ("Dockerfile", "FROM scratch\n"),
        ("big/x.bin", &"x".repeat(5000)),
        ("small.txt", "hi"),
    ]);
    let out = run(p.xtask().args(["--json", "context"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let img = &v["images"][0];
    assert_eq!(img["files"], 4, "{img}"); // Dockerfile, images.toml, x.bin, small.txt
    assert_eq!(img["largest_files"][0]["path"], "big/x.bin");
    assert_eq!(
        img["largest_dirs"][0],
        serde_json::json!({"path": "big", "bytes": 5000})
    );
}

#[test]
fn a_closed_stdout_ends_the_listing_quietly() {
    use std::io::{BufRead, BufReader};
    let p = Project::new(&[("Dockerfile", "FROM scratch\n")]);
    for i in 0..5000 {
        p.write(&format!("src/f{i:05}.txt"), "x");
    }
    let mut child = p
        .xtask()
        .args(["context", "--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone (as `| head -1` leaves it); the rest of the listing hits a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(first, "Dockerfile\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn fifos_and_names_with_newlines_are_listed_as_podman_copies_them() {
    let p = Project::new(&[
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        ("a.txt", "a"),
    ]);
    std::fs::remove_file(p.path().join("docker/images.toml")).unwrap();
    std::fs::write(p.path().join("two\nlines.txt"), "x").unwrap();
    run(std::process::Command::new("mkfifo").arg(p.path().join("events"))).ok();
    let ours = run(p.xtask().args(["context", "--list", "-z"])).ok();
    let ours: Vec<&str> = ours.stdout.split('\0').filter(|s| !s.is_empty()).collect();
    let theirs = podman_listing(p.path(), "Dockerfile", &unique_name("xtask-e2e-list"))
        .expect("podman builds it");
    assert_eq!(ours, theirs);
    assert!(
        ours.contains(&"events") && ours.contains(&"two\nlines.txt"),
        "{ours:?}"
    );
}
