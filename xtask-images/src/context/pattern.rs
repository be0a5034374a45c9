//! One ignore-file pattern, turned into a regex exactly as the engine does it.
//!
//! Podman 4.3 (buildah 1.28, containers/storage `fileutils`) builds a Go regex from the pattern:
//! `*` → `[^/]*`, `**` → `(.*/)?` (or `.*` at the end), `?` → `[^/]`, only `.` and `$` escaped,
//! and `(/.*)?$` appended so a pattern naming a directory covers everything under it. Every other
//! character goes to the regex as is, so `+`, `(`, `)`, `|`, `{…}` and `[…]` keep their *regex*
//! meaning: `a+b` matches `aab`, `[!x]` is a class holding `!` and `x`. Docker (moby/patternmatcher)
//! also escapes `+()|{}`. Go's regex dialect is translated here into the `regex` crate's.

use regex::Regex;

use crate::engine::EngineKind;

/// Why a pattern cannot be used; podman refuses the build with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern(pub String);

/// Checks what Go's `filepath.Match` accepts (podman calls it on every pattern and refuses the
/// build on an error): every `[` closed, no empty class, `-` and `]` escaped inside a class, no
/// trailing `\`.
pub fn check_match_syntax(p: &str) -> Result<(), BadPattern> {
    let b: Vec<char> = p.chars().collect();
    let mut i = 0;
    let bad = |why: &str| Err(BadPattern(why.to_string()));
    while i < b.len() {
        match b[i] {
            '\\' => {
                if i + 1 >= b.len() {
                    return bad("a trailing `\\` escapes nothing");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if b.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    match b.get(i) {
                        Some(']') if ranges > 0 => {
                            i += 1;
                            break;
                        }
                        None => return bad("a `[` is never closed"),
                        Some('-') | Some(']') => return bad(
                            "`-` and `]` must be escaped inside `[…]`, and a class can't be empty",
                        ),
                        _ => {}
                    }
                    i = class_char(&b, i)
                        .ok_or_else(|| BadPattern("a trailing `\\` escapes nothing".into()))?;
                    if b.get(i) == Some(&'-') {
                        i += 1;
                        match b.get(i) {
                            None | Some('-') | Some(']') => {
                                return bad("a range in `[…]` has no end")
                            }
                            _ => {}
                        }
                        i = class_char(&b, i)
                            .ok_or_else(|| BadPattern("a trailing `\\` escapes nothing".into()))?;
                    }
                    ranges += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Index after one (possibly escaped) character of a `filepath.Match` class.
fn class_char(b: &[char], i: usize) -> Option<usize> {
    if b[i] == '\\' {
        (i + 1 < b.len()).then_some(i + 2)
    } else {
        Some(i + 1)
    }
}

/// The regex for a cleaned pattern (no `!`), in the given engine's dialect.
pub fn to_regex(pattern: &str, engine: EngineKind) -> Result<Regex, BadPattern> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                re.push_str(if i == chars.len() { ".*" } else { "(?:.*/)?" });
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '.' | '$' => push_literal(&mut re, ch),
            '+' | '(' | ')' | '|' | '{' | '}' if engine == EngineKind::Docker => {
                push_literal(&mut re, ch)
            }
            '\\' => match chars.get(i) {
                Some(_) => i = go_escape(&chars, i, &mut re)?,
                None if engine == EngineKind::Docker => re.push_str(r"\\"),
                None => return Err(BadPattern("a trailing `\\` escapes nothing".into())),
            },
            '[' => i = go_class(&chars, i, &mut re)?,
            '{' => match go_repeat(&chars, i) {
                Some(end) => {
                    re.extend(&chars[i - 1..end]);
                    i = end;
                }
                None => push_literal(&mut re, '{'),
            },
            '}' => push_literal(&mut re, '}'),
            '(' | ')' | '|' | '+' | '^' => re.push(ch),
            _ => push_literal(&mut re, ch),
        }
    }
    // Podman's regex covers everything below a matched directory; Docker checks each parent
    // path instead, which comes to the same.
    re.push_str("(?:/.*)?$");
    Regex::new(&re).map_err(|e| {
        BadPattern(format!(
            "podman cannot compile it as a regex ({})",
            first_line(&e.to_string())
        ))
    })
}

fn first_line(s: &str) -> &str {
    s.lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or(s.lines().next().unwrap_or(s))
        .trim()
}

fn push_literal(re: &mut String, ch: char) {
    re.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4])));
}

