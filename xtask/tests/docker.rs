//! The Docker engine end to end, against a real daemon (Debian's docker.io, which `.ci/setup`
//! installs and starts): build with tags and labels, smoke tests (a command, a file, a service),
//! release to a registry and to the default OCI layout, a second release, and a rollback.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use support::registry::Registry;
use support::*;

/// Fails loudly when there is no daemon: CI must have one.
fn docker() -> Command {
    support::require("docker");
    Command::new("docker")
}

fn project() -> Project {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY hello.txt /hello.txt\nENTRYPOINT [\"/bin/busybox\"]\n",
        ),
        (
            "docker/images.toml",
            "[[image]]\nname = \"{name}\"\n\n[[image.smoke]]\nname = \"says hello\"\ncommand = [\"cat\", \"/hello.txt\"]\nexpect_stdout = [\"hello\"]\n\n[[image.smoke]]\nname = \"has hello\"\nfile = \"/hello.txt\"\nexists = true\n\n[[image.smoke]]\nname = \"serves\"\nservice = true\ncommand = [\"httpd\", \"-f\", \"-p\", \"8000\"]\nwait_for = { port = 8000 }\ntimeout = \"30s\"\n",
        ),
        (".dockerignore", "target\n"),
        ("hello.txt", "hello 1\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox")).expect("static /bin/busybox");
    p
}

#[test]
fn build_test_release_and_rollback_with_docker() {
    let _serial = support::serial();
    let mut inspect = docker();
    let p = project();
    let _images = support::DockerImages::of(p.name.clone());
    p.commit(Some("v1.0.0"));

    // Build: the daemon holds the image with its tags and labels.
    let mut c = with_engine(p.xtask(), "docker");
    run(c.arg("build")).ok();
    let labels = run(inspect
        .args(["image", "inspect", "--format", "{{json .Config.Labels}}"])
        .arg(p.reference("1.0.0")))
    .ok();
    assert!(
        labels
            .stdout
            .contains("\"org.opencontainers.image.version\":\"1.0.0\""),
        "{}",
        labels.stdout
    );

    // What this Docker cannot do is refused with the reason, before anything runs.
    let mut c = with_engine(p.xtask(), "docker");
    let multi = run(c.args(["build", "--platform", "linux/amd64,linux/arm64"]));
    assert_eq!(multi.code, 2, "{}", multi.stderr);
    assert!(
        multi.stderr.contains("build them one --platform at a time"),
        "{}",
        multi.stderr
    );

    // Smoke tests run in containers of the daemon.
    let mut c = with_engine(p.xtask(), "docker");
    let tested = run(c.arg("test")).ok();
    for t in ["says hello", "has hello", "serves"] {
        assert!(tested.stdout.contains(t), "{}", tested.stdout);
    }

    // A release to the default OCI layout, then to a registry.
    let mut c = with_engine(p.xtask(), "docker");
    let layout = run(c.arg("release")).ok();
    let said = format!("{}{}", layout.stdout, layout.stderr);
    assert!(said.contains("released 1.0.0"), "{said}");
    assert!(p
        .path()
        .join("target/images")
        .join(&p.name)
        .join("index.json")
        .is_file());

    let reg = Registry::start();
    let mut c = with_engine(reg.xtask(&p), "docker");
    run(c.arg("release")).ok();
    let first = reg.digest(&p.name, "1.0.0").expect("1.0.0 pushed");
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(first.as_str())
    );

    p.write("hello.txt", "hello 2\n");
    p.commit(Some("v1.1.0"));
    let mut c = with_engine(reg.xtask(&p), "docker");
    run(c.arg("release")).ok();
    let second = reg.digest(&p.name, "1.1.0").expect("1.1.0 pushed");
    assert_ne!(first, second);
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(second.as_str())
    );

    // Rollback moves `latest` back by digest, and the daemon's local `latest` with it.
    let mut c = with_engine(reg.xtask(&p), "docker");
    run(c.args(["rollback", "--to", "1.0.0"])).ok();
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(first.as_str())
    );
    let local = run(docker()
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
        ])
        .arg(p.reference("latest")))
    .ok();
    assert_eq!(local.stdout.trim(), "1.0.0", "the daemon's local `latest`");

    // The same commit released with podman into the same registry: Docker's version stays.
    let mut c = with_engine(reg.xtask(&p), "podman");
    let podman = run(c.arg("release"));
    assert_eq!(podman.code, 1, "{}", podman.stderr);
    assert!(
        podman.stderr.contains("published versions are immutable"),
        "{}",
        podman.stderr
    );
    assert_eq!(
        reg.digest(&p.name, "1.1.0").as_deref(),
        Some(second.as_str()),
        "podman's release replaced Docker's 1.1.0:\n{}",
        podman.stderr
    );
    // And podman rolls back Docker's releases (here: to where Docker's rollback put `latest`),
    // naming the image in podman's store.
    let mut c = with_engine(reg.xtask(&p), "podman");
    run(c.args(["rollback", "--to", "1.0.0"])).ok();
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(first.as_str())
    );
    assert!(!support::image_id(&p.reference("latest")).is_empty());

    // Forward-only floating tags across engines: podman's newer 1.2.0 moves them, Docker's
    // older 1.1.1 (tagged later) moves only its own line, and Docker rolls back podman's.
    p.write("hello.txt", "hello 3\n");
    p.commit(Some("v1.2.0"));
    let mut c = with_engine(reg.xtask(&p), "podman");
    run(c.arg("release")).ok();
    let third = reg.digest(&p.name, "1.2.0").expect("1.2.0 pushed");
    p.write("hello.txt", "hello 4\n");
    p.commit(Some("v1.1.1"));
    let mut c = with_engine(reg.xtask(&p), "docker");
    run(c.arg("release")).ok();
    let fourth = reg.digest(&p.name, "1.1.1").expect("1.1.1 pushed");
    for (tag, want) in [("latest", &third), ("1", &third), ("1.1", &fourth)] {
        assert_eq!(reg.digest(&p.name, tag).as_ref(), Some(want), "{tag}");
    }
    let mut c = with_engine(reg.xtask(&p), "docker");
    let back = run(c.arg("rollback")).ok();
    assert!(back.stdout.contains("to 1.1.1"), "{}", back.stdout);
    assert_eq!(reg.digest(&p.name, "latest").as_ref(), Some(&fourth));
}

