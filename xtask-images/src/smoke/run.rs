//! Running a suite against one image ID: tests in parallel, each with a deadline, results in
//! config order. Containers are named per run and labelled, and [`sweep`] removes them all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::plan::{self, Mode, RunId};
use super::report::{tail, Masker, Outcome};
use super::{check, tar, FileCheck, Kind, Run, Streams, Test, Wait};
use crate::cmd::{Cmd, Secret};
use crate::engine::Engine;
use crate::exec::{Output, Sh};

/// Between readiness probes of a service; the deadline, not this, bounds the wait.
const POLL: Duration = Duration::from_millis(100);
/// When a person watching is first told a service test is still waiting; then every twice this.
const WAITING_NOTE: Duration = Duration::from_secs(5);

pub struct Runner<'a> {
    pub sh: &'a Sh,
    pub engine: &'a Engine,
    pub id: &'a RunId,
    /// The image ID under test.
    pub image: &'a str,
    pub masker: &'a Masker,
    /// Host values of every `pass_env` variable that is set.
    pub host_env: &'a [(String, Secret)],
    /// Number of this suite's first container within the run.
    pub first: usize,
    /// A manifest list's platform under test (`--platform` on every run and create).
    pub platform: Option<&'a str>,
    /// Whether the image's platform can run here (natively, or emulated).
    pub runnable: bool,
}

impl Runner<'_> {
    /// `podman run|create --platform P …` for a platform's image: without it podman warns on
    /// stderr that the image's platform is not the host's.
    fn platformed(&self, mut c: Cmd) -> Cmd {
        if let Some(p) = self.platform {
            c.args
                .splice(1..1, ["--platform".to_string(), p.to_string()]);
        }
        c
    }
}

/// Runs every test, up to one per core at a time; outcomes come back in the tests' order.
pub fn all(r: &Runner, tests: &[Test]) -> Vec<Outcome> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(tests.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let live = crate::output::live() && !r.sh.quiet;
    let slots: Vec<Mutex<Option<Outcome>>> = tests.iter().map(|_| Mutex::new(None)).collect();
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                // After an interrupt, nothing new starts (its containers would outlive the sweep).
                if crate::interrupt::interrupted() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = tests.get(i) else { break };
                let o = one(r, i, t);
                // On a terminal each test is said the moment it ends; the table follows.
                if live {
                    let word = super::report::result_word(&o);
                    eprintln!(
                        "  {}{}  {}  {:.1}s",
                        crate::output::status(word, crate::output::Stream::Err),
                        " ".repeat(7usize.saturating_sub(word.len())),
                        t.name,
                        o.seconds
                    );
                }
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(o);
                }
            });
        }
    });
    slots
        .into_iter()
        .zip(tests)
        .map(|(s, t)| {
            s.into_inner().ok().flatten().unwrap_or_else(|| Outcome {
                name: t.name.clone(),
                kind: t.kind.label(),
                failures: vec!["the test's worker thread crashed".into()],
                ..Outcome::default()
            })
        })
        .collect()
}

fn one(r: &Runner, n: usize, t: &Test) -> Outcome {
    let start = Instant::now();
    let name = r.id.container(r.first + n);
    let secrets = t.kind.run().map(|run| secrets(r, run)).transpose();
    let mut o = match (&t.kind, secrets) {
        (Kind::Command(..) | Kind::Service(..), _) if !r.runnable => Outcome {
            not_run: Some(format!(
                "not run: no emulator for {} here (install qemu-user-static and enable its binfmt handler; `cargo xtask doctor` says how)",
                r.platform.unwrap_or("this platform")
            )),
            ..Outcome::default()
        },
        (_, Err(failures)) => Outcome {
            failures,
            ..Outcome::default()
        },
        (Kind::Command(run, streams), Ok(s)) => {
            command(r, &name, t, run, streams, &s.unwrap_or_default())
        }
        (Kind::File(f), Ok(_)) => file(r, &name, f),
        (Kind::Service(run, wait), Ok(s)) => {
            service(r, &name, t, run, wait, &s.unwrap_or_default())
        }
    };
    o.name = t.name.clone();
    o.kind = t.kind.label();
    o.seconds = start.elapsed().as_secs_f64();
    o.failures = o.failures.iter().map(|f| r.masker.mask(f)).collect();
    o
}

/// The host values of a test's `pass_env`, or the names that are not set.
fn secrets(r: &Runner, run: &Run) -> Result<Vec<(String, Secret)>, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for var in &run.pass_env {
        match r.host_env.iter().find(|(k, _)| k == var) {
            Some(kv) => found.push(kv.clone()),
            None => missing.push(format!(
                "`pass_env` variable `{var}` is not set in this environment"
            )),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(missing)
    }
}

