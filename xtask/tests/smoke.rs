//! `cargo xtask test` end to end: a real podman, fixture images made of a static busybox in
//! `FROM scratch` (a shell, `httpd` for services, `sleep` for timeouts).
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{podman, run, Project};

// The unique first label keeps each test's layers its own: another test removing its image
// also removes the cached layers a shared cache would be building on.
const DOCKERFILE: &str = r#"FROM scratch
LABEL xtask.e2e={name}
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
COPY app /app
ENV GREETING=hello
EXPOSE 8000
WORKDIR /app
LABEL org.opencontainers.image.vendor=Acme
CMD ["httpd", "-f", "-v", "-p", "8000", "-h", "/www"]
"#;

/// A project whose image has a shell, a web root and an app file, with `smoke` as the suite.
fn fixture(smoke: &str) -> Project {
    let p = Project::new(&[
        ("Dockerfile", DOCKERFILE),
        ("www/health", "ok\n"),
        (
            "app/manage.py",
            "DJANGO_SETTINGS_MODULE = 'senex.settings'\n",
        ),
        (
            "docker/images.toml",
            &format!("[[image]]\nname = \"{{name}}\"\nmax_size = \"50MB\"\n{smoke}"),
        ),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox")).expect(
        "a static /bin/busybox is needed for the fixture images; run `bash .ci/setup` (busybox-static)",
    );
    p
}

fn build(p: &Project) {
    build_on(p, "podman");
}

/// `xtask` on `p` with `engine` (podman, or Docker's daemon).
fn xtask_on(p: &Project, engine: &str) -> Command {
    support::with_engine(p.xtask(), engine)
}

fn build_on(p: &Project, engine: &str) {
    run(xtask_on(p, engine).arg("build")).ok();
}

/// `test --json`, with the exit code.
fn test_json(p: &Project, extra: &[&str]) -> (i32, serde_json::Value, String) {
    test_json_on(p, "podman", extra)
}

fn test_json_on(p: &Project, engine: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = run(xtask_on(p, engine).args(["test", "--json"]).args(extra));
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", out.stdout, out.stderr));
    (out.code, v, out.stdout + &out.stderr)
}

fn outcome<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["images"][0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test `{name}` in {v:#}"))
}

fn failures(v: &serde_json::Value, name: &str) -> String {
    outcome(v, name)["failures"].to_string()
}

/// `ps` on `engine`: the IDs of its containers `filter` selects (`--all` for stopped ones too).
fn ps_on(engine: &str, all: bool, filter: &str) -> String {
    let mut args = vec!["ps", "--quiet", "--filter", filter];
    if all {
        args.push("--all");
    }
    let out = if engine == "podman" {
        podman(&args).ok()
    } else {
        run(Command::new("docker").args(&args)).ok()
    };
    out.stdout.trim().to_string()
}

/// Every container of the run is gone from `engine`.
#[track_caller]
fn assert_no_containers_on(engine: &str, v: &serde_json::Value) {
    let run_id = v["images"][0]["run"].as_str().expect("run id");
    let filter = format!("label=io.xtask.smoke={run_id}");
    assert_eq!(
        ps_on(engine, true, &filter),
        "",
        "containers left behind by run {run_id}"
    );
}

const PASSING: &str = r#"
[image.expect]
labels = { "org.opencontainers.image.vendor" = "Acme", "org.opencontainers.image.title" = "re:^xtask-e2e-" }
cmd = ["httpd", "-f", "-v", "-p", "8000", "-h", "/www"]
env = { GREETING = "hello" }
exposed_ports = ["8000/tcp"]
workdir = "/app"

[[image.smoke]]
name = "shell says hello"
entrypoint = ["/bin/sh", "-c"]
command = ["echo \"$GREETING $EXTRA\"; echo warn >&2"]
env = { EXTRA = "world" }
expect_stdout = ["^hello world$"]
reject_stdout = ["Traceback"]
expect_stderr = ["warn"]

[[image.smoke]]
name = "exit code as expected"
command = ["false"]
expect_exit = 1

[[image.smoke]]
name = "app code present"
file = "/app/manage.py"
mode = "-rw-r--r--"
contains = ["DJANGO_SETTINGS_MODULE"]

[[image.smoke]]
name = "no secrets baked in"
file = "/app/.env"
exists = false

[[image.smoke]]
name = "web answers"
service = true
wait_for = { http = "/health", port = 8000, status = 200 }
timeout = "30s"

[[image.smoke]]
name = "port opens"
service = true
wait_for = { port = 8000 }
timeout = "30s"

[[image.smoke]]
name = "worker logs ready"
service = true
command = ["sh", "-c", "echo worker ready; exec sleep 30"]
wait_for = { log = "worker ready" }
timeout = "30s"
"#;

#[test]
fn a_suite_of_every_kind_passes() {
    every_kind_passes("podman");
}

/// The same suite on Docker's daemon (`xtask/tests/docker.rs` says more).
#[test]
fn a_suite_of_every_kind_passes_on_docker() {
    every_kind_passes("docker");
}

fn every_kind_passes(engine: &str) {
    let _serial = support::serial();
    let p = fixture(PASSING);
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let junit = p.path().join("reports/smoke.xml");
    let (code, v, all) = test_json_on(&p, engine, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 0, "{all}");
    assert_eq!(v["passed"], true);
    let names: Vec<&str> = v["images"][0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Built-in checks first, then config order whatever finished first.
    assert_eq!(
        names,
        [
            "image exists",
            "size <= 50.0 MB",
            "OCI labels",
            "metadata",
            "shell says hello",
            "exit code as expected",
            "app code present",
            "no secrets baked in",
            "web answers",
            "port opens",
            "worker logs ready"
        ]
    );
    let id = v["images"][0]["id"].as_str().unwrap();
    assert_eq!(id, support::image_id_on(engine, &p.reference("dev")));
    assert_no_containers_on(engine, &v);

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit XML parses");
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(cases, names.len());
    let root = doc.root_element();
    assert_eq!(
        root.attribute("tests"),
        Some(names.len().to_string().as_str())
    );
    assert_eq!(root.attribute("failures"), Some("0"));

    let human = run(xtask_on(&p, engine).arg("test")).ok();
    assert!(human.stdout.contains("web answers"), "{}", human.stdout);
    assert!(
        human.stdout.contains("11 checks passed in"),
        "{}",
        human.stdout
    );
}

const FAILING: &str = r#"
[image.expect]
labels = { "org.opencontainers.image.vendor" = "Senex" }
user = "app"

[[image.smoke]]
name = "django check"
entrypoint = ["/bin/sh", "-c"]
command = ["echo line one; echo Traceback here; exit 3"]
expect_stdout = ["System check identified no issues"]
reject_stdout = ["Traceback"]

[[image.smoke]]
name = "wrong mode"
file = "/app/manage.py"
mode = "-rwxr-xr-x"
contains = ["not in the file"]

[[image.smoke]]
name = "missing file"
file = "/app/settings.py"

[[image.smoke]]
name = "web 404"
service = true
wait_for = { http = "/nope", port = 8000 }
timeout = "2s"

[[image.smoke]]
name = "service dies"
service = true
command = ["sh", "-c", "echo starting; exit 4"]
wait_for = { port = 8000 }
timeout = "30s"
"#;

#[test]
fn each_kind_of_check_fails_and_is_reported() {
    each_kind_fails("podman");
}

#[test]
fn each_kind_of_check_fails_and_is_reported_on_docker() {
    each_kind_fails("docker");
}

fn each_kind_fails(engine: &str) {
    let _serial = support::serial();
    let p = fixture(FAILING);
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let (code, v, all) = test_json_on(&p, engine, &[]);
    assert_eq!(code, 1, "{all}");
    assert_eq!(v["passed"], false);
    assert_eq!(outcome(&v, "image exists")["passed"], true);
    let meta = failures(&v, "metadata");
    assert!(
        meta.contains("label `org.opencontainers.image.vendor` is `Acme`, want `Senex`"),
        "{meta}"
    );
    assert!(meta.contains("user is ``, want `app`"), "{meta}");

    let django = outcome(&v, "django check");
    assert_eq!(django["exit_code"], 3);
    let f = django["failures"].to_string();
    assert!(f.contains("exit code 3, want 0"), "{f}");
    assert!(
        f.contains("stdout has no match for `System check identified no issues`"),
        "{f}"
    );
    assert!(
        f.contains("stdout matches rejected `Traceback` (line 2)"),
        "{f}"
    );
    assert!(django["command"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{engine} run --rm --name xtask-smoke-")));
    assert_eq!(django["output"][0], "line one");

    let f = failures(&v, "wrong mode");
    assert!(f.contains("mode is `-rw-r--r--`, want `-rwxr-xr-x`"), "{f}");
    assert!(
        f.contains("content has no match for `not in the file`"),
        "{f}"
    );
    assert!(failures(&v, "missing file").contains("`/app/settings.py` does not exist in the image"));
    let f = failures(&v, "web 404");
    assert!(
        f.contains(
            "not ready after 2s: no HTTP 200 from /nope on port 8000; the last answer was HTTP 404"
        ),
        "{f}"
    );
    let dies = outcome(&v, "service dies");
    assert!(
        dies["failures"]
            .to_string()
            .contains("the container exited (code 4) before it was ready"),
        "{dies}"
    );
    assert_eq!(dies["output"][0], "starting");
    assert_no_containers_on(engine, &v);

    let human = run(xtask_on(&p, engine).arg("test"));
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("--- "), "{}", human.stdout);
    assert!(human.stdout.contains("FAILED"), "{}", human.stdout);
    assert!(
        human.stdout.contains("failed: exit code 3, want 0"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("  | Traceback here"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_timeout_ends_near_its_deadline_and_kills_the_container() {
    timeout_kills("podman");
}

#[test]
fn a_timeout_ends_near_its_deadline_and_kills_the_container_on_docker() {
    timeout_kills("docker");
}

fn timeout_kills(engine: &str) {
    let _serial = support::serial();
    let p = fixture(
        r#"
[[image.smoke]]
name = "hangs"
command = ["sleep", "300"]
timeout = "2s"
"#,
    );
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let (code, v, all) = test_json_on(&p, engine, &[]);
    assert_eq!(code, 1, "{all}");
    let hangs = outcome(&v, "hangs");
    assert!(
        hangs["failures"]
            .to_string()
            .contains("timed out after 2s; the container was killed"),
        "{hangs}"
    );
    let secs = hangs["seconds"].as_f64().unwrap();
    // Generous upper bound: the kill itself takes podman a moment, but not the 300 s of sleep.
    assert!((2.0..30.0).contains(&secs), "took {secs}s");
    assert_no_containers_on(engine, &v);
}

#[test]
fn pass_env_secrets_are_masked_everywhere() {
    secrets_masked("podman");
}

#[test]
fn pass_env_secrets_are_masked_everywhere_on_docker() {
    secrets_masked("docker");
}

fn secrets_masked(engine: &str) {
    let _serial = support::serial();
    let secret = format!("tok-{}", support::unique_name("s"));
    let p = fixture(
        r#"
[[image.smoke]]
name = "prints its token"
command = ["sh", "-c", "echo token=$XTASK_E2E_TOKEN; echo also $XTASK_E2E_TOKEN >&2; exit 3"]
pass_env = ["XTASK_E2E_TOKEN"]

[[image.smoke]]
name = "sees the token"
command = ["sh", "-c", "test -n \"$XTASK_E2E_TOKEN\""]
pass_env = ["XTASK_E2E_TOKEN"]

[[image.smoke]]
name = "unset variable"
command = ["true"]
pass_env = ["XTASK_E2E_UNSET"]
"#,
    );
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let junit = p.path().join("junit.xml");
    let out = run(xtask_on(&p, engine)
        .args(["test", "--json", "--junit", junit.to_str().unwrap()])
        .env("XTASK_E2E_TOKEN", &secret)
        .env_remove("XTASK_E2E_UNSET"));
    assert_eq!(out.code, 1);
    let xml = std::fs::read_to_string(&junit).unwrap();
    for text in [&out.stdout, &out.stderr, &xml] {
        assert!(!text.contains(&secret), "secret leaked:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let prints = outcome(&v, "prints its token");
    assert_eq!(prints["output"][0], "token=***");
    assert_eq!(prints["output"][1], "also ***");
    assert!(prints["command"]
        .as_str()
        .unwrap()
        .starts_with(&format!("XTASK_E2E_TOKEN=<secret> {engine} run")));
    assert_eq!(outcome(&v, "sees the token")["passed"], true);
    assert!(
        failures(&v, "unset variable").contains("`pass_env` variable `XTASK_E2E_UNSET` is not set")
    );
    assert_no_containers_on(engine, &v);

    let human = run(xtask_on(&p, engine)
        .arg("test")
        .env("XTASK_E2E_TOKEN", &secret));
    assert!(human.stdout.contains("token=***"), "{}", human.stdout);
    assert!(!human.stdout.contains(&secret) && !human.stderr.contains(&secret));
}

#[test]
fn config_mistakes_exit_2_naming_the_test_and_key() {
    let _serial = support::serial();
    let cases = [
        (
            "[[image.smoke]]\nname = \"bad\"\ncommand = [\"true\"]\nexpect_stdout = [\"(unclosed\"]\n",
            "docker/images.toml:7:18: smoke test `bad`: `expect_stdout` regex `(unclosed` is invalid",
        ),
        (
            "[[image.smoke]]\nname = \"f\"\nfile = \"/a\"\ncommand = [\"x\"]\n",
            "smoke test `f` is a file test; `command` does not apply to it",
        ),
        (
            "[[image.smoke]]\nname = \"s\"\nservice = true\n",
            "service test `s` needs `wait_for`",
        ),
        (
            "[[image.smoke]]\nname = \"t\"\ncommand = [\"true\"]\ntimeout = \"soon\"\n",
            "smoke test `t`: `timeout` `soon` is not a duration",
        ),
        (
            "[image.expect]\nlabels = { a = \"re:(\" }\n",
            "[image.expect] label `a`: regex `(` is invalid",
        ),
        (
            "[[image.smoke]]\nname = \"u\"\ncomand = [\"true\"]\n",
            "unknown field `comand`",
        ),
    ];
    for (smoke, want) in cases {
        let p = fixture(smoke);
        let out = run(p.xtask().arg("test"));
        assert_eq!(out.code, 2, "{smoke}\n{}", out.stderr);
        assert!(
            out.stderr.contains(want),
            "{smoke}\nwant: {want}\n got: {}",
            out.stderr
        );
    }
}

#[test]
fn an_unbuilt_image_fails_the_exists_check() {
    let _serial = support::serial();
    let p = fixture("");
    let (code, v, all) = test_json(&p, &[]);
    assert_eq!(code, 1, "{all}");
    assert!(failures(&v, "image exists").contains("is not in local storage; build it first"));
}

#[test]
fn dry_run_prints_the_commands() {
    let _serial = support::serial();
    let p = fixture(PASSING);
    let out = run(p.xtask().args(["test", "--dry-run"])).ok();
    let reference = p.reference("dev");
    assert!(out.stdout.contains(&format!(
        "podman run --rm --name xtask-smoke-RUN-0 --label io.xtask.smoke=RUN --env EXTRA=world --entrypoint /bin/sh {reference} -c"
    )), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("podman cp xtask-smoke-RUN-2:/app/manage.py -"),
        "{}",
        out.stdout
    );
}

#[test]
fn ctrl_c_removes_the_suites_containers() {
    ctrl_c_removes("podman");
}

#[test]
fn ctrl_c_removes_the_suites_containers_on_docker() {
    ctrl_c_removes("docker");
}

fn ctrl_c_removes(engine: &str) {
    let _serial = support::serial();
    support::require(engine);
    let p = fixture(
        r#"
[[image.smoke]]
name = "long"
command = ["sleep", "300"]
timeout = "300s"
"#,
    );
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let child = xtask_on(&p, engine)
        .arg("test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("xtask-smoke-{}-", child.id());
    let started = Instant::now();
    // Wait for the condition (the container runs), bounded; this is not a sleep for timing.
    let filter = format!("name={prefix}");
    loop {
        if !ps_on(engine, false, &filter).is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the test container never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ps_on(engine, true, &filter),
        "",
        "containers left after Ctrl-C"
    );
}

#[test]
fn editing_only_the_smoke_tests_keeps_the_built_image() {
    let _serial = support::serial();
    let p = fixture("[[image.smoke]]\nname = \"health\"\ncommand = [\"cat\", \"/www/health\"]\nexpect_stdout = [\"ok\"]\n");
    p.commit(Some("v1.0.0"));
    build(&p);
    let built = support::image_id(&p.reference("1.0.0"));
    // A new test, committed: the version is now a snapshot past v1.0.0 that was never built.
    p.write(
        "docker/images.toml",
        &format!("[[image]]\nname = \"{}\"\nmax_size = \"50MB\"\n[[image.smoke]]\nname = \"health\"\ncommand = [\"cat\", \"/www/health\"]\nexpect_stdout = [\"ok\"]\n[[image.smoke]]\nname = \"greeting\"\ncommand = [\"sh\", \"-c\", \"echo $GREETING\"]\nexpect_stdout = [\"hello\"]\n", p.name),
    );
    p.commit(None);
    let (code, v, all) = test_json(&p, &[]);
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("built from the same inputs"), "{all}");
    assert_eq!(v["images"][0]["id"].as_str(), Some(built.as_str()), "{v:#}");
    assert_eq!(outcome(&v, "greeting")["passed"], true);
    // A change to what the image is built from is not papered over.
    p.write("www/health", "changed\n");
    p.commit(None);
    let (code, _, all) = test_json(&p, &[]);
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("build it first"), "{all}");
}

#[test]
fn sigint_or_sigterm_at_any_point_of_a_suite_leaves_no_container() {
    signals_leave_nothing("podman");
}

#[test]
fn sigint_or_sigterm_at_any_point_of_a_suite_leaves_no_container_on_docker() {
    signals_leave_nothing("docker");
}

fn signals_leave_nothing(engine: &str) {
    use std::io::{BufRead, BufReader};
    let _serial = support::serial();
    support::require(engine);
    let p = fixture(PASSING);
    let _docker = support::DockerImages::of(p.name.clone());
    build_on(&p, engine);
    let echoed = format!("$ {engine}");
    // Interrupt after the k-th engine command the run echoes: early, during the service tests,
    // late; alternately SIGINT and SIGTERM.
    for (k, signal) in [
        (1, "INT"),
        (3, "TERM"),
        (5, "INT"),
        (8, "TERM"),
        (12, "INT"),
        (16, "TERM"),
    ] {
        let mut child = xtask_on(&p, engine)
            .args(["-v", "test"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            if line.unwrap().starts_with(&echoed) {
                seen += 1;
                if seen == k {
                    break;
                }
            }
        }
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        // A run that finished before the signal landed exits 0 or 1; an interrupted one 130.
        assert!(
            matches!(status.code(), Some(0 | 1 | 130)),
            "k={k} {signal}: {status:?}\n{}",
            rest.join("\n")
        );
        assert_eq!(
            ps_on(engine, true, "label=io.xtask.smoke"),
            "",
            "k={k} {signal}: containers left\n{}",
            rest.join("\n")
        );
    }
}
