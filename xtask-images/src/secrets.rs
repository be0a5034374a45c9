//! What looks like a secret: by content (key blocks, known token formats, long random values
//! assigned to secret-looking names), and by name for build arguments. A match never carries
//! the value, only where it is and what kind it is, so no message can leak it.

use std::sync::OnceLock;

use regex::bytes::Regex;

/// Build-argument and variable names whose values are treated as secrets.
pub fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "KEY"]
        .iter()
        .any(|w| n.contains(w))
        && !n.contains("PUBLIC")
}

/// One secret found in a file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// 1-based line.
    pub line: usize,
    /// What it is: "a private key block", "a GitHub token", "a random value assigned to `SECRET_KEY`".
    pub what: String,
    /// A known secret format (a key block, a token with its vendor's prefix), not a guess
    /// from a variable's name and its value's randomness.
    pub format: bool,
}

struct Token {
    what: &'static str,
    re: Regex,
}

/// The token formats: what each is, and its pattern.
const TOKEN_PATTERNS: &[(&str, &str)] = &[
    (
        "a private key block",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("an AWS access key ID", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "a GitHub token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
    ),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("an npm token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    (
        "an npm/registry auth token",
        r"_auth(?:Token)?\s*=\s*[^\s$]{8,}",
    ),
    ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("a Stripe live key", r"\b[rs]k_live_[0-9A-Za-z]{16,}"),
    (
        "a JSON web token",
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
    (
        "a registry login (`auth` in a Docker config)",
        r#""auth"\s*:\s*"[A-Za-z0-9+/]{16,}={0,2}""#,
    ),
];

fn tokens() -> &'static [Token] {
    static T: OnceLock<Vec<Token>> = OnceLock::new();
    T.get_or_init(|| {
        TOKEN_PATTERNS
            .iter()
            .map(|(what, re)| Token {
                what,
                re: Regex::new(re).expect("built-in pattern"),
            })
            .collect()
    })
}

/// `NAME = value`, `NAME: value`, `"name": "value"` where NAME is secret-looking.
const ASSIGNMENT: &str = r#"(?i)["']?([a-z0-9_.-]*(?:secret|passw(?:or)?d|token|credential|key))["']?[ \t]*[:=][ \t]*(?:"([^"\n]*)"|'([^'\n]*)'|([^\s"',;()\[\]{}]+))"#;

fn assignment() -> &'static Regex {
    static A: OnceLock<Regex> = OnceLock::new();
    A.get_or_init(|| Regex::new(ASSIGNMENT).expect("built-in pattern"))
}

/// Names the detection rules, so what a cache remembers from older rules is not trusted: the
/// patterns themselves, and a number to bump when the logic around them changes.
///
/// From the pattern texts, not the compiled regexes: a warm `check` reads its cache without
/// compiling any of them.
pub fn rules_id() -> String {
    use sha2::{Digest, Sha256};
    const LOGIC: &str = "1";
    let mut h = Sha256::new();
    h.update(LOGIC);
    for (_, re) in TOKEN_PATTERNS {
        h.update(re);
    }
    h.update(ASSIGNMENT);
    h.update(CREDENTIAL_URL);
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `scheme://user:password@host`: a connection string that carries its password.
const CREDENTIAL_URL: &str = r#"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'"]+:([^\s@/'"]{8,})@"#;

fn credential_url() -> &'static Regex {
    static U: OnceLock<Regex> = OnceLock::new();
    U.get_or_init(|| Regex::new(CREDENTIAL_URL).expect("built-in pattern"))
}

