//! The container engine: which features it has, and the exact argv of every engine command, as
//! pure functions of data so `--dry-run` and golden tests see exactly what runs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::exec::Sh;
use crate::statedir::StateDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Podman,
    Docker,
}

impl EngineKind {
    /// The engine a config or `XTASK_ENGINE` names, spelt as `--engine` takes it.
    pub fn parse(s: &str) -> Option<EngineKind> {
        <EngineKind as clap::ValueEnum>::from_str(s, false).ok()
    }

    /// The engine when nothing names one: podman where it is installed, else docker where it
    /// is, else podman (whose absence is then reported by name).
    pub fn installed() -> EngineKind {
        if !installed(EngineKind::Podman) && installed(EngineKind::Docker) {
            EngineKind::Docker
        } else {
            EngineKind::Podman
        }
    }
}

/// Build flags this engine's `build --help` lists; never inferred from a version number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Features {
    pub layers: bool,
    pub timestamp: bool,
    pub cache_from: bool,
    pub cache_to: bool,
    pub manifest: bool,
    /// `--build-context NAME=container-image://REF`: a base built in the same run.
    #[serde(default)]
    pub build_context: bool,
    /// `major.minor` from `--version`: only for Dockerfile syntax, which no help text lists.
    #[serde(default)]
    pub version: Option<(u32, u32)>,
}

impl Features {
    pub fn from_help(build_help: &str) -> Features {
        let has = |flag: &str| {
            build_help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
                .any(|t| t == flag)
        };
        Features {
            layers: has("--layers"),
            timestamp: has("--timestamp"),
            cache_from: has("--cache-from"),
            cache_to: has("--cache-to"),
            manifest: has("--manifest"),
            build_context: has("--build-context"),
            version: None,
        }
    }
}

/// `major.minor` of `podman version 4.3.1` / `Docker version 20.10.24+dfsg1, build …`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Dockerfile syntax the engine's version can't build, as `(line, why)`: caught before the
/// engine runs, which would otherwise fail mid-build or build something else.
pub fn unsupported_syntax(
    kind: EngineKind,
    version: Option<(u32, u32)>,
    instrs: &[crate::dockerfile::Instruction],
) -> Vec<(usize, String)> {
    let Some(v) = version.filter(|_| kind == EngineKind::Podman) else {
        return Vec::new();
    };
    let shown = format!("podman {}.{}", v.0, v.1);
    let mut out = Vec::new();
    for i in instrs {
        // Buildah learned heredocs in 1.33 (podman 4.8); before, each body line is read as an
        // instruction of its own (`Unknown instruction: "ECHO"`).
        if !i.heredocs.is_empty() && v < (4, 8) {
            out.push((
                i.line,
                format!(
                    "{} uses a heredoc (`<<`), which {shown} does not support (podman 4.8 or later does); write the body to a file and COPY it, or use `RUN printf …`",
                    i.keyword
                ),
            ));
        }
        if matches!(i.keyword.as_str(), "COPY" | "ADD") && i.flag("exclude").is_some() && v < (5, 0)
        {
            out.push((
                i.line,
                format!(
                    "{} --exclude is not supported by {shown}; exclude the paths in the ignore file instead",
                    i.keyword
                ),
            ));
        }
    }
    out
}

#[derive(Clone, Debug)]
pub struct Engine {
    pub kind: EngineKind,
    pub features: Features,
}

/// Everything one `build` invocation needs, already decided.
#[derive(Debug)]
pub struct BuildSpec<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    pub target: Option<&'a str>,
    pub platform: Option<&'a str>,
    /// Add the image to this manifest list instead of tagging it.
    pub manifest: Option<&'a str>,
    /// Use the layer cache. Off for explicit platforms: podman 4.3 reuses another platform's
    /// cached layers and yields an image of the wrong architecture.
    pub layers: bool,
    pub no_cache: bool,
    /// Seconds since the epoch for every timestamp in the image (reproducible builds).
    pub timestamp: Option<i64>,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// Full references, `name:tag`.
    pub tags: &'a [String],
    /// A registry repository shared as a layer cache, and whether it is plain HTTP.
    pub cache_repo: Option<(&'a str, bool)>,
    /// `(reference as the Dockerfile writes it, local image)`: the project's own bases.
    pub contexts: &'a [(String, String)],
    /// The Dockerfile uses what only Docker's image format holds (HEALTHCHECK, SHELL, ONBUILD):
    /// podman's default OCI format would drop it with a warning.
    pub docker_format: bool,
}

