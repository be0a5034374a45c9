//! The one place that starts processes. Everything else builds a [`Cmd`] and hands it here, so
//! `--dry-run`, echoing and secret handling behave the same for every command.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, EnvValue};

/// How many trailing output lines a streamed command keeps for its error message.
const TAIL: usize = 40;

#[derive(Clone)]
pub struct Sh {
    /// Working directory of every command: the project root.
    pub dir: PathBuf,
    /// Print mutating commands instead of running them.
    pub dry_run: bool,
    /// Echo every command, queries included.
    pub verbose: bool,
    /// Echo nothing and stream no output (`-q`); errors still carry the output's tail.
    pub quiet: bool,
    /// `--dry-run --json`: the commands are collected here, for one JSON document at the end,
    /// instead of printed one per line.
    pub planned: Option<Arc<Mutex<Vec<String>>>>,
    /// Folds each command's streamed output in the CI's log viewer.
    pub fold: Fold,
}

/// How a CI log folds a command's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fold {
    #[default]
    None,
    /// `::group::` … `::endgroup::`.
    GitHub,
    /// `section_start` … `section_end`, collapsed.
    GitLab,
}

impl Fold {
    fn start(self, n: usize, cmd: &Cmd) {
        match self {
            Fold::None => eprintln!("$ {cmd}"),
            Fold::GitHub => eprintln!("::group::$ {cmd}"),
            Fold::GitLab => eprintln!(
                "\x1b[0Ksection_start:{}:xtask_{n}[collapsed=true]\r\x1b[0K$ {cmd}",
                epoch()
            ),
        }
    }

    fn end(self, n: usize) {
        match self {
            Fold::None => {}
            Fold::GitHub => eprintln!("::endgroup::"),
            Fold::GitLab => eprintln!("\x1b[0Ksection_end:{}:xtask_{n}\r\x1b[0K", epoch()),
        }
    }
}

fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Default)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Default)]
pub struct RawOutput {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Sh {
    /// Runs a read-only query (it runs under `--dry-run` too) and returns its trimmed stdout.
    pub fn read(&self, cmd: &Cmd) -> Result<String> {
        let out = self.probe(cmd)?;
        if !out.success() {
            bail!("{}", failure(cmd, out.code, &out.stderr, &out.stdout));
        }
        Ok(out.stdout.trim_end().to_string())
    }

    /// Runs a read-only query and returns its output whatever the exit status; fails only when
    /// the program cannot be started.
    pub fn probe(&self, cmd: &Cmd) -> Result<Output> {
        let raw = self.probe_bytes(cmd)?;
        Ok(Output {
            code: raw.code,
            stdout: String::from_utf8_lossy(&raw.stdout).into_owned(),
            stderr: raw.stderr,
        })
    }

