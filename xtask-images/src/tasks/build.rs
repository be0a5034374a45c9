//! `cargo xtask build`: decide every image's build (pure), then run it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cache::{self, Action, ImagePlan, KeyInputs, Memory};
use crate::cmd::Cmd;
use crate::config::{check_platform, Image, DOCKERFILE_CANDIDATES};
use crate::engine::{
    manifest_platforms, parse_inspect, platform_matches, BuildSpec, Engine, EngineKind, ImageInfo,
};
use crate::flags::BuildArgs;
use crate::graph::Node;
use crate::project::{Ctx, Identity};
use crate::{input_error, labels, size};

/// One image's build, fully decided.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub hooks: Vec<Cmd>,
    /// Under Docker, the project's bases named as the Dockerfile's `FROM` writes them, right
    /// before the build: the legacy builder has no `--build-context`, and a `FROM` finds the
    /// daemon's own image by that name.
    pub base_names: Vec<Cmd>,
    /// One build, or one per platform into the manifest list.
    pub builds: Vec<Cmd>,
    pub manifest: Option<Manifest>,
    /// Platforms asked for explicitly; what was built is checked against them.
    pub platforms: Vec<String>,
    /// `name:tag`, primary first.
    pub refs: Vec<String>,
    /// What the cache keys are computed from.
    pub keys: KeyInputs,
}

/// A multi-platform build: a manifest list under the primary name, then the other names.
#[derive(Debug)]
pub struct Manifest {
    pub list: String,
    pub create: Cmd,
    pub tag: Vec<Cmd>,
}

pub fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(input_error!("--build-arg `{kv}` must be KEY=VALUE")),
        })
        .collect()
}

/// Which Dockerfile the build uses, checked to exist, with the config line in the error if not.
pub fn dockerfile(root: &Path, image: &Image, dev: bool) -> Result<PathBuf> {
    let chosen = if dev {
        image.dev_dockerfile.as_ref().ok_or_else(|| {
            input_error!(
                "image `{}` has no dev Dockerfile; create docker/Dockerfile.dev or set `dev_dockerfile` in docker/images.toml",
                image.name
            )
        })?
    } else {
        &image.dockerfile
    };
    if root.join(&chosen.value).is_file() {
        return Ok(chosen.value.clone());
    }
    if chosen.origin.starts_with("none of") {
        return Err(input_error!(
            "image `{}` has no Dockerfile: none of {} exists; create one or set `dockerfile` in docker/images.toml",
            image.name,
            DOCKERFILE_CANDIDATES.join(", ")
        ));
    }
    Err(input_error!(
        "Dockerfile `{}` not found (set at {}); create it or fix the path",
        chosen.value.display(),
        chosen.origin
    ))
}

