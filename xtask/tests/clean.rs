//! End-to-end: `clean`. A file of its own because `podman image prune` is machine-wide and races
//! with builds in flight (podman commits an image before naming it); cargo runs test binaries one
//! at a time, so nothing else of ours is building while this runs.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

const DOCKERFILE: &str = "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n";

#[test]
fn clean_keeps_the_newest_versions_and_spares_images_in_use() {
    keeps_newest("podman");
}

#[test]
fn with_docker_clean_keeps_the_newest_versions_and_spares_images_in_use() {
    keeps_newest("docker");
}

fn keeps_newest(engine: &str) {
    require(engine);
    let p = Project::new(&[("Dockerfile", DOCKERFILE), ("hello.txt", "hello\n")]);
    let _docker = DockerImages::of(p.name.clone());
    let xtask = || with_engine(p.xtask(), engine);
    let on_engine = |args: &[&str]| {
        let mut c = std::process::Command::new(engine);
        if engine == "podman" {
            // The test's own store.
            return podman(args);
        }
        run(c.args(args))
    };
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        p.write("hello.txt", &format!("v{i}\n"));
        run(xtask().args(["build", "--version", v])).ok();
    }
    let container = unique_name("xtask-e2e-ctr");
    on_engine(&[
        "create",
        "--name",
        &container,
        &p.reference("1.0.0"),
        "/hello",
    ])
    .ok();
    let out = run(xtask().args(["--json", "clean", "--keep", "1"]));
    on_engine(&["rm", "--force", &container]).ok();
    let report: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    let removed = match engine {
        "podman" => format!("localhost/{}:1.1.0", p.name),
        _ => format!("{}:1.1.0", p.name),
    };
    assert_eq!(report["untagged"], serde_json::json!([removed]));
    assert_eq!(report["skipped_in_use"].as_array().unwrap().len(), 1);
    let exists = |v: &str| on_engine(&["image", "inspect", &p.reference(v)]).code == 0;
    assert!(exists("1.2.0"));
    assert!(exists("1.0.0"), "in use by a container");
    assert!(!exists("1.1.0"));
}
