//! End-to-end: `build`, `tag`, `tags`, `clean`, `doctor` against the real podman.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

const DOCKERFILE: &str = "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n";

fn simple_project() -> Project {
    Project::new(&[("Dockerfile", DOCKERFILE), ("hello.txt", "hello\n")])
}

#[test]
fn a_tagged_commit_gets_every_tag_and_label() {
    tags_and_labels("podman");
}

#[test]
fn with_docker_a_tagged_commit_gets_every_tag_and_label() {
    tags_and_labels("docker");
}

fn tags_and_labels(engine: &str) {
    require(engine);
    let p = simple_project();
    let _docker = DockerImages::of(p.name.clone());
    let sha = p.commit(Some("v1.2.3"));
    let mut c = with_engine(p.xtask(), engine);
    let out = run(c.args(["--json", "build"])).ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("build --json");
    let tags = ["1.2.3", "1.2", "1", "latest", &sha[..7], "20250115"];
    assert_eq!(report["images"][0]["tags"], serde_json::json!(tags));
    let id = image_id_on(engine, &p.reference("1.2.3"));
    assert_eq!(report["images"][0]["id"], id.as_str());
    for t in tags {
        assert_eq!(image_id_on(engine, &p.reference(t)), id, "tag {t}");
    }
    let l = labels_on(engine, &p.reference("latest"));
    assert_eq!(l["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(l["org.opencontainers.image.revision"], sha.as_str());
    assert_eq!(
        l["org.opencontainers.image.created"],
        "2025-01-15T10:30:00Z"
    );
    assert_eq!(l["org.opencontainers.image.title"], p.name.as_str());
    if engine == "docker" {
        // Docker's legacy builder has no --timestamp: the image's own time is the build's.
        return;
    }
    // The image's own created time is the commit's too (--timestamp).
    let created = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Created.Unix}}",
        &p.reference("1.2.3"),
    ])
    .ok();
    assert_eq!(created.stdout.trim(), "1736937000");
}

#[test]
fn two_no_cache_builds_of_one_commit_are_the_same_image() {
    let p = simple_project();
    p.commit(Some("v0.3.0"));
    run(p.xtask().args(["build", "--no-cache"])).ok();
    let first = image_id(&p.reference("0.3.0"));
    run(p.xtask().args(["build", "--no-cache"])).ok();
    let second = image_id(&p.reference("0.3.0"));
    assert_eq!(first, second);
    // 0.x releases get no bare major tag.
    assert_ne!(podman(&["image", "exists", &p.reference("0")]).code, 0);
    assert_eq!(image_id(&p.reference("0.3")), first);
}

#[test]
fn snapshots_dirty_trees_and_side_builds_get_no_floating_tags() {
    let p = simple_project();
    p.commit(Some("v1.0.0"));
    p.write("hello.txt", "changed\n");
    let sha = p.commit(None);
    let tags = run(p.xtask().args(["tags"])).ok().stdout;
    assert_eq!(
        tags,
        format!("1.0.0-1-g{}\n{}\n20250115\n", &sha[..7], &sha[..7])
    );
    p.write("hello.txt", "dirty\n");
    let tags = run(p.xtask().args(["tags"])).ok().stdout;
    assert_eq!(tags, format!("1.0.0-1-g{}-dirty\n", &sha[..7]));
    p.git(&["checkout", "-q", "--", "hello.txt"]);
    let json = run(p.xtask().args(["tags", "--json", "--pr", "42"]))
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tags"].as_array().unwrap().last().unwrap(), "pr-42");
    let ci = run(p
        .xtask()
        .args(["tags"])
        .env("GITHUB_REF", "refs/heads/feature/x#1"))
    .ok()
    .stdout;
    assert!(ci.ends_with("\nfeature-x-1\n"), "{ci}");
    let dev = run(p.xtask().args(["tags", "--dev"])).ok().stdout;
    assert_eq!(dev, "dev\n");
}

