//! Human output: short, aligned, and coloured where a person reads it. Status words carry the
//! colour (green done, red failed, yellow held back or skipped), never whole lines; colour is on
//! only when the stream is a terminal, unless `--color always`/`CLICOLOR_FORCE` say otherwise,
//! and never with `--color never` or `NO_COLOR` (no-color.org, bixense.com/clicolors).

use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Where a piece of output goes: colour is decided per stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

static COLOR: OnceLock<(bool, bool)> = OnceLock::new();

/// Decides colour for stdout and stderr once, from the flag and the environment.
pub fn init(choice: ColorChoice) {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let decide = |tty: bool| match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if env("NO_COLOR").is_some() {
                false
            } else if env("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else {
                tty && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        }
    };
    let _ = COLOR.set((
        decide(std::io::stdout().is_terminal()),
        decide(std::io::stderr().is_terminal()),
    ));
}

/// `--color` as given in `args` (the last one wins, as clap decides), read before clap parses
/// them so its help and errors follow it too.
pub fn color_flag(args: &[std::ffi::OsString]) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let value = match a.strip_prefix("--color") {
            Some("") => it.next(),
            Some(v) => v.strip_prefix('='),
            None => None,
        };
        choice = match value {
            Some("always") => ColorChoice::Always,
            Some("never") => ColorChoice::Never,
            Some("auto") => ColorChoice::Auto,
            _ => choice,
        };
    }
    choice
}

/// clap's plain help or usage error, styled as clap's `color` feature would: section headers
/// bold and underlined, commands and flags bold, `error:` red, a bad value yellow.
pub fn style_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut listing = false;
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if let Some(rest) = body.strip_prefix("error:") {
            out.push_str("\x1b[1;31merror:\x1b[0m");
            out.push_str(&quote_yellow(rest));
        } else if let Some(rest) = body.strip_prefix("tip:") {
            out.push_str("\x1b[1;32mtip:\x1b[0m");
            out.push_str(&quote_yellow(rest));
        } else if let Some(head) = ["Usage:", "Commands:", "Options:", "Arguments:"]
            .into_iter()
            .find(|h| body.starts_with(h))
        {
            let rest = &body[head.len()..];
            listing = rest.trim().is_empty();
            out.push_str(&format!("\x1b[1;4m{head}\x1b[0m"));
            match rest.strip_prefix(' ') {
                // `Usage: cargo xtask [OPTIONS] <COMMAND>`: the program's name is a literal.
                Some(usage) if !usage.is_empty() => {
                    let (name, args) = usage
                        .find(" [")
                        .or_else(|| usage.find(" <"))
                        .map_or((usage, ""), |i| usage.split_at(i));
                    out.push_str(&format!(" \x1b[1m{name}\x1b[0m{args}"));
                }
                _ => out.push_str(rest),
            }
        } else if listing && is_item(body) {
            // `  -C, --project-dir <DIR>  Act on …`, `      --json  …` and `  build     Build …`:
            // the name is bold.
            let item = body.trim_start();
            out.push_str(&body[..body.len() - item.len()]);
            let name_end = item.find("  ").unwrap_or(item.len());
            let (name, help) = item.split_at(name_end);
            let name_only = name.find(" <").map_or(name, |i| &name[..i]);
            out.push_str(&format!(
                "\x1b[1m{name_only}\x1b[0m{}{help}",
                &name[name_only.len()..]
            ));
        } else {
            if body.is_empty() {
                listing = false;
            }
            out.push_str(body);
        }
        out.push_str(end);
    }
    out
}

/// A line naming a command (indented by two) or a flag (by two or six) in a help listing;
/// long help's descriptions are indented further.
fn is_item(line: &str) -> bool {
    let item = line.trim_start();
    match line.len() - item.len() {
        2 => !item.is_empty(),
        6 => item.starts_with("--"),
        _ => false,
    }
}

/// `'--bogus'` in an error, yellow as clap marks the invalid part.
fn quote_yellow(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('\'').enumerate() {
        if i > 0 {
            out.push('\'');
        }
        if i % 2 == 1 && text.matches('\'').count().is_multiple_of(2) {
            out.push_str(&format!("\x1b[33m{part}\x1b[0m"));
        } else {
            out.push_str(part);
        }
    }
    out
}

