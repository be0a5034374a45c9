//! Signed releases and verified pulls, end to end: throwaway GPG keys made here, a real
//! docker-registry, signatures in a file lookaside. A signed release verifies; an altered
//! signature, a digest signed by another key and an unsigned digest pushed by hand under a
//! version tag are each reported by `verify` and refused by `rollback` and `pull`; a release with
//! a key that cannot sign pushes nothing. The OCI layout signs and verifies the same way.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::registry::{Registry, USER};
use support::{run, Out, Project};

/// A GPG home with two keys: the release key and another one.
struct Keys {
    home: tempfile::TempDir,
    release: String,
    other: String,
}

impl Keys {
    fn new() -> Keys {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut fprs = Vec::new();
        for who in [
            "xtask release <release@example.test>",
            "someone else <other@example.test>",
        ] {
            let out = run(Command::new("gpg").env("GNUPGHOME", home.path()).args([
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                who,
                "default",
                "default",
                "never",
            ]));
            assert_eq!(out.code, 0, "gpg key generation: {}", out.stderr);
            let list = run(Command::new("gpg").env("GNUPGHOME", home.path()).args([
                "--with-colons",
                "--list-keys",
                who,
            ]))
            .ok();
            let fpr = list
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("fpr:::::::::"))
                .unwrap()
                .trim_end_matches(':')
                .to_string();
            fprs.push(fpr);
        }
        Keys {
            home,
            release: fprs.remove(0),
            other: fprs.remove(0),
        }
    }

    fn gpg_env(&self, c: &mut Command) {
        c.env("GNUPGHOME", self.home.path());
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn project(sign: &str) -> Project {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n",
        ),
        ("hello.txt", "v0\n"),
        (".dockerignore", "target\n"),
        (
            "docker/images.toml",
            &format!("[[image]]\nname = \"{{name}}\"\n\n[sign]\n{sign}"),
        ),
    ]);
    p
}

fn release_commit(p: &Project, version: &str) {
    p.write("hello.txt", &format!("{version}\n"));
    p.commit(Some(&format!("v{version}")));
}

fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr:\n{}", out.stdout, out.stderr))
}

/// The verdict `verify --json` gives `reference`.
fn verdict(v: &serde_json::Value, reference: &str) -> String {
    v["images"][0]["references"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reference"] == reference)
        .unwrap_or_else(|| panic!("{reference} not in {v:#}"))["signature"]["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Pushes an image built here (not by a release) under `tag`, by hand.
fn push_by_hand(reg: &Registry, p: &Project, tag: &str, label: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM scratch\nLABEL swapped={label}\n"),
    )
    .unwrap();
    let local = format!("localhost/{}-byhand:{label}", p.name);
    support::podman(&["build", "-q", "-t", &local, &dir.path().to_string_lossy()]).ok();
    let mut c = Command::new("skopeo");
    support::isolated(&mut c).args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("--dest-creds={USER}:{}", reg.password),
        &format!("containers-storage:{local}"),
        &format!("docker://{}/{}:{tag}", reg.registry(), p.name),
    ]);
    run(&mut c).ok();
    reg.digest(&p.name, tag).unwrap()
}

/// Signs what `tag` holds with `fpr`, straight into the lookaside, as someone with another key
/// (or the right key, by hand) would.
fn sign_by_hand(reg: &Registry, keys: &Keys, lookaside: &Path, p: &Project, tag: &str, fpr: &str) {
    let raw = reg.skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{}:{tag}", reg.registry(), p.name),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, raw.ok().stdout.as_bytes()).unwrap();
    let digest = reg.digest(&p.name, tag).unwrap();
    let sigdir = lookaside.join(format!("team/{}@{}", p.name, digest.replacen(':', "=", 1)));
    std::fs::create_dir_all(&sigdir).unwrap();
    let mut c = Command::new("skopeo");
    keys.gpg_env(&mut c);
    c.arg("standalone-sign")
        .arg(&manifest)
        .arg(format!("{}/{}:{tag}", reg.registry(), p.name))
        .arg(fpr)
        .arg("-o")
        .arg(sigdir.join("signature-1"));
    run(&mut c).ok();
}

fn signature_file(lookaside: &Path, reg_path: &str, digest: &str) -> PathBuf {
    lookaside.join(format!(
        "{reg_path}@{}/signature-1",
        digest.replacen(':', "=", 1)
    ))
}

#[test]
fn signed_registry_releases_verify_and_anything_else_is_reported_and_refused() {
    registry_signed("podman");
}

#[test]
fn with_docker_signed_registry_releases_verify_and_anything_else_is_reported_and_refused() {
    registry_signed("docker");
}

