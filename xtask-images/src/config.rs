//! `docker/images.toml`: what images a project has and how to build them. Parsing keeps source
//! positions so every mistake is reported as `file:line:col` with the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

use crate::error::InputError;
use crate::{reference, size};

pub const CONFIG_PATH: &str = "docker/images.toml";

/// Dockerfiles looked for, in order, when the config names none.
pub const DOCKERFILE_CANDIDATES: [&str; 3] = ["docker/Dockerfile", "Dockerfile", "Containerfile"];
const DEV_DOCKERFILE_CANDIDATES: [&str; 3] = [
    "docker/Dockerfile.dev",
    "Dockerfile.dev",
    "Containerfile.dev",
];

/// Labels computed from git for every build; the config may not set them.
pub const COMPUTED_LABELS: [&str; 3] = [
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
];

#[derive(Debug)]
pub struct Config {
    /// `engine = "podman" | "docker"`: which engine, when neither `--engine` nor
    /// `XTASK_ENGINE` says.
    pub engine: Option<crate::engine::EngineKind>,
    pub registry: Option<Located<String>>,
    pub registry_insecure: bool,
    pub push_attempts: Option<u32>,
    /// How long one push or tag copy may take before it is stopped as stalled (and retried).
    pub push_timeout: Option<std::time::Duration>,
    /// Commands run after a successful rollback (a redeploy).
    pub rollback_commands: Vec<Vec<String>>,
    pub version: Option<Located<String>>,
    /// How release tags are written (`version_scheme`, `tag_pattern`).
    pub scheme: crate::version::Scheme,
    pub images: Vec<Image>,
    pub context: ContextPolicy,
    /// `[check] allow`: findings the project accepts, each with its reason.
    pub check_allow: Vec<Allow>,
    /// `[scan]`: the vulnerability gate `scan` and `release` apply.
    pub scan: Option<ScanConfig>,
    /// `[sbom]`: the SBOM `release` writes next to every release.
    pub sbom: Option<SbomConfig>,
    /// `[sign]`: GPG simple signing of every released digest.
    pub sign: Option<SignConfig>,
}

#[derive(Debug, Clone)]
pub struct SignConfig {
    /// The signing key's fingerprint (`XTASK_SIGN_KEY` overrides).
    pub key: Option<String>,
    /// Where consumers read signatures (`file://` or `https://`); `None`: next to the OCI
    /// layouts (`target/images/signatures`), for the embedded destination only.
    pub lookaside: Option<String>,
    /// Where `release` writes them when `lookaside` is not a `file://` URL.
    pub lookaside_staging: Option<String>,
    /// The public key consumers verify with (a file, relative to the project); `None`: exported
    /// from the GPG keyring.
    pub public_key: Option<std::path::PathBuf>,
    /// `docker/images.toml:LINE` of `[sign]`, for errors.
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub scanner: crate::scan::Scanner,
    /// argv; `{archive}` is the image's OCI archive.
    pub command: Vec<String>,
    pub policy: crate::scan::Policy,
}

#[derive(Debug, Clone)]
pub struct SbomConfig {
    /// `spdx-json` or `cyclonedx-json`.
    pub format: String,
    /// argv; `{archive}` is the image's OCI archive, `{format}` the format.
    pub command: Vec<String>,
}

/// One accepted finding: `{ kind = "…", path = "glob", reason = "…" }`.
#[derive(Debug, Clone)]
pub struct Allow {
    pub kind: String,
    pub path: String,
    pub reason: String,
    pub origin: String,
}

/// `[context]`: what `check` enforces on every image's build context.
#[derive(Debug, Default)]
pub struct ContextPolicy {
    /// Globs of paths that must never be sent: errors.
    pub must_exclude: Vec<Located<String>>,
    /// Globs of paths exempt from the built-in secret and bloat lists.
    pub allow: Vec<Located<String>>,
    pub max_size: Option<u64>,
    pub max_files: Option<u64>,
}

