"""The configuration model: defaults, and every bad value named with its key, value and what is expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.config.checks import duration_seconds
from components.config.load import parse_config
from components.config.model import ConfigError, Secret, StackConfig, known_hosts_name, registry_of
from tests.conftest import SSH_KEY as KEY  # the header of an unencrypted key
from tests.harness import ROOT, load_stack_file

SHA = "0123456789abcdef0123456789abcdef01234567"
KNOWN = "203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


def minimal(**over: Any) -> dict[str, Any]:
    return {"appName": "web", "image": {"repository": "ghcr.io/acme/web", "push": False}, **over}


def parse(raw: dict[str, Any], secrets: set[str] = frozenset(), stack: str = "dev", sha: str | None = SHA) -> StackConfig:  # type: ignore[assignment]
    return parse_config(raw, set(secrets), stack, sha)


def problems(raw: dict[str, Any], secrets: set[str] = frozenset(), sha: str | None = SHA) -> list[str]:  # type: ignore[assignment]
    with pytest.raises(ConfigError) as err:
        parse(raw, secrets, sha=sha)
    return err.value.problems


def test_defaults_of_a_minimal_config() -> None:
    cfg = parse(minimal())
    assert cfg.app_name == "web"
    assert cfg.image.tag == SHA and cfg.image.git_sha == SHA
    assert cfg.image.context == "./app" and cfg.image.platform is None
    assert cfg.host.url == "unix:///var/run/docker.sock" and not cfg.host.is_ssh
    assert cfg.healthcheck.path == "/health" and cfg.healthcheck.port == 8000
    assert cfg.web.replicas == 1 and cfg.web.memory_mb == 512
    assert cfg.proxy.http_port == 80 and cfg.proxy.https_port == 443
    assert cfg.releases.history_size == 10
    assert not cfg.postgres.enabled and not cfg.redis.enabled and not cfg.github.enabled
    assert cfg.resource_prefix == "web-dev"


def test_ssh_host_reads_user_address_port_and_pinned_key() -> None:
    cfg = parse(
        minimal(
            host={"url": "ssh://deploy@203.0.113.10:2222", "knownHosts": "[203.0.113.10]:2222 " + KNOWN.split(" ", 1)[1]}, sshPrivateKey=KEY
        ),
        {"sshPrivateKey"},
    )
    assert cfg.host.ssh == ("deploy", "203.0.113.10", 2222)
    assert cfg.host.host_key == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    assert isinstance(cfg.host.private_key, Secret) and cfg.host.private_key.reveal() == KEY
    assert KEY not in repr(cfg)


def test_an_ipv6_host_on_port_22_is_pinned_by_its_bare_address_as_ssh_keyscan_prints_it() -> None:
    # OpenSSH misc.c put_host_port: the bare host on port 22, [host]:port on any other; no brackets of the URL form
    line = "2001:db8::10 " + KNOWN.split(" ", 1)[1]
    cfg = parse(minimal(host={"url": "ssh://deploy@[2001:db8::10]", "knownHosts": line}, sshPrivateKey=KEY), {"sshPrivateKey"})
    assert cfg.host.known_hosts == line
    assert known_hosts_name("[2001:db8::10]", 22) == "2001:db8::10"
    assert known_hosts_name("[2001:db8::10]", 2222) == "[2001:db8::10]:2222"
    assert known_hosts_name("203.0.113.10", 2222) == "[203.0.113.10]:2222"


def test_objects_arrive_as_json_strings_like_pulumi_stores_them() -> None:
    cfg = parse({"appName": "web", "image": '{"repository": "ghcr.io/acme/web", "extraTags": ["stable"]}', "web": '{"replicas": "3"}'})
    assert cfg.image.extra_tags == ("stable",)
    assert cfg.web.replicas == 3


def test_secret_env_and_durations() -> None:
    cfg = parse(minimal(secretEnv='{"API_KEY": "s3cret"}', healthcheck={"interval": "1m30s"}, web={"stopTimeout": "45s"}), {"secretEnv"})
    assert cfg.web.secret_env == {"API_KEY": Secret("s3cret")}
    assert duration_seconds(cfg.healthcheck.interval) == 90
    assert cfg.web.stop_timeout_s == 45


@pytest.mark.parametrize(
    ("raw", "secrets", "expected"),
    [
        pytest.param({}, set(), ["cutover:appName is missing", "cutover:image.repository is missing"], id="missing-required"),
        pytest.param(
            minimal(web={"replicas": "three"}), set(), ['cutover:web.replicas = "three": expected a whole number'], id="wrong-type-replicas"
        ),
        pytest.param(
            minimal(web={"replicas": -1}),
            set(),
            ["cutover:web.replicas = -1: expected a whole number of containers from 1 to 20"],
            id="negative-replicas",
        ),
        pytest.param(
            minimal(image={"repository": "ghcr.io/acme/web", "push": "yes"}),
            set(),
            ['cutover:image.push = "yes": expected true or false'],
            id="wrong-type-bool",
        ),
        pytest.param(
            minimal(healthcheck={"interval": "10"}),
            set(),
            ['cutover:healthcheck.interval = "10": expected a duration with a unit'],
            id="duration-without-unit",
        ),
        pytest.param(
            minimal(healthcheck={"timeout": "ten seconds"}),
            set(),
            ['cutover:healthcheck.timeout = "ten seconds": expected a duration with a unit'],
            id="duration-in-words",
        ),
        pytest.param(
            minimal(web={"port": 70000}), set(), ["cutover:web.port = 70000: expected a port number from 1 to 65535"], id="port-too-high"
        ),
        pytest.param(
            minimal(proxy={"httpPort": 0}), set(), ["cutover:proxy.httpPort = 0: expected a port number from 1 to 65535"], id="port-zero"
        ),
        pytest.param(
            minimal(image={"repository": "ghcr.io/Acme/Web"}),
            set(),
            ['cutover:image.repository = "ghcr.io/Acme/Web": expected an image repository in lowercase'],
            id="uppercase-image",
        ),
        pytest.param(
            minimal(image={"repository": "ghcr.io/acme/my web"}),
            set(),
            ['cutover:image.repository = "ghcr.io/acme/my web": expected an image repository in lowercase'],
            id="image-with-space",
        ),
        pytest.param(
            minimal(image={"repository": "ghcr.io/acme/web", "tag": "latest"}),
            set(),
            ['cutover:image.tag = "latest": expected an immutable tag'],
            id="latest-only-tag",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10:22", "knownHosts": KNOWN}),
            set(),
            ["cutover:sshPrivateKey is missing: expected a secret, because host.url is an ssh:// host"],
            id="ssh-without-key",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10:22"}, sshPrivateKey=KEY),
            {"sshPrivateKey"},
            ["cutover:host.knownHosts is missing: expected the server's pinned host key"],
            id="ssh-without-pinned-host-key",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10:22", "knownHosts": KNOWN}, sshPrivateKey=KEY),
            set(),
            ["cutover:sshPrivateKey is set in plain text: it must be stored as a secret"],
            id="key-not-secret",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10:99999", "knownHosts": KNOWN}, sshPrivateKey=KEY),
            {"sshPrivateKey"},
            ["cutover:host.url = \"ssh://deploy@203.0.113.10:99999\": expected 'ssh://user@host:port' with a port from 1 to 65535"],
            id="ssh-port-out-of-range",
        ),
        pytest.param(
            minimal(host={"url": "tcp://203.0.113.10:2375"}),
            set(),
            ["cutover:host.url = \"tcp://203.0.113.10:2375\": expected 'unix:///var/run/docker.sock' or 'ssh://user@host:port'"],
            id="unsupported-host",
        ),
        pytest.param(
            minimal(web={"replicaz": 2}),
            set(),
            ["cutover:web.replicaz = 2: expected one of the known keys", "did you mean 'replicas'?"],
            id="typo-in-key",
        ),
        pytest.param(
            minimal(web={"memory": "512"}),
            set(),
            ["cutover:web.memory = \"512\": expected a memory limit like '256m' or '1g'"],
            id="memory-without-unit",
        ),
        pytest.param(
            minimal(postgres={"enabled": True}),
            set(),
            ["cutover:postgresPassword is missing: expected a secret, because postgres.enabled is true"],
            id="postgres-without-password",
        ),
        pytest.param(
            minimal(secretEnv='{"API_KEY": "x"}'),
            set(),
            ["cutover:secretEnv is set in plain text: it must be stored as a secret"],
            id="secret-env-not-secret",
        ),
        pytest.param(
            minimal(proxy={"domain": "App.Example.com"}),
            set(),
            ['cutover:proxy.domain = "App.Example.com": expected a lowercase DNS name'],
            id="domain-uppercase",
        ),
        pytest.param(
            minimal(proxy={"image": "caddy:2.7.6-alpine"}),
            set(),
            ['cutover:proxy.image = "caddy:2.7.6-alpine": expected Caddy 2.8 or newer'],
            id="caddy-before-2.8",
        ),
        pytest.param(
            minimal(proxy={"keeperImage": "docker cli"}),
            set(),
            ['cutover:proxy.keeperImage = "docker cli": expected an image with the Docker CLI'],
            id="keeper-image-with-a-space",
        ),
        pytest.param(
            minimal(github={"enabled": True}),
            set(),
            ["cutover:github.owner is missing", "cutover:github.repository is missing"],
            id="github-without-repo",
        ),
        pytest.param(
            minimal(github={"stacks": ["staging", "prod"]}),
            set(),
            ['cutover:github.stacks = ["staging", "prod"]: expected a list of one {stack name: GitHub environment name} per stack'],
            id="github-stacks-a-list-of-names",
        ),
        pytest.param(
            minimal(github={"stacks": {}}),
            set(),
            ["cutover:github.stacks = {}: expected a list of one {stack name: GitHub environment name} per stack, in deploy order"],
            id="github-stacks-empty",
        ),
        pytest.param(
            minimal(github={"stacks": []}),
            set(),
            ["cutover:github.stacks = []: expected a list of one {stack name: GitHub environment name} per stack"],
            id="github-stacks-empty-list",
        ),
        pytest.param(
            minimal(github={"stacks": [{"staging": "staging"}, {"prod": "prod env"}]}),
            set(),
            ['cutover:github.stacks = [{"staging": "staging"}, {"prod": "prod env"}]: expected a list of one {stack name: GitHub'],
            id="github-stacks-bad-environment",
        ),
        pytest.param(
            minimal(github={"stacks": [{"-staging": "staging"}]}),
            set(),
            ['cutover:github.stacks = [{"-staging": "staging"}]: expected a list of one {stack name'],
            id="github-stacks-bad-stack-name",
        ),
        pytest.param(
            minimal(github={"stacks": [{"staging": "staging", "prod": "production"}]}),
            set(),
            ['cutover:github.stacks = [{"staging": "staging", "prod": "production"}]: expected a list of one {stack name'],
            id="github-stacks-two-in-one-entry",
        ),
        pytest.param(
            minimal(github={"stacks": [{"prod": "production"}, {"prod": "production"}]}),
            set(),
            ["each stack and each environment once"],
            id="github-stacks-a-stack-twice",
        ),
        pytest.param(
            minimal(github={"stacks": [{"prod": "production"}, {"prod-eu": "production"}]}),
            set(),
            ['cutover:github.stacks = [{"prod": "production"}, {"prod-eu": "production"}]: expected', "each environment once"],
            id="github-stacks-an-environment-twice",
        ),
        pytest.param(
            minimal(github={"stacks": {"staging": "staging", "prod": "production"}}),
            set(),
            [
                'cutover:github.stacks = {"staging": "staging", "prod": "production"}: expected a list, which keeps the deploy order,'
                ' like [{"staging": "staging"}, {"prod": "production"}]: Pulumi hands an object\'s keys to the program sorted by name,'
                " so this one would deploy prod before staging"
            ],
            id="github-stacks-an-object-of-two",
        ),
        pytest.param(
            minimal(github={"enabled": True, "owner": "acme", "repository": "web", "environment": "staging", "stacks": {"dev": "dev"}}),
            set(),
            ["cutover:github.environment = \"staging\": expected 'dev', the environment github.stacks gives stack 'dev'"],
            id="github-environment-not-the-deployed-one",
        ),
        pytest.param(
            minimal(github={"reviewers": ["alice", "not a user"]}),
            set(),
            ['cutover:github.reviewers = ["alice", "not a user"]: expected at most 6 distinct GitHub user names'],
            id="github-reviewer-bad-name",
        ),
        pytest.param(
            minimal(github={"reviewers": [f"user{i}" for i in range(7)]}),
            set(),
            ['cutover:github.reviewers = ["user0", "user1", "user2", "user3", "user4", "user5", "user6"]: expected at most 6'],
            id="github-too-many-reviewers",
        ),
        pytest.param(
            minimal(github={"reviewers": ["alice", "alice"]}),
            set(),
            ['cutover:github.reviewers = ["alice", "alice"]: expected at most 6 distinct'],
            id="github-reviewer-twice",
        ),
        pytest.param(
            minimal(github={"reviewers": "alice,bob"}),
            set(),
            ['cutover:github.reviewers = ["alice,bob"]: expected at most 6 distinct GitHub user names'],
            id="github-reviewers-as-one-string",
        ),
        pytest.param(
            minimal(github={"waitTimer": "31d"}),
            set(),
            ['cutover:github.waitTimer = "31d": expected a duration in minutes'],
            id="github-wait-timer-without-known-unit",
        ),
        pytest.param(
            minimal(github={"waitTimer": "721h"}),
            set(),
            ["cutover:github.waitTimer = \"721h\": expected a duration in minutes like '10m' (at most 30 days)"],
            id="github-wait-timer-too-long",
        ),
        pytest.param(
            minimal(github={"variables": {"PULUMI_STACK": "other"}}),
            set(),
            ['cutover:github.variables.PULUMI_STACK = "other": expected a name other than', "which are set from the stack"],
            id="github-variable-reserved",
        ),
        pytest.param(
            minimal(github={"variables": {"GITHUB_THING": "x", "lower": "y"}}),
            set(),
            [
                'cutover:github.variables.GITHUB_THING = "x": expected a variable name in upper case, not starting with GITHUB_',
                'cutover:github.variables.lower = "y": expected a variable name in upper case',
            ],
            id="github-variable-names",
        ),
        pytest.param(
            minimal(githubSecrets='{"GITHUB_TOKEN": "x"}'),
            {"githubSecrets"},
            ["cutover:githubSecrets = [secret]: expected an object of UPPER_CASE_NAME: value, names not starting with GITHUB_"],
            id="github-secret-reserved-prefix",
        ),
        pytest.param(
            minimal(githubSecrets='{"SSH_PRIVATE_KEY": "x"}'),
            {"githubSecrets"},
            ["cutover:githubSecrets.SSH_PRIVATE_KEY = [secret]: expected another name: SSH_PRIVATE_KEY is set from cutover:sshPrivateKey"],
            id="github-secret-set-from-ssh-key",
        ),
        pytest.param(
            minimal(githubSecrets='{"NOTIFY_WEBHOOK": "x"}'),
            {"githubSecrets"},
            ["cutover:githubSecrets.NOTIFY_WEBHOOK = [secret]: expected another name: NOTIFY_WEBHOOK is set from cutover:notifyWebhook"],
            id="github-secret-set-from-notify-webhook",
        ),
        pytest.param(
            minimal(githubSecrets='{"PULUMI_CONFIG_PASSPHRASE": "x"}'),
            set(),
            ["cutover:githubSecrets is set in plain text: it must be stored as a secret"],
            id="github-secrets-not-secret",
        ),
        pytest.param(
            minimal(github={"branch": "feature/../main"}),
            set(),
            ['cutover:github.branch = "feature/../main": expected a branch name'],
            id="github-bad-branch",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10:2222", "knownHosts": KNOWN}, sshPrivateKey=KEY),
            {"sshPrivateKey"},
            ["cutover:host.knownHosts = ", "expected a line for [203.0.113.10]:2222 (the host and port of host.url)"],
            id="known-hosts-for-another-port",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10", "knownHosts": KNOWN + "\n" + KNOWN}, sshPrivateKey=KEY),
            {"sshPrivateKey"},
            ["cutover:host.knownHosts = ", "expected one known_hosts line"],
            id="known-hosts-several-lines",
        ),
        pytest.param(
            minimal(web={"tmpfs": ["tmp"]}), set(), ['cutover:web.tmpfs = ["tmp"]: expected a list of absolute paths'], id="tmpfs-relative"
        ),
        pytest.param(minimal(web={"env": {"MOTD": "two\nlines"}}), set(), ["cutover:web.env = ", "one line each"], id="env-with-newline"),
        pytest.param(
            minimal(secretEnv='{"CERT": "a\\nb"}'),
            {"secretEnv"},
            ["cutover:secretEnv = [secret]: expected values of one line; CERT span several"],
            id="secret-env-with-newline",
        ),
        pytest.param(minimal(appName="My App"), set(), ['cutover:appName = "My App": expected a lowercase name'], id="bad-app-name"),
        pytest.param(
            minimal(
                host={"url": "ssh://deploy@203.0.113.10", "knownHosts": "203.0.113.10 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ"},
                sshPrivateKey=KEY,
            ),
            {"sshPrivateKey"},
            ["cutover:host.knownHosts = ", "ed25519 or ECDSA key", "an ssh-rsa key cannot be pinned", "OpenSSH 8.8"],
            id="rsa-host-key-pin",
        ),
        pytest.param(
            minimal(host={"url": "ssh://deploy@203.0.113.10", "knownHosts": KNOWN}, sshPrivateKey="not a key"),
            {"sshPrivateKey"},
            ["cutover:sshPrivateKey = [secret]: expected an unencrypted private key (ssh-keygen -t ed25519 -N ''"],
            id="key-not-a-key",
        ),
        pytest.param(
            minimal(
                host={"url": "ssh://deploy@203.0.113.10", "knownHosts": KNOWN},
                # an OpenSSH key whose cipher is aes256-ctr: made with a passphrase
                sshPrivateKey="-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0\n-----END OPENSSH PRIVATE KEY-----",
            ),
            {"sshPrivateKey"},
            ["cutover:sshPrivateKey = [secret]: expected an unencrypted private key", "this one is encrypted with a passphrase"],
            id="key-with-passphrase",
        ),
        pytest.param(
            minimal(web={"cpus": "0.01"}),
            set(),
            ['cutover:web.cpus = "0.01": expected a positive number of CPUs', "reads 0.01 back as 0.0"],
            id="cpus-the-provider-cannot-read-back",
        ),
        pytest.param(minimal(web={"cpus": 0}), set(), ["cutover:web.cpus = 0: expected a positive number of CPUs"], id="cpus-zero"),
    ],
)
def test_bad_config_is_named_with_key_value_and_expectation(raw: dict[str, Any], secrets: set[str], expected: list[str]) -> None:
    found = problems(raw, secrets)
    text = "\n".join(found)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


SERVER = {"url": "ssh://deploy@203.0.113.10:22", "knownHosts": KNOWN}
ON_GITHUB = {"enabled": True, "owner": "acme", "repository": "web"}
LOCAL_ENGINE = "unix:///var/run/docker.sock"


def pipeline_problems(stack: str, host: dict[str, str], stack_host: Any = None, **github: Any) -> list[str]:
    raw = minimal(host=host, github={**ON_GITHUB, **github}, sshPrivateKey=KEY)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, {"sshPrivateKey"}, stack, SHA, stack_host=stack_host)
    return err.value.problems


def test_a_stack_on_the_local_engine_is_refused_in_github_stacks() -> None:
    """From a runner, the local engine is the runner's own: nothing a team can reach, gone after the job."""
    (problem,) = pipeline_problems("prod", {}, stacks=[{"prod": "production"}])
    assert problem == (
        'cutover:github.stacks = [{"prod": "production"}]: expected only stacks on a server (host.url'
        " 'ssh://user@host:port'): the workflows deploy and preview each one from a GitHub-hosted runner, and stack prod's"
        f" host.url is {LOCAL_ENGINE} (this stack), which there is the runner's own Docker engine, gone when the job ends;"
        " leave prod out (deploy it from its machine: make deploy) or give it an ssh:// host.url"
    )
    # the default names prod: a prod stack on the local engine with the GitHub side on is refused too
    assert pipeline_problems("prod", {})[0].startswith('cutover:github.stacks = {"prod": "production"}: expected only stacks on a server')


