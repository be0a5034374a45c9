//! Reading Dockerfiles: instructions with their line numbers, flags and arguments, stages, and
//! `ARG`/`ENV` substitution where Docker applies it. It serves the COPY/ADD checks and the
//! per-step cache keys.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-cased keyword: `COPY`, `RUN`, …
    pub keyword: String,
    /// `--name=value` flags (`--link` alone has an empty value).
    pub flags: Vec<(String, String)>,
    /// Arguments: the JSON array's strings, or the shell form split on whitespace.
    pub args: Vec<String>,
    /// The instruction's text after the keyword, continuation lines joined.
    pub rest: String,
    pub json: bool,
    /// Heredoc bodies (`<<EOF` … `EOF`), in order; part of what the instruction does.
    pub heredocs: Vec<String>,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The instruction as podman prints it in `STEP n/N: …`, continuation lines joined.
    pub fn text(&self) -> String {
        if self.rest.is_empty() {
            self.keyword.clone()
        } else {
            format!("{} {}", self.keyword, self.rest)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Splits a Dockerfile into instructions. Handles the `# escape=` directive, comments,
/// A Dockerfile or ignore file as the engine reads it: a UTF-8 byte-order mark dropped, bytes
/// that are not UTF-8 (a Latin-1 comment) taken as they are, shown as U+FFFD.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// continuation lines (and comments or blank lines inside them), and skips heredoc bodies.
pub fn parse(text: &str) -> Result<Vec<Instruction>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: only at the very top, before any comment, blank line or instruction.
    while i < lines.len() {
        let Some(d) = directive(lines[i]) else { break };
        if d.0 == "escape" {
            escape = match d.1.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError {
                        line: i + 1,
                        message: format!("escape `{other}` must be `\\` or a backtick"),
                    })
                }
            };
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut cur = first.trim_end();
        loop {
            match cur.strip_suffix(escape) {
                Some(body) => {
                    joined.push_str(body);
                    // Blank and comment lines inside a continuation are dropped.
                    while i < lines.len()
                        && (lines[i].trim().is_empty() || lines[i].trim_start().starts_with('#'))
                    {
                        i += 1;
                    }
                    if i == lines.len() {
                        break;
                    }
                    cur = lines[i].trim_end();
                    i += 1;
                }
                None => {
                    joined.push_str(cur);
                    break;
                }
            }
        }
        let (keyword, rest) = joined
            .split_once(char::is_whitespace)
            .unwrap_or((&joined, ""));
        if !keyword.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ParseError {
                line: start + 1,
                message: format!("`{keyword}` is not an instruction"),
            });
        }
        let rest = rest.trim().to_string();
        let mut heredocs = Vec::new();
        for (word, strip_tabs) in heredoc_delimiters(&rest) {
            let mut body = String::new();
            let mut closed = false;
            while i < lines.len() {
                let l = if strip_tabs {
                    lines[i].trim_start_matches('\t')
                } else {
                    lines[i]
                };
                i += 1;
                if l == word {
                    closed = true;
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            if !closed {
                return Err(ParseError {
                    line: start + 1,
                    message: format!("heredoc `<<{word}` is never closed: add a line `{word}`"),
                });
            }
            heredocs.push(body);
        }
        let (flags, body) = split_flags(&rest);
        let (args, json) = match body.starts_with('[') {
            true => match serde_json::from_str::<Vec<String>>(body) {
                Ok(v) => (v, true),
                Err(_) => (body.split_whitespace().map(str::to_string).collect(), false),
            },
            false => (body.split_whitespace().map(str::to_string).collect(), false),
        };
        out.push(Instruction {
            line: start + 1,
            keyword: keyword.to_ascii_uppercase(),
            flags,
            args,
            rest,
            json,
            heredocs,
        });
    }
    Ok(out)
}

fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?.trim();
    let (k, v) = body.split_once('=')?;
    let k = k.trim().to_ascii_lowercase();
    (k == "escape" || k == "syntax" || k == "check").then(|| (k, v.trim().to_string()))
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"` in an instruction: the words ending each body, and whether
/// leading tabs are stripped.
fn heredoc_delimiters(rest: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for tok in rest.split_whitespace() {
        let Some(mut t) = tok.strip_prefix("<<") else {
            continue;
        };
        let strip = t.starts_with('-');
        t = t.trim_start_matches('-');
        let word: String = t
            .trim_matches(|c| c == '"' || c == '\'')
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            out.push((word, strip));
        }
    }
    out
}

fn split_flags(rest: &str) -> (Vec<(String, String)>, &str) {
    let mut flags = Vec::new();
    let mut body = rest;
    while let Some(after) = body.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let tok = &after[..end];
        let (n, v) = tok.split_once('=').unwrap_or((tok, ""));
        flags.push((n.to_string(), v.to_string()));
        body = after[end..].trim_start();
    }
    (flags, body)
}

/// A source of `COPY`/`ADD` that reads the build context, with `ARG`/`ENV` values expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSource {
    pub line: usize,
    pub instruction: String,
    pub path: String,
    /// The stage it is in: 0-based, and its `AS` name (lower-cased) if it has one.
    pub stage: usize,
    pub stage_name: Option<String>,
}

/// The context paths that `COPY`/`ADD` read (no `--from`, no URLs, no heredocs), in order, with
/// variables expanded from `ARG` defaults, `ENV`, and `build_args`.
pub fn context_sources(
    instrs: &[Instruction],
    build_args: &BTreeMap<String, String>,
) -> Vec<ContextSource> {
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut in_stage = false;
    let mut stage = 0;
    let mut stage_name = None;
    let mut out = Vec::new();
    for ins in instrs {
        match ins.keyword.as_str() {
            "FROM" => {
                if in_stage {
                    stage += 1;
                }
                in_stage = true;
                vars.clear();
                stage_name = match ins.args.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        Some(name.to_ascii_lowercase())
                    }
                    _ => None,
                };
            }
            "ARG" => {
                for a in &ins.args {
                    if let Some((k, v)) = arg_value(build_args, a, &vars, &global) {
                        if in_stage { &mut vars } else { &mut global }.insert(k, v);
                    }
                }
            }
            "ENV" => {
                for (k, v) in env_pairs(&ins.args) {
                    let v = expand(&v, &vars);
                    vars.insert(k, v);
                }
            }
            "COPY" | "ADD" if ins.flag("from").is_none() && ins.args.len() >= 2 => {
                for src in &ins.args[..ins.args.len() - 1] {
                    let src = expand(src, &vars);
                    let remote = src.contains("://") || src.starts_with("git@");
                    if remote || src.starts_with("<<") {
                        continue;
                    }
                    out.push(ContextSource {
                        line: ins.line,
                        instruction: format!("{} {}", ins.keyword, ins.rest),
                        path: src,
                        stage,
                        stage_name: stage_name.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// A value without its surrounding quotes, as `ARG` and `ENV` read it.
pub fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// `ENV`'s pairs, values unquoted (not yet expanded).
pub fn env_pairs(args: &[String]) -> Vec<(String, String)> {
    if args.len() >= 2 && !args[0].contains('=') {
        // Legacy `ENV KEY value with spaces`.
        return vec![(args[0].clone(), args[1..].join(" "))];
    }
    args.iter()
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), unquote(v).to_string()))
        })
        .collect()
}

/// The arguments the engine defines for a build's platform (`ARG TARGETARCH` takes its value
/// without a `--build-arg`): TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT and the
/// BUILD* ones. `platform` is `os/arch[/variant]`; None is this machine's.
pub fn automatic_args(platform: Option<&str>) -> BTreeMap<String, String> {
    let host_arch = crate::emulation::host_arch();
    let host = format!("linux/{host_arch}");
    let target = platform.unwrap_or(&host);
    let mut out = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", host.as_str())] {
        let mut parts = p.splitn(3, '/');
        let os = parts.next().unwrap_or("linux");
        let arch = parts.next().unwrap_or(host_arch);
        let variant = parts.next().unwrap_or("");
        out.insert(format!("{prefix}PLATFORM"), p.to_string());
        out.insert(format!("{prefix}OS"), os.to_string());
        out.insert(format!("{prefix}ARCH"), arch.to_string());
        out.insert(format!("{prefix}VARIANT"), variant.to_string());
    }
    out
}

