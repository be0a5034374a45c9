//! End-to-end: cache keys against what podman really does. A fixture goes through a sequence
//! of edits; after each, `plan --json` must predict, step by step, exactly the steps that
//! `build --force` then shows podman taking from its layer cache (`--> Using cache`).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

const DOCKERFILE: &str = r#"FROM scratch AS unused
COPY run.sh /unused.sh

FROM scratch AS tools
COPY nonce /nonce
COPY busybox /bin/busybox
ARG GREETING=hello
ENV SAID=$GREETING
RUN ["/bin/busybox", "sh", "-c", "echo $GREETING > /greeting"]

FROM scratch AS app
COPY nonce /nonce
WORKDIR /srv
COPY app/ app/

FROM scratch
COPY nonce /nonce
COPY --from=tools /greeting /greeting
COPY --from=app /srv/app /app
COPY run.sh /run.sh
CMD ["/run.sh"]
"#;

fn predicted(plan: &Value) -> Steps {
    predicted_steps(&plan["images"][0])
}

struct Fixture {
    p: Project,
    /// Directory with a `podman` that logs its arguments, then runs the real one.
    shim: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let nonce = unique_name("nonce");
        let p = Project::new(&[
            ("Dockerfile", DOCKERFILE),
            ("nonce", &nonce),
            ("run.sh", "#!/bin/busybox sh\necho hi\n"),
            ("app/main.py", "print('hello')\n"),
            ("app/util.py", "X = 1\n"),
            (".dockerignore", "app/*.log\nnotes/\n"),
        ]);
        std::fs::copy("/bin/busybox", p.path().join("busybox"))
            .expect("/bin/busybox (busybox-static; run `bash .ci/setup`)");
        let shim = tempfile::tempdir().unwrap();
        let real = run(Command::new("sh").args(["-c", "command -v podman"])).ok();
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> {}/log\nexec {} \"$@\"\n",
            shim.path().display(),
            real.stdout.trim()
        );
        let wrapper = shim.path().join("podman");
        std::fs::write(&wrapper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { p, shim }
    }

    fn xtask(&self, args: &[&str]) -> Out {
        let path = format!(
            "{}:{}",
            self.shim.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run(self.p.xtask().args(args).env("PATH", path))
    }

    fn podman_calls(&self) -> String {
        std::fs::read_to_string(self.shim.path().join("log")).unwrap_or_default()
    }

    fn forget_podman_calls(&self) {
        let _ = std::fs::remove_file(self.shim.path().join("log"));
    }

    fn plan(&self, extra: &[&str]) -> Value {
        let out = self.xtask(&[&["--json", "plan"], extra].concat()).ok();
        serde_json::from_str(&out.stdout).expect("plan --json")
    }

    /// Plans, builds with `--force`, and checks the plan against podman. Returns the plan.
    #[track_caller]
    fn step(&self, what: &str, extra: &[&str]) -> Value {
        let plan = self.plan(extra);
        let out = self.xtask(&[&["build", "--force"], extra].concat()).ok();
        let seen = observed_steps(&out.stderr);
        assert!(!seen.is_empty(), "{what}: no STEP lines in\n{}", out.stderr);
        assert_eq!(
            predicted(&plan),
            seen,
            "{what}: plan (left) and podman (right) disagree\nplan: {plan:#}\nbuild:\n{}",
            out.stderr
        );
        plan
    }

    fn write(&self, rel: &str, content: &str) {
        self.p.write(rel, content);
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.p.path().join(rel)
    }
}

/// The reason `plan` gives for the step running `instruction`.
fn reason<'a>(plan: &'a Value, instruction: &str) -> &'a str {
    plan["images"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instruction"] == instruction)
        .and_then(|s| s["reason"].as_str())
        .unwrap_or("")
}

