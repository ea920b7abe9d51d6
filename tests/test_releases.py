"""Release records, bounded history, rollback targets and promotion."""

from __future__ import annotations

from typing import Any

import pytest

from components.edge.caddyfile import UPSTREAM_HEADER
from components.release.records import ReleaseError, next_state, release_record, resolve_target
from tests.conftest import prod_config
from tests.harness import ProgramFailedError, ProgramRun, Registration, run_program

SELF = "organization/cutover/prod"


def sha_of(n: int) -> str:
    return (f"c{n}fe" * 10)[:40]


def rel(n: int) -> dict[str, Any]:
    return release_record(f"ghcr.io/acme/web@sha256:{n:064x}", f"v{n}", sha_of(n), f"2026-01-{n:02d}T00:00:00Z", "build")


# ---------------------------------------------------------------- pure functions


def test_first_deploy_has_no_history() -> None:
    current, history = next_state(None, None, rel(1), 10)
    assert current == rel(1) and history == []


def test_a_deploy_pushes_the_previous_release_onto_the_history() -> None:
    current, history = next_state(rel(2), [rel(1)], rel(3), 10)
    assert current == rel(3) and history == [rel(2), rel(1)]


def test_history_is_bounded_newest_first() -> None:
    history = [rel(n) for n in range(9, 0, -1)]
    _, after = next_state(rel(10), history, rel(11), 5)
    assert [r["tag"] for r in after] == ["v10", "v9", "v8", "v7", "v6"]


def test_deploying_the_running_digest_again_changes_nothing() -> None:
    again = {**rel(2), "deployedAt": "2026-02-02T00:00:00Z"}
    current, history = next_state(rel(2), [rel(1)], again, 10)
    assert current == rel(2), "keeps when it was first deployed"
    assert history == [rel(1)]


def test_no_consecutive_duplicates_in_history() -> None:
    _, history = next_state(rel(2), [rel(2), rel(1)], rel(3), 10)
    assert [r["tag"] for r in history] == ["v2", "v1"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("previous", "v3"),
        ("1", "v3"),
        ("2", "v2"),
        ("3", "v1"),
        (sha_of(2)[:12], "v2"),
        ("1234567", None),
        (f"sha256:{1:064x}", "v1"),
        (f"ghcr.io/acme/web@sha256:{2:064x}", "v2"),
    ],
)
def test_rollback_targets(target: str, expected: str | None) -> None:
    if expected is None:  # seven digits or more is a git SHA, not a count
        with pytest.raises(ReleaseError, match="no such release running or in the history"):
            resolve_target(target, rel(4), [rel(3), rel(2), rel(1)])
        return
    assert resolve_target(target, rel(4), [rel(3), rel(2), rel(1)])["tag"] == expected


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("4", "expected a number from 1 to 3"),
        ("0", "expected a number from 1 to 3"),
        ("deadbeefcafe", "no such release running or in the history"),
        (f"sha256:{9:064x}", "no such release running or in the history"),
        ("yesterday", "expected 'previous', a number of releases back, a git SHA"),
    ],
)
def test_unknown_rollback_targets_are_refused_with_the_history(target: str, message: str) -> None:
    with pytest.raises(ReleaseError) as err:
        resolve_target(target, rel(4), [rel(3), rel(2), rel(1)])
    assert message in str(err.value)
    if "such release" in message or "from 1 to 3" in message:  # the message lists what can be chosen
        assert "1. v3" in str(err.value) and "3. v1" in str(err.value)


def test_the_running_release_can_be_named_by_digest_or_sha() -> None:
    """What the deploy workflow does after a failed update: redeploy the digest it saw before."""
    assert resolve_target(f"sha256:{4:064x}", rel(4), [rel(3)])["tag"] == "v4"
    assert resolve_target(sha_of(1), rel(1), [])["tag"] == "v1", "works on a stack's second deploy too"
    current, history = next_state(rel(4), [rel(3)], {**rel(4), "source": "rollback"}, 10)
    assert current == rel(4) and history == [rel(3)], "redeploying what runs leaves no trace"


def test_no_history_cannot_roll_back() -> None:
    with pytest.raises(ReleaseError, match="no earlier release"):
        resolve_target("previous", rel(1), [])
    with pytest.raises(ReleaseError, match="never been deployed"):
        resolve_target("previous", None, None)


# ---------------------------------------------------------------- through the program


