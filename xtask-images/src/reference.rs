//! The grammar of image references (distribution/reference): repository names, registries and
//! tags, with the repairs we apply to user-supplied names.

use sha2::{Digest, Sha256};

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or any run of `-`, always between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).is_some_and(|c| is_alnum(*c)) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks an image name such as `senex_trader` or `acme/api`.
pub fn check_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an image name can't be empty".into());
    }
    if let Some(bad) = name.split('/').find(|c| !is_path_component(c)) {
        return Err(format!(
            "`{name}` is not a valid image name: `{bad}` must be lowercase letters and digits, \
             joined by `.`, `_`, `__` or `-` (try `{}`)",
            repository_from(name)
        ));
    }
    Ok(())
}

/// Makes a valid repository name out of anything (a directory name, say): lowercase, each run
/// of other characters one separator (`_`, `__` and `.` are kept as they are, others become `-`).
pub fn repository_from(raw: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if !out.is_empty() && !run.is_empty() {
                out.push_str(if matches!(run.as_str(), "_" | "__" | ".") {
                    &run
                } else {
                    "-"
                });
            }
            run.clear();
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if out.is_empty() {
        "app".to_string()
    } else {
        out
    }
}

/// Checks a registry destination `host[:port][/namespace…]` such as `ghcr.io/acme`.
pub fn check_registry(reg: &str) -> Result<(), String> {
    if let Some(rest) = reg.split_once("://").map(|(_, r)| r) {
        return Err(format!(
            "registry `{reg}` has a scheme; write it without one: `{rest}`"
        ));
    }
    if reg.ends_with('/') {
        return Err(format!(
            "registry `{reg}` ends with `/`; write it as `{}`",
            reg.trim_end_matches('/')
        ));
    }
    let (host, path) = reg.split_once('/').unwrap_or((reg, ""));
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let host_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !host_ok {
        return Err(format!(
            "registry `{reg}`: `{host}` is not a valid host name"
        ));
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry `{reg}`: `{p}` is not a valid port"));
        }
    }
    if port.is_none() && !name.contains('.') && name != "localhost" {
        return Err(format!(
            "registry `{reg}` does not start with a host, so engines would guess one; \
             name it, e.g. `docker.io/{reg}` or `localhost:5000/{reg}`"
        ));
    }
    if !path.is_empty() {
        check_repository(path).map_err(|e| format!("registry `{reg}`: {e}"))?;
    }
    Ok(())
}

/// Longest tag the reference grammar allows.
const TAG_MAX: usize = 128;

/// Makes a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`) out of anything: runs of other
/// characters become `-`, a leading `.` or `-` becomes `_`, and a name over 128 characters is cut
/// and ended with `-` and 8 hex digits of the original's sha256, so two long names stay apart.
pub fn tag_from(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_bad_run = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
            out.push(c);
            in_bad_run = false;
        } else if !in_bad_run {
            out.push('-');
            in_bad_run = true;
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with(['.', '-']) {
        out.replace_range(0..1, "_");
    }
    if out.len() > TAG_MAX {
        let digest = Sha256::digest(raw.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        out.truncate(TAG_MAX - 9);
        out.push('-');
        out.push_str(&hex);
    }
    out
}

#[cfg(test)]
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_MAX
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for ok in [
            "senex_trader",
            "a",
            "acme/api",
            "a__b",
            "a---b",
            "a.b",
            "x9/y-z.w",
        ] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "Senex", "a_", "_a", "a/", "a//b", "a..b", "a___b", "a-.b", "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_repository("My App")
            .unwrap_err()
            .contains("try `my-app`"));
    }

    #[test]
    fn repositories_from_directories() {
        let cases = [
            ("senex_trader", "senex_trader"),
            ("Senex Trader", "senex-trader"),
            ("My.Project", "my.project"),
            ("__weird__--Name!!", "weird-name"),
            ("a__b", "a__b"),
            ("!!!", "app"),
            ("ÜberApp", "berapp"),
        ];
        for (raw, want) in cases {
            let got = repository_from(raw);
            assert_eq!(got, want, "{raw}");
            assert!(check_repository(&got).is_ok(), "{raw} -> {got}");
        }
    }

    #[test]
    fn registries() {
        for ok in [
            "ghcr.io/acme",
            "ghcr.io",
            "localhost:5000",
            "localhost/acme/team",
            "127.0.0.1:5000/x",
            "my-reg.example.com:443/a_b",
        ] {
            assert!(check_registry(ok).is_ok(), "{ok}");
        }
        let cases = [
            (
                "https://ghcr.io/acme",
                "has a scheme; write it without one: `ghcr.io/acme`",
            ),
            ("ghcr.io/acme/", "ends with `/`"),
            ("acme", "does not start with a host"),
            ("ghcr.io/Acme", "not a valid image name"),
            ("ghcr.io:99999/a", "not a valid port"),
            ("-bad.io/a", "not a valid host name"),
        ];
        for (reg, want) in cases {
            let err = check_registry(reg).unwrap_err();
            assert!(err.contains(want), "{reg}: {err}");
        }
    }

    #[test]
    fn tags() {
        let cases = [
            ("1.2.3", "1.2.3"),
            ("feature/login", "feature-login"),
            ("fix #12: crash", "fix-12-crash"),
            ("1.2.3+build.5", "1.2.3-build.5"),
            (".hidden", "_hidden"),
            ("-x", "_x"),
            ("", "_"),
            ("über", "_ber"),
        ];
        for (raw, want) in cases {
            let got = tag_from(raw);
            assert_eq!(got, want, "{raw}");
            assert!(is_valid_tag(&got), "{raw} -> {got}");
        }
    }

    #[test]
    fn long_tags_are_cut_and_kept_apart() {
        let a = format!("feature/{}", "a".repeat(200));
        let b = format!("feature/{}b", "a".repeat(199));
        let (ta, tb) = (tag_from(&a), tag_from(&b));
        assert_eq!(ta.len(), 128);
        assert_eq!(tb.len(), 128);
        assert_ne!(ta, tb);
        assert!(is_valid_tag(&ta) && is_valid_tag(&tb));
        assert_eq!(ta.as_bytes()[119], b'-');
        assert_eq!(tag_from(&"x".repeat(128)), "x".repeat(128));
    }
}
