"""Roles beside web: a rolling worker and a single-instance bot, from the same release's image."""

from __future__ import annotations

from typing import Any

import pytest

from components.release.go_live import Handover, go_live_script
from tests.conftest import full_config
from tests.harness import ProgramRun, Registration, run_program

CONTAINER = "docker:index/container:Container"
WORKER = {
    "command": ["python", "-m", "worker"],
    "replicas": 2,
    "env": {"WORKER_QUEUE": "jobs"},
    "healthcheck": {"command": ["python", "-m", "heartbeat", "30"]},
}
BOT = {
    "command": ["python", "-m", "bot"],
    "overlap": False,
    "stopTimeout": "20s",
    "healthcheck": {"command": ["python", "-m", "heartbeat", "10"]},
}


def containers(run: ProgramRun, role: str) -> list[Registration]:
    return [
        r
        for r in run.of_type(CONTAINER)
        if r.name.startswith(f"{role}-") and r.name[len(role) + 1 :][:1].isalnum() and "proxy" not in r.name
    ]


def go_live(run: ProgramRun) -> Registration:
    return next(r for r in run.registrations if r.name == "switch-traffic")


@pytest.fixture(scope="module")
def with_roles() -> ProgramRun:
    raw, secrets = full_config()
    return run_program({**raw, "roles": {"worker": WORKER, "bot": BOT}}, secrets, stack="prod")


def test_each_role_runs_the_release_image_after_the_migration(with_roles: ProgramRun) -> None:
    run = with_roles
    migrate = next(r for r in run.registrations if r.name == "web-migrate")
    image = run.one("docker:index/remoteImage:RemoteImage", "web-image").outputs["imageId"]
    workers, bots = containers(run, "worker"), containers(run, "bot")
    assert sorted(w.name for w in workers) == ["worker-0123456789ab-0", "worker-0123456789ab-1"] and len(bots) == 1
    for c in [*workers, *bots]:
        assert c.inputs["image"] == image, "one release, one image for every role"
        assert c.depends_on(migrate), "migrations run once, before any role starts"
        assert c.options["deleteBeforeReplace"] is False and c.options["replaceOnChanges"] == ["*"]
        assert c.inputs["networksAdvanced"] == [{"name": "web-prod-private"}], "beside the accessories, not on the edge"
        assert "ports" not in c.inputs
        labels = {x["label"]: x["value"] for x in c.inputs["labels"]}
        assert labels["cutover.role"] == c.name.split("-")[0]
        assert (
            any(e.startswith("REDIS_URL=redis://:redis-password-for-tests@redis") for e in c.inputs["envs"]) and "envs" in c.secret_inputs
        )
        assert c.inputs["stopSignal"] == "SIGTERM"


def test_a_rolling_role_is_waited_for_and_given_time_to_finish_its_job(with_roles: ProgramRun) -> None:
    worker = containers(with_roles, "worker")[0].inputs
    assert worker["command"] == ["python", "-m", "worker"]
    assert worker["healthcheck"]["tests"] == ["CMD", "python", "-m", "heartbeat", "30"] and worker["healthcheck"]["interval"] == "5s"
    assert worker["wait"] is True and worker["mustRun"] is True and "start" not in worker
    assert worker["stopTimeout"] == worker["destroyGraceSeconds"] == 600, "10 minutes to finish the job in hand"
    assert "WORKER_QUEUE=jobs" in worker["envs"] and not any(e.startswith("PORT=") for e in worker["envs"]), "web's own env is web's"


def test_a_single_instance_role_is_only_created_and_handed_over_at_go_live(with_roles: ProgramRun) -> None:
    [bot] = containers(with_roles, "bot")
    assert bot.inputs["start"] is False and bot.inputs["mustRun"] is False and "wait" not in bot.inputs
    step = go_live(with_roles)
    assert step.depends_on(bot) and all(step.depends_on(w) for w in containers(with_roles, "worker"))
    script = step.inputs["create"]
    name = bot.outputs["name"]
    body = script[script.index("\n}\n") :]
    handover = body[body.index("bot: one at a time") :]
    stop, start = handover.index("docker stop --time 20"), handover.index(f"docker start {name}")
    assert stop < start < handover.index(f"bot: {name} is healthy"), "the old one stops before the new one starts"
    assert "--filter label=cutover.app=web --filter label=cutover.stack=prod --filter label=cutover.role=bot" in script
    assert body.index("bot: one at a time") < body.index("proxy now routes to"), "handed over before the web switch"
    revert = script[script.index("revert() {") : script.index("\n}\n")]
    assert f"docker stop --time 20 {name}" in revert and 'for o in $old_0; do docker start "$o"' in revert
    # every new container of every role is watched on probation; the worker's are health-gated, the bot's not
    watched = [*with_roles.outputs["containers"], *(c.outputs["name"] for c in [*containers(with_roles, "worker"), bot])]
    assert all(f"--filter container={n}" in script for n in watched)
    gate = body[: body.index('new_id="$(docker inspect')]
    assert all(c.outputs["name"] in gate for c in containers(with_roles, "worker")) and name not in gate


def test_the_release_record_says_what_runs_in_each_role(with_roles: ProgramRun) -> None:
    release = with_roles.outputs["release"]
    assert release["roles"] == {
        "web": {"replicas": 3},
        "worker": {"replicas": 2, "command": ["python", "-m", "worker"]},
        "bot": {"replicas": 1, "command": ["python", "-m", "bot"], "overlap": False},
    }
    roles = with_roles.outputs["roles"]
    assert sorted(roles) == ["bot", "worker"] and len(roles["worker"]) == 2


def test_a_bot_alone_has_no_proxy_and_nothing_to_switch() -> None:
    raw, secrets = full_config()
    config: dict[str, Any] = {**raw, "web": {"enabled": False}, "roles": {"bot": BOT}}
    run = run_program(config, secrets, stack="prod")
    assert not [r for r in run.registrations if "proxy" in r.name], "no edge proxy, no edge network, no certificates volume"
    assert not [r for r in run.of_type(CONTAINER) if r.name.startswith("web-")]
    assert "url" not in run.outputs and run.outputs["containers"] == []
    step = go_live(run)
    script = step.inputs["create"]
    assert "caddy" not in script and "new_config" not in script and "stdin" not in step.inputs
    assert "bot: one at a time" in script and "probation: watching" in script and "answers through the proxy" not in script
    assert step.inputs["triggers"] == [[], [[containers(run, "bot")[0].outputs["name"]]]]
    migrate = next(r for r in run.registrations if r.name == "web-migrate")
    assert not any(line.startswith("PORT=") for line in migrate.inputs["stdin"].splitlines()), "the migration gets what every role gets"


def test_a_handover_without_a_proxy_reverts_only_itself() -> None:
    script = go_live_script(
        None, [], drain_s=2, wait_healthy_s=5, verification=None, handovers=[Handover("a", "s", "bot", "bot-x-0-1234567", 10, 30)]
    )
    assert "switched=yes" not in script and "revert" in script and "draining" not in script
    assert script.index("docker stop --time 10") < script.index("docker start bot-x-0-1234567 >/dev/null")
    assert 'ticks" -ge 150' in script, "30 s, five probes a second"