def test_another_stack_on_the_local_engine_is_refused_from_its_stack_file() -> None:
    hosts = {"dev": LOCAL_ENGINE, "staging": "ssh://deploy@203.0.113.20:22"}
    asked: list[str] = []

    def stack_host(name: str) -> str | None:
        asked.append(name)
        return hosts.get(name)

    (problem,) = pipeline_problems("prod", SERVER, stack_host, stacks=[{"dev": "dev"}, {"staging": "staging"}, {"prod": "production"}])
    assert problem.startswith('cutover:github.stacks = [{"dev": "dev"}, {"staging": "staging"}, {"prod": "production"}]: expected only')
    assert f"stack dev's host.url is {LOCAL_ENGINE} (Pulumi.dev.yaml)" in problem and "leave dev out" in problem
    assert "staging" not in problem.split("expected", 1)[1], "a stack on a server is not named"
    assert asked == ["dev", "staging"], "this stack's own host is its config's"
    ok = parse_config(
        minimal(host=SERVER, github={**ON_GITHUB, "stacks": [{"staging": "staging"}, {"prod": "production"}]}, sshPrivateKey=KEY),
        {"sshPrivateKey"},
        "prod",
        SHA,
        stack_host=stack_host,
    )
    assert list(ok.github.stacks) == ["staging", "prod"]
    # a stack whose file is not there (or unreadable) is not judged here
    parse_config(minimal(host=SERVER, github={**ON_GITHUB, "stacks": [{"qa": "qa"}, {"prod": "production"}]}, sshPrivateKey=KEY),
                 {"sshPrivateKey"}, "prod", SHA, stack_host=stack_host)  # fmt: skip