#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub dockerfile: Located<PathBuf>,
    pub dev_dockerfile: Option<Located<PathBuf>>,
    pub context: Located<PathBuf>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub max_size: Option<u64>,
    /// Layer budgets: checked by `test` when any is set.
    pub budgets: Budgets,
    pub before_build: Vec<Vec<String>>,
    /// Empty: the engine's native platform.
    pub platforms: Vec<String>,
    pub smoke: crate::smoke::Suite,
    /// The project's shared layer cache (`cache.registry`), for `--cache-from`/`--cache-to`.
    pub cache: Option<CacheRepo>,
}

/// What an image's layers may cost (`cargo xtask layers` computes the figures).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub max_layer_size: Option<u64>,
    /// `Σ min / Σ cumulative`, 0 to 1.
    pub min_efficiency: Option<f64>,
    pub max_wasted: Option<u64>,
    /// 0 to 100.
    pub max_user_wasted_percent: Option<f64>,
}

impl Budgets {
    pub fn any(&self) -> bool {
        *self != Budgets::default()
    }
}

/// A registry repository podman pushes step images to and pulls them from, tagged by its own
/// cache keys, so a fresh CI machine reuses the layers another machine built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRepo {
    pub repo: Located<String>,
    /// Plain HTTP or an unverified certificate (`--tls-verify=false`).
    pub insecure: bool,
}

/// A value and where it was set (`docker/images.toml:5:14`), or how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    engine: Option<Spanned<String>>,
    registry: Option<Spanned<String>>,
    registry_insecure: Option<bool>,
    push_attempts: Option<Spanned<u32>>,
    push_timeout: Option<Spanned<String>>,
    rollback: Option<RawRollback>,
    cache: Option<RawCache>,
    version: Option<Spanned<String>>,
    version_scheme: Option<Spanned<String>>,
    tag_pattern: Option<Spanned<String>>,
    #[serde(default)]
    image: Vec<RawImage>,
    context: Option<RawContext>,
    check: Option<RawCheck>,
    scan: Option<RawScan>,
    sbom: Option<RawSbom>,
    sign: Option<Spanned<RawSign>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    scanner: Spanned<String>,
    command: Option<Vec<String>>,
    fail_on: Option<Spanned<String>>,
    ignore_unfixed: Option<bool>,
    #[serde(default)]
    waive: Vec<Spanned<RawWaiver>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    id: String,
    until: Spanned<String>,
    reason: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSign {
    key: Option<String>,
    lookaside: Option<Spanned<String>>,
    lookaside_staging: Option<Spanned<String>>,
    public_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSbom {
    tool: Spanned<String>,
    format: Option<Spanned<String>>,
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    allow: Vec<Spanned<RawAllow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    kind: String,
    path: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    registry: Spanned<String>,
    insecure: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollback {
    commands: Spanned<Vec<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default)]
    must_exclude: Vec<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    max_size: Option<Spanned<SizeValue>>,
    max_files: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Spanned<String>,
    dockerfile: Option<Spanned<String>>,
    dev_dockerfile: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    target: Option<String>,
    #[serde(default)]
    build_args: BTreeMap<String, String>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    max_size: Option<Spanned<SizeValue>>,
    max_layer_size: Option<Spanned<SizeValue>>,
    min_efficiency: Option<Spanned<NumberValue>>,
    max_wasted: Option<Spanned<SizeValue>>,
    max_user_wasted_percent: Option<Spanned<NumberValue>>,
    before_build: Option<Spanned<Vec<Vec<String>>>>,
    platforms: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    smoke: Vec<crate::smoke::RawTest>,
    expect: Option<crate::smoke::RawExpect>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// A fraction or percentage, or `"disabled"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberValue {
    Int(i64),
    Float(f64),
    Text(String),
}

/// Reads the project's config, or makes the default one when there is no file.
pub fn load(root: &Path) -> Result<Config> {
    let path = root.join(CONFIG_PATH);
    match std::fs::read(&path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse(root, CONFIG_PATH, &text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
                Err(crate::input_error!(
                    "{CONFIG_PATH}:{line}: not UTF-8 text (byte {at} cannot be decoded); TOML files are UTF-8: re-save it as UTF-8"
                ))
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default_config(root)),
        Err(e) => Err(anyhow::anyhow!("cannot read `{}`: {e}", path.display())),
    }
}

