//! Helpers for end-to-end tests: run the real binary, drive the real podman, make throwaway
//! projects whose images have unique names and are removed afterwards.
#![allow(dead_code, clippy::disallowed_methods)]

pub mod faultproxy;
pub mod registry;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn run(cmd: &mut Command) -> Out {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The containers-storage configuration of this test process: its own image store under a
/// temporary directory, as a separate CI machine would have. Whatever the tests build, tag or
/// pull stays out of the machine's store (`.ci/run` checks that it holds nothing new after the
/// suite) and goes when the directory does. Stores of earlier runs whose process is gone are
/// removed on the way.
pub fn storage_conf() -> &'static Path {
    static CONF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CONF.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("xtask-test-store-") else {
                    continue;
                };
                let alive = Path::new("/proc").join(pid).exists();
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("xtask-test-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("storage.conf");
        let driver = Command::new("podman")
            .args(["info", "--format", "{{.Store.GraphDriverName}}"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "overlay".into());
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("graph").display(),
                dir.join("run").display()
            ),
        )
        .unwrap();
        conf
    })
}

/// Another machine's image store: a `storage.conf` in `dir` (graph and run root under it),
/// for `CONTAINERS_STORAGE_CONF`.
pub fn store_in(dir: &Path) -> PathBuf {
    let conf = dir.join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            dir.display()
        ),
    )
    .unwrap();
    conf
}

/// `podman` (or anything that reads containers-storage) on this test process's own store.
pub fn isolated(c: &mut Command) -> &mut Command {
    c.env("CONTAINERS_STORAGE_CONF", storage_conf())
}

/// The binary under test, acting on `dir`, with no CI variables leaking in from the host.
pub fn xtask(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.arg("-C").arg(dir);
    isolated(&mut c);
    for var in [
        "GITHUB_REF",
        "CI_MERGE_REQUEST_IID",
        "CI_COMMIT_BRANCH",
        "XTASK_REGISTRY",
        "SOURCE_DATE_EPOCH",
        "GITHUB_ACTIONS",
        "GITHUB_OUTPUT",
        "GITHUB_STEP_SUMMARY",
        "GITLAB_CI",
    ] {
        c.env_remove(var);
    }
    c
}

/// Runs podman; a missing podman fails the test loudly rather than skipping it.
pub fn podman(args: &[&str]) -> Out {
    // `image inspect` reads the parent image too, and fails ("image not known") when another
    // test removes that unnamed cache image meanwhile; the tool asks again, and so do the tests.
    let mut tries = 0;
    loop {
        let mut c = Command::new("podman");
        isolated(&mut c).args(args);
        let out = match c.output() {
            Ok(out) => Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => panic!("podman is required for the end-to-end tests and could not be run ({e}); run `bash .ci/setup`"),
        };
        tries += 1;
        let inspecting = args.contains(&"inspect");
        if out.code == 0 || tries >= 3 || !inspecting || !out.stderr.contains("image not known") {
            return out;
        }
    }
}

/// `c` driving `engine` (`XTASK_ENGINE`): podman, or Docker's daemon.
pub fn with_engine(mut c: Command, engine: &str) -> Command {
    c.env("XTASK_ENGINE", engine);
    c
}

/// The image ID of `reference` in `engine`'s store (podman's, or Docker's daemon), bare.
pub fn image_id_on(engine: &str, reference: &str) -> String {
    if engine == "podman" {
        return image_id(reference);
    }
    let out =
        run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference]))
            .ok();
    out.stdout.trim().trim_start_matches("sha256:").to_string()
}

/// Removes the Docker images whose name contains the given text when dropped, also when a test
/// fails half-way (a [`Project`] removes its podman images itself), and the untagged images the
/// test left (an image a rebuild took the name from): the daemon is shared, and `.ci/run`
/// checks that it holds nothing new after the suite.
pub struct DockerImages {
    text: String,
    before: BTreeSet<String>,
}

impl Drop for DockerImages {
    fn drop(&mut self) {
        self.remove();
        // `rmi` of an untagged image takes its untagged parents with it; a parent shared
        // with another image stays, so this repeats while it makes progress.
        let mut left = usize::MAX;
        loop {
            let new: Vec<String> = untagged_docker_images()
                .into_iter()
                .filter(|i| !self.before.contains(i))
                .collect();
            if new.is_empty() || new.len() >= left {
                break;
            }
            left = new.len();
            let _ = Command::new("docker").arg("rmi").args(&new).output();
        }
    }
}

