//! `cargo xtask doctor`: can this machine build and run images, and if not, what fixes it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::engine::{Engine, EngineKind, Features};
use crate::exec::{failure, Output};
use crate::project::Ctx;

/// The containers.conf that makes `podman run` work in sandboxes that forbid raising rlimits
/// (and where crun cannot drive hybrid cgroups); measured on this project's CI machines.
pub const SANDBOX_CONF: &str = r#"[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
"#;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Check {
    Ok(String),
    Failed(String),
    Skipped(String),
}

#[derive(Serialize)]
struct Report {
    engine: EngineKind,
    /// `--engine`, `XTASK_ENGINE`, the config's `engine`, or what is installed.
    chosen_by: String,
    version: String,
    /// Docker's image builder: BuildKit through buildx, or the legacy one.
    #[serde(skip_serializing_if = "Option::is_none")]
    builder: Option<String>,
    features: Features,
    host: String,
    build: Check,
    run: Check,
    /// The CI detected, and what this tool writes for it.
    ci: String,
    /// Working containers this project's killed builds left (`clean` removes them).
    leftover_working_containers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    platforms: Platforms,
    /// A manifest list that lost a platform image (every `podman images` fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    broken_list: Option<String>,
    /// Which registry credentials a push would use (never their values).
    credentials: String,
}

/// Which login a push to the configured registry would use: the environment's (made private to
/// the run), or a stored one, by file and user name.
fn credentials(ctx: &Ctx) -> String {
    let registry = ctx.registry(None).ok().flatten();
    let Some(host) = registry
        .as_deref()
        .map(|r| r.split('/').next().unwrap_or(r).to_string())
    else {
        return "none needed: no registry configured, releases go to an OCI layout".into();
    };
    if let Some(user) = &ctx.env.registry_user {
        let from = if std::env::var_os("XTASK_REGISTRY_PASSWORD").is_some() {
            "XTASK_REGISTRY_PASSWORD"
        } else {
            "XTASK_REGISTRY_PASSWORD_FILE"
        };
        let missing = if ctx.env.registry_password.is_none() {
            " (MISSING: set one of them)"
        } else {
            ""
        };
        return format!(
            "{host}: user `{user}` (XTASK_REGISTRY_USER), password from {from}{missing}; logged in for each run only, in a private auth file removed when it ends"
        );
    }
    match crate::authfile::stored_login(&host) {
        Some((file, user)) => format!(
            "{host}: the stored login{} in {} (read, never written)",
            user.map(|u| format!(" of `{u}`")).unwrap_or_default(),
            file.display()
        ),
        None => format!(
            "{host}: none found (XTASK_REGISTRY_USER unset, no stored login): pushes go unauthenticated"
        ),
    }
}

fn ci_line(ci: &crate::ci::Ci) -> String {
    use crate::ci::Ci;
    match ci {
        Ci::None => "none detected".into(),
        Ci::GitHub { output, summary } => format!(
            "GitHub Actions: step outputs to {}, a job summary to {}, annotations on stdout",
            output
                .as_ref()
                .map_or("(GITHUB_OUTPUT unset)".into(), |p| p.display().to_string()),
            summary
                .as_ref()
                .map_or("(GITHUB_STEP_SUMMARY unset)".into(), |p| p
                    .display()
                    .to_string()),
        ),
        Ci::GitLab => format!(
            "GitLab CI: a dotenv report in {} (artifacts:reports:dotenv); JUnit with --junit",
            crate::ci::GITLAB_DOTENV
        ),
        Ci::Other => "CI is set: plain output, nothing extra written".into(),
    }
}

/// What a `podman run` of a missing command in an empty rootfs tells about the runtime: a
/// "not found" means the container started, so runs work.
pub fn classify_run(out: &Output) -> (Check, Option<String>) {
    let text = format!("{}\n{}", out.stderr, out.stdout);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    let sandboxed = ["rlimit", "RLIMIT", "cgroups in hybrid mode"]
        .iter()
        .any(|m| text.contains(m));
    if sandboxed {
        let fix = format!(
            "this machine forbids raising resource limits (a sandbox or container); put this in \
             /etc/containers/containers.conf.d/50-sandbox.conf (or a file named by CONTAINERS_CONF):\n{SANDBOX_CONF}"
        );
        return (Check::Failed(line), Some(fix));
    }
    let started = out.code == Some(127)
        || text.contains("not found")
        || text.contains("no such file or directory");
    if started {
        (Check::Ok("containers start".into()), None)
    } else {
        (Check::Failed(line), None)
    }
}

