//! Releases under faults, against a real registry: killed after every step and at random
//! instants inside pushes, through a proxy that fails, resets and stalls, two at once, and on a
//! full disk. After each fault the registry must be consistent (a version tag absent or at the
//! image its release tested; a floating tag only at a published version of its line) and a
//! re-run must finish the release; no credentials may stay on disk.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::faultproxy::{Fault, Proxy, Rule};
use support::registry::Registry;
use support::{run, Out, Project};

fn project() -> Project {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY hello.txt /hello.txt\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"cat\", \"/hello.txt\"]\n",
        ),
        ("hello.txt", "v0\n"),
        (
            "docker/images.toml",
            "[[image]]\nname = \"{name}\"\n[[image.smoke]]\nname = \"hello\"\ncommand = [\"cat\", \"/hello.txt\"]\nexpect_stdout = [\"^v\"]\n",
        ),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox"))
        .expect("a static /bin/busybox (busybox-static; run `bash .ci/setup`)");
    p
}

fn release_commit(p: &Project, version: &str) {
    p.write("hello.txt", &format!("v{version}\n"));
    p.commit(Some(&format!("v{version}")));
}

/// The tool, on `p`, against `reg` (or, with `via`, the proxy in front of it), its temporary
/// files (private logins, locks) in `tmp`.
fn xtask(reg: &Registry, p: &Project, tmp: &Path, via: Option<&Proxy>) -> Command {
    let mut c = reg.xtask(p);
    c.env("TMPDIR", tmp);
    if let Some(proxy) = via {
        c.env("XTASK_REGISTRY", format!("127.0.0.1:{}/team", proxy.port));
    }
    c
}