fn default_config(root: &Path) -> Config {
    let dir_name = root
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    Config {
        engine: None,
        registry: None,
        registry_insecure: false,
        push_attempts: None,
        push_timeout: None,
        rollback_commands: Vec::new(),
        version: None,
        images: vec![default_image(root, reference::repository_from(&dir_name))],
        check_allow: Vec::new(),
        scan: None,
        sbom: None,
        sign: None,
        scheme: Default::default(),
        context: ContextPolicy::default(),
    }
}

fn default_image(root: &Path, name: String) -> Image {
    Image {
        name,
        dockerfile: discover(root, &DOCKERFILE_CANDIDATES).unwrap_or_else(|| Located {
            value: PathBuf::from(DOCKERFILE_CANDIDATES[0]),
            origin: format!("none of {} exists", DOCKERFILE_CANDIDATES.join(", ")),
        }),
        dev_dockerfile: discover(root, &DEV_DOCKERFILE_CANDIDATES),
        context: Located {
            value: PathBuf::from("."),
            origin: "default".into(),
        },
        target: None,
        build_args: BTreeMap::new(),
        labels: BTreeMap::new(),
        max_size: None,
        budgets: Budgets::default(),
        before_build: Vec::new(),
        platforms: Vec::new(),
        smoke: crate::smoke::Suite::default(),
        cache: None,
    }
}

fn discover(root: &Path, candidates: &[&str]) -> Option<Located<PathBuf>> {
    candidates
        .iter()
        .find(|c| root.join(c).is_file())
        .map(|c| Located {
            value: PathBuf::from(c),
            origin: "found by looking".into(),
        })
}