/// `ARG NAME` or `ARG NAME=default`: the name, and the unquoted default.
pub fn arg_pair(a: &str) -> (&str, Option<&str>) {
    a.split_once('=')
        .map_or((a, None), |(k, v)| (k, Some(unquote(v))))
}

/// An `ARG`'s name and value: the build argument, else its default (expanded with `vars`),
/// else the value it `inherited` (a stage's bare `ARG X` takes the global one).
pub fn arg_value(
    build_args: &BTreeMap<String, String>,
    a: &str,
    vars: &BTreeMap<String, String>,
    inherited: &BTreeMap<String, String>,
) -> Option<(String, String)> {
    let (k, d) = arg_pair(a);
    let v = build_args
        .get(k)
        .cloned()
        .or_else(|| d.map(|d| expand(d, vars)))
        .or_else(|| inherited.get(k).cloned())?;
    Some((k.to_string(), v))
}

/// `$X`, `${X}`, `${X:-default}`, `${X:+alt}`, `\$` as Docker expands them in COPY/ADD.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && c.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
        } else if c[i] == '$' && c.get(i + 1) == Some(&'{') {
            let Some(close) = c[i..].iter().position(|x| *x == '}').map(|p| p + i) else {
                out.extend(&c[i..]);
                break;
            };
            let body: String = c[i + 2..close].iter().collect();
            let value = if let Some((name, default)) = body.split_once(":-") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .unwrap_or_else(|| expand(default, vars))
            } else if let Some((name, alt)) = body.split_once(":+") {
                vars.get(name)
                    .filter(|v| !v.is_empty())
                    .map(|_| expand(alt, vars))
                    .unwrap_or_default()
            } else {
                vars.get(&body).cloned().unwrap_or_default()
            };
            out.push_str(&value);
            i = close + 1;
        } else if c[i] == '$'
            && c.get(i + 1)
                .is_some_and(|x| x.is_ascii_alphabetic() || *x == '_')
        {
            let end = c[i + 1..]
                .iter()
                .position(|x| !(x.is_ascii_alphanumeric() || *x == '_'))
                .map_or(c.len(), |p| p + i + 1);
            let name: String = c[i + 1..end].iter().collect();
            out.push_str(vars.get(&name).map_or("", String::as_str));
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// One `FROM` and the instructions that follow it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `AS name`, lower-cased as Docker compares stage names.
    pub name: Option<String>,
    pub from: Instruction,
    /// The base as written, before `ARG` substitution.
    pub base: String,
    pub body: Vec<Instruction>,
}

