//! Judging what a test saw. Pure: inputs are the image's inspect data or a container's output,
//! results are the failed expectations, one sentence each.

use std::collections::BTreeMap;

use serde_json::Value;

use super::tar::Entry;
use super::{Expect, FileCheck, Streams};
use crate::labels;

/// The image's config as `image inspect` reports it.
pub struct Meta<'a>(pub &'a Value);

impl Meta<'_> {
    fn config(&self) -> &Value {
        &self.0["Config"]
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let from = |v: &Value| {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect::<BTreeMap<_, _>>()
                })
                .unwrap_or_default()
        };
        let mut l = from(&self.0["Labels"]);
        l.extend(from(&self.config()["Labels"]));
        l
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.config()[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn text(&self, key: &str) -> String {
        self.config()[key].as_str().unwrap_or_default().to_string()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.list("Env")
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect()
    }

    fn exposed_ports(&self) -> Vec<String> {
        let mut p: Vec<String> = self.config()["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        p.sort();
        p
    }

    pub fn size(&self) -> u64 {
        self.0["Size"].as_u64().unwrap_or(0)
    }
}

/// The OCI labels a build stamps, compared with what this build's identity says they must be.
/// `created` is compared only when the build is reproducible (otherwise it is the build's clock).
pub fn oci_labels(
    meta: &Meta,
    expected: &BTreeMap<String, String>,
    created_known: bool,
) -> Vec<String> {
    let have = meta.labels();
    let mut failures = Vec::new();
    for key in [labels::VERSION, labels::REVISION, labels::CREATED] {
        let Some(want) = expected.get(key) else {
            continue;
        };
        match have.get(key) {
            None => failures.push(format!("label `{key}` is missing (want `{want}`)")),
            Some(got) if key == labels::CREATED && !created_known => {
                if got.len() < 20 || !got.ends_with('Z') {
                    failures.push(format!(
                        "label `{key}` is `{got}`, not an RFC 3339 UTC time"
                    ));
                }
            }
            Some(got) if got != want => failures.push(format!(
                "label `{key}` is `{got}`, want `{want}`: the image was built from another commit or version; rebuild it"
            )),
            Some(_) => {}
        }
    }
    failures
}

pub fn metadata(meta: &Meta, e: &Expect) -> Vec<String> {
    let mut f = Vec::new();
    let labels = meta.labels();
    for (k, want) in &e.labels {
        match labels.get(k) {
            Some(v) if want.matches(v) => {}
            Some(v) => f.push(format!("label `{k}` is `{v}`, want {want}")),
            None => f.push(format!("label `{k}` is missing, want {want}")),
        }
    }
    let env = meta.env();
    for (k, want) in &e.env {
        match env.get(k) {
            Some(v) if want.matches(v) => {}
            Some(v) => f.push(format!("env `{k}` is `{v}`, want {want}")),
            None => f.push(format!("env `{k}` is not set, want {want}")),
        }
    }
    let mut list = |key: &str, want: &Option<Vec<String>>, have: Vec<String>| {
        if let Some(w) = want {
            if *w != have {
                f.push(format!("{key} is {have:?}, want {w:?}"));
            }
        }
    };
    list("entrypoint", &e.entrypoint, meta.list("Entrypoint"));
    list("cmd", &e.cmd, meta.list("Cmd"));
    if let Some(w) = &e.exposed_ports {
        let have = meta.exposed_ports();
        let mut w = w.clone();
        w.sort();
        if w != have {
            f.push(format!("exposed ports are {have:?}, want {w:?}"));
        }
    }
    for (key, want, have) in [
        ("user", &e.user, meta.text("User")),
        ("workdir", &e.workdir, meta.text("WorkingDir")),
    ] {
        if let Some(w) = want {
            if *w != have {
                f.push(format!("{key} is `{have}`, want `{w}`"));
            }
        }
    }
    f
}

pub fn streams(s: &Streams, code: Option<i32>, stdout: &str, stderr: &str) -> Vec<String> {
    let mut f = Vec::new();
    match code {
        Some(c) if c == s.exit => {}
        Some(c) => f.push(format!("exit code {c}, want {}", s.exit)),
        None => f.push(format!("killed by a signal, want exit code {}", s.exit)),
    }
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        let (expect, reject) = if name == "stdout" {
            (&s.expect_stdout, &s.reject_stdout)
        } else {
            (&s.expect_stderr, &s.reject_stderr)
        };
        for re in expect {
            if !re.is_match(text) {
                f.push(format!("{name} has no match for `{}`", re.as_str()));
            }
        }
        for re in reject {
            if let Some(m) = re.find(text) {
                let line = text[..m.start()].matches('\n').count() + 1;
                f.push(format!(
                    "{name} matches rejected `{}` (line {line})",
                    re.as_str()
                ));
            }
        }
    }
    f
}

