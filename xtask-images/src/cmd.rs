//! External commands as plain data: what `--dry-run` prints, what golden tests compare, what the
//! runner executes. Nothing here starts a process.

use std::fmt;

/// A value that must never reach argv, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

// Login (`--password-stdin`) and smoke tests' `pass_env` are the users of the secret plumbing.
#[allow(dead_code)]
impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment for the child; secret values are shown as `<secret>`.
    pub env: Vec<(String, EnvValue)>,
    /// Fed to the child's stdin (used for `--password-stdin`).
    pub stdin: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(dead_code)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--flag value` for every value, in order.
    pub fn repeated<I, S>(mut self, flag: &str, values: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for v in values {
            self.args.push(flag.to_string());
            self.args.push(v.into());
        }
        self
    }

    #[allow(dead_code)]
    pub fn env(mut self, key: impl Into<String>, value: EnvValue) -> Cmd {
        self.env.push((key.into(), value));
        self
    }

    #[allow(dead_code)]
    pub fn stdin(mut self, secret: Secret) -> Cmd {
        self.stdin = Some(secret);
        self
    }
}

/// Shell-quoted, so a printed command can be pasted into a POSIX shell as is.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            match v {
                EnvValue::Plain(v) => write!(f, "{}={} ", k, quote(v))?,
                EnvValue::Secret(_) => write!(f, "{k}=<secret> ")?,
            }
        }
        f.write_str(&quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        if self.stdin.is_some() {
            f.write_str(" <<<<secret>")?;
        }
        Ok(())
    }
}

pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("plain-arg_1.2:x=y"), "plain-arg_1.2:x=y");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn secrets_never_display() {
        let c = Cmd::new("podman")
            .args(["login", "--password-stdin"])
            .env("TOKEN", EnvValue::Secret(Secret::new("hunter2")))
            .stdin(Secret::new("hunter2"));
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            c.to_string(),
            "TOKEN=<secret> podman login --password-stdin <<<<secret>"
        );
    }
}