/// `{n}`, `{n,}` or `{n,m}` at `chars[i-1]`: a Go repetition (else `{` is a literal). Returns
/// the index after `}`.
fn go_repeat(chars: &[char], i: usize) -> Option<usize> {
    let close = chars[i..].iter().position(|c| *c == '}')? + i;
    let body: String = chars[i..close].iter().collect();
    let (lo, hi) = body
        .split_once(',')
        .map_or((body.as_str(), None), |(l, h)| (l, Some(h)));
    let num = |s: &str| {
        !s.is_empty()
            && s.len() <= 4
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|n| n <= 1000)
    };
    let ok = num(lo) && hi.is_none_or(|h| h.is_empty() || num(h));
    ok.then_some(close + 1)
}

/// Translates the Go regex escape `\c` at `chars[i]`; returns the index after it.
fn go_escape(chars: &[char], i: usize, re: &mut String) -> Result<usize, BadPattern> {
    let c = chars[i];
    let class = |s: &str, re: &mut String| re.push_str(s);
    match c {
        c if c.is_ascii_punctuation() => push_literal(re, c),
        'a' | 'f' | 't' | 'n' | 'r' | 'v' | 'A' | 'z' => {
            re.push('\\');
            re.push(c);
        }
        // Go's Perl classes are ASCII-only.
        'd' => class("[0-9]", re),
        'D' => class("[^0-9]", re),
        's' => class(r"[\t\n\f\r ]", re),
        'S' => class(r"[^\t\n\f\r ]", re),
        'w' => class("[0-9A-Za-z_]", re),
        'W' => class("[^0-9A-Za-z_]", re),
        'b' => class(r"(?-u:\b)", re),
        'B' => class(r"(?-u:\B)", re),
        'p' | 'P' | 'x' => {
            // `\pL`, `\p{Greek}`, `\x41`, `\x{263a}`: same syntax in both dialects.
            re.push('\\');
            re.push(c);
            let mut j = i + 1;
            if chars.get(j) == Some(&'{') {
                let close = chars[j..].iter().position(|c| *c == '}').map(|p| p + j);
                let close =
                    close.ok_or_else(|| BadPattern(format!("`\\{c}{{` is never closed")))?;
                re.extend(&chars[j..=close]);
                return Ok(close + 1);
            }
            let take = if c == 'x' { 2 } else { 1 };
            for _ in 0..take {
                let ch = chars
                    .get(j)
                    .ok_or_else(|| BadPattern(format!("`\\{c}` is incomplete")))?;
                re.push(*ch);
                j += 1;
            }
            return Ok(j);
        }
        'Q' => {
            // `\Q…\E`: literal text.
            let mut j = i + 1;
            while j < chars.len() && !(chars[j] == '\\' && chars.get(j + 1) == Some(&'E')) {
                push_literal(re, chars[j]);
                j += 1;
            }
            return Ok((j + 2).min(chars.len()));
        }
        _ => {
            return Err(BadPattern(format!(
                "`\\{c}` is not an escape podman's regex engine knows"
            )))
        }
    }
    Ok(i + 1)
}

/// Translates a Go regex character class starting after `[` at `chars[i]`; returns the index
/// after its `]`.
fn go_class(chars: &[char], mut i: usize, re: &mut String) -> Result<usize, BadPattern> {
    re.push('[');
    if chars.get(i) == Some(&'^') {
        re.push('^');
        i += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(BadPattern("a `[` is never closed".into()));
        };
        if c == ']' && !first {
            re.push(']');
            return Ok(i + 1);
        }
        first = false;
        if c == '[' && chars.get(i + 1) == Some(&':') {
            let rest: String = chars[i..].iter().collect();
            if let Some(end) = rest.find(":]") {
                re.push_str(&rest[..end + 2]);
                i += rest[..end + 2].chars().count();
                continue;
            }
        }
        let (lo, next) = class_atom(chars, i, re)?;
        i = next;
        if let Some(lo) = lo {
            if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                let (hi, next) = class_atom(chars, i + 1, &mut String::new())?;
                let hi = hi.ok_or_else(|| BadPattern("a range in `[…]` ends in a class".into()))?;
                if hi < lo {
                    return Err(BadPattern(format!("the range `{lo}-{hi}` is backwards")));
                }
                re.push('-');
                push_class_char(re, hi);
                i = next;
            }
        }
    }
}

