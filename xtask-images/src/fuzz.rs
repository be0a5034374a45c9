//! Fuzzing on the stable toolchain, inside `cargo test`: each target mutates a small corpus of
//! realistic inputs with a dictionary of the grammar's tokens (structure-aware, not
//! coverage-guided: libFuzzer needs nightly) and checks a property on every input, for a time
//! budget per target (`XTASK_FUZZ_SECONDS`, 1 s unless set; CI gives each 10 s). A failing
//! input is printed escaped, and becomes a line of [`REGRESSIONS`].
//!
//! The ignore-pattern target is differential: the compiled matcher must agree with a slow
//! reference written from the documented semantics (`*`, `?`, `**`, a matched directory
//! covering what is under it).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::engine::EngineKind;

/// Inputs that once failed, kept as regression tests: (target, input).
const REGRESSIONS: &[(&str, &str)] = &[
    ("dockerfile", "FROM a\nRUN <<EOF\n"),
    ("dockerfile", "# escape=`\nFROM a`\n"),
    ("dockerfile", "ARG A=${B:-${C\nFROM $A\n"),
    ("ignore", "!\n"),
    ("ignore", "[\n\\"),
    ("size", "1e400"),
    ("size", "18446744073709551616"),
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// `XTASK_FUZZ_SEED` to replay a failure, else the clock.
fn seed() -> u64 {
    std::env::var("XTASK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

fn budget() -> Duration {
    let secs = std::env::var("XTASK_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// One mutation of `input`: a dictionary token inserted, a range deleted or repeated, a
/// character replaced, or a splice with another corpus entry.
fn mutate(rng: &mut Rng, input: &str, corpus: &[&str], dict: &[&str]) -> String {
    let mut chars: Vec<char> = input.chars().collect();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(chars.len() + 1);
        match rng.below(6) {
            0 | 1 => {
                let token: Vec<char> = rng.pick(dict).chars().collect();
                chars.splice(at..at, token);
            }
            2 if !chars.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(chars.len());
                let at = at.min(end);
                chars.drain(at..end);
            }
            3 if !chars.is_empty() => {
                let at = at.min(chars.len() - 1);
                let end = (at + 1 + rng.below(16)).min(chars.len());
                let piece: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, piece);
            }
            4 if !chars.is_empty() => {
                let at = at.min(chars.len() - 1);
                const ODD: [char; 10] =
                    ['\0', '\n', '\r', '\\', '"', '\'', '$', '\u{feff}', 'é', '}'];
                chars[at] = ODD[rng.below(ODD.len())];
            }
            _ => {
                let other: Vec<char> = rng.pick(corpus).chars().collect();
                let from = rng.below(other.len() + 1);
                chars.truncate(at);
                chars.extend_from_slice(&other[from..]);
            }
        }
    }
    chars.truncate(4096);
    chars.into_iter().collect()
}

/// Runs `check` on the regressions of `target`, the corpus, then mutations until the budget is
/// spent; panics with the first failing input. Returns the number of executions.
fn fuzz(target: &str, corpus: &[&str], dict: &[&str], check: impl Fn(&str)) -> u64 {
    let seed = seed();
    let mut rng = Rng(seed);
    let one = |input: &str| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            panic!("fuzz target `{target}` (XTASK_FUZZ_SEED={seed}) failed on {input:?}: add it to REGRESSIONS once fixed");
        }
    };
    let mut runs = 0u64;
    for (_, input) in REGRESSIONS.iter().filter(|(t, _)| *t == target) {
        one(input);
        runs += 1;
    }
    for input in corpus {
        one(input);
        runs += 1;
    }
    let start = Instant::now();
    let limit = budget();
    let mut current = corpus[0].to_string();
    while start.elapsed() < limit {
        for _ in 0..64 {
            current = if rng.below(8) == 0 {
                rng.pick(corpus).to_string()
            } else {
                mutate(&mut rng, &current, corpus, dict)
            };
            one(&current);
            runs += 1;
        }
    }
    eprintln!(
        "fuzz {target}: {runs} executions in {:.1}s, no failure (XTASK_FUZZ_SEED={seed})",
        start.elapsed().as_secs_f64()
    );
    runs
}

