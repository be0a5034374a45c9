//! The exact engine commands a smoke test runs. Every container the suite starts carries the
//! run's label, so one command removes them all whatever happened.

use crate::cmd::{Cmd, EnvValue, Secret};
use crate::engine::{Engine, EngineKind};

use super::Run;

pub const LABEL: &str = "io.xtask.smoke";

/// One suite run: its label value and its containers' names.
#[derive(Debug, Clone)]
pub struct RunId(pub String);

impl RunId {
    pub fn new() -> RunId {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        RunId(format!("{}-{nanos:08x}", std::process::id()))
    }

    pub fn container(&self, n: usize) -> String {
        format!("xtask-smoke-{}-{n}", self.0)
    }

    pub fn label(&self) -> String {
        format!("{LABEL}={}", self.0)
    }
}

/// How a container is started for a test.
pub enum Mode {
    /// Runs to completion and is removed (`--rm`).
    Foreground,
    /// Detached, with `port` published on a free port of 127.0.0.1.
    Detached { port: Option<u16> },
}

/// `podman run …` for a command or service test. `secrets` are the host values of `pass_env`:
/// they travel in the engine's environment (`-e NAME` copies it), never in argv.
pub fn run(
    engine: &Engine,
    id: &RunId,
    name: &str,
    image: &str,
    spec: &Run,
    mode: &Mode,
    secrets: &[(String, Secret)],
) -> Cmd {
    let mut c = Cmd::new(engine.program()).arg("run");
    match mode {
        Mode::Foreground => c = c.arg("--rm"),
        Mode::Detached { port } => {
            c = c.arg("--detach");
            if let Some(p) = port {
                c = c.args(["--publish".to_string(), format!("127.0.0.1::{p}")]);
            }
        }
    }
    c = c.args(["--name", name, "--label"]).arg(id.label());
    c = c.repeated("--env", spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    c = c.repeated("--env", secrets.iter().map(|(k, _)| k.clone()));
    for (k, v) in secrets {
        c = c.env(k, EnvValue::Secret(v.clone()));
    }
    // `--entrypoint` takes one program in both engines; the rest of the list goes before the
    // command, which is what the exec form `ENTRYPOINT [a, b]` + `CMD [c]` runs.
    let mut rest: Vec<String> = Vec::new();
    if let Some(ep) = &spec.entrypoint {
        match ep.split_first() {
            Some((first, more)) => {
                c = c.args(["--entrypoint", first]);
                rest.extend(more.iter().cloned());
            }
            None => c = c.args(["--entrypoint", ""]),
        }
    }
    c = c.arg(image).args(rest);
    if let Some(cmd) = &spec.command {
        c = c.args(cmd.iter().cloned());
    }
    c
}

/// A stopped container to read files from; it never starts, so its entrypoint need not exist.
pub fn create_for_files(engine: &Engine, id: &RunId, name: &str, image: &str) -> Cmd {
    Cmd::new(engine.program())
        .args(["create", "--name", name, "--label"])
        .arg(id.label())
        .args(["--entrypoint", "/xtask-smoke-never-runs", image])
}

/// A tar stream of `path` on stdout.
pub fn copy_out(engine: &Engine, container: &str, path: &str) -> Cmd {
    Cmd::new(engine.program())
        .arg("cp")
        .arg(format!("{container}:{path}"))
        .arg("-")
}

pub fn remove(engine: &Engine, container: &str) -> Cmd {
    let c = Cmd::new(engine.program()).args(["rm", "--force"]);
    match engine.kind {
        // No grace period: a test container has nothing to save, and busybox httpd ignores SIGTERM.
        EngineKind::Podman => c.args(["--time", "0", container]),
        EngineKind::Docker => c.arg(container),
    }
}

/// IDs of every container of this run, running or not.
pub fn list_run(engine: &Engine, id: &RunId) -> Cmd {
    Cmd::new(engine.program())
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label={}", id.label()))
}

pub fn remove_all(engine: &Engine, ids: &[String]) -> Cmd {
    let c = Cmd::new(engine.program()).args(["rm", "--force"]);
    let c = match engine.kind {
        EngineKind::Podman => c.args(["--time", "0"]),
        EngineKind::Docker => c,
    };
    c.args(ids.iter().cloned())
}

pub fn port(engine: &Engine, container: &str, port: u16) -> Cmd {
    Cmd::new(engine.program())
        .args(["port", container])
        .arg(format!("{port}/tcp"))
}

pub fn logs(engine: &Engine, container: &str) -> Cmd {
    Cmd::new(engine.program()).args(["logs", container])
}

pub fn state(engine: &Engine, container: &str) -> Cmd {
    Cmd::new(engine.program()).args([
        "container",
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.ExitCode}}",
        container,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Features;

    fn podman() -> Engine {
        Engine {
            kind: EngineKind::Podman,
            features: Features::default(),
        }
    }

    #[test]
    fn secrets_go_through_the_environment() {
        let id = RunId("7-0000000a".into());
        let spec = Run {
            command: Some(vec!["manage.py".into(), "check".into()]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            env: [("SECRET_KEY".to_string(), "test".to_string())].into(),
            pass_env: vec!["API_TOKEN".into()],
        };
        let secrets = vec![("API_TOKEN".to_string(), Secret::new("s3cr3t"))];
        let c = run(
            &podman(),
            &id,
            &id.container(1),
            "sha256:abc",
            &spec,
            &Mode::Foreground,
            &secrets,
        );
        assert_eq!(
            c.to_string(),
            "API_TOKEN=<secret> podman run --rm --name xtask-smoke-7-0000000a-1 --label io.xtask.smoke=7-0000000a \
             --env SECRET_KEY=test --env API_TOKEN --entrypoint /bin/sh sha256:abc -c manage.py check"
        );
        assert!(!c.args.iter().any(|a| a.contains("s3cr3t")));
        let d = run(
            &podman(),
            &id,
            "n",
            "img",
            &Run::default(),
            &Mode::Detached { port: Some(8000) },
            &[],
        );
        assert_eq!(
            d.to_string(),
            "podman run --detach --publish 127.0.0.1::8000 --name n --label io.xtask.smoke=7-0000000a img"
        );
    }
}