    /// [`Sh::probe`] for a command whose stdout is binary (a tar stream).
    pub fn probe_bytes(&self, cmd: &Cmd) -> Result<RawOutput> {
        if self.verbose {
            eprintln!("$ {cmd}");
        }
        let (child, _running) = self.spawn(cmd)?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{}`", cmd.program))?;
        Ok(RawOutput {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs a command that changes something: echoed as `$ cmd`, its output streamed to stderr
    /// as it comes. Under `--dry-run` it is printed to stdout and skipped.
    pub fn run(&self, cmd: &Cmd) -> Result<()> {
        self.run_keeping(cmd, TAIL, None).map(drop)
    }

    /// [`Sh::run`] for a command that can stall (a push to a registry that stops answering):
    /// stopped after `limit`, and reported as stalled, which a retry may get past.
    pub fn run_within(&self, cmd: &Cmd, limit: std::time::Duration) -> Result<()> {
        self.run_keeping(cmd, TAIL, Some(limit)).map(drop)
    }

    /// [`Sh::run`] that also returns the command's whole stdout (empty under `--dry-run`), for
    /// output that must be both shown as it comes and read afterwards (`podman build`'s steps).
    pub fn run_captured(&self, cmd: &Cmd) -> Result<String> {
        self.run_keeping(cmd, usize::MAX, None)
    }

    /// Runs a mutating command, returning the last `keep` lines of its stdout.
    fn run_keeping(
        &self,
        cmd: &Cmd,
        keep: usize,
        limit: Option<std::time::Duration>,
    ) -> Result<String> {
        if self.dry_run {
            match &self.planned {
                Some(p) => p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(cmd.to_string()),
                None => println!("{cmd}"),
            }
            return Ok(String::new());
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.quiet {
            self.fold.start(n, cmd);
        }
        let ticker = (!self.quiet).then(|| crate::output::Ticker::start(&cmd.to_string()));
        let out = self.stream_keeping(cmd, keep, limit);
        drop(ticker);
        if !self.quiet {
            self.fold.end(n);
        }
        let (out, stalled) = out?;
        crate::fault::boundary(cmd);
        if let (true, Some(limit)) = (stalled, limit) {
            bail!(
                "`{} {}` stalled: stopped after {}s without finishing (push_timeout in docker/images.toml, XTASK_PUSH_TIMEOUT)",
                cmd.program,
                cmd.args.first().map_or("", String::as_str),
                limit.as_secs()
            );
        }
        if !out.success() {
            bail!("{}", failure(cmd, out.code, &out.stderr, &out.stdout));
        }
        Ok(out.stdout)
    }

    /// Starts a command with its output piped and its secret fed on stdin, registered as the
    /// running command an interrupt stops (queries too: a smoke test's `podman run` is one)
    /// until the returned guard drops.
    fn spawn(&self, cmd: &Cmd) -> Result<(std::process::Child, crate::interrupt::Running)> {
        let settling = crate::interrupt::settles(cmd);
        let mut command = self.command(cmd);
        if settling {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let mut child = command
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(cmd, e))?;
        let running = crate::interrupt::Running::new(child.id(), settling);
        feed_stdin(cmd, &mut child)?;
        Ok((child, running))
    }

    /// Streams the output to stderr, keeping the last `keep` lines of stdout; stops the
    /// command after `limit` (then says so).
    fn stream_keeping(
        &self,
        cmd: &Cmd,
        keep: usize,
        limit: Option<std::time::Duration>,
    ) -> Result<(Output, bool)> {
        let (mut child, _running) = self.spawn(cmd)?;
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = limit.map(|limit| {
            let pid = child.id();
            let stalled = Arc::clone(&stalled);
            thread::spawn(move || {
                // Ends early, without firing, when the command ends (the sender drops).
                if finished.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    stalled.store(true, std::sync::atomic::Ordering::SeqCst);
                    crate::interrupt::stop(pid);
                }
            })
        });
        let stdout_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let t1 = forward(
            child.stdout.take().expect("piped"),
            Arc::clone(&stdout_tail),
            keep,
            !self.quiet,
        );
        let t2 = forward(
            child.stderr.take().expect("piped"),
            Arc::clone(&stderr_tail),
            TAIL,
            !self.quiet,
        );
        let status = child
            .wait()
            .with_context(|| format!("waiting for `{}`", cmd.program))?;
        drop(done);
        if let Some(w) = watchdog {
            let _ = w.join();
        }
        let _ = t1.join();
        let _ = t2.join();
        let join = |t: &Arc<Mutex<VecDeque<String>>>| {
            t.lock()
                .map(|v| v.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        };
        Ok((
            Output {
                code: status.code(),
                stdout: join(&stdout_tail),
                stderr: join(&stderr_tail),
            },
            stalled.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }

    #[allow(clippy::disallowed_methods)]
    fn command(&self, cmd: &Cmd) -> Command {
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args).current_dir(&self.dir);
        for (k, v) in &cmd.env {
            match v {
                EnvValue::Plain(v) => c.env(k, v),
                EnvValue::Secret(s) => c.env(k, s.expose()),
            };
        }
        c
    }
}

fn feed_stdin(cmd: &Cmd, child: &mut std::process::Child) -> Result<()> {
    if let (Some(secret), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
        // A child that exits before reading (e.g. bad flags) closes the pipe; its exit status
        // is the real error, so a write failure here is not reported.
        let _ = stdin.write_all(secret.expose().as_bytes());
    }
    Ok(())
}

/// Copies a child's output line by line to our stderr, keeping the last lines for errors.
fn forward(
    pipe: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
    echo: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            if echo {
                crate::output::err_line(&line);
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == keep {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    })
}

fn spawn_error(cmd: &Cmd, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        let hint = match cmd.program.as_str() {
            "podman" | "skopeo" | "buildah" => {
                format!(
                    "; install it (Debian/Ubuntu: `apt-get install {}`)",
                    cmd.program
                )
            }
            "docker" => "; install Docker, or use `--engine podman`".to_string(),
            "git" => "; install git (Debian/Ubuntu: `apt-get install git`)".to_string(),
            _ => String::new(),
        };
        anyhow::anyhow!("`{}` is not installed or not on PATH{hint}", cmd.program)
    } else {
        anyhow::anyhow!("cannot start `{}`: {e}", cmd.program)
    }
}

/// "`podman build` failed (exit 125): Error: …" with the line that best explains the failure.
pub fn failure(cmd: &Cmd, code: Option<i32>, stderr: &str, stdout: &str) -> String {
    let what = match cmd.args.first() {
        Some(sub) if !sub.starts_with('-') => format!("{} {}", cmd.program, sub),
        _ => cmd.program.clone(),
    };
    let status = match code {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".to_string(),
    };
    match last_error_line(stderr).or_else(|| last_error_line(stdout)) {
        Some(line) => format!("`{what}` failed ({status}): {line}"),
        None => format!("`{what}` failed ({status})"),
    }
}

/// Causes that a summary line (`Error: 3 errors occurred:`) can hide, named first when present.
const ROOT_CAUSES: &[&str] = &[
    "no space left on device",
    "disk quota exceeded",
    "read-only file system",
    "permission denied",
];

fn last_error_line(text: &str) -> Option<&str> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("* ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(cause) = lines.iter().rev().find(|l| {
        let l = l.to_ascii_lowercase();
        ROOT_CAUSES.iter().any(|c| l.contains(c))
    }) {
        return Some(cause);
    }
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error") || l.starts_with("error") || l.starts_with("fatal"))
        .or(lines.last())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_best_line() {
        let cmd = Cmd::new("podman").args(["build", "-f", "x"]);
        let stderr = "STEP 1/2: FROM scratch\nError: building at STEP \"COPY a /a\": no such file\nlater noise";
        assert_eq!(
            failure(&cmd, Some(125), stderr, ""),
            "`podman build` failed (exit 125): Error: building at STEP \"COPY a /a\": no such file"
        );
        assert_eq!(
            failure(&cmd, None, "", ""),
            "`podman build` failed (killed by a signal)"
        );
        assert_eq!(
            failure(&Cmd::new("git").arg("--x"), Some(1), "boom", ""),
            "`git` failed (exit 1): boom"
        );
        // A summary line does not hide a full disk.
        let stderr = "Error: 3 errors occurred:\n\t* writing blob: write /var/tmp/x: no space left on device\n\t* other\n\t* more\n";
        assert_eq!(
            failure(&Cmd::new("podman").arg("push"), Some(125), stderr, ""),
            "`podman push` failed (exit 125): writing blob: write /var/tmp/x: no space left on device"
        );
        assert!(!crate::publish::retryable(stderr));
    }
}
