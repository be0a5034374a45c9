//! Smoke tests: what `[[image.smoke]]` and `[image.expect]` ask of an image, checked for
//! mistakes when the config is read so a bad regex is a config error (exit 2), not a failed test.

pub mod check;
pub mod plan;
pub mod report;
pub mod run;
pub mod tar;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One image's suite, in config order.
#[derive(Debug, Default)]
pub struct Suite {
    pub tests: Vec<Test>,
    pub expect: Expect,
}

#[derive(Debug)]
pub struct Test {
    pub name: String,
    pub timeout: Duration,
    pub kind: Kind,
}

#[derive(Debug)]
pub enum Kind {
    /// A fresh container that runs to completion.
    Command(Run, Streams),
    /// A file read from the image; no process runs.
    File(FileCheck),
    /// A detached container that must become ready.
    Service(Run, Wait),
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Command(..) => "command",
            Kind::File(_) => "file",
            Kind::Service(..) => "service",
        }
    }

    /// How the container is started; None for a file test, which starts none.
    pub fn run(&self) -> Option<&Run> {
        match self {
            Kind::Command(run, _) | Kind::Service(run, _) => Some(run),
            Kind::File(_) => None,
        }
    }
}

/// How a container is started.
#[derive(Debug, Default)]
pub struct Run {
    /// None: the image's CMD.
    pub command: Option<Vec<String>>,
    /// None: the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Host variables passed through; their values are secrets.
    pub pass_env: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Streams {
    pub exit: i32,
    pub expect_stdout: Vec<Regex>,
    pub reject_stdout: Vec<Regex>,
    pub expect_stderr: Vec<Regex>,
    pub reject_stderr: Vec<Regex>,
}

#[derive(Debug)]
pub struct FileCheck {
    pub path: String,
    pub exists: bool,
    /// `ls -l` style, e.g. `-rwxr-xr-x`.
    pub mode: Option<String>,
    pub contains: Vec<Regex>,
}

#[derive(Debug)]
pub enum Wait {
    Port(u16),
    Http {
        path: String,
        port: u16,
        status: u16,
    },
    Log(Regex),
}

impl Wait {
    /// The container port to publish, when readiness is checked through one.
    pub fn port(&self) -> Option<u16> {
        match self {
            Wait::Port(p) | Wait::Http { port: p, .. } => Some(*p),
            Wait::Log(_) => None,
        }
    }
}

/// `[image.expect]`: the image's metadata.
#[derive(Debug, Default)]
pub struct Expect {
    pub labels: BTreeMap<String, Want>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, Want>,
    pub exposed_ports: Option<Vec<String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.env.is_empty()
            && self.entrypoint.is_none()
            && self.cmd.is_none()
            && self.exposed_ports.is_none()
            && self.user.is_none()
            && self.workdir.is_none()
    }
}

/// An exact value, or `re:REGEX`.
#[derive(Debug)]
pub enum Want {
    Exact(String),
    Re(Regex),
}

impl Want {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Want::Exact(e) => e == value,
            Want::Re(r) => r.is_match(value),
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Exact(e) => write!(f, "`{e}`"),
            Want::Re(r) => write!(f, "a match for `{}`", r.as_str()),
        }
    }
}

type Strings = Vec<Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    name: Spanned<String>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pass_env: Strings,
    expect_exit: Option<Spanned<i32>>,
    #[serde(default)]
    expect_stdout: Strings,
    #[serde(default)]
    reject_stdout: Strings,
    #[serde(default)]
    expect_stderr: Strings,
    #[serde(default)]
    reject_stderr: Strings,
    timeout: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    exists: Option<bool>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    contains: Strings,
    service: Option<Spanned<bool>>,
    wait_for: Option<Spanned<RawWait>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWait {
    http: Option<String>,
    port: Option<u16>,
    status: Option<u16>,
    log: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    exposed_ports: Option<Vec<Spanned<String>>>,
    user: Option<String>,
    workdir: Option<String>,
}

/// A config mistake at a byte range of the file.
pub type Mistake = (Range<usize>, String);

pub fn parse_suite(tests: Vec<RawTest>, expect: Option<RawExpect>) -> Result<Suite, Mistake> {
    let mut suite = Suite::default();
    for raw in tests {
        let t = parse_test(raw)?;
        suite.tests.push(t);
    }
    if let Some(e) = expect {
        suite.expect = parse_expect(e)?;
    }
    Ok(suite)
}

fn regexes(test: &str, key: &str, list: Strings) -> Result<Vec<Regex>, Mistake> {
    list.into_iter()
        .map(|s| regex(test, key, &s))
        .collect::<Result<_, _>>()
}

