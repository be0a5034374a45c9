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

/// A private key, and a Django secret key, in the shapes real ones have (random, not real).
const PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
const DOTENV: &str = "DEBUG=0\nSECRET_KEY=q8Zr2#vLx9!mTe4@Wp7^bN1&cY6*hJ3%\n";

#[test]
fn secrets_are_found_by_content_and_named_by_file_and_line() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[
            ("app.py", ""),
            (".env", DOTENV),
            ("certs/server.pem", PEM),
            // Ordinary names, real-looking content.
            (
                "app/settings/local.py",
                "from .base import *\nAWS_ACCESS_KEY_ID = \"AKIAIOSFODNN7EXAMPL3\"\n",
            ),
            // Names that look secret, content that is not.
            ("deploy/.env", "COMPOSE_PROJECT_NAME=paperless\n"),
            ("src-ui/.npmrc", "shamefully-hoist=true\n"),
            (
                ".env.example",
                "SECRET_KEY=Zx9Kq2Lw8Vb3Nm7Rt4Yp6Hs1Jd5Fg0Ac\n",
            ),
        ],
    );
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 1, "{}", out.stdout);
    for want in [
        "error: .env:2: holds a random value assigned to `SECRET_KEY`; `COPY . /app/` (Dockerfile:2) puts it in the image",
        "error: certs/server.pem:1: holds a private key block",
        "error: app/settings/local.py:2: holds an AWS access key ID",
        "fix: add `.env` to .dockerignore",
        "fix: add `certs/server.pem` to .dockerignore",
    ] {
        assert!(out.stdout.contains(want), "{want}\n{}", out.stdout);
    }
    for benign in ["deploy/.env", ".npmrc", ".env.example"] {
        assert!(!out.stdout.contains(benign), "{benign}\n{}", out.stdout);
    }
    // The secret's value never appears.
    assert!(!out.stdout.contains("q8Zr2"), "{}", out.stdout);
    // Excluding them, or allowing one explicitly, clears the errors.
    p.write(".dockerignore", ".env\napp/settings/local.py\n");
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
fn a_fix_never_excludes_what_a_copy_needs() {
    // `.npmrc` with a real token inside a directory the build copies by name: excluding it
    // would break `pnpm install`, so the fix says what to do instead.
    let p = project(
        "FROM scratch\nCOPY ./src-ui /src-ui\n",
        "",
        &[(
            "src-ui/.npmrc",
            "//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789\n",
        )],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 1, "{v}");
    let f = &v["images"][0]["findings"][0];
    assert_eq!(f["kind"], "secret", "{v}");
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains("don't exclude it") && fix.contains("build secret"),
        "{fix}"
    );
    assert!(!fix.contains("add `"), "{fix}");
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
fn sent_but_never_copied_is_a_warning() {
    let p = project(
        "FROM scratch\nCOPY src /app/src\n",
        "*.tmp\n",
        &[("src/a.py", "a"), ("docs/big.md", &"x".repeat(3000))],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(kinds(&v), ["warning:unused_file"], "{v}");
    let f = &v["images"][0]["findings"];
    let unused: Vec<&str> = f[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        unused,
        // The tool's own config is not a file the image forgot to use.
        [".dockerignore", "Dockerfile", "docs/big.md"]
    );
}

#[test]
fn only_ignore_lines_that_look_like_mistakes_are_dead() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        // Guards for absent paths (1-4) are kept on purpose; 5 misses `db.sqlite3`, 6 misses
        // `app/cache.pyc` (it only matches at the root), 7 is overridden by 8, 9 brings back
        // nothing that is excluded.
        "node_modules\nmedia\n./data\n!keep.tmp\n*.sqlite\n*.pyc\n!notes.txt\n*.txt\n!app/main.py\n",
        &[
            ("db.sqlite3", ""),
            ("app/cache.pyc", ""),
            ("app/main.py", ""),
            ("notes.txt", ""),
        ],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 0, "{v}");
    let f: Vec<(u64, &str)> = v["images"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "dead_rule")
        .map(|f| (f["line"].as_u64().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!(f[0].0, 5);
    assert!(f[0].1.contains("while `db.sqlite3` is sent"), "{f:?}");
    assert_eq!(f[1].0, 6);
    assert!(f[1].1.contains("`app/cache.pyc`"), "{f:?}");
    assert_eq!(f[2].0, 7);
    assert!(
        f[2].1
            .contains("overridden by a later line (line 8: `*.txt`)"),
        "{f:?}"
    );
    assert_eq!(f[3].0, 9);
    assert!(f[3].1.contains("re-includes nothing"), "{f:?}");
    // A project can accept a finding, with its reason.
    p.write(
        "docker/images.toml",
        &format!(
            "[[image]]\nname = \"{}\"\n[[check.allow]]\nkind = \"dead_rule\"\npath = \".dockerignore:5\"\nreason = \"kept for the old db name\"\n",
            p.name
        ),
    );
    let (_, v) = findings(&p, &[]);
    let allowed: Vec<&serde_json::Value> = v["images"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["allowed"].is_string())
        .collect();
    assert_eq!(allowed.len(), 1, "{v}");
    assert_eq!(allowed[0]["line"], 5);
    assert_eq!(v["warnings"], 3, "{v}");
    // The reason is required.
    p.write(
        "docker/images.toml",
        &format!(
            "[[image]]\nname = \"{}\"\n[[check.allow]]\nkind = \"dead_rule\"\npath = \"x\"\n",
            p.name
        ),
    );
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("docker/images.toml:3:1: [check] allow: say why"),
        "{}",
        out.stderr
    );
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

#[test]
fn test_suites_in_the_production_image_are_a_warning() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[
            ("shop/views.py", ""),
            ("shop/tests/test_views.py", &"x".repeat(2000)),
            ("shop/tests/cassettes/pay.yaml", "y"),
            ("conftest.py", ""),
        ],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 0, "{v}");
    let f = &v["images"][0]["findings"][0];
    assert_eq!(f["kind"], "tests_in_image", "{v}");
    assert_eq!(
        f["paths"],
        serde_json::json!(["conftest.py", "shop/tests/"])
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("3 test file(s), 2.0 kB"),
        "{f}"
    );
    // Only the stage the image is made of counts, and the dev image is for tests.
    p.write(
        "Dockerfile",
        "FROM scratch AS build\nCOPY . /src\nFROM scratch\nCOPY shop/views.py /app/\n",
    );
    p.write("docker/Dockerfile.dev", "FROM scratch\nCOPY . /app/\n");
    let (_, v) = findings(&p, &[]);
    assert!(!v.to_string().contains("tests_in_image"), "{v}");
}

