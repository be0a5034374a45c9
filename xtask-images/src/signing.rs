//! GPG "simple signing" of released digests, with signatures in a lookaside store (the layout
//! containers-registries.d(5) describes: `ROOT/REPO-PATH@sha256=HEX/signature-N`), so podman and
//! skopeo consumers verify them with a plain `policy.json`.
//!
//! The tool signs with `skopeo standalone-sign` and verifies with `skopeo standalone-verify`
//! against only the configured public key (imported into a keyring of the run's own), rather than
//! `podman push --sign-by`: that signs after the manifest is already pushed, so a signing failure
//! left a tagged, unsigned version behind. Here the key is proven able to sign before anything is
//! pushed, and a signature that cannot be made or read back after the push removes the pushed
//! version tag again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cmd::{Cmd, EnvValue};
use crate::input_error;
use crate::project::Ctx;
use crate::publish::Dest;

/// Where the embedded destination's signatures go, relative to the project.
pub const LAYOUT_LOOKASIDE: &str = "target/images/signatures";

pub struct Signer {
    pub key: String,
    /// Where consumers read signatures (a URL).
    pub lookaside: String,
    /// Where this run writes them.
    write_dir: PathBuf,
    /// A keyring holding only the public key, for verification.
    verify_home: PathBuf,
    pub public_key: PathBuf,
    passphrase_file: Option<String>,
    tmp: crate::fsx::TempDir,
}

/// What a digest's signatures say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// A signature by the release key, for this identity.
    Signed {
        by: String,
    },
    Unsigned,
    /// Signed, but by another key (its key ID).
    OtherKey {
        keyid: String,
    },
    /// A signature that does not verify (altered, or for another image or name).
    Invalid {
        why: String,
    },
}

impl Verdict {
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Signed { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Verdict::Signed { by } => format!("signed by {by}"),
            Verdict::Unsigned => "NOT SIGNED: no signature in the lookaside".into(),
            Verdict::OtherKey { keyid } => {
                format!("SIGNED BY ANOTHER KEY ({keyid}), not the release key")
            }
            Verdict::Invalid { why } => format!("INVALID SIGNATURE: {why}"),
        }
    }
}

/// What is signed or verified: one manifest of an image's release.
pub struct Subject<'a> {
    pub dest: &'a Dest,
    /// The image's name (the layout's lookaside path).
    pub name: &'a str,
    pub manifest: &'a [u8],
    pub digest: &'a str,
    /// The reference it was released under ([`identity`]).
    pub identity: &'a str,
}

/// The signature's identity: the reference it was released under.
pub fn identity(dest: &Dest, name: &str, version_tag: &str) -> String {
    match dest {
        Dest::Registry { repository, .. } => format!("{repository}:{version_tag}"),
        Dest::Layout { .. } => format!("localhost/{name}:{version_tag}"),
    }
}

/// `REPO-PATH@sha256=HEX`: the lookaside directory of one digest.
pub fn lookaside_dir(dest: &Dest, name: &str, digest: &str) -> String {
    let path = match dest {
        Dest::Registry { repository, .. } => repository
            .split_once('/')
            .map_or(repository.as_str(), |(_, p)| p)
            .to_string(),
        Dest::Layout { .. } => name.to_string(),
    };
    format!("{path}@{}", digest.replacen(':', "=", 1))
}