/// Parses config text; `file` is the name used in messages.
pub fn parse(root: &Path, file: &str, text: &str) -> Result<Config> {
    let at = |span: std::ops::Range<usize>| format!("{file}:{}", line_col(text, span.start));
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let place = e.span().map(&at).unwrap_or_else(|| file.to_string());
        let message = e.message().trim_end();
        let suggestion = did_you_mean(message)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        InputError(format!("{place}: {message}{suggestion}"))
    })?;
    let located = |s: Spanned<String>| Located {
        origin: at(s.span()),
        value: s.into_inner(),
    };
    let fail =
        |span, msg: String| -> anyhow::Error { InputError(format!("{}: {msg}", at(span))).into() };

    if let Some(r) = &raw.registry {
        reference::check_registry(r.get_ref()).map_err(|e| fail(r.span(), e))?;
    }
    let cache = match raw.cache {
        Some(c) => {
            reference::check_registry(c.registry.get_ref())
                .map_err(|e| fail(c.registry.span(), format!("cache.{e}")))?;
            Some(CacheRepo {
                insecure: c.insecure.unwrap_or(false),
                repo: located(c.registry),
            })
        }
        None => None,
    };
    let mut images = Vec::new();
    for ri in raw.image {
        let name_span = ri.name.span();
        let name = ri.name.into_inner();
        reference::check_repository(&name).map_err(|e| fail(name_span.clone(), e))?;
        if images.iter().any(|i: &Image| i.name == name) {
            return Err(fail(
                name_span,
                format!("a second image is named `{name}`; image names must be unique"),
            ));
        }
        let mut image = default_image(root, name);
        if let Some(d) = ri.dockerfile {
            image.dockerfile = located(d).map(PathBuf::from);
            // An image with a Dockerfile of its own has the dev Dockerfile beside it, if any:
            // the project's `docker/Dockerfile.dev` belongs to the default image.
            let mut dev = image.dockerfile.value.clone().into_os_string();
            dev.push(".dev");
            image.dev_dockerfile = discover(root, &[&dev.to_string_lossy()]);
        }
        if let Some(d) = ri.dev_dockerfile {
            image.dev_dockerfile = Some(located(d).map(PathBuf::from));
        }
        if let Some(c) = ri.context {
            image.context = located(c).map(PathBuf::from);
        }
        image.target = ri.target;
        image.build_args = ri.build_args;
        if let Some(labels) = ri.labels {
            let span = labels.span();
            image.labels = labels.into_inner();
            if let Some(key) = image
                .labels
                .keys()
                .find(|k| COMPUTED_LABELS.contains(&k.as_str()))
            {
                return Err(fail(
                    span,
                    format!(
                        "label `{key}` is set from git on every build; remove it from `labels`"
                    ),
                ));
            }
        }
        if let Some(v) = ri.max_layer_size {
            image.budgets.max_layer_size =
                budget_size("max_layer_size", v).map_err(|(span, e)| fail(span, e))?;
        }
        if let Some(v) = ri.max_wasted {
            image.budgets.max_wasted =
                budget_size("max_wasted", v).map_err(|(span, e)| fail(span, e))?;
        }
        if let Some(v) = ri.min_efficiency {
            image.budgets.min_efficiency =
                budget_number("min_efficiency", 1.0, v).map_err(|(span, e)| fail(span, e))?;
        }
        if let Some(v) = ri.max_user_wasted_percent {
            image.budgets.max_user_wasted_percent =
                budget_number("max_user_wasted_percent", 100.0, v)
                    .map_err(|(span, e)| fail(span, e))?;
        }
        if let Some(ms) = ri.max_size {
            image.max_size = Some(size_value(ms).map_err(|(span, e)| fail(span, e))?);
        }
        if let Some(hooks) = ri.before_build {
            let span = hooks.span();
            image.before_build = hooks.into_inner();
            if image.before_build.iter().any(|c| c.is_empty()) {
                return Err(fail(
                    span,
                    "a `before_build` command is empty; write it as [\"program\", \"arg\", …]"
                        .into(),
                ));
            }
        }
        if let Some(p) = ri.platforms {
            let span = p.span();
            image.platforms = p.into_inner();
            if let Some(bad) = image.platforms.iter().find(|p| check_platform(p).is_err()) {
                return Err(fail(span, check_platform(bad).unwrap_err()));
            }
        }
        image.smoke =
            crate::smoke::parse_suite(ri.smoke, ri.expect).map_err(|(span, e)| fail(span, e))?;
        image.cache = cache.clone();
        images.push(image);
    }
    if images.is_empty() {
        images = default_config(root).images;
        for i in &mut images {
            i.cache = cache.clone();
        }
    }
    let mut context = ContextPolicy::default();
    if let Some(rc) = raw.context {
        for g in rc.must_exclude.iter().chain(&rc.allow) {
            check_glob(g.get_ref()).map_err(|e| fail(g.span(), e))?;
        }
        context.must_exclude = rc.must_exclude.into_iter().map(located).collect();
        context.allow = rc.allow.into_iter().map(located).collect();
        if let Some(ms) = rc.max_size {
            context.max_size = Some(size_value(ms).map_err(|(span, e)| fail(span, e))?);
        }
        context.max_files = rc.max_files;
    }
    if let Some(a) = &raw.push_attempts {
        if !(1..=20).contains(a.get_ref()) {
            return Err(fail(
                a.span(),
                "push_attempts must be from 1 to 20 (each retry waits twice as long as the last)"
                    .into(),
            ));
        }
    }
    let push_timeout = match &raw.push_timeout {
        Some(t) => Some(
            crate::smoke::duration(t.get_ref())
                .map_err(|e| fail(t.span(), format!("push_timeout {e}")))?,
        ),
        None => None,
    };
    let rollback_commands = match raw.rollback {
        Some(r) => {
            let span = r.commands.span();
            let c = r.commands.into_inner();
            if c.iter().any(|c| c.is_empty()) {
                return Err(fail(
                    span,
                    "a rollback command is empty; write it as [\"program\", \"arg\", …]".into(),
                ));
            }
            c
        }
        None => Vec::new(),
    };
    let mut check_allow = Vec::new();
    for a in raw.check.map(|c| c.allow).unwrap_or_default() {
        let span = a.span();
        let a = a.into_inner();
        let kinds = crate::tasks::check::KINDS;
        if a.kind != "*" && !kinds.contains(&a.kind.as_str()) {
            return Err(fail(
                span,
                format!(
                    "[check] allow: unknown kind `{}`; kinds are {}, or `*`",
                    a.kind,
                    kinds.join(", ")
                ),
            ));
        }
        check_glob(&a.path).map_err(|e| fail(span.clone(), format!("[check] allow: {e}")))?;
        let Some(reason) = a.reason.filter(|r| !r.trim().is_empty()) else {
            return Err(fail(
                span,
                "[check] allow: say why with `reason = \"…\"`: it is shown wherever the finding is"
                    .into(),
            ));
        };
        check_allow.push(Allow {
            kind: a.kind,
            path: a.path,
            reason,
            origin: at(span),
        });
    }
    let scan = match raw.scan {
        None => None,
        Some(rs) => {
            let scanner = crate::scan::Scanner::parse(rs.scanner.get_ref()).ok_or_else(|| {
                fail(
                    rs.scanner.span(),
                    format!(
                        "scan.scanner `{}`: use \"trivy\" or \"grype\" (and `command` for another invocation)",
                        rs.scanner.get_ref()
                    ),
                )
            })?;
            let fail_on = match rs.fail_on {
                None => crate::scan::Severity::High,
                Some(f) => crate::scan::Severity::parse(f.get_ref()).ok_or_else(|| {
                    fail(
                        f.span(),
                        format!(
                            "scan.fail_on `{}`: one of CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN",
                            f.get_ref()
                        ),
                    )
                })?,
            };
            let mut waivers = Vec::new();
            for w in rs.waive {
                let origin = at(w.span());
                let w = w.into_inner();
                let ends = crate::timefmt::parse_date(w.until.get_ref()).ok_or_else(|| {
                    fail(
                        w.until.span(),
                        format!(
                            "scan.waive.until `{}` is not a date; write YYYY-MM-DD",
                            w.until.get_ref()
                        ),
                    )
                })? + 86_400;
                if w.reason.get_ref().trim().is_empty() {
                    return Err(fail(
                        w.reason.span(),
                        "scan.waive.reason is empty; say why the finding is accepted".into(),
                    ));
                }
                waivers.push(crate::scan::Waiver {
                    id: w.id,
                    until: w.until.into_inner(),
                    ends,
                    reason: w.reason.into_inner(),
                    origin,
                });
            }
            Some(ScanConfig {
                command: rs.command.unwrap_or_else(|| scanner.default_command()),
                scanner,
                policy: crate::scan::Policy {
                    fail_on,
                    ignore_unfixed: rs.ignore_unfixed.unwrap_or(false),
                    waivers,
                },
            })
        }
    };
    let sbom = match raw.sbom {
        None => None,
        Some(rs) => {
            if rs.tool.get_ref() != "syft" {
                return Err(fail(
                    rs.tool.span(),
                    format!(
                        "sbom.tool `{}`: only \"syft\" is known (set `command` for another)",
                        rs.tool.get_ref()
                    ),
                ));
            }
            let format = match rs.format {
                None => "spdx-json".to_string(),
                Some(f) if ["spdx-json", "cyclonedx-json"].contains(&f.get_ref().as_str()) => {
                    f.into_inner()
                }
                Some(f) => {
                    return Err(fail(
                        f.span(),
                        format!(
                            "sbom.format `{}`: \"spdx-json\" or \"cyclonedx-json\"",
                            f.get_ref()
                        ),
                    ))
                }
            };
            Some(SbomConfig {
                command: rs.command.unwrap_or_else(|| {
                    [
                        "syft",
                        "--quiet",
                        "--output",
                        "{format}",
                        "oci-archive:{archive}",
                    ]
                    .map(String::from)
                    .to_vec()
                }),
                format,
            })
        }
    };
    let engine = match &raw.engine {
        None => None,
        Some(e) => Some(
            crate::engine::EngineKind::parse(e.get_ref()).ok_or_else(|| {
                fail(
                    e.span(),
                    format!("engine `{}`: one of \"podman\" or \"docker\"", e.get_ref()),
                )
            })?,
        ),
    };
    use crate::version::Scheme;
    let scheme = match (&raw.version_scheme, &raw.tag_pattern) {
        (Some(v), Some(_)) if v.get_ref() != "pattern" => {
            return Err(fail(
                v.span(),
                "version_scheme and tag_pattern: a tag_pattern is its own scheme; drop version_scheme (or set it to \"pattern\")".into(),
            ))
        }
        (_, Some(p)) => {
            let re = regex::Regex::new(p.get_ref())
                .map_err(|e| fail(p.span(), format!("tag_pattern is not a regex: {}", e.to_string().lines().last().unwrap_or(""))))?;
            let names: Vec<&str> = re.capture_names().flatten().collect();
            if !names.contains(&"major") || !names.contains(&"minor") {
                return Err(fail(
                    p.span(),
                    "tag_pattern needs the named groups `major` and `minor` (and may have `patch`), like \"(?P<major>\\d+)\\.(?P<minor>\\d+)-(?P<patch>\\d+)\" for `12.1-0`".into(),
                ));
            }
            Scheme::Pattern(re)
        }
        (Some(v), None) => match v.get_ref().as_str() {
            "semver" => Scheme::Semver,
            "semver-lenient" => Scheme::Lenient,
            "calver" => Scheme::Calver,
            other => {
                return Err(fail(
                    v.span(),
                    format!("version_scheme `{other}`: one of \"semver\" (the default), \"semver-lenient\" (`v7.3` is 7.3.0), \"calver\" (`2024.05.1`), or set tag_pattern"),
                ))
            }
        },
        (None, None) => Scheme::Semver,
    };
    let sign = match raw.sign {
        None => None,
        Some(rs) => {
            let origin = at(rs.span());
            let rs = rs.into_inner();
            for url in [&rs.lookaside, &rs.lookaside_staging].into_iter().flatten() {
                let u = url.get_ref();
                let ok = u.starts_with("file:///")
                    || u.starts_with("https://")
                    || u.starts_with("http://");
                if !ok {
                    return Err(fail(
                        url.span(),
                        format!("sign: `{u}` is not a lookaside URL: write `file:///abs/dir` or `https://host/path`"),
                    ));
                }
            }
            if let Some(st) = &rs.lookaside_staging {
                if !st.get_ref().starts_with("file:///") {
                    return Err(fail(
                        st.span(),
                        "sign.lookaside_staging is where signatures are written: a `file:///` directory".into(),
                    ));
                }
            }
            Some(SignConfig {
                key: rs.key,
                lookaside: rs.lookaside.map(Spanned::into_inner),
                lookaside_staging: rs.lookaside_staging.map(Spanned::into_inner),
                public_key: rs.public_key.map(|p| root.join(p)),
                origin,
            })
        }
    };
    Ok(Config {
        engine,
        scheme,
        sign,
        scan,
        sbom,
        context,
        check_allow,
        registry_insecure: raw.registry_insecure.unwrap_or(false),
        push_attempts: raw.push_attempts.map(Spanned::into_inner),
        push_timeout,
        rollback_commands,
        registry: raw.registry.map(located),
        version: raw.version.map(located),
        images,
    })
}