/// Bits per character of `v`'s own symbol frequencies.
fn entropy(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for b in v {
        counts[*b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A value that is long and random enough to be a real secret, not a placeholder, a setting
/// or a reference to where the secret really lives.
fn random_value(v: &[u8]) -> bool {
    if v.len() < 16 || v.len() > 512 {
        return false;
    }
    let s = String::from_utf8_lossy(v).to_ascii_lowercase();
    let placeholder = [
        "${",
        "{{",
        "<",
        "changeme",
        "change-me",
        "change_me",
        "example",
        "xxxx",
        "your",
        "dummy",
        "placeholder",
        "insecure",
        "replace",
        "secret_here",
        "os.environ",
        "getenv",
        "env(",
        "/run/secrets",
        "0123456789",
        "abcdef",
        "123456",
        "test",
        "do-not-use",
        "do_not_use",
        "not-secret",
        "fake",
        "sample",
        "redacted",
        "******",
    ];
    // A password hash (`pbkdf2_sha256$…`, `$2b$…`, `argon2$…`) is what a fixture stores
    // instead of the password.
    let hash = [
        "pbkdf2_", "argon2", "bcrypt", "scrypt", "sha1$", "md5$", "$2a$", "$2b$", "$2y$",
        "$argon2", "$6$", "$5$",
    ]
    .iter()
    .any(|h| s.starts_with(h));
    if placeholder.iter().any(|p| s.contains(p)) || uuid(v) || hash {
        return false;
    }
    let letters = v.iter().any(u8::is_ascii_alphabetic);
    let digits = v.iter().any(u8::is_ascii_digit);
    let classes = [
        v.iter().any(u8::is_ascii_lowercase),
        v.iter().any(u8::is_ascii_uppercase),
        digits,
        v.iter().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    // Paths and dotted names (`app.backends.TokenAuth`) are settings; words without digits
    // (`require_password`, `get_random_secret_key`) are names.
    let path_like =
        v.contains(&b'/') && !v.contains(&b'+') || v.iter().filter(|b| **b == b'.').count() >= 2;
    let long_enough = if classes >= 3 { 16 } else { 24 };
    letters && digits && v.len() >= long_enough && !path_like && entropy(v) >= 3.3
}

/// `8-4-4-4-12` hex: an identifier, not a secret.
fn uuid(v: &[u8]) -> bool {
    let parts: Vec<&[u8]> = v.split(|b| *b == b'-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.iter().all(u8::is_ascii_hexdigit))
}

/// Source code, where a secret is a quoted literal: an unquoted value is an expression.
fn code_file(name: &str) -> bool {
    let ext = name.rsplit_once('.').map_or("", |(_, x)| x);
    [
        "py", "js", "mjs", "cjs", "ts", "jsx", "tsx", "go", "rb", "java", "kt", "php", "rs", "c",
        "h", "cc", "cpp", "cs", "swift", "scala", "vue", "svelte",
    ]
    .contains(&ext)
}

/// The names whose values are secrets in an assignment: `KEY` only at the end and after a
/// word that makes it one (`SECRET_KEY`, `API_KEY`, `FIELD_ENCRYPTION_KEY`), never alone (a
/// dictionary key, a cache key).
fn secret_assignment_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase().replace(['-', '.'], "_");
    if n.contains("PUBLIC") {
        return false;
    }
    if ["SECRET", "PASSW", "TOKEN", "CREDENTIAL"]
        .iter()
        .any(|w| n.contains(w))
    {
        return true;
    }
    [
        "SECRET",
        "API",
        "APP",
        "PRIVATE",
        "ACCESS",
        "SIGNING",
        "ENCRYPTION",
        "AUTH",
        "MASTER",
        "CLIENT",
    ]
    .iter()
    .any(|w| n.ends_with(&format!("{w}_KEY")) || n.ends_with(&format!("{w}KEY")))
}

/// Whether the content is worth reading: not binary.
pub fn is_text(content: &[u8]) -> bool {
    !content[..content.len().min(1024)].contains(&0)
}

/// The token formats at once: their literal prefixes (`ghp_`, `AKIA`, `-----BEGIN`) let one
/// pass over a file skip nearly all of it.
fn any_token() -> &'static regex::bytes::RegexSet {
    static S: OnceLock<regex::bytes::RegexSet> = OnceLock::new();
    S.get_or_init(|| {
        regex::bytes::RegexSet::new(tokens().iter().map(|t| t.re.as_str()))
            .expect("built-in patterns")
    })
}

/// The words a secret-looking name contains, found case-insensitively in one pass; only the
/// lines holding one are matched against the assignment pattern.
fn name_words() -> &'static aho_corasick::AhoCorasick {
    static W: OnceLock<aho_corasick::AhoCorasick> = OnceLock::new();
    W.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(["secret", "passw", "token", "credential", "key"])
            .expect("built-in words")
    })
}

