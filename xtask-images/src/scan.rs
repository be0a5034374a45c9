//! The vulnerability gate: a scanner's JSON report (trivy or grype) read into findings, and
//! the project's policy applied to them: a severity threshold, unfixed findings optionally
//! ignored, and waivers that must say why and expire. Pure: the report comes in as text, the
//! verdict goes out as data (and as SARIF).

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_uppercase().as_str() {
            "UNKNOWN" => Severity::Unknown,
            // grype's lowest
            "LOW" | "NEGLIGIBLE" => Severity::Low,
            "MEDIUM" => Severity::Medium,
            "HIGH" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scanner {
    Trivy,
    Grype,
}

impl Scanner {
    pub fn parse(s: &str) -> Option<Scanner> {
        match s {
            "trivy" => Some(Scanner::Trivy),
            "grype" => Some(Scanner::Grype),
            _ => None,
        }
    }

    /// The command that scans an OCI archive and prints its JSON report; `{archive}` is the
    /// archive's path.
    pub fn default_command(self) -> Vec<String> {
        let argv: &[&str] = match self {
            Scanner::Trivy => &[
                "trivy",
                "image",
                "--quiet",
                "--format",
                "json",
                "--input",
                "{archive}",
            ],
            Scanner::Grype => &[
                "grype",
                "--quiet",
                "--output",
                "json",
                "oci-archive:{archive}",
            ],
        };
        argv.iter().map(|s| s.to_string()).collect()
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            Scanner::Trivy => "install trivy (https://trivy.dev, a static binary) or set `[scan] command`",
            Scanner::Grype => "install grype (https://github.com/anchore/grype, a static binary) or set `[scan] command`",
        }
    }
}

/// One vulnerability in one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub package: String,
    pub installed: String,
    /// The version that fixes it, if there is one.
    pub fixed: Option<String>,
    pub severity: Severity,
}

/// Reads a trivy (`Results[].Vulnerabilities[]`) or grype (`matches[]`) JSON report.
pub fn parse_report(scanner: Scanner, text: &str) -> Result<Vec<Finding>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    match scanner {
        Scanner::Trivy => {
            let results = v
                .get("Results")
                .ok_or("no `Results`: not a trivy JSON report (`--format json`)")?;
            for r in results.as_array().into_iter().flatten() {
                for f in r["Vulnerabilities"].as_array().into_iter().flatten() {
                    out.push(Finding {
                        id: s(&f["VulnerabilityID"]),
                        package: s(&f["PkgName"]),
                        installed: s(&f["InstalledVersion"]),
                        fixed: f["FixedVersion"]
                            .as_str()
                            .filter(|x| !x.is_empty())
                            .map(str::to_string),
                        severity: Severity::parse(f["Severity"].as_str().unwrap_or(""))
                            .unwrap_or(Severity::Unknown),
                    });
                }
            }
        }
        Scanner::Grype => {
            let matches = v
                .get("matches")
                .ok_or("no `matches`: not a grype JSON report (`-o json`)")?;
            for m in matches.as_array().into_iter().flatten() {
                let vuln = &m["vulnerability"];
                let fixed = vuln["fix"]["versions"]
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .filter(|_| vuln["fix"]["state"] == "fixed")
                    .map(str::to_string);
                out.push(Finding {
                    id: s(&vuln["id"]),
                    package: s(&m["artifact"]["name"]),
                    installed: s(&m["artifact"]["version"]),
                    fixed,
                    severity: Severity::parse(vuln["severity"].as_str().unwrap_or(""))
                        .unwrap_or(Severity::Unknown),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.cmp(&b.package))
    });
    out.dedup();
    Ok(out)
}

/// `[[scan.waive]]`: a finding accepted until a date, for a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiver {
    pub id: String,
    /// `YYYY-MM-DD`, as written.
    pub until: String,
    /// Start of the day after `until` (UTC): the waiver counts before it.
    pub ends: i64,
    pub reason: String,
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub fail_on: Severity,
    pub ignore_unfixed: bool,
    pub waivers: Vec<Waiver>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At or above the threshold, not waived: stops a release.
    Blocking,
    Waived,
    /// No fixed version, and `ignore_unfixed`.
    Unfixed,
    BelowThreshold,
}