/// Fails, before the engine runs, on Dockerfile syntax this engine's version can't build.
/// Parse errors are left to the key computation, which reports them with their line.
fn refuse_unsupported_syntax(root: &Path, dockerfile: &Path, engine: &Engine) -> Result<()> {
    let Ok(text) = crate::dockerfile::read_text(&root.join(dockerfile)) else {
        return Ok(());
    };
    let Ok(instrs) = crate::dockerfile::parse(&text) else {
        return Ok(());
    };
    let bad = crate::engine::unsupported_syntax(engine.kind, engine.features.version, &instrs);
    if bad.is_empty() {
        return Ok(());
    }
    Err(input_error!(
        "{}",
        bad.iter()
            .map(|(line, why)| format!("{}:{line}: {why}", dockerfile.display()))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// Decides one image's build: hooks, the exact engine argv, and the names it gets.
pub fn plan(
    root: &Path,
    engine: &Engine,
    node: &Node,
    id: &Identity,
    args: &BuildArgs,
    timestamp: Option<i64>,
    now: i64,
) -> Result<Plan> {
    let image = node.image;
    // Under --dev, an image without a dev Dockerfile is built from its production one only
    // when it is a base of a dev build.
    let dockerfile = dockerfile(root, image, node.dev || (args.version.dev && !node.is_base))?;
    if !node.deps.is_empty() && engine.kind == EngineKind::Podman && !engine.features.build_context
    {
        return Err(input_error!(
            "{}:{}: image `{}` builds from `{}`, this project's own image, which needs `podman build --build-context` (podman 4.1 or later; this podman lacks it)",
            dockerfile.display(),
            node.deps[0].line,
            image.name,
            node.deps[0].image
        ));
    }
    let contexts: Vec<(String, String)> = node
        .deps
        .iter()
        .map(|d| (d.reference.clone(), local_base(id, &d.image)))
        .collect();
    let bases = node
        .deps
        .iter()
        .map(|d| {
            (
                d.reference.clone(),
                cache::Base {
                    name: d.image.clone(),
                    local: local_base(id, &d.image),
                    id: None,
                },
            )
        })
        .collect();
    refuse_unsupported_syntax(root, &dockerfile, engine)?;
    if !root.join(&image.context.value).is_dir() {
        return Err(input_error!(
            "build context `{}` of image `{}` is not a directory (set at {})",
            image.context.value.display(),
            image.name,
            image.context.origin
        ));
    }
    let platforms = if args.platform.is_empty() {
        image.platforms.clone()
    } else {
        args.platform.clone()
    };
    for p in &platforms {
        check_platform(p).map_err(|e| input_error!("--platform: {e}"))?;
    }
    let mut build_args = image.build_args.clone();
    build_args.extend(parse_build_args(&args.build_args)?);
    let text = crate::dockerfile::read_text(&root.join(&dockerfile)).unwrap_or_default();
    let own = labels::dockerfile_labels(&text, image.target.as_deref());
    let instrs = crate::dockerfile::parse(&text).unwrap_or_default();
    let docker_format = instrs
        .iter()
        .any(|i| DOCKER_FORMAT_ONLY.contains(&i.keyword.as_str()));
    // Docker's legacy builder (the one without BuildKit's --build-context) defines none of the
    // platform arguments podman and BuildKit define, so `COPY app-${TARGETARCH}` would name
    // nothing: those the Dockerfile declares are passed, with the values the others give.
    if engine.kind == EngineKind::Docker && !engine.features.build_context {
        let declared: BTreeSet<&str> = instrs
            .iter()
            .filter(|i| i.keyword == "ARG")
            .flat_map(|i| &i.args)
            .map(|a| crate::dockerfile::arg_pair(a).0)
            .collect();
        for (k, v) in crate::dockerfile::automatic_args(platforms.first().map(String::as_str)) {
            if declared.contains(k.as_str()) {
                build_args.entry(k).or_insert(v);
            }
        }
    }
    let mut labels = labels::compute(
        image,
        &id.version,
        id.git.as_ref(),
        timestamp.unwrap_or(now),
        &own,
    );
    // A label the Dockerfile sets that the config or the build facts override: said once, with
    // both values, rather than replaced silently.
    for (k, mine) in &own {
        if let Some(theirs) = labels.get(k).filter(|v| *v != mine) {
            let by = if image.labels.contains_key(k) {
                "the config's `labels`"
            } else {
                "the build's own fact"
            };
            eprintln!(
                "note: {}: label `{k}`: the Dockerfile sets {mine:?}; {by} {theirs:?} wins",
                image.name
            );
        }
    }
    // Where the inputs are keyed (podman, one platform), the image records its inputs key.
    if engine.kind == EngineKind::Podman && platforms.len() <= 1 {
        labels.insert(labels::INPUTS.to_string(), String::new());
    }
    let refs: Vec<String> = id
        .tags
        .iter()
        .map(|t| format!("{}:{t}", image.name))
        .collect();
    let spec = BuildSpec {
        dockerfile: &dockerfile,
        context: &image.context.value,
        target: image.target.as_deref(),
        platform: None,
        manifest: None,
        layers: platforms.is_empty(),
        no_cache: args.no_cache,
        timestamp,
        build_args: &build_args,
        labels: &labels,
        tags: &refs,
        cache_repo: image
            .cache
            .as_ref()
            .map(|c| (c.repo.value.as_str(), c.insecure)),
        contexts: &contexts,
        docker_format,
    };
    let (builds, manifest) = if platforms.len() <= 1 {
        (
            vec![engine.build(&BuildSpec {
                platform: platforms.first().map(String::as_str),
                ..spec
            })],
            None,
        )
    } else {
        if engine.kind != EngineKind::Podman || !engine.features.manifest {
            return Err(input_error!(
                "building {} platforms at once needs podman's `--manifest`; build them one --platform at a time",
                platforms.len()
            ));
        }
        let list = &refs[0];
        // Each platform's image is named too: podman 4.3's `image prune` deletes unnamed list
        // members and leaves a list that breaks every later `podman images`.
        let builds = platforms
            .iter()
            .map(|p| {
                let own = [platform_ref(list, p)];
                engine.build(&BuildSpec {
                    platform: Some(p),
                    manifest: None,
                    tags: &own,
                    ..spec
                })
            })
            .collect();
        let manifest = Manifest {
            list: list.clone(),
            create: engine.manifest_create(
                list,
                &platforms
                    .iter()
                    .map(|p| platform_ref(list, p))
                    .collect::<Vec<_>>(),
            ),
            tag: engine.tag(list, &refs[1..]),
        };
        (builds, Some(manifest))
    };
    let hooks = image
        .before_build
        .iter()
        .map(|argv| Cmd::new(&argv[0]).args(argv[1..].iter().cloned()))
        .collect();
    let keys = KeyInputs {
        name: image.name.clone(),
        dockerfile: dockerfile.clone(),
        context: image.context.value.clone(),
        target: image.target.clone(),
        build_args: build_args.clone(),
        labels: labels.clone(),
        platform: platforms.first().cloned(),
        docker_format,
        use_cache: !args.no_cache && spec.layers,
        refs: refs.clone(),
        bases,
    };
    let base_names = match engine.kind {
        EngineKind::Podman => Vec::new(),
        EngineKind::Docker => node
            .deps
            .iter()
            .flat_map(|d| engine.tag(&id.local_ref(&d.image), std::slice::from_ref(&d.reference)))
            .collect(),
    };
    Ok(Plan {
        name: image.name.clone(),
        hooks,
        base_names,
        builds,
        manifest,
        platforms,
        refs,
        keys,
    })
}

/// The build command with each of the project's bases given as the image this run has for it
/// (its content, by ID); under --dry-run a base not built yet is shown by name.
fn give_bases(build: &Cmd, keys: &KeyInputs) -> Cmd {
    let mut c = build.clone();
    for (reference, b) in &keys.bases {
        let Some(id) = &b.id else { continue };
        let given = if id.starts_with(cache::predict::REBUILT) {
            format!("<content of {}>", b.local)
        } else {
            id.clone()
        };
        let from = format!("{reference}=container-image://{}", b.local);
        for a in c.args.iter_mut().filter(|a| **a == from) {
            *a = format!("{reference}=container-image://{given}");
        }
    }
    c
}

/// Instructions the OCI image format has no field for: podman builds them into Docker's format
/// (`--format docker`), else it drops them with a warning and the image silently lacks them.
const DOCKER_FORMAT_ONLY: [&str; 3] = ["HEALTHCHECK", "SHELL", "ONBUILD"];

/// The name a base of the project has in this run: `localhost/NAME:PRIMARY`.
fn local_base(id: &Identity, name: &str) -> String {
    format!("localhost/{}", id.local_ref(name))
}

/// The platform images of the local list `list` (`NAME:TAG-os-arch`), with their IDs.
pub fn instances_of(
    ctx: &Ctx,
    engine: &Engine,
    list: &str,
    platforms: &[String],
) -> Result<Vec<Instance>> {
    let refs: Vec<String> = platforms.iter().map(|p| platform_ref(list, p)).collect();
    Ok(parse_inspect(&ctx.sh.read(&engine.inspect_images(&refs))?)?
        .iter()
        .zip(platforms)
        .map(|(i, p)| Instance {
            platform: p.clone(),
            id: i.bare_id().to_string(),
            size: i.size,
        })
        .collect())
}

/// `app:1.2.3` + `linux/arm64` → `app:1.2.3-linux-arm64`, the name of one platform's image.
pub fn platform_ref(primary: &str, platform: &str) -> String {
    let (name, tag) = primary.rsplit_once(':').unwrap_or((primary, "latest"));
    let tag = crate::reference::tag_from(&format!("{tag}-{}", platform.replace('/', "-")));
    format!("{name}:{tag}")
}

/// The platforms that were built, checked against those asked for.
fn verify_platforms(ctx: &Ctx, engine: &Engine, p: &Plan, info: &ImageInfo) -> Result<Vec<String>> {
    let built = match &p.manifest {
        Some(m) => manifest_platforms(&ctx.sh.read(&engine.manifest_inspect(&m.list))?)?,
        None => vec![format!("{}/{}", info.os, info.architecture)],
    };
    let missing: Vec<&String> = p
        .platforms
        .iter()
        .filter(|a| !built.iter().any(|b| platform_matches(a, b)))
        .collect();
    if !missing.is_empty() {
        return Err(anyhow::anyhow!(
            "`{}` was asked for {} but holds {}; the engine reused a build of another platform (try --no-cache)",
            p.refs[0],
            p.platforms.join(", "),
            built.join(", ")
        ));
    }
    Ok(built)
}

#[derive(Serialize)]
pub struct Built {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub platforms: Vec<String>,
    pub seconds: f64,
    /// `built`, `up-to-date` (nothing ran) or `retagged` (only names were added).
    pub status: &'static str,
    /// The image's cache key (podman, one platform).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A manifest list's images, one per platform (`id` is then the native one's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<Instance>,
}

/// One platform's image of a manifest list.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub platform: String,
    pub id: String,
    pub size: u64,
}

pub fn run(ctx: &Ctx, args: &BuildArgs) -> Result<()> {
    let engine = ctx.engine()?;
    let id = ctx.identity(&args.version)?;
    let built = build_all(ctx, &engine, &id, args)?;
    if args.save {
        for image in ctx.built_images(args.version.dev)? {
            let b = built.iter().find(|b| b.name == image.name);
            let image_id = b.map_or_else(
                || format!("<ID of {}>", id.local_ref(&image.name)),
                |b| b.id.clone(),
            );
            crate::handoff::save(
                ctx,
                &engine,
                &image.name,
                &image_id,
                b.and_then(|b| b.key.as_deref()),
                &id,
            )?;
        }
    }
    if ctx.sh.dry_run {
        return Ok(());
    }
    let doc = serde_json::json!({ "version": id.version.text, "images": built });
    if ctx.env.ci_system != crate::ci::Ci::None {
        let rows: Vec<Vec<String>> = built
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    b.id[..b.id.len().min(12)].to_string(),
                    b.status.to_string(),
                    b.tags.join(", "),
                ]
            })
            .collect();
        let outputs = crate::ci::Outputs {
            version: id.version.text.clone(),
            tags: id.tags.clone(),
            image: built.first().map(|b| b.name.clone()).unwrap_or_default(),
            digest: None,
            pinned: None,
            json: serde_json::to_string(&doc)?,
            summary: format!(
                "### Built {}\n\n{}\n",
                id.version.text,
                crate::ci::markdown_table(&["image", "id", "status", "tags"], &rows)
            ),
        };
        crate::ci::publish_outputs(&ctx.env.ci_system, &ctx.root, &outputs)?;
    }
    if ctx.json {
        return ctx.print_json(&doc);
    }
    print!(
        "{}",
        table(&built, crate::output::Stream::Out, ctx.sh.quiet)
    );
    Ok(())
}