/// A Dockerfile split into its global `ARG`s and its stages.
#[derive(Debug, Clone)]
pub struct Stages {
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

fn err(line: usize, message: String) -> ParseError {
    ParseError { line, message }
}

/// Groups instructions into stages and checks what Docker would refuse before building.
pub fn stages(instrs: Vec<Instruction>) -> Result<Stages, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instrs {
        if !INSTRUCTIONS.contains(&ins.keyword.as_str()) {
            return Err(err(
                ins.line,
                format!("unknown instruction `{}`", ins.keyword),
            ));
        }
        match ins.keyword.as_str() {
            "FROM" => {
                let (base, name) = match ins.args.as_slice() {
                    [base] => (base.clone(), None),
                    [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        (base.clone(), Some(name.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err(err(
                            ins.line,
                            "FROM takes an image and an optional `AS name`".into(),
                        ))
                    }
                };
                if let Some(n) = &name {
                    if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                        return Err(err(ins.line, format!("stage name `{n}` is used twice")));
                    }
                }
                stages.push(Stage {
                    name,
                    base,
                    from: ins,
                    body: Vec::new(),
                });
            }
            "ARG" if stages.is_empty() => global_args.push(ins),
            kw => {
                let Some(stage) = stages.last_mut() else {
                    return Err(err(
                        ins.line,
                        format!("`{kw}` comes before the first FROM; only ARG may"),
                    ));
                };
                if (kw == "COPY" || kw == "ADD") && ins.args.len() + ins.heredocs.len() < 2 {
                    return Err(err(
                        ins.line,
                        format!("{kw} needs at least one source and a destination"),
                    ));
                }
                if let Some(from) = ins.flag("from") {
                    if from.is_empty() {
                        return Err(err(ins.line, "--from needs a stage or an image".into()));
                    }
                }
                stage.body.push(ins);
            }
        }
    }
    if stages.is_empty() {
        return Err(err(
            1,
            "no FROM instruction: a Dockerfile must start a stage".into(),
        ));
    }
    Ok(Stages {
        global_args,
        stages,
    })
}

impl Stages {
    /// The stages a build runs: all of them, or up to and including `--target`.
    pub fn up_to(&self, target: Option<&str>) -> Result<&[Stage], String> {
        let Some(t) = target else {
            return Ok(&self.stages);
        };
        let t = t.to_ascii_lowercase();
        match self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t))
        {
            Some(i) => Ok(&self.stages[..=i]),
            None => Err(format!(
                "target stage `{t}` is not in the Dockerfile (stages: {})",
                self.stages
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The index of the stage a `--from=` or `FROM` names, if it names an earlier stage.
    pub fn stage_index(&self, before: usize, reference: &str) -> Option<usize> {
        let r = reference.to_ascii_lowercase();
        if let Ok(n) = r.parse::<usize>() {
            return (n < before).then_some(n);
        }
        self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(&r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_LIKE: &str = r#"# syntax=docker/dockerfile:1
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
RUN apt-get update && \
    # comments inside a continuation are dropped
    apt-get install -y --no-install-recommends gcc \

    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/
RUN pip install -r /tmp/requirements.txt

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG APP_DIR=/app
ENV DJANGO_SETTINGS_MODULE=senex.settings SRC=src
WORKDIR $APP_DIR
COPY --from=builder /usr/local /usr/local
COPY --chown=app:app . /app/
COPY ["docker/entrypoint.sh", "/entrypoint.sh"]
COPY ${SRC}/static /app/static
COPY <<EOF /app/version.txt
1.2.3
EOF
ADD https://example.com/x.tgz /tmp/
ENTRYPOINT ["/entrypoint.sh"]
CMD ["web"]
"#;

    #[test]
    fn reads_a_python_app() {
        let ins = parse(SEED_LIKE).unwrap();
        let kw: Vec<(usize, &str)> = ins.iter().map(|i| (i.line, i.keyword.as_str())).collect();
        assert_eq!(
            kw,
            [
                (2, "ARG"),
                (3, "FROM"),
                (4, "RUN"),
                (9, "COPY"),
                (10, "RUN"),
                (12, "FROM"),
                (13, "ARG"),
                (14, "ENV"),
                (15, "WORKDIR"),
                (16, "COPY"),
                (17, "COPY"),
                (18, "COPY"),
                (19, "COPY"),
                (20, "COPY"),
                (23, "ADD"),
                (24, "ENTRYPOINT"),
                (25, "CMD"),
            ]
        );
        assert_eq!(ins[2].rest, "apt-get update &&     apt-get install -y --no-install-recommends gcc     && rm -rf /var/lib/apt/lists/*");
        assert_eq!(ins[10].flag("chown"), Some("app:app"));
        assert!(ins[11].json);
        let srcs: Vec<(usize, String)> = context_sources(&ins, &BTreeMap::new())
            .into_iter()
            .map(|s| (s.line, s.path))
            .collect();
        assert_eq!(
            srcs,
            [
                (9, "requirements.txt".to_string()),
                (17, ".".into()),
                (18, "docker/entrypoint.sh".into()),
                (19, "src/static".into())
            ]
        );
    }

    #[test]
    fn escape_directive_and_errors() {
        let ins = parse("# escape=`\nFROM x\nCOPY a `\n  b /dst/\n").unwrap();
        assert_eq!(ins[1].args, ["a", "b", "/dst/"]);
        let err = parse("FROM x\n  !!! nonsense\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(parse("# escape=x\nFROM y\n").unwrap_err().line, 1);
    }

    #[test]
    fn substitution() {
        let vars = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            ("E".to_string(), String::new()),
        ]);
        let cases = [
            ("$A/x", "1/x"),
            ("${A}x", "1x"),
            ("${B:-d}", "d"),
            ("${E:-d}", "d"),
            ("${A:+alt}", "alt"),
            ("${B:+alt}", ""),
            ("\\$A", "$A"),
            ("$", "$"),
            ("a$B", "a"),
        ];
        for (s, want) in cases {
            assert_eq!(expand(s, &vars), want, "{s}");
        }
    }

    #[test]
    fn build_args_override_arg_defaults() {
        let ins = parse("ARG DIR=app\nFROM scratch\nARG DIR\nCOPY $DIR /x\n").unwrap();
        let srcs = context_sources(&ins, &BTreeMap::new());
        assert_eq!(srcs[0].path, "app");
        let srcs = context_sources(&ins, &BTreeMap::from([("DIR".into(), "other".into())]));
        assert_eq!(srcs[0].path, "other");
    }

    #[test]
    fn stages_and_their_errors() {
        let st = stages(parse(SEED_LIKE).unwrap()).unwrap();
        assert_eq!(st.global_args.len(), 1);
        assert_eq!(st.stages.len(), 2);
        assert_eq!(st.stages[0].name.as_deref(), Some("builder"));
        assert_eq!(st.stages[1].body.len(), 11);
        assert_eq!(st.stage_index(1, "BUILDER"), Some(0));
        assert_eq!(st.stage_index(1, "0"), Some(0));
        assert_eq!(st.stage_index(1, "python:3"), None);
        assert_eq!(st.up_to(Some("builder")).unwrap().len(), 1);
        assert!(st
            .up_to(Some("nope"))
            .unwrap_err()
            .contains("builder, runtime"));
        let cases = [
            ("RUN x\nFROM y\n", 1, "before the first FROM"),
            ("FROM a\n\nFOO bar\n", 3, "unknown instruction `FOO`"),
            ("FROM a AS x\nFROM b AS X\n", 2, "used twice"),
            ("FROM a\nCOPY onlyone\n", 2, "source and a destination"),
            ("FROM a b\n", 1, "optional `AS name`"),
            ("ARG X\n", 1, "no FROM"),
            ("FROM a\nCOPY --from= x /y\n", 2, "--from needs"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text).and_then(stages).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.message.contains(msg), "{text}: {}", e.message);
        }
    }

    #[test]
    fn heredocs_are_kept_and_must_close() {
        let ins =
            parse("FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<-X /f\n\tbody\n\tX\nCMD x\n").unwrap();
        assert_eq!(ins[1].heredocs, ["echo hi\n"]);
        assert_eq!(ins[2].heredocs, ["body\n"]);
        assert_eq!(ins[3].keyword, "CMD");
        assert_eq!(parse("FROM a\nRUN <<EOF\necho\n").unwrap_err().line, 2);
    }

    #[test]
    fn copy_flags() {
        let ins = parse("FROM a\nCOPY --chown=1:2 --chmod=755 --link --exclude=*.pyc src /dst\n")
            .unwrap();
        assert_eq!(
            ins[1].flags,
            [
                ("chown".to_string(), "1:2".to_string()),
                ("chmod".into(), "755".into()),
                ("link".into(), String::new()),
                ("exclude".into(), "*.pyc".into())
            ]
        );
        assert_eq!(ins[1].args, ["src", "/dst"]);
        assert_eq!(
            ins[1].text(),
            "COPY --chown=1:2 --chmod=755 --link --exclude=*.pyc src /dst"
        );
    }
}
