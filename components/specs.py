"""Container specs and host shell steps, computed without Pulumi.

Each function returns plain data (keyword arguments of `docker.Container`, or a
shell script) so tests can read exactly what will run on the host. Values that
are secrets arrive as `Secret` and are left for the component to wrap.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from components.caddyfile import CADDYFILE, LIVE_DIR
from components.config import Secret, StackConfig

LOG_OPTS = {"max-size": "10m", "max-file": "3"}
HARDENING: dict[str, Any] = {
    "security_opts": ["no-new-privileges:true"],
    "capabilities": {"drops": ["ALL"]},
    "restart": "unless-stopped",
    "log_driver": "json-file",
    "log_opts": LOG_OPTS,
    "init": True,
}


def labels(cfg: StackConfig, role: str, extra: dict[str, str] | None = None) -> list[Any]:
    """Labels telling which app, stack and role a container belongs to (and which release, for web)."""
    values = {"cutover.app": cfg.app_name, "cutover.stack": cfg.stack, "cutover.role": role, **(extra or {})}
    return [{"label": k, "value": v} for k, v in sorted(values.items())]


def web_env(cfg: StackConfig) -> list[tuple[str, str | Secret]]:
    """The web containers' environment (APP_VERSION aside), secrets included as Secret values."""
    env: list[tuple[str, str | Secret]] = [("PORT", str(cfg.web.port))]
    env += sorted(cfg.web.env.items())
    env += sorted(cfg.web.secret_env.items())
    p = cfg.postgres
    if p.enabled and p.password is not None:
        env.append(("DATABASE_URL", Secret(f"postgresql://{p.user}:{p.password.reveal()}@postgres:5432/{p.database}")))
    if cfg.redis.enabled and cfg.redis.password is not None:
        env.append(("REDIS_URL", Secret(f"redis://:{cfg.redis.password.reveal()}@redis:6379/0")))
    return env


def healthcheck(cfg: StackConfig) -> dict[str, Any]:
    h = cfg.healthcheck
    return {"tests": h.test(), "interval": h.interval, "timeout": h.timeout, "retries": h.retries, "start_period": h.start_period}


def web_container(cfg: StackConfig, image_id: Any, networks: list[Any]) -> dict[str, Any]:
    """A web container: no fixed name and no host port, so a new release is created beside the old one."""
    w = cfg.web
    spec: dict[str, Any] = {
        "image": image_id,
        "user": w.user,
        "read_only": w.read_only,
        "tmpfs": dict.fromkeys(w.tmpfs, "rw,noexec,nosuid,size=64m"),
        "memory": w.memory_mb,
        "cpus": w.cpus,
        "stop_signal": "SIGTERM",
        "stop_timeout": w.stop_timeout_s,
        "destroy_grace_seconds": w.stop_timeout_s,
        "healthcheck": healthcheck(cfg),
        "wait": True,
        "wait_timeout": w.wait_timeout_s,
        "must_run": True,
        "networks_advanced": [{"name": n} for n in networks],
        **HARDENING,
    }
    if w.command:
        spec["command"] = list(w.command)
    return spec


def proxy_container(cfg: StackConfig, image_id: Any, network: Any, volumes: dict[str, Any]) -> dict[str, Any]:
    """The edge proxy: the only container bound to host ports."""
    p = cfg.proxy
    ports: list[dict[str, Any]] = [{"internal": 80, "external": p.http_port}]
    if p.https_port is not None:
        ports.append({"internal": 443, "external": p.https_port})
    if p.bind_address:
        ports = [{**port, "ip": p.bind_address} for port in ports]
    return {
        "image": image_id,
        "name": f"{cfg.resource_prefix}-proxy",
        "ports": ports,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},
        "volumes": [{"volume_name": volumes[path], "container_path": path} for path in sorted(volumes)],
        "networks_advanced": [{"name": network}],
        "healthcheck": {
            "tests": ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:2019/config/"],
            "interval": "5s", "timeout": "3s", "retries": 3, "start_period": "5s",
        },
        "wait": True,
        "wait_timeout": 60,
        "stop_timeout": 30,
        "destroy_grace_seconds": 30,
        "labels": labels(cfg, "proxy"),
        **{**HARDENING, "capabilities": {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}},
    }  # fmt: skip


def container_exec(container: str, *argv: str) -> str:
    return shlex.join(["docker", "exec", container, *argv])


_PREV_CADDYFILE = f"{CADDYFILE}.prev"
_NEXT_CADDYFILE = f"{CADDYFILE}.next"
_PREV_LIVE = f"{LIVE_DIR}.prev"


def _reload(proxy: str) -> str:
    return container_exec(proxy, "caddy", "reload", "--config", CADDYFILE, "--adapter", "caddyfile")


