//! `push`, `release` and `rollback` end to end, against a real registry (`docker-registry` from
//! Debian, on 127.0.0.1 with htpasswd auth, one per test) and the default OCI layout.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::registry::{Registry, USER};
use support::{image_id_on, run, unique_name, with_engine, DockerImages, Out, Project};

fn project() -> Project {
    Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nLABEL xtask.e2e={name}\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n",
        ),
        ("hello.txt", "v0\n"),
    ])
}

/// Commits new content and tags it.
fn release_commit(p: &Project, version: &str) {
    p.write("hello.txt", &format!("{version}\n"));
    p.commit(Some(&format!("v{version}")));
}

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr:\n{}", out.stdout, out.stderr))
}

/// `reg.xtask(p)` driving `engine`, with the daemon checked when it is Docker's.
fn on(engine: &str, reg: &Registry, p: &Project) -> Command {
    support::require(engine);
    with_engine(reg.xtask(p), engine)
}

#[test]
fn a_release_puts_every_tag_at_the_tested_digest_and_a_rerun_pushes_nothing() {
    release_puts_every_tag("podman");
}

#[test]
fn a_release_with_docker_puts_every_tag_at_the_tested_digest_and_a_rerun_pushes_nothing() {
    release_puts_every_tag("docker");
}

fn release_puts_every_tag(engine: &str) {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    let _docker = DockerImages::of(p.name.clone());
    release_commit(&p, "1.0.0");
    let out = run(on(engine, &reg, &p).args(["--json", "release"])).ok();
    let v = json(&out);
    let img = &v["images"][0];
    let digest = img["digest"].as_str().unwrap();
    let tested = v["tests"][0]["id"].as_str().unwrap();
    assert_eq!(img["image_id"], tested, "pushed image is the tested one");
    assert_eq!(tested, image_id_on(engine, &p.reference("1.0.0")));
    let sha7 = p
        .git(&["rev-parse", "--short=7", "HEAD"])
        .stdout
        .trim()
        .to_string();
    let mut want = vec!["1", "1.0", "1.0.0", "20250115", "latest", sha7.as_str()];
    want.sort();
    assert_eq!(reg.tags(&p.name), want);
    for t in &want {
        assert_eq!(reg.digest(&p.name, t).as_deref(), Some(digest), "tag {t}");
    }
    assert_eq!(
        img["pinned"],
        format!("{}/{}:1.0.0@{digest}", reg.registry(), p.name)
    );
    assert!(
        !out.stderr.contains(&reg.password),
        "password leaked: {}",
        out.stderr
    );

    // Re-run: nothing rebuilt into another image, nothing pushed again.
    let again = json(&run(on(engine, &reg, &p).args(["--json", "release"])).ok());
    let actions: Vec<&str> = again["images"][0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap())
        .collect();
    assert!(actions.iter().all(|a| *a == "already_there"), "{actions:?}");
}

#[test]
fn with_no_registry_the_release_goes_to_an_oci_layout() {
    release_to_layout("podman");
}

#[test]
fn with_no_registry_a_release_with_docker_goes_to_an_oci_layout() {
    release_to_layout("docker");
}

fn release_to_layout(engine: &str) {
    let _serial = support::serial();
    support::require(engine);
    let p = project();
    let _docker = DockerImages::of(p.name.clone());
    release_commit(&p, "0.1.0");
    let mut c = with_engine(p.xtask(), engine);
    c.args(["--json", "release"]);
    let v = json(&run(&mut c).ok());
    let digest = v["images"][0]["digest"].as_str().unwrap().to_string();
    let layout = p.path().join("target/images").join(&p.name);
    for tag in ["0.1.0", "0.1", "latest"] {
        let out = run(Command::new("skopeo").args([
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("oci:{}:{tag}", layout.display()),
        ]))
        .ok();
        assert_eq!(out.stdout.trim(), digest, "{tag}");
    }
    assert!(v["images"][0]["pinned"]
        .as_str()
        .unwrap()
        .starts_with(&format!("oci:{}:0.1.0", layout.display())));
}