def test_without_the_github_side_the_stacks_are_not_judged() -> None:
    cfg = parse(minimal(github={"stacks": [{"dev": "dev"}]}), stack="dev")
    assert cfg.github.stacks == {"dev": "dev"} and not cfg.github.enabled


def test_the_stack_files_give_each_stack_its_host(tmp_path: Path) -> None:
    from components.config.load import stack_file_host

    assert stack_file_host(ROOT, "cutover", "dev") == LOCAL_ENGINE
    assert stack_file_host(ROOT, "cutover", "prod") == "ssh://deploy@203.0.113.10:22"
    assert stack_file_host(ROOT, "cutover", "nowhere") is None
    (tmp_path / "Pulumi.yaml").write_text("name: shop\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.a.yaml").write_text("config:\n  shop:appName: web\n")
    (tmp_path / "stacks" / "Pulumi.b.yaml").write_text("config:\n  shop:host:\n    url: ssh://d@h:22\n")
    (tmp_path / "stacks" / "Pulumi.c.yaml").write_text("config:\n  shop:host:\n    secure: AAAA\n")
    (tmp_path / "stacks" / "Pulumi.d.yaml").write_text("config: [unclosed\n")
    assert stack_file_host(tmp_path, "shop", "a") == LOCAL_ENGINE, "no host.url: the default, the local engine"
    assert stack_file_host(tmp_path, "shop", "b") == "ssh://d@h:22"
    assert stack_file_host(tmp_path, "cutover", "b") == LOCAL_ENGINE, "the keys of the project's own namespace"
    assert stack_file_host(tmp_path, "shop", "c") is None and stack_file_host(tmp_path, "shop", "d") is None


