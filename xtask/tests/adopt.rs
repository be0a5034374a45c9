//! End-to-end: another repository adopts the tool. `init` scaffolds a Django-shaped
//! application, whose own `cargo xtask` (built by cargo, offline, from the scaffolded thin
//! crate) then releases it; and an xtask that embeds the commands next to its own.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// A Django application's repository as its team has it: code, a Dockerfile, a .gitignore
/// that knows nothing of Rust, and an untracked local env file with a secret.
fn django_app(parent: &Path, name: &str) -> PathBuf {
    let app = parent.join(name);
    let files: &[(&str, &str)] = &[
        ("manage.py", "import os, sys\n"),
        ("shop/__init__.py", ""),
        ("shop/settings.py", "import os\nSECRET_KEY = os.environ[\"SECRET_KEY\"]\n"),
        ("shop/views.py", "def index(request):\n    return 'v0'\n"),
        ("requirements.txt", "django\ncelery\n"),
        (".gitignore", "*.pyc\n__pycache__/\n"),
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY . /app/\nWORKDIR /app\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"cat\", \"/app/shop/views.py\"]\n",
        ),
    ];
    for (p, t) in files {
        let f = app.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    std::fs::copy("/bin/busybox", app.join("busybox")).expect("a static /bin/busybox");
    git_in(&app, &["init", "-q"]);
    git_in(&app, &["add", "-A"]);
    git_in(&app, &["commit", "-qm", "app"]);
    std::fs::write(
        app.join(".env.local"),
        "SECRET_KEY=q8Zr2vLx9mTe4Wp7bN1cY6hJ3kD5sQ0a\n",
    )
    .unwrap();
    app
}

#[track_caller]
fn assert_git_clean(app: &Path) {
    assert_eq!(
        git_in(app, &["status", "--porcelain"]).stdout,
        "",
        "git status is not clean"
    );
}

/// `cargo xtask ARGS` in `dir`, as the adopting team runs it: cargo builds their thin xtask
/// (offline, from crates already on this machine) and runs it.
fn cargo_xtask(dir: &Path, state: &Path, args: &[&str]) -> Out {
    // One target directory for every run of this test, beside the workspace's own: the
    // xtask's dependencies compile once, not per run.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/adopter");
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    isolated(&mut c)
        .current_dir(dir)
        .args(["xtask"])
        .args(args)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", target)
        .env("XTASK_STATE_DIR", state)
        .env_remove("XTASK_REGISTRY")
        .env_remove("RUSTFLAGS");
    run(&mut c)
}

fn image_size(reference: &str) -> u64 {
    podman(&["image", "inspect", "--format", "{{.Size}}", reference])
        .ok()
        .stdout
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_django_repository_adopts_the_tool_and_releases_only_what_git_knows() {
    let parent = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let name = unique_name("xtask-adopt");
    let app = django_app(parent.path(), &name);
    let _cleanup = Cleanup(name.clone());
    let lib = repo_root().join("xtask-images");

    let init = run(xtask(&app)
        .env("XTASK_STATE_DIR", state.path())
        .args(["init", "--path"])
        .arg(&lib))
    .ok();
    for file in [
        "Cargo.toml",
        "xtask/Cargo.toml",
        ".cargo/config.toml",
        "docker/images.toml",
    ] {
        assert!(
            init.stdout.contains(&format!("created   {file}")),
            "{}",
            init.stdout
        );
    }
    assert!(
        init.stdout.contains("appended  .gitignore"),
        "{}",
        init.stdout
    );
    // The scaffolded xtask depends on the library by a path relative to it.
    let manifest = std::fs::read_to_string(app.join("xtask/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("xtask-images = { path = \""),
        "{manifest}"
    );
    git_in(&app, &["add", "-A", "--", ".", ":!.env.local"]);
    git_in(&app, &["commit", "-qm", "cargo xtask init"]);
    git_in(&app, &["tag", "v1.0.0"]);

    // The untracked secret is refused by name; nothing is published.
    let refused = cargo_xtask(&app, state.path(), &["release"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains(".env.local"), "{}", refused.stderr);
    assert!(!app.join("target/images").exists());
    // Cargo wrote the lock file of the new xtask: the team commits it.
    git_in(&app, &["add", "Cargo.lock"]);
    git_in(&app, &["commit", "-qm", "lock"]);
    git_in(&app, &["tag", "-f", "v1.0.0"]);

    // The fix the finding gives: keep it out of the image (and out of git).
    let mut ignore = std::fs::read_to_string(app.join(".dockerignore")).unwrap();
    ignore.push_str(".env.local\n");
    std::fs::write(app.join(".dockerignore"), ignore).unwrap();
    let mut gi = std::fs::read_to_string(app.join(".gitignore")).unwrap();
    gi.push_str(".env.local\n");
    std::fs::write(app.join(".gitignore"), gi).unwrap();
    git_in(&app, &["commit", "-qam", "keep local env files out"]);
    git_in(&app, &["tag", "-f", "v1.0.0"]);
    let first = cargo_xtask(&app, state.path(), &["release"]).ok();
    assert!(first.stdout.contains("released 1.0.0"), "{}", first.stdout);
    assert_git_clean(&app);
    let size = image_size(&format!("{name}:1.0.0"));

    // Two more releases: the earlier releases' layouts never enter the next image.
    for (v, body) in [("1.0.1", "v1"), ("1.0.2", "v2")] {
        std::fs::write(
            app.join("shop/views.py"),
            format!("def index(request):\n    return '{body}'\n"),
        )
        .unwrap();
        git_in(&app, &["commit", "-qam", v]);
        git_in(&app, &["tag", &format!("v{v}")]);
        cargo_xtask(&app, state.path(), &["release"]).ok();
        assert_eq!(image_size(&format!("{name}:{v}")), size, "{v}");
        assert_git_clean(&app);
    }

    // From a subdirectory: the project is found above it, and nothing is written there.
    let sub = app.join("shop/sub/dir");
    std::fs::create_dir_all(&sub).unwrap();
    let tags = cargo_xtask(&sub, state.path(), &["tags"]).ok();
    assert!(tags.stdout.lines().any(|l| l == "1.0.2"), "{}", tags.stdout);
    assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    assert_git_clean(&app);

    // Set up already: init changes nothing and says so.
    let again = cargo_xtask(
        &app,
        state.path(),
        &["init", "--path", lib.to_str().unwrap()],
    )
    .ok();
    assert!(
        again.stdout.contains("already set up; nothing changed"),
        "{}",
        again.stdout
    );
    assert_git_clean(&app);
}

/// Removes the images a test named after `.0`, also when it fails half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_images_named(&self.0);
    }
}

#[test]
fn an_xtask_embeds_the_commands_next_to_its_own() {
    // `cargo test` builds the examples beside the test binaries.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/embedded");
    assert!(example.is_file(), "{} was not built", example.display());
    let own = run(Command::new(&example).args(["greet", "--name", "team"])).ok();
    assert_eq!(own.stdout, "hello, team\n");
    let p = Project::new(&[("Dockerfile", "FROM scratch\n")]);
    let ours = run(isolated(&mut Command::new(&example))
        .arg("-C")
        .arg(p.path())
        .env("XTASK_STATE_DIR", p.state.path())
        .args(["tags", "--version", "1.2.3"]))
    .ok();
    assert_eq!(ours.stdout, "1.2.3\n1.2\n1\nlatest\n");
    let help = run(Command::new(&example).arg("--help")).ok();
    assert!(
        help.stdout.contains("release") && help.stdout.contains("greet"),
        "{}",
        help.stdout
    );
}
