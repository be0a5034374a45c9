//! End-to-end: images that build from one another. Bases build first and are passed to the
//! images built from them as this run built them; a base's rebuild propagates with its reason,
//! an unchanged base keeps them up to date; `--image` pulls in bases; cycles are refused.
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::Value;
use support::*;

/// Three images: `{name}` builds FROM `{name}-base` (by its bare name), `{name}-other` stands
/// alone. The app is listed first, so the order is the graph's, not the config's.
fn fixture() -> (Project, RemoveImages) {
    let p = Project::new(&[
        (
            "docker/images.toml",
            r#"[[image]]
name = "{name}"
dockerfile = "docker/app.Dockerfile"
dev_dockerfile = "docker/app-dev.Dockerfile"

[[image]]
name = "{name}-base"
dockerfile = "docker/base.Dockerfile"

[[image]]
name = "{name}-other"
dockerfile = "docker/other.Dockerfile"
"#,
        ),
        (
            "docker/base.Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY base.txt /base.txt\n",
        ),
        (
            "docker/app.Dockerfile",
            "FROM {name}-base\nCOPY app.txt /app.txt\nRUN [\"/bin/busybox\", \"cp\", \"/base.txt\", \"/seen.txt\"]\n",
        ),
        (
            "docker/app-dev.Dockerfile",
            "FROM localhost/{name}-base:latest\nCOPY app.txt /dev.txt\n",
        ),
        ("docker/other.Dockerfile", "FROM scratch\nCOPY other.txt /other.txt\n"),
        ("base.txt", "base 1\n"),
        ("app.txt", "app 1\n"),
        ("other.txt", "other\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox"))
        .expect("a static /bin/busybox is needed; run `bash .ci/setup` (busybox-static)");
    let names = RemoveImages(vec![
        format!("{}-base", p.name),
        format!("{}-other", p.name),
    ]);
    (p, names)
}

fn names(doc: &Value) -> Vec<String> {
    doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

fn field(doc: &Value, image: &str, key: &str) -> String {
    image_named(doc, image)[key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether podman took each step but FROM of `image`'s build from its layer cache.
fn cached_steps(stderr: &str, image: &str) -> Vec<bool> {
    observed_steps(build_output_of(stderr, image))
        .into_iter()
        .map(|s| s.2)
        .collect()
}

/// Whether each of an image's Dockerfile steps (after FROM, before the labels) is cached.
fn content_steps(plan: &Value, image: &str) -> Vec<bool> {
    image_named(plan, image)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .filter(|s| !s["instruction"].as_str().unwrap().starts_with("LABEL \""))
        .map(|s| s["cached"].as_bool().unwrap())
        .collect()
}

fn layers(reference: &str) -> Vec<String> {
    let out = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        reference,
    ])
    .ok();
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn bases_build_first_and_their_rebuild_propagates_with_the_reason() {
    let (p, _names) = fixture();
    let (app, base, other) = (
        p.name.clone(),
        format!("{}-base", p.name),
        format!("{}-other", p.name),
    );
    p.commit(None);

    let plan = json(run(p.xtask().args(["--json", "plan"])));
    assert_eq!(names(&plan), [base.as_str(), &app, &other], "bases first");

    // `--image APP` builds APP and what it builds from, nothing else.
    let built = json(run(p.xtask().args(["--json", "--image", &app, "build"])));
    assert_eq!(names(&built), [base.as_str(), &app]);
    let tag = built["images"][0]["tags"][0].as_str().unwrap().to_string();
    let (base_layers, app_layers) = (
        layers(&format!("{base}:{tag}")),
        layers(&format!("{app}:{tag}")),
    );
    assert!(
        app_layers.starts_with(&base_layers) && app_layers.len() == base_layers.len() + 2,
        "the app is built on the base this run built: {base_layers:?} / {app_layers:?}"
    );

    // Nothing changed: both are up to date, and the app keeps its key.
    let again = json(run(p.xtask().args(["--json", "--image", &app, "build"])));
    assert_eq!(field(&again, &base, "status"), "up-to-date");
    assert_eq!(field(&again, &app, "status"), "up-to-date");
    assert_eq!(field(&again, &app, "key"), field(&built, &app, "key"));

    // The base's input changes: `plan` says the app rebuilds because of it, and podman agrees.
    p.write("base.txt", "base 2\n");
    p.commit(None);
    let plan = json(run(p.xtask().args(["--json", "--image", &app, "plan"])));
    assert_eq!(field(&plan, &base, "action"), "build");
    assert_eq!(field(&plan, &app, "action"), "build");
    let app_plan = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == app.as_str())
        .unwrap();
    let steps = app_plan["steps"].as_array().unwrap();
    assert_eq!(
        steps[1]["reason"],
        format!("base image `{base}` rebuilt"),
        "{app_plan}"
    );
    let predicted: Vec<bool> = steps[1..]
        .iter()
        .map(|s| s["cached"].as_bool().unwrap())
        .collect();
    let out = run(p.xtask().args(["--image", &app, "build"])).ok();
    assert_eq!(cached_steps(&out.stderr, &app), predicted, "{}", out.stderr);
    assert!(
        predicted.len() > 2 && !predicted.contains(&true),
        "every step after FROM is rebuilt: {predicted:?}"
    );
    let plan = json(run(p.xtask().args(["--json", "--image", &app, "plan"])));
    assert_eq!(field(&plan, &app, "action"), "up-to-date", "{plan}");

    // A commit that changes neither: each gets the new commit's labels, nothing else. The
    // base's relabelling does not rebuild the app, which starts from the base's content.
    p.write("other.txt", "other 2\n");
    p.commit(None);
    let plan = json(run(p.xtask().args(["--json", "plan"])));
    for image in [&base, &app] {
        assert_eq!(field(&plan, image, "action"), "build");
        assert_eq!(
            content_steps(&plan, image),
            [true, true],
            "only the labels change: {plan}"
        );
    }

    // Only the app's own input changes: the app rebuilds from its COPY, for its own reason.
    p.write("app.txt", "app 2\n");
    p.commit(None);
    let plan = json(run(p.xtask().args(["--json", "plan"])));
    assert_eq!(content_steps(&plan, &base), [true, true]);
    assert_eq!(content_steps(&plan, &app), [false, false]);
    let out = run(p.xtask().args(["build"])).ok();
    assert_eq!(
        cached_steps(&out.stderr, &app)[..2],
        [false, false],
        "{}",
        out.stderr
    );
    assert_eq!(cached_steps(&out.stderr, &base)[..2], [true, true]);

    // Releases push bases before the images built from them.
    p.commit(Some("v1.0.0"));
    let released = json(run(p.xtask().args(["--json", "release"])));
    assert_eq!(
        names(&released),
        [base.as_str(), &app, &other],
        "{released}"
    );
}

#[test]
fn the_build_is_given_the_base_this_run_made() {
    let (p, _names) = fixture();
    let base = format!("{}-base", p.name);
    p.commit(None);
    let out = run(p.xtask().args(["--dry-run", "--image", &p.name, "build"])).ok();
    let tag = out
        .stdout
        .lines()
        .find_map(|l| l.split(&format!("-t {base}:")).nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no tag of the base in\n{}", out.stdout))
        .to_string();
    // Not built yet: shown by name. Once built, the build is given the base's content (its
    // image before the tool's labels) by ID, so a new commit alone does not rebuild the app.
    assert!(
        out.stdout.contains(&format!(
            "--build-context '{base}=container-image://<content of localhost/{base}:{tag}>'"
        )),
        "{}",
        out.stdout
    );
    run(p.xtask().args(["--image", &base, "build"])).ok();
    let out = run(p.xtask().args(["--dry-run", "--image", &p.name, "build"])).ok();
    let given = out
        .stdout
        .split(&format!("--build-context {base}=container-image://"))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .to_string();
    let base_ref = format!("{base}:{tag}");
    assert!(given.len() == 64 && given != image_id(&base_ref), "{given}");
    assert_eq!(layers(&given), layers(&base_ref), "the same content");
    // A dev build of the app takes the base from its production Dockerfile (it has no dev
    // one), under the dev tag; the reference the dev Dockerfile writes is the one redirected.
    let out = run(p
        .xtask()
        .args(["--dry-run", "--image", &p.name, "build", "--dev"]))
    .ok();
    // (The base's content is already built: it only gets the dev tag.)
    assert!(
        out.stdout.contains(&format!(" {base}:dev\n"))
            && out.stdout.contains(&format!(
                "-f docker/app-dev.Dockerfile --timestamp 1736937000 --build-context localhost/{base}:latest=container-image://{given} "
            )),
        "{}",
        out.stdout
    );
    // …but an image with no dev Dockerfile that nothing builds from is still an error.
    let out = run(p
        .xtask()
        .args(["--image", &format!("{}-other", p.name), "build", "--dev"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("has no dev Dockerfile"),
        "{}",
        out.stderr
    );
}

#[test]
fn cycles_are_refused_with_each_edge() {
    let p = Project::new(&[
        (
            "docker/images.toml",
            "[[image]]\nname = \"{name}-a\"\ndockerfile = \"a.Dockerfile\"\n[[image]]\nname = \"{name}-b\"\ndockerfile = \"b.Dockerfile\"\n",
        ),
        ("a.Dockerfile", "FROM scratch AS x\nFROM {name}-b\n"),
        ("b.Dockerfile", "ARG A=localhost/{name}-a:1.0\nFROM scratch\nCOPY --from=${A} /x /x\n"),
    ]);
    let out = run(p.xtask().args(["plan"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let (a, b) = (format!("{}-a", p.name), format!("{}-b", p.name));
    assert!(
        out.stderr.contains(&format!(
            "images build from one another in a cycle: `{a}` builds from `{b}` (a.Dockerfile:2), `{b}` builds from `{a}` (b.Dockerfile:3)"
        )),
        "{}",
        out.stderr
    );
    p.write(
        "a.Dockerfile",
        "FROM {name}-a:previous\n"
            .replace("{name}", &p.name)
            .as_str(),
    );
    let out = run(p.xtask().args(["build", "--dry-run"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains(&format!("a.Dockerfile:1: image `{a}` builds from itself")),
        "{}",
        out.stderr
    );
}
