"""Deploy notifications (components/github/notifications.py): the workflow steps run by bash, posting with the
real curl to a webhook served on loopback, for every outcome a deploy or rollback job can have."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.github.workflows.render import workflow_data
from components.github.workflows.settings import WorkflowSettings
from tests import lint_tools
from tests.test_workflows import Bash

TOKEN = "T0KEN-in-the-path-0123456789"


class Webhook:
    """A loopback HTTP server that records what is posted to it and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append({"path": self.path, "type": self.headers.get("Content-Type"), "json": json.loads(body)})
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [p["json"]["text"] for p in self.posts]


@pytest.fixture()
def webhook() -> Iterator[Webhook]:
    lint_tools.require("curl")
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture()
def bash(tmp_path: Path) -> Bash:
    return Bash(tmp_path)


RUN = {
    "GITHUB_SHA": "0123456789abcdef" * 2 + "01234567",
    "GITHUB_ACTOR": "octocat",
    "GITHUB_RUN_ID": "42",
    "GITHUB_REPOSITORY": "acme/shop",
}
DIGEST = "sha256:" + "ab" * 32


def finished(job: str = "deploy-prod", workflow: str = "deploy.yml") -> dict[str, Any]:
    steps = workflow_data(WorkflowSettings())[workflow]["jobs"][job]["steps"]
    return next(s for s in steps if s["name"].endswith("finished"))


def started(job: str = "deploy-prod", workflow: str = "deploy.yml") -> dict[str, Any]:
    steps = workflow_data(WorkflowSettings())[workflow]["jobs"][job]["steps"]
    return next(s for s in steps if s["name"].endswith("started"))


@pytest.mark.parametrize(
    ("up", "live", "rollback", "said"),
    [
        ("success", "", "skipped", "deploy of prod succeeded (https://shop.example.com)"),
        ("failure", "true", "skipped", "deploy of prod failed after the new release went live: it serves and was not rolled back"),
        ("failure", "false", "success", f"deploy of prod failed and was rolled back to the release serving before ({DIGEST})"),
        ("failure", "false", "failure", "deploy of prod failed, and rolling back to the release serving before failed too"),
        ("failure", "false", "skipped", "deploy of prod failed; nothing was rolled back (no earlier release recorded)"),
        ("cancelled", "", "skipped", "deploy of prod did not run pulumi up"),
        ("skipped", "", "skipped", "deploy of prod did not run pulumi up"),
    ],
)
def test_the_finished_notification_says_what_happened(bash: Bash, webhook: Webhook, up: str, live: str, rollback: str, said: str) -> None:
    env = {**RUN, "NOTIFY_WEBHOOK": webhook.url, "UP": up, "LIVE": live, "ROLLBACK": rollback, "TARGET": DIGEST}
    env["RELEASE_URL"] = "https://shop.example.com" if up == "success" else ""
    proc = bash.run(finished(), env)
    assert proc.returncode == 0, proc.stderr
    (text,) = webhook.texts()
    assert text.startswith(f"cutover: {said}"), text
    assert text.endswith("· https://github.com/acme/shop/actions/runs/42")
    assert webhook.posts[0]["type"] == "application/json" and webhook.posts[0]["path"] == f"/services/{TOKEN}"
    assert TOKEN not in proc.stdout + proc.stderr


def test_the_started_notification_names_the_commit_and_who_pushed_it(bash: Bash, webhook: Webhook) -> None:
    proc = bash.run(started(), {**RUN, "NOTIFY_WEBHOOK": webhook.url})
    assert proc.returncode == 0, proc.stderr
    assert webhook.texts() == ["cutover: deploy of prod started: 0123456789ab by octocat · https://github.com/acme/shop/actions/runs/42"]
    assert "Notified: cutover: deploy of prod started" in proc.stdout


def test_rollback_notifications(bash: Bash, webhook: Webhook) -> None:
    env = {**RUN, "NOTIFY_WEBHOOK": webhook.url, "TARGET": "2", "RELEASE_URL": ""}
    assert bash.run(started("rollback-prod", "rollback.yml"), env).returncode == 0
    assert bash.run(finished("rollback-prod", "rollback.yml"), {**env, "UP": "success"}).returncode == 0
    assert bash.run(finished("rollback-prod", "rollback.yml"), {**env, "UP": "failure"}).returncode == 0
    texts = [t.split(" · ")[0] for t in webhook.texts()]
    assert texts == [
        "cutover: rollback of prod started: 0123456789ab by octocat",
        "cutover: rollback of prod succeeded: 2 serves",
        "cutover: rollback of prod failed (the run's log says at which step)",
    ]


def test_without_the_secret_nothing_is_sent_and_the_step_succeeds(bash: Bash, webhook: Webhook) -> None:
    proc = bash.run(finished(), {**RUN, "UP": "success"})
    assert proc.returncode == 0 and webhook.posts == []
    assert "No NOTIFY_WEBHOOK secret on this environment" in proc.stdout


def test_a_webhook_that_refuses_is_a_warning_without_its_url(bash: Bash, webhook: Webhook) -> None:
    webhook.status = 404
    proc = bash.run(finished(), {**RUN, "NOTIFY_WEBHOOK": webhook.url, "UP": "success"})
    assert proc.returncode == 0, proc.stderr
    assert "::warning title=Notification not sent::the webhook answered HTTP 404 (curl exit 0)" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr and "127.0.0.1" not in proc.stdout + proc.stderr


def test_an_unreachable_webhook_is_a_warning_and_the_step_succeeds(bash: Bash) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = bash.run(finished(), {**RUN, "NOTIFY_WEBHOOK": f"http://127.0.0.1:{port}/services/{TOKEN}", "UP": "failure"})
    assert proc.returncode == 0, proc.stderr
    assert "::warning title=Notification not sent::the webhook answered HTTP 000 (curl exit 7)" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr


def test_every_stack_job_announces_its_start_and_its_end_and_never_fails_for_it() -> None:
    data = workflow_data(WorkflowSettings())
    for workflow in ("deploy.yml", "rollback.yml"):
        for job_id, job in data[workflow]["jobs"].items():
            if "environment" not in job:
                continue
            names = [s["name"] for s in job["steps"]]
            notify = [s for s in job["steps"] if s["name"].startswith("Notify")]
            assert [s["name"] for s in notify] == [f"Notify: {workflow[:-4]} started", f"Notify: {workflow[:-4]} finished"], job_id
            assert names.index(notify[0]["name"]) < names.index(next(n for n in names if n.startswith("pulumi up")))
            assert job["steps"][-1] is notify[1] and notify[1]["if"] == "always()"
            assert all(s["continue-on-error"] is True and s["env"]["NOTIFY_WEBHOOK"] == "${{ secrets.NOTIFY_WEBHOOK }}" for s in notify)


def test_the_secret_name_is_a_setting() -> None:
    data = workflow_data(WorkflowSettings(notify_secret="SLACK_WEBHOOK"))
    step = next(s for s in data["deploy.yml"]["jobs"]["deploy-prod"]["steps"] if s["name"] == "Notify: deploy started")
    assert step["env"]["NOTIFY_WEBHOOK"] == "${{ secrets.SLACK_WEBHOOK }}"
    with pytest.raises(ValueError, match="notify_secret: got 'GITHUB_X', expected a secret name"):
        WorkflowSettings(notify_secret="GITHUB_X")