/// The daemon's untagged images that no other image is built on.
fn untagged_docker_images() -> BTreeSet<String> {
    Command::new("docker")
        .args([
            "images",
            "--quiet",
            "--no-trunc",
            "--filter",
            "dangling=true",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl DockerImages {
    pub fn of(text: impl Into<String>) -> DockerImages {
        DockerImages {
            text: text.into(),
            before: untagged_docker_images(),
        }
    }

    /// Removes the named ones now: the daemon is then as a fresh machine's, for these names.
    pub fn remove(&self) {
        let Ok(out) = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
        else {
            return;
        };
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.text))
            .map(String::from)
            .collect();
        if !names.is_empty() {
            let _ = Command::new("docker")
                .arg("rmi")
                .arg("-f")
                .args(names)
                .output();
        }
    }
}

/// The labels of `reference` in `engine`'s store.
pub fn labels_on(engine: &str, reference: &str) -> serde_json::Map<String, serde_json::Value> {
    if engine == "podman" {
        return labels(reference);
    }
    let out = run(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        reference,
    ]))
    .ok();
    match serde_json::from_str(&out.stdout).expect("labels JSON") {
        serde_json::Value::Object(m) => m,
        other => panic!("labels are not an object: {other}"),
    }
}

/// Fails loudly when `engine` is Docker and no daemon answers: CI must have one.
pub fn require(engine: &str) {
    if engine != "docker" {
        return;
    }
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .expect("docker (the docker.io package; run `bash .ci/setup`)");
    assert!(
        out.status.success(),
        "no Docker daemon answers (`bash .ci/setup` starts one): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn image_id(reference: &str) -> String {
    podman(&["image", "inspect", "--format", "{{.Id}}", reference])
        .ok()
        .stdout
        .trim()
        .to_string()
}

pub fn labels(reference: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Labels}}",
        reference,
    ])
    .ok();
    match serde_json::from_str(&out.stdout).expect("labels JSON") {
        serde_json::Value::Object(m) => m,
        other => panic!("labels are not an object: {other}"),
    }
}

/// A name no other test, run, or leftover uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// `git` in `dir` with a fixed identity and clock, so commits have stable shas.
pub fn git_in(dir: &Path, args: &[&str]) -> Out {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .env("GIT_AUTHOR_NAME", "E2E")
        .env("GIT_AUTHOR_EMAIL", "e2e@example.invalid")
        .env("GIT_COMMITTER_NAME", "E2E")
        .env("GIT_COMMITTER_EMAIL", "e2e@example.invalid")
        .env("GIT_AUTHOR_DATE", "2025-01-15T10:30:00Z")
        .env("GIT_COMMITTER_DATE", "2025-01-15T10:30:00Z");
    run(&mut c).ok()
}

/// A throwaway project in a temp dir whose images are all removed on drop.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub name: String,
    /// The tool's state directory for this project (`XTASK_STATE_DIR`), outside the project as
    /// in real use, and removed with it.
    pub state: tempfile::TempDir,
}

impl Project {
    /// Files are `(path, content)`; `docker/images.toml` gets `[[image]] name = <unique>` unless
    /// the files provide one.
    pub fn new(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name("xtask-e2e");
        let state = tempfile::tempdir().unwrap();
        let p = Project { dir, name, state };
        for (path, content) in files {
            p.write(path, &content.replace("{name}", &p.name));
        }
        if !files.iter().any(|(f, _)| *f == "docker/images.toml") {
            p.write(
                "docker/images.toml",
                &format!("[[image]]\nname = \"{}\"\n", p.name),
            );
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let f = self.path().join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }

    pub fn xtask(&self) -> Command {
        let mut c = xtask(self.path());
        c.env("XTASK_STATE_DIR", self.state.path());
        c
    }

    /// The tool's records of this project (`state.json` in its state directory).
    pub fn state_json(&self) -> serde_json::Value {
        let projects = self.state.path().join("projects");
        let dir = std::fs::read_dir(&projects)
            .unwrap_or_else(|e| panic!("{}: {e}", projects.display()))
            .next()
            .expect("one project directory")
            .unwrap()
            .path();
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json")).unwrap()
    }

    /// `git` in the project with a fixed identity and clock, so commits have stable shas.
    pub fn git(&self, args: &[&str]) -> Out {
        git_in(self.path(), args)
    }
    /// `git init`, commit everything, and tag the commit if `tag` is given. Returns the sha.
    pub fn commit(&self, tag: Option<&str>) -> String {
        if !self.path().join(".git").exists() {
            self.git(&["init", "-q"]);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", "fixture"]);
        if let Some(t) = tag {
            self.git(&["tag", t]);
        }
        self.git(&["rev-parse", "HEAD"]).stdout.trim().to_string()
    }

    pub fn reference(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        remove_images_named(&self.name);
    }
}

/// The private login directories (`xtask-auth-*`) the tool has in `tmp`.
pub fn private_logins(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("xtask-auth-")
        })
        .collect()
}