#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    #[serde(flatten)]
    pub finding: Finding,
    pub status: Status,
    /// The waiver that matched: `until` and reason; with `expired`, one that no longer counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverNote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WaiverNote {
    pub until: String,
    pub reason: String,
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub findings: Vec<Judged>,
    pub blocking: usize,
    /// Waivers whose ID no finding has: `id (origin)`.
    pub stale_waivers: Vec<String>,
}

/// Applies the policy at `now` (Unix time).
pub fn judge(findings: &[Finding], policy: &Policy, now: i64) -> Verdict {
    let judged: Vec<Judged> = findings
        .iter()
        .map(|f| {
            let waiver = policy.waivers.iter().find(|w| w.id == f.id);
            let note = waiver.map(|w| WaiverNote {
                until: w.until.clone(),
                reason: w.reason.clone(),
                expired: now >= w.ends,
            });
            let status = if note.as_ref().is_some_and(|n| !n.expired) {
                Status::Waived
            } else if f.severity < policy.fail_on {
                Status::BelowThreshold
            } else if policy.ignore_unfixed && f.fixed.is_none() {
                Status::Unfixed
            } else {
                Status::Blocking
            };
            Judged {
                finding: f.clone(),
                status,
                waiver: note,
            }
        })
        .collect();
    let stale_waivers = policy
        .waivers
        .iter()
        .filter(|w| !findings.iter().any(|f| f.id == w.id))
        .map(|w| format!("{} ({})", w.id, w.origin))
        .collect();
    Verdict {
        blocking: judged
            .iter()
            .filter(|j| j.status == Status::Blocking)
            .count(),
        findings: judged,
        stale_waivers,
    }
}

/// Counts per severity, highest first: `2 CRITICAL, 5 HIGH`.
pub fn counts(findings: &[Judged]) -> Vec<(Severity, usize)> {
    let mut out = Vec::new();
    for s in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ] {
        let n = findings.iter().filter(|j| j.finding.severity == s).count();
        if n > 0 {
            out.push((s, n));
        }
    }
    out
}