#[test]
fn dockerfile_parser() {
    let corpus = [
        "FROM python:3.12-slim AS base\nARG APP=/app\nWORKDIR $APP\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nCOPY . .\nCMD [\"gunicorn\", \"app.wsgi\"]\n",
        "# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nCOPY --chown=1:1 a `\n  b /dst/\n",
        "ARG BASE=debian\nFROM ${BASE:-x} AS build\nRUN <<EOF\nset -e\necho hi\nEOF\nFROM build\nCOPY --from=build /a /b\nRUN --mount=type=cache,target=/root/.cache true\nHEALTHCHECK CMD true\n",
        "FROM a\nONBUILD RUN x\nSHELL [\"/bin/sh\", \"-c\"]\nENV A=1 B=\"two words\"\nLABEL x=y \\\n  z=w\nEXPOSE 80/tcp\n",
    ];
    let dict = [
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ARG ",
        "ENV ",
        "LABEL ",
        " AS ",
        "--from=",
        "--chown=",
        "--mount=type=bind,source=a,target=/b ",
        "${",
        "}",
        ":-",
        ":+",
        "$",
        "\\\n",
        "\n",
        "# escape=`\n",
        "# escape=\\\n",
        "<<EOF\n",
        "<<-EOF\n",
        "EOF\n",
        "[\"",
        "\", \"",
        "\"]",
        "#",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "ENTRYPOINT ",
        "WORKDIR ",
        "STOPSIGNAL ",
        "\t",
        " ",
        "=",
        "'",
        "\"",
        "`",
        "*",
        "..",
        "/",
    ];
    fuzz("dockerfile", &corpus, &dict, |text| {
        let lines = text.lines().count() + 1;
        match crate::dockerfile::parse(text) {
            Ok(instrs) => {
                if let Err(e) = crate::dockerfile::stages(instrs) {
                    assert!(e.line <= lines, "error line {} of {lines}", e.line);
                }
            }
            Err(e) => assert!(e.line <= lines, "error line {} of {lines}", e.line),
        }
    });
}

#[test]
fn ignore_file_parser() {
    let corpus = [
        "target/\n**/__pycache__\n*.pyc\n.git\n!.git/HEAD\nnode_modules\n.env*\n!.env.example\n",
        "# comment\n/abs/path\n./rel\n../up\n**\n!keep/**/*.txt\n[a-z]*.log\n\\#hash\n",
        "a+b\n(x|y)\n{1,2}\n\\d\n[^/]\n[!x]\n?\n***\n",
    ];
    let dict = [
        "*", "**", "?", "/", "!", "[", "]", "^", "-", "\\", ".", "..", "\n", "\r\n", "#", " ", "a",
        "{", "}", "(", ")", "|", "+", "$", "\u{feff}",
    ];
    fuzz("ignore", &corpus, &dict, |text| {
        for engine in [EngineKind::Podman, EngineKind::Docker] {
            if let Ok(rules) = crate::context::ignore::parse(text, engine) {
                for r in rules {
                    let _ = r.regex.is_match("a/b.c");
                }
            }
        }
    });
}