fn uncached(plan: &Value) -> Vec<String> {
    plan["images"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] != 1 && s["cached"] == false)
        .map(|s| s["instruction"].as_str().unwrap().to_string())
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn plan_predicts_podman_through_a_sequence_of_edits() {
    let f = Fixture::new();
    f.p.commit(None);

    let first = f.step("first build", &[]);
    // Podman skips the stage the target does not use, and so does the plan.
    assert!(!first.to_string().contains("unused.sh"));
    assert_eq!(first["images"][0]["action"], "build");
    assert_eq!(reason(&first, "COPY nonce /nonce"), "not built before");

    let same = f.step("nothing changed", &[]);
    assert!(uncached(&same).is_empty());
    // Without --force, nothing changed means no podman command at all.
    assert_eq!(f.plan(&[])["images"][0]["action"], "up-to-date");
    f.forget_podman_calls();
    let noop = f.xtask(&["--json", "build"]).ok();
    assert_eq!(f.podman_calls(), "", "a no-op build ran podman");
    let report: Value = serde_json::from_str(&noop.stdout).unwrap();
    assert_eq!(report["images"][0]["status"], "up-to-date");
    assert_eq!(report["images"][0]["key"], same["images"][0]["key"]);
    // A missing tag is put back without a build.
    let tags = report["images"][0]["tags"].as_array().unwrap();
    let tag = tags.last().and_then(Value::as_str).expect("a tag");
    podman(&["untag", &f.p.reference(tag), &f.p.reference(tag)]).ok();
    assert_eq!(f.plan(&[])["images"][0]["action"], "retag");
    f.forget_podman_calls();
    let re = f.xtask(&["--json", "build"]).ok();
    let calls = f.podman_calls();
    assert!(
        !calls.is_empty() && calls.lines().all(|l| l.starts_with("tag ")),
        "retag ran more than `podman tag`: {calls}"
    );
    assert!(re.stdout.contains("\"retagged\""), "{}", re.stdout);
    assert!(podman(&["image", "exists", &f.p.reference(tag)]).code == 0);

    // mtime only: podman reuses everything.
    run(Command::new("touch")
        .args(["-d", "2031-01-01 00:00:00"])
        .arg(f.path("app/main.py")))
    .ok();
    assert!(uncached(&f.step("touch", &[])).is_empty());

    f.write("app/main.py", "print('edited')\n");
    let edit = f.step("content edit", &[]);
    assert_eq!(
        reason(&edit, "COPY app/ app/"),
        "app/main.py: content changed"
    );
    assert!(!uncached(&edit).contains(&"COPY --from=tools /greeting /greeting".to_string()));

    chmod(&f.path("app/main.py"), 0o755);
    let m = f.step("chmod", &[]);
    assert_eq!(reason(&m, "COPY app/ app/"), "app/main.py: mode 644 → 755");

    f.write("app/new.py", "NEW = 1\n");
    let added = f.step("new file", &[]);
    assert_eq!(reason(&added, "COPY app/ app/"), "app/new.py: added");

    // Back to the files of two builds ago: podman reuses that chain, and the plan says so.
    std::fs::remove_file(f.path("app/new.py")).unwrap();
    assert!(uncached(&f.step("removed file", &[])).is_empty());

    f.write("app/debug.log", "noise\n");
    f.write("notes/todo.txt", "later\n");
    assert!(uncached(&f.step("ignored files edited", &[])).is_empty());

    // An empty directory and a FIFO are copied too: podman rebuilds, and so does the plan.
    std::fs::create_dir(f.path("app/uploads")).unwrap();
    let dir = f.step("empty directory added", &[]);
    assert_eq!(reason(&dir, "COPY app/ app/"), "app/uploads: added");
    run(Command::new("mkfifo").arg(f.path("app/events"))).ok();
    let fifo = f.step("FIFO added", &[]);
    assert_eq!(reason(&fifo, "COPY app/ app/"), "app/events: added");
    std::fs::remove_file(f.path("app/events")).unwrap();
    std::fs::remove_dir(f.path("app/uploads")).unwrap();
    // Back to the tree of the build before: podman reuses it, as the plan says.
    assert!(uncached(&f.step("empty directory and FIFO removed", &[])).is_empty());

    let arg = f.step("build arg changed", &["--build-arg", "GREETING=bye"]);
    let u = uncached(&arg);
    assert!(!u.contains(&"ARG GREETING=hello".to_string()), "{u:?}");
    assert!(u.contains(&"COPY --from=tools /greeting /greeting".to_string()));
    // The app stage does not use the argument; the last stage rebuilds from the first miss on.
    assert!(!u.contains(&"COPY app/ app/".to_string()), "{u:?}");
    assert_eq!(
        reason(
            &arg,
            "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING > /greeting\"]"
        ),
        "build arg GREETING: hello → bye"
    );
    // Podman compares `ENV`'s text, not its substituted value: the ENV step stays cached.
    assert!(!u.contains(&"ENV SAID=$GREETING".to_string()), "{u:?}");
    assert!(uncached(&f.step("build arg reverted", &[])).is_empty());

    // An ARG's default edited in the Dockerfile: the ARG step is keyed by names only.
    f.write(
        "Dockerfile",
        &DOCKERFILE.replace("ARG GREETING=hello", "ARG GREETING=hey"),
    );
    let def = f.step("ARG default edited", &[]);
    let u = uncached(&def);
    assert!(!u.contains(&"ARG GREETING=hey".to_string()), "{u:?}");
    assert_eq!(
        reason(
            &def,
            "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING > /greeting\"]"
        ),
        "build arg GREETING: hello → hey"
    );

    f.write(
        "Dockerfile",
        &DOCKERFILE.replace("CMD [\"/run.sh\"]", "CMD [\"/run.sh\", \"-v\"]"),
    );
    let df = f.step("Dockerfile edited", &[]);
    let u = uncached(&df);
    assert_eq!(u[0], "CMD [\"/run.sh\", \"-v\"]");
    assert!(u[1..].iter().all(|s| s.starts_with("LABEL ")), "{u:?}");
    assert_eq!(
        reason(&df, "CMD [\"/run.sh\", \"-v\"]"),
        "instruction edited: `CMD [\"/run.sh\"]` → `CMD [\"/run.sh\", \"-v\"]`"
    );

    // The step images this test made, named or not, go with it.
    let state: Value = f.p.state_json();
    drop(f);
    let ids: Vec<&str> = state["steps"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_str)
        .collect();
    for id in ids {
        let _ = podman(&["rmi", "--force", id]);
    }
}