def test_github_stacks_give_the_environment_of_each_stack() -> None:
    default = parse(minimal(github={"owner": "acme", "repository": "web"}), stack="prod")
    assert default.github.stacks == {"prod": "production"}, "the stack on a server: dev is deployed from its own machine"
    assert default.github.environment == "production"
    stacks = [{"staging": "stage"}, {"prod": "production"}]
    cfg = parse(minimal(github={"owner": "acme", "repository": "web", "stacks": stacks}), stack="staging")
    assert cfg.github.environment == "stage"
    assert list(cfg.github.stacks) == ["staging", "prod"], "deploy order is the order given"
    backwards = parse(minimal(github={"stacks": [{"zeta": "z"}, {"alpha": "a"}]}), stack="zeta")
    assert list(backwards.github.stacks) == ["zeta", "alpha"], "a list's order, not the names' order"
    other = parse(minimal(github={"enabled": True, "owner": "acme", "repository": "web", "environment": "sandbox"}), stack="qa")
    assert other.github.environment == "sandbox", "a stack the workflows do not deploy may name any environment"


def test_github_reviewers_wait_timer_and_secrets() -> None:
    raw = minimal(
        github={"reviewers": ["alice", "bob-ops"], "waitTimer": "1h30m", "variables": {"SENTRY_ENV": "production"}},
        githubSecrets='{"PULUMI_BACKEND_URL": "s3://bucket"}',
    )
    cfg = parse(raw, {"githubSecrets"})
    assert cfg.github.reviewers == ("alice", "bob-ops")
    assert cfg.github.wait_timer_minutes == 90
    assert cfg.github.variables == {"SENTRY_ENV": "production"}
    assert cfg.github.secrets == {"PULUMI_BACKEND_URL": Secret("s3://bucket")}


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "appName": "Web App",
        "image": {"repository": "GHCR.io/x y", "tag": "latest"},
        "web": {"port": 0, "replicas": -2},
        "healthcheck": {"interval": "10"},
    }
    found = problems(raw)
    assert len(found) == 6, found
    message = str(ConfigError(found))
    assert message.startswith("invalid stack configuration (6 problem(s)):")


def test_secret_values_are_never_shown_in_errors() -> None:
    found = problems(minimal(secretEnv="not json at all"), {"secretEnv"})
    assert found == [
        "cutover:secretEnv = [secret]: expected an object of NAME: value (pulumi config set --secret --path 'secretEnv.NAME' VALUE)"
    ]
    assert "not json" not in "".join(found)


def test_no_git_sha_and_no_tag_is_an_error() -> None:
    found = problems(minimal(), sha=None)
    assert any("cutover:image.tag is missing" in p and "no git SHA was found" in p for p in found)


def test_latest_as_an_extra_tag_is_allowed() -> None:
    cfg = parse(minimal(image={"repository": "ghcr.io/acme/web", "extraTags": ["latest"]}))
    assert cfg.image.extra_tags == ("latest",) and cfg.image.tag == SHA


def test_registry_of() -> None:
    assert registry_of("ghcr.io/acme/web") == "ghcr.io"
    assert registry_of("127.0.0.1:5000/web") == "127.0.0.1:5000"
    assert registry_of("acme/web") == "docker.io"
    assert registry_of("web") == "docker.io"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stack_files_are_valid(stack: str) -> None:
    raw, secrets = load_stack_file(stack)
    if stack == "prod":
        # what the README tells a team to set; the committed file holds no secret
        assert not secrets
        raw = {**raw, "sshPrivateKey": KEY, "registryPassword": "token", "host": {**raw["host"], "knownHosts": KNOWN}}
        secrets = {"sshPrivateKey", "registryPassword"}
    cfg = parse(raw, secrets, stack=stack)
    assert cfg.stack == stack
    if stack == "dev":
        assert not cfg.image.push and not cfg.host.is_ssh and not cfg.github.enabled
        assert cfg.proxy.http_port == 8080 and cfg.proxy.https_port is None
    else:
        assert cfg.image.push and cfg.host.is_ssh and cfg.github.enabled
        assert cfg.image.repository.startswith("ghcr.io/")


def test_committed_prod_file_without_its_secrets_says_what_to_set() -> None:
    raw, secrets = load_stack_file("prod")
    with pytest.raises(ConfigError) as err:
        parse(raw, secrets, stack="prod")
    text = str(err.value)
    assert "cutover:sshPrivateKey is missing" in text
    assert "cutover:host.knownHosts is missing" in text