#[test]
fn under_github_actions_findings_are_annotations_on_their_lines() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "*.sqlite\n",
        &[
            ("db.sqlite3", ""),
            (
                "conf/local.py",
                "X = 1\nSECRET_KEY = \"q8Zr2vLx9mTe4Wp7bN1cY6hJ3kD5s\"\n",
            ),
        ],
    );
    let out = run(p.xtask().env("GITHUB_ACTIONS", "true").arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("::error file=conf/local.py,line=2,title=check%3A secret")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("::warning file=.dockerignore,line=1,title=check%3A dead_rule")),
        "{}",
        out.stdout
    );
    // A config error lands on its line too.
    p.write("docker/images.toml", "[[images]]\nname = \"x\"\n");
    let out = run(p.xtask().env("GITHUB_ACTIONS", "true").arg("check"));
    assert_eq!(out.code, 2);
    assert!(
        out.stdout
            .starts_with("::error file=docker/images.toml,line=1,title=cargo xtask::"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_tools_own_output_in_a_context_is_refused_by_check_and_build() {
    let p = project(
        "FROM scratch\nCOPY . /app/\n",
        "",
        &[("app.py", ""), ("target/images/app/index.json", "{}")],
    );
    let (code, v) = findings(&p, &[]);
    assert_eq!(code, 1, "{v}");
    let f = &v["images"][0]["findings"][0];
    assert_eq!(f["kind"], "tool_output", "{v}");
    assert_eq!(f["paths"], serde_json::json!(["target/images/"]));
    assert_eq!(f["fix"], "add `target/images` to .dockerignore");
    let out = run(p.xtask().args(["build", "--version", "1.0.0"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("would send `target/images/` (1 files, 2 B), this tool's own output; add `target/images` to .dockerignore"),
        "{}",
        out.stderr
    );
}
