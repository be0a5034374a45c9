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
    match code(word).filter(|_| colored(stream)) {
        Some(c) => format!("\x1b[{c}m{word}\x1b[0m"),
        None => word.to_string(),
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

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| width(s))
                .max()
                .unwrap_or(0)
        })
        .collect();
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
pub fn headed(header: &[&str], rows: Vec<Vec<String>>, stream: Stream) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![header.iter().map(|h| bold(h, stream)).collect::<Vec<_>>()];
    all.extend(rows);
    table(&all)
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
    fn status_words_mean_their_colour() {
        assert_eq!(super::code("ok"), Some("32"));
        assert_eq!(super::code("FAILED"), Some("31"));
        assert_eq!(super::code("held back"), Some("33"));
        assert_eq!(super::code("up to date"), Some("32"));
        assert_eq!(super::code("layers"), None);
    }
}