def test_readme_documents_every_config_key() -> None:
    from components.config.checks import SECRET_KEYS, SECTION_KEYS
    from tests.harness import ROOT

    readme = (ROOT / "README.md").read_text()
    keys = [f"{section}.{key}" for section, subkeys in SECTION_KEYS.items() for key in sorted(subkeys)]
    missing = [k for k in [*keys, "appName", *sorted(SECRET_KEYS)] if f"`{k}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(("given", "sent"), [("1", "1.0"), (2, "2.0"), ("0.5", "0.5"), (1.5, "1.5"), ("10", "10.")])
def test_cpus_are_kept_in_the_providers_own_spelling(given: Any, sent: str) -> None:
    assert parse(minimal(web={"cpus": given})).web.cpus == sent
    assert parse(minimal()).web.cpus == "1.0"


def test_an_ecdsa_host_key_can_be_pinned() -> None:
    line = "203.0.113.10 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY"
    cfg = parse(minimal(host={"url": "ssh://deploy@203.0.113.10", "knownHosts": line}, sshPrivateKey=KEY), {"sshPrivateKey"})
    assert cfg.host.host_key == "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY"


def test_a_build_of_uncommitted_changes_is_never_pushed_under_the_commits_tag() -> None:
    asked: list[str] = []

    def dirty(context: str) -> bool:
        asked.append(context)
        return True

    pushed = {"appName": "web", "image": {"repository": "ghcr.io/acme/web", "context": "./svc"}}
    with pytest.raises(ConfigError) as err:
        parse_config(pushed, set(), "prod", SHA, dirty)
    assert asked == ["./svc"]
    [problem] = err.value.problems
    assert problem.startswith("cutover:image.push = true: expected a build of commit 0123456789ab as it is")
    assert "./svc has uncommitted changes" in problem and "set image.tag" in problem
    # a clean tree, a tag named by hand, or a build that is not pushed (dev) are fine
    assert parse_config(pushed, set(), "prod", SHA, lambda _: False).image.tag == SHA
    tagged = {**pushed, "image": {**pushed["image"], "tag": "hotfix-1"}}
    assert parse_config(tagged, set(), "prod", SHA, dirty).image.tag == "hotfix-1"
    local = {**pushed, "image": {**pushed["image"], "push": False}}
    assert parse_config(local, set(), "dev", SHA, dirty).image.push is False


def test_uncommitted_changes_are_read_from_git(tmp_path: Any) -> None:
    import subprocess

    from components.config.load import uncommitted_changes

    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "README").write_text("x\n")
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"], **run)
    assert uncommitted_changes("./app", str(tmp_path)) is False
    (tmp_path / "README").write_text("changed outside the context\n")
    assert uncommitted_changes("./app", str(tmp_path)) is False
    (tmp_path / "app" / "new.py").write_text("")
    assert uncommitted_changes("./app", str(tmp_path)) is True


def _git_dir_files(repo: Any) -> dict[str, tuple[int, bytes]]:
    """Every file under .git with its modification time and content."""
    return {str(f.relative_to(repo)): (f.stat().st_mtime_ns, f.read_bytes()) for f in sorted((repo / ".git").rglob("*")) if f.is_file()}


def test_the_programs_git_reads_write_nothing_under_dot_git(tmp_path: Any) -> None:
    """A preview runs git_sha and uncommitted_changes on the checkout: neither may rewrite .git/index."""
    import os
    import subprocess
    import time

    from components.config.load import git_sha, uncommitted_changes

    run = {"cwd": tmp_path, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"], **run)
    head = subprocess.run(["git", "rev-parse", "HEAD"], text=True, **run).stdout.strip()

    def touched() -> None:
        # the same content with a new modification time: stat data the index no longer matches, which a plain
        # `git status` refreshes and writes back into .git/index
        later = time.time() + 5
        os.utime(tmp_path / "app" / "main.py", (later, later))
        time.sleep(0.01)

    touched()
    before = _git_dir_files(tmp_path)
    assert git_sha({}, str(tmp_path)) == head
    assert uncommitted_changes("./app", str(tmp_path)) is False
    assert _git_dir_files(tmp_path) == before, "the program's git reads changed files under .git"
    # what the reads avoid: plain `git status` on the same checkout rewrites the index
    subprocess.run(["git", "status", "--porcelain", "--", "./app"], **run)
    assert _git_dir_files(tmp_path) != before


def test_probation_settings() -> None:
    cfg = parse(minimal())
    assert (cfg.releases.probation_s, cfg.releases.probation_error_rate) == (30, 10)
    cfg = parse(minimal(releases={"probation": "2m", "probationErrorRate": 25}))
    assert (cfg.releases.probation_s, cfg.releases.probation_error_rate) == (120, 25)
    assert parse(minimal(releases={"probation": "0s"})).releases.probation_s == 0
    assert parse(minimal()).releases.canary_s == 0, "no canary unless asked"
    assert parse(minimal(releases={"canary": "15s"})).releases.canary_s == 15
    assert problems(minimal(releases={"canary": "ten"})) == [
        "cutover:releases.canary = \"ten\": expected a duration with a unit, like '500ms', '10s', '1m' or '1m30s' (0s: no canary)"
    ]
    found = problems(minimal(releases={"probation": "30", "probationErrorRate": 0}))
    assert found == [
        "cutover:releases.probation = \"30\": expected a duration with a unit, like '500ms', '10s', '1m' or '1m30s' (0s: no probation)",
        "cutover:releases.probationErrorRate = 0: expected a whole percentage from 1 to 100",
    ]


WORKER = {"command": ["python", "-m", "worker"], "healthcheck": {"command": ["python", "-m", "heartbeat", "30"]}}


def test_roles_are_read_with_their_defaults() -> None:
    cfg = parse(minimal(roles={"worker": {**WORKER, "replicas": 2, "env": {"QUEUE": "mail"}}, "bot": {**WORKER, "overlap": False}}))
    worker, bot = cfg.roles
    assert (worker.name, worker.replicas, worker.overlap, worker.env) == ("worker", 2, True, {"QUEUE": "mail"})
    assert (worker.memory_mb, worker.cpus, worker.stop_timeout_s, worker.wait_timeout_s) == (256, "1.0", 600, 120)
    assert worker.healthcheck.test() == ["CMD", "python", "-m", "heartbeat", "30"] and worker.healthcheck.interval == "5s"
    assert (bot.name, bot.overlap, bot.replicas) == ("bot", False, 1)
    assert parse(minimal(web={"enabled": False}, roles={"bot": {**WORKER, "overlap": False}})).web.enabled is False


def test_bad_roles_are_named_with_key_value_and_expectation() -> None:
    found = problems(
        minimal(
            roles={
                "Worker": WORKER,
                "proxy": WORKER,
                "mailer": {"replicas": 2, "healthcheck": {"interval": "5"}},
                "bot": {**WORKER, "overlap": False, "replicas": 2, "stopTimout": "1m"},
                "cron": "python -m cron",
            }
        )
    )
    text = "\n".join(found)
    assert 'cutover:roles.Worker = {"command"' in text and "expected a role name of lowercase letters" in text
    assert "cutover:roles.proxy = " in text and "other than [" in text
    assert "cutover:roles.mailer.command is missing: expected the role's command as a list of strings" in text
    assert "cutover:roles.mailer.healthcheck.command is missing: expected a probe command that needs no HTTP" in text
    assert 'cutover:roles.mailer.healthcheck.interval = "5": expected a duration with a unit' in text
    assert "cutover:roles.bot.replicas = 2: expected 1: roles.bot.overlap is false, so the role runs one container, never two" in text
    assert "cutover:roles.bot.stopTimout = " in text and "did you mean 'stopTimeout'?" in text
    assert 'cutover:roles.cron = "python -m cron": expected an object with at least `command` and `healthcheck.command`' in text
    assert len(found) == 8, found


def test_without_web_some_role_must_run() -> None:
    assert problems(minimal(web={"enabled": False})) == [
        "cutover:web.enabled = false: expected true, or at least one role under `roles`: otherwise nothing would run"
    ]


PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2F0b3Zlcg==\n-----END CERTIFICATE-----\n"


def test_the_keeper_image_is_docker_cli_unless_set() -> None:
    assert parse(minimal()).proxy.keeper_image == "docker:28-cli"
    assert (
        parse(minimal(proxy={"keeperImage": "registry.example.com/docker:27-cli"})).proxy.keeper_image
        == "registry.example.com/docker:27-cli"
    )


def test_a_private_acme_directory_and_its_ca() -> None:
    cfg = parse(minimal(proxy={"domain": "app.example.com", "acmeCA": "https://acme.internal:14000/dir", "acmeCARoot": PEM}))
    assert cfg.proxy.acme_ca == "https://acme.internal:14000/dir" and cfg.proxy.acme_ca_root == PEM
    assert parse(minimal(proxy={"domain": "app.example.com"})).proxy.acme_ca is None


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        (
            {"domain": "app.example.com", "acmeCA": "http://acme.internal/dir"},
            'proxy.acmeCA = "http://acme.internal/dir": expected the https:// URL',
        ),
        (
            {"domain": "app.example.com", "acmeCARoot": "not a certificate"},
            'proxy.acmeCARoot = "not a certificate": expected a PEM certificate',
        ),
        ({"acmeCA": "https://acme.internal/dir"}, 'proxy.acmeCA = "https://acme.internal/dir": expected to be set only with proxy.domain'),
        ({"acmeCARoot": PEM}, 'proxy.acmeCARoot = "(set)": expected to be set only with proxy.domain'),
    ],
)
def test_acme_settings_are_checked(proxy: dict[str, Any], expected: str) -> None:
    found = problems(minimal(proxy=proxy))
    assert any(expected in p for p in found), found