#[test]
fn a_broken_dockerfile_is_reported_with_its_line_before_podman_runs() {
    let p = Project::new(&[("Dockerfile", "FROM scratch\n\nCOPY only-one\n")]);
    for cmd in ["plan", "build"] {
        let out = run(p.xtask().arg(cmd));
        assert_eq!(out.code, 2, "{cmd}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("Dockerfile:3: COPY needs at least one source and a destination"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("podman build"), "{}", out.stderr);
    }
}

#[test]
fn a_rebuilt_base_image_rebuilds_everything_and_says_why() {
    let base = unique_name("xtask-e2e-base");
    let p = Project::new(&[
        (
            "Dockerfile",
            &format!("FROM {base}:1\nCOPY a.txt /a.txt\nCMD [\"/x\"]\n"),
        ),
        ("a.txt", "a\n"),
        ("base/Dockerfile", "FROM scratch\nCOPY b.txt /b.txt\n"),
        ("base/b.txt", &unique_name("one")),
    ]);
    let base_dir = p.path().join("base");
    let make_base = |content: &str| {
        std::fs::write(base_dir.join("b.txt"), content).unwrap();
        let out = run(support::isolated(&mut Command::new("podman"))
            .args(["build", "-q", "-t", &format!("{base}:1")])
            .arg(&base_dir));
        assert_eq!(out.code, 0, "{}", out.stderr);
    };
    make_base(&unique_name("one"));
    p.commit(None);
    run(p.xtask().args(["build"])).ok();
    let plan = |p: &Project| -> Value {
        serde_json::from_str(&run(p.xtask().args(["--json", "plan"])).ok().stdout).unwrap()
    };
    assert_eq!(plan(&p)["images"][0]["action"], "up-to-date");

    make_base(&unique_name("two"));
    let changed = plan(&p);
    assert_eq!(changed["images"][0]["action"], "build");
    assert_eq!(
        reason(&changed, "COPY a.txt /a.txt"),
        format!("base image `{base}:1` changed")
    );
    let out = run(p.xtask().args(["build", "--force"])).ok();
    assert_eq!(
        predicted(&changed),
        observed_steps(&out.stderr),
        "{}",
        out.stderr
    );
    let _ = podman(&["rmi", "--force", &format!("{base}:1")]);
}

#[test]
fn a_changed_bind_mount_is_said_where_podman_reuses_the_step() {
    // Podman 4.3 keys `RUN --mount=type=bind` by its text only: after `uv.lock` changes it
    // reuses the step and the image keeps the old dependencies. Plan and check say so.
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN --mount=type=bind,source=uv.lock,target=/uv.lock [\"/bin/busybox\", \"cp\", \"/uv.lock\", \"/deps\"]\nCMD [\"/bin/busybox\", \"cat\", \"/deps\"]\n",
        ),
        ("uv.lock", "django==5.0\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox")).expect("a static /bin/busybox");
    run(p.xtask().args(["build", "--version", "1.0.0"])).ok();
    // Every step image this test makes, to remove them at the end.
    let mut ids = std::collections::BTreeSet::new();
    let mut remember = |p: &Project| {
        ids.extend(
            p.state_json()["steps"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|v| v.as_str().map(str::to_string)),
        )
    };
    remember(&p);
    p.write("uv.lock", "django==5.1\n");
    let plan: Value = serde_json::from_str(
        &run(p.xtask().args(["--json", "plan", "--version", "1.0.0"]))
            .ok()
            .stdout,
    )
    .unwrap();
    let step = &plan["images"][0]["steps"][2];
    assert_eq!(step["cached"], true, "{plan:#}");
    let note = step["note"].as_str().unwrap_or_default();
    assert!(note.contains("although `uv.lock` changed"), "{plan:#}");
    // Podman agrees that it reuses the step, and the image really is stale.
    let built = run(p.xtask().args(["build", "--force", "--version", "1.0.0"])).ok();
    assert_eq!(
        observed_steps(&built.stderr)
            .iter()
            .find(|(_, step, _)| *step == 3)
            .map(|s| s.2),
        Some(true),
        "{}",
        built.stderr
    );
    let deps = podman(&["run", "--rm", &p.reference("1.0.0")]).ok().stdout;
    assert_eq!(deps, "django==5.0\n");
    let check = run(p.xtask().args(["--json", "check"]));
    let v: Value = serde_json::from_str(&check.stdout).unwrap();
    let stale: Vec<&Value> = v["images"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "stale_bind")
        .collect();
    assert_eq!(stale.len(), 1, "{v:#}");
    assert_eq!(stale[0]["line"], 3);
    // Rebuilt without the cache, the step is current again and nothing more is said.
    run(p
        .xtask()
        .args(["build", "--no-cache", "--version", "1.0.0"]))
    .ok();
    let deps = podman(&["run", "--rm", &p.reference("1.0.0")]).ok().stdout;
    assert_eq!(deps, "django==5.1\n");
    let plan: Value = serde_json::from_str(
        &run(p.xtask().args(["--json", "plan", "--version", "1.0.0"]))
            .ok()
            .stdout,
    )
    .unwrap();
    assert!(plan["images"][0]["steps"][2]["note"].is_null(), "{plan:#}");
    let v: Value = serde_json::from_str(&run(p.xtask().args(["--json", "check"])).stdout).unwrap();
    assert!(!v.to_string().contains("stale_bind"), "{v:#}");
    remember(&p);
    drop(p);
    for id in ids {
        let _ = podman(&["rmi", "--force", &id]);
    }
}

