//! End-to-end: interrupting a build. Alone in its binary: working containers carry no owner,
//! so these tests must not share a moment with another test's build (the tool leaves working
//! containers alone while any other build runs, and cargo runs test binaries one at a time).
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

/// Starts a build whose RUN step takes a while, with SIGINT ignored as a background job of a
/// non-interactive shell has it, and returns once podman is in that step.
fn slow_build(p: &Project) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    std::fs::copy("/bin/busybox", p.path().join("busybox")).expect("a static /bin/busybox");
    p.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo {} && sleep 60\"]\n",
            p.name
        ),
    );
    let cmd = p.xtask();
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", "trap '' INT; exec \"$0\" \"$@\""])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .args(["build", "--version", "1.0.0"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = sh.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // The RUN step has started when its command echoes the project's name.
    for line in lines.by_ref() {
        if line.unwrap().trim() == p.name {
            break;
        }
    }
    // Keep draining so podman never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn working_containers() -> Vec<String> {
    podman(&["ps", "--all", "--external", "--format", "{{.Names}}"])
        .ok()
        .stdout
        .lines()
        .filter(|l| l.contains("working-container"))
        .map(str::to_string)
        .collect()
}

#[test]
fn sigint_to_the_tool_alone_stops_a_build_and_leaves_nothing() {
    let _serial = support::serial();
    let p = Project::new(&[]);
    let child = slow_build(&p);
    let pid = child.id().to_string();
    run(std::process::Command::new("kill").args(["-INT", &pid])).ok();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(
        working_containers().is_empty(),
        "{:?}",
        working_containers()
    );
    assert!(podman(&["image", "exists", &p.reference("1.0.0")]).code != 0);
}

#[test]
fn clean_removes_what_a_killed_build_left() {
    let _serial = support::serial();
    let p = Project::new(&[]);
    let child = slow_build(&p);
    // Killed outright, then podman: nothing could clean up.
    run(std::process::Command::new("kill").args(["-KILL", &child.id().to_string()])).ok();
    let _ = child.wait_with_output();
    run(std::process::Command::new("pkill").args(["-KILL", "-f", &p.name])).ok();
    assert!(
        !working_containers().is_empty(),
        "the kill left no working container to clean"
    );
    let doctor = run(p.xtask().args(["--json", "doctor"]));
    let v: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap();
    assert!(
        v["leftover_working_containers"].as_u64().unwrap() >= 1,
        "{v}"
    );
    let out = run(p.xtask().arg("clean")).ok();
    assert!(
        out.stdout
            .contains("working container(s) of interrupted builds"),
        "{}",
        out.stdout
    );
    assert!(
        working_containers().is_empty(),
        "{:?}",
        working_containers()
    );
}
