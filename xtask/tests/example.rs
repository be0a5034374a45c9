//! The seed's workflow on the Django + Celery example (`examples/django-celery`), end to end:
//! its base image made from Debian packages by `before_build`, the application built FROM it,
//! the seed's smoke tests against the real images, a release to the OCI layout and to a real
//! registry, and `plan`'s prediction against podman's own cache use through an edit sequence.
//! Then the smoke tests must fail, each for its own subject, when the image is broken.
//!
//! One test, in one tree: the base image takes about a minute to make, and every later step
//! builds on it. It prints how long each part took (README.md, "The Django example").
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::registry::Registry;
use support::*;

/// The example as a clone of it has it (tracked files, and new ones not yet ignored; no
/// `rootfs.tar` a local run left), with its image names made unique: `{name}` and `{name}-base`.
fn example() -> Project {
    let src = repo_root().join("examples/django-celery");
    let listed = run(Command::new("git").current_dir(&src).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        ".",
    ]))
    .ok();
    let p = Project::new(&[("docker/images.toml", "")]);
    for rel in listed.stdout.split('\0').filter(|r| !r.is_empty()) {
        let to = p.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        // `copy` keeps the mode: make-rootfs and entrypoint.sh stay executable.
        std::fs::copy(src.join(rel), &to).unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    let rename = |rel: &str, from: &str, to: &str| {
        let path = p.path().join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no `{from}`");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    };
    let base = format!("{}-base", p.name);
    rename(
        "docker/images.toml",
        "name = \"shop-base\"",
        &format!("name = \"{base}\""),
    );
    rename(
        "docker/images.toml",
        "name = \"shop\"",
        &format!("name = \"{}\"", p.name),
    );
    for df in ["docker/Dockerfile", "docker/Dockerfile.dev"] {
        rename(df, "FROM shop-base", &format!("FROM {base}"));
    }
    p
}

fn edit(p: &Project, rel: &str, from: &str, to: &str) {
    let path = p.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rel} has no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn failed_tests(doc: &Value) -> BTreeSet<String> {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["tests"].as_array().unwrap())
        .filter(|t| t["passed"] == false)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn secs(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}

/// `plan --json`, then `build`: for every image the build ran podman for, podman's cache use
/// equals the prediction step by step. Returns the plan.
fn plan_then_build(p: &Project, what: &str) -> Value {
    let plan = json(run(p.xtask().args(["--json", "plan"])));
    let t = Instant::now();
    let out = run(p.xtask().args(["build"])).ok();
    eprintln!("example: build after {what}: {}", secs(t));
    for image in plan["images"].as_array().unwrap() {
        let name = image["name"].as_str().unwrap();
        if image["action"] != "build" {
            assert!(
                !out.stderr.contains(&format!(" -t {name}:")),
                "{what}: {name} was predicted {} but podman built it",
                image["action"]
            );
            continue;
        }
        assert_eq!(
            observed_steps(build_output_of(&out.stderr, name)),
            predicted_steps(image),
            "{what}: {name}: podman's cache use differs from the plan\n{}",
            out.stderr
        );
    }
    plan
}

fn first_miss(plan: &Value, image: &str) -> (u64, String, String) {
    let i = image_named(plan, image);
    let s = i["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] != 1 && s["cached"] == false)
        .unwrap_or_else(|| panic!("{image}: nothing rebuilt in {i}"));
    (
        s["stage"].as_u64().unwrap(),
        s["instruction"].as_str().unwrap().to_string(),
        s["reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn the_seed_workflow_on_the_django_example() {
    seed_workflow("podman");
}

/// The same on Docker's daemon, but for `plan`'s prediction (podman's only).
#[test]
fn the_seed_workflow_on_the_django_example_with_docker() {
    seed_workflow("docker");
}

fn seed_workflow(engine: &str) {
    require(engine);
    let p = example();
    let (app, base) = (p.name.clone(), format!("{}-base", p.name));
    let _names = RemoveImages(vec![base.clone()]);
    let _docker = DockerImages::of(p.name.clone());
    let xtask = || with_engine(p.xtask(), engine);
    p.commit(Some("v1.0.0"));

    // `check` passes with no finding at all on the example's ignore files.
    let check = json(run(xtask().args(["--json", "check"])));
    for i in check["images"].as_array().unwrap() {
        assert_eq!(i["findings"], serde_json::json!([]), "{check}");
    }

    // The release to the OCI layout: the base is made from Debian packages, then the app is
    // built FROM it, both are smoke-tested and published.
    let t = Instant::now();
    let doc = json(run(xtask().args(["--json", "release"])));
    eprintln!(
        "example: first release (base made by mmdebstrap): {}",
        secs(t)
    );
    assert_eq!(doc["released"], true, "{doc}");
    let names: Vec<&str> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [base.as_str(), app.as_str()], "bases first");
    assert_eq!(
        failed_tests(&serde_json::json!({ "images": doc["tests"] })),
        BTreeSet::new()
    );
    let ran: usize = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tests"].as_array().unwrap().len())
        .sum();
    assert!(ran >= 17, "every smoke test of the seed ran: {ran}");
    for name in [&base, &app] {
        let layout = p.path().join("target/images").join(name);
        let out = run(Command::new("skopeo").args([
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("oci:{}:1.0.0", layout.display()),
        ]))
        .ok();
        assert!(out.stdout.starts_with("sha256:"), "{}", out.stdout);
    }
    let labels = labels_on(engine, &format!("{app}:1.0.0"));
    assert_eq!(labels["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(labels["org.opencontainers.image.title"], "shop");

    // The same release to a registry.
    let reg = Registry::start();
    let t = Instant::now();
    let pushed = json(run(
        with_engine(reg.xtask(&p), engine).args(["--json", "release"])
    ));
    eprintln!("example: release to the registry: {}", secs(t));
    for i in pushed["images"].as_array().unwrap() {
        let name = i["name"].as_str().unwrap();
        assert_eq!(
            reg.digest(name, "1.0.0").as_deref(),
            i["digest"].as_str(),
            "{pushed}"
        );
    }

    if engine == "podman" {
        edits_planned(&p, &app, &base);
    }

    // Broken images fail exactly the smoke tests of what broke: the beat route, the health
    // view, the migration; a `django check` without FIELD_ENCRYPTION_KEY; a budget the image
    // exceeds. (The web test's timeout is cut so its failure is quick.)
    break_and_test(&p, engine);
}

/// The edit sequence: `plan` predicts exactly the steps podman takes from its cache.
fn edits_planned(p: &Project, app: &str, base: &str) {
    edit(
        p,
        "shop/urls.py",
        "urlpatterns = [",
        "# Routes.\nurlpatterns = [",
    );
    p.commit(None);
    let plan = plan_then_build(p, "a code edit");
    let (stage, instruction, reason) = first_miss(&plan, app);
    assert_eq!(
        (stage, instruction.as_str(), reason.as_str()),
        (1, "COPY shop/ shop/", "shop/urls.py: content changed"),
        "only the code's COPY and what follows rebuild"
    );
    assert_eq!(plan["images"][0]["name"], base);
    // The base only takes the new commit's labels.
    assert!(
        first_miss(&plan, base)
            .1
            .starts_with("LABEL \"org.opencontainers.image.revision\""),
        "{plan}"
    );

    edit(p, "requirements.txt", "celery>=5.2,<6", "celery>=5.2.6,<6");
    p.commit(None);
    let plan = plan_then_build(p, "a requirements edit");
    let (stage, instruction, reason) = first_miss(&plan, app);
    assert_eq!(
        (stage, instruction.as_str(), reason.as_str()),
        (
            2,
            "COPY requirements.txt docker/check-requirements.py ./",
            "requirements.txt: content changed"
        )
    );

    edit(
        p,
        "docker/base/Dockerfile",
        "ENV LANG=C.UTF-8",
        "ENV TZ=UTC LANG=C.UTF-8",
    );
    p.commit(None);
    let plan = plan_then_build(p, "a change of the base");
    assert_eq!(
        first_miss(&plan, base).1,
        "ENV TZ=UTC LANG=C.UTF-8     PYTHONDONTWRITEBYTECODE=1     PYTHONUNBUFFERED=1"
    );
    let (_, _, reason) = first_miss(&plan, app);
    assert_eq!(reason, format!("base image `{base}` rebuilt"));
}

fn break_and_test(p: &Project, engine: &str) {
    let xtask = || with_engine(p.xtask(), engine);
    edit(p, "docker/entrypoint.sh", "  celery-beat)", "  celery-bet)");
    edit(p, "shop/urls.py", "path(\"healthz\"", "path(\"health\"");
    std::fs::remove_file(p.path().join("orders/migrations/0001_initial.py")).unwrap();
    edit(
        p,
        "docker/images.toml",
        "wait_for = { http = \"/healthz\", port = 8000, status = 200 }\ntimeout = \"60s\"",
        "wait_for = { http = \"/healthz\", port = 8000, status = 200 }\ntimeout = \"4s\"",
    );
    edit(
        p,
        "docker/images.toml",
        "command = [\"python3\", \"manage.py\", \"check\"]\nenv = { SECRET_KEY = \"smoke-test-secret-key\", FIELD_ENCRYPTION_KEY = \"smoke-test-encryption-key\" }",
        "command = [\"python3\", \"manage.py\", \"check\"]\nenv = { SECRET_KEY = \"smoke-test-secret-key\" }",
    );
    edit(
        p,
        "docker/images.toml",
        "max_size = \"500MB\"",
        "max_size = \"100MB\"",
    );
    let t = Instant::now();
    run(xtask().args(["build"])).ok();
    let out = run(xtask().args(["--json", "test"]));
    eprintln!("example: broken image, built and tested: {}", secs(t));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        failed_tests(&doc),
        BTreeSet::from(
            [
                "celery beat entry point",
                "web answers /healthz",
                "migrations plan",
                "django check",
                "size <= 100.0 MB",
            ]
            .map(String::from)
        ),
        "{doc}"
    );
}
