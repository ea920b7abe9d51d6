"""Roles on a real Docker engine: a queue worker and a single-instance bot beside web, with a real Redis.

A stack with the Redis accessory (the redis:7 image, a stand-in built from Debian's
redis-server when none can be pulled), web, a rolling `worker` role (app/worker.py: a
reliable queue, the job in hand finished on SIGTERM) and a single-instance `bot` role
(app/bot.py), applied by tests/e2e/replay like the release scenarios:

    1  first deploy
    2  jobs enqueued steadily while the worker role is released twice and rolled back once,
       some jobs longer than a release: none lost, none cut off
    3  the bot released several times while its containers are sampled continuously:
       never two at once; the gap between the old one stopping and the new one healthy
    4  web and worker released together under HTTP load: no failed request, no job lost
    5  a worker release that never becomes healthy (it dies as it starts): refused; the old
       workers keep working

Every scenario records its numbers (conftest.py). Run: .venv/bin/pytest -m e2e tests/e2e/test_roles.py -v
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import infra
from tests.e2e.bench import Load
from tests.e2e.conftest import record, tools_problem, unavailable
from tests.e2e.replay.engine import Engine, UpdateFailedError
from tests.e2e.replay.stack import SECRET_KEYS, Stack, e2e_config_on, ensure_app_wheels, fake_sha, remove_leftovers, remove_stack_objects

pytestmark = pytest.mark.e2e

WORKER = {
    "command": ["python", "-m", "worker"],
    "replicas": 2,
    "stopTimeout": "30s",
    "waitTimeout": "20s",
    "healthcheck": {"command": ["python", "-m", "heartbeat", "10"], "interval": "1s", "retries": 2, "startPeriod": "10s"},
}
BOT = {
    "command": ["python", "-m", "bot"],
    "overlap": False,
    "stopTimeout": "10s",
    "waitTimeout": "20s",
    "healthcheck": {"command": ["python", "-m", "heartbeat", "5"], "interval": "1s", "retries": 2, "startPeriod": "10s"},
}


@dataclasses.dataclass
class Roles:
    stack: Stack
    engine: Engine
    port: int
    salt: str
    redis_password: str

    def sha(self, label: str) -> str:
        return fake_sha(label, self.salt)

    def up(self, label: str, **kwargs: Any) -> Any:
        return self.stack.up(sha=self.sha(label), **kwargs)

    @property
    def redis(self) -> str:
        return "web-roles-redis"

    def redis_cli(self, *args: str) -> str:
        return infra.docker("exec", self.redis, "redis-cli", "-a", self.redis_password, "--no-auth-warning", "--raw", *args).stdout

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def roles(docker_engine: infra.Engine, e2e_results: dict[str, Any]) -> Iterator[Roles]:
    problem = tools_problem("docker-registry", "htpasswd", "sshd", "ssh", "ssh-keygen", "ssh-agent", "ssh-add", root=True)
    if problem:
        unavailable(problem)
    infra.ensure_base_images()
    e2e_results.setdefault("timings", {})["redis_image"] = infra.ensure_base_images(standins=(infra.REDIS_STANDIN,))[0]["source"]
    ensure_app_wheels()
    password = secrets.token_hex(12)
    with infra.start_registry() as registry, infra.start_sshd() as host, infra.ssh_agent() as machine:
        remove_stack_objects("roles")  # what an interrupted run left
        engine = Engine(env=machine, log=infra.log)
        port = infra.free_port()
        config = {
            **e2e_config_on(registry, host, port),
            "redis": {"enabled": True},
            "redisPassword": password,
            "roles": {"worker": WORKER, "bot": BOT},
        }
        env = Roles(Stack(engine, config, SECRET_KEYS | {"redisPassword"}, name="roles"), engine, port, secrets.token_hex(4), password)
        try:
            yield env
        finally:
            teardown(env)


def teardown(env: Roles) -> None:
    remove_leftovers(env.engine, "roles")


def running(role: str) -> list[tuple[str, str]]:
    out = infra.docker(
        "ps", "--filter", "label=cutover.stack=roles", "--filter", f"label=cutover.role={role}", "--format", "{{.Names}} {{.Status}}"
    )
    return [tuple(line.split(" ", 1)) for line in out.stdout.splitlines() if line.strip()]  # type: ignore[misc]


# --------------------------------------------------------------------------- a steady stream of jobs


class Jobs:
    """Enqueues jobs at a steady rate through one long-lived redis-cli; every `long_every`-th job takes
    `long_s` seconds of work (longer than a release's switch), the others `short_s`."""

    def __init__(self, env: Roles, per_s: float = 4, long_every: int = 10, long_s: float = 8, short_s: float = 0.2) -> None:
        self.env = env
        self.per_s, self.long_every, self.long_s, self.short_s = per_s, long_every, long_s, short_s
        self.ids: list[str] = []
        self.batch = secrets.token_hex(3)  # ids unique to this stream: the done counts are kept across streams
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cli: subprocess.Popen[str] | None = None

    def __enter__(self) -> Jobs:
        argv = ["docker", "exec", "-i", self.env.redis, "redis-cli", "-a", self.env.redis_password, "--no-auth-warning"]
        self._cli = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._cli is not None and self._cli.stdin is not None
        n = 0
        while not self._stop.is_set():
            n += 1
            job_id = f"job-{self.batch}-{len(self.ids) + 1}"
            seconds = self.long_s if n % self.long_every == 0 else self.short_s
            self._cli.stdin.write(f"LPUSH jobs {job_id}:{seconds}\n")
            self._cli.stdin.flush()
            self.ids.append(job_id)
            self._stop.wait(1 / self.per_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._cli is not None and self._cli.stdin is not None:
            self._cli.stdin.close()
            self._cli.wait(timeout=30)

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()

    def drained(self, timeout: float = 120) -> float:
        """Seconds until no job waits and no worker holds one."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            waiting = int(self.env.redis_cli("LLEN", "jobs").strip() or 0)
            held = [k for k in self.env.redis_cli("KEYS", "processing:*").split() if int(self.env.redis_cli("LLEN", k).strip() or 0)]
            if waiting == 0 and not held:
                return time.monotonic() - started
            time.sleep(0.5)
        raise AssertionError(f"jobs not drained after {timeout}s")

    def tally(self) -> dict[str, int]:
        done = _hash(self.env.redis_cli("HGETALL", "done"))
        started = _hash(self.env.redis_cli("HGETALL", "started"))
        ours = set(self.ids)
        return {
            "enqueued": len(self.ids),
            "completed": sum(1 for i in ours if done.get(i, 0) >= 1),
            "lost": sum(1 for i in ours if done.get(i, 0) == 0),
            "done_twice": sum(1 for i in ours if done.get(i, 0) > 1),
            "cut_off": sum(max(0, started.get(i, 0) - done.get(i, 0)) for i in ours),
            "long_jobs": sum(1 for n in range(1, len(self.ids) + 1) if n % self.long_every == 0),
        }


def _hash(text: str) -> dict[str, int]:
    items = text.split()
    return {items[i]: int(items[i + 1]) for i in range(0, len(items) - 1, 2)}


# --------------------------------------------------------------------------- 1. first deploy


def test_1_first_deploy_runs_web_worker_and_bot(roles: Roles, e2e_results: dict[str, Any]) -> None:
    result = roles.up("r1")
    assert [s for _, s in running("worker") if "(healthy)" in s] and len(running("worker")) == 2
    assert len(running("bot")) == 1 and "(healthy)" in running("bot")[0][1]
    assert roles.stack.outputs["release"]["roles"]["worker"] == {"replicas": 2, "command": ["python", "-m", "worker"]}
    with Jobs(roles, per_s=10) as jobs:
        time.sleep(2)
        jobs.stop()
    jobs.drained()
    tally = jobs.tally()
    record(e2e_results, "roles_1_first_deploy", {"deploy_s": round(result.duration, 1), **tally})
    assert tally["lost"] == 0 and tally["completed"] == tally["enqueued"] > 0


# --------------------------------------------------------------------------- 2. jobs across worker releases


def test_2_no_job_is_lost_or_cut_off_across_releases_and_a_rollback(roles: Roles, e2e_results: dict[str, Any]) -> None:
    durations = []
    with Jobs(roles) as jobs:
        time.sleep(3)
        for label in ("r2", "r3"):
            durations.append(round(roles.up(label).duration, 1))
        durations.append(round(roles.up("r3", rollback_to="previous").duration, 1))
        time.sleep(3)
        jobs.stop()
    drained = jobs.drained()
    tally = jobs.tally()
    record(e2e_results, "roles_2_jobs_across_releases", {**tally, "releases_s": durations, "drained_after_s": round(drained, 1)})
    assert roles.stack.outputs["release"]["tag"] == roles.sha("r2") and roles.stack.outputs["release"]["source"] == "rollback"
    assert tally["long_jobs"] >= 3, "some jobs outlast a release"
    assert tally["lost"] == 0 and tally["cut_off"] == 0, tally
    assert tally["done_twice"] == 0, tally


# --------------------------------------------------------------------------- 3. one bot at a time


def test_3_the_bot_never_runs_twice_and_its_gap_is_short(roles: Roles, e2e_results: dict[str, Any]) -> None:
    samples: list[tuple[float, list[tuple[str, str]]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), running("bot")))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for label in ("r4", "r5", "r6"):
            roles.up(label)
        time.sleep(1)
    finally:
        stop.set()
        sampler.join(timeout=10)
    most = max(len(s) for _, s in samples)
    # a gap: from the last sample where the previous bot runs to the first where the next one is healthy
    gaps, last_name, last_seen = [], None, None
    for t, seen in samples:
        healthy = [n for n, status in seen if "(healthy)" in status]
        names = [n for n, _ in seen]
        if last_name and last_name in names:
            last_seen = t
        if healthy and healthy[0] != last_name:
            if last_name is not None and last_seen is not None:
                gaps.append(t - last_seen)
            last_name, last_seen = healthy[0], t
    record(
        e2e_results,
        "roles_3_single_instance",
        {
            "samples": len(samples),
            "sample_every_s": round(statistics.median(b[0] - a[0] for a, b in itertools.pairwise(samples)), 3),
            "most_running_at_once": most,
            "handovers": len(gaps),
            "gap_median_s": round(statistics.median(gaps), 2) if gaps else None,
            "gap_worst_s": round(max(gaps), 2) if gaps else None,
        },
    )
    assert most == 1, [s for _, s in samples if len(s) > 1][:3]
    assert len(gaps) == 3, gaps
    assert max(gaps) < 5, gaps


# --------------------------------------------------------------------------- 4. web and worker together


def test_4_web_and_worker_released_together_under_load(roles: Roles, e2e_results: dict[str, Any]) -> None:
    with Jobs(roles) as jobs, Load(roles.url()) as load:
        result = roles.up("r7")
        load.stop()
        jobs.stop()
    jobs.drained()
    tally = jobs.tally()
    record(e2e_results, "roles_4_web_and_worker", {**load.numbers(), **tally, "deploy_s": round(result.duration, 1)})
    assert tally["lost"] == 0 and tally["cut_off"] == 0, tally
    load.assert_nothing_failed()


# --------------------------------------------------------------------------- 5. a worker release that never gets healthy


def test_5_an_unhealthy_worker_release_is_refused_and_the_old_workers_keep_working(roles: Roles, e2e_results: dict[str, Any]) -> None:
    before = roles.stack.outputs
    serving = sorted(n for n, _ in running("worker"))
    # a broken release: its worker dies as it starts (a module it no longer has), again and again
    sick = {"roles": {"worker": {**WORKER, "command": ["python", "-m", "no_such_worker"]}}}
    with Jobs(roles) as jobs:
        with pytest.raises(UpdateFailedError) as failure:
            roles.up("r8", overrides=sick)
        time.sleep(2)
        jobs.stop()
    jobs.drained()
    tally = jobs.tally()
    old_done = roles.redis_cli("HVALS", "done_by").split().count(before["release"]["tag"])
    record(e2e_results, "roles_5_unhealthy_worker_refused", {**tally, "jobs_done_by_the_old_release": old_done})
    assert "container failed to be in healthy state" in str(failure.value) and "worker-" in str(failure.value)
    assert roles.stack.outputs == before
    assert not failure.value.result.ran("switch-traffic")
    assert tally["lost"] == 0 and tally["cut_off"] == 0, tally
    healthy_old = [n for n, status in running("worker") if n in serving and "(healthy)" in status]
    assert sorted(healthy_old) == serving, running("worker")
    assert tally["completed"] == tally["enqueued"] and old_done > 0
