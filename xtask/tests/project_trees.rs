//! End-to-end: `check` on trees shaped like real Django projects (written here, after looking
//! at how saleor, bakerydemo, paperless-ngx and netbox-docker lay theirs out). A clean checkout
//! gives no finding at all; the same tree with a developer's clutter names every leak.
#![allow(clippy::disallowed_methods)]

mod support;

use support::*;

/// A random value in the shape of a Django secret key (not a real one).
const KEY: &str = "q8Zr2#vLx9!mTe4@Wp7^bN1&cY6*hJ3%kD5s";

fn tree(files: &[(&str, &str)]) -> Project {
    let p = Project::new(files);
    p.commit(None);
    p
}

fn check(p: &Project) -> (i32, serde_json::Value) {
    let out = run(p.xtask().args(["--json", "check"]));
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, v)
}

fn findings(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["images"][0]["findings"].as_array().unwrap()
}

#[track_caller]
fn assert_clean(p: &Project) {
    let (code, v) = check(p);
    assert_eq!(code, 0, "{v:#}");
    assert!(findings(&v).is_empty(), "{v:#}");
    // Nothing the tool wrote shows up in git.
    assert_eq!(p.git(&["status", "--porcelain"]).stdout, "");
}

/// Each of `names` appears in some finding of `kind` at `severity` (its paths or message).
#[track_caller]
fn assert_named(v: &serde_json::Value, kind: &str, severity: &str, names: &[&str]) {
    let f: Vec<&serde_json::Value> = findings(v)
        .iter()
        .filter(|f| f["kind"] == kind && f["severity"] == severity)
        .collect();
    assert!(!f.is_empty(), "no {severity} {kind} in {v:#}");
    let text = serde_json::to_string(&f).unwrap();
    for n in names {
        assert!(
            text.contains(n),
            "{n} not named by {severity} {kind}: {text}"
        );
    }
}

#[test]
fn a_shop_with_tests_in_its_packages() {
    let p = tree(&[
        (
            "Dockerfile",
            "FROM scratch AS deps\nCOPY pyproject.toml uv.lock /app/\nFROM scratch\nCOPY . /app\nCMD [\"/app/manage.py\"]\n",
        ),
        (".dockerignore", ".*\n**/__pycache__\n*.sqlite\nmedia/\nnode_modules/\n**/tests\nconftest.py\n"),
        (".gitignore", "__pycache__/\n*.pyc\ndb.sqlite3\n/media/\nhtmlcov/\n.coverage\ncoverage.xml\nvenv/\n"),
        ("manage.py", "import os\n"),
        ("pyproject.toml", "[project]\nname = \"shop\"\n"),
        ("uv.lock", "version = 1\n"),
        ("conftest.py", "import pytest\n"),
        ("shop/__init__.py", ""),
        ("shop/settings.py", "import os\nSECRET_KEY = os.environ.get(\"SECRET_KEY\")\nPASSWORD_RESET_TIMEOUT = 259200\n"),
        ("shop/checkout/views.py", "def checkout(request):\n    cache_key = f\"checkout:{request.id}\"\n"),
        ("shop/checkout/tests/test_views.py", "TOKEN = \"ghx_not_a_real_token_for_tests_only_123\"\n"),
        ("shop/static/logo.svg", "<svg/>"),
        ("templates/base.html", "<html></html>"),
    ]);
    assert_clean(&p);
    // A developer's tree: a local database, coverage output, a virtualenv, a crash log.
    p.write("db.sqlite3", "SQLite format 3");
    p.write("htmlcov/index.html", "<html>");
    p.write("coverage.xml", "<coverage/>");
    p.write(
        "venv/lib/python3.11/site-packages/django/__init__.py",
        "VERSION = (5, 0)\n",
    );
    p.write("shop/checkout/notes.md", "todo");
    let (code, v) = check(&p);
    assert_eq!(code, 1, "{v:#}");
    assert_named(&v, "git_ignored", "error", &["db.sqlite3", "coverage.xml"]);
    assert_named(&v, "bloat", "warning", &["venv/", "htmlcov/"]);
    assert_named(&v, "untracked", "error", &["shop/checkout/notes.md"]);
    // `*.sqlite` was meant for the database.
    assert_named(&v, "dead_rule", "warning", &["db.sqlite3"]);
}

#[test]
fn a_demo_site_with_local_settings() {
    let p = tree(&[
        (
            "Dockerfile",
            "FROM scratch\nADD requirements/ /requirements/\nADD . /code/\nENTRYPOINT [\"/code/docker-entrypoint.sh\"]\n",
        ),
        (".dockerignore", ".git\nDockerfile\ndocker-compose.yml\ncollect_static\n"),
        (
            ".gitignore",
            "*.pyc\n*.log\n.env\n/data\nbakery/settings/local.py\n__pycache__\n.vagrant/\nvenv/\n/media/\n/collect_static/\n*.sqlite3\n",
        ),
        ("docker-compose.yml", "services: {}\n"),
        ("docker-entrypoint.sh", "#!/bin/sh\nexec \"$@\"\n"),
        ("manage.py", ""),
        ("requirements/base.txt", "django\n"),
        ("requirements/production.txt", "-r base.txt\n"),
        ("bakery/__init__.py", ""),
        ("bakery/settings/base.py", "import os\nSECRET_KEY = os.environ[\"DJANGO_SECRET_KEY\"]\n"),
        ("bakery/settings/production.py", "from .base import *\n"),
        // A fixture with a password hash: what Django stores, not a password.
        (
            "bakery/fixtures/users.json",
            "[{\"model\": \"auth.user\", \"fields\": {\"password\": \"pbkdf2_sha256$600000$Zq3kT9xWm2Lp$Ab4cD5eF6gH7iJ8kL9mN0oP1qR2sT3uV4wX5yZ6a7B8=\"}}]\n",
        ),
    ]);
    assert_clean(&p);
    p.write(
        "bakery/settings/local.py",
        &format!("from .base import *\nSECRET_KEY = \"{KEY}\"\n"),
    );
    p.write("db.sqlite3", "SQLite format 3");
    p.write("media/original_images/cake.jpg", "jpeg");
    p.write("collect_static/app.css", "body{}");
    p.write(".vagrant/machines/default/id", "abc");
    p.write("app.log", "started");
    p.write("venv/bin/python", "#!");
    let (code, v) = check(&p);
    assert_eq!(code, 1, "{v:#}");
    assert_named(&v, "secret", "error", &["bakery/settings/local.py"]);
    assert_named(
        &v,
        "git_ignored",
        "error",
        &["db.sqlite3", "media/", "app.log"],
    );
    assert_named(&v, "bloat", "warning", &["venv/", ".vagrant/"]);
    // collect_static is excluded, so it is not named; the key's value never is.
    let text = v.to_string();
    assert!(
        !text.contains("collect_static") && !text.contains("q8Zr2"),
        "{text}"
    );
}