/// The image ID (config digest, without `sha256:`) `tag` holds.
fn image_at(reg: &Registry, name: &str, tag: &str) -> String {
    let raw = reg.skopeo(&[
        "inspect",
        "--raw",
        &format!("docker://{}/{name}:{tag}", reg.registry()),
    ]);
    let m: serde_json::Value = serde_json::from_str(&raw.ok().stdout).unwrap();
    m["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

/// Asserts the invariants of a registry after any fault: every version tag holds the image its
/// release tested (the local `NAME:X.Y.Z`), every floating tag a published version of its line.
#[track_caller]
fn assert_consistent(reg: &Registry, p: &Project, context: &str) {
    assert_consistent_in(reg, &p.name, &[None], context)
}

/// The local image ID of `reference` in a store (`None`: the test's own), if it is there.
fn local_id(store: Option<&Path>, reference: &str) -> Option<String> {
    let mut c = Command::new("podman");
    support::isolated(&mut c);
    if let Some(conf) = store {
        c.env("CONTAINERS_STORAGE_CONF", conf);
    }
    let out = run(c.args(["image", "inspect", "--format", "{{.Id}}", reference]));
    (out.code == 0).then(|| out.stdout.trim().to_string())
}

/// The IDs of every local image named `name` in a store.
fn local_ids(store: Option<&Path>, name: &str) -> Vec<String> {
    let mut c = Command::new("podman");
    support::isolated(&mut c);
    if let Some(conf) = store {
        c.env("CONTAINERS_STORAGE_CONF", conf);
    }
    let out = run(c.args(["images", "--no-trunc", "--format", "{{.ID}}", name]));
    out.stdout
        .lines()
        .map(|l| l.trim().trim_start_matches("sha256:").to_string())
        .collect()
}

/// [`assert_consistent`] for releases tested on several machines (their image stores).
#[track_caller]
fn assert_consistent_in(reg: &Registry, name: &str, stores: &[Option<&Path>], context: &str) {
    let tags = reg.tags(name);
    let versions: Vec<semver::Version> = tags
        .iter()
        .filter(|t| t.split('.').count() == 3)
        .filter_map(|t| semver::Version::parse(t).ok())
        .collect();
    let mut digests = Vec::new();
    for v in &versions {
        let tag = v.to_string();
        let there = image_at(reg, name, &tag);
        let tested: Vec<String> = stores
            .iter()
            .filter_map(|s| local_id(*s, &format!("{name}:{tag}")))
            .collect();
        assert!(
            tested.contains(&there),
            "{context}: `{tag}` holds {there}, not a tested image ({tested:?})"
        );
        digests.push((v.clone(), reg.digest(name, &tag).unwrap()));
    }
    for t in &tags {
        // `latest` and the date tag: any release; `X`, `X.Y`: that line's. The commit tag:
        // the image that commit's release tested (below).
        let line: Option<(Option<u64>, Option<u64>)> = match t.split('.').count() {
            _ if t == "latest" || t.len() == 8 => Some((None, None)),
            _ if t.len() == 7 => None,
            1 => t.parse::<u64>().ok().map(|m| (Some(m), None)),
            2 => {
                let (a, b) = t.split_once('.').unwrap();
                a.parse::<u64>()
                    .ok()
                    .zip(b.parse::<u64>().ok())
                    .map(|(ma, mi)| (Some(ma), Some(mi)))
            }
            _ => None,
        };
        if t.len() == 7 {
            let there = image_at(reg, name, t);
            let tested: Vec<String> = stores.iter().flat_map(|s| local_ids(*s, name)).collect();
            assert!(
                tested.contains(&there),
                "{context}: commit tag `{t}` holds {there}, which no machine tested"
            );
        }
        let Some(line) = line else { continue };
        let d = reg.digest(name, t).unwrap();
        assert!(
            digests.iter().any(|(v, vd)| {
                line.0.is_none_or(|m| v.major == m)
                    && line.1.is_none_or(|m| v.minor == m)
                    && *vd == d
            }),
            "{context}: floating `{t}` holds {d}, which no published version of its line holds ({digests:?})"
        );
    }
}

/// After a finished release of `version`, every tag of it is there, at one digest.
#[track_caller]
fn assert_released(reg: &Registry, p: &Project, version: &str) {
    let v = semver::Version::parse(version).unwrap();
    let d = reg.digest(&p.name, version).expect("the version tag");
    for t in [
        "latest".to_string(),
        v.major.to_string(),
        format!("{}.{}", v.major, v.minor),
    ] {
        assert_eq!(
            reg.digest(&p.name, &t).as_deref(),
            Some(d.as_str()),
            "`{t}` after releasing {version}"
        );
    }
}

/// No private login directory of the tool is left in `tmp`.
#[track_caller]
fn assert_no_credentials(tmp: &Path, context: &str) {
    let left = support::private_logins(tmp);
    assert!(left.is_empty(), "{context}: credentials left: {left:?}");
}

#[test]
fn a_release_killed_after_any_step_leaves_the_registry_consistent_and_a_rerun_finishes_it() {
    let _serial = support::serial();
    let reg = Registry::start();
    let p = project();
    let tmp = tempfile::tempdir().unwrap();
    // The release's own step list: every command that changes something, in order.
    release_commit(&p, "1.0.0");
    let log = tmp.path().join("steps.log");
    run(xtask(&reg, &p, tmp.path(), None)
        .env("XTASK_FAULT_LOG", &log)
        .arg("release"))
    .ok();
    let steps: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').unwrap().1.to_string())
        .collect();
    eprintln!("the release's steps: {steps:#?}");
    let has = |what: &str| steps.iter().any(|s| s.contains(what));
    assert!(
        has("podman build") && has("podman push") && has("skopeo copy"),
        "{steps:#?}"
    );
    assert_no_credentials(tmp.path(), "after a release");

    for k in 1..=steps.len() {
        let version = format!("1.1.{k}");
        release_commit(&p, &version);
        let log = tmp.path().join(format!("steps-{k}.log"));
        let out = run(xtask(&reg, &p, tmp.path(), None)
            .env("XTASK_FAULT_LOG", &log)
            .env("XTASK_FAULT_KILL_AFTER_STEP", k.to_string())
            .arg("release"));
        let last = std::fs::read_to_string(&log).unwrap_or_default();
        let at = last.lines().last().unwrap_or("before any step").to_string();
        assert_eq!(
            out.code, -1,
            "release {version} was to be killed after step {k}: {}",
            out.stderr
        );
        let context = format!("killed after step {k} ({at})");
        assert_consistent(&reg, &p, &context);
        let again = run(xtask(&reg, &p, tmp.path(), None).arg("release"));
        assert_eq!(
            again.code, 0,
            "re-run after being {context}: {}",
            again.stderr
        );
        assert_consistent(&reg, &p, &format!("re-run after being {context}"));
        assert_released(&reg, &p, &version);
        // The killed run's login was swept by the re-run, whose own went with it.
        assert_no_credentials(tmp.path(), &format!("re-run after being {context}"));
    }
}

/// A pseudo-random sequence from the clock, printed so a failure can be replayed
/// (`FAULT_SEED=N`).
fn seed() -> u64 {
    let s = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FAULT_SEED={s}");
    s
}

fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn a_release_killed_at_random_instants_inside_its_pushes_is_consistent_and_finishes_on_rerun() {
    let _serial = support::serial();
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let p = project();
    let tmp = tempfile::tempdir().unwrap();
    release_commit(&p, "2.0.0");
    run(xtask(&reg, &p, tmp.path(), Some(&proxy)).arg("release")).ok();
    let per_release = proxy.seen().len();
    assert!(per_release > 10, "{:#?}", proxy.seen());
    let mut rng = seed();
    for round in 0..4 {
        let version = format!("2.1.{round}");
        release_commit(&p, &version);
        let at = 1 + (next(&mut rng) as usize) % per_release;
        let before = proxy.seen().len();
        let mut child = xtask(&reg, &p, tmp.path(), Some(&proxy))
            .arg("release")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let reached = proxy.wait_for_requests(before + at, Duration::from_secs(300));
        let what = proxy
            .seen()
            .get(before + at - 1)
            .map(|s| format!("{} {}", s.method, s.path))
            .unwrap_or_default();
        // The whole process group, podman and skopeo included, as a CI runner's kill does.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .status();
        let status = child.wait().unwrap();
        let context = format!("killed at request {at} of the release ({what})");
        assert!(
            reached || status.success(),
            "{context}: the release ended without reaching it"
        );
        assert_consistent(&reg, &p, &context);
        let again = run(xtask(&reg, &p, tmp.path(), Some(&proxy)).arg("release"));
        assert_eq!(again.code, 0, "re-run after {context}: {}", again.stderr);
        assert_released(&reg, &p, &version);
        assert_consistent(&reg, &p, &format!("re-run after {context}"));
    }
}

#[test]
fn transient_registry_faults_are_retried_and_lasting_ones_fail_at_once_with_a_clear_message() {
    let _serial = support::serial();
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let p = project();
    let tmp = tempfile::tempdir().unwrap();

    // 500s, a reset connection: transient, so retried, and the release completes.
    release_commit(&p, "3.0.0");
    proxy.add(Rule {
        method: "POST",
        path: "/blobs/uploads/",
        fault: Fault::Status(500),
        uses: 2,
    });
    proxy.add(Rule {
        method: "PUT",
        path: "/manifests/",
        fault: Fault::Reset,
        uses: 1,
    });
    proxy.add(Rule {
        method: "GET",
        path: "/tags/list",
        fault: Fault::Status(503),
        uses: 1,
    });
    let out = run(xtask(&reg, &p, tmp.path(), Some(&proxy)).arg("release"));
    let injected: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.fault.is_some())
        .collect();
    assert_eq!(out.code, 0, "{}\ninjected: {injected:#?}", out.stderr);
    assert_eq!(injected.len(), 4, "every fault was hit: {injected:#?}");
    assert!(out.stderr.contains("retrying"), "{}", out.stderr);
    assert_released(&reg, &p, "3.0.0");
    assert_consistent(&reg, &p, "after 500s and a reset");
    proxy.clear();

    // A 401 in mid-session (credentials revoked): not retried, said plainly, nothing written.
    release_commit(&p, "3.1.0");
    proxy.add(Rule {
        method: "PUT",
        path: "/manifests/",
        fault: Fault::Status(401),
        uses: 100,
    });
    let before = proxy.seen().len();
    let out = run(xtask(&reg, &p, tmp.path(), Some(&proxy)).arg("release"));
    assert_eq!(
        out.code,
        1,
        "{}\n{:#?}",
        out.stderr,
        &proxy.seen()[before..]
    );
    let last = out.stderr.lines().last().unwrap_or("").to_lowercase();
    assert!(
        last.starts_with("error:")
            && (last.contains("unauthorized") || last.contains("authentication required")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("attempt 2"), "{}", out.stderr);
    let puts = proxy.seen()[before..]
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains("/manifests/"))
        .count();
    assert_eq!(puts, 1, "the refused manifest was sent again");
    assert!(!reg.tags(&p.name).contains(&"3.1.0".to_string()));
    assert_eq!(reg.digest(&p.name, "latest"), reg.digest(&p.name, "3.0.0"));
    assert_consistent(&reg, &p, "after a 401");
    proxy.clear();
    assert_no_credentials(tmp.path(), "after a failed release");

    // A blob upload that stalls: stopped at the push timeout, retried, done.
    release_commit(&p, "3.2.0");
    proxy.add(Rule {
        method: "PATCH",
        path: "/blobs/uploads/",
        fault: Fault::Stall,
        uses: 1,
    });
    proxy.add(Rule {
        method: "PUT",
        path: "/blobs/uploads/",
        fault: Fault::Stall,
        uses: 1,
    });
    let out = run(xtask(&reg, &p, tmp.path(), Some(&proxy))
        .env("XTASK_PUSH_TIMEOUT", "4s")
        .arg("release"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("stalled: stopped after 4s"),
        "{}",
        out.stderr
    );
    assert_released(&reg, &p, "3.2.0");
    assert_consistent(&reg, &p, "after a stall");
}

/// A second project of the same image (another clone, another machine's checkout).
fn clone_of(p: &Project) -> Project {
    let q = project();
    q.write(
        "docker/images.toml",
        &std::fs::read_to_string(p.path().join("docker/images.toml")).unwrap(),
    );
    q
}

fn spawn_release(mut c: Command) -> std::process::Child {
    c.arg("release")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Out {
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn concurrent_releases_end_with_one_winner_and_floating_tags_at_the_newest() {
    let _serial = support::serial();
    let reg = Registry::start();
    let a = project();
    let b = clone_of(&a);
    // Two machines: their own image stores and temporary directories (no local lock shared).
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store_b = support::store_in(tb.path());
    let on_b = |mut c: Command| {
        c.env("CONTAINERS_STORAGE_CONF", &store_b);
        c
    };
    let stores = [None, Some(store_b.as_path())];
    // Built first, so the releases race on the registry, not on the build.
    release_commit(&a, "4.0.0");
    b.write("extra.txt", "b\n");
    release_commit(&b, "4.1.0");
    run(a.xtask().arg("build")).ok();
    run(on_b(b.xtask()).arg("build")).ok();

    // Two versions at once: each version at its image, the floating tags at the newer.
    let (ca, cb) = (
        spawn_release(xtask(&reg, &a, ta.path(), None)),
        spawn_release(on_b(xtask(&reg, &b, tb.path(), None))),
    );
    let (oa, ob) = (finish(ca), finish(cb));
    assert_eq!(oa.code, 0, "{}", oa.stderr);
    assert_eq!(ob.code, 0, "{}", ob.stderr);
    assert_consistent_in(&reg, &a.name, &stores, "two versions at once");
    assert_released(&reg, &a, "4.1.0");
    assert_eq!(reg.digest(&a.name, "4.0"), reg.digest(&a.name, "4.0.0"));

    // One version from two machines with different builds: one wins; floating tags follow it.
    a.write("hello.txt", "va5\n");
    a.commit(Some("v5.0.0"));
    b.write("hello.txt", "vb5\n");
    b.commit(Some("v5.0.0"));
    run(a.xtask().arg("build")).ok();
    run(on_b(b.xtask()).arg("build")).ok();
    let (ca, cb) = (
        spawn_release(xtask(&reg, &a, ta.path(), None)),
        spawn_release(on_b(xtask(&reg, &b, tb.path(), None))),
    );
    let (oa, ob) = (finish(ca), finish(cb));
    assert!(
        oa.code == 0 || ob.code == 0,
        "neither won:\n{}\n{}",
        oa.stderr,
        ob.stderr
    );
    let there = image_at(&reg, &a.name, "5.0.0");
    let (ia, ib) = (
        local_id(None, &a.reference("5.0.0")).unwrap(),
        local_id(Some(&store_b), &a.reference("5.0.0")).unwrap(),
    );
    assert_ne!(ia, ib, "the two builds differ");
    assert!(there == ia || there == ib);
    for (o, mine) in [(&oa, &ia), (&ob, &ib)] {
        if o.code != 0 {
            assert!(
                o.stderr.contains("refusing")
                    || o.stderr.contains("concurrent release")
                    || o.stderr.contains("verification failed"),
                "{}",
                o.stderr
            );
        } else if *mine != there {
            panic!("a release that lost says it succeeded:\n{}", o.stderr);
        }
    }
    assert_released(&reg, &a, "5.0.0");
    assert_consistent_in(&reg, &a.name, &stores, "one version from two machines");

    // The same machine: the second waits for the first, then reads what it published.
    let proxy = Proxy::start(reg.port);
    a.write("hello.txt", "va6\n");
    a.commit(Some("v6.0.0"));
    b.write("hello.txt", "vb6\n");
    b.commit(Some("v6.0.0"));
    run(a.xtask().arg("build")).ok();
    run(on_b(b.xtask()).arg("build")).ok();
    proxy.add(Rule {
        method: "PUT",
        path: "/manifests/6.0.0",
        fault: Fault::Stall,
        uses: 1,
    });
    let first = spawn_release({
        let mut c = xtask(&reg, &a, ta.path(), Some(&proxy));
        c.env("XTASK_PUSH_TIMEOUT", "6s");
        c
    });
    assert!(proxy.wait_for("PUT", "/manifests/6.0.0", 1, Duration::from_secs(120)));
    // Another checkout on the same machine (its temporary directory, so its lock).
    let mut second = spawn_release(on_b(xtask(&reg, &b, ta.path(), Some(&proxy))));
    let mut waited = String::new();
    let mut lines = BufReader::new(second.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        waited.push_str(&line);
        waited.push('\n');
        if line.contains("waiting for another publish") {
            break;
        }
    }
    assert!(waited.contains("waiting for another publish"), "{waited}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = second.wait().unwrap().code();
    let first = finish(first);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(code, Some(1), "{waited}{}", rest.join("\n"));
    assert!(rest.join("\n").contains("refusing"), "{}", rest.join("\n"));
    assert_eq!(
        image_at(&reg, &a.name, "6.0.0"),
        support::image_id(&a.reference("6.0.0"))
    );
    assert_released(&reg, &a, "6.0.0");
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at));
        assert_eq!(
            out.code, 0,
            "mounting a small tmpfs needs root (the CI machines run as root): {}",
            out.stderr
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_no_truncated_artifact_that_looks_valid() {
    let _serial = support::serial();
    let p = project();
    release_commit(&p, "7.0.0");
    run(p.xtask().arg("build")).ok();

    // `build --save`: the archive is bigger than the disk.
    let images = p.path().join("target/xtask/images");
    {
        let _disk = Tmpfs::mount(&images, "256k");
        let out = run(p.xtask().args(["build", "--save"]));
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("no space left on device"),
            "{}",
            out.stderr
        );
        let left: Vec<String> = std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left on the full disk: {left:?}");
    }

    // A release to the OCI layout: no index names the version.
    let layouts = p.path().join("target/images");
    let _disk = Tmpfs::mount(&layouts, "256k");
    let out = run(p.xtask().arg("release"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("no space left on device"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("the disk is full"), "{}", out.stderr);
    let index =
        std::fs::read_to_string(layouts.join(&p.name).join("index.json")).unwrap_or_default();
    assert!(
        !index.contains("7.0.0"),
        "the layout names the version: {index}"
    );
}

#[test]
fn undecodable_config_is_bad_input_and_a_closed_pipe_ends_quietly() {
    let p = project();
    std::fs::write(
        p.path().join("docker/images.toml"),
        b"[[image]]\nname = \"caf\xe9\"\n",
    )
    .unwrap();
    let out = run(p.xtask().arg("plan"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("docker/images.toml:2: not UTF-8"),
        "{}",
        out.stderr
    );
    // `context --list | head -1`: the reader stops early; no panic, no error.
    std::fs::write(
        p.path().join("docker/images.toml"),
        format!("[[image]]\nname = \"{}\"\n", p.name),
    )
    .unwrap();
    for i in 0..300 {
        p.write(&format!("src/f{i}.txt"), "x\n");
    }
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "'{}' -C '{}' context --list | head -1; echo \"status=${{PIPESTATUS:-}}\"",
        env!("CARGO_BIN_EXE_xtask"),
        p.path().display()
    )));
    assert_eq!(out.code, 0);
    assert!(
        !out.stderr.contains("panic") && !out.stderr.contains("internal error"),
        "{}",
        out.stderr
    );
}

#[test]
fn doctor_names_the_credentials_a_run_would_use_and_never_their_value() {
    let reg = Registry::start();
    let p = project();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(xtask(&reg, &p, tmp.path(), None).arg("doctor"));
    assert!(
        out.stdout.contains("user `alice` (XTASK_REGISTRY_USER)")
            && out.stdout.contains("private auth file"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&reg.password) && !out.stderr.contains(&reg.password));
    // A stored login is named by file and user; its file is read, never written.
    let home = tempfile::tempdir().unwrap();
    let stored = home.path().join("auth.json");
    let host = format!("127.0.0.1:{}", reg.port);
    let auth = format!("{{\"auths\":{{\"{host}\":{{\"auth\":\"Ym9iOnNlY3JldA==\"}}}}}}");
    std::fs::write(&stored, &auth).unwrap();
    let out = run(xtask(&reg, &p, tmp.path(), None)
        .env_remove("XTASK_REGISTRY_USER")
        .env_remove("XTASK_REGISTRY_PASSWORD")
        .env("REGISTRY_AUTH_FILE", &stored)
        .args(["--json", "doctor"]));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let line = v["credentials"].as_str().unwrap();
    assert!(
        line.contains("stored login of `bob`") && line.contains("auth.json"),
        "{line}"
    );
    assert!(!out.stdout.contains("secret"));

    // A release with the environment's login leaves the user's own auth file as it was.
    release_commit(&p, "8.0.0");
    run(xtask(&reg, &p, tmp.path(), None)
        .env("REGISTRY_AUTH_FILE", &stored)
        .arg("release"))
    .ok();
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), auth);
    assert_no_credentials(tmp.path(), "after a release with a user's auth file");
}

#[test]
fn ctrl_c_in_the_middle_of_a_push_leaves_no_credentials() {
    let _serial = support::serial();
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    let p = project();
    let tmp = tempfile::tempdir().unwrap();
    release_commit(&p, "9.0.0");
    proxy.add(Rule {
        method: "PUT",
        path: "/manifests/9.0.0",
        fault: Fault::Stall,
        uses: 1,
    });
    let child = xtask(&reg, &p, tmp.path(), Some(&proxy))
        .arg("release")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Logged in (its private auth file exists) and stalled inside the push.
    assert!(proxy.wait_for("PUT", "/manifests/9.0.0", 1, Duration::from_secs(120)));
    let logins = support::private_logins(tmp.path()).len();
    assert_eq!(
        logins, 1,
        "the run's private login is in place while it runs"
    );
    run(Command::new("kill").args(["-INT", &child.id().to_string()])).ok();
    let out = finish(child);
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert_no_credentials(tmp.path(), "after Ctrl-C");
    assert_consistent(&reg, &p, "after Ctrl-C");
}