/// Docker's legacy builder defines no platform arguments: the tool passes those the
/// Dockerfile declares, and only those (the builder warns about any it was given unused).
#[test]
fn the_platform_arguments_a_dockerfile_declares_are_given_to_the_legacy_builder() {
    let _serial = support::serial();
    docker();
    let p = Project::new(&[
        (
            "docker/images.toml",
            "[[image]]\nname = \"{name}\"\n\n[[image.smoke]]\nname = \"own busybox\"\ncommand = [\"cat\", \"/arch.txt\"]\nexpect_stdout = [\"^amd64|arm64$\"]\n",
        ),
        (
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\nCOPY arch-${TARGETARCH}.txt /arch.txt\nENTRYPOINT [\"/bin/busybox\"]\n",
        ),
        ("arch-amd64.txt", "amd64\n"),
        ("arch-arm64.txt", "arm64\n"),
        (".dockerignore", "target\n.git\n"),
    ]);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no busybox fixture for {other}"),
    };
    std::fs::copy("/bin/busybox", p.path().join(format!("busybox-{arch}")))
        .expect("static /bin/busybox");
    let _images = support::DockerImages::of(p.name.clone());
    p.commit(None);
    let mut c = with_engine(p.xtask(), "docker");
    let planned = run(c.args(["build", "--dry-run"])).ok();
    let build = planned
        .stdout
        .lines()
        .find(|l| l.starts_with("docker build"))
        .expect("a docker build line");
    assert!(
        build.contains(&format!("--build-arg TARGETARCH={arch} ")),
        "{build}"
    );
    assert!(!build.contains("TARGETOS"), "undeclared: {build}");
    let mut c = with_engine(p.xtask(), "docker");
    let built = run(c.arg("build")).ok();
    assert!(
        !built.stderr.contains("were not consumed"),
        "{}",
        built.stderr
    );
    let mut c = with_engine(p.xtask(), "docker");
    let tested = run(c.arg("test")).ok();
    assert!(tested.stdout.contains("own busybox"), "{}", tested.stdout);
}

/// Docker's builder stamps each image with its build time: the same commit rebuilt where its
/// layer cache is gone (a fresh CI runner) is another image, and releasing it again is refused
/// with that reason (podman's `--timestamp` rebuild is the same image: `build.rs`).
#[test]
fn a_release_rebuilt_on_a_fresh_daemon_is_refused_and_says_why() {
    let _serial = support::serial();
    docker();
    let p = project();
    let images = support::DockerImages::of(p.name.clone());
    p.commit(Some("v1.0.0"));
    let mut c = with_engine(p.xtask(), "docker");
    run(c.arg("release")).ok();
    let first = image_id_on("docker", &p.reference("1.0.0"));
    images.remove();
    let mut c = with_engine(p.xtask(), "docker");
    let again = run(c.arg("release"));
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_ne!(image_id_on("docker", &p.reference("1.0.0")), first);
    assert!(
        again.stderr.contains("published versions are immutable")
            && again.stderr.contains("Docker's builder has no --timestamp"),
        "{}",
        again.stderr
    );
}