#[test]
fn a_copy_from_a_stage_that_does_not_exist_is_refused_before_podman() {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch AS build\nCOPY a /a\nFROM scratch\nCOPY --from=biuld /a /a\n",
        ),
        ("a", "x"),
    ]);
    for cmd in ["plan", "build"] {
        let out = run(p.xtask().args([cmd, "--version", "1.0.0"]));
        assert_eq!(out.code, 2, "{cmd}: {}", out.stderr);
        assert!(
            out.stderr.contains("no stage is named `biuld`"),
            "{cmd}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("STEP 1"), "podman ran: {}", out.stderr);
    }
    let out = run(p.xtask().arg("check"));
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "error: Dockerfile:4: `COPY --from=biuld /a /a`: no stage above it is named `biuld`"
        ),
        "{}",
        out.stdout
    );
}

/// Built by someone else: every instruction kind whose history line the tool predicts, and
/// `COPY` sources of every shape (a file, a directory with an ignored file, a symlink, a hard
/// link, an empty directory, long and non-ASCII names, a renamed file, several sources,
/// `--chown`, `--chmod`, a relative destination).
const FOREIGN: &str = r#"FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]
ARG GREETING=hello
ENV SAID=$GREETING \
    OTHER=x
WORKDIR /srv
COPY app/ app/
COPY run.sh ./
COPY --chown=0:0 conf.txt /etc/app.conf
COPY --chown=1000:1000 --chmod=750 run.sh /run2.sh
COPY conf.txt run.sh /many/
RUN /bin/busybox echo "$GREETING" > /greeting
LABEL stage=final
CMD ["/srv/run.sh"]
"#;

