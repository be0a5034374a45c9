//! The fault-injection hook the reliability tests drive (and anyone can, to see what a killed
//! release leaves): with `XTASK_FAULT_LOG=FILE`, every step boundary is appended to FILE as it
//! passes (`N<TAB>what`): each command that changes something, as it ends (secrets masked as
//! everywhere), and the points between them a release passes (logged in, tests passed, a version
//! verified); with
//! `XTASK_FAULT_KILL_AFTER_STEP=N` as well, the process kills itself with SIGKILL right after
//! the Nth, as a CI runner's timeout or an out-of-memory kill would: no cleanup, no unwinding.
//! Unset (always, outside tests), it costs one environment read.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct Hook {
    log: std::path::PathBuf,
    kill_after: Option<usize>,
}

fn hook() -> Option<&'static Hook> {
    static HOOK: OnceLock<Option<Hook>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let log = std::env::var_os("XTASK_FAULT_LOG").filter(|v| !v.is_empty())?;
        Some(Hook {
            log: log.into(),
            kill_after: std::env::var("XTASK_FAULT_KILL_AFTER_STEP")
                .ok()
                .and_then(|n| n.trim().parse().ok()),
        })
    })
    .as_ref()
}

/// A step boundary: a mutating command has ended (whatever its outcome), or a release passed
/// one of its stages.
pub fn boundary(what: impl std::fmt::Display) {
    let Some(h) = hook() else { return };
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&h.log)
    {
        let _ = writeln!(f, "{n}\t{what}");
    }
    if h.kill_after == Some(n) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        // SIGKILL cannot be caught; this only waits for it to land.
        loop {
            std::thread::park();
        }
    }
}
