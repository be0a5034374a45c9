//! Human output as a person sees it: under a pseudo-terminal (`script` from util-linux), status
//! words are coloured, tables have headers, and smoke tests are said as they end; with
//! `NO_COLOR` or piped, no colour codes and no live lines.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use support::{run, Out, Project};

fn project() -> Project {
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        ),
        (
            "docker/images.toml",
            // The slow test is first: a table printed at the end would list it first too.
            "[[image]]\nname = \"{name}\"\n[[image.smoke]]\nname = \"slow\"\ncommand = [\"sleep\", \"3\"]\n[[image.smoke]]\nname = \"fast\"\ncommand = [\"true\"]\n",
        ),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox"))
        .expect("a static /bin/busybox (busybox-static; run `bash .ci/setup`)");
    p.commit(None);
    p
}

/// `xtask ARGS` on a pseudo-terminal; its transcript (stdout and stderr together).
fn on_terminal(p: &Project, args: &str, env: &[(&str, &str)]) -> Out {
    let mut c = Command::new("script");
    support::isolated(&mut c)
        .env("XTASK_STATE_DIR", p.state.path())
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm")
        .args(["-qec"])
        .arg(format!(
            "'{}' -C '{}' {args}",
            env!("CARGO_BIN_EXE_xtask"),
            p.path().display()
        ))
        .arg("/dev/null");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn a_terminal_gets_colour_headers_and_live_test_lines_and_a_pipe_gets_plain_text() {
    let _serial = support::serial();
    let p = project();
    run(p.xtask().arg("build")).ok();

    let tty = on_terminal(&p, "test", &[]);
    assert_eq!(tty.code, 0, "{}", tty.stdout);
    let t = &tty.stdout;
    assert!(
        t.contains("\x1b[32mok\x1b[0m"),
        "no colour on a terminal: {t:?}"
    );
    assert!(
        t.contains("image") && t.contains("test") && t.contains("result"),
        "{t}"
    );
    // Each test is said as it ends: the fast one before the slow one.
    let fast = t.find("fast").expect("fast");
    let slow = t.find("slow").expect("slow");
    assert!(
        fast < slow,
        "the fast test's line came after the slow one's: {t}"
    );

    let plain = on_terminal(&p, "test", &[("NO_COLOR", "1")]);
    assert_eq!(plain.code, 0);
    assert!(!plain.stdout.contains('\x1b'), "{:?}", plain.stdout);
    let never = on_terminal(&p, "--color never test", &[]);
    assert!(!never.stdout.contains('\x1b'), "{:?}", never.stdout);

    // Piped: no colour, no live lines, the table with its header.
    let piped = run(p.xtask().arg("test")).ok();
    assert!(!piped.stdout.contains('\x1b') && !piped.stderr.contains('\x1b'));
    assert!(piped.stdout.starts_with("image"), "{}", piped.stdout);
    assert!(!piped.stderr.contains("  ok"), "{}", piped.stderr);
    let forced = run(p.xtask().args(["--color", "always", "test"])).ok();
    assert!(forced.stdout.contains("\x1b[32mok"), "{}", forced.stdout);

    // -q: the final result only; a build streams nothing.
    let quiet = run(p.xtask().args(["-q", "test"])).ok();
    assert_eq!(quiet.stdout.lines().count(), 1, "{}", quiet.stdout);
    p.write("extra.txt", "x\n");
    p.commit(None);
    let quiet = run(p.xtask().args(["-q", "build"])).ok();
    assert!(!quiet.stderr.contains("STEP"), "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("$ podman"), "{}", quiet.stderr);
    assert!(quiet.stdout.starts_with("built "), "{}", quiet.stdout);
}

#[test]
fn help_is_coloured_on_a_terminal_and_slow_work_says_it_is_still_running() {
    let _serial = support::serial();
    let p = Project::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        ),
        (
            "docker/images.toml",
            // A hook that takes 3 s, and a service that listens only after 6 s.
            "[[image]]\nname = \"{name}\"\nbefore_build = [[\"sleep\", \"3\"]]\n[[image.smoke]]\nname = \"late listener\"\nservice = true\ncommand = [\"sh\", \"-c\", \"sleep 6; exec httpd -f -p 8000\"]\nwait_for = { port = 8000 }\ntimeout = \"30s\"\n",
        ),
    ]);
    std::fs::copy("/bin/busybox", p.path().join("busybox")).expect("static busybox");
    p.commit(None);

    let help = on_terminal(&p, "--help", &[]);
    assert_eq!(help.code, 0, "{}", help.stdout);
    assert!(
        help.stdout.contains("\x1b[1;4mUsage:\x1b[0m")
            && help.stdout.contains("\x1b[1mrelease\x1b[0m"),
        "{:?}",
        help.stdout
    );
    let bad = on_terminal(&p, "--bogus", &[]);
    assert_eq!(bad.code, 2);
    assert!(bad.stdout.contains("\x1b[1;31merror:"), "{:?}", bad.stdout);
    for plain in [
        on_terminal(&p, "--help", &[("NO_COLOR", "1")]),
        on_terminal(&p, "--color=never --help", &[]),
        run(p.xtask().arg("--help")),
    ] {
        assert!(
            plain.stdout.contains("Usage: cargo xtask"),
            "{}",
            plain.stdout
        );
        assert!(!plain.stdout.contains('\x1b'), "{:?}", plain.stdout);
    }

    // The hook: a status line with its elapsed time while it runs, wiped, then its time.
    let built = on_terminal(&p, "build", &[]);
    assert_eq!(built.code, 0, "{}", built.stdout);
    let b = &built.stdout;
    assert!(b.contains("running") && b.contains("sleep 3  2s"), "{b:?}");
    assert!(
        b.contains("\r\x1b[K"),
        "the status line was not wiped: {b:?}"
    );
    assert!(b.contains("before_build: `sleep 3`"), "{b:?}");
    let piped = run(p.xtask().arg("build")).ok();
    assert!(!piped.stderr.contains('\r'), "{:?}", piped.stderr);

    // The service: said to be waiting, and for what, before it is ready.
    let tested = on_terminal(&p, "test", &[]);
    assert_eq!(tested.code, 0, "{}", tested.stdout);
    let t = &tested.stdout;
    let waiting = t
        .find("waiting  late listener: port 8000 accepting connections (5s of 30s)")
        .unwrap_or_else(|| panic!("no waiting line: {t:?}"));
    let passed = t.find("late listener  ").expect("its result line");
    assert!(waiting < passed, "{t}");
}
