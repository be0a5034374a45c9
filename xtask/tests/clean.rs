//! End-to-end: `clean`. A file of its own because `podman image prune` is machine-wide and races
//! with builds in flight (podman commits an image before naming it); cargo runs test binaries one
//! at a time, so nothing else of ours is building while this runs.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

const DOCKERFILE: &str = "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n";

#[test]
fn clean_keeps_the_newest_versions_and_spares_images_in_use() {
    let p = Project::new(&[("Dockerfile", DOCKERFILE), ("hello.txt", "hello\n")]);
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        p.write("hello.txt", &format!("v{i}\n"));
        run(p.xtask().args(["build", "--version", v])).ok();
    }
    let container = unique_name("xtask-e2e-ctr");
    podman(&[
        "create",
        "--name",
        &container,
        &p.reference("1.0.0"),
        "/hello",
    ])
    .ok();
    let out = run(p.xtask().args(["--json", "clean", "--keep", "1"]));
    podman(&["rm", "--force", &container]).ok();
    let report: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(
        report["untagged"],
        serde_json::json!([format!("localhost/{}:1.1.0", p.name)])
    );
    assert_eq!(report["skipped_in_use"].as_array().unwrap().len(), 1);
    assert_eq!(podman(&["image", "exists", &p.reference("1.2.0")]).code, 0);
    assert_eq!(
        podman(&["image", "exists", &p.reference("1.0.0")]).code,
        0,
        "in use by a container"
    );
    assert_ne!(podman(&["image", "exists", &p.reference("1.1.0")]).code, 0);
}