/// The documented semantics, as a slow backtracking matcher: `*` is any run within one path
/// element, `?` one character of it, `**/` any number of whole elements (`**` at the end:
/// anything), and a pattern matching a directory covers everything under it.
fn reference_match(pattern: &[char], path: &[char]) -> bool {
    fn m(p: &[char], s: &[char]) -> bool {
        match p {
            [] => s.is_empty(),
            ['*', '*', rest @ ..] => {
                let rest = rest.strip_prefix(&['/']).unwrap_or(rest);
                if rest.is_empty() {
                    return true;
                }
                m(rest, s) || (0..s.len()).any(|i| s[i] == '/' && m(rest, &s[i + 1..]))
            }
            ['*', rest @ ..] => (0..=s.len())
                .take_while(|&k| k == 0 || s[k - 1] != '/')
                .any(|k| m(rest, &s[k..])),
            ['?', rest @ ..] => s.first().is_some_and(|c| *c != '/') && m(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && m(rest, &s[1..]),
        }
    }
    m(pattern, path) || (0..path.len()).any(|i| path[i] == '/' && m(pattern, &path[..i]))
}

#[test]
fn ignore_matcher_agrees_with_the_reference() {
    let seed = seed();
    let mut rng = Rng(seed);
    let tokens = ["a", "b", ".", "*", "?", "**", "ab", "a.b"];
    let elements = ["a", "b", "ab", "ba", ".a", "a.b", "bb", "aab"];
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget() || runs < 2000 {
        let parts = 1 + rng.below(4);
        let pattern: Vec<String> = (0..parts)
            .map(|_| {
                let n = 1 + rng.below(3);
                (0..n).map(|_| rng.pick(&tokens)).collect::<String>()
            })
            .collect();
        let pattern = pattern.join("/");
        let re = crate::context::pattern::to_regex(&pattern, EngineKind::Podman)
            .unwrap_or_else(|e| panic!("{pattern:?}: {e:?}"));
        let p: Vec<char> = pattern.chars().collect();
        for _ in 0..16 {
            let depth = 1 + rng.below(4);
            let path: Vec<&str> = (0..depth).map(|_| rng.pick(&elements)).collect();
            let path = path.join("/");
            let s: Vec<char> = path.chars().collect();
            assert_eq!(
                re.is_match(&path),
                reference_match(&p, &s),
                "pattern {pattern:?} on {path:?} (regex {re}, XTASK_FUZZ_SEED={seed})"
            );
            runs += 1;
        }
    }
    eprintln!("fuzz ignore-matcher: {runs} comparisons, all agree");
}

#[test]
fn config_reader() {
    let root = std::env::temp_dir();
    let corpus = [
        "registry = \"ghcr.io/acme\"\npush_attempts = 3\npush_timeout = \"10m\"\n\n[[image]]\nname = \"web\"\ndockerfile = \"docker/Dockerfile\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\nmax_size = \"300MB\"\n[image.args]\nPY = \"3.12\"\n[[image.smoke]]\nname = \"health\"\ncommand = [\"python\", \"-c\", \"print(1)\"]\nexpect_stdout = [\"1\"]\ntimeout = \"30s\"\n",
        "[context]\nmust_exclude = [\".env\", \"*.pem\"]\nmax_size = \"50MB\"\n[[image]]\nname = \"app\"\n[[image.smoke]]\nname = \"web\"\nservice = true\nwait_for = { http = \"/healthz\", port = 8000 }\n",
        "[scan]\ntool = \"trivy\"\nfail_on = \"high\"\n[[scan.waiver]]\nid = \"CVE-2024-1\"\nreason = \"x\"\nuntil = \"2027-01-01\"\n[[image]]\nname = \"a\"\n",
    ];
    let dict = [
        "[[image]]\n",
        "[[image.smoke]]\n",
        "name = ",
        "\"",
        "\n",
        "=",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "'''",
        "\"\"\"",
        "\\u0000",
        "1e9",
        "-1",
        "99999999999999999999",
        "true",
        "\"1.5GiB\"",
        "\"0s\"",
        "platforms = ",
        "max_size = ",
        "timeout = ",
        "registry = ",
        "version = ",
        "\"${X}\"",
    ];
    fuzz("config", &corpus, &dict, |text| {
        let _ = crate::config::parse(&root, "docker/images.toml", text);
    });
}

#[test]
fn image_reference_grammar() {
    let corpus = [
        "ghcr.io/acme/web",
        "localhost:5000/a/b",
        "Web App_2",
        "v1.2.3+build.7",
        "feature/JIRA-12_x",
        "127.0.0.1:5000",
    ];
    let dict = [
        "/", ":", ".", "-", "_", "__", "@", "sha256:", "+", "A", "é", " ", "..", "--", "5000",
        "[::1]",
    ];
    fuzz("reference", &corpus, &dict, |raw| {
        let tag = crate::reference::tag_from(raw);
        assert!(
            tag.is_empty() || crate::reference::is_valid_tag(&tag),
            "tag {tag:?}"
        );
        let repo = crate::reference::repository_from(raw);
        assert!(
            repo.is_empty() || crate::reference::check_repository(&repo).is_ok(),
            "repository {repo:?}: {:?}",
            crate::reference::check_repository(&repo)
        );
        let _ = crate::reference::check_registry(raw);
    });
}

#[test]
fn byte_size_parser() {
    let corpus = ["500MB", "1.5 GiB", "1048576", "0", "2TB", "12kB"];
    let dict = [
        "0",
        "9",
        ".",
        "e",
        "KiB",
        "MiB",
        "GiB",
        "TiB",
        "kB",
        "MB",
        "GB",
        "TB",
        "B",
        " ",
        "-",
        "+",
        "inf",
        "NaN",
        "99999999999999999999",
    ];
    fuzz("size", &corpus, &dict, |text| {
        if let Ok(n) = crate::size::parse(text) {
            let _ = crate::size::human(n);
        }
        let n = text.len() as u64 * 1_000_003;
        assert_eq!(crate::size::parse(&n.to_string()), Ok(n));
    });
}