/// One line per image: what was done, the image, and its tags; an image that was only tagged
/// shows its cache key instead of a size. A header row and colour unless `quiet` (then the rows
/// are the command's one-line results).
pub fn table(built: &[Built], stream: crate::output::Stream, quiet: bool) -> String {
    let rows: Vec<Vec<String>> = built
        .iter()
        .map(|b| {
            let id: String = b.id.chars().take(12).collect();
            let (status, what) = match (b.status, &b.key) {
                ("built", _) | (_, None) => ("built".to_string(), size::human(b.size)),
                (status, Some(key)) => (status.replace('-', " "), format!("key {}", short(key))),
            };
            let status = if quiet {
                status
            } else {
                crate::output::status(&status, stream)
            };
            vec![
                format!("{status} {}", b.name),
                id,
                what,
                format!("{:.1}s", b.seconds),
                b.platforms.join(","),
                b.tags.join(", "),
            ]
        })
        .collect();
    if quiet {
        crate::output::table(&rows)
    } else {
        crate::output::headed(
            &["image", "id", "size", "time", "platforms", "tags"],
            rows,
            stream,
        )
    }
}

/// The identity an image's build gets: without the floating tags (`latest`, `X`, `X.Y`) while
/// a rollback on this machine holds this version or a newer one.
fn held(ctx: &Ctx, image: &str, id: &Identity) -> Identity {
    let Some(h) = crate::hold::local(&ctx.state, image) else {
        return id.clone();
    };
    if id.version.semver.as_ref().is_none_or(|v| *v > h) {
        return id.clone();
    }
    let version_tag = id.primary_tag().to_string();
    let sha7 = id
        .git
        .as_ref()
        .map(|g| g.sha[..7.min(g.sha.len())].to_string());
    let mut out = id.clone();
    out.tags.retain(|t| {
        let floats = crate::publish::decide::role(t, &version_tag, &id.version, sha7.as_deref())
            == crate::publish::decide::Role::Floating;
        if floats {
            eprintln!(
                "note: `{image}:{t}` stays where it is: {h} was rolled back here (`cargo xtask rollback --clear` lifts it)"
            );
        }
        !floats
    });
    out
}