def switch_script(proxy: str, upstreams: list[str], drain_s: int) -> str:
    """Point the proxy at `upstreams` (web container names, one per slot file), then let old routes drain.

    The Caddyfile arrives on stdin. Only when it differs from the proxy's (its own
    settings changed) is it validated first and installed with one `caddy reload`;
    a release itself only rewrites the slot files, each by an atomic rename, which
    Caddy reads per request. What it replaces is kept (live.prev, Caddyfile.prev)
    for the verification to put back.
    """
    if not upstreams:
        raise ValueError("the switch needs at least one web container")
    for name in upstreams:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"upstream {name!r} is not a container name")
    write_slots = (
        f"mkdir -p {LIVE_DIR} && rm -rf {_PREV_LIVE} && cp -a {LIVE_DIR} {_PREV_LIVE} && n=0 && "
        f'for name in "$@"; do printf %s "$name" > {LIVE_DIR}/$n.next && mv {LIVE_DIR}/$n.next {LIVE_DIR}/$n; n=$((n+1)); done'
    )
    prune = f"n={len(upstreams)}; while [ -e {LIVE_DIR}/$n ]; do rm -f {LIVE_DIR}/$n; n=$((n+1)); done"
    install = f"if [ -f {CADDYFILE} ]; then cp {CADDYFILE} {_PREV_CADDYFILE}; fi && mv {_NEXT_CADDYFILE} {CADDYFILE}"
    current = container_exec(proxy, "cat", CADDYFILE)
    return "\n".join(
        [
            "set -eu",
            'new_config="$(cat)"',
            f'current_config="$({current} 2>/dev/null || true)"',
            container_exec(proxy, "rm", "-f", _PREV_CADDYFILE),
            'if [ "$new_config" != "$current_config" ]; then',
            "  "
            + "printf '%s\\n' \"$new_config\" | "
            + shlex.join(["docker", "exec", "-i", proxy, "sh", "-c", f"cat > {_NEXT_CADDYFILE}"]),
            "  " + container_exec(proxy, "caddy", "validate", "--config", _NEXT_CADDYFILE, "--adapter", "caddyfile"),
            "fi",
            container_exec(proxy, "sh", "-c", write_slots, "sh", *upstreams),
            f"echo {shlex.quote('proxy now routes to ' + ' '.join(upstreams))}",
            'if [ "$new_config" != "$current_config" ]; then',
            "  " + container_exec(proxy, "sh", "-c", install),
            "  " + _reload(proxy),
            "  echo 'the proxy settings changed: Caddy reloaded its configuration'",
            "fi",
            container_exec(proxy, "sh", "-c", prune),
            f"echo 'draining old routes for {drain_s}s'",
            f"sleep {drain_s}",
        ]
    )


def verify_script(proxy: str, port: int, path: str, version: str | None, attempts: int, interval_s: int) -> str:
    """Ask the proxy for the health path until it answers 200 (with the new version).

    If it never does, put the previous upstreams back (and the previous Caddyfile,
    if this update changed it): the old containers are still running, as nothing
    is deleted before this succeeds. Then fail, saying what it saw.
    """
    url = f"http://127.0.0.1:{port}{path}"
    # -S: the status line goes to stderr, so a failure shows what the proxy answered; the
    # timeout outlasts the proxy's own retries (lb_try_duration 5s), so its 502 arrives
    fetch = container_exec(proxy, "wget", "-q", "-S", "-T", "10", "-O", "-", url)
    check = "true"
    if version is not None:
        pattern = '"version": ?"' + re.escape(version) + '"'
        check = f"printf '%s' \"$body\" | grep -Eq {shlex.quote(pattern)}"
    want = f"200 with version {version}" if version is not None else "200"
    restore_slots = container_exec(
        proxy, "sh", "-c",
        f'if [ -d {_PREV_LIVE} ]; then for f in {_PREV_LIVE}/*; do if [ -e "$f" ]; then mv "$f" "{LIVE_DIR}/${{f##*/}}"; fi; done; fi',
    )  # fmt: skip
    config_changed = container_exec(proxy, "test", "-f", _PREV_CADDYFILE)
    restore_config = container_exec(proxy, "mv", _PREV_CADDYFILE, CADDYFILE)
    return "\n".join(
        [
            "body=''",
            f"for attempt in $(seq 1 {attempts}); do",
            f"  if body=$({fetch} 2>&1) && {check}; then",
            '    echo "verified through the proxy on attempt $attempt: $body"; exit 0',
            "  fi",
            f"  sleep {interval_s}",
            "done",
            f'echo "verification failed: {url} through the proxy did not answer {want} after {attempts} attempts; last response: ${{body:-none within 10s}}" >&2',
            f"if {restore_slots}; then echo 'the proxy routes to the previous release again' >&2; fi",
            f"if {config_changed}; then {restore_config} && {_reload(proxy)} && echo 'and has its previous configuration back' >&2; fi",
            "exit 1",
        ]
    )


def migration_script(cfg: StackConfig, image: str, network: str | None) -> str:
    """Run the migration once in a container of the new image; its env file arrives on stdin."""
    argv = ["docker", "run", "--rm", "--env-file", "/dev/stdin", "--user", cfg.web.user, "--read-only",
            "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
            "--label", f"cutover.app={cfg.app_name}", "--label", f"cutover.stack={cfg.stack}", "--label", "cutover.role=migration"]  # fmt: skip
    if network:
        argv += ["--network", network]
    return "set -eu\n" + shlex.join([*argv, image, *cfg.migrations.command])