impl Engine {
    /// Reads the features from `build --help`, remembered in the state directory for as long
    /// as the engine binary on PATH is the same file, so a no-op build runs no engine command.
    pub fn detect(sh: &Sh, kind: EngineKind, state: &StateDir) -> Result<Engine> {
        let cache = state.base.join(format!("engine-{}.v2.json", program(kind)));
        let binary = which(program(kind));
        if let Some(b) = &binary {
            let remembered = std::fs::read(&cache)
                .ok()
                .and_then(|t| serde_json::from_slice::<DetectedEngine>(&t).ok())
                .filter(|d| &d.binary == b && d.features.version.is_some());
            if let Some(d) = remembered {
                return Ok(Engine {
                    kind,
                    features: d.features,
                });
            }
        }
        let help = sh.read(&Cmd::new(program(kind)).args(["build", "--help"]))?;
        let mut features = Features::from_help(&help);
        features.version = sh
            .read(&Cmd::new(program(kind)).arg("--version"))
            .ok()
            .and_then(|v| parse_version(&v));
        if let Some(binary) = binary.filter(|_| !state.read_only) {
            let d = DetectedEngine { binary, features };
            // Only a cache: failing to write it costs one probe next time.
            let _ = serde_json::to_vec(&d).map(|j| crate::fsx::write_atomic(&cache, j));
        }
        Ok(Engine { kind, features })
    }