/// Builds every selected image; returns what was built (nothing under `--dry-run`). An image
/// whose cache key an existing image already has is not built: it only gets its tags.
pub fn build_all(
    ctx: &Ctx,
    engine: &Engine,
    id: &Identity,
    args: &BuildArgs,
) -> Result<Vec<Built>> {
    let engine = engine.clone();
    let timestamp = ctx.reproducible_epoch(id);
    let cli_args = parse_build_args(&args.build_args)?;
    let plans = ctx
        .nodes(args.version.dev, &cli_args)?
        .iter()
        .map(|n| {
            let id = held(ctx, &n.image.name, id);
            plan(&ctx.root, &engine, n, &id, args, timestamp, ctx.env.now)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut mem = Memory::load(&ctx.state);
    if engine.kind == EngineKind::Podman {
        mem.locate(&ctx.sh)?;
    }
    let mut built: Vec<Built> = Vec::new();
    // This run's image of each base; under --dry-run, the stand-in of a base it would build.
    let mut made: BTreeMap<String, String> = BTreeMap::new();
    let mut progress = None;
    for p in &plans {
        let start = Instant::now();
        for hook in &p.hooks {
            let began = Instant::now();
            ctx.sh.run(hook)?;
            if !ctx.sh.quiet && !ctx.sh.dry_run {
                eprintln!(
                    "before_build: `{hook}` {} in {:.1}s",
                    crate::output::status("ok", crate::output::Stream::Err),
                    began.elapsed().as_secs_f64()
                );
            }
        }
        let mut p_keys = p.keys.clone();
        for b in p_keys.bases.values_mut() {
            b.id = made.get(&b.name).cloned();
        }
        // Keys are computed after the hooks, which may write into the context. Only podman's
        // storage is read, and only single-platform builds use the layer cache.
        let keyed = if engine.kind == EngineKind::Podman && p.manifest.is_none() {
            let ip = cache::plan_image(&ctx.root, engine.kind, &p_keys, &mem, ctx.env.now_ns)?;
            if ctx.sh.dry_run {
                made.insert(
                    p.name.clone(),
                    cache::stand_in(&ip, p.keys.labels.len(), &mem),
                );
            }
            Some(ip)
        } else {
            let k = &p.keys;
            let ignore =
                crate::context::read_ignore(&ctx.root, &k.context, &k.dockerfile, engine.kind)?;
            let scan = crate::context::scan(&ctx.root, &k.context, ignore, engine.kind)?;
            cache::refuse_tool_output(&k.name, &scan)?;
            None
        };
        // A manifest list: keyed per platform, so a re-run with nothing changed builds nothing.
        let platform_keys: Vec<ImagePlan> = match (&p.manifest, engine.kind) {
            (Some(_), EngineKind::Podman) => p
                .platforms
                .iter()
                .map(|pl| {
                    let k = KeyInputs {
                        platform: Some(pl.clone()),
                        ..p_keys.clone()
                    };
                    cache::plan_image(&ctx.root, engine.kind, &k, &mem, ctx.env.now_ns)
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        if let (Some(m), false) = (&p.manifest, args.force || platform_keys.is_empty()) {
            if let Some(b) = list_up_to_date(ctx, &engine, &mem, p, &m.list, &platform_keys, start)?
            {
                made.insert(b.name.clone(), b.id.clone());
                built.push(b);
                continue;
            }
        }
        let unforced = keyed.as_ref().filter(|_| !args.force);
        if let Some(b) = skip(ctx, &engine, &mem, p, unforced, &id.tags, start)? {
            let content =
                unforced.and_then(|ip| cache::content_image(ip, p.keys.labels.len(), &mem));
            made.insert(b.name.clone(), content.unwrap_or_else(|| b.id.clone()));
            built.push(b);
            continue;
        }
        if let Some(m) = &p.manifest {
            // Every name this build will give must leave any old list, so the old list is
            // deleted with its last name instead of lingering nameless: podman 4.3 breaks on a
            // list whose member images are later removed.
            // So must the old list's other names (an earlier commit's tag): this build takes
            // its platform images' names, and a list kept under those other names would point
            // at images that are nameless, then pruned.
            let mut names = p.refs.clone();
            if !ctx.sh.dry_run {
                let listed = ctx
                    .sh
                    .probe(&engine.list_names(&format!("localhost/{}", p.name)))?;
                let rows: Vec<(&str, &str)> = listed
                    .stdout
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .collect();
                let primary = format!("localhost/{}", m.list);
                if let Some((old, _)) = rows.iter().find(|(_, n)| *n == primary) {
                    for (id, n) in &rows {
                        let short = n.trim_start_matches("localhost/").to_string();
                        if id == old && !names.contains(&short) {
                            names.push(short);
                        }
                    }
                }
            }
            for r in &names {
                super::remove_name(ctx, &engine, r, r == &m.list)?;
            }
        }
        // Working containers of this build are removed if it is interrupted (and found by
        // `clean` if it is killed outright).
        if progress.is_none() && engine.kind == EngineKind::Podman && !ctx.sh.dry_run {
            let (record, before) = crate::working::begin(&ctx.state, &ctx.sh, ctx.env.now);
            let (sh, started) = (ctx.sh.clone(), ctx.env.now);
            let guard = crate::interrupt::on_interrupt(move || {
                crate::working::remove_new(&sh, &before, started);
            });
            progress = Some((record, guard));
        }
        let mut output = String::new();
        let inputs = keyed
            .as_ref()
            .and_then(|ip| cache::content_key(ip, p.keys.labels.len()))
            .unwrap_or_default();
        for c in &p.base_names {
            ctx.sh.run(c)?;
        }
        for b in &p.builds {
            let b = labels::fill_inputs(&give_bases(b, &p_keys), inputs);
            output.push_str(&ctx.sh.run_captured(&b)?);
        }
        if let Some(m) = &p.manifest {
            ctx.sh.run(&m.create)?;
        }
        for t in p.manifest.iter().flat_map(|m| &m.tag) {
            ctx.sh.run(t)?;
        }
        if ctx.sh.dry_run {
            continue;
        }
        let info = parse_inspect(&inspect_built(ctx, &engine, &p.refs[0])?)?;
        let info = info
            .first()
            .ok_or_else(|| anyhow::anyhow!("`{}` vanished right after its build", p.refs[0]))?;
        let platforms = verify_platforms(ctx, &engine, p, info)?;
        let instances = match &p.manifest {
            Some(m) => instances_of(ctx, &engine, &m.list, &p.platforms)?,
            None => Vec::new(),
        };
        // The store as this build left it: read once for the records and the next images.
        let store = mem
            .state
            .storage
            .is_some()
            .then(|| mem.store_now(&ctx.sh))
            .flatten();
        let none = cache::storage::Images::default();
        let now = store.as_ref().unwrap_or(&none);
        // Images built from this one start from its content (before the tool's labels).
        let content = match &keyed {
            Some(ip) => match remember(ctx, &mem, now, ip, &output, info, &platforms) {
                Ok(ids) => ids
                    .get(ip.keyed.len().saturating_sub(p.keys.labels.len() + 1))
                    .cloned()
                    .flatten(),
                // The image is built and tagged; failing to remember it (a full disk) costs
                // the next run a podman call, not this build.
                Err(e) => {
                    eprintln!(
                        "warning: `{}` is built, but its record could not be written ({e:#}); the next build asks podman again",
                        p.name
                    );
                    None
                }
            },
            None => None,
        };
        made.insert(
            p.name.clone(),
            content.unwrap_or_else(|| info.bare_id().to_string()),
        );
        // Each platform's image is remembered under its key (its final step only: podman ran
        // without the layer cache).
        if let (Some(loc), false) = (&mem.state.storage, instances.is_empty()) {
            for (ip, inst) in platform_keys.iter().zip(&instances) {
                let mut ids = vec![None; ip.keyed.len()];
                if let Some(last) = ids.last_mut() {
                    *last = Some(inst.id.clone());
                }
                let fin = cache::state::Final {
                    size: inst.size,
                    platform: inst.platform.clone(),
                };
                if let Err(e) = mem.dir.record(
                    &ip.name,
                    &ip.keyed,
                    &ids,
                    (inst.id.clone(), fin),
                    loc,
                    now,
                    ctx.env.now,
                ) {
                    eprintln!(
                        "warning: `{}` ({}) is built, but its record could not be written ({e:#})",
                        p.name, inst.platform
                    );
                }
            }
        }
        // Images built from this one look their base up in the store as it is now.
        if let Some(s) = store {
            mem.images = Some(s);
        }
        built.push(Built {
            name: p.name.clone(),
            id: info.bare_id().to_string(),
            size: info.size,
            tags: id.tags.clone(),
            platforms,
            seconds: start.elapsed().as_secs_f64(),
            status: "built",
            key: keyed.map(|k| k.key),
            instances,
        });
    }
    Ok(built)
}

/// A manifest list whose every platform's key has its image, which the list's platform names
/// still hold: nothing to build, or only names to add.
fn list_up_to_date(
    ctx: &Ctx,
    engine: &Engine,
    mem: &Memory,
    p: &Plan,
    list: &str,
    keys: &[ImagePlan],
    start: Instant,
) -> Result<Option<Built>> {
    let recorded: Vec<Option<&String>> = keys
        .iter()
        .map(|ip| {
            mem.state
                .steps
                .get(&ip.key)
                .filter(|id| mem.images.as_ref().is_some_and(|i| i.exists(id)))
        })
        .collect();
    if recorded.iter().any(Option::is_none) {
        return Ok(None);
    }
    // The list and its platform images, as this run would name them.
    let Ok(instances) = instances_of(ctx, engine, list, &p.platforms) else {
        return Ok(None);
    };
    if instances
        .iter()
        .zip(&recorded)
        .any(|(i, r)| Some(&i.id) != *r)
    {
        return Ok(None);
    }
    let have = ctx.sh.probe(&engine.manifest_inspect(list))?;
    if !have.success() {
        return Ok(None);
    }
    let missing: Vec<String> = p
        .refs
        .iter()
        .skip(1)
        .filter(|r| {
            ctx.sh
                .probe(&engine.inspect_images(std::slice::from_ref(r)))
                .map_or(true, |o| !o.success())
        })
        .cloned()
        .collect();
    for c in engine.tag(list, &missing) {
        if !missing.is_empty() {
            ctx.sh.run(&c)?;
        }
    }
    let native = instances
        .iter()
        .find(|i| crate::emulation::native(&i.platform))
        .unwrap_or(&instances[0]);
    Ok(Some(Built {
        name: p.name.clone(),
        id: native.id.clone(),
        size: native.size,
        tags: p
            .refs
            .iter()
            .filter_map(|r| r.rsplit_once(':').map(|(_, t)| t.to_string()))
            .collect(),
        platforms: p.platforms.clone(),
        seconds: start.elapsed().as_secs_f64(),
        status: if missing.is_empty() {
            "up-to-date"
        } else {
            "retagged"
        },
        key: None,
        instances,
    }))
}

/// An image whose key is already built: tag it if needed, and say so in one line.
fn skip(
    ctx: &Ctx,
    engine: &Engine,
    mem: &Memory,
    p: &Plan,
    keyed: Option<&ImagePlan>,
    tags: &[String],
    start: Instant,
) -> Result<Option<Built>> {
    let Some(ip) = keyed else {
        return Ok(None);
    };
    let (Action::UpToDate | Action::Retag, Some(image)) = (ip.action, &ip.id) else {
        return Ok(None);
    };
    if ip.action == Action::Retag {
        for c in engine.tag(image, &p.refs) {
            ctx.sh.run(&c)?;
        }
    }
    let status = match ip.action {
        Action::Retag => "retagged",
        _ => "up-to-date",
    };
    let fin = mem.state.finals.get(image);
    Ok(Some(Built {
        name: p.name.clone(),
        id: image.clone(),
        size: fin.map_or(0, |f| f.size),
        tags: tags.to_vec(),
        platforms: fin.map(|f| vec![f.platform.clone()]).unwrap_or_default(),
        seconds: start.elapsed().as_secs_f64(),
        status,
        key: Some(ip.key.clone()),
        instances: Vec::new(),
    }))
}

/// `sha256:` and the first 12 digits.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(19)]
}

/// `image inspect` of an image just built. Podman 4.3 reads the image's parent too, and fails
/// ("image not known", naming another ID) when another process removes an unnamed image of the
/// shared layer cache at that moment (a prune on a shared runner, a parallel job's cleanup);
/// asked again, it answers.
fn inspect_built(ctx: &Ctx, engine: &Engine, reference: &str) -> Result<String> {
    let cmd = engine.inspect_images(&[reference.to_string()]);
    let mut tries = 0;
    loop {
        let out = ctx.sh.probe(&cmd)?;
        if out.success() {
            return Ok(out.stdout.trim_end().to_string());
        }
        tries += 1;
        if tries >= 3 || !out.stderr.contains("image not known") {
            anyhow::bail!(
                "{}",
                crate::exec::failure(&cmd, out.code, &out.stderr, &out.stdout)
            );
        }
    }
}

/// Records which image podman made or reused for every step of a build just done, and
/// returns them.
fn remember(
    ctx: &Ctx,
    mem: &Memory,
    images: &cache::storage::Images,
    ip: &ImagePlan,
    output: &str,
    info: &ImageInfo,
    platforms: &[String],
) -> Result<Vec<Option<String>>> {
    let Some(loc) = mem.state.storage.clone() else {
        // `Memory::locate` ran before the build; without a location nothing is recorded.
        return Ok(Vec::new());
    };
    let observed = cache::parse_build_output(output);
    let last = ip.keyed.len().saturating_sub(1);
    let ids: Vec<Option<String>> = ip
        .keyed
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == last {
                return Some(info.bare_id().to_string());
            }
            let o = observed
                .iter()
                .find(|o| o.stage == s.stage && o.step == s.step && o.of == s.steps)?;
            let id = o.id.as_deref()?;
            if id.len() == 64 {
                Some(id.to_string())
            } else {
                images.full_id(id)
            }
        })
        .collect();
    mem.dir.record(
        &ip.name,
        &ip.keyed,
        &ids,
        (
            info.bare_id().to_string(),
            cache::state::Final {
                size: info.size,
                platform: platforms.join(","),
            },
        ),
        &loc,
        images,
        ctx.env.now,
    )?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_images_are_named_after_the_list() {
        assert_eq!(
            platform_ref("app:1.2.3", "linux/arm64"),
            "app:1.2.3-linux-arm64"
        );
        assert_eq!(
            platform_ref("reg.io:5000/app:1.2.3", "linux/arm/v7"),
            "reg.io:5000/app:1.2.3-linux-arm-v7"
        );
    }

    #[test]
    fn build_args_must_be_pairs() {
        let ok = parse_build_args(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(ok["B"], "x=y");
        assert_eq!(ok["C"], "");
        let err = parse_build_args(&["A".into()]).unwrap_err().to_string();
        assert_eq!(err, "--build-arg `A` must be KEY=VALUE");
        assert!(parse_build_args(&["=1".into()]).is_err());
    }
}