#[test]
fn outside_git_the_version_comes_from_flag_or_config() {
    let p = simple_project();
    assert_eq!(run(p.xtask().arg("tags")).ok().stdout, "dev\n");
    assert_eq!(
        run(p.xtask().args(["tags", "--version", "v2.1.0"]))
            .ok()
            .stdout,
        "2.1.0\n2.1\n2\nlatest\n"
    );
    p.write(
        "docker/images.toml",
        &format!(
            "version = \"3.0.0-rc.2\"\n[[image]]\nname = \"{}\"\n",
            p.name
        ),
    );
    assert_eq!(run(p.xtask().arg("tags")).ok().stdout, "3.0.0-rc.2\n");
    p.write("docker/images.toml", "version = \"3.0\"\n");
    let out = run(p.xtask().arg("tags"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("docker/images.toml:1:11: `3.0` is not a semantic version"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_tag_of_another_scheme_on_head_builds_a_snapshot_and_the_schemes_read_it() {
    let p = simple_project();
    p.commit(Some("v7.3"));
    // The default scheme skips it, once, naming the setting; only `release` insists.
    let out = run(p.xtask().arg("tags")).ok();
    let sha7 = p
        .git(&["rev-parse", "--short=7", "HEAD"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(
        out.stdout.lines().next(),
        Some(sha7.as_str()),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr
            .matches("git tag `v7.3` on HEAD is not a version of version_scheme `semver`")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("semver-lenient"), "{}", out.stderr);
    let out = run(p.xtask().args(["--dry-run", "release"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no release to publish"),
        "{}",
        out.stderr
    );

    // semver-lenient: v7.3 is 7.3.0, with its line's tags.
    let toml = std::fs::read_to_string(p.path().join("docker/images.toml")).unwrap();
    p.write(
        "docker/images.toml",
        &format!("version_scheme = \"semver-lenient\"\n{toml}"),
    );
    p.commit(None);
    p.git(&["tag", "-f", "v7.3"]);
    let out = run(p.xtask().arg("tags")).ok();
    let tags: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(tags[..4], ["7.3.0", "7.3", "7", "latest"], "{}", out.stdout);
    run(p.xtask().arg("build")).ok();
    assert_eq!(
        labels(&p.reference("7.3.0"))["org.opencontainers.image.version"],
        "7.3.0"
    );

    // A custom pattern (`12.1-0`) and calendar versions, written as tagged.
    p.write(
        "docker/images.toml",
        &format!("tag_pattern = '(?P<major>\\d+)\\.(?P<minor>\\d+)-(?P<patch>\\d+)'\n{toml}"),
    );
    p.commit(Some("12.1-0"));
    let out = run(p.xtask().arg("tags")).ok();
    let tags: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        tags[..4],
        ["12.1-0", "12.1", "12", "latest"],
        "{}",
        out.stdout
    );
    p.write(
        "docker/images.toml",
        &format!("version_scheme = \"calver\"\n{toml}"),
    );
    p.commit(Some("2024.05.2"));
    let out = run(p.xtask().arg("tags")).ok();
    let tags: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        tags[..4],
        ["2024.05.2", "2024.05", "2024", "latest"],
        "{}",
        out.stdout
    );

    // A scheme that cannot be is said with its line.
    p.write(
        "docker/images.toml",
        &format!("version_scheme = \"roman\"\n{toml}"),
    );
    let out = run(p.xtask().arg("plan"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("docker/images.toml:1:18: version_scheme `roman`"),
        "{}",
        out.stderr
    );
}

#[test]
fn dev_builds_use_the_dev_dockerfile() {
    let p = Project::new(&[
        ("docker/Dockerfile", DOCKERFILE),
        (
            "docker/Dockerfile.dev",
            "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL flavour=dev\n",
        ),
        ("hello.txt", "hi\n"),
    ]);
    p.commit(Some("v1.0.0"));
    run(p.xtask().args(["build", "--dev"])).ok();
    assert_eq!(labels(&p.reference("dev"))["flavour"], "dev");
    assert_ne!(
        podman(&["image", "exists", &p.reference("latest")]).code,
        0,
        "a dev build must not move latest"
    );
}

#[test]
fn build_args_and_target_reach_podman() {
    // The unique first label keeps this chain out of every other run's layer cache.
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch AS base\nLABEL e2e.run={name}\nARG GREETING=none\nLABEL greeting=$GREETING\nFROM base AS runtime\nLABEL stage=runtime\nFROM base AS other\nLABEL stage=other\n",
        ),
        ("docker/images.toml", "[[image]]\nname = \"{name}\"\ntarget = \"runtime\"\nbuild_args = { GREETING = \"config\" }\n"),
    ]);
    run(p.xtask().args(["build", "--version", "1.0.0"])).ok();
    let l = labels(&p.reference("1.0.0"));
    assert_eq!(
        (l["greeting"].as_str(), l["stage"].as_str()),
        (Some("config"), Some("runtime"))
    );
    // --no-cache: podman 4.3.1 reuses a cached LABEL step even when the ARG it expands changed.
    run(p.xtask().args([
        "build",
        "--no-cache",
        "--version",
        "1.0.1",
        "--build-arg",
        "GREETING=flag",
    ]))
    .ok();
    assert_eq!(labels(&p.reference("1.0.1"))["greeting"], "flag");
}

#[test]
fn a_failing_build_exits_non_zero_with_podmans_error() {
    let p = Project::new(&[("Dockerfile", "FROM scratch\nCOPY missing.txt /m\n")]);
    let out = run(p.xtask().args(["build", "--version", "1.0.0"]));
    assert_eq!(out.code, 1);
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: `podman build` failed (exit "),
        "{last}"
    );
    assert!(last.contains("missing.txt"), "{last}");
}

#[test]
fn a_missing_dockerfile_names_the_config_line() {
    let p = Project::new(&[(
        "docker/images.toml",
        "[[image]]\nname = \"{name}\"\ndockerfile = \"docker/Nope\"\n",
    )]);
    let out = run(p.xtask().args(["build", "--version", "1.0.0"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("Dockerfile `docker/Nope` not found (set at docker/images.toml:3:14)"),
        "{}",
        out.stderr
    );
    let bare = Project::new(&[]);
    let out = run(bare.xtask().args(["build", "--version", "1.0.0"]));
    assert!(
        out.stderr
            .contains("none of docker/Dockerfile, Dockerfile, Containerfile exists"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_errors_exit_2_with_file_line_and_column() {
    let p = Project::new(&[(
        "docker/images.toml",
        "[[image]]\nname = \"x\"\ntagz = [\"a\"]\n",
    )]);
    let out = run(p.xtask().arg("tags"));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: docker/images.toml:3:1: unknown field `tagz`, expected one of"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"));
}

#[test]
fn without_config_the_image_is_named_after_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("My Django_App");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Containerfile"), "FROM scratch\n").unwrap();
    let out = run(xtask(&dir).args(["--dry-run", "build", "--version", "1.0.0"])).ok();
    assert!(out.stdout.contains("-f Containerfile"), "{}", out.stdout);
    assert!(
        out.stdout.contains("-t my-django_app:1.0.0"),
        "{}",
        out.stdout
    );
}

#[test]
fn dry_run_prints_the_exact_commands() {
    let p = Project::new(&[
        ("docker/Dockerfile", DOCKERFILE),
        ("hello.txt", "hello\n"),
        (
            "docker/images.toml",
            "[[image]]\nname = \"golden-app\"\nbuild_args = { PYTHON_VERSION = \"3.12\" }\n\
             labels = { \"org.opencontainers.image.title\" = \"Golden App\" }\nbefore_build = [[\"make\", \"assets\"]]\n",
        ),
    ]);
    p.commit(Some("v1.2.3"));
    p.git(&[
        "remote",
        "add",
        "origin",
        "https://user:secret-token@example.com/acme/golden.git",
    ]);
    let out = run(p
        .xtask()
        .args(["--dry-run", "build", "--build-arg", "EXTRA=a b"]))
    .ok();
    support::golden("build-dry-run.txt", &out.stdout);
    assert!(!out.stdout.contains("secret-token"));
    assert_ne!(
        podman(&["image", "exists", "golden-app:1.2.3"]).code,
        0,
        "dry run must build nothing"
    );
}

#[test]
fn tag_adds_registry_names_for_every_tag() {
    let p = simple_project();
    p.commit(Some("v2.0.0"));
    run(p.xtask().arg("build")).ok();
    let out = run(p.xtask().args(["tag", "--registry", "localhost:5999/team"])).ok();
    assert!(out.stdout.starts_with("tagged "), "{}", out.stdout);
    let id = image_id(&p.reference("2.0.0"));
    for t in ["2.0.0", "2.0", "2", "latest"] {
        assert_eq!(image_id(&format!("localhost:5999/team/{}:{t}", p.name)), id);
    }
    let bad = run(p.xtask().args(["tag", "--registry", "https://x.io"]));
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--registry: registry `https://x.io` has a scheme"),
        "{}",
        bad.stderr
    );
    let env = run(p
        .xtask()
        .args(["--dry-run", "tag"])
        .env("XTASK_REGISTRY", "ghcr.io/acme"))
    .ok();
    assert!(
        env.stdout
            .contains(&format!("ghcr.io/acme/{}:2.0.0", p.name)),
        "{}",
        env.stdout
    );
}

#[test]
fn doctor_passes_on_a_prepared_machine() {
    let p = simple_project();
    let out = run(p.xtask().args(["--json", "doctor"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["engine"], "podman");
    assert_eq!(v["build"]["status"], "ok", "{v}");
    assert_eq!(v["run"]["status"], "ok", "{v}");
    assert_eq!(v["features"]["timestamp"], true);
}

#[test]
fn a_missing_podman_is_explained() {
    let p = simple_project();
    let bin = tempfile::tempdir().unwrap();
    let git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::symlink(git.trim(), bin.path().join("git")).unwrap();
    let out = run(p
        .xtask()
        .args(["build", "--version", "1.0.0"])
        .env("PATH", bin.path()));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("`podman` is not installed or not on PATH; install it"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_lists_every_command_and_unbuilt_ones_say_so() {
    let out = run(xtask(&repo_root()).arg("--help")).ok();
    for c in [
        "build", "tag", "tags", "test", "push", "release", "clean", "doctor",
    ] {
        assert!(
            out.stdout.contains(&format!("\n  {c} ")),
            "{c} missing from:\n{}",
            out.stdout
        );
    }
}

#[test]
fn the_tools_own_files_stay_out_of_the_project() {
    // An application repository as most are: nothing ignores `target/`, the Dockerfile sends
    // the whole tree, and a build argument carries a token.
    let p = Project::new(&[
        ("Dockerfile", "FROM scratch\nARG TOKEN\nCOPY . /app/\n"),
        (".dockerignore", ".git\n"),
        (".gitignore", "*.pyc\n"),
        ("manage.py", ""),
    ]);
    p.commit(None);
    let build = || {
        let out = run(p.xtask().args([
            "--json",
            "build",
            "--version",
            "1.0.0",
            "--build-arg",
            "TOKEN=s3cr3tXYZ",
        ]))
        .ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["images"][0]["status"].as_str().unwrap().to_string()
    };
    assert_eq!(build(), "built");
    assert_eq!(build(), "up-to-date");
    let listed = run(p.xtask().args(["context", "--list"])).ok().stdout;
    assert_eq!(
        listed, ".dockerignore\n.gitignore\nDockerfile\ndocker/images.toml\nmanage.py\n",
        "the tool's files entered the context"
    );
    assert_eq!(p.git(&["status", "--porcelain", "--ignored"]).stdout, "");
    assert!(!p.path().join("target").exists());
    // The records hold a keyed hash of the token, never the token.
    let state = p.state_json().to_string();
    assert!(
        state.contains("TOKEN") && !state.contains("s3cr3tXYZ"),
        "{state}"
    );
}

#[test]
fn dry_run_and_failed_config_write_no_state() {
    let p = simple_project();
    run(p.xtask().args(["--dry-run", "build", "--version", "1.0.0"])).ok();
    run(p.xtask().args(["--dry-run", "plan", "--version", "1.0.0"])).ok();
    p.write("docker/images.toml", "[[image]]\nname = 3\n");
    assert_eq!(run(p.xtask().args(["build", "--version", "1.0.0"])).code, 2);
    let written: Vec<_> = walkdir::WalkDir::new(p.state.path())
        .min_depth(1)
        .into_iter()
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn syntax_the_engine_cannot_build_is_refused_before_it_runs() {
    let p = Project::new(&[(
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /\nRUN <<EOF\necho hi\nEOF\n",
    )]);
    p.write("hello.txt", "hi");
    let out = run(p.xtask().args(["build", "--version", "1.0.0"]));
    let version = podman(&["--version"]).ok().stdout;
    let (major, minor) = version
        .split_whitespace()
        .last()
        .and_then(|v| {
            let mut n = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
            Some((n.next()?, n.next()?))
        })
        .expect("podman --version");
    if (major, minor) < (4, 8) {
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "Dockerfile:3: RUN uses a heredoc (`<<`), which podman {major}.{minor} does not support"
            )),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("STEP 1"), "podman ran: {}", out.stderr);
    } else {
        assert!(!out.stderr.contains("does not support"), "{}", out.stderr);
    }
}

#[test]
fn a_tag_of_another_scheme_behind_head_does_not_block_builds() {
    let p = simple_project();
    p.commit(Some("2024.05"));
    p.write("hello.txt", "again\n");
    p.commit(Some("v1.2.0"));
    p.write("hello.txt", "and again\n");
    p.commit(Some("2024.06"));
    p.write("hello.txt", "later\n");
    p.commit(None);
    let out = run(p.xtask().args(["--json", "tags"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        v["version"].as_str().unwrap().starts_with("1.2.0-2-g"),
        "{v}"
    );
    // On HEAD, a tag that is not a version is skipped too (said once), and the build is the
    // snapshot after the last version; `release` refuses it, under --json as a document too.
    p.git(&["tag", "nightly-7"]);
    p.git(&["tag", "2024.07"]);
    let out = run(p.xtask().args(["--json", "tags"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        v["version"].as_str().unwrap().starts_with("1.2.0-2-g"),
        "{v}"
    );
    assert!(
        out.stderr
            .contains("`2024.07` on HEAD is not a version of version_scheme `semver`"),
        "{}",
        out.stderr
    );
    let out = run(p.xtask().args(["--json", "--dry-run", "release"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["exit"], 2);
    assert!(err["error"].as_str().unwrap().contains("2024.07"), "{err}");
}

#[test]
fn dry_run_with_json_prints_the_plan_as_one_document() {
    let p = simple_project();
    let out = run(p
        .xtask()
        .args(["--json", "--dry-run", "build", "--version", "1.0.0"]))
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    let commands = v["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "{v:#}");
    assert!(
        commands[0]
            .as_str()
            .unwrap()
            .starts_with("podman build --layers -f Dockerfile"),
        "{v:#}"
    );
}

#[test]
fn a_dockerfile_with_a_byte_order_mark_and_latin1_bytes_builds_as_podman_builds_it() {
    let p = Project::new(&[("hello.txt", "hello\n")]);
    std::fs::write(
        p.path().join("Dockerfile"),
        b"\xef\xbb\xbfFROM scratch\n# caf\xe9 au lait\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    p.commit(None);
    let out = run(p.xtask().args(["--json", "build", "--version", "1.0.0"])).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["images"][0]["status"], "built");
    // Read the same way the second time: nothing to do.
    let again = run(p.xtask().args(["--json", "build", "--version", "1.0.0"])).ok();
    let v: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["images"][0]["status"], "up-to-date");
}

#[test]
fn the_dockerfiles_labels_win_and_an_ssh_remote_gives_a_web_source() {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL org.opencontainers.image.title=\"Hello app\"\n",
        ),
        ("hello.txt", "hello\n"),
    ]);
    p.commit(Some("v1.0.0"));
    p.git(&["remote", "add", "origin", "git@github.com:acme/hello.git"]);
    run(p.xtask().arg("build")).ok();
    let l = labels(&p.reference("1.0.0"));
    assert_eq!(l["org.opencontainers.image.title"], "Hello app");
    assert_eq!(
        l["org.opencontainers.image.source"],
        "https://github.com/acme/hello"
    );
    assert_eq!(l["org.opencontainers.image.version"], "1.0.0");
    // The Dockerfile's own source wins too.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL org.opencontainers.image.source=https://example.org/hello\n",
    );
    p.commit(Some("v1.0.1"));
    run(p.xtask().arg("build")).ok();
    let l = labels(&p.reference("1.0.1"));
    assert_eq!(
        l["org.opencontainers.image.source"],
        "https://example.org/hello"
    );
    // A label the Dockerfile sets that a build fact overrides is said, with both values.
    p.write(
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL org.opencontainers.image.version=0.0.0-manual\n",
    );
    p.commit(Some("v1.0.2"));
    let out = run(p.xtask().arg("plan")).ok();
    assert!(
        out.stderr.contains("label `org.opencontainers.image.version`: the Dockerfile sets \"0.0.0-manual\"; the build's own fact \"1.0.2\" wins"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_repository_git_cannot_read_is_an_error_not_a_dev_build() {
    let p = simple_project();
    p.commit(None);
    for e in std::fs::read_dir(p.path().join(".git/objects")).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        }
    }
    let out = run(p.xtask().arg("tags"));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("`git show HEAD` failed"),
        "{}",
        out.stderr
    );
    // `--version` goes on without the commit facts, saying so.
    let out = run(p.xtask().args(["tags", "--version", "2.0.0"])).ok();
    assert!(out.stdout.starts_with("2.0.0\n"), "{}", out.stdout);
    assert!(
        out.stderr.contains("going on without commit facts"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_file_name_that_is_not_utf8_builds_plans_and_lists_as_podman_copies_it() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
        (".dockerignore", "target\n"),
    ]);
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(p.path().join(name), "latin-1 name\n").unwrap();
    std::fs::create_dir(p.path().join(std::ffi::OsStr::from_bytes(b"d\xe9j\xe0"))).unwrap();
    std::fs::write(
        p.path()
            .join(std::ffi::OsStr::from_bytes(b"d\xe9j\xe0"))
            .join("inner.txt"),
        "inside\n",
    )
    .unwrap();
    p.commit(None);
    run(p.xtask().arg("build")).ok();
    let plan: serde_json::Value =
        serde_json::from_str(&run(p.xtask().args(["--json", "plan"])).ok().stdout).unwrap();
    assert_eq!(plan["images"][0]["action"], "up-to-date", "{plan}");
    // Listed by their bytes, as they are on disk and in the image.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("-C")
        .arg(p.path())
        .env("XTASK_STATE_DIR", p.state.path())
        .args(["context", "--list", "-z"])
        .output()
        .unwrap();
    let names: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    assert!(
        names.contains(&&b"caf\xe9.txt"[..]),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(names.contains(&&b"d\xe9j\xe0/inner.txt"[..]));
    // An edit to the file is seen.
    std::fs::write(p.path().join(name), "changed\n").unwrap();
    p.commit(None);
    let plan: serde_json::Value =
        serde_json::from_str(&run(p.xtask().args(["--json", "plan"])).ok().stdout).unwrap();
    assert_eq!(plan["images"][0]["action"], "build", "{plan}");
}
