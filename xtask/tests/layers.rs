//! `cargo xtask layers` end to end, and the layer budgets in `test` and `release`. The figures
//! are checked against a computation of our own over the same layer tars (in Python's
//! `tarfile`, written here from dive's definitions), not against the tool's own code.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::registry::Registry;
use support::*;

/// `{name}` builds FROM `{name}-base` (two layers: busybox and a file), then wastes: a 5 MiB
/// file added and deleted in a later step, a file overwritten, an apk cache left behind.
fn wasteful() -> (Project, RemoveImages) {
    let p = Project::new(&[
        (
            "docker/images.toml",
            r#"[[image]]
name = "{name}-base"
dockerfile = "docker/base.Dockerfile"

[[image]]
name = "{name}"
dockerfile = "docker/app.Dockerfile"
"#,
        ),
        (
            "docker/base.Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY base.txt /base.txt\n",
        ),
        (
            "docker/app.Dockerfile",
            r#"FROM {name}-base
ENV B=/bin/busybox
RUN ["/bin/busybox", "sh", "-c", "$B mkdir -p /tmp /etc /var/cache/apk && $B dd if=/dev/zero of=/tmp/big.bin bs=1024 count=5120 2>/dev/null && echo first-version > /etc/app.conf && $B dd if=/dev/zero of=/var/cache/apk/APKINDEX.tar.gz bs=1024 count=64 2>/dev/null"]
COPY app.txt /app.txt
RUN ["/bin/busybox", "sh", "-c", "$B rm /tmp/big.bin && echo second > /etc/app.conf"]
"#,
        ),
        ("base.txt", "base\n"),
        ("app.txt", "app\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox"))
        .expect("a static /bin/busybox is needed; run `bash .ci/setup` (busybox-static)");
    let names = RemoveImages(vec![format!("{}-base", p.name)]);
    (p, names)
}

/// dive's figures over an OCI directory's layer tars, computed independently.
const INDEPENDENT: &str = r#"
import json, os, sys, tarfile
d = sys.argv[1]
def blob(dg): return os.path.join(d, "blobs", *dg.split(":"))
idx = json.load(open(os.path.join(d, "index.json")))
man = json.load(open(blob(idx["manifests"][0]["digest"])))
def norm(n):
    n = n[2:] if n.startswith("./") else n
    return "/" + n.strip("/")
stack = {}          # path -> size, the image so far
data = {}           # path -> [cumulative, min, count]
for li, l in enumerate(man["layers"]):
    members = tarfile.open(blob(l["digest"])).getmembers()
    names = [norm(m.name) for m in members]
    entries = []
    for m, p in zip(members, names):
        parent, base = p.rsplit("/", 1)
        if base == ".wh..wh..opq":
            entries.append(("opq", parent or "/", 0))
        elif base.startswith(".wh."):
            entries.append(("wh", parent + "/" + base[4:], 0))
        else:
            entries.append(("add", p, m.size if (m.isfile() or m.issym() or m.islnk()) else 0))
    listed = set(p for k, p, s in entries)
    def leaf(p): return not any(o.startswith(p + "/") for o in listed)
    for kind, p, size in entries:
        if kind == "opq" or p == "/":
            continue
        if kind == "wh":
            size = sum(s for q, s in stack.items() if q == p or q.startswith(p + "/"))
        elif not leaf(p):
            continue
        c = data.setdefault(p, [0, None, 0])
        c[0] += size
        c[1] = size if c[1] is None else min(c[1], size)
        c[2] += 1
    for kind, p, size in entries:
        if kind in ("wh", "opq"):
            for q in [q for q in stack if q.startswith(p + "/") or (kind == "wh" and q == p)]:
                del stack[q]
    for kind, p, size in entries:
        if kind == "add":
            stack[p] = size
cum = sum(v[0] for v in data.values())
mn = sum(v[1] for v in data.values())
wasted = {p: v[0] for p, v in data.items() if v[2] >= 2 and v[0] > 0}
print(json.dumps({"efficiency": mn / cum if cum else 1.0, "wasted_bytes": sum(wasted.values()), "wasted": wasted}))
"#;

fn independent(engine: &str, image: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oci");
    if engine == "docker" {
        run(Command::new("skopeo")
            .args(["copy", "--quiet", &format!("docker-daemon:sha256:{image}")])
            .arg(format!("oci:{}", out.display())))
        .ok();
    } else {
        podman(&[
            "save",
            "--format",
            "oci-dir",
            "--output",
            out.to_str().unwrap(),
            image,
        ])
        .ok();
    }
    let r = run(Command::new("python3").args(["-c", INDEPENDENT]).arg(&out)).ok();
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn wasted_bytes_and_efficiency_match_an_independent_computation() {
    waste_measured("podman");
}

#[test]
fn with_docker_wasted_bytes_and_efficiency_match_an_independent_computation() {
    waste_measured("docker");
}

fn waste_measured(engine: &str) {
    // One at a time: these images share their base's layers, and podman 4.3 fails a build
    // whose cache candidate another test removes meanwhile.
    let _serial = support::serial();
    require(engine);
    let (p, _names) = wasteful();
    let _docker = DockerImages::of(p.name.clone());
    let xtask = || with_engine(p.xtask(), engine);
    p.commit(None);
    run(xtask().arg("build")).ok();
    let doc = json(run(xtask().args(["--json", "layers"])));
    let app = image_named(&doc, &p.name);
    let id = app["id"].as_str().unwrap();
    let want = independent(engine, id);
    assert_eq!(app["wasted_bytes"], want["wasted_bytes"], "{app}");
    let (got, exp) = (
        app["efficiency"].as_f64().unwrap(),
        want["efficiency"].as_f64().unwrap(),
    );
    assert!((got - exp).abs() < 1e-12, "efficiency {got} vs {exp}");
    let paths: std::collections::BTreeMap<String, u64> = app["wasted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().to_string(),
                w["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: std::collections::BTreeMap<String, u64> =
        serde_json::from_value(want["wasted"].clone()).unwrap();
    assert_eq!(paths, expected);
    // The 5 MiB file counts twice (added, then deleted), the largest first.
    assert_eq!(app["wasted"][0]["path"], "/tmp/big.bin");
    assert_eq!(app["wasted"][0]["bytes"], 2 * 5 * 1024 * 1024);
    assert!(paths.contains_key("/etc/app.conf"), "{paths:?}");
    let hint = app["wasted"][0]["hint"].as_str().unwrap();
    assert!(
        hint.contains("still shipped") && hint.contains("line 3") && hint.contains("line 5"),
        "{hint}"
    );
    // Every layer of the base counts as base, not only the first; the rest map to their lines.
    let layers = app["layers"].as_array().unwrap();
    let flags: Vec<(bool, Option<u64>)> = layers
        .iter()
        .map(|l| (l["base"].as_bool().unwrap(), l["line"].as_u64()))
        .collect();
    assert_eq!(
        flags,
        [
            (true, None),
            (true, None),
            (false, Some(3)),
            (false, Some(4)),
            (false, Some(5))
        ]
    );
    assert_eq!(layers[2]["largest"][0]["path"], "/tmp/big.bin");
    assert!(app["user_wasted_percent"].as_f64().unwrap() > 50.0, "{app}");

    // The human report names the paths and what to change.
    let out = run(xtask().arg("layers")).ok();
    assert!(out.stdout.contains("/tmp/big.bin"), "{}", out.stdout);
    assert!(out.stdout.contains("apk add --no-cache"), "{}", out.stdout);
    assert_eq!(app["culprits"][0]["path"], "/var/cache/apk");
    assert_eq!(app["culprits"][0]["bytes"], 64 * 1024);
    assert_eq!(app["culprits"][0]["line"], 3);

    // The base itself is clean.
    let base = image_named(&doc, &format!("{}-base", p.name));
    assert_eq!(base["wasted_bytes"], 0);
    assert_eq!(base["efficiency"], 1.0);
}

#[test]
fn a_clean_multi_stage_image_wastes_nothing() {
    // One at a time: these images share their base's layers, and podman 4.3 fails a build
    // whose cache candidate another test removes meanwhile.
    let _serial = support::serial();
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch AS build\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox dd if=/dev/zero of=/out.bin bs=1024 count=512 2>/dev/null && /bin/busybox rm /bin/busybox\"]\nFROM scratch\nCOPY --from=build /out.bin /out.bin\nCOPY app.txt /app.txt\n",
        ),
        ("app.txt", "app\n"),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox")).unwrap();
    p.commit(None);
    run(p.xtask().arg("build")).ok();
    let doc = json(run(p.xtask().args(["--json", "layers"])));
    let app = image_named(&doc, &p.name);
    assert_eq!(app["wasted"], serde_json::json!([]), "{app}");
    assert_eq!(app["efficiency"], 1.0);
    let want = independent("podman", app["id"].as_str().unwrap());
    assert_eq!(want["wasted_bytes"], 0);
}

#[test]
fn a_release_over_its_waste_budget_stops_before_the_push() {
    // One at a time: these images share their base's layers, and podman 4.3 fails a build
    // whose cache candidate another test removes meanwhile.
    let _serial = support::serial();
    let (p, _names) = wasteful();
    let toml = std::fs::read_to_string(p.path().join("docker/images.toml")).unwrap();
    p.write(
        "docker/images.toml",
        &toml.replace(
            "dockerfile = \"docker/app.Dockerfile\"\n",
            "dockerfile = \"docker/app.Dockerfile\"\nmax_wasted = \"1MB\"\nmin_efficiency = 0.5\n",
        ),
    );
    p.commit(Some("v1.0.0"));
    let reg = Registry::start();
    let out = run(reg.xtask(&p).arg("release"));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("wasted <= 1.0 MB"), "{all}");
    assert!(
        all.contains("/tmp/big.bin") && all.contains("over max_wasted 1.0 MB"),
        "{all}"
    );
    assert!(all.contains("efficiency >= 50.0%"), "{all}");
    assert!(all.contains("nothing was pushed"), "{all}");
    assert!(reg.tags(&p.name).is_empty(), "the registry is untouched");
    assert!(reg.tags(&format!("{}-base", p.name)).is_empty());
}