    pub fn program(&self) -> &'static str {
        program(self.kind)
    }

    pub fn cmd(&self) -> Cmd {
        Cmd::new(self.program())
    }

    pub fn build(&self, b: &BuildSpec) -> Cmd {
        let mut c = self.cmd().arg("build");
        if self.features.layers {
            // Explicit, because podman's default can be changed by BUILDAH_LAYERS.
            c = c.arg(if b.layers {
                "--layers"
            } else {
                "--layers=false"
            });
        }
        c = c.arg("-f").arg(path(b.dockerfile));
        if b.docker_format && self.kind == EngineKind::Podman {
            c = c.args(["--format", "docker"]);
        }
        if let Some(t) = b.target {
            c = c.args(["--target", t]);
        }
        if let Some(p) = b.platform {
            c = c.args(["--platform", p]);
        }
        if let Some(m) = b.manifest {
            c = c.args(["--manifest", m]);
        }
        if b.no_cache {
            c = c.arg("--no-cache");
        }
        if let (Some(ts), true) = (b.timestamp, self.features.timestamp) {
            c = c.args(["--timestamp".to_string(), ts.to_string()]);
        }
        if let (Some((repo, insecure)), true, false) = (b.cache_repo, b.layers, b.no_cache) {
            if self.features.cache_from {
                c = c.args(["--cache-from", repo]);
            }
            if self.features.cache_to {
                c = c.args(["--cache-to", repo]);
            }
            if insecure && (self.features.cache_from || self.features.cache_to) {
                c = c.arg("--tls-verify=false");
            }
        }
        c = c.repeated(
            "--build-arg",
            b.build_args.iter().map(|(k, v)| format!("{k}={v}")),
        );
        // Docker's legacy builder has none: its bases are named instead (`Plan::base_names`).
        if self.kind == EngineKind::Podman {
            c = c.repeated(
                "--build-context",
                b.contexts
                    .iter()
                    .map(|(r, local)| format!("{r}=container-image://{local}")),
            );
        }
        c = c.repeated("--label", b.labels.iter().map(|(k, v)| format!("{k}={v}")));
        c = c.repeated("-t", b.tags.iter().cloned());
        c.arg(path(b.context))
    }

    /// The image in this engine's local store as skopeo names it ([`local_ref`]).
    pub fn local_ref(&self, image: &str) -> String {
        local_ref(self.kind, image)
    }

    /// Adds `targets` as names of `source`. Podman takes them in one call, docker one by one.
    pub fn tag(&self, source: &str, targets: &[String]) -> Vec<Cmd> {
        match self.kind {
            EngineKind::Podman => vec![self
                .cmd()
                .args(["tag", source])
                .args(targets.iter().cloned())],
            EngineKind::Docker => targets
                .iter()
                .map(|t| self.cmd().args(["tag", source, t]))
                .collect(),
        }
    }

    /// A list made with its images at once: a list created empty and filled by
    /// `build --manifest` keeps the empty list's digest in podman 4.3's records, which every
    /// such list shares, and lookups by digest then mix lists up.
    pub fn manifest_create(&self, list: &str, images: &[String]) -> Cmd {
        self.cmd().args(["manifest", "create", list]).args(
            images
                .iter()
                .map(|i| format!("containers-storage:localhost/{i}")),
        )
    }

    pub fn manifest_exists(&self, list: &str) -> Cmd {
        self.cmd().args(["manifest", "exists", list])
    }

    /// Removes the name of a manifest list (podman 4.3's `rmi`/`untag` refuse list names).
    pub fn manifest_rm(&self, list: &str) -> Cmd {
        self.cmd().args(["manifest", "rm", list])
    }

    pub fn manifest_inspect(&self, list: &str) -> Cmd {
        self.cmd().args(["manifest", "inspect", list])
    }

    pub fn image_exists(&self, reference: &str) -> Cmd {
        match self.kind {
            EngineKind::Podman => self.cmd().args(["image", "exists", reference]),
            EngineKind::Docker => self
                .cmd()
                .args(["image", "inspect", "--format", "{{.Id}}", reference]),
        }
    }

    /// JSON array describing the given images.
    pub fn inspect_images(&self, refs: &[String]) -> Cmd {
        self.cmd()
            .args(["image", "inspect"])
            .args(refs.iter().cloned())
    }

    /// `ID REPOSITORY:TAG` per line for every name in `repository`; the same template works
    /// for both engines.
    pub fn list_names(&self, repository: &str) -> Cmd {
        self.cmd()
            .args([
                "images",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}",
                "--filter",
            ])
            .arg(format!("reference={repository}"))
    }

    /// Podman: the IDs of the images of every container, running or not. Docker's `ps` has no
    /// image ID field: it lists the containers, whose images [`Engine::images_of`] gives.
    pub fn container_images(&self) -> Cmd {
        match self.kind {
            EngineKind::Podman => {
                self.cmd()
                    .args(["ps", "--all", "--no-trunc", "--format", "{{.ImageID}}"])
            }
            EngineKind::Docker => self.cmd().args(["ps", "--all", "--no-trunc", "--quiet"]),
        }
    }

    /// The image ID (`sha256:…`) of each of `containers`, one per line.
    pub fn images_of(&self, containers: &[String]) -> Cmd {
        self.cmd()
            .args(["container", "inspect", "--format", "{{.Image}}"])
            .args(containers.iter().cloned())
    }

    pub fn prune_dangling(&self) -> Cmd {
        self.cmd().args(["image", "prune", "--force"])
    }

    /// Removes names from an image without deleting it while other names or containers hold it.
    pub fn untag(&self, refs: &[String]) -> Vec<Cmd> {
        match self.kind {
            // `untag IMAGE` alone would drop every name of the image; `untag REF REF` drops one.
            EngineKind::Podman => refs
                .iter()
                .map(|r| self.cmd().args(["untag", r, r]))
                .collect(),
            // `docker rmi` of one name of a multi-named image only removes that name.
            EngineKind::Docker => refs.iter().map(|r| self.cmd().args(["rmi", r])).collect(),
        }
    }

    /// Writes `reference` to the archive `output`: OCI for podman; Docker's own format for the
    /// daemon (20.10's `save` has no `--format`, and its `load` keeps the image ID either way).
    pub fn save(&self, output: &str, reference: &str) -> Cmd {
        let c = self.cmd().arg("save");
        let c = match self.kind {
            EngineKind::Podman => c.args(["--format", "oci-archive"]),
            EngineKind::Docker => c,
        };
        c.args(["--output", output, reference])
    }

    /// Writes `image` to the OCI archive `output`, for tools that read images without an
    /// engine: through skopeo from Docker's daemon, whose `save` writes only its own format.
    pub fn oci_archive(&self, output: &str, image: &str) -> Cmd {
        match self.kind {
            EngineKind::Podman => self.save(output, image),
            EngineKind::Docker => self.copy_out(image, format!("oci-archive:{output}")),
        }
    }

    /// Writes `image` to `dir` as an OCI layout with uncompressed layers, for reading here.
    pub fn oci_dir(&self, dir: &str, image: &str) -> Cmd {
        match self.kind {
            EngineKind::Podman => self
                .cmd()
                .args(["save", "--format", "oci-dir", "--output", dir, image]),
            EngineKind::Docker => self.copy_out(image, format!("oci:{dir}")),
        }
    }

    /// `image` copied by skopeo out of the local store to `dest` (a skopeo transport).
    fn copy_out(&self, image: &str, dest: String) -> Cmd {
        Cmd::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(self.local_ref(image))
            .arg(dest)
    }

    pub fn load(&self, input: &str) -> Cmd {
        self.cmd().args(["load", "--input", input])
    }

    pub fn remove_images(&self, refs: &[String]) -> Cmd {
        self.cmd().arg("rmi").args(refs.iter().cloned())
    }
}