fn registry_signed(engine: &str) {
    let _serial = support::serial();
    support::require(engine);
    let keys = Keys::new();
    let reg = Registry::start();
    let sigstore = tempfile::tempdir().unwrap();
    let p = project(&format!(
        "lookaside = \"file://{}\"\n",
        sigstore.path().display()
    ));
    let docker = support::DockerImages::of(p.name.clone());
    let xtask = || {
        let mut c = support::with_engine(reg.xtask(&p), engine);
        keys.gpg_env(&mut c);
        c.env("XTASK_SIGN_KEY", &keys.release);
        c
    };

    // A signed release: the signature is in the lookaside, read back and verified.
    release_commit(&p, "1.0.0");
    let out = run(xtask().args(["--json", "release"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["images"][0]["signature"]["status"], "signed", "{v:#}");
    let d100 = reg.digest(&p.name, "1.0.0").unwrap();
    let sig100 = signature_file(sigstore.path(), &format!("team/{}", p.name), &d100);
    assert!(sig100.exists(), "{}", sig100.display());
    release_commit(&p, "1.1.0");
    let out = run(xtask().arg("release")).ok();
    assert!(
        out.stdout.contains("signed by") && out.stdout.contains("\"signedBy\""),
        "the release names the policy consumers need: {}",
        out.stdout
    );
    let v = json(&run(xtask().args(["--json", "verify"])));
    assert_eq!(v["verified"], true, "{v:#}");
    for r in ["1.0.0", "1.1.0", "latest", "1", "1.1"] {
        assert_eq!(verdict(&v, r), "signed", "{r}");
    }

    // An altered signature: reported, and a rollback to it refused.
    let d110 = reg.digest(&p.name, "1.1.0").unwrap();
    let sig110 = signature_file(sigstore.path(), &format!("team/{}", p.name), &d110);
    let good = std::fs::read(&sig110).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&sig110, &bad).unwrap();
    let out = run(xtask().args(["--json", "verify", "1.1.0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(verdict(&json(&out), "1.1.0"), "invalid");
    std::fs::write(&sig110, &good).unwrap();

    // A digest signed by another key, under a version tag: reported, never rolled back to.
    push_by_hand(&reg, &p, "1.2.0", "other-key");
    sign_by_hand(&reg, &keys, sigstore.path(), &p, "1.2.0", &keys.other);
    // An unsigned digest pushed by hand under a version tag.
    push_by_hand(&reg, &p, "1.3.0", "unsigned");
    let out = run(xtask().args(["--json", "verify"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(verdict(&v, "1.0.0"), "signed");
    assert_eq!(verdict(&v, "1.2.0"), "other_key");
    assert_eq!(verdict(&v, "1.3.0"), "unsigned");
    let human = run(xtask().arg("verify"));
    assert!(
        human.stdout.contains("SIGNED BY ANOTHER KEY") && human.stdout.contains("NOT SIGNED"),
        "{}",
        human.stdout
    );
    let latest = reg.digest(&p.name, "latest");
    for (to, why) in [("1.2.0", "SIGNED BY ANOTHER KEY"), ("1.3.0", "NOT SIGNED")] {
        let out = run(xtask().args(["rollback", "--to", to]));
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("refusing to roll back {} to {to}", p.name))
                && out.stderr.contains(why),
            "{}",
            out.stderr
        );
        assert_eq!(reg.digest(&p.name, "latest"), latest, "latest moved");
    }
    // A signed release is rolled back to.
    run(xtask().args(["rollback", "--to", "1.0.0"])).ok();
    assert_eq!(
        reg.digest(&p.name, "latest").as_deref(),
        Some(d100.as_str())
    );

    // A verified pull, into another machine's store (for Docker: the daemon without the
    // project's images); the unsigned one refused.
    let machine = tempfile::tempdir().unwrap();
    let conf = support::store_in(machine.path());
    docker.remove();
    let out = run(xtask()
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["pull", "1.1.0"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("signed by"), "{}", out.stdout);
    let mut c = Command::new(engine);
    c.env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["image", "inspect", &p.reference("1.1.0")]);
    assert_eq!(run(&mut c).code, 0, "the pulled image is not there");
    let out = run(xtask()
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["pull", "1.3.0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("refusing to pull"), "{}", out.stderr);

    // Signing that fails after the push (the signature cannot be stored): the pushed version
    // is removed again, and nothing else moved.
    let toml = std::fs::read_to_string(p.path().join("docker/images.toml")).unwrap();
    p.write(
        "docker/images.toml",
        &format!("{toml}lookaside_staging = \"file:///dev/null/signatures\"\n"),
    );
    release_commit(&p, "1.5.0");
    let latest = reg.digest(&p.name, "latest");
    let out = run(xtask().arg("release"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the unsigned `1.5.0` this run pushed was removed again"),
        "{}",
        out.stderr
    );
    assert!(!reg.tags(&p.name).contains(&"1.5.0".to_string()));
    assert_eq!(reg.digest(&p.name, "latest"), latest, "latest moved");
    p.write("docker/images.toml", &toml);

    // A key that cannot sign: nothing is pushed.
    release_commit(&p, "1.4.0");
    let out = run(xtask()
        .env("XTASK_SIGN_KEY", "0123456789ABCDEF0123456789ABCDEF01234567")
        .arg("release"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing was built or pushed"),
        "{}",
        out.stderr
    );
    // A key whose public half is there but whose secret is not: it cannot sign.
    let mut c = Command::new("gpg");
    keys.gpg_env(&mut c);
    run(c.args(["--batch", "--yes", "--delete-secret-keys", &keys.other])).ok();
    let out = run(xtask().env("XTASK_SIGN_KEY", &keys.other).arg("release"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot sign") && out.stderr.contains("nothing was pushed"),
        "{}",
        out.stderr
    );
    assert!(!reg.tags(&p.name).contains(&"1.4.0".to_string()));
}

#[test]
fn the_oci_layout_release_is_signed_and_verified_the_same_way() {
    layout_signed("podman");
}

#[test]
fn with_docker_the_oci_layout_release_is_signed_and_verified_the_same_way() {
    layout_signed("docker");
}

fn layout_signed(engine: &str) {
    let _serial = support::serial();
    support::require(engine);
    let keys = Keys::new();
    let p = project("");
    let _docker = support::DockerImages::of(p.name.clone());
    let xtask = || {
        let mut c = support::with_engine(p.xtask(), engine);
        keys.gpg_env(&mut c);
        c.env("XTASK_SIGN_KEY", &keys.release);
        c
    };
    release_commit(&p, "2.0.0");
    let v = json(&run(xtask().args(["--json", "release"])).ok());
    assert_eq!(v["images"][0]["signature"]["status"], "signed", "{v:#}");
    let digest = v["images"][0]["digest"].as_str().unwrap().to_string();
    let sig = signature_file(&p.path().join("target/images/signatures"), &p.name, &digest);
    assert!(sig.exists(), "{}", sig.display());
    release_commit(&p, "2.1.0");
    run(xtask().arg("release")).ok();
    let v = json(&run(xtask().args(["--json", "verify"])));
    assert_eq!(v["verified"], true, "{v:#}");
    // Altered: verify reports it, rollback refuses it.
    let mut bad = std::fs::read(&sig).unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&sig, &bad).unwrap();
    let out = run(xtask().args(["--json", "verify", "2.0.0"]));
    assert_eq!(out.code, 1);
    assert_eq!(verdict(&json(&out), "2.0.0"), "invalid");
    let out = run(xtask().args(["rollback", "--to", "2.0.0"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("refusing to roll back"),
        "{}",
        out.stderr
    );
    // The signatures are output, not source: git does not see them.
    assert_eq!(p.git(&["status", "--porcelain"]).stdout, "");
}

#[test]
fn a_manifest_list_is_signed_with_every_platform_image() {
    let _serial = support::serial();
    let keys = Keys::new();
    let reg = Registry::start();
    let sigstore = tempfile::tempdir().unwrap();
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY arch-${TARGETARCH}.txt /arch.txt\n",
        ),
        ("arch-amd64.txt", "amd64\n"),
        ("arch-arm64.txt", "arm64\n"),
        (".dockerignore", "target\n"),
        (
            "docker/images.toml",
            &format!(
                "[[image]]\nname = \"{{name}}\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n[sign]\nlookaside = \"file://{}\"\n",
                sigstore.path().display()
            ),
        ),
    ]);
    p.commit(Some("v3.0.0"));
    let mut c = reg.xtask(&p);
    keys.gpg_env(&mut c);
    c.env("XTASK_SIGN_KEY", &keys.release)
        .args(["--json", "release", "--untested-platforms"]);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["images"][0]["signature"]["status"], "signed", "{v:#}");
    let list = reg.digest(&p.name, "3.0.0").unwrap();
    let raw = reg.skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{}:3.0.0", reg.registry(), p.name),
    ]);
    let index: serde_json::Value = serde_json::from_str(&raw.ok().stdout).unwrap();
    let mut digests = vec![list];
    for m in index["manifests"].as_array().unwrap() {
        digests.push(m["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests.len(), 3, "{index:#}");
    for d in &digests {
        let sig = signature_file(sigstore.path(), &format!("team/{}", p.name), d);
        assert!(sig.exists(), "no signature for {d}");
    }
    let mut c = reg.xtask(&p);
    keys.gpg_env(&mut c);
    c.env("XTASK_SIGN_KEY", &keys.release)
        .args(["--json", "verify"]);
    let v = json(&run(&mut c));
    assert_eq!(v["verified"], true, "{v:#}");
}