/// One class member at `chars[i]`: a character (returned, and pushed) or an escaped class
/// (`\d`, pushed only).
fn class_atom(
    chars: &[char],
    i: usize,
    re: &mut String,
) -> Result<(Option<char>, usize), BadPattern> {
    let c = chars[i];
    if c != '\\' {
        push_class_char(re, c);
        return Ok((Some(c), i + 1));
    }
    let Some(&e) = chars.get(i + 1) else {
        return Err(BadPattern("a trailing `\\` escapes nothing".into()));
    };
    let lit = |ch: char, re: &mut String| {
        push_class_char(re, ch);
        Ok((Some(ch), i + 2))
    };
    match e {
        e if e.is_ascii_punctuation() => lit(e, re),
        'a' => lit('\x07', re),
        'f' => lit('\x0c', re),
        't' => lit('\t', re),
        'n' => lit('\n', re),
        'r' => lit('\r', re),
        'v' => lit('\x0b', re),
        'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
            re.push_str(match e {
                'd' => "0-9",
                'D' => "[^0-9]",
                's' => r"\t\n\x0C\r ",
                'S' => r"[^\t\n\x0C\r ]",
                'w' => "0-9A-Za-z_",
                _ => "[^0-9A-Za-z_]",
            });
            Ok((None, i + 2))
        }
        _ => Err(BadPattern(format!(
            "`\\{e}` inside `[…]` is not an escape podman's regex engine knows"
        ))),
    }
}

fn push_class_char(re: &mut String, c: char) {
    if matches!(c, '[' | ']' | '\\' | '-' | '^' | '&' | '~') {
        re.push('\\');
    }
    re.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        to_regex(pattern, EngineKind::Podman)
            .unwrap()
            .is_match(path)
    }

    /// `(pattern, path, matches)`, each one what podman 4.3's regex does.
    const CASES: &[(&str, &str, bool)] = &[
        ("foo", "foo", true),
        ("foo", "foo/bar/baz", true), // a directory covers what is under it
        ("foo", "foobar", false),
        ("foo", "a/foo", false), // anchored at the context root
        ("*.md", "README.md", true),
        ("*.md", "docs/a.md", false), // `*` does not cross `/`
        ("*/*.md", "docs/a.md", true),
        ("**/*.md", "a.md", true),
        ("**/*.md", "x/y/z.md", true),
        ("docs/**", "docs/a/b", true),
        ("docs/**", "docs", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("?.txt", "a.txt", true),
        ("?.txt", "ab.txt", false),
        ("[abc].txt", "b.txt", true),
        ("[a-c].txt", "d.txt", false),
        ("[^a].txt", "b.txt", true),
        ("[!a].txt", "!.txt", true), // Go: `[!a]` is a class holding `!` and `a`
        ("[!a].txt", "b.txt", false),
        ("a+b", "aab", true), // `+` stays a regex operator in podman
        ("a+b", "a+b", false),
        ("notes (1).txt", "notes 1.txt", true), // and so do parentheses
        ("notes (1).txt", "notes (1).txt", false),
        ("a|b", "b", true),
        ("x{2}", "xx", true),
        ("x{y}", "x{y}", true), // not a repetition: literal braces
        ("a.b", "axb", false),  // `.` is escaped
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("\\[x]", "[x]", true),
        ("\\d", "7", true), // a Go regex escape, passed through
        ("über", "über", true),
        ("[[:digit:]]x", "5x", true),
        ("$x", "$x", true),
    ];

    #[test]
    fn podman_regex_semantics() {
        for (pattern, path, want) in CASES {
            assert_eq!(
                m(pattern, path),
                *want,
                "pattern {pattern:?} against {path:?}"
            );
        }
    }

    #[test]
    fn docker_escapes_more() {
        let d = |p: &str, path: &str| to_regex(p, EngineKind::Docker).unwrap().is_match(path);
        assert!(d("a+b", "a+b") && !d("a+b", "aab"));
        assert!(d("notes (1).txt", "notes (1).txt"));
        assert!(d("x{2}", "x{2}"));
    }

    #[test]
    fn match_syntax() {
        for ok in ["a", "[a]", "[a-z]", "[\\]]", "[^a]", "\\*", "[[]", "a]"] {
            assert_eq!(check_match_syntax(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("[a", "never closed"),
            ("[]", "must be escaped"),
            ("[a-]", "has no end"),
            ("[-a]", "must be escaped"),
            ("a\\", "trailing"),
        ];
        for (bad, why) in cases {
            let err = check_match_syntax(bad).unwrap_err().0;
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_escapes_are_rejected() {
        assert!(to_regex("\\y", EngineKind::Podman)
            .unwrap_err()
            .0
            .contains("`\\y`"));
    }
}