/// The signer for `dest`, when signing is configured (`[sign]` or `XTASK_SIGN_KEY`).
pub fn signer(ctx: &Ctx, dest: &Dest) -> Result<Option<Signer>> {
    let env_key = std::env::var("XTASK_SIGN_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty());
    let config = ctx.config.sign.clone();
    if config.is_none() && env_key.is_none() {
        return Ok(None);
    }
    let origin = config
        .as_ref()
        .map_or("XTASK_SIGN_KEY".to_string(), |c| c.origin.clone());
    let key = env_key
        .or_else(|| config.as_ref().and_then(|c| c.key.clone()))
        .ok_or_else(|| {
            input_error!("{origin}: [sign] needs `key` (a GPG key fingerprint), or XTASK_SIGN_KEY")
        })?;
    let lookaside = match (config.as_ref().and_then(|c| c.lookaside.clone()), dest) {
        (Some(l), _) => l,
        (None, Dest::Layout { .. }) => format!("file://{}", ctx.root.join(LAYOUT_LOOKASIDE).display()),
        (None, Dest::Registry { .. }) => {
            return Err(input_error!(
                "{origin}: signing a registry release needs `lookaside` in [sign]: where consumers read the signatures (`file:///srv/sigstore` on a shared disk, or `https://…` served from `lookaside_staging`)"
            ))
        }
    };
    let write = config
        .as_ref()
        .and_then(|c| c.lookaside_staging.clone())
        .unwrap_or_else(|| lookaside.clone());
    let write_dir = write
        .strip_prefix("file://")
        .map(PathBuf::from)
        .ok_or_else(|| {
            input_error!(
                "{origin}: `lookaside` {lookaside} is not a file:// directory: set `lookaside_staging = \"file:///…\"`, where release writes what the web server serves"
            )
        })?;
    let tmp = crate::fsx::TempDir::new("sign")?;
    let public_key = tmp.0.join("release-key.gpg");
    match config.as_ref().and_then(|c| c.public_key.clone()) {
        Some(p) => {
            std::fs::copy(&p, &public_key)
                .map_err(|e| input_error!("{origin}: sign.public_key `{}`: {e}", p.display()))?;
        }
        None => {
            let out = ctx
                .sh
                .probe_bytes(&Cmd::new("gpg").args(["--batch", "--export", &key]))?;
            if out.stdout.is_empty() {
                return Err(input_error!(
                    "no public key for signing key `{key}` in the GPG keyring ({}): import it, or set sign.public_key",
                    std::env::var("GNUPGHOME").unwrap_or_else(|_| "~/.gnupg".into())
                ));
            }
            std::fs::write(&public_key, &out.stdout)?;
        }
    }
    let verify_home = tmp.0.join("gnupg");
    std::fs::create_dir_all(&verify_home)?;
    // gpg refuses (warns about) a home others can read.
    std::fs::set_permissions(
        &verify_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let import = Cmd::new("gpg")
        .args(["--batch", "--quiet", "--import"])
        .arg(public_key.to_string_lossy())
        .env(
            "GNUPGHOME",
            EnvValue::Plain(verify_home.to_string_lossy().into()),
        );
    let out = ctx.sh.probe(&import)?;
    if !out.success() {
        return Err(input_error!(
            "the public key for `{key}` cannot be imported: {}",
            out.stderr.trim()
        ));
    }
    Ok(Some(Signer {
        key,
        lookaside,
        write_dir,
        verify_home,
        public_key,
        passphrase_file: std::env::var("XTASK_SIGN_PASSPHRASE_FILE")
            .ok()
            .filter(|p| !p.is_empty()),
        tmp,
    }))
}

impl Signer {
    fn sign_cmd(&self, manifest: &Path, identity: &str, out: &Path) -> Cmd {
        let mut c = Cmd::new("skopeo").arg("standalone-sign");
        if let Some(p) = &self.passphrase_file {
            c = c.args(["--passphrase-file", p]);
        }
        c.arg(manifest.to_string_lossy())
            .arg(identity)
            .arg(&self.key)
            .arg("--output")
            .arg(out.to_string_lossy())
    }

    /// Proves the key can sign (a throwaway payload) before anything is pushed.
    pub fn precheck(&self, ctx: &Ctx) -> Result<()> {
        let manifest = self.tmp.0.join("probe.json");
        std::fs::write(&manifest, b"{\"schemaVersion\":2,\"probe\":\"xtask\"}")?;
        let out = ctx.sh.probe(&self.sign_cmd(
            &manifest,
            "localhost/xtask-sign-probe:1",
            &self.tmp.0.join("probe.sig"),
        ))?;
        if !out.success() {
            return Err(input_error!(
                "signing key `{}` cannot sign ({}); nothing was pushed: check XTASK_SIGN_KEY / sign.key, the key's presence in GNUPGHOME, and XTASK_SIGN_PASSPHRASE_FILE for a key with a passphrase",
                self.key,
                last_line(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Signs `s.manifest` (whose digest is `s.digest`) as `s.identity`, as the lookaside's next
    /// signature.
    pub fn sign(&self, ctx: &Ctx, s: &Subject) -> Result<()> {
        let (dest, name, manifest, digest, identity) =
            (s.dest, s.name, s.manifest, s.digest, s.identity);
        let m = self.tmp.0.join("manifest.json");
        std::fs::write(&m, manifest)?;
        let sig = self.tmp.0.join("signature");
        let out = ctx.sh.probe(&self.sign_cmd(&m, identity, &sig))?;
        if !out.success() {
            anyhow::bail!(
                "signing {identity} ({digest}) with `{}` failed: {}",
                self.key,
                last_line(&out.stderr)
            );
        }
        let dir = self.write_dir.join(lookaside_dir(dest, name, digest));
        let n = (1..)
            .find(|n| !dir.join(format!("signature-{n}")).exists())
            .unwrap_or(1);
        crate::fsx::write_atomic(
            &dir.join(format!("signature-{n}")),
            std::fs::read(&sig).context("reading the new signature")?,
        )?;
        Ok(())
    }

    /// What the lookaside holds for `s.digest`, checked against the release key and
    /// `s.identity`.
    pub fn verify(&self, ctx: &Ctx, s: &Subject) -> Result<Verdict> {
        let (dest, name, manifest, digest, identity) =
            (s.dest, s.name, s.manifest, s.digest, s.identity);
        let m = self.tmp.0.join("verify-manifest.json");
        std::fs::write(&m, manifest)?;
        let base = format!(
            "{}/{}",
            self.lookaside.trim_end_matches('/'),
            lookaside_dir(dest, name, digest)
        );
        let mut verdict = Verdict::Unsigned;
        for n in 1..=16 {
            let Some(sig) = fetch(ctx, &format!("{base}/signature-{n}"))? else {
                break;
            };
            let file = self.tmp.0.join(format!("verify-{n}.sig"));
            std::fs::write(&file, &sig)?;
            let out = ctx.sh.probe(
                &Cmd::new("skopeo")
                    .arg("standalone-verify")
                    .arg(m.to_string_lossy())
                    .arg(identity)
                    .arg(&self.key)
                    .arg(file.to_string_lossy())
                    .env(
                        "GNUPGHOME",
                        EnvValue::Plain(self.verify_home.to_string_lossy().into()),
                    ),
            )?;
            if out.success() {
                return Ok(Verdict::Signed {
                    by: self.key.clone(),
                });
            }
            // Whose signature is it? A key ID that is not the release key's is another signer;
            // the release key's, an altered signature or one for another image or name.
            let keyid = signer_keyid(ctx, &file);
            verdict = match keyid {
                Some(k) if !self.key.to_uppercase().ends_with(&k.to_uppercase()) => {
                    Verdict::OtherKey { keyid: k }
                }
                _ => Verdict::Invalid {
                    why: last_line(&out.stderr)
                        .trim_start_matches("Error verifying signature: ")
                        .to_string(),
                },
            };
        }
        Ok(verdict)
    }

    /// The `policy.json` rule and `registries.d` entry a consumer needs, for `repository`.
    pub fn consumer_snippet(&self, repository: &str, key_path: &str) -> String {
        let scope = repository.split('/').next().unwrap_or(repository);
        format!(
            "policy.json (transports.docker):\n  \"{repository}\": [{{\"type\": \"signedBy\", \"keyType\": \"GPGKeys\", \"keyPath\": \"{key_path}\", \"signedIdentity\": {{\"type\": \"matchRepository\"}}}}]\nregistries.d/{scope}.yaml:\n  docker:\n    {repository}:\n      lookaside: {}\n",
            self.lookaside
        )
    }

    /// A private `policy.json` and `registries.d` for a verified pull of `repository`.
    pub fn pull_config(&self, repository: &str) -> Result<(PathBuf, PathBuf)> {
        let policy = self.tmp.0.join("policy.json");
        let doc = serde_json::json!({
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {repository: [{
                "type": "signedBy", "keyType": "GPGKeys",
                "keyPath": self.public_key.to_string_lossy(),
                "signedIdentity": {"type": "matchRepository"}
            }]}}
        });
        std::fs::write(&policy, serde_json::to_vec_pretty(&doc)?)?;
        let dir = self.tmp.0.join("registries.d");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("xtask.yaml"),
            format!(
                "docker:\n  {repository}:\n    lookaside: {}\n",
                self.lookaside
            ),
        )?;
        Ok((policy, dir))
    }
}

/// A signature from the lookaside: a file, or over HTTP(S) with curl. `None` when absent.
fn fetch(ctx: &Ctx, url: &str) -> Result<Option<Vec<u8>>> {
    if let Some(path) = url.strip_prefix("file://") {
        return match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading the signature `{path}`: {e}")),
        };
    }
    let out = ctx.sh.probe_bytes(&Cmd::new("curl").args([
        "--silent",
        "--show-error",
        "--fail",
        "--location",
        url,
    ]))?;
    match out.code {
        Some(0) => Ok(Some(out.stdout)),
        // curl's "HTTP error" (a 404: no such signature).
        Some(22) => Ok(None),
        _ => Err(anyhow::anyhow!(
            "fetching the signature {url} failed: {}",
            out.stderr.trim()
        )),
    }
}

/// The key ID a signature names (`gpg --list-packets`).
fn signer_keyid(ctx: &Ctx, sig: &Path) -> Option<String> {
    let out = ctx
        .sh
        .probe(
            &Cmd::new("gpg")
                .args(["--batch", "--list-packets"])
                .arg(sig.to_string_lossy()),
        )
        .ok()?;
    let text = format!("{}\n{}", out.stdout, out.stderr);
    text.split("keyid")
        .nth(1)
        .map(|rest| {
            rest.trim_start_matches([' ', ':'])
                .chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect::<String>()
        })
        .filter(|k| k.len() >= 8)
}

fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            // skopeo logs as `time="…" level=fatal msg="…"`.
            l.split_once("msg=\"")
                .map_or(l, |(_, m)| m.trim_end_matches('"'))
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookaside_paths_and_identities() {
        let reg = Dest::Registry {
            repository: "127.0.0.1:5000/team/app".into(),
            insecure: true,
        };
        assert_eq!(
            lookaside_dir(&reg, "app", "sha256:ab12"),
            "team/app@sha256=ab12"
        );
        assert_eq!(
            identity(&reg, "app", "1.2.3"),
            "127.0.0.1:5000/team/app:1.2.3"
        );
        let layout = Dest::Layout {
            dir: "target/images/app".into(),
        };
        assert_eq!(
            lookaside_dir(&layout, "app", "sha256:ab12"),
            "app@sha256=ab12"
        );
        assert_eq!(identity(&layout, "app", "1.2.3"), "localhost/app:1.2.3");
        assert_eq!(
            last_line("time=\"x\" level=fatal msg=\"Error verifying signature: nope\"\n"),
            "Error verifying signature: nope"
        );
    }
}