fn command(
    r: &Runner,
    name: &str,
    t: &Test,
    run: &Run,
    streams: &Streams,
    secrets: &[(String, Secret)],
) -> Outcome {
    let cmd = r.platformed(plan::run(
        r.engine,
        r.id,
        name,
        r.image,
        run,
        &Mode::Foreground,
        secrets,
    ));
    let mut o = Outcome {
        command: Some(cmd.to_string()),
        ..Outcome::default()
    };
    let (out, timed_out) = with_deadline(r, &cmd, name, t.timeout);
    match out {
        Err(e) => o.failures.push(format!("{e:#}")),
        Ok(out) => {
            if timed_out {
                o.failures.push(format!(
                    "timed out after {}; the container was killed",
                    seconds(t.timeout)
                ));
            } else {
                o.failures = check::streams(streams, out.code, &out.stdout, &out.stderr);
            }
            o.exit_code = out.code;
            if !o.failures.is_empty() {
                o.output = tail(r.masker, &out.stdout, &out.stderr);
            }
        }
    }
    o
}

/// Runs `cmd` (which starts container `name`); past `timeout` the container is removed, which
/// ends the engine's process. Returns the output and whether the deadline passed.
fn with_deadline(r: &Runner, cmd: &Cmd, name: &str, timeout: Duration) -> (Result<Output>, bool) {
    let (tx, rx) = mpsc::channel();
    let sh = r.sh.clone();
    let owned = cmd.clone();
    // Not scoped: if the engine hung even after the kill, the suite still reports.
    thread::spawn(move || {
        let _ = tx.send(sh.probe(&owned));
    });
    if let Ok(out) = rx.recv_timeout(timeout) {
        return (out, false);
    }
    // The container may not exist yet when the first removal runs; repeat until the run ends.
    for _ in 0..10 {
        let _ = r.sh.probe(&plan::remove(r.engine, name));
        if let Ok(out) = rx.recv_timeout(Duration::from_secs(3)) {
            return (out, true);
        }
    }
    (
        Err(anyhow::anyhow!(
            "timed out after {} and container `{name}` could not be stopped",
            seconds(timeout)
        )),
        true,
    )
}

fn file(r: &Runner, name: &str, f: &FileCheck) -> Outcome {
    let create = r.platformed(plan::create_for_files(r.engine, r.id, name, r.image));
    let mut o = Outcome {
        command: Some(format!(
            "{} && {}",
            create,
            plan::copy_out(r.engine, name, &f.path)
        )),
        ..Outcome::default()
    };
    match r.sh.probe(&create) {
        Ok(c) if c.success() => {}
        Ok(c) => {
            o.failures
                .push(crate::exec::failure(&create, c.code, &c.stderr, ""));
            return o;
        }
        Err(e) => {
            o.failures.push(format!("{e:#}"));
            return o;
        }
    }
    let copied = r.sh.probe_bytes(&plan::copy_out(r.engine, name, &f.path));
    let _ = r.sh.probe(&plan::remove(r.engine, name));
    match copied {
        Err(e) => o.failures.push(format!("{e:#}")),
        Ok(c) if c.code == Some(0) => {
            o.failures = check::file(f, tar::first_entry(&c.stdout).as_ref());
        }
        // How podman and Docker's daemon (20.10: `Could not find the file X in container`)
        // say the path is not there.
        Ok(c)
            if c.stderr.contains("no such file or directory")
                || c.stderr.contains("could not be found")
                || c.stderr.contains("Could not find the file") =>
        {
            o.failures = check::file(f, None);
        }
        Ok(c) => o.failures.push(crate::exec::failure(
            &plan::copy_out(r.engine, name, &f.path),
            c.code,
            &c.stderr,
            "",
        )),
    }
    o
}

fn service(
    r: &Runner,
    name: &str,
    t: &Test,
    run: &Run,
    wait: &Wait,
    secrets: &[(String, Secret)],
) -> Outcome {
    let port = wait.port();
    let cmd = r.platformed(plan::run(
        r.engine,
        r.id,
        name,
        r.image,
        run,
        &Mode::Detached { port },
        secrets,
    ));
    let mut o = Outcome {
        command: Some(cmd.to_string()),
        ..Outcome::default()
    };
    let deadline = Instant::now() + t.timeout;
    match r.sh.probe(&cmd) {
        Ok(out) if out.success() => {
            o.failures = wait_ready(r, name, t, wait, port, deadline);
        }
        Ok(out) => {
            o.failures.push(r.masker.mask(&crate::exec::failure(
                &cmd,
                out.code,
                &out.stderr,
                &out.stdout,
            )));
        }
        Err(e) => o.failures.push(format!("{e:#}")),
    }
    if !o.failures.is_empty() {
        if let Ok(logs) = r.sh.probe(&plan::logs(r.engine, name)) {
            o.output = tail(r.masker, &logs.stdout, &logs.stderr);
        }
    }
    let _ = r.sh.probe(&plan::remove(r.engine, name));
    o
}