# --------------------------------------------------------------------------- values Docker, the provider or GitHub would misread

HC = {"command": ["python", "-m", "heartbeat", "30"]}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # a zero the engine reads as "not set": the image's HEALTHCHECK value, or its own default
        pytest.param(
            minimal(healthcheck={"interval": "0s"}),
            "cutover:healthcheck.interval = \"0s\": expected a duration above zero, like '2s':"
            " Docker reads 0 as the image's HEALTHCHECK interval, or its own default of 30s",
            id="healthcheck-interval-zero",
        ),
        pytest.param(
            minimal(healthcheck={"timeout": "0ms"}),
            "cutover:healthcheck.timeout = \"0ms\": expected a duration above zero, like '3s':"
            " Docker reads 0 as the image's HEALTHCHECK timeout, or its own default of 30s",
            id="healthcheck-timeout-zero",
        ),
        pytest.param(
            minimal(healthcheck={"startPeriod": "0s"}),
            "cutover:healthcheck.startPeriod = \"0s\": expected a duration above zero, like '10s' ('1ms' for next to none):"
            " Docker reads 0 as the image's HEALTHCHECK start period, not as none",
            id="healthcheck-start-period-zero",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "healthcheck": {**HC, "interval": "0s"}}}),
            "cutover:roles.worker.healthcheck.interval = \"0s\": expected a duration above zero, like '2s'",
            id="role-healthcheck-interval-zero",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "healthcheck": {**HC, "timeout": "0s"}}}),
            "cutover:roles.worker.healthcheck.timeout = \"0s\": expected a duration above zero, like '3s'",
            id="role-healthcheck-timeout-zero",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "healthcheck": {**HC, "startPeriod": "0m"}}}),
            "cutover:roles.worker.healthcheck.startPeriod = \"0m\": expected a duration above zero, like '10s'",
            id="role-healthcheck-start-period-zero",
        ),
        # a zero that means "at once"
        pytest.param(
            minimal(web={"stopTimeout": "0s"}),
            'cutover:web.stopTimeout = "0s": expected at least 1s: it is the time after SIGTERM before SIGKILL,'
            " and 0 kills the container at once, cutting off work in flight",
            id="web-stop-timeout-zero",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "stopTimeout": "0s"}}),
            'cutover:roles.worker.stopTimeout = "0s": expected at least 1s: it is the time after SIGTERM before SIGKILL',
            id="role-stop-timeout-zero",
        ),
        pytest.param(
            minimal(web={"waitTimeout": "0s"}),
            'cutover:web.waitTimeout = "0s": expected at least 1s: it is how long a new container may take to become healthy,'
            " and 0 gives up at once",
            id="web-wait-timeout-zero",
        ),
        pytest.param(
            minimal(cluster={"convergeTimeout": "0s"}),
            'cutover:cluster.convergeTimeout = "0s": expected at least 1s: it is how long a release\'s services may take to run healthy',
            id="converge-timeout-zero",
        ),
        pytest.param(
            minimal(verify={"interval": "0s"}),
            'cutover:verify.interval = "0s": expected at least 1s: the pause between attempts',
            id="verify-interval-zero",
        ),
        pytest.param(
            minimal(web={"memory": "0m"}),
            "cutover:web.memory = \"0m\": expected at least '6m': Docker refuses a memory limit under 6MB, and 0 would be no limit at all",
            id="memory-zero-is-no-limit",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "memory": "4m"}}),
            "cutover:roles.worker.memory = \"4m\": expected at least '6m': Docker refuses a memory limit under 6MB",
            id="memory-under-the-engines-minimum",
        ),
        # read in whole seconds or minutes: the rest would be cut off
        pytest.param(
            minimal(web={"stopTimeout": "1500ms"}),
            'cutover:web.stopTimeout = "1500ms": expected a whole number of seconds: it is read in whole seconds, and 1500ms would be cut to 1s',
            id="stop-timeout-fraction",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "waitTimeout": "20500ms"}}),
            'cutover:roles.worker.waitTimeout = "20500ms": expected a whole number of seconds: it is read in whole seconds,'
            " and 20500ms would be cut to 20s",
            id="wait-timeout-fraction",
        ),
        pytest.param(
            minimal(proxy={"upstreamTimeout": "0s"}),
            "cutover:proxy.upstreamTimeout = \"0s\": expected a duration above zero, like '1s': Caddy reads 0 as its default of 5s",
            id="upstream-timeout-zero",
        ),
        pytest.param(
            minimal(proxy={"drain": "500ms"}),
            'cutover:proxy.drain = "500ms": expected a whole number of seconds: it is read in whole seconds, and 500ms would be cut to 0s',
            id="drain-fraction",
        ),
        pytest.param(
            minimal(releases={"probation": "2500ms"}),
            'cutover:releases.probation = "2500ms": expected a whole number of seconds',
            id="probation-fraction",
        ),
        pytest.param(
            minimal(releases={"canary": "1500ms"}),
            'cutover:releases.canary = "1500ms": expected a whole number of seconds',
            id="canary-fraction",
        ),
        pytest.param(
            minimal(verify={"interval": "1500ms"}),
            'cutover:verify.interval = "1500ms": expected a whole number of seconds',
            id="verify-interval-fraction",
        ),
        pytest.param(
            minimal(github={"waitTimer": "30s"}),
            'cutover:github.waitTimer = "30s": expected a whole number of minutes: it is read in whole minutes, and 30s would be cut to 0m',
            id="wait-timer-in-seconds",
        ),
        # longer than Go's time.Duration
        pytest.param(
            minimal(healthcheck={"startPeriod": "2562048h"}),
            'cutover:healthcheck.startPeriod = "2562048h": expected at most 2562047h, the longest duration Go holds',
            id="duration-beyond-go",
        ),
        # what the engine refuses only when it creates or pulls
        pytest.param(
            minimal(proxy={"bindAddress": "999.0.0.1"}),
            "cutover:proxy.bindAddress = \"999.0.0.1\": expected an IP address like '127.0.0.1' or '::1'",
            id="bind-address-not-an-address",
        ),
        pytest.param(
            minimal(proxy={"image": "Caddy:2"}),
            "cutover:proxy.image = \"Caddy:2\": expected an image reference like 'caddy:2' (lowercase name, optional tag)",
            id="proxy-image-not-a-reference",
        ),
        pytest.param(
            minimal(postgres={"image": "postgres:16:x"}),
            "cutover:postgres.image = \"postgres:16:x\": expected an image reference like 'postgres:16'",
            id="postgres-image-not-a-reference",
        ),
        pytest.param(
            minimal(redis={"image": "redis:"}),
            "cutover:redis.image = \"redis:\": expected an image reference like 'redis:7'",
            id="redis-image-not-a-reference",
        ),
        # one name, two values in a container
        pytest.param(
            minimal(web={"env": {"PORT": "9000"}}),
            'cutover:web.env.PORT = "9000": expected another name: PORT is set from web.port',
            id="web-env-port",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "env": {"APP_VERSION": "1"}}}),
            'cutover:roles.worker.env.APP_VERSION = "1": expected another name: APP_VERSION is set from the release\'s tag',
            id="role-env-app-version",
        ),
        pytest.param(
            minimal(roles={"worker": {**WORKER, "env": {"API_KEY": "plain"}}}, secretEnv='{"API_KEY": "s3cret"}'),
            'cutover:roles.worker.env.API_KEY = "plain": expected API_KEY only once: it is also in secretEnv',
            id="role-env-also-in-secret-env",
        ),
        pytest.param(
            minimal(redis={"enabled": True}, redisPassword="pw", secretEnv='{"REDIS_URL": "redis://elsewhere"}'),
            "cutover:secretEnv.REDIS_URL = [secret]: expected another name: REDIS_URL is set from redis.enabled",
            id="secret-env-redis-url",
        ),
    ],
)
def test_values_docker_would_misread_are_refused(raw: dict[str, Any], expected: str) -> None:
    found = problems(raw, {k for k in ("secretEnv", "redisPassword") if k in raw})
    assert any(p.startswith(expected) for p in found), f"{expected!r} not in:\n" + "\n".join(found)
    assert "s3cret" not in "\n".join(found) and "redis://elsewhere" not in "\n".join(found)


