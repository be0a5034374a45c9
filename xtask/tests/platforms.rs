//! End-to-end: builds for several platforms. A file of its own because podman 4.3's manifest
//! lists break when other images are removed while a list is being assembled (the list loses
//! its native instance and then breaks every `podman images`); cargo runs test binaries one at
//! a time, so no other test of ours removes images meanwhile.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

const DOCKERFILE: &str =
    "FROM scratch\nLABEL e2e.run={name}\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n";

fn simple_project() -> Project {
    Project::new(&[("Dockerfile", DOCKERFILE), ("hello.txt", "hello\n")])
}

#[test]
fn several_platforms_make_one_manifest_list_with_every_architecture() {
    let p = simple_project();
    p.commit(Some("v1.0.0"));
    let platforms = |reference: &str| {
        let out = podman(&["manifest", "inspect", reference]).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let mut archs: Vec<String> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap().to_string())
            .collect();
        archs.sort();
        archs
    };
    // Twice: the second build must replace the first list, not add to it.
    for _ in 0..2 {
        let out = run(p
            .xtask()
            .args(["--json", "build", "--platform", "linux/amd64,linux/arm64"]))
        .ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            v["images"][0]["platforms"],
            serde_json::json!(["linux/amd64", "linux/arm64"])
        );
        assert_eq!(platforms(&p.reference("1.0.0")), ["amd64", "arm64"]);
        assert_eq!(platforms(&p.reference("latest")), ["amd64", "arm64"]);
    }
    // Every platform's image has a name, so pruning dangling images cannot break the list.
    for plat in ["linux-amd64", "linux-arm64"] {
        let r = p.reference(&format!("1.0.0-{plat}"));
        assert_eq!(podman(&["image", "exists", &r]).code, 0, "{r}");
    }
    // One foreign platform, after a native build of the same content: no cache reuse across them.
    run(p.xtask().args(["build", "--version", "1.0.1"])).ok();
    run(p
        .xtask()
        .args(["build", "--version", "1.0.2", "--platform", "linux/arm64"]))
    .ok();
    let arch = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}}",
        &p.reference("1.0.2"),
    ])
    .ok();
    assert_eq!(arch.stdout.trim(), "arm64");
    let bad = run(p.xtask().args(["build", "--platform", "arm64"]));
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("platform `arm64` is not OS/ARCH[/VARIANT]"),
        "{}",
        bad.stderr
    );
}