def deploy(
    outputs: dict[str, Any] | None, env: dict[str, str] | None = None, extra_refs: dict[str, Any] | None = None, **config: Any
) -> ProgramRun:
    raw, secrets = prod_config()
    raw = {**raw, **config}
    refs = {SELF: outputs or {}, **(extra_refs or {})}
    return run_program(raw, secrets, stack="prod", stack_outputs=refs, env=env)


def pulled(run: ProgramRun) -> str:
    return run.one("docker:index/remoteImage:RemoteImage", "web-image").inputs["name"]


def test_first_deploy_through_the_program() -> None:
    run = deploy(None)
    assert run.outputs["release"]["source"] == "build"
    assert run.outputs["releases"] == []
    assert pulled(run) == run.outputs["release"]["imageRef"]
    assert "@sha256:" in pulled(run)


def test_normal_deploy_grows_the_history() -> None:
    run = deploy({"release": rel(2), "releases": [rel(1)]})
    assert [r["tag"] for r in run.outputs["releases"]] == ["v2", "v1"]
    assert run.outputs["release"]["gitSha"] == "0123456789abcdef0123456789abcdef01234567"


def test_history_size_is_configurable() -> None:
    run = deploy({"release": rel(5), "releases": [rel(4), rel(3), rel(2), rel(1)]}, releases={"historySize": 2})
    assert [r["tag"] for r in run.outputs["releases"]] == ["v5", "v4"]


@pytest.mark.parametrize(("target", "tag"), [("previous", "v2"), ("2", "v1"), (sha_of(1), "v1"), (f"sha256:{2:064x}", "v2")])
def test_rollback_redeploys_an_earlier_digest_without_building(target: str, tag: str) -> None:
    run = deploy({"release": rel(3), "releases": [rel(2), rel(1)]}, env={"CUTOVER_ROLLBACK_TO": target})
    assert not run.of_type("docker:index/image:Image"), "a rollback builds nothing"
    current = run.outputs["release"]
    assert current["tag"] == tag and current["source"] == "rollback"
    assert pulled(run) == current["imageRef"]
    assert run.outputs["releases"][0]["tag"] == "v3", "the bad release stays in the history"
    web = web_containers(run)[0]
    assert f"APP_VERSION={tag}" in web.inputs["envs"]
    verify = next(r for r in run.registrations if r.name == "switch-traffic")
    back = "|".join(verify.inputs["triggers"][1])  # the rolled-back-to containers the switch routes to
    assert f"{UPSTREAM_HEADER}: ({back}):" in verify.inputs["create"], "the same zero-downtime path: switch, then verify"


def test_after_a_rollback_the_next_ordinary_deploy_builds_again() -> None:
    rolled = deploy({"release": rel(3), "releases": [rel(2), rel(1)]}, env={"CUTOVER_ROLLBACK_TO": "previous"})
    run = deploy({"release": rolled.outputs["release"], "releases": rolled.outputs["releases"]})
    assert run.of_type("docker:index/image:Image")
    assert run.outputs["release"]["source"] == "build"
    assert [r["tag"] for r in run.outputs["releases"]][:2] == ["v2", "v3"]


@pytest.mark.parametrize(
    ("outputs", "target", "message"),
    [
        ({"release": rel(3), "releases": [rel(2)]}, "5", "expected a number from 1 to 1"),
        ({"release": rel(1), "releases": []}, "previous", "no earlier release"),
        (None, "previous", "never been deployed"),
    ],
)
def test_impossible_rollback_fails_before_any_container_changes(outputs: dict[str, Any] | None, target: str, message: str) -> None:
    with pytest.raises(ProgramFailedError, match=message) as err:
        deploy(outputs, env={"CUTOVER_ROLLBACK_TO": target})
    assert err.value.registrations == [], "nothing is registered before the release is known"


def test_promotion_deploys_exactly_what_the_other_stack_runs() -> None:
    dev_release = rel(7)
    run = deploy(
        {"release": rel(3), "releases": []},
        extra_refs={"organization/cutover/staging": {"release": dev_release}},
        releases={"promoteFrom": "staging"},
    )
    assert not run.of_type("docker:index/image:Image")
    assert pulled(run) == dev_release["imageRef"]
    assert run.outputs["release"]["source"] == "promotion from staging"
    assert run.outputs["release"]["gitSha"] == dev_release["gitSha"]


def test_promotion_from_a_stack_with_no_release_is_refused() -> None:
    with pytest.raises(ProgramFailedError, match="expected a stack whose release is a digest-pinned image"):
        deploy(None, extra_refs={"organization/cutover/staging": {}}, releases={"promoteFrom": "staging"})


