//! One publish at a time per destination repository on this machine. Two CI jobs on one runner
//! releasing the same image would otherwise both read the registry, both decide, and race on
//! every tag; the second now waits (saying for whom) until the first is done, then reads what
//! the first published. Across machines the registry itself is the referee (`push::publish`
//! re-reads each tag right before moving it).
//!
//! An advisory lock (`flock`) on a file named after the destination: the kernel releases it
//! when the holder ends, SIGKILL included, so a killed release never leaves a stale lock.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use sha2::Digest;

/// How long a publish waits for another to the same destination, unless
/// `XTASK_LOCK_TIMEOUT` (seconds) says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

/// Held while publishing; the lock goes with the file when dropped.
pub struct Held {
    _file: File,
}

fn dir() -> PathBuf {
    let uid = crate::fsx::own_uid().unwrap_or(0);
    std::env::temp_dir().join(format!("xtask-locks-{uid}"))
}

fn path(destination: &str) -> PathBuf {
    let hash = sha2::Sha256::digest(destination.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    dir().join(format!("{hex}.lock"))
}

pub fn wait_limit() -> Duration {
    std::env::var("XTASK_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(DEFAULT_WAIT, Duration::from_secs)
}

/// Takes the lock of `destination` (`Dest::describe`), waiting up to `limit` for its holder.
pub fn acquire(destination: &str, what: &str, limit: Duration) -> Result<Held> {
    let p = path(destination);
    let mut file = crate::fsx::lock_file(&p)?;
    let start = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if start.elapsed() >= limit {
                    return Err(anyhow::anyhow!(
                        "another publish to {destination} ({holder}) has held it for {}s; wait for it to end, or raise XTASK_LOCK_TIMEOUT (seconds)",
                        start.elapsed().as_secs()
                    ));
                }
                if !said {
                    eprintln!(
                        "waiting for another publish to {destination} ({holder}) to end (at most {}s, XTASK_LOCK_TIMEOUT)",
                        limit.as_secs()
                    );
                    said = true;
                }
                // Polling: flock has no timed wait, and a blocking one could not be given up.
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(TryLockError::Error(e)) => {
                return Err(anyhow::anyhow!("locking `{}`: {e}", p.display()));
            }
        }
    }
    // Who holds it, for the message another run prints while it waits.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "pid {}: {what}", std::process::id());
    Ok(Held { _file: file })
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    if s.trim().is_empty() {
        "starting".into()
    } else {
        s.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up_naming_the_first() {
        let dest = format!("127.0.0.1:1/lock-test-{}", std::process::id());
        let first = acquire(&dest, "release 1.0.0", Duration::ZERO).unwrap();
        let err = acquire(&dest, "release 2.0.0", Duration::ZERO)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("release 1.0.0"), "{err}");
        assert!(err.contains("XTASK_LOCK_TIMEOUT"), "{err}");
        drop(first);
        let again = acquire(&dest, "release 2.0.0", Duration::ZERO);
        assert!(again.is_ok());
        drop(again);
        let _ = std::fs::remove_file(path(&dest));
    }
}