/// The first secret in `content` (of a file named `name`), if any.
pub fn find(name: &str, content: &[u8]) -> Option<Hit> {
    if !is_text(content) {
        return None;
    }
    let line_of = |at: usize| content[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let mut best: Option<(usize, String, bool)> = None;
    let token_hits = any_token().matches(content);
    for t in token_hits.iter().map(|i| &tokens()[i]) {
        if let Some(m) = t.re.find(content) {
            if best.as_ref().is_none_or(|(at, _, _)| m.start() < *at) {
                best = Some((m.start(), t.what.to_string(), true));
            }
        }
    }
    let code = code_file(name);
    // The lines that hold a name word, each once, in order.
    let mut lines: Vec<(usize, usize)> = Vec::new();
    for m in name_words().find_iter(content) {
        if lines.last().is_some_and(|(_, end)| m.start() < *end) {
            continue;
        }
        let start = content[..m.start()]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let end = content[m.end()..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(content.len(), |i| m.end() + i);
        lines.push((start, end));
    }
    let assignments = lines.iter().flat_map(|(start, end)| {
        assignment()
            .captures_iter(&content[*start..*end])
            .map(move |c| (*start, c))
    });
    for (offset, c) in assignments {
        let var = c.get(1).map_or(&b""[..], |m| m.as_bytes());
        if !secret_assignment_name(&String::from_utf8_lossy(var)) || code && c.get(4).is_some() {
            continue;
        }
        let value = (2..=4)
            .find_map(|i| c.get(i))
            .map_or(&b""[..], |m| m.as_bytes());
        if random_value(value) {
            let at = offset + c.get(0).map_or(0, |m| m.start());
            // On one line, the token's own name says more than the variable's.
            if best
                .as_ref()
                .is_none_or(|(b, _, _)| line_of(at) < line_of(*b))
            {
                best = Some((
                    at,
                    format!(
                        "a random value assigned to `{}`",
                        String::from_utf8_lossy(var)
                    ),
                    false,
                ));
            }
            break;
        }
    }
    if best.is_none() {
        for c in credential_url().captures_iter(content) {
            let password = c.get(1).map_or(&b""[..], |m| m.as_bytes());
            let letters = password.iter().any(u8::is_ascii_alphabetic);
            let digits = password.iter().any(u8::is_ascii_digit);
            let lower = String::from_utf8_lossy(password).to_ascii_lowercase();
            let placeholder = ["password", "passwd", "secret", "changeme", "example", "xxx"]
                .iter()
                .any(|p| lower.contains(p));
            if letters && digits && !placeholder && !password.contains(&b'$') {
                let at = c.get(0).map_or(0, |m| m.start());
                best = Some((at, "a URL with a password in it".into(), false));
                break;
            }
        }
    }
    best.map(|(at, what, format)| Hit {
        line: line_of(at),
        what,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(s: &str) -> Option<String> {
        find(".env", s.as_bytes()).map(|h| format!("{}: {}", h.line, h.what))
    }

    #[test]
    fn real_formats_are_found_and_benign_settings_are_not() {
        assert_eq!(
            what("x\n-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n").as_deref(),
            Some("2: a private key block")
        );
        assert_eq!(
            what("token = ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\n").as_deref(),
            Some("1: a GitHub token")
        );
        assert_eq!(
            what("//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\n")
                .as_deref(),
            Some("1: an npm/registry auth token")
        );
        assert_eq!(
            what("DEBUG = True\nSECRET_KEY = \"k3#9vq!x2Lm@8Pz^Rw7Yt&5Nb1Hc$4Gd\"\n").as_deref(),
            Some("2: a random value assigned to `SECRET_KEY`")
        );
        assert_eq!(
            what("FIELD_ENCRYPTION_KEY=Zx9Kq2Lw8Vb3Nm7Rt4Yp6Hs1Jd5Fg0Ac=\n").as_deref(),
            Some("1: a random value assigned to `FIELD_ENCRYPTION_KEY`")
        );
        for benign in [
            "COMPOSE_PROJECT_NAME=paperless\n",
            "shamefully-hoist=true\nauto-install-peers=true\n",
            "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n",
            "SECRET_KEY = os.environ[\"SECRET_KEY\"]\n",
            "SECRET_KEY = os.environ.get(\"DJANGO_SECRET_KEY\", \"changeme\")\n",
            "SECRET_KEY = \"django-insecure-q8#z1!xk2@v9m^n3b$7c&5h*4j(0g)p6l\"\n",
            "PASSWORD_HASHERS = [\"django.contrib.auth.hashers.Argon2PasswordHasher\"]\n",
            "AUTHENTICATION_BACKENDS = (\"graphql_jwt.backends.JSONWebTokenBackend\",)\n",
            "PASSWORD_RESET_TIMEOUT = 259200\n",
            "TOKEN_URL: https://auth.example.org/oauth/token\n",
            "SECRET_KEY=\n# PASSWORD=your-password-here\n",
            "PUBLIC_KEY=AAAAB3NzaC1yc2EAAAADAQABAAABAQC8Vq\n",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq me@host\n",
            "SUPERUSER_API_TOKEN='0123456789abcdef0123456789abcdef01234567'\n",
            "\"translation_key\": \"0b6b7b0e-6a2f-4c8e-9d3b-5f1a2c3d4e5f\",\n",
            "REQUIRE_PASSWORD = \"require_password\"\n",
            "PAPERLESS_SECRET_KEY = \"test-secret-key-do-not-use-in-production\"\n",
            "cache_key = \"checkout-payment-gateway-v2\"\n",
            "\"password\": \"pbkdf2_sha256$260000$Xk2mQ9rL$Zx9Kq2Lw8Vb3Nm7Rt4Yp6Hs1Jd5Fg0Ac=\",\n",
        ] {
            assert_eq!(what(benign), None, "{benign}");
        }
        // In code, only a quoted literal is a value.
        let code =
            "password = serializers.CharField(required=True)\ntoken = make_token8Xq2(user)\n";
        assert_eq!(find("views.py", code.as_bytes()), None);
        assert!(find(
            "views.py",
            b"API_KEY = \"Zx9Kq2Lw8Vb3Nm7Rt4Yp6Hs1Jd5Fg0Ac\"\n"
        )
        .is_some());
    }

    #[test]
    fn urls_with_passwords() {
        assert_eq!(
            what("DATABASE_URL=postgres://app:Xk2mQ9rL8vB3nM7tP4@db/app\n").as_deref(),
            Some("1: a URL with a password in it")
        );
        for benign in [
            "DATABASE_URL=postgres://paperless:paperless@db/paperless\n",
            "url = postgres://user:password@localhost/db\n",
            "REDIS=redis://:${REDIS_PASSWORD}@cache:6379\n",
        ] {
            assert_eq!(what(benign), None, "{benign}");
        }
    }

    #[test]
    fn build_argument_names() {
        for n in [
            "GITHUB_TOKEN",
            "db_password",
            "SECRET_KEY",
            "API_KEY",
            "NPM_AUTH_TOKEN",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in ["PYTHON_VERSION", "GREETING", "PUBLIC_KEY_URL"] {
            assert!(!secret_name(n), "{n}");
        }
    }
}