pub fn file(c: &FileCheck, entry: Option<&Entry>) -> Vec<String> {
    let Some(e) = entry else {
        return if c.exists {
            vec![format!("`{}` does not exist in the image", c.path)]
        } else {
            Vec::new()
        };
    };
    if !c.exists {
        return vec![format!("`{}` exists in the image, want it absent", c.path)];
    }
    let mut f = Vec::new();
    if let Some(m) = &c.mode {
        let have = e.mode_string();
        if *m != have {
            f.push(format!("mode is `{have}`, want `{m}`"));
        }
    }
    if !c.contains.is_empty() {
        if e.kind != '-' {
            f.push(format!(
                "`{}` is not a regular file (`{}`), so `contains` cannot be checked",
                c.path,
                e.mode_string()
            ));
        } else {
            let text = String::from_utf8_lossy(&e.content);
            for re in &c.contains {
                if !re.is_match(&text) {
                    f.push(format!("content has no match for `{}`", re.as_str()));
                }
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::Want;
    use regex::Regex;

    fn meta() -> Value {
        serde_json::json!({
            "Size": 100,
            "Labels": {"org.opencontainers.image.version": "1.2.3", "vendor": "Senex"},
            "Config": {
                "Entrypoint": ["/entrypoint.sh"], "Cmd": ["web"],
                "Env": ["PATH=/bin", "DJANGO_SETTINGS_MODULE=senex.settings"],
                "ExposedPorts": {"8000/tcp": {}}, "User": "app", "WorkingDir": "/app"
            }
        })
    }

    #[test]
    fn metadata_matches_and_mismatches() {
        let v = meta();
        let m = Meta(&v);
        let mut e = Expect {
            entrypoint: Some(vec!["/entrypoint.sh".into()]),
            cmd: Some(vec!["web".into()]),
            exposed_ports: Some(vec!["8000/tcp".into()]),
            user: Some("app".into()),
            workdir: Some("/app".into()),
            ..Expect::default()
        };
        e.labels
            .insert("vendor".into(), Want::Re(Regex::new("^Sen").unwrap()));
        e.env.insert(
            "DJANGO_SETTINGS_MODULE".into(),
            Want::Exact("senex.settings".into()),
        );
        assert_eq!(metadata(&m, &e), Vec::<String>::new());
        e.user = Some("root".into());
        e.labels.insert("missing".into(), Want::Exact("x".into()));
        assert_eq!(
            metadata(&m, &e),
            [
                "label `missing` is missing, want `x`",
                "user is `app`, want `root`"
            ]
        );
    }

    #[test]
    fn streams_report_every_broken_expectation() {
        let s = Streams {
            exit: 0,
            expect_stdout: vec![Regex::new("no issues").unwrap()],
            reject_stdout: vec![Regex::new("Traceback").unwrap()],
            ..Streams::default()
        };
        assert!(streams(&s, Some(0), "System check identified no issues", "").is_empty());
        assert_eq!(
            streams(&s, Some(1), "ok\nTraceback (most recent call last)", ""),
            [
                "exit code 1, want 0",
                "stdout has no match for `no issues`",
                "stdout matches rejected `Traceback` (line 2)"
            ]
        );
    }
}