/// A project holding [`FOREIGN`]'s files, in a directory of its own.
fn foreign_project() -> Project {
    let p = Project::new(&[
        ("Dockerfile", FOREIGN),
        ("app/main.py", "print('hello')\n"),
        ("app/util.py", "X = 1\n"),
        ("app/debug.log", "not sent\n"),
        ("run.sh", "#!/bin/sh\necho hi\n"),
        ("conf.txt", "key = value\n"),
        (".dockerignore", "app/*.log\n"),
    ]);
    std::os::unix::fs::symlink("main.py", p.path().join("app/link.py")).unwrap();
    // Names Go's tar writer packs in other ways: not ASCII, or longer than 100 bytes, split
    // at a `/` (USTAR) or not (PAX).
    p.write("app/café.py", "x = 'é'\n");
    p.write(&format!("app/{}/{}.py", "d".repeat(60), "e".repeat(60)), "");
    p.write(&format!("app/{}.py", "f".repeat(120)), "");
    chmod(&p.path().join("run.sh"), 0o755);
    untracked(p.path());
    p.commit(None);
    p
}

/// What git does not carry: the busybox binary, an empty directory, a hard link.
fn untracked(dir: &Path) {
    std::fs::copy("/bin/busybox", dir.join("busybox")).expect("static /bin/busybox");
    std::fs::create_dir_all(dir.join("app/empty")).unwrap();
    let _ = std::fs::remove_file(dir.join("app/main-link.py"));
    std::fs::hard_link(dir.join("app/main.py"), dir.join("app/main-link.py")).unwrap();
}

/// Plans a project that has never built anything (no records), builds it, and checks that
/// every step's `cached` is podman's `Using cache`; returns the plan.
#[track_caller]
fn plan_matches_podman(p: &Project, store: &Path, what: &str) -> Value {
    let plan: Value = serde_json::from_str(
        &run(p
            .xtask()
            .env("CONTAINERS_STORAGE_CONF", store)
            .args(["--json", "plan"]))
        .ok()
        .stdout,
    )
    .unwrap();
    let out = run(p
        .xtask()
        .env("CONTAINERS_STORAGE_CONF", store)
        .args(["build", "--force"]))
    .ok();
    assert_eq!(
        predicted(&plan),
        observed_steps(&out.stderr),
        "{what}: plan (left) and podman (right) disagree\nplan: {plan:#}\nbuild:\n{}",
        out.stderr
    );
    plan
}

fn cached_elsewhere(plan: &Value) -> usize {
    plan["images"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("layer built elsewhere"))
        })
        .count()
}

