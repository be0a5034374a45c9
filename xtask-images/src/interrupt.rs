//! Ctrl-C, or SIGINT/SIGTERM sent to this process alone, stops the command the same way: the
//! running engine command is interrupted and waited for, the cleanups registered so far run
//! (smoke-test containers, the working containers of an interrupted build), and the process
//! exits 130. Installed at start, so a SIGINT ignored by the parent shell (background jobs of a
//! non-interactive shell inherit it ignored) is handled all the same. A Docker client creating a
//! container is the exception: the daemon finishes the request whatever happens to the client,
//! so it is left to finish and the cleanups run before and after it.

use std::sync::Mutex;

type Cleanup = Box<dyn Fn() + Send>;

/// Each running command's pid, and whether it is left to finish (see [`Running::new`]).
static RUNNING: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether an interrupt arrived: work not yet started must not start.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// An interrupt is being handled: the handler ends the process (130) once it has cleaned up,
/// so the command's own error (its engine command was stopped) must not end it first.
pub fn wait_if_interrupted() {
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}
static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());

/// Installs the handler; a second call (an embedding program's own) is left alone.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // Taken first: once the engine command stops, the command unwinds and its guards
        // would unregister the very cleanups this interrupt needs.
        let cleanups: Vec<(u64, Cleanup)> = CLEANUPS
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        let running: Vec<(u32, bool)> = RUNNING.lock().map(|p| p.clone()).unwrap_or_default();
        for (pid, _) in running.iter().filter(|(_, settling)| !settling) {
            signal("-INT", *pid);
        }
        let cleanup = || {
            for (_, c) in cleanups.iter().rev() {
                c();
            }
        };
        // A settling client ends once the cleanups removed its container, or once the
        // container it asked for exists; the second round removes that one.
        if running.iter().any(|(_, settling)| *settling) {
            cleanup();
        }
        for (pid, _) in &running {
            // A `podman run` passes the signal to its container, which may ignore it: the
            // cleanups below remove such containers by force, so stop waiting before long.
            if !wait_gone(*pid, 50) {
                signal("-KILL", *pid);
                wait_gone(*pid, 50);
            }
        }
        cleanup();
        eprintln!("interrupted");
        std::process::exit(130);
    });
}

fn signal(which: &str, pid: u32) {
    // The engine cleans up after SIGINT as after a Ctrl-C in a terminal.
    let _ = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
}

/// Stops one running command as an interrupt would (SIGINT, then SIGKILL after 5 s): for a
/// command that ran past its time limit.
pub fn stop(pid: u32) {
    signal("-INT", pid);
    if !wait_gone(pid, 50) {
        signal("-KILL", pid);
    }
}

/// Waits (at most `tenths` tenths of a second) for a process to end, by polling `/proc`: it is
/// the child of another thread, which reaps it. Whether it ended.
fn wait_gone(pid: u32, tenths: u32) -> bool {
    let path = std::path::PathBuf::from(format!("/proc/{pid}"));
    for _ in 0..tenths {
        let alive = std::fs::read_to_string(path.join("stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"));
        if !alive {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// Marks a child process as the running command (interrupted first) until the guard drops.
pub struct Running(u32);

impl Running {
    /// `settling`: a client whose request a daemon carries out even if the client dies
    /// (`docker create`/`run`). Interrupting it mid-request would leave a container that
    /// appears after the cleanups looked, so it is not signalled: the cleanups run around it.
    /// Such a client runs in its own process group, out of reach of a terminal's Ctrl-C.
    pub fn new(pid: u32, settling: bool) -> Running {
        if let Ok(mut p) = RUNNING.lock() {
            p.push((pid, settling));
        }
        Running(pid)
    }
}

/// Whether `cmd` is a request a daemon completes whatever happens to the client: a Docker
/// container being created (`create`, `run`).
pub fn settles(cmd: &crate::cmd::Cmd) -> bool {
    std::path::Path::new(&cmd.program)
        .file_name()
        .is_some_and(|n| n == "docker")
        && cmd
            .args
            .first()
            .is_some_and(|a| a == "create" || a == "run")
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut p) = RUNNING.lock() {
            p.retain(|(x, _)| *x != self.0);
        }
    }
}

/// A cleanup to run on interrupt until the guard drops.
pub struct OnInterrupt(u64);

pub fn on_interrupt(f: impl Fn() + Send + 'static) -> OnInterrupt {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut c) = CLEANUPS.lock() {
        c.push((id, Box::new(f)));
    }
    OnInterrupt(id)
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        if let Ok(mut c) = CLEANUPS.lock() {
            c.retain(|(id, _)| *id != self.0);
        }
    }
}