#[test]
fn a_document_manager_with_guard_rules() {
    let p = tree(&[
        (
            "Dockerfile",
            "FROM scratch AS ui\nCOPY ./src-ui /src/src-ui\nFROM scratch\nCOPY [\"pyproject.toml\", \"uv.lock\", \"/usr/src/app/\"]\nCOPY ./src ./\nCOPY --from=ui /src/src-ui/dist ./static\n",
        ),
        (
            ".dockerignore",
            "# caches\n**/__pycache__\n.venv/\n./src-ui/node_modules\n./src-ui/dist\n.git\n**/tests\n**/htmlcov\n# local folders\n./consume\n./media\n./data\n./export\n./docker\nDockerfile\n.dockerignore\n.gitignore\n",
        ),
        (".gitignore", "__pycache__/\n.venv/\nnode_modules/\n/consume/\n/media/\n/data/\n*.sqlite3\n"),
        ("pyproject.toml", "[project]\nname = \"paper\"\n"),
        ("uv.lock", "version = 1\n"),
        ("src/manage.py", ""),
        ("src/paper/settings.py", "SECRET_KEY = os.getenv(\"PAPER_SECRET_KEY\", \"change-me\")\n"),
        // A package named like a guarded root folder: not what `./export` is for.
        ("src/documents/export/__init__.py", ""),
        ("src/documents/tests/test_api.py", "password = \"Xk2mQ9rL8vB3nM7t\"\n"),
        ("src-ui/package.json", "{}"),
        // A pnpm setting, not a credential.
        ("src-ui/.npmrc", "shamefully-hoist=true\n"),
        ("docker/compose/.env", "COMPOSE_PROJECT_NAME=paper\n"),
        ("src/.env.example", format!("PAPER_SECRET_KEY={KEY}\n").as_str()),
    ]);
    // `.env.example` is a template, `docker/` is excluded; nothing else to say.
    assert_clean(&p);
    p.write("consume/scan.pdf", "%PDF");
    p.write("src/db.sqlite3", "SQLite format 3");
    p.write("src-ui/node_modules/left-pad/index.js", "");
    // A real-format token in an ordinarily named file, in a directory the build copies.
    p.write(
        "src-ui/src/environments/environment.local.ts",
        "export const token = 'ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ';\n",
    );
    let (code, v) = check(&p);
    assert_eq!(code, 1, "{v:#}");
    assert_named(&v, "git_ignored", "error", &["src/db.sqlite3"]);
    assert_named(&v, "secret", "error", &["environment.local.ts"]);
    // The ui stage needs src-ui: the fix must not exclude it.
    let secret = findings(&v).iter().find(|f| f["kind"] == "secret").unwrap();
    assert!(
        secret["fix"].as_str().unwrap().contains("don't exclude it"),
        "{secret}"
    );
    assert!(!v.to_string().contains("consume/scan.pdf"), "{v}");
}

#[test]
fn an_image_repository_that_copies_by_name() {
    let p = tree(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY requirements-container.txt /\nCOPY docker/entrypoint.sh /opt/entrypoint.sh\nCOPY configuration/ /etc/app/config/\n",
        ),
        (
            ".dockerignore",
            ".git*\n*.md\nbuild*\ndocker-compose*\nenv\nDockerfile\n.dockerignore\ntest-configuration\ndocker/images.toml\n",
        ),
        (".gitignore", "env/*.local\n"),
        ("README.md", "# app"),
        ("requirements-container.txt", "gunicorn\n"),
        // The documented default API token of a dev setup: a placeholder.
        (
            "docker/entrypoint.sh",
            "#!/bin/sh\nif [ -z \"$SUPERUSER_API_TOKEN\" ]; then\n  SUPERUSER_API_TOKEN='0123456789abcdef0123456789abcdef01234567'\nfi\n",
        ),
        ("configuration/configuration.py", "SECRET_KEY = environ.get('SECRET_KEY', '')\n"),
        ("env/app.env", "SUPERUSER_PASSWORD=admin\n"),
        ("docker-compose.yml", "services: {}\n"),
    ]);
    assert_clean(&p);
    p.write(
        "configuration/ldap_config.py",
        &format!("AUTH_LDAP_BIND_PASSWORD = \"{KEY}\"\n"),
    );
    let (code, v) = check(&p);
    assert_eq!(code, 1, "{v:#}");
    assert_named(&v, "secret", "error", &["configuration/ldap_config.py"]);
}