/// The engine binary PATH resolves to, with what tells a replaced binary apart.
#[derive(Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
struct Binary {
    path: String,
    size: u64,
    stat: crate::context::Stat,
}

#[derive(Serialize, serde::Deserialize)]
struct DetectedEngine {
    binary: Binary,
    features: Features,
}

/// Whether `program` is an executable on PATH (or a path to one).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return std::fs::metadata(program).is_ok_and(|m| m.is_file());
    }
    which(program).is_some()
}

fn which(program: &str) -> Option<Binary> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let p = dir.join(program);
        let md = std::fs::metadata(&p).ok()?;
        let stat = crate::context::Stat::of(&md);
        (md.is_file() && stat.mode & 0o111 != 0).then(|| Binary {
            path: p.to_string_lossy().into_owned(),
            size: md.len(),
            stat,
        })
    })
}

/// The engine's program is on PATH.
pub fn installed(kind: EngineKind) -> bool {
    which(program(kind)).is_some()
}

pub fn program(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Podman => "podman",
        EngineKind::Docker => "docker",
    }
}

/// Whether `s` is a whole image ID (64 hex digits, no `sha256:`), not a name.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An image in an engine's local store as skopeo names it: `containers-storage:` for podman,
/// the daemon (`docker-daemon:`, an ID as `sha256:ID`) for Docker.
pub fn local_ref(kind: EngineKind, image: &str) -> String {
    match kind {
        EngineKind::Podman => format!("containers-storage:{image}"),
        EngineKind::Docker => {
            let bare = image.strip_prefix("sha256:").unwrap_or(image);
            if is_full_id(bare) {
                format!("docker-daemon:sha256:{bare}")
            } else {
                format!("docker-daemon:{image}")
            }
        }
    }
}

/// Paths go to the engine `/`-separated and relative to the project root, as written.
fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN_HELP: &str = "      --layers                        use intermediate layers during build (default true)
      --cache-from stringArray        remote repository list to utilise as potential cache source.
      --cache-to stringArray          remote repository list to utilise as potential cache destination.
      --manifest string               add the image to the specified manifest list. Creates manifest list if it does not exist
      --timestamp int                 set created timestamp to the specified epoch seconds to allow for deterministic builds, defaults to current time
      --build-context argument=value  argument=value to supply additional build context to the builder
