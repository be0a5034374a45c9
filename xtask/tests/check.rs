//! End-to-end: `check`, the .dockerignore coverage verifier, on fixture projects.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

fn project(dockerfile: &str, ignore: &str, files: &[(&str, &str)]) -> Project {
    let p = Project::new(files);
    p.write("Dockerfile", dockerfile);
    p.write(".dockerignore", ignore);
    p
}

fn findings(p: &Project, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = run(p.xtask().args(["--json", "check"]).args(extra));
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, v)
}

fn kinds(v: &serde_json::Value) -> Vec<String> {
    v["images"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["severity"].as_str().unwrap(),
                f["kind"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_clean_context_passes_with_one_line() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "*.log\n",
        &[("app.py", "print()"), ("debug.log", "")],
    );
    let out = run(p.xtask().arg("check")).ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        out.stdout.starts_with("check: 1 image, 4 files"),
        "{}",
        out.stdout
    );
}

#[test]
fn secrets_are_errors_naming_every_file() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[
            ("app.py", ""),
            (".env", "SECRET=1"),
            ("certs/server.pem", "---"),
        ],
    );
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(".env") && out.stdout.contains("certs/server.pem"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("fix: add `.env` to .dockerignore"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("fix: add `**/*.pem` to .dockerignore"),
        "{}",
        out.stdout
    );
    // Excluding them, or allowing one explicitly, clears the errors.
    p.write(".dockerignore", ".env\n");
    p.write(
        "docker/images.toml",
        &format!(
            "[[image]]\nname = \"{}\"\n[context]\nallow = [\"certs/*.pem\"]\n",
            p.name
        ),
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!((code, kinds(&v)), (0, vec![]), "{v}");
}

#[test]
fn bloat_is_a_warning_and_strict_makes_it_fail() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[
            ("node_modules/x/index.js", "x"),
            ("src/__pycache__/a.pyc", ""),
        ],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(kinds(&v), ["warning:bloat", "warning:bloat"]);
    let f = &v["images"][0]["findings"];
    assert_eq!(
        f[1]["fix"],
        "add `**/__pycache__` to .dockerignore (or list the path under `allow` in [context])"
    );
    assert_eq!(findings(&p, &["--strict"]).0, 1);
}

#[test]
fn an_ignored_copy_source_is_an_error_naming_both_lines() {
    let p = project(
        "FROM scratch\nCOPY requirements.txt /tmp/\nCOPY app /app\n",
        "# keep the context small\napp\n",
        &[("requirements.txt", "django"), ("app/main.py", "")],
    );
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "Dockerfile:3: `COPY app /app`: `app` is excluded by .dockerignore:2 (`app`)"
        ),
        "{}",
        out.stdout
    );
    // Sources that don't exist are errors too; a glob counts as its matches.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY *.txt /tmp/\nCOPY missing /m\n",
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        kinds(&v),
        ["error:missing_source", "warning:unused_file"],
        "{v}"
    );
}

#[test]
fn sent_but_never_copied_and_dead_rules_are_warnings() {
    let p = project(
        "FROM scratch\nCOPY src /app/src\n",
        "*.tmp\n!keep.tmp\n",
        &[("src/a.py", "a"), ("docs/big.md", &"x".repeat(3000))],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        kinds(&v),
        [
            "warning:unused_file",
            "warning:dead_rule",
            "warning:dead_rule"
        ],
        "{v}"
    );
    let f = &v["images"][0]["findings"];
    let unused: Vec<&str> = f[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        unused,
        [
            ".dockerignore",
            "Dockerfile",
            "docker/images.toml",
            "docs/big.md"
        ]
    );
    assert_eq!(
        (f[1]["file"].as_str(), f[1]["line"].as_u64()),
        (Some(".dockerignore"), Some(1))
    );
    assert_eq!(f[2]["line"], 2);
}

#[test]
fn malformed_patterns_report_their_line() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "ok\n\n[unclosed\n",
        &[("a", "")],
    );
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("error: .dockerignore:3: `[unclosed`: a `[` is never closed"),
        "{}",
        out.stdout
    );
}

#[test]
fn budgets_and_must_exclude() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[("data/big.bin", &"x".repeat(20_000)), ("db.sqlite3", "")],
    );
    p.write(
        "docker/images.toml",
        &format!("[[image]]\nname = \"{}\"\n[context]\nmax_size = \"10kB\"\nmax_files = 2\nmust_exclude = [\"*.sqlite3\"]\n", p.name),
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        kinds(&v),
        ["error:must_exclude", "error:budget", "error:budget"],
        "{v}"
    );
    assert_eq!(
        v["images"][0]["findings"][1]["paths"][0],
        "data/big.bin (20.0 kB)"
    );
}

#[test]
fn this_repository_passes_its_own_check() {
    let out = run(xtask(&repo_root()).args(["--json", "check"]));
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0);
}