pub fn colored(stream: Stream) -> bool {
    let (out, err) = COLOR.get().copied().unwrap_or((false, false));
    match stream {
        Stream::Out => out,
        Stream::Err => err,
    }
}

/// Whether a person watches stderr: live progress lines go there only then.
pub fn live() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Whether a status line is drawn at the bottom of stderr now (it has no newline yet).
static DRAWN: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// Prints a line to stderr, first wiping a status line drawn there.
pub fn err_line(line: &str) {
    use std::io::Write;
    let mut err = wipe();
    let _ = writeln!(err, "{line}");
}

/// Wipes the status line if one is drawn; stderr stays locked (and no other line is drawn)
/// while the returned guard lives.
fn wipe() -> std::io::StderrLock<'static> {
    use std::io::Write;
    let mut drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    if *drawn {
        let _ = write!(err, "\r\x1b[K");
        *drawn = false;
    }
    err
}

/// While a slow command runs, a status line under its output on a terminal: what runs and for
/// how long, redrawn each second and wiped when it ends (cargo's "Building" line). Nothing
/// when piped or under CI, where carriage-return animation only garbles logs.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(what: &str) -> Ticker {
        if !live() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        // A wrapped status line cannot be wiped with `\r`: it must fit on one row.
        let what = shorten(what, columns(Stream::Err).unwrap_or(80).saturating_sub(16));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let start = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            use std::sync::mpsc::RecvTimeoutError;
            // A quick command never shows one: the first draw is after two seconds.
            let mut wait = std::time::Duration::from_secs(2);
            while stopped.recv_timeout(wait) == Err(RecvTimeoutError::Timeout) {
                let mut drawn = DRAWN.lock().unwrap_or_else(|e| e.into_inner());
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[K{} {what}  {}s",
                    paint("running", "build", Stream::Err),
                    start.elapsed().as_secs()
                );
                let _ = err.flush();
                *drawn = true;
                wait = std::time::Duration::from_secs(1);
            }
            drop(wipe());
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The colour a status word means.
fn code(word: &str) -> Option<&'static str> {
    let w = word.to_ascii_lowercase();
    let red = [
        "failed",
        "refused",
        "overwritten",
        "error",
        "invalid",
        "not signed",
        "signed by another",
    ];
    let yellow = [
        "held back",
        "not run",
        "skipped",
        "build",
        "warning",
        "stale",
        "waived",
    ];
    let green = [
        "ok",
        "pass",
        "cached",
        "up to date",
        "up-to-date",
        "built",
        "pushed",
        "moved",
        "already there",
        "signed by",
        "retag",
    ];
    if red.iter().any(|r| w.starts_with(r)) {
        Some("31")
    } else if yellow.iter().any(|y| w.starts_with(y)) {
        Some("33")
    } else if green.iter().any(|g| w.starts_with(g)) {
        Some("32")
    } else {
        None
    }
}

/// A status word, coloured for `stream` when colour is on there.
pub fn status(word: &str, stream: Stream) -> String {
    paint(word, word, stream)
}

/// `text` in the colour that the status word `like` carries (a count of errors in red).
pub fn paint(text: &str, like: &str, stream: Stream) -> String {
    match code(like).filter(|_| colored(stream)) {
        Some(c) => format!("\x1b[{c}m{text}\x1b[0m"),
        None => text.to_string(),
    }
}