#[test]
fn a_wrong_password_fails_fast_and_pushes_nothing() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    release_commit(&p, "1.0.0");
    let wrong = unique_name("wrong-password");
    let out = run(reg
        .xtask(&p)
        .args(["release", "--attempts", "5"])
        .env("XTASK_REGISTRY_PASSWORD", &wrong));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "login to 127.0.0.1:{} as `alice` failed",
            reg.port
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("invalid username/password"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains(&wrong), "password leaked:\n{text}");
    }
    assert!(reg.tags(&p.name).is_empty());
}

#[test]
fn a_published_version_with_other_content_is_refused() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    release_commit(&p, "1.0.0");
    run(reg.xtask(&p).arg("release")).ok();
    let before = reg.digest(&p.name, "1.0.0").unwrap();
    p.write("hello.txt", "other content\n");
    p.commit(None);
    let out = run(reg.xtask(&p).args(["release", "--version", "1.0.0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to publish"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&before),
        "names the published digest: {}",
        out.stderr
    );
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(
        reg.digest(&p.name, "1.0.0").unwrap(),
        before,
        "registry unchanged"
    );
    assert_eq!(reg.digest(&p.name, "latest").unwrap(), before);
}

#[test]
fn floating_tags_only_move_forward_and_rollback_moves_them_back() {
    floating_tags_forward("podman");
}

#[test]
fn with_docker_floating_tags_only_move_forward_and_rollback_moves_them_back() {
    floating_tags_forward("docker");
}

fn floating_tags_forward(engine: &str) {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    let _docker = DockerImages::of(p.name.clone());
    let mut digests = std::collections::BTreeMap::new();
    for v in ["1.0.0", "1.1.0", "1.0.1"] {
        release_commit(&p, v);
        let out = json(&run(on(engine, &reg, &p).args(["--json", "release"])).ok());
        digests.insert(v, out["images"][0]["digest"].as_str().unwrap().to_string());
    }
    let at = |tag: &str| reg.digest(&p.name, tag).unwrap();
    assert_eq!(at("latest"), digests["1.1.0"]);
    assert_eq!(at("1"), digests["1.1.0"]);
    assert_eq!(at("1.1"), digests["1.1.0"]);
    assert_eq!(at("1.0"), digests["1.0.1"]);

    // Default: the release before the one `latest` holds (1.1.0 → 1.0.1).
    let out = json(&run(on(engine, &reg, &p).args(["--json", "rollback"])).ok());
    assert_eq!(out["images"][0]["from"], "1.1.0");
    assert_eq!(out["images"][0]["to"], "1.0.1");
    assert_eq!(at("latest"), digests["1.0.1"]);
    assert_eq!(at("1"), digests["1.0.1"]);
    assert_eq!(at("1.0"), digests["1.0.1"]);
    assert_eq!(at("1.1.0"), digests["1.1.0"], "versions never move");

    let out = run(on(engine, &reg, &p).args(["rollback", "--to", "1.0.0"])).ok();
    assert!(out.stdout.contains("to 1.0.0"), "{}", out.stdout);
    assert_eq!(at("latest"), digests["1.0.0"]);
    assert_eq!(at("1.0"), digests["1.0.0"]);
    // The local name follows.
    assert_eq!(
        image_id_on(engine, &p.reference("latest")),
        image_id_on(engine, &p.reference("1.0.0"))
    );
}

