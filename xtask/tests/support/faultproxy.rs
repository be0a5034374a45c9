//! A fault-injecting HTTP proxy on 127.0.0.1 in front of a test registry. Each request gets
//! its own connection (the proxy asks both sides for `Connection: close`), so every request
//! passes the rules: the first rule matching a request's method and path, while it has uses
//! left, answers it with an error status, resets the connection, or stalls it (reads what the
//! client sends, answers nothing) until the client gives up or the stall's bound passes.
//! Everything it saw is logged, and a watcher can wait for a request to arrive, so tests
//! synchronise on what the registry is asked rather than on time.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest a stall holds a connection, and a proxy lives: bounds for a broken test.
const STALL_BOUND: Duration = Duration::from_secs(120);
const MAX_CONNECTIONS: usize = 5000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Status(u16),
    Reset,
    Stall,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    /// A substring of the path (`/blobs/uploads/`, `/manifests/`).
    pub path: &'static str,
    pub fault: Fault,
    pub uses: usize,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&shared), Arc::clone(&stop));
        thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                if st.load(Ordering::SeqCst) || n >= MAX_CONNECTIONS {
                    break;
                }
                let Ok(client) = conn else { continue };
                let s = Arc::clone(&s);
                thread::spawn(move || serve(client, upstream, &s));
            }
        });
        Proxy { port, shared, stop }
    }

    pub fn add(&self, rule: Rule) {
        self.shared.0.lock().unwrap().rules.push(rule);
    }

    pub fn clear(&self) {
        self.shared.0.lock().unwrap().rules.clear();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.0.lock().unwrap().seen.clone()
    }

    /// Waits until `n` requests matching `method` and `path` have arrived (at most `limit`);
    /// whether they did.
    pub fn wait_for(&self, method: &str, path: &str, n: usize, limit: Duration) -> bool {
        let (lock, cv) = &*self.shared;
        let start = Instant::now();
        let mut g = lock.lock().unwrap();
        loop {
            let count = g
                .seen
                .iter()
                .filter(|s| (method.is_empty() || s.method == method) && s.path.contains(path))
                .count();
            if count >= n {
                return true;
            }
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }
}

impl Proxy {
    /// Waits until `n` requests of any kind have arrived (at most `limit`); whether they did.
    pub fn wait_for_requests(&self, n: usize, limit: Duration) -> bool {
        self.wait_for("", "", n, limit)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut client: TcpStream, upstream: u16, shared: &(Mutex<Shared>, Condvar)) {
    let _ = client.set_read_timeout(Some(STALL_BOUND));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // The request head; anything else (a TLS hello probing for HTTPS) passes untouched.
    let head_end = loop {
        let Ok(n) = client.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !buf[0].is_ascii_uppercase() {
            break None;
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let Some(head_end) = head_end else {
        let _ = up.write_all(&buf);
        pipe(client, up);
        return;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let fault = {
        let (lock, cv) = shared;
        let mut g = lock.lock().unwrap();
        let fault = g
            .rules
            .iter_mut()
            .find(|r| r.uses > 0 && r.method == method && path.contains(r.path))
            .map(|r| {
                r.uses -= 1;
                r.fault.clone()
            });
        g.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            fault: fault.clone(),
        });
        cv.notify_all();
        fault
    };
    match fault {
        Some(Fault::Status(code)) => {
            let body = format!(
                "{{\"errors\":[{{\"code\":\"{}\",\"message\":\"injected {code}\"}}]}}",
                if code == 401 {
                    "UNAUTHORIZED"
                } else {
                    "UNKNOWN"
                }
            );
            let auth = if code == 401 {
                "WWW-Authenticate: Basic realm=\"xtask\"\r\n"
            } else {
                ""
            };
            let _ = write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.shutdown(Shutdown::Write);
            // Reads what the client still sends, so closing does not turn into a reset.
            let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
            while matches!(client.read(&mut chunk), Ok(n) if n > 0) {}
        }
        Some(Fault::Reset) => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall) => {
            let start = Instant::now();
            while start.elapsed() < STALL_BOUND {
                match client.read(&mut chunk) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        None => {
            let mut out: Vec<u8> = Vec::new();
            for line in head[..head.len() - 4].split("\r\n") {
                if !line.to_ascii_lowercase().starts_with("connection:") {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"Connection: close\r\n\r\n");
            out.extend_from_slice(&buf[head_end..]);
            if up.write_all(&out).is_ok() {
                pipe(client, up);
            }
        }
    }
}

/// Copies both ways until either side is done.
fn pipe(client: TcpStream, up: TcpStream) {
    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    let (mut c1, mut u1) = (client, up);
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut u1, &mut c1);
    let _ = c1.shutdown(Shutdown::Write);
    let _ = t.join();
}