/// Bold, for a table's header row.
fn bold(text: &str, stream: Stream) -> String {
    if colored(stream) && !text.is_empty() {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// What a cell takes on screen: its characters without colour codes.
fn width(s: &str) -> usize {
    let mut n = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// Each column's width on screen: its widest cell.
fn widths(rows: &[Vec<String>]) -> Vec<usize> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| width(s))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let widths = widths(rows);
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - width(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// [`table`] under a header row (bold where colour is on), for `stream`. Empty without rows.
/// On a terminal narrower than the table, the widest column's long cells (paths, tag lists)
/// are shortened in the middle so no row wraps; piped output keeps every character.
pub fn headed(header: &[&str], rows: Vec<Vec<String>>, stream: Stream) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![header.iter().map(|h| bold(h, stream)).collect::<Vec<_>>()];
    all.extend(rows);
    if let Some(cols) = columns(stream) {
        fit(&mut all, cols);
    }
    table(&all)
}

/// Shortens the widest column's cells in the middle until the table fits in `cols` (a column
/// keeps at least 24 characters: a shortened path must still say which file it is).
fn fit(rows: &mut [Vec<String>], cols: usize) {
    let widths = widths(rows);
    let n = widths.len();
    let total = widths.iter().sum::<usize>() + 2 * n.saturating_sub(1);
    let Some((widest, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
        return;
    };
    if total <= cols {
        return;
    }
    let room = w.saturating_sub(total - cols).max(24);
    for row in rows.iter_mut() {
        if let Some(cell) = row.get_mut(widest) {
            *cell = shorten(cell, room);
        }
    }
}

/// `s` in at most `max` characters, its middle replaced by `…`: both ends of a path say the
/// most (where it is, which file). Cells with colour codes are status words, left alone.
pub fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || s.contains('\x1b') || max < 3 {
        return s.to_string();
    }
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    let mut out: String = s.chars().take(head).collect();
    out.push('…');
    out.extend(s.chars().skip(n - tail));
    out
}

/// The terminal's width when `stream` is one: `COLUMNS`, else what `stty size` reads from the
/// terminal; unknown widths leave tables whole.
fn columns(stream: Stream) -> Option<usize> {
    static WIDTH: OnceLock<Option<usize>> = OnceLock::new();
    let tty = match stream {
        Stream::Out => std::io::stdout().is_terminal(),
        Stream::Err => std::io::stderr().is_terminal(),
    };
    if !tty {
        return None;
    }
    *WIDTH.get_or_init(|| {
        if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
            return Some(n);
        }
        let tty = std::fs::File::open("/dev/tty").ok()?;
        let out = std::process::Command::new("stty")
            .arg("size")
            .stdin(tty)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        text.split_whitespace()
            .nth(1)?
            .parse()
            .ok()
            .filter(|n| *n > 0)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns() {
        let rows = vec![
            vec!["a".to_string(), "bb".into(), "c".into()],
            vec!["aaa".into(), "b".into(), "".into()],
        ];
        assert_eq!(super::table(&rows), "a    bb  c\naaa  b\n");
        // Colour codes take no room.
        let rows = vec![
            vec!["\x1b[32mok\x1b[0m".to_string(), "x".into()],
            vec!["FAILED".into(), "y".into()],
        ];
        assert_eq!(super::table(&rows), "\x1b[32mok\x1b[0m      x\nFAILED  y\n");
    }

    #[test]
    fn shortens_in_the_middle_to_fit() {
        assert_eq!(super::shorten("short", 10), "short");
        assert_eq!(
            super::shorten("static/vendor/bootstrap/dist/css/bootstrap.min.css", 24),
            "static/vend…trap.min.css"
        );
        let mut rows = vec![
            vec!["kind".to_string(), "path".into()],
            vec!["file".into(), "a/".repeat(40) + "end.txt"],
        ];
        super::fit(&mut rows, 40);
        let line = super::table(&rows);
        assert!(line.lines().all(|l| l.chars().count() <= 40), "{line}");
        assert!(line.contains("end.txt"), "{line}");
    }

    #[test]
    fn help_styling_only_adds_codes() {
        let help = "Build things\n\nUsage: cargo xtask build [OPTIONS]\n\nOptions:\n  -C, --project-dir <DIR>  Act on DIR\n      --json               JSON\n\nConfiguration: docker/images.toml: see README.\n";
        let styled = super::style_help(help);
        let mut plain = String::new();
        let mut chars = styled.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                chars.by_ref().find(|c| *c == 'm');
            } else {
                plain.push(c);
            }
        }
        assert_eq!(plain, help);
        assert!(styled.contains("\x1b[1m--json\x1b[0m"), "{styled:?}");
        assert!(
            styled.contains("\x1b[1mcargo xtask build\x1b[0m [OPTIONS]"),
            "{styled:?}"
        );
        assert!(styled.ends_with("Configuration: docker/images.toml: see README.\n"));
        let error = super::style_help("error: unexpected argument '--bogus' found\n");
        assert!(error.contains("'\x1b[33m--bogus\x1b[0m'"), "{error:?}");
    }

    #[test]
    fn status_words_mean_their_colour() {
        assert_eq!(super::code("ok"), Some("32"));
        assert_eq!(super::code("FAILED"), Some("31"));
        assert_eq!(super::code("held back"), Some("33"));
        assert_eq!(super::code("up to date"), Some("32"));
        assert_eq!(super::code("layers"), None);
    }
}