#[test]
fn a_dirty_tree_is_refused() {
    let _serial = support::serial();
    let p = project();
    release_commit(&p, "1.0.0");
    p.write("hello.txt", "uncommitted\n");
    let out = run(p.xtask().arg("release"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("uncommitted changes"), "{}", out.stderr);
    assert!(!p.path().join("target/images").exists());
}

#[test]
fn a_release_interrupted_by_the_registry_completes_when_run_again() {
    let _serial = support::serial();
    let mut reg = Registry::start();
    let p = project();
    release_commit(&p, "2.0.0");
    reg.stop();
    let out = run(reg.xtask(&p).args(["release", "--attempts", "2"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("failed after 2 attempts"),
        "{}",
        out.stderr
    );
    reg.resume();
    assert!(reg.tags(&p.name).is_empty());

    // Interrupted after the version tag went up, before anything else moved.
    run(reg.xtask(&p).arg("build")).ok();
    let id = support::image_id(&p.reference("2.0.0"));
    let pushed = run(support::isolated(&mut Command::new("podman")).args([
        "push",
        "--tls-verify=false",
        &format!("--creds={USER}:{}", reg.password),
        &id,
        &format!("docker://{}/{}:2.0.0", reg.registry(), p.name),
    ]));
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    assert_eq!(reg.tags(&p.name), ["2.0.0"]);

    let v = json(&run(reg.xtask(&p).args(["--json", "release"])).ok());
    let tags = v["images"][0]["tags"].as_array().unwrap();
    let action = |t: &str| {
        tags.iter()
            .find(|x| x["tag"] == t)
            .map(|x| x["action"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(action("2.0.0"), "already_there");
    assert_eq!(action("latest"), "move");
    let digest = reg.digest(&p.name, "2.0.0").unwrap();
    for t in ["2", "2.0", "latest"] {
        assert_eq!(reg.digest(&p.name, t).unwrap(), digest, "{t}");
    }
}

#[test]
fn a_shared_layer_cache_in_the_registry_serves_a_machine_without_the_layers() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    p.write(
        "docker/images.toml",
        &format!(
            "cache = {{ registry = \"{}/cache\", insecure = true }}\n\n[[image]]\nname = \"{}\"\n",
            reg.registry(),
            p.name
        ),
    );
    p.commit(None);
    run(support::isolated(&mut Command::new("podman"))
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            USER,
            "-p",
            &reg.password,
        ])
        .arg(format!("127.0.0.1:{}", reg.port))
        .env("REGISTRY_AUTH_FILE", reg.auth_file()))
    .ok();
    let first = run(reg.xtask(&p).arg("build")).ok();
    assert!(
        first.stderr.contains("--> Pushing cache"),
        "{}",
        first.stderr
    );
    assert!(!reg.tags("cache").is_empty(), "no cache image was pushed");

    // Lose every local image of this build, the step images included, as a fresh CI machine.
    let state = p.state_json();
    support::remove_images_named(&p.name);
    for id in state["steps"].as_object().unwrap().values() {
        let _ = support::podman(&["rmi", "--force", id.as_str().unwrap()]);
    }
    let second = run(reg.xtask(&p).arg("build")).ok();
    assert!(
        second.stderr.contains("--> Cache pulled from remote"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("Pushing cache"),
        "nothing new to push"
    );
}

/// Releases 1.0.0 and 1.1.0, rolls 1.1.0 back, then re-runs the 1.1.0 release: nothing that
/// floats moves back to it, the output says why, and a local build leaves `NAME:latest` alone;
/// 1.2.0 lifts the hold. `xtask` runs the tool against the destination, `at` reads a tag's
/// digest there.
fn a_rollback_holds(p: &Project, xtask: &dyn Fn() -> Command, at: &dyn Fn(&str) -> String) {
    let release = |v: &str| {
        release_commit(p, v);
        json(&run(xtask().args(["--json", "release"])).ok())["images"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let d100 = release("1.0.0");
    let d110 = release("1.1.0");
    let v110 = p.git(&["rev-parse", "HEAD"]).stdout.trim().to_string();
    run(xtask().arg("rollback")).ok();
    assert_eq!(at("latest"), d100);
    assert_eq!(at("xtask-rollback-hold"), d110);

    // The rolled-back release, run again (as a CI job re-run would): held.
    p.git(&["checkout", "-q", &v110]);
    let out = run(xtask().args(["--json", "release"])).ok();
    let v = json(&out);
    let tags = v["images"][0]["tags"].as_array().unwrap();
    let latest = tags.iter().find(|t| t["tag"] == "latest").unwrap();
    assert_eq!(latest["action"], "hold_back", "{v:#}");
    assert!(
        latest["reason"]
            .as_str()
            .unwrap()
            .contains("1.1.0 was rolled back"),
        "{latest}"
    );
    assert_eq!(at("latest"), d100);
    assert_eq!(at("1"), d100);
    // A local build of it leaves the local `latest` where the rollback put it.
    let local_latest = support::image_id(&p.reference("latest"));
    let built = run(xtask().args(["build", "--force"])).ok();
    assert!(
        built.stderr.contains("stays where it is"),
        "{}",
        built.stderr
    );
    assert_eq!(support::image_id(&p.reference("latest")), local_latest);

    // A newer release lifts the hold.
    p.git(&["checkout", "-q", "main"]);
    let d120 = release("1.2.0");
    assert_eq!(at("latest"), d120);
    assert_eq!(at("1"), d120);
}

#[test]
fn a_rollback_holds_in_a_registry() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    a_rollback_holds(&p, &|| reg.xtask(&p), &|tag| {
        reg.digest(&p.name, tag).unwrap()
    });
}

#[test]
fn a_rollback_holds_in_an_oci_layout_and_clear_lifts_it() {
    let _serial = support::serial();
    let p = project();
    // Released layouts live in target/images/: never part of the next image's context.
    p.write(".dockerignore", "target\n.git\n");
    let layout = p.path().join("target/images").join(&p.name);
    let at = |tag: &str| {
        run(Command::new("skopeo").args([
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("oci:{}:{tag}", layout.display()),
        ]))
        .ok()
        .stdout
        .trim()
        .to_string()
    };
    a_rollback_holds(&p, &|| p.xtask(), &at);
    // The local `latest` is the only name the rollback gave: none after the layout's path.
    let names = support::podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).ok();
    assert!(
        !names.stdout.contains(&format!("/target/images/{}", p.name)),
        "{}",
        names.stdout
    );
    // git never sees the layouts, though the project's .gitignore knows nothing of target/.
    assert_eq!(p.git(&["status", "--porcelain"]).stdout, "");
    // Held again, then lifted by hand: the re-run moves `latest` once more.
    run(p.xtask().arg("rollback")).ok();
    let held = at("latest");
    let out = run(p.xtask().args(["rollback", "--clear"])).ok();
    assert!(
        out.stdout.contains("lifted the hold on 1.2.0"),
        "{}",
        out.stdout
    );
    run(p.xtask().arg("release")).ok();
    assert_ne!(at("latest"), held);
}

#[test]
fn a_plain_http_registry_without_the_insecure_setting_fails_at_once_naming_it() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    release_commit(&p, "1.0.0");
    let out = run(reg.xtask(&p).env_remove("XTASK_REGISTRY_INSECURE").args([
        "release",
        "--attempts",
        "4",
    ]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("XTASK_REGISTRY_INSECURE=1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("registry_insecure"), "{}", out.stderr);
    // A TLS mismatch does not get better: no retries.
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    assert!(!out.stderr.contains(&reg.password), "the password leaked");
    assert!(reg.tags(&p.name).is_empty());
}

#[test]
fn under_github_actions_a_release_writes_step_outputs_and_a_summary() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    release_commit(&p, "1.0.0");
    let files = tempfile::tempdir().unwrap();
    let (output, summary) = (files.path().join("output"), files.path().join("summary"));
    std::fs::write(&output, "earlier=step\n").unwrap();
    let released = run(reg
        .xtask(&p)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .arg("release"))
    .ok();
    // Each command's output is a collapsible group in the log.
    assert!(
        released.stderr.contains("::group::$ podman build"),
        "{}",
        released.stderr
    );
    assert!(
        released.stderr.contains("::endgroup::"),
        "{}",
        released.stderr
    );
    let out = std::fs::read_to_string(&output).unwrap();
    let digest = reg.digest(&p.name, "1.0.0").unwrap();
    let repo = format!("{}/{}", reg.registry(), p.name);
    // Appended after what earlier steps wrote, in GitHub's formats.
    assert!(out.starts_with("earlier=step\nversion=1.0.0\n"), "{out}");
    assert!(
        out.contains("\ntags<<XTASK_EOF\n1.0.0\n1.0\n1\nlatest\n"),
        "{out}"
    );
    assert!(out.contains(&format!("\nimage={repo}\n")), "{out}");
    assert!(out.contains(&format!("\ndigest={digest}\n")), "{out}");
    assert!(
        out.contains(&format!("\npinned={repo}:1.0.0@{digest}\n")),
        "{out}"
    );
    let json_line = out.lines().find(|l| l.starts_with("json=")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json_line[5..]).unwrap();
    assert_eq!(v["released"], true);
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("### Released 1.0.0"), "{summary}");
    assert!(
        summary.contains("| image | tag | action | digest | why |"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("| `latest` | moved | {digest} |")),
        "{summary}"
    );
}

#[test]
fn under_gitlab_ci_a_release_writes_a_dotenv_report() {
    let _serial = support::serial();
    let p = project();
    p.write(".dockerignore", "target\n.git\n");
    release_commit(&p, "2.0.0");
    let junit = p.path().join("target/xtask/junit.xml");
    let released = run(p
        .xtask()
        .env("GITLAB_CI", "true")
        .arg("release")
        .arg("--junit")
        .arg(&junit))
    .ok();
    assert!(
        released.stderr.contains("section_start:"),
        "{}",
        released.stderr
    );
    assert!(
        released.stderr.contains("section_end:"),
        "{}",
        released.stderr
    );
    let env = std::fs::read_to_string(p.path().join("target/xtask/ci.env")).unwrap();
    assert!(env.contains("XTASK_VERSION=2.0.0\n"), "{env}");
    assert!(env.contains("XTASK_TAGS=2.0.0,2.0,2,latest,"), "{env}");
    assert!(env.contains("XTASK_DIGEST=sha256:"), "{env}");
    let doc = std::fs::read_to_string(&junit).unwrap();
    roxmltree::Document::parse(&doc).expect("JUnit XML");
    // The reports are output: git never sees them.
    assert_eq!(p.git(&["status", "--porcelain"]).stdout, "");
}

/// A CI job's machine: its own state directory, and for podman its own image store. Docker's
/// one daemon serves every machine, so a job on another machine starts with the project's
/// images removed from it.
struct Machine {
    dir: tempfile::TempDir,
    engine: String,
    project: String,
}

impl Machine {
    fn new(engine: &str, p: &Project) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        support::store_in(dir.path());
        Machine {
            dir,
            engine: engine.to_string(),
            project: p.name.clone(),
        }
    }

    /// `c`, a job starting on this machine.
    fn job(&self, c: Command) -> Command {
        if self.engine == "docker" {
            DockerImages::of(self.project.clone()).remove();
        }
        self.on(c)
    }

    /// `c` run on this machine.
    fn on(&self, c: Command) -> Command {
        let mut c = with_engine(c, &self.engine);
        c.env(
            "CONTAINERS_STORAGE_CONF",
            self.dir.path().join("storage.conf"),
        )
        .env("XTASK_STATE_DIR", self.dir.path().join("state"));
        c
    }
}

#[test]
fn build_test_and_push_on_three_machines_push_exactly_the_tested_image() {
    handed_over("podman");
}

#[test]
fn with_docker_build_test_and_push_on_three_machines_push_exactly_the_tested_image() {
    handed_over("docker");
}

fn handed_over(engine: &str) {
    let _serial = support::serial();
    support::require(engine);
    let reg = Registry::start();
    let p = project();
    let _docker = DockerImages::of(p.name.clone());
    p.write(".dockerignore", "target\n.git\n");
    release_commit(&p, "3.0.0");
    let machine = || Machine::new(engine, &p);
    let (build, test, push) = (machine(), machine(), machine());

    run(build.job(reg.xtask(&p)).args(["build", "--save"])).ok();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            p.path()
                .join(format!("target/xtask/images/{}.json", p.name)),
        )
        .unwrap(),
    )
    .unwrap();
    let built = record["id"].as_str().unwrap().to_string();

    // The push job refuses an image no test passed.
    let early = run(push.job(reg.xtask(&p)).arg("push"));
    assert_eq!(early.code, 2, "{}", early.stderr);
    assert!(
        early.stderr.contains("no `cargo xtask test` passed it"),
        "{}",
        early.stderr
    );

    let tested = run(test.job(reg.xtask(&p)).args(["--json", "test"])).ok();
    let v = json(&tested);
    assert_eq!(v["images"][0]["id"].as_str(), Some(built.as_str()), "{v:#}");
    run(push.job(reg.xtask(&p)).arg("push")).ok();
    let raw = reg.skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{}:3.0.0", reg.registry(), p.name),
    ]);
    let manifest: serde_json::Value = serde_json::from_str(&raw.ok().stdout).unwrap();
    assert_eq!(manifest["config"]["digest"], format!("sha256:{built}"));
    assert_eq!(p.git(&["status", "--porcelain"]).stdout, "");

    // An archive swapped between jobs is refused, and its image is not left under the name.
    let other = machine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nLABEL swapped=yes\nCOPY swapped /swapped\n",
    )
    .unwrap();
    // Docker's daemon cannot save an image without a layer.
    std::fs::write(dir.path().join("swapped"), "yes\n").unwrap();
    let engine_on = |m: &Machine, args: &[&str]| {
        let mut c = m.on(Command::new(engine));
        c.args(args);
        run(&mut c)
    };
    engine_on(
        &other,
        &[
            "build",
            "-q",
            "-t",
            &p.reference("3.0.0"),
            &dir.path().to_string_lossy(),
        ],
    )
    .ok();
    let archive = p.path().join(format!("target/xtask/images/{}.tar", p.name));
    std::fs::remove_file(&archive).unwrap();
    let reference = p.reference("3.0.0");
    let mut save = vec!["save", "--output", archive.to_str().unwrap()];
    if engine == "podman" {
        save.extend(["--format", "oci-archive"]);
    }
    save.push(&reference);
    engine_on(&other, &save).ok();
    let fresh = machine();
    let out = run(fresh.job(reg.xtask(&p)).arg("test"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("the archive was changed between jobs"),
        "{}",
        out.stderr
    );
    let gone = engine_on(&fresh, &["image", "inspect", &p.reference("3.0.0")]);
    assert_ne!(gone.code, 0, "the swapped image kept the release's name");
}

