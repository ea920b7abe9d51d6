"""The stack's configuration: one typed, validated model.

`parse_config` is pure: it takes the raw `<project>:*` values (as Pulumi stores
them: strings, or JSON for objects) and the set of keys that are secrets, and
returns a `StackConfig` or raises `ConfigError` listing every problem at once.
`load_config` is the thin Pulumi-facing wrapper used by `__main__.py`.

The model is in config_model.py, the value checks and the reader in
config_checks.py, one reader per section in config_sections.py; every name the
program uses is importable from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from components.config.checks import (
    DIGEST_REF,
    DURATION,
    KNOWN_KEYS,
    NAME,
    SECRET_KEYS,
    SECTION_KEYS,
    _Reader,
    _str_list,
    caddy_too_old,
    duration_seconds,
    private_key_problem,
)
from components.config.cross_checks import _check_build_files, _check_env_names, _check_pipeline_hosts, _check_waits
from components.config.model import (
    NAMESPACE,
    ROLLBACK_ENV,
    ClusterConfig,
    ConfigError,
    GitHubConfig,
    HealthcheckConfig,
    HostConfig,
    ImageConfig,
    MigrationsConfig,
    PostgresConfig,
    ProxyConfig,
    RedisConfig,
    ReleasesConfig,
    RoleConfig,
    RoleHealthcheck,
    Secret,
    StackConfig,
    VerifyConfig,
    WebConfig,
    registry_of,
)
from components.config.sections import (
    _parse_accessories,
    _parse_cluster,
    _parse_github,
    _parse_healthcheck,
    _parse_host,
    _parse_image,
    _parse_proxy,
    _parse_releases,
    _parse_roles,
    _parse_verify,
    _parse_web,
)

__all__ = [
    "DIGEST_REF", "DURATION", "KNOWN_KEYS", "NAMESPACE", "SECRET_KEYS", "SECTION_KEYS", "ClusterConfig", "ConfigError", "GitHubConfig",
    "HealthcheckConfig", "HostConfig", "ImageConfig", "MigrationsConfig", "PostgresConfig", "ProxyConfig", "RedisConfig",
    "ReleasesConfig", "RoleConfig", "RoleHealthcheck", "Secret", "StackConfig", "VerifyConfig", "WebConfig",
    "caddy_too_old", "duration_seconds", "git_sha", "load_config", "parse_config", "private_key_problem", "project_name", "registry_of",
    "stack_file_host", "uncommitted_changes",
]  # fmt: skip


def parse_config(
    raw: Mapping[str, Any],
    secret_keys: set[str],
    stack: str,
    git_sha: str | None = None,
    uncommitted: Callable[[str], bool] | None = None,
    root: str | None = None,
    namespace: str = NAMESPACE,
    stack_host: Callable[[str], str | None] | None = None,
) -> StackConfig:
    """Validate the raw `<project>:*` config (keys without the namespace) into a StackConfig.

    `git_sha` is the commit checked out; `uncommitted(context)` tells whether the build
    context differs from it (given only when the tag comes from the checkout itself). `root` is the
    project's directory, which relative paths are read from: the build context and the Dockerfile must be
    there (None: this update builds nothing, and they are not looked for).
    `namespace` is the project's name, which every key is named with in messages (`<namespace>:web.replicas`).
    `stack_host(name)` is the host.url another stack's file sets (None: not known), for the stacks
    `github.stacks` lists beside this one (`stack_file_host` reads it).
    Raises ConfigError naming every bad key, the value given and what is expected.
    """
    r = _Reader(raw, secret_keys, namespace)
    r.unknown("", raw, KNOWN_KEYS)

    app_name = raw.get("appName")
    if app_name in (None, ""):
        r.missing("appName", "a lowercase name like 'web' (letters, digits, '-'; at most 40)")
        app_name = "app"
    elif not (isinstance(app_name, str) and NAME.match(app_name)):
        r.fail("appName", app_name, "a lowercase name like 'web' (letters, digits, '-'; at most 40)")
        app_name = "app"

    image = _parse_image(r, git_sha, uncommitted)
    host = _parse_host(r)
    web = _parse_web(r)
    healthcheck = _parse_healthcheck(r, web.port)
    proxy = _parse_proxy(r)
    postgres, redis = _parse_accessories(r)
    migrations = MigrationsConfig(
        command=r.value(
            m := r.object("migrations"),
            "migrations",
            "command",
            (),
            _str_list,
            "a command as a list of strings, like ['alembic', 'upgrade', 'head']",
        )
    )
    r.unknown("migrations", m, SECTION_KEYS["migrations"])
    releases = _parse_releases(r)
    verify = _parse_verify(r)
    github = _parse_github(r, stack)
    roles = _parse_roles(r)
    cluster = _parse_cluster(r, roles, image)
    _check_waits(r, web, healthcheck, roles, cluster)
    _check_env_names(r, web, roles, postgres, redis)
    _check_build_files(r, image, releases.promote_from, root)
    _check_pipeline_hosts(r, github, stack, host, stack_host)
    notify_webhook = r.secret("notifyWebhook")
    if notify_webhook is not None and not notify_webhook.reveal().startswith("https://"):
        r.problems.append(f"{r.ns}:notifyWebhook = [secret]: expected an https:// URL (a Slack, Discord or other incoming webhook)")
    if not web.enabled and not roles:
        r.fail("web.enabled", False, "true, or at least one role under `roles`: otherwise nothing would run")

    if r.problems:
        raise ConfigError(r.problems)
    return StackConfig(
        stack=stack,
        app_name=str(app_name),
        image=image,
        host=host,
        healthcheck=healthcheck,
        web=web,
        proxy=proxy,
        postgres=postgres,
        redis=redis,
        migrations=migrations,
        releases=releases,
        verify=verify,
        github=github,
        roles=roles,
        cluster=cluster,
        notify_webhook=notify_webhook,
    )


# --------------------------------------------------------------------------- Pulumi-facing


# Every git command the program runs only reads. `git status` refreshes the index's stat data and writes
# .git/index back, unless optional locks are off: git builtin/commit.c cmd_status takes the index lock, and so
# writes the refreshed index (repo_update_index_if_able), only `if (use_optional_locks())`. `--no-optional-locks`
# turns them off (GIT_OPTIONAL_LOCKS=0), so a preview leaves the checkout's .git as it was.
GIT_READ = ("git", "--no-optional-locks")


def git_sha(env: Mapping[str, str], cwd: str = ".") -> str | None:
    """The commit being deployed: CUTOVER_GIT_SHA, then GITHUB_SHA, then `git rev-parse HEAD` (a read only)."""
    import subprocess

    for var in ("CUTOVER_GIT_SHA", "GITHUB_SHA"):
        if env.get(var):
            return env[var][:40]
    try:
        out = subprocess.run([*GIT_READ, "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def uncommitted_changes(path: str, cwd: str = ".") -> bool:
    """True when `git status` lists changes (untracked files included) under `path`; writes nothing under .git."""
    import subprocess

    try:
        out = subprocess.run([*GIT_READ, "status", "--porcelain", "--", path], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def project_name(start: str | os.PathLike[str]) -> str:
    """The `name:` of the project file the pulumi CLI uses from `start`: the first of Pulumi.json, Pulumi.yaml,
    Pulumi.yml in `start` or the nearest folder above it (pulumi/pulumi sdk/go/common/workspace/paths.go
    DetectProjectPathFrom and findProjectInDir, in the order of sdk/go/common/encoding/marshal.go Exts). The CLI
    puts that name before every key set without one (`pulumi config set --path web.replicas 3` sets
    `<name>:web.replicas`: pkg/cmd/pulumi/config/io.go parseConfigKey)."""
    import yaml

    here = Path(start).resolve()
    for folder in (here, *here.parents):
        for file in (folder / f"Pulumi{ext}" for ext in (".json", ".yaml", ".yml")):
            if file.is_file():
                # YAML 1.2 reads JSON too
                data = yaml.safe_load(file.read_text())
                name = data.get("name") if isinstance(data, dict) else None
                if not isinstance(name, str) or not name:
                    raise ValueError(f"{file}: `name` = {json.dumps(name)}: expected the project's name")
                return name
    raise ValueError(f"no Pulumi.yaml project file in {here} or any folder above it: run this from the project's directory")


def stack_file_host(root: str | os.PathLike[str], namespace: str, stack: str) -> str | None:
    """The host.url that `stack`'s file in the project directory `root` sets: `<namespace>:host.url`, or the default
    (the local engine) when the file sets none; None when there is no such file or the value cannot be read
    (a secret, a file that is not YAML). The file is `Pulumi.<stack>.yaml` in Pulumi.yaml's `stackConfigDir`, or
    beside Pulumi.yaml (pulumi/pulumi sdk/go/common/workspace/paths.go DetectProjectStackPath)."""
    import yaml

    try:
        project = yaml.safe_load(Path(root, "Pulumi.yaml").read_text())
        folder = project.get("stackConfigDir") if isinstance(project, dict) else None
        data = yaml.safe_load(Path(root, folder or ".", f"Pulumi.{stack}.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    config = (data.get("config") if isinstance(data, dict) else None) or {}
    host = config.get(f"{namespace}:host") if isinstance(config, dict) else None
    if host is None:
        return HostConfig().url
    # a secret (`secure:`) cannot be read here
    url = host.get("url", HostConfig().url) if isinstance(host, dict) and "secure" not in host else None
    return url if isinstance(url, str) else None


def load_config() -> StackConfig:  # pragma: no cover - exercised through the program tests
    """Read `<project>:*` from the Pulumi stack and validate it."""
    import pulumi
    from pulumi.runtime import is_config_secret
    from pulumi.runtime.config import CONFIG

    # the program's own keys are named after the project, as pulumi.Config() names them when given no name
    # (pulumi/pulumi sdk/python/lib/pulumi/config.py Config.__init__ and full_key: f"{get_project()}:{key}")
    config = pulumi.Config()
    namespace = config.name
    # Every value is read with pulumi.Config.get. The public SDK has no call that lists the keys a stack sets (Config
    # answers only for a key it is given) nor one that tells whether a key is secret (get_secret wraps any value it
    # is given; the check in Config._get is commented out), and the program needs both: to refuse an unknown key (a
    # typo would be ignored) and a secret set in plain text. So the key names come from the map Config reads
    # (pulumi/pulumi sdk/python/lib/pulumi/runtime/config.py CONFIG, through get_config) and which are secret from
    # is_config_secret (the same file). set_all_config fills both before the program runs: from the language host's
    # PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS (sdk/python/cmd/pulumi-language-python-exec), or from the engine's
    # request to an inline program (sdk/python/lib/pulumi/automation/_server.py LanguageServer.Run).
    prefix = f"{namespace}:"
    keys = [k[len(prefix) :] for k in CONFIG.get() if k.startswith(prefix)]
    raw = {k: config.get(k) for k in keys}
    secret = {k for k in keys if is_config_secret(config.full_key(k))}
    # the tag is the checkout's commit unless CI (GITHUB_SHA) or the caller (CUTOVER_GIT_SHA) names it
    from_checkout = not (os.environ.get("CUTOVER_GIT_SHA") or os.environ.get("GITHUB_SHA"))
    # a rollback builds nothing (components/release/plan.py): its build files are not looked for
    root = None if os.environ.get(ROLLBACK_ENV, "").strip() else os.getcwd()
    project_dir = os.getcwd()
    return parse_config(
        raw,
        secret,
        pulumi.get_stack(),
        git_sha(os.environ),
        uncommitted_changes if from_checkout else None,
        root,
        namespace,
        lambda other: stack_file_host(project_dir, namespace, other),
    )
