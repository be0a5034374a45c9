//! Multi-platform releases end to end, against a real registry: the manifest list is what is
//! tested (each platform's image, arm64 through qemu-user-static), pushed (`manifest push
//! --all`), verified (each instance's config is the tested image), guarded (an immutable
//! version, forward-only floating tags) and rolled back.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::registry::Registry;
use support::*;

/// Where .ci/setup puts an arm64 static busybox (Debian's busybox-static:arm64).
const BUSYBOX_ARM64: &str = "/var/cache/xtask-tests/busybox.arm64";

/// A `FROM scratch` image for two platforms, each with its own busybox, so that its `RUN` step
/// (at build time) and its command test run natively on amd64 and through emulation on arm64.
fn project() -> Project {
    let p = Project::new(&[
        (
            "docker/images.toml",
            r#"[[image]]
name = "{name}"
platforms = ["linux/amd64", "linux/arm64"]

[image.expect]
cmd = ["/bin/busybox", "uname", "-m"]

[[image.smoke]]
name = "machine"
expect_stdout = ["^(x86_64|aarch64)$"]

[[image.smoke]]
name = "arch file"
file = "/arch.txt"

[[image.smoke]]
name = "built on its own platform"
file = "/built-on"
contains = ["^(x86_64|aarch64)$"]
"#,
        ),
        (
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /built-on\"]\nCOPY arch-${TARGETARCH}.txt /arch.txt\nCMD [\"/bin/busybox\", \"uname\", \"-m\"]\n",
        ),
        ("arch-amd64.txt", "amd64\n"),
        ("arch-arm64.txt", "arm64\n"),
        (".dockerignore", "target\n.git\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox-amd64"))
        .expect("a static /bin/busybox is needed; run `bash .ci/setup` (busybox-static)");
    std::fs::copy(BUSYBOX_ARM64, p.path().join("busybox-arm64")).unwrap_or_else(|e| {
        panic!(
            "{BUSYBOX_ARM64}: {e}; `bash .ci/setup` downloads Debian's busybox-static:arm64 there"
        )
    });
    p
}

/// The registry's index at `tag`: its digest, and each platform's config digest.
fn index(reg: &Registry, name: &str, tag: &str) -> (String, BTreeMap<String, String>) {
    let repo = format!("docker://{}/{name}", reg.registry());
    let raw = reg
        .skopeo(&["inspect", "--raw", &format!("{repo}:{tag}")])
        .ok();
    let v: Value = serde_json::from_str(&raw.stdout).unwrap();
    let mut platforms = BTreeMap::new();
    for m in v["manifests"].as_array().expect("an image index") {
        let p = format!(
            "{}/{}",
            m["platform"]["os"].as_str().unwrap(),
            m["platform"]["architecture"].as_str().unwrap()
        );
        let inst = reg
            .skopeo(&[
                "inspect",
                "--raw",
                &format!("{repo}@{}", m["digest"].as_str().unwrap()),
            ])
            .ok();
        let iv: Value = serde_json::from_str(&inst.stdout).unwrap();
        let config = iv["config"]["digest"].as_str().unwrap();
        platforms.insert(p, config.trim_start_matches("sha256:").to_string());
    }
    (reg.digest(name, tag).unwrap(), platforms)
}

/// The image each platform's tests ran against, from a release's `tests`.
fn tested(doc: &Value) -> BTreeMap<String, String> {
    doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["passed"].as_bool().unwrap(), "{r}");
            (
                r["platform"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_manifest_list_is_tested_pushed_guarded_and_rolled_back() {
    let p = project();
    let reg = Registry::start();
    p.commit(Some("v1.0.0"));
    let doc = json(run(reg.xtask(&p).args(["--json", "release"])));
    // Both platforms were tested, arm64's command through emulation.
    let ran = tested(&doc);
    assert_eq!(
        ran.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    let arm = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["platform"] == "linux/arm64")
        .unwrap();
    assert!(arm["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["not_run"].is_null() && t["passed"] == true));
    // The version tag is an index of exactly the two platforms, each instance the tested image.
    let (d100, platforms) = index(&reg, &p.name, "1.0.0");
    assert_eq!(platforms, ran);
    assert_eq!(doc["images"][0]["digest"], d100.as_str());
    let published: BTreeMap<String, String> = doc["images"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap().to_string(),
                i["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        published, ran,
        "the release lists each platform as published"
    );
    for tag in ["latest", "1", "1.0"] {
        assert_eq!(
            reg.digest(&p.name, tag).as_deref(),
            Some(d100.as_str()),
            "{tag}"
        );
    }
    // A re-run pushes nothing.
    let again = json(run(reg.xtask(&p).args(["--json", "release"])));
    for t in again["images"][0]["tags"].as_array().unwrap() {
        assert_eq!(t["action"], "already_there", "{again}");
    }

    // `plan` says so per platform.
    let plan = json(run(reg.xtask(&p).args(["--json", "plan"])));
    let per: Vec<(&str, &str)> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap(),
                i["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per,
        [("linux/amd64", "up-to-date"), ("linux/arm64", "up-to-date")]
    );

    // The same version with one platform's content changed is refused, naming the platforms
    // that differ (both: the new commit's revision label is in each).
    p.write("arch-arm64.txt", "arm64, changed\n");
    p.commit(None);
    let out = run(reg.xtask(&p).args(["release", "--version", "1.0.0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`1.0.0` differs in linux/amd64, linux/arm64"),
        "{}",
        out.stderr
    );
    assert_eq!(
        index(&reg, &p.name, "1.0.0").0,
        d100,
        "the registry is unchanged"
    );

    // 1.1.0, then a fix of 1.0: `latest` stays on 1.1.0.
    p.git(&["tag", "v1.1.0"]);
    run(reg.xtask(&p).arg("release")).ok();
    let d110 = reg.digest(&p.name, "1.1.0").unwrap();
    p.write("arch-amd64.txt", "amd64, fixed\n");
    p.commit(Some("v1.0.1"));
    run(reg.xtask(&p).arg("release")).ok();
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(d110.as_str())
    );
    assert_eq!(index(&reg, &p.name, "1.0.1").1.len(), 2);

    // Rollback to 1.0.0 moves `latest` to its index, every platform with it.
    run(reg.xtask(&p).args(["rollback", "--to", "1.0.0"])).ok();
    let (latest, lp) = index(&reg, &p.name, "latest");
    assert_eq!(latest, d100);
    assert_eq!(lp, platforms);
}

#[test]
fn a_platform_that_cannot_run_here_is_refused_unless_allowed() {
    let p = project();
    p.commit(Some("v1.0.0"));
    // No binfmt handler at all: arm64 cannot run here.
    let none = tempfile::tempdir().unwrap();
    let out = run(p
        .xtask()
        .env("XTASK_BINFMT_MISC", none.path())
        .arg("release"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not run: no emulator for linux/arm64"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was pushed"), "{}", out.stderr);
    let layout = p.path().join("target/images").join(&p.name);
    assert!(!layout.exists());
    // The opt-out: pushed, with the platform's command test reported as not run. The layout
    // holds the whole index.
    let doc = json(run(p.xtask().env("XTASK_BINFMT_MISC", none.path()).args([
        "--json",
        "release",
        "--untested-platforms",
    ])));
    assert_eq!(doc["released"], true, "{doc}");
    let arm = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["platform"] == "linux/arm64")
        .unwrap();
    let machine = &arm["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "machine")
        .unwrap();
    assert!(machine["not_run"]
        .as_str()
        .unwrap()
        .starts_with("not run: no emulator"));
    let raw = run(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:1.0.0", layout.display()),
    ]))
    .ok();
    let v: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2, "{v}");
}