fn wait_ready(
    r: &Runner,
    name: &str,
    t: &Test,
    wait: &Wait,
    port: Option<u16>,
    deadline: Instant,
) -> Vec<String> {
    // Resolved once the container runs: the engine reports no port for an exited container.
    let mut addr = None;
    let mut last = String::new();
    let start = Instant::now();
    // A person watching sees a slow service test is waiting, and for what, after a few
    // seconds and then every ten (plain lines: other tests' results print in between).
    let live = crate::output::live() && !r.sh.quiet;
    let mut note_at = start + WAITING_NOTE;
    loop {
        if let (Some(p), None) = (port, addr) {
            addr = host_port(r, name, p).ok();
        }
        let ready = match (wait, addr) {
            (Wait::Port(_), Some(a)) => tcp_ready(a),
            (Wait::Http { path, status, .. }, Some(a)) => match http_status(a, path) {
                Ok(s) if s == *status => true,
                Ok(s) => {
                    last = format!("; the last answer was HTTP {s}");
                    false
                }
                Err(e) => {
                    last = format!("; the last attempt failed: {e}");
                    false
                }
            },
            (Wait::Log(re), _) => {
                r.sh.probe(&plan::logs(r.engine, name))
                    .is_ok_and(|l| re.is_match(&l.stdout) || re.is_match(&l.stderr))
            }
            _ => false,
        };
        if ready {
            return Vec::new();
        }
        if let Ok(s) = r.sh.read(&plan::state(r.engine, name)) {
            if let Some(code) = s.strip_prefix("false ") {
                return vec![format!(
                    "the container exited (code {code}) before it was ready"
                )];
            }
        }
        if let (Some(p), None) = (port, addr) {
            if let Err(e) = host_port(r, name, p) {
                last = format!("; {e:#}");
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return vec![format!(
                "not ready after {}: no {}{last}",
                seconds(t.timeout),
                awaited(wait)
            )];
        }
        if live && now >= note_at {
            eprintln!(
                "  waiting  {}: {} ({}s of {})",
                t.name,
                awaited(wait),
                (now - start).as_secs(),
                seconds(t.timeout)
            );
            note_at += WAITING_NOTE * 2;
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// What a service test waits for, as its messages say it.
fn awaited(wait: &Wait) -> String {
    match wait {
        Wait::Port(p) => format!("port {p} accepting connections"),
        Wait::Http { path, port, status } => format!("HTTP {status} from {path} on port {port}"),
        Wait::Log(re) => format!("a log line matching `{}`", re.as_str()),
    }
}

/// Where the engine published the container's port, e.g. `127.0.0.1:41235`.
fn host_port(r: &Runner, name: &str, port: u16) -> Result<SocketAddr> {
    let text = r.sh.read(&plan::port(r.engine, name, port))?;
    text.lines()
        .filter_map(|l| l.trim().parse::<SocketAddr>().ok())
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!("the engine published no host port for {port}/tcp (it said `{text}`)")
        })
}

/// A port forwarder may accept before the service listens and then hang up at once; a
/// connection that stays open (or sends a greeting) is a listening service.
fn tcp_ready(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn http_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: xtask-smoke\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    s.take(4096).read_to_end(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer (connection closed)"))
}

/// Removes every container of this run, however the run ended.
pub fn sweep(sh: &Sh, engine: &Engine, id: &RunId) -> Result<()> {
    // Until none is left: a container still being created when the list was read shows up in
    // the next one, and one the daemon is already removing (Docker's `run --rm` after its
    // client was stopped) fails the `rm` and is listed until it is gone, which is waited for.
    let mut last = String::new();
    for _ in 0..100 {
        let ids = sh.read(&plan::list_run(engine, id))?;
        let ids: Vec<String> = ids.split_whitespace().map(String::from).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let out = sh.probe(&plan::remove_all(engine, &ids))?;
        if !out.success() {
            last = out.stderr.trim().to_string();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err(anyhow::anyhow!(
        "containers of this run are still there after 10 s of removing them: {last}"
    ))
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