/// Removes the images of more names than the project's own when dropped (a project's bases).
pub struct RemoveImages(pub Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for n in &self.0 {
            remove_images_named(n);
        }
    }
}

/// The one JSON document a successful command printed.
#[track_caller]
pub fn json(out: Out) -> serde_json::Value {
    serde_json::from_str(&out.ok().stdout).expect("one JSON document")
}

/// The entry of `doc["images"]` named `name`.
#[track_caller]
pub fn image_named<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["images"]
        .as_array()
        .expect("an `images` array")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc}"))
}

/// (stage, step, cached) of every step but `FROM`, which podman never looks up.
pub type Steps = Vec<(u64, u64, bool)>;

/// The steps one image's `plan --json` entry predicts.
pub fn predicted_steps(image_plan: &serde_json::Value) -> Steps {
    image_plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] != 1)
        .map(|s| {
            (
                s["stage"].as_u64().unwrap(),
                s["step"].as_u64().unwrap(),
                s["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The steps podman's own output shows: `[s/S] STEP n/N: …` and `--> Using cache …` lines.
pub fn observed_steps(build_output: &str) -> Steps {
    let mut out: Steps = Vec::new();
    for line in build_output.lines() {
        let (stage, rest) = match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((s, rest)) => (s.split('/').next().unwrap().parse().unwrap(), rest),
            None => (1, line),
        };
        if let Some(r) = rest.strip_prefix("STEP ") {
            let n: u64 = r.split('/').next().unwrap().parse().unwrap();
            out.push((stage, n, false));
        } else if line.starts_with("--> Using cache ") {
            out.last_mut().expect("a step before its cache line").2 = true;
        }
    }
    out.retain(|s| s.1 != 1);
    out
}

/// The part of a command's stderr that is `image`'s `podman build` (echoed as `$ podman
/// build … -t IMAGE:TAG …`) and its output.
#[track_caller]
pub fn build_output_of<'a>(stderr: &'a str, image: &str) -> &'a str {
    stderr
        .split("$ podman build")
        .find(|b| {
            b.lines()
                .next()
                .unwrap_or("")
                .contains(&format!(" -t {image}:"))
        })
        .unwrap_or_else(|| panic!("no build of {image} in:\n{stderr}"))
}

/// Removes every name `…/NAME:TAG` or `NAME:TAG`, manifest lists first (`rmi` refuses their
/// names); an image only goes when its last name does, so images other tests share by content
/// are untouched.
pub fn remove_images_named(name: &str) {
    // `podman images` fails when another process deletes an image while it lists; try again.
    // It also fails for good on a manifest list whose instance is gone (a podman 4.3 bug a
    // killed run can leave behind); the error names the list, and `manifest rm ID` repairs it.
    let listing = (0..5).find_map(|_| {
        let out = isolated(&mut Command::new("podman"))
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .ok()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if let Some(id) = err
                .split("for image with ID \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            {
                let _ = isolated(&mut Command::new("podman"))
                    .args(["manifest", "rm", id])
                    .output();
            }
        }
        out.status.success().then_some(out)
    });
    let Some(out) = listing else {
        eprintln!("warning: could not list images to remove those named {name}");
        return;
    };
    let suffix = format!("/{name}:");
    let ours: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&suffix) || l.starts_with(&format!("{name}:")))
        .map(str::to_string)
        .collect();
    let is_list = |n: &String| {
        let status = isolated(&mut Command::new("podman"))
            .args(["manifest", "exists", n])
            .output();
        status.is_ok_and(|o| o.status.success())
    };
    let (lists, images): (Vec<String>, Vec<String>) = ours.into_iter().partition(is_list);
    for l in &lists {
        let _ = isolated(&mut Command::new("podman"))
            .args(["manifest", "rm", l])
            .output();
    }
    // Storage locks can make a removal fail transiently; a leftover name is said, not hidden.
    for attempt in 0..2 {
        if images.is_empty() {
            break;
        }
        match isolated(&mut Command::new("podman"))
            .arg("rmi")
            .args(&images)
            .output()
        {
            Ok(o) if o.status.success() => break,
            Ok(o) if attempt == 1 => {
                eprintln!(
                    "warning: could not remove {images:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                )
            }
            _ => {}
        }
    }
}

/// The workspace root (this crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Compares with `tests/golden/NAME`; `UPDATE_GOLDEN=1` rewrites the file instead.
#[track_caller]
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {}; UPDATE_GOLDEN=1 accepts it",
        path.display()
    );
}

/// Held by a test for its whole run so the tests of one binary run one at a time: podman 4.3's
/// `build --layers` reads every image's layers while looking for a cache hit and fails ("layer
/// not known") when another test removes an image at that moment.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