#[test]
fn logins_stay_private_to_the_run_and_a_dry_run_reads_with_them() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    release_commit(&p, "1.0.0");
    let host = format!("127.0.0.1:{}", reg.port);
    let shared = [
        std::env::var("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("containers/auth.json"))
            .unwrap_or_else(|_| PathBuf::from("/run/containers/0/auth.json")),
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".docker/config.json"),
    ];
    let private = || support::private_logins(&std::env::temp_dir());
    let before = private();
    // No auth file chosen by the caller: the tool uses one of its own.
    let released = run(reg
        .xtask(&p)
        .env_remove("REGISTRY_AUTH_FILE")
        .args(["--json", "release"]))
    .ok();
    assert_eq!(json(&released)["released"], true);
    for f in &shared {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        assert!(!text.contains(&host), "the login stayed in {}", f.display());
    }
    assert_eq!(private(), before, "the run's own auth file was left behind");
    // A dry run logs in (privately) to read what the registry holds, and changes nothing.
    release_commit(&p, "1.1.0");
    let dry = run(reg
        .xtask(&p)
        .env_remove("REGISTRY_AUTH_FILE")
        .args(["--dry-run", "release"]))
    .ok();
    assert!(dry.stdout.contains("podman push"), "{}", dry.stdout);
    assert!(!reg.tags(&p.name).contains(&"1.1.0".to_string()));
    assert!(!dry.stdout.contains(&reg.password) && !dry.stderr.contains(&reg.password));
}