";

    fn podman() -> Engine {
        Engine {
            kind: EngineKind::Podman,
            features: Features::from_help(PODMAN_HELP),
        }
    }

    #[test]
    fn features_come_from_help() {
        assert_eq!(
            Features::from_help(PODMAN_HELP),
            Features {
                layers: true,
                timestamp: true,
                cache_from: true,
                cache_to: true,
                manifest: true,
                build_context: true,
                version: None,
            }
        );
        assert_eq!(parse_version("podman version 4.3.1"), Some((4, 3)));
        assert_eq!(
            parse_version("Docker version 20.10.24+dfsg1, build 297e128"),
            Some((20, 10))
        );
        let docker =
            "      --cache-from strings   External cache sources\n      --iidfile string\n";
        let f = Features::from_help(docker);
        assert!(f.cache_from && !f.layers && !f.timestamp && !f.cache_to);
        // A flag named only in prose is not a flag of ours.
        assert!(!Features::from_help("see --timestamps for details").timestamp);
    }

    #[test]
    fn build_argv() {
        let args = BTreeMap::from([("PYTHON_VERSION".to_string(), "3.12".to_string())]);
        let labels = BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            "Senex Trader".to_string(),
        )]);
        let tags = vec![
            "senex_trader:1.2.3".to_string(),
            "senex_trader:latest".to_string(),
        ];
        let spec = BuildSpec {
            dockerfile: Path::new("docker/Dockerfile"),
            context: Path::new("."),
            target: Some("runtime"),
            platform: Some("linux/arm64"),
            manifest: None,
            layers: false,
            no_cache: true,
            timestamp: Some(1_736_937_000),
            build_args: &args,
            labels: &labels,
            tags: &tags,
            cache_repo: Some(("reg.local:5000/cache", true)),
            contexts: &[],
            docker_format: false,
        };
        assert_eq!(
            podman().build(&spec).to_string(),
            "podman build --layers=false -f docker/Dockerfile --target runtime --platform linux/arm64 --no-cache \
             --timestamp 1736937000 --build-arg PYTHON_VERSION=3.12 \
             --label 'org.opencontainers.image.title=Senex Trader' \
             -t senex_trader:1.2.3 -t senex_trader:latest ."
        );
        let docker = Engine {
            kind: EngineKind::Docker,
            features: Features::default(),
        };
        let plain = BuildSpec {
            target: None,
            platform: None,
            layers: true,
            no_cache: false,
            ..spec
        };
        assert_eq!(
            podman().build(&plain).to_string(),
            "podman build --layers -f docker/Dockerfile --timestamp 1736937000 \
             --cache-from reg.local:5000/cache --cache-to reg.local:5000/cache --tls-verify=false \
             --build-arg PYTHON_VERSION=3.12 --label 'org.opencontainers.image.title=Senex Trader' \
             -t senex_trader:1.2.3 -t senex_trader:latest .",
            "the shared cache only applies when the layer cache does"
        );
        let based = [("pybase".to_string(), "localhost/pybase:1.2.3".to_string())];
        assert_eq!(
            podman()
                .build(&BuildSpec {
                    contexts: &based,
                    cache_repo: None,
                    ..plain
                })
                .to_string(),
            "podman build --layers -f docker/Dockerfile --timestamp 1736937000 \
             --build-arg PYTHON_VERSION=3.12 --build-context pybase=container-image://localhost/pybase:1.2.3 \
             --label 'org.opencontainers.image.title=Senex Trader' \
             -t senex_trader:1.2.3 -t senex_trader:latest .",
            "a base this project builds is passed as the image this run built"
        );
        assert!(
            !docker
                .build(&BuildSpec {
                    contexts: &based,
                    ..plain
                })
                .to_string()
                .contains("--build-context"),
            "the legacy builder has no --build-context"
        );
        assert_eq!(
            docker.build(&plain).to_string(),
            "docker build -f docker/Dockerfile --build-arg PYTHON_VERSION=3.12 \
             --label 'org.opencontainers.image.title=Senex Trader' \
             -t senex_trader:1.2.3 -t senex_trader:latest ."
        );
    }

    #[test]
    fn platforms_match_with_variants_only_when_asked() {
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(platform_matches("linux/arm/v7", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm/v7", "linux/arm/v6"));
        assert!(!platform_matches("linux/arm64", "linux/amd64"));
        let json = r#"{"manifests":[{"platform":{"architecture":"amd64","os":"linux"}},{"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        assert_eq!(
            manifest_platforms(json).unwrap(),
            ["linux/amd64", "linux/arm64/v8"]
        );
    }

    #[test]
    fn tag_argv() {
        let targets = vec!["r.io/a:1".to_string(), "r.io/a:latest".to_string()];
        let p: Vec<String> = podman()
            .tag("a:1", &targets)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(p, ["podman tag a:1 r.io/a:1 r.io/a:latest"]);
        let docker = Engine {
            kind: EngineKind::Docker,
            features: Features::default(),
        };
        let d: Vec<String> = docker
            .tag("a:1", &targets)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            ["docker tag a:1 r.io/a:1", "docker tag a:1 r.io/a:latest"]
        );
    }
}

/// What `image inspect` says of an image, the fields both engines share.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ImageInfo {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(rename = "Os", default)]
    pub os: String,
    #[serde(rename = "Architecture", default)]
    pub architecture: String,
}

impl ImageInfo {
    /// The ID without docker's `sha256:` prefix, as podman prints it.
    pub fn bare_id(&self) -> &str {
        self.id.strip_prefix("sha256:").unwrap_or(&self.id)
    }
}

/// `os/arch[/variant]` of every image in a manifest list.
pub fn manifest_platforms(json: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("unexpected `manifest inspect` output: {e}"))?;
    let entries = v["manifests"].as_array().cloned().unwrap_or_default();
    Ok(entries
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let os = p["os"].as_str().unwrap_or("?");
            let arch = p["architecture"].as_str().unwrap_or("?");
            match p["variant"].as_str().filter(|v| !v.is_empty()) {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            }
        })
        .collect())
}

/// Whether a built platform is the one asked for; a variant counts only when one was asked for
/// (podman records `arm64/v8` for `linux/arm64`).
pub fn platform_matches(asked: &str, built: &str) -> bool {
    let a: Vec<&str> = asked.split('/').collect();
    let b: Vec<&str> = built.split('/').collect();
    a.len() >= 2 && b.len() >= 2 && a[..2] == b[..2] && (a.len() < 3 || a.get(2) == b.get(2))
}

pub fn parse_inspect(json: &str) -> Result<Vec<ImageInfo>> {
    serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("unexpected `image inspect` output: {e}"))
}