/// SARIF 2.1.0, one run per image: a rule per vulnerability, a result per finding (error when
/// blocking, warning otherwise, note when waived), located at the Dockerfile.
pub fn sarif(scanner: Scanner, images: &[(String, String, Verdict)]) -> Value {
    let runs: Vec<Value> = images
        .iter()
        .map(|(name, dockerfile, v)| {
            let mut rules: Vec<Value> = Vec::new();
            for j in &v.findings {
                if !rules.iter().any(|r| r["id"] == j.finding.id.as_str()) {
                    rules.push(serde_json::json!({
                        "id": j.finding.id,
                        "shortDescription": {"text": format!("{} in {}", j.finding.id, j.finding.package)},
                        "properties": {"severity": j.finding.severity.name()},
                    }));
                }
            }
            let results: Vec<Value> = v
                .findings
                .iter()
                .map(|j| {
                    let level = match j.status {
                        Status::Blocking => "error",
                        Status::Waived => "note",
                        _ => "warning",
                    };
                    let fix = j
                        .finding
                        .fixed
                        .as_deref()
                        .map_or("no fixed version".to_string(), |f| format!("fixed in {f}"));
                    serde_json::json!({
                        "ruleId": j.finding.id,
                        "level": level,
                        "message": {"text": format!(
                            "{} {} in image {name}: {} {} ({fix})",
                            j.finding.severity.name(), j.finding.id, j.finding.package, j.finding.installed
                        )},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": dockerfile}}}],
                    })
                })
                .collect();
            serde_json::json!({
                "tool": {"driver": {"name": match scanner { Scanner::Trivy => "trivy", Scanner::Grype => "grype" }, "rules": rules}},
                "results": results,
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIVY: &str = r#"{"SchemaVersion": 2, "ArtifactName": "shop.tar", "Results": [
      {"Target": "shop (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": [
        {"VulnerabilityID": "CVE-2024-0001", "PkgName": "openssl", "InstalledVersion": "3.0.11-1", "FixedVersion": "3.0.13-1", "Severity": "HIGH", "Title": "t"},
        {"VulnerabilityID": "CVE-2024-0002", "PkgName": "zlib1g", "InstalledVersion": "1.2.13", "FixedVersion": "", "Severity": "CRITICAL"},
        {"VulnerabilityID": "CVE-2024-0003", "PkgName": "tar", "InstalledVersion": "1.34", "Severity": "LOW"}]},
      {"Target": "Python", "Class": "lang-pkgs", "Type": "python-pkg", "Vulnerabilities": null}]}"#;

    const GRYPE: &str = r#"{"matches": [
      {"vulnerability": {"id": "CVE-2024-0001", "severity": "High", "fix": {"versions": ["3.0.13-1"], "state": "fixed"}},
       "artifact": {"name": "openssl", "version": "3.0.11-1", "type": "deb"}},
      {"vulnerability": {"id": "GHSA-xxxx", "severity": "Negligible", "fix": {"versions": [], "state": "not-fixed"}},
       "artifact": {"name": "django", "version": "3.2.25", "type": "python"}}],
      "source": {"type": "image"}, "descriptor": {"name": "grype"}}"#;

    fn waiver(id: &str, until: &str) -> Waiver {
        Waiver {
            id: id.into(),
            until: until.into(),
            ends: crate::timefmt::parse_date(until).unwrap() + 86_400,
            reason: "vendor patch pending".into(),
            origin: "docker/images.toml:9:1".into(),
        }
    }

    #[test]
    fn reads_both_report_schemas() {
        let t = parse_report(Scanner::Trivy, TRIVY).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].id, "CVE-2024-0002");
        assert_eq!(t[0].fixed, None);
        assert_eq!(t[1].fixed.as_deref(), Some("3.0.13-1"));
        let g = parse_report(Scanner::Grype, GRYPE).unwrap();
        assert_eq!(g[0].severity, Severity::High);
        assert_eq!(g[1].severity, Severity::Low);
        assert_eq!(g[1].fixed, None);
        assert!(parse_report(Scanner::Trivy, GRYPE)
            .unwrap_err()
            .contains("not a trivy"));
    }

    #[test]
    fn waivers_expire_and_stale_ones_are_named() {
        let f = parse_report(Scanner::Trivy, TRIVY).unwrap();
        let now = crate::timefmt::parse_date("2026-12-02").unwrap() + 3600;
        let policy = Policy {
            fail_on: Severity::High,
            ignore_unfixed: false,
            waivers: vec![
                waiver("CVE-2024-0001", "2027-03-01"),
                waiver("CVE-2024-0002", "2026-12-01"),
                waiver("CVE-1999-0001", "2027-01-01"),
            ],
        };
        let v = judge(&f, &policy, now);
        let st: Vec<(&str, Status)> = v
            .findings
            .iter()
            .map(|j| (j.finding.id.as_str(), j.status))
            .collect();
        assert_eq!(
            st,
            [
                ("CVE-2024-0002", Status::Blocking),
                ("CVE-2024-0001", Status::Waived),
                ("CVE-2024-0003", Status::BelowThreshold)
            ]
        );
        assert!(v.findings[0].waiver.as_ref().unwrap().expired);
        assert_eq!(v.blocking, 1);
        assert_eq!(v.stale_waivers, ["CVE-1999-0001 (docker/images.toml:9:1)"]);
        // A waiver counts through its last day.
        let last_day = crate::timefmt::parse_date("2026-12-01").unwrap() + 86_399;
        assert_eq!(judge(&f, &policy, last_day).blocking, 0);
        let unfixed = Policy {
            ignore_unfixed: true,
            waivers: Vec::new(),
            ..policy
        };
        let v = judge(&f, &unfixed, now);
        assert_eq!(v.findings[0].status, Status::Unfixed);
        assert_eq!(v.blocking, 1, "the fixable HIGH still blocks");
        let s = sarif(
            Scanner::Trivy,
            &[("shop".into(), "docker/Dockerfile".into(), v)],
        );
        assert_eq!(s["runs"][0]["results"][1]["level"], "error");
        assert_eq!(s["version"], "2.1.0");
    }
}