/// A store of its own (the directory, and its `storage.conf`) holding [`FOREIGN`] built with
/// plain `podman build` as `foreign:1`: no records of the tool anywhere.
fn foreign_store() -> (tempfile::TempDir, PathBuf) {
    let machine = tempfile::tempdir().unwrap();
    let store = support::store_in(machine.path());
    let first = foreign_project();
    let out = run(Command::new("podman")
        .env("CONTAINERS_STORAGE_CONF", &store)
        .args(["build", "--layers", "-q", "-t", "foreign:1"])
        .arg(first.path()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    (machine, store)
}

#[test]
fn plan_predicts_layers_that_plain_podman_or_another_checkout_built() {
    let (_machine, store) = foreign_store();

    // The same files in another directory: every step of the Dockerfile is podman's cache.
    let same = foreign_project();
    let plan = plan_matches_podman(&same, &store, "same files");
    // Every instruction after FROM (the labels the tool adds come after them).
    let body = FOREIGN.lines().filter(|l| !l.starts_with(' ')).count() - 1;
    assert!(cached_elsewhere(&plan) >= body, "{plan:#}");

    // One byte, a mode, only an mtime: each in a fresh checkout, against the same store.
    let byte = foreign_project();
    byte.write("app/util.py", "X = 2\n");
    let plan = plan_matches_podman(&byte, &store, "one byte");
    assert!(
        reason(&plan, "COPY app/ app/").contains("no image in storage"),
        "{plan:#}"
    );
    let mode = foreign_project();
    chmod(&mode.path().join("conf.txt"), 0o600);
    let plan = plan_matches_podman(&mode, &store, "a mode");
    assert_eq!(
        reason(&plan, "COPY --chown=0:0 conf.txt /etc/app.conf"),
        "no image in storage adds this step to the image it builds on",
        "{plan:#}"
    );
    let mtime = foreign_project();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(mtime.path().join("app/main.py"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let plan = plan_matches_podman(&mtime, &store, "an mtime");
    assert!(cached_elsewhere(&plan) >= body, "{plan:#}");

    // On a base image: its `WorkingDir` places a relative destination, and its `Env` does not
    // override an `ARG` of the same name in a `RUN`'s line (a stage's own `ENV` does).
    // A HEALTHCHECK makes the tool build in Docker's format, which an OCI image of the same
    // steps does not serve (and the other way round).
    let derived = |dir: &Path, docker: bool| {
        let health = if docker {
            "HEALTHCHECK CMD [\"/bin/busybox\", \"true\"]\n"
        } else {
            ""
        };
        std::fs::write(
            dir.join("Dockerfile"),
            format!("FROM foreign:1\nARG SAID=from-arg\nCOPY conf.txt extra.conf\nRUN echo \"$SAID\" > /said\n{health}"),
        )
        .unwrap();
        std::fs::write(dir.join("conf.txt"), "derived\n").unwrap();
    };
    for docker in [false, true] {
        let plain = tempfile::tempdir().unwrap();
        derived(plain.path(), docker);
        // Both formats of each Dockerfile are in the store.
        for format in ["oci", "docker"] {
            let out = run(Command::new("podman")
                .env("CONTAINERS_STORAGE_CONF", &store)
                .args(["build", "--layers", "-q", "--format", format, "-t"])
                .arg(format!("derived-{format}:{docker}"))
                .arg(plain.path()));
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
    }
    let lines = run(Command::new("podman")
        .env("CONTAINERS_STORAGE_CONF", &store)
        .args([
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "derived-oci:false",
        ]))
    .ok()
    .stdout;
    assert!(
        lines.contains("|1 SAID=from-arg /bin/sh -c echo"),
        "{lines}"
    );
    assert!(lines.contains(" in extra.conf "), "{lines}");
    for docker in [false, true] {
        let p = Project::new(&[]);
        derived(p.path(), docker);
        p.commit(None);
        let plan = plan_matches_podman(&p, &store, &format!("on a base image, docker {docker}"));
        assert!(cached_elsewhere(&plan) >= 3, "docker {docker}: {plan:#}");
    }

    // Built by the tool in one checkout, planned in a clone: its labels are the same too, so
    // every step, labels included, is reused.
    let tool = foreign_project();
    run(tool
        .xtask()
        .env("CONTAINERS_STORAGE_CONF", &store)
        .arg("build"))
    .ok();
    let clone = tempfile::tempdir().unwrap();
    git_in(
        clone.path(),
        &["clone", "-q", tool.path().to_str().unwrap(), "."],
    );
    untracked(clone.path());
    let state = tempfile::tempdir().unwrap();
    let plan: Value = serde_json::from_str(
        &run(xtask(clone.path())
            .env("CONTAINERS_STORAGE_CONF", &store)
            .env("XTASK_STATE_DIR", state.path())
            .args(["--json", "plan"]))
        .ok()
        .stdout,
    )
    .unwrap();
    let steps = plan["images"][0]["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["cached"] == true),
        "a clone of a checkout the tool built: {plan:#}"
    );
}

/// Where podman's files cannot be read (a store inside a VM), the store is read through
/// `podman image inspect` (`XTASK_STORE=podman` forces it): the plan is the same, and it is
/// podman's.
#[test]
fn the_store_read_through_podman_predicts_the_same() {
    let (_machine, store) = foreign_store();
    let plan_of = |p: &Project, through_podman: bool| -> (Value, String) {
        let mut c = p.xtask();
        c.env("CONTAINERS_STORAGE_CONF", &store);
        if through_podman {
            c.env("XTASK_STORE", "podman");
        }
        let out = run(c.args(["-v", "--json", "plan"])).ok();
        (serde_json::from_str(&out.stdout).unwrap(), out.stderr)
    };
    for edit in [None, Some("X = 2\n")] {
        let p = foreign_project();
        if let Some(text) = edit {
            p.write("app/util.py", text);
        }
        let (files, _) = plan_of(&p, false);
        let (inspected, said) = plan_of(&p, true);
        assert!(said.contains("$ podman image inspect"), "{said}");
        assert_eq!(
            inspected["images"][0]["steps"], files["images"][0]["steps"],
            "{edit:?}"
        );
        let out = run(p
            .xtask()
            .env("CONTAINERS_STORAGE_CONF", &store)
            .env("XTASK_STORE", "podman")
            .args(["build", "--force"]))
        .ok();
        assert_eq!(
            predicted(&inspected),
            observed_steps(&out.stderr),
            "{edit:?}: plan (left) and podman (right) disagree\n{}",
            out.stderr
        );
        if edit.is_none() {
            assert!(cached_elsewhere(&inspected) > 5, "{inspected:#}");
        }
    }
}