fn probe_dir() -> PathBuf {
    std::env::temp_dir().join(format!("xtask-doctor-{}", std::process::id()))
}

pub fn run(ctx: &Ctx) -> Result<bool> {
    let engine = ctx.engine()?;
    let program = engine.program();
    let version =
        ctx.sh
            .read(&Cmd::new(program).args(["version", "--format", "{{.Client.Version}}"]))?;
    let host = match engine.kind {
        EngineKind::Podman => ctx
            .sh
            .read(&Cmd::new(program).args([
                "info",
                "--format",
                "storage {{.Store.GraphDriverName}}, runtime {{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupsVersion}}",
            ]))
            .unwrap_or_else(|e| format!("`podman info` failed: {e:#}")),
        EngineKind::Docker => ctx
            .sh
            .read(&Cmd::new(program).args(["info", "--format", "daemon {{.ServerVersion}}, storage {{.Driver}}, cgroups {{.CgroupVersion}}"]))
            .unwrap_or_else(|e| format!("`docker info` failed (is dockerd running?): {e:#}")),
    };
    // What the Docker client builds with decides what of ours applies.
    let builder = (engine.kind == EngineKind::Docker).then(|| {
        match ctx.sh.probe(&Cmd::new(program).args(["buildx", "version"])) {
            Ok(out) if out.success() => format!(
                "BuildKit through buildx ({}); plan's layer-reuse prediction is podman's only",
                out.stdout.trim()
            ),
            _ => "the legacy builder (no buildx plugin): one platform per build, no --cache-to, the declared TARGET*/BUILD* arguments passed by xtask, the project's bases named as FROM writes them; plan's layer-reuse prediction is podman's only".into(),
        }
    });
    let dir = probe_dir();
    let (build, run, fix) = if ctx.sh.dry_run {
        let skipped = || Check::Skipped("dry run".into());
        (skipped(), skipped(), None)
    } else {
        std::fs::create_dir_all(dir.join("root"))?;
        let result = probes(ctx, &engine, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        result?
    };
    let ok = !matches!(build, Check::Failed(_)) && !matches!(run, Check::Failed(_));
    let report = Report {
        engine: engine.kind,
        chosen_by: ctx.engine_chosen_by.to_string(),
        version,
        builder,
        features: engine.features,
        host,
        build,
        run,
        ci: ci_line(&ctx.env.ci_system),
        leftover_working_containers: if engine.kind == EngineKind::Podman && !ctx.sh.dry_run {
            crate::working::leftovers(&ctx.state, &ctx.sh).len()
        } else {
            0
        },
        fix,
        platforms: platforms(ctx),
        credentials: credentials(ctx),
        broken_list: if engine.kind == EngineKind::Podman && !ctx.sh.dry_run {
            super::clean::find_broken_list(ctx, &engine)
        } else {
            None
        },
    };
    if ctx.json {
        ctx.print_json(&report)?;
        return Ok(ok);
    }
    let f = &report.features;
    let features: Vec<&str> = [
        (f.layers, "--layers"),
        (f.timestamp, "--timestamp"),
        (f.cache_from, "--cache-from"),
        (f.cache_to, "--cache-to"),
        (f.manifest, "--manifest"),
    ]
    .iter()
    .filter_map(|(on, name)| on.then_some(*name))
    .collect();
    let word = |w: &str| crate::output::status(w, crate::output::Stream::Out);
    let show = |c: &Check| match c {
        Check::Ok(d) => format!("{}: {d}", word("ok")),
        Check::Failed(d) => format!("{}: {d}", word("FAILED")),
        Check::Skipped(d) => format!("{}: {d}", word("skipped")),
    };
    let rows = vec![
        vec![
            "engine".to_string(),
            format!("{program} {}, {}", report.version, report.chosen_by),
        ],
        vec!["features".to_string(), features.join(" ")],
        vec!["host".to_string(), report.host.clone()],
        vec![
            "builder".to_string(),
            report
                .builder
                .clone()
                .unwrap_or_else(|| "podman's own (buildah)".into()),
        ],
        vec!["build".to_string(), show(&report.build)],
        vec!["run".to_string(), show(&report.run)],
        vec!["ci".to_string(), report.ci.clone()],
        vec!["credentials".to_string(), report.credentials.clone()],
        vec![
            "leftovers".to_string(),
            match report.leftover_working_containers {
                0 => "none".to_string(),
                n => format!("{n} working container(s) of interrupted builds: `cargo xtask clean` removes them"),
            },
        ],
    ];
    let mut rows = rows;
    rows.push(vec![
        "platforms".to_string(),
        format!("runs {}", report.platforms.runnable.join(", ")),
    ]);
    for (p, how) in &report.platforms.missing {
        rows.push(vec![String::new(), format!("cannot run {p}: {how}")]);
    }
    if let Some(id) = &report.broken_list {
        rows.push(vec![
            "store".to_string(),
            format!("BROKEN: manifest list {} lost a platform image, so every `podman images` fails; `cargo xtask clean` removes it", &id[..id.len().min(12)]),
        ]);
    }
    print!(
        "{}",
        crate::output::headed(&["check", "result"], rows, crate::output::Stream::Out)
    );
    if let Some(fix) = &report.fix {
        println!("\nfix: {fix}");
    }
    Ok(ok)
}

#[derive(Serialize)]
struct Platforms {
    /// This machine's own, then those a binfmt_misc handler emulates.
    runnable: Vec<String>,
    /// Platforms the project builds that cannot run here, with how to add them.
    missing: Vec<(String, String)>,
}

/// Which platforms' images run here, and which of the project's cannot.
fn platforms(ctx: &Ctx) -> Platforms {
    let mut runnable = vec![format!("linux/{}", crate::emulation::host_arch())];
    runnable.extend(
        crate::emulation::emulated()
            .into_iter()
            .map(|a| format!("linux/{a}")),
    );
    runnable.dedup();
    let mut missing: Vec<(String, String)> = Vec::new();
    for p in ctx.config.images.iter().flat_map(|i| &i.platforms) {
        if !crate::emulation::can_run(p) && !missing.iter().any(|(m, _)| m == p) {
            missing.push((p.clone(), crate::emulation::how_to_add(p)));
        }
    }
    Platforms { runnable, missing }
}

/// Builds a one-label scratch image and starts a container, then removes what it made.
fn probes(ctx: &Ctx, engine: &Engine, dir: &Path) -> Result<(Check, Check, Option<String>)> {
    let program = engine.program();
    std::fs::write(
        dir.join("Containerfile"),
        "FROM scratch\nLABEL io.xtask.doctor=probe\n",
    )?;
    let tag = format!("localhost/xtask-doctor-probe:{}", std::process::id());
    let build_cmd = Cmd::new(program)
        .args(["build", "--quiet", "-t", &tag, "-f"])
        .arg(dir.join("Containerfile").to_string_lossy())
        .arg(dir.to_string_lossy());
    let out = ctx.sh.probe(&build_cmd)?;
    let build = if out.success() {
        let _ = ctx
            .sh
            .probe(&engine.remove_images(std::slice::from_ref(&tag)));
        Check::Ok("a scratch image builds".into())
    } else {
        Check::Failed(failure(&build_cmd, out.code, &out.stderr, &out.stdout))
    };
    let (run, fix) = match engine.kind {
        EngineKind::Podman => {
            let run_cmd = Cmd::new(program)
                .args(["run", "--rm", "--rootfs"])
                .arg(dir.join("root").to_string_lossy())
                .arg("/xtask-doctor-probe");
            classify_run(&ctx.sh.probe(&run_cmd)?)
        }
        EngineKind::Docker => (
            Check::Skipped("needs an image; not probed with docker".into()),
            None,
        ),
    };
    Ok((build, run, fix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stderr: &str) -> Output {
        Output {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn run_probe_outcomes() {
        let works = out(127, "Error: runc: runc create failed: unable to start container process: exec: \"/xtask-doctor-probe\": stat /xtask-doctor-probe: no such file or directory: OCI runtime attempted to invoke a command that was not found");
        assert!(matches!(classify_run(&works), (Check::Ok(_), None)));
        let rlimit = out(126, "Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied");
        let (check, fix) = classify_run(&rlimit);
        assert!(matches!(check, Check::Failed(ref l) if l.contains("rlimit type 7")));
        assert!(fix.unwrap().contains("default_ulimits"));
        let crun = out(126, "Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied");
        assert!(classify_run(&crun).1.is_some());
        let hybrid = out(126, "Error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2: OCI runtime error");
        assert!(classify_run(&hybrid).1.is_some());
        let other = out(125, "Error: something else entirely");
        assert_eq!(
            classify_run(&other),
            (Check::Failed("Error: something else entirely".into()), None)
        );
    }
}