/// For toml's "unknown field `images`, expected one of `registry`, `image`, …": the expected
/// name one or two edits away, if there is one.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typo, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected one of ")?.1;
    expected
        .split(", ")
        .map(|k| k.trim_matches('`'))
        .map(|k| (edits(typo, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.to_string())
}

/// Levenshtein distance, for short keys.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn size_value(v: Spanned<SizeValue>) -> Result<u64, (std::ops::Range<usize>, String)> {
    let span = v.span();
    match v.into_inner() {
        SizeValue::Bytes(b) => Ok(b),
        SizeValue::Text(t) => size::parse(&t).map_err(|e| (span, format!("max_size {e}"))),
    }
}

/// A layer budget's size: bytes, a size string, or `"disabled"` (None).
fn budget_size(
    key: &str,
    v: Spanned<SizeValue>,
) -> Result<Option<u64>, (std::ops::Range<usize>, String)> {
    let span = v.span();
    match v.into_inner() {
        SizeValue::Text(t) if t == "disabled" => Ok(None),
        SizeValue::Bytes(b) => Ok(Some(b)),
        SizeValue::Text(t) => size::parse(&t)
            .map(Some)
            .map_err(|e| (span, format!("{key} {e}, or \"disabled\""))),
    }
}

/// A layer budget's number within `0..=max`, or `"disabled"` (None).
fn budget_number(
    key: &str,
    max: f64,
    v: Spanned<NumberValue>,
) -> Result<Option<f64>, (std::ops::Range<usize>, String)> {
    let span = v.span();
    let n = match v.into_inner() {
        NumberValue::Text(t) if t == "disabled" => return Ok(None),
        NumberValue::Int(i) => i as f64,
        NumberValue::Float(f) => f,
        NumberValue::Text(t) => {
            return Err((
                span,
                format!("{key} must be a number from 0 to {max}, or \"disabled\"; got `{t}`"),
            ))
        }
    };
    if !(0.0..=max).contains(&n) {
        return Err((span, format!("{key} must be from 0 to {max}; got {n}")));
    }
    Ok(Some(n))
}