#[test]
fn a_release_killed_after_its_version_push_is_finished_from_a_fresh_clone_and_store() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    // This machine built the same content at an earlier version: podman reuses that layer,
    // with its older timestamp, so its image ID for 1.0.0 differs from a fresh build's.
    release_commit(&p, "0.9.0");
    run(reg.xtask(&p).arg("build")).ok();
    p.commit(Some("v1.0.0"));
    let log = tempfile::NamedTempFile::new().unwrap();
    let killed = run(reg
        .xtask(&p)
        .env("XTASK_FAULT_LOG", log.path())
        .env("XTASK_FAULT_KILL_AFTER_STEP", "4")
        .arg("release"));
    let steps = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(killed.code, -1, "{steps}\n{}", killed.stderr);
    assert!(
        steps.lines().last().unwrap().contains("podman push"),
        "{steps}"
    );
    assert_eq!(reg.tags(&p.name), ["1.0.0"]);
    let here = support::image_id(&p.reference("1.0.0"));

    // Another machine: a fresh clone, an empty store.
    let machine = Machine::new("podman", &p);
    let clone = tempfile::tempdir().unwrap();
    let cloned = run(Command::new("git")
        .args(["clone", "-q"])
        .arg(p.path())
        .arg(clone.path().join("app")));
    assert_eq!(cloned.code, 0, "{}", cloned.stderr);
    let there = clone.path().join("app");
    let xtask_there = || {
        let mut c = machine.on(support::xtask(&there));
        c.env("XTASK_REGISTRY", reg.registry())
            .env("XTASK_REGISTRY_INSECURE", "1")
            .env("XTASK_REGISTRY_USER", USER)
            .env("XTASK_REGISTRY_PASSWORD", &reg.password);
        c
    };
    let out = run(xtask_there().args(["--json", "release"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    let tested = v["tests"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(
        tested, here,
        "the two machines' builds must differ for this test to mean anything"
    );
    assert!(
        out.stderr.contains("built elsewhere from the same inputs"),
        "{}",
        out.stderr
    );
    let digest = reg.digest(&p.name, "1.0.0").unwrap();
    for t in ["1", "1.0", "latest"] {
        assert_eq!(
            reg.digest(&p.name, t).as_deref(),
            Some(digest.as_str()),
            "{t}"
        );
    }

    // Changed inputs under the same version are still refused.
    let other = clone.path().join("other");
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(p.path())
        .arg(&other))
    .ok();
    std::fs::write(other.join("hello.txt"), "changed\n").unwrap();
    support::git_in(&other, &["commit", "-qam", "changed"]);
    support::git_in(&other, &["tag", "-f", "v1.0.0"]);
    let mut c = machine.on(support::xtask(&other));
    c.env("XTASK_REGISTRY", reg.registry())
        .env("XTASK_REGISTRY_INSECURE", "1")
        .env("XTASK_REGISTRY_USER", USER)
        .env("XTASK_REGISTRY_PASSWORD", &reg.password)
        .arg("release");
    let out = run(&mut c);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to publish"), "{}", out.stderr);
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(digest.as_str())
    );
}

#[test]
fn a_custom_tag_pattern_releases_and_keeps_floating_tags_forward_only() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    let toml = std::fs::read_to_string(p.path().join("docker/images.toml")).unwrap();
    p.write(
        "docker/images.toml",
        &format!("tag_pattern = '(?P<major>\\d+)\\.(?P<minor>\\d+)-(?P<patch>\\d+)'\n{toml}"),
    );
    for version in ["12.1-0", "12.2-0", "12.1-1"] {
        p.write("hello.txt", &format!("{version}\n"));
        p.commit(Some(version));
        let out = run(reg.xtask(&p).arg("release"));
        assert_eq!(out.code, 0, "{version}: {}", out.stderr);
    }
    let at = |t: &str| reg.digest(&p.name, t);
    assert_eq!(at("latest"), at("12.2-0"));
    assert_eq!(at("12"), at("12.2-0"));
    assert_eq!(at("12.2"), at("12.2-0"));
    assert_eq!(at("12.1"), at("12.1-1"), "12.1 moves to its line's newest");
    assert_ne!(at("12.1-0"), at("12.1-1"));
    // Published versions stay immutable under the scheme too.
    p.write("hello.txt", "changed\n");
    p.commit(None);
    p.git(&["tag", "-f", "12.1-1"]);
    let out = run(reg.xtask(&p).arg("release"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to publish"), "{}", out.stderr);
}