def web_containers(run: ProgramRun) -> list[Registration]:
    """The web role's containers, by their label (the proxy's resource is named after the stack too)."""
    web = {"label": "cutover.role", "value": "web"}
    return [r for r in run.of_type("docker:index/container:Container") if web in (r.inputs.get("labels") or [])]


def web_names(run: ProgramRun) -> list[str]:
    return sorted(r.name for r in web_containers(run))


def test_each_release_has_containers_of_its_own() -> None:
    """A new release adds new resources rather than replacing the old ones, so a failed
    release never marks the serving containers for deletion by the next update."""
    first = deploy(None, env={"CUTOVER_GIT_SHA": "a" * 40})
    second = deploy({"release": first.outputs["release"], "releases": []}, env={"CUTOVER_GIT_SHA": "b" * 40})
    assert web_names(first) == ["web-aaaaaaaaaaaa-0", "web-aaaaaaaaaaaa-1"]
    assert web_names(second) == ["web-bbbbbbbbbbbb-0", "web-bbbbbbbbbbbb-1"]
    for web in web_containers(second):
        assert web.options["deleteBeforeReplace"] is False


def test_rolling_back_to_the_release_that_serves_declares_exactly_its_containers() -> None:
    """After a failed deploy the workflow redeploys the digest it saw: nothing to create, nothing to replace."""
    built = deploy(None, env={"CUTOVER_GIT_SHA": "a" * 40})
    current = built.outputs["release"]
    again = deploy({"release": current, "releases": []}, env={"CUTOVER_ROLLBACK_TO": current["imageRef"].split("@")[1]})

    def webs(run: ProgramRun) -> dict[str, dict[str, Any]]:
        return {r.name: r.inputs for r in web_containers(run)}

    assert webs(again) == webs(built)
    assert pulled(again) == pulled(built)
    assert again.outputs["release"] == current, "redeploying what runs changes no record"


def test_a_rollback_runs_no_migration() -> None:
    migrations = {"command": ["alembic", "upgrade", "head"]}
    normal = deploy({"release": rel(3), "releases": [rel(2)]}, migrations=migrations)
    rolled = deploy({"release": rel(3), "releases": [rel(2)]}, env={"CUTOVER_ROLLBACK_TO": "previous"}, migrations=migrations)
    assert [r.name for r in normal.registrations if r.name == "web-migrate"] == ["web-migrate"]
    assert not [r for r in rolled.registrations if r.name == "web-migrate"], "the older image's migrations never run"


def test_the_build_uses_the_running_release_as_cache() -> None:
    run = deploy({"release": rel(3), "releases": []})
    image = run.one("docker:index/image:Image")
    assert image.inputs["build"]["cacheFrom"] == {"images": [rel(3)["imageRef"]]}
    first = deploy(None)
    assert "cacheFrom" not in first.one("docker:index/image:Image").inputs["build"]


def test_promotion_needs_a_digest_pinned_release() -> None:
    local = {**rel(7), "imageRef": "cutover/web:" + sha_of(7)}
    with pytest.raises(ProgramFailedError, match="digest-pinned image") as err:
        deploy(None, extra_refs={"organization/cutover/staging": {"release": local}}, releases={"promoteFrom": "staging"})
    assert "cutover/web:" in str(err.value)


# ---------------------------------------------------------------- a pushed tag is never built again


def test_a_tag_already_released_is_deployed_again_without_a_build() -> None:
    current = {**rel(3), "tag": "0123456789abcdef0123456789abcdef01234567"}  # the commit being deployed (harness default)
    run = deploy({"release": current, "releases": [rel(2), rel(1)]})
    assert not run.of_type("docker:index/image:Image"), "building it again would push other bytes under that tag"
    assert pulled(run) == current["imageRef"]
    assert run.outputs["release"] == current, "deploying what runs changes nothing, the record included"
    assert [r["tag"] for r in run.outputs["releases"]] == ["v2", "v1"]


def test_a_tag_from_the_history_is_redeployed_by_its_digest() -> None:
    earlier = {**rel(2), "tag": "0123456789abcdef0123456789abcdef01234567"}
    run = deploy({"release": rel(3), "releases": [earlier, rel(1)]})
    assert not run.of_type("docker:index/image:Image")
    current = run.outputs["release"]
    assert current["imageRef"] == earlier["imageRef"] and current["source"] == "redeploy of tag 0123456789abcdef0123456789abcdef01234567"
    assert pulled(run) == earlier["imageRef"]


def test_a_new_commit_is_built() -> None:
    run = deploy({"release": rel(3), "releases": [rel(2)]})
    assert run.of_type("docker:index/image:Image") and run.outputs["release"]["source"] == "build"