def test_a_wait_shorter_than_start_period_plus_interval_is_refused() -> None:
    slow = {**HC, "startPeriod": "25s", "interval": "5s"}
    found = problems(
        minimal(
            web={"waitTimeout": "11s"},
            healthcheck={"startPeriod": "10s", "interval": "2s"},
            roles={
                "worker": {**WORKER, "waitTimeout": "29s", "healthcheck": slow},
                "bot": {**WORKER, "overlap": False, "healthcheck": {**HC, "startPeriod": "2m"}},
            },
        )
    )
    boot = "a container that takes its whole start period to boot is healthy no sooner"
    assert found == [
        f'cutover:web.waitTimeout = "11s": expected at least 12s, healthcheck.startPeriod plus one healthcheck.interval (10s + 2s): {boot}',
        'cutover:roles.worker.waitTimeout = "29s": expected at least 30s, roles.worker.healthcheck.startPeriod plus one'
        f" roles.worker.healthcheck.interval (25s + 5s): {boot}",
        # not set: the default, named as such
        'cutover:roles.bot.waitTimeout = "2m": expected at least 125s, roles.bot.healthcheck.startPeriod plus one'
        f" roles.bot.healthcheck.interval (2m + 5s): {boot}",
    ]
    # exactly the start period plus one interval passes
    cfg = parse(
        minimal(
            web={"waitTimeout": "12s"},
            healthcheck={"startPeriod": "10s", "interval": "2s"},
            roles={"worker": {**WORKER, "waitTimeout": "30s", "healthcheck": slow}},
        )
    )
    assert (cfg.web.wait_timeout_s, cfg.roles[0].wait_timeout_s) == (12, 30)
    # without web, its wait is not looked at
    assert parse(minimal(web={"enabled": False, "waitTimeout": "1s"}, roles={"worker": WORKER})).web.wait_timeout_s == 1


def test_a_cluster_waits_for_its_slowest_boot() -> None:
    on_cluster = {"image": {"repository": "ghcr.io/acme/web"}, "cluster": {"enabled": True, "convergeTimeout": "30s"}}
    slow = {**WORKER, "healthcheck": {**HC, "startPeriod": "40s", "interval": "5s"}}
    assert problems(minimal(**on_cluster, roles={"worker": slow})) == [
        'cutover:cluster.convergeTimeout = "30s": expected at least 45s, roles.worker.healthcheck.startPeriod plus one'
        " roles.worker.healthcheck.interval (40s + 5s): a container that takes its whole start period to boot is healthy no sooner"
    ]
    assert (
        parse(
            minimal(**{**on_cluster, "cluster": {"enabled": True, "convergeTimeout": "45s"}}, roles={"worker": slow})
        ).cluster.converge_timeout_s
        == 45
    )
    # not on a cluster, the converge timeout is not used
    assert parse(minimal(cluster={"convergeTimeout": "5s"}, roles={"worker": slow})).cluster.converge_timeout_s == 5


def test_build_context_and_dockerfile_must_exist(tmp_path: Any) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "svc").mkdir()
    (tmp_path / "notes.txt").write_text("x\n")
    root = str(tmp_path)

    def found(image: dict[str, Any], **more: Any) -> list[str]:
        with pytest.raises(ConfigError) as err:
            parse_config(minimal(image={"repository": "ghcr.io/acme/web", "push": False, **image}, **more), set(), "dev", SHA, root=root)
        return err.value.problems

    assert parse_config(minimal(), set(), "dev", SHA, root=root).image.context == "./app"
    assert found({"context": "./ap"}) == [
        f'cutover:image.context = "./ap": expected the build context, a directory: {tmp_path}/ap does not exist'
    ]
    assert found({"context": "notes.txt"}) == [
        f'cutover:image.context = "notes.txt": expected the build context, a directory: {tmp_path}/notes.txt is not a directory'
    ]
    assert found({"context": "./svc"}) == [
        f'cutover:image.dockerfile = "Dockerfile": expected a Dockerfile, relative to image.context: {tmp_path}/svc/Dockerfile does not exist'
    ]
    assert found({"context": ".", "dockerfile": "app"}) == [
        f'cutover:image.dockerfile = "app": expected a Dockerfile, relative to image.context: {tmp_path}/app is not a file'
    ]
    # given with everything else wrong, it is one problem among the others
    assert len(found({"context": "./ap"}, web={"replicas": 0})) == 2
    # an absolute context, as the e2e upkeep scenario gives its copy of app/
    assert parse_config(
        minimal(image={"repository": "ghcr.io/acme/web", "context": str(tmp_path / "app")}), set(), "dev", SHA, root="/"
    ).image.push
    # no build, no files needed: a digest, a promotion, or no root (a rollback)
    ref = "ghcr.io/acme/web@sha256:" + "a" * 64
    assert (
        parse_config(
            minimal(image={"repository": "ghcr.io/acme/web", "context": "./gone", "ref": ref}), set(), "dev", SHA, root=root
        ).image.ref
        == ref
    )
    promoted = minimal(image={"repository": "ghcr.io/acme/web", "context": "./gone"}, releases={"promoteFrom": "dev"})
    assert parse_config(promoted, set(), "prod", SHA, root=root).releases.promote_from == "dev"
    assert parse_config(minimal(image={"repository": "ghcr.io/acme/web", "context": "./gone"}), set(), "dev", SHA).image.context == "./gone"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(minimal(releases={"probation": "0s"}, proxy={"drain": "0s"}), id="no-probation-no-drain"),
        pytest.param(minimal(healthcheck={"startPeriod": "1ms", "interval": "500ms", "timeout": "250ms"}), id="sub-second-probes"),
        pytest.param(minimal(healthcheck={"interval": "1s", "timeout": "3s"}), id="timeout-longer-than-interval"),
        pytest.param(
            minimal(web={"memory": "6m", "stopTimeout": "1s"}, image={"repository": "ghcr.io/acme/web", "buildCacheKept": "0"}),
            id="smallest",
        ),
        pytest.param(minimal(proxy={"bindAddress": "::1"}, github={"waitTimer": "1h30m"}), id="ipv6-and-minutes"),
        pytest.param(minimal(proxy={"image": "registry.example.com:5000/edge/caddy:2.8.4@sha256:" + "b" * 64}), id="image-by-digest"),
    ],
)
def test_values_a_team_may_want_stay_accepted(raw: dict[str, Any]) -> None:
    assert parse_config(raw, set(), "dev", SHA, root=str(ROOT)).app_name == "web"


