//! A real registry for the end-to-end tests: `docker-registry` from Debian on 127.0.0.1, with
//! htpasswd auth and its data in a temporary directory, stopped and removed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{run, unique_name, Out, Project};

pub const USER: &str = "alice";

pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: String,
    child: Option<Child>,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let password = unique_name("pw");
        let hash = Command::new("htpasswd")
            .args(["-Bbn", USER, &password])
            .output()
            .expect("htpasswd (apache2-utils) is needed; run `bash .ci/setup`");
        assert!(hash.status.success());
        std::fs::write(dir.path().join("htpasswd"), &hash.stdout).unwrap();
        let mut r = Registry {
            dir,
            port: 0,
            password,
            child: None,
        };
        // The port is free when picked but not held: another process (Docker's proxy of a
        // published port) can take it before the registry binds it; then a new one is picked.
        let mut tries = 0;
        loop {
            r.port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            r.write_config();
            match r.serve() {
                Ok(()) => return r,
                Err(log) if tries < 4 => {
                    eprintln!("registry on port {} failed, another port: {log}", r.port);
                    tries += 1;
                }
                Err(log) => panic!("the registry did not start: {log}"),
            }
        }
    }

    fn write_config(&self) {
        let config = format!(
            "version: 0.1\nlog: {{ level: error }}\nstorage: {{ filesystem: {{ rootdirectory: {data} }}, delete: {{ enabled: true }} }}\nhttp: {{ addr: \"127.0.0.1:{port}\" }}\nauth: {{ htpasswd: {{ realm: xtask, path: {htpasswd} }} }}\n",
            data = self.dir.path().join("data").display(),
            htpasswd = self.dir.path().join("htpasswd").display(),
            port = self.port,
        );
        std::fs::write(self.dir.path().join("config.yml"), config).unwrap();
    }

    /// (Re)starts the registry on the same port and data, and waits until it accepts.
    pub fn resume(&mut self) {
        if let Err(log) = self.serve() {
            panic!(
                "the registry did not start again on port {}: {log}",
                self.port
            );
        }
    }

    /// Starts the registry and waits until it accepts; its log when it exits first.
    fn serve(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("docker-registry is needed; run `bash .ci/setup`");
        let child = self.child.insert(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited ({status}): {text}"));
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not start within 20 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn registry(&self) -> String {
        format!("127.0.0.1:{}/team", self.port)
    }

    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// `xtask` with this registry and its credentials, isolated from the machine's auth.json.
    pub fn xtask(&self, p: &Project) -> Command {
        let mut c = p.xtask();
        c.env("XTASK_REGISTRY", self.registry())
            .env("XTASK_REGISTRY_INSECURE", "1")
            .env("XTASK_REGISTRY_USER", USER)
            .env("XTASK_REGISTRY_PASSWORD", &self.password)
            .env("REGISTRY_AUTH_FILE", self.auth_file());
        c
    }

    /// `skopeo` with this registry's credentials.
    pub fn skopeo(&self, args: &[&str]) -> Out {
        let mut c = Command::new("skopeo");
        c.args(args)
            .arg("--tls-verify=false")
            .arg(format!("--creds={USER}:{}", self.password));
        run(&mut c)
    }

    /// Manifest digest of `NAME:TAG`, or None when the tag is absent.
    pub fn digest(&self, name: &str, tag: &str) -> Option<String> {
        let out = self.skopeo(&[
            "inspect",
            "--format",
            "{{.Digest}}",
            &format!("docker://{}/{name}:{tag}", self.registry()),
        ]);
        (out.code == 0).then(|| out.stdout.trim().to_string())
    }

    pub fn tags(&self, name: &str) -> Vec<String> {
        let out = self.skopeo(&["list-tags", &format!("docker://{}/{name}", self.registry())]);
        if out.code != 0 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let mut t: Vec<String> = v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