/// Output is matched line-wise: `^` and `$` match at every line's start and end, so
/// `^ok$` means "a line that is exactly ok".
fn lines_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).multi_line(true).build()
}

fn regex(test: &str, key: &str, s: &Spanned<String>) -> Result<Regex, Mistake> {
    lines_regex(s.get_ref()).map_err(|e| {
        let why = e.to_string();
        let why = why.lines().last().unwrap_or("invalid").trim();
        (
            s.span(),
            format!(
                "smoke test `{test}`: `{key}` regex `{}` is invalid ({why})",
                s.get_ref()
            ),
        )
    })
}

fn parse_test(raw: RawTest) -> Result<Test, Mistake> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if name.trim().is_empty() {
        return Err((name_span, "a smoke test needs a non-empty `name`".into()));
    }
    let timeout = match &raw.timeout {
        Some(t) => duration(t.get_ref())
            .map_err(|e| (t.span(), format!("smoke test `{name}`: `timeout` {e}")))?,
        None => DEFAULT_TIMEOUT,
    };
    let is_service = raw.service.as_ref().is_some_and(|s| *s.get_ref());
    // Keys that make sense for one kind only are refused elsewhere, so a typo'd kind is loud.
    let misplaced = |present: &[(&str, bool)], kind: &str| -> Result<(), Mistake> {
        match present.iter().find(|(_, p)| *p) {
            Some((key, _)) => Err((
                name_span.clone(),
                format!("smoke test `{name}` is a {kind} test; `{key}` does not apply to it"),
            )),
            None => Ok(()),
        }
    };
    let file_keys = [
        ("file", raw.file.is_some()),
        ("exists", raw.exists.is_some()),
        ("mode", raw.mode.is_some()),
        ("contains", !raw.contains.is_empty()),
    ];
    let run_keys = [
        ("command", raw.command.is_some()),
        ("entrypoint", raw.entrypoint.is_some()),
        ("env", !raw.env.is_empty()),
        ("pass_env", !raw.pass_env.is_empty()),
        ("service", raw.service.is_some()),
    ];
    let stream_keys = [
        ("expect_exit", raw.expect_exit.is_some()),
        ("expect_stdout", !raw.expect_stdout.is_empty()),
        ("reject_stdout", !raw.reject_stdout.is_empty()),
        ("expect_stderr", !raw.expect_stderr.is_empty()),
        ("reject_stderr", !raw.reject_stderr.is_empty()),
    ];
    let kind = if let Some(file) = raw.file {
        misplaced(&run_keys, "file")?;
        misplaced(&stream_keys, "file")?;
        misplaced(&[("wait_for", raw.wait_for.is_some())], "file")?;
        let path = file.get_ref().clone();
        if !path.starts_with('/') {
            return Err((
                file.span(),
                format!("smoke test `{name}`: `file` must be an absolute path in the image, like `/app/manage.py`"),
            ));
        }
        let mode = match raw.mode {
            Some(m) if !valid_mode(m.get_ref()) => {
                return Err((
                    m.span(),
                    format!(
                        "smoke test `{name}`: `mode` `{}` is not like `-rw-r--r--` (type, then rwx for owner, group, others)",
                        m.get_ref()
                    ),
                ))
            }
            m => m.map(Spanned::into_inner),
        };
        Kind::File(FileCheck {
            path,
            exists: raw.exists.unwrap_or(true),
            mode,
            contains: regexes(&name, "contains", raw.contains)?,
        })
    } else {
        misplaced(&file_keys, if is_service { "service" } else { "command" })?;
        let run = Run {
            command: raw.command,
            entrypoint: raw.entrypoint,
            env: raw.env,
            pass_env: raw
                .pass_env
                .into_iter()
                .map(|v| {
                    let ok = !v.get_ref().is_empty()
                        && v.get_ref()
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if ok {
                        Ok(v.into_inner())
                    } else {
                        Err((
                            v.span(),
                            format!(
                                "smoke test `{name}`: `pass_env` entry `{}` is not a variable name",
                                v.get_ref()
                            ),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        if is_service {
            misplaced(&stream_keys, "service")?;
            let Some(w) = raw.wait_for else {
                return Err((
                    name_span,
                    format!("service test `{name}` needs `wait_for`: {{ port = N }}, {{ http = \"/path\", port = N }} or {{ log = \"regex\" }}"),
                ));
            };
            Kind::Service(run, wait(&name, w)?)
        } else {
            misplaced(&[("wait_for", raw.wait_for.is_some())], "command")?;
            let streams = Streams {
                exit: raw.expect_exit.map_or(0, Spanned::into_inner),
                expect_stdout: regexes(&name, "expect_stdout", raw.expect_stdout)?,
                reject_stdout: regexes(&name, "reject_stdout", raw.reject_stdout)?,
                expect_stderr: regexes(&name, "expect_stderr", raw.expect_stderr)?,
                reject_stderr: regexes(&name, "reject_stderr", raw.reject_stderr)?,
            };
            Kind::Command(run, streams)
        }
    };
    Ok(Test {
        name,
        timeout,
        kind,
    })
}

fn wait(name: &str, w: Spanned<RawWait>) -> Result<Wait, Mistake> {
    let span = w.span();
    let w = w.into_inner();
    let fail = |msg: &str| {
        (
            span.clone(),
            format!("smoke test `{name}`: `wait_for` {msg}"),
        )
    };
    match (w.http, w.port, w.status, w.log) {
        (Some(path), Some(port), status, None) => {
            if !path.starts_with('/') {
                return Err(fail("`http` must be a path starting with `/`"));
            }
            Ok(Wait::Http {
                path,
                port,
                status: status.unwrap_or(200),
            })
        }
        (Some(_), None, _, None) => Err(fail("`http` needs the container's `port`")),
        (None, Some(port), None, None) => Ok(Wait::Port(port)),
        (None, None, None, Some(log)) => lines_regex(&log)
            .map(Wait::Log)
            .map_err(|_| fail(&format!("`log` regex `{log}` is invalid"))),
        _ => Err(fail(
            "takes one of { port = N }, { http = \"/path\", port = N, status = 200 } or { log = \"regex\" }",
        )),
    }
}

fn parse_expect(raw: RawExpect) -> Result<Expect, Mistake> {
    let want = |key: &str, name: &str, v: Spanned<String>| -> Result<Want, Mistake> {
        match v.get_ref().strip_prefix("re:") {
            Some(re) => Regex::new(re).map(Want::Re).map_err(|_| {
                (
                    v.span(),
                    format!("[image.expect] {key} `{name}`: regex `{re}` is invalid"),
                )
            }),
            None => Ok(Want::Exact(v.into_inner())),
        }
    };
    let mut e = Expect {
        entrypoint: raw.entrypoint,
        cmd: raw.cmd,
        user: raw.user,
        workdir: raw.workdir,
        ..Expect::default()
    };
    for (k, v) in raw.labels {
        let w = want("label", &k, v)?;
        e.labels.insert(k, w);
    }
    for (k, v) in raw.env {
        let w = want("env", &k, v)?;
        e.env.insert(k, w);
    }
    if let Some(ports) = raw.exposed_ports {
        let mut out = Vec::new();
        for p in ports {
            let text = p.get_ref();
            let normal = if text.contains('/') {
                text.clone()
            } else {
                format!("{text}/tcp")
            };
            let ok = normal.split_once('/').is_some_and(|(n, proto)| {
                n.parse::<u16>().is_ok() && ["tcp", "udp", "sctp"].contains(&proto)
            });
            if !ok {
                return Err((
                    p.span(),
                    format!("[image.expect] exposed port `{text}` is not like `8000/tcp`"),
                ));
            }
            out.push(normal);
        }
        e.exposed_ports = Some(out);
    }
    Ok(e)
}

/// `60s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like `60s`, `500ms` or `2m`"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(format!(
                "`{text}` has an unknown unit `{u}`; use ms, s, m or h"
            ))
        }
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("`{text}` must be more than zero"));
    }
    // A day bounds every wait a smoke test can sensibly ask for (and keeps deadlines far
    // from overflowing).
    if secs > 86_400.0 {
        return Err(format!(
            "`{text}` is more than a day (24h); a smoke test waits less"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn valid_mode(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 10
        && b"-dlcbps".contains(&b[0])
        && b[1..].chunks(3).all(|c| {
            (c[0] == b'r' || c[0] == b'-')
                && (c[1] == b'w' || c[1] == b'-')
                && b"xsStT-".contains(&c[2])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(duration("99999999999999999999s")
            .unwrap_err()
            .contains("more than a day"));
        assert!(duration("0s").is_err());
        assert!(duration("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(duration("soon").is_err());
    }

    #[test]
    fn modes() {
        assert!(valid_mode("-rw-r--r--"));
        assert!(valid_mode("drwxr-xr-x"));
        assert!(valid_mode("-rwsr-xr-x"));
        assert!(!valid_mode("rw-r--r--"));
        assert!(!valid_mode("-rw-r--r-q"));
    }
}