/// A glob as `[context]` takes it: `*` and `?` stay within one path component, `**` crosses them.
pub fn glob(pattern: &str) -> Result<globset::Glob, String> {
    // globset's regex for deeply nested alternations can fail to compile (and it panics then).
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut escaped = false;
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > 8 || pattern.len() > 4096 {
        return Err(format!(
            "`{}` is not a usable glob: it nests `{{…}}` {deepest} deep or is {} characters long (at most 8 and 4096)",
            pattern.chars().take(40).collect::<String>(),
            pattern.len()
        ));
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{pattern}` is not a valid glob: {}", e.kind()))
}

/// A Dockerfile path pattern (Go's `filepath.Match` per component) as a matcher: braces are
/// literal there, so they are escaped here, and nothing a Dockerfile says can make globset
/// build a regex it can't compile.
pub fn go_path_glob(pattern: &str) -> Option<globset::GlobMatcher> {
    let escaped: String = pattern
        .chars()
        .flat_map(|c| match c {
            '{' | '}' => vec!['\\', c],
            _ => vec![c],
        })
        .collect();
    glob(&escaped).ok().map(|g| g.compile_matcher())
}

fn check_glob(pattern: &str) -> Result<(), String> {
    glob(pattern).map(|_| ())
}

/// `os/arch[/variant]`, as `--platform` takes it.
pub fn check_platform(p: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "platform `{p}` is not OS/ARCH[/VARIANT], e.g. `linux/amd64` or `linux/arm/v7`"
        ))
    }
}

impl<T> Located<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Located<U> {
        Located {
            value: f(self.value),
            origin: self.origin,
        }
    }
}

/// 1-based `line:col` of a byte offset, counting columns in characters.
fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

impl Config {
    /// The images a command acts on: all, or the one `--image` names.
    pub fn select(&self, name: Option<&str>) -> Result<Vec<&Image>> {
        match name {
            None => Ok(self.images.iter().collect()),
            Some(n) => match self.images.iter().find(|i| i.name == n) {
                Some(i) => Ok(vec![i]),
                None => {
                    let known: Vec<String> = self
                        .images
                        .iter()
                        .map(|i| format!("`{}`", i.name))
                        .collect();
                    Err(InputError(format!(
                        "no image named `{n}`; this project has {}",
                        known.join(", ")
                    ))
                    .into())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        let dir = Path::new("/nonexistent-xtask-test");
        format!("{:#}", parse(dir, "docker/images.toml", text).unwrap_err())
    }

    fn parse_ok(text: &str) -> Config {
        parse(
            Path::new("/nonexistent-xtask-test"),
            "docker/images.toml",
            text,
        )
        .unwrap()
    }

    #[test]
    fn full_example() {
        let c = parse_ok(
            r#"
registry = "ghcr.io/acme"
[[image]]
name = "senex_trader"
dockerfile = "docker/Dockerfile"
dev_dockerfile = "docker/Dockerfile.dev"
context = "."
target = "runtime"
build_args = { PYTHON_VERSION = "3.12", ENVIRONMENT = "production" }
labels = { "org.opencontainers.image.title" = "Senex Trader" }
max_size = "500MB"
before_build = [["make", "assets"]]
"#,
        );
        assert_eq!(c.registry.as_ref().unwrap().value, "ghcr.io/acme");
        assert_eq!(c.registry.unwrap().origin, "docker/images.toml:2:12");
        let i = &c.images[0];
        assert_eq!(i.name, "senex_trader");
        assert_eq!(i.dockerfile.value, PathBuf::from("docker/Dockerfile"));
        assert_eq!(i.dockerfile.origin, "docker/images.toml:5:14");
        assert_eq!(i.target.as_deref(), Some("runtime"));
        assert_eq!(i.build_args["PYTHON_VERSION"], "3.12");
        assert_eq!(i.max_size, Some(500_000_000));
        assert_eq!(
            i.before_build,
            vec![vec!["make".to_string(), "assets".to_string()]]
        );
    }

    #[test]
    fn errors_name_the_place_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("[[image]]\nname = \"a\"\ntagz = 1\n", "docker/images.toml:3:1: unknown field `tagz`, expected one of `name`, `dockerfile`"),
            ("registri = \"x\"\n", "docker/images.toml:1:1: unknown field `registri`, expected one of `engine`, `registry`, `registry_insecure`"),
            ("[[image]]\nname = 5\n", "docker/images.toml:2:8: invalid type: integer `5`, expected a string"),
            ("[[image]]\nname = \"a\"\nmax_size = \"5 parsecs\"\n", "docker/images.toml:3:12: max_size `5 parsecs` has an unknown unit `parsecs`"),
            ("[[image]]\nname = \"Senex\"\n", "docker/images.toml:2:8: `Senex` is not a valid image name"),
            ("[[image]]\nname = \"a\"\n[[image]]\nname = \"a\"\n", "docker/images.toml:4:8: a second image is named `a`"),
            ("registry = \"https://ghcr.io/x\"\n", "docker/images.toml:1:12: registry `https://ghcr.io/x` has a scheme"),
            ("[[image]]\nname = \"a\"\nlabels = { \"org.opencontainers.image.version\" = \"1\" }\n", "docker/images.toml:3:10: label `org.opencontainers.image.version` is set from git"),
            ("[[image]]\nname = \"a\"\nbefore_build = [[]]\n", "docker/images.toml:3:16: a `before_build` command is empty"),
            ("engine = \"dockr\"\n", "docker/images.toml:1:10: engine `dockr`: one of \"podman\" or \"docker\""),
            ("[[image]\n", "docker/images.toml:1:"),
            ("[[image]]\nname = \"a\"\nplatforms = [\"amd64\"]\n", "docker/images.toml:3:13: platform `amd64` is not OS/ARCH[/VARIANT]"),
            ("[context]\nmust_exclude = [\"a[\"]\n", "docker/images.toml:2:17: `a[` is not a valid glob"),
            ("[context]\nmax_files = \"x\"\n", "docker/images.toml:2:13: invalid type: string \"x\", expected u64"),
            ("[context]\nmax_size = \"1 parsec\"\n", "docker/images.toml:2:12: max_size `1 parsec` has an unknown unit"),
            ("[context]\nmaxsize = 1\n", "docker/images.toml:2:1: unknown field `maxsize`, expected one of `must_exclude`, `allow`, `max_size`, `max_files` (did you mean `max_size`?)"),
            ("[[images]]\nname = \"a\"\n", "docker/images.toml:1:3: unknown field `images`, expected one of `engine`, `registry`, `registry_insecure`, `push_attempts`, `push_timeout`, `rollback`, `cache`, `version`, `version_scheme`, `tag_pattern`, `image`, `context`, `check`, `scan`, `sbom`, `sign` (did you mean `image`?)"),
        ];
        for (text, want) in cases {
            let got = parse_err(text);
            assert!(
                got.starts_with(want),
                "for {text:?}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn no_images_means_the_default_one() {
        let c = parse_ok("registry = \"ghcr.io/acme\"\n");
        assert_eq!(c.images.len(), 1);
        assert_eq!(c.images[0].context.value, PathBuf::from("."));
    }

    #[test]
    fn selects_by_name() {
        let c = parse_ok("[[image]]\nname = \"a\"\n[[image]]\nname = \"b\"\n");
        assert_eq!(c.select(None).unwrap().len(), 2);
        assert_eq!(c.select(Some("b")).unwrap()[0].name, "b");
        let err = c.select(Some("z")).unwrap_err().to_string();
        assert_eq!(err, "no image named `z`; this project has `a`, `b`");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 4), "2:2");
        assert_eq!(line_col("é = 1", 3), "1:3");
    }
}