def test_committed_stack_files_pass_the_checks_of_the_files_they_build(tmp_path: Any) -> None:
    for stack in ("dev", "prod"):
        raw, _ = load_stack_file(stack)
        secrets = {"sshPrivateKey", "registryPassword"} if stack == "prod" else set()
        raw = (
            {**raw, "sshPrivateKey": KEY, "registryPassword": "token", "host": {**raw["host"], "knownHosts": KNOWN}}
            if stack == "prod"
            else raw
        )
        assert parse_config(raw, secrets, stack, SHA, root=str(ROOT)).image.context == "./app"
        with pytest.raises(ConfigError, match=r"cutover:image\.context = \"\./app\": expected the build context"):
            parse_config(raw, secrets, stack, SHA, root=str(tmp_path))


def e2e_stacks() -> dict[str, tuple[dict[str, Any], set[str]]]:
    """The stack configs the e2e scenarios deploy (tests/e2e/*.py), with this machine's values made up."""
    from tests.e2e import test_cluster, test_roles
    from tests.e2e.replay.stack import SECRET_KEYS, e2e_config, merge
    from tests.e2e.test_edge import NEXT_PROXY_IMAGE

    base = e2e_config(
        ssh_url="ssh://deploy@127.0.0.1:2222",
        known_hosts="[127.0.0.1]:2222 " + KNOWN.split(" ", 1)[1],
        private_key=KEY,
        registry="127.0.0.1:5000",
        registry_user="cutover",
        registry_password="pw",
        http_port=18080,
    )
    plain = set(SECRET_KEYS)
    redis = {"redis": {"enabled": True}, "redisPassword": "pw"}
    cluster = {"proxy": {"bindAddress": None}, "cluster": {"enabled": True, "convergeTimeout": "90s"}, "redis": {"enabled": True, "image": "redis:7"}, "redisPassword": "pw", "roles": {"worker": test_cluster.WORKER}, "releases": {"probation": "5s"}}  # fmt: skip
    upkeep = {"postgres": {"enabled": True, "image": "postgres:15", "backupsKept": 5}, "postgresPassword": "pw", "releases": {"probation": "0s", "imagesKept": 3}, "proxy": {"drain": "1s"}}  # fmt: skip
    edge = {"proxy": {"httpsPort": 18443, "domain": "app.cutover.test", "acmeCA": "https://127.0.0.1:14000/dir", "acmeCARoot": PEM}}
    with_redis = plain | {"redisPassword"}
    return {
        "release": (base, plain),
        "release-v8": (
            merge(base, {"web": {"env": {"APP_FAIL_HEALTH": "1"}}, "healthcheck": {"command": ["true"]}, "verify": {"attempts": 3}}),
            plain,
        ),
        "release-probation": (merge(base, {"web": {"env": {"APP_CRASH_AFTER": "12"}}, "releases": {"probation": "25s"}}), plain),
        "release-secret-env": (
            merge(base, {"web": {"env": {"FEATURE_FLAG": "on"}}, "secretEnv": '{"API_TOKEN": "t"}'}),
            plain | {"secretEnv"},
        ),
        "roles": ({**base, **redis, "roles": {"worker": test_roles.WORKER, "bot": test_roles.BOT}}, with_redis),
        "cluster": (merge(merge(base, {"web": {"replicas": 3}}), cluster), with_redis),
        "cluster-v3": (merge(merge(base, cluster), {"cluster": {"convergeTimeout": "20s"}}), with_redis),
        "edge": (merge(base, edge), plain),
        "edge-v2": (merge(merge(base, edge), {"proxy": {"image": NEXT_PROXY_IMAGE}}), plain),
        "upkeep": (merge(base, upkeep), plain | {"postgresPassword"}),
    }


@pytest.mark.parametrize("name", list(e2e_stacks()))
def test_the_e2e_stacks_pass_every_check(name: str) -> None:
    raw, secrets = e2e_stacks()[name]
    cfg = parse_config(raw, secrets, "e2e", SHA, root=str(ROOT))
    assert cfg.healthcheck.interval == "1s" and cfg.web.wait_timeout_s == 20


def test_the_project_name_is_read_as_the_pulumi_cli_finds_it(tmp_path: Path) -> None:
    """The nearest folder upwards with a project file; Pulumi.json before Pulumi.yaml before Pulumi.yml."""
    from components.config.load import project_name

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "Pulumi.yml").write_text("name: outer\n")
    assert project_name(tmp_path / "a" / "b") == "outer"
    (tmp_path / "a" / "Pulumi.yaml").write_text("name: shop\nruntime: python\n")
    assert project_name(tmp_path / "a" / "b") == "shop"
    (tmp_path / "a" / "Pulumi.json").write_text('{"name": "first", "runtime": "python"}')
    assert project_name(tmp_path / "a" / "b") == "first"
    (tmp_path / "a" / "Pulumi.json").write_text('{"runtime": "python"}')
    with pytest.raises(ValueError, match=r"Pulumi.json: `name` = null: expected the project's name"):
        project_name(tmp_path / "a")


def test_errors_name_keys_in_the_namespace_given() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"appName": "Bad Name", "sshPrivateKey": "plain"}, set(), "dev", namespace="shop")
    assert err.value.problems[0] == "shop:appName = \"Bad Name\": expected a lowercase name like 'web' (letters, digits, '-'; at most 40)"
    assert err.value.problems[1].startswith("shop:image.repository is missing: expected an image repository")
    assert "shop:sshPrivateKey is set in plain text: it must be stored as a secret (pulumi config set --secret ...)" in err.value.problems
