"""Deploy notifications: what the deploy and rollback workflows announce, and how. Pure.

Two steps per stack job (components/github/workflows.py puts them in place):

- before `pulumi up`: "<kind> of <stack> started";
- at the end, whatever happened: the outcome, read from the outcomes of the job's steps
  (`OUTCOMES`): succeeded, failed and rolled back to the release serving before, failed
  after the new release went live (not rolled back), failed with the rollback failing too.

Each posts `{"text": "..."}` (a Slack incoming webhook's JSON; Discord takes it at the
webhook URL followed by `/slack`; README "Notifications" has Telegram) to the URL in the
`NOTIFY_WEBHOOK` secret, which the GitHub component sets from the stack's `notifyWebhook`.
A notification never fails a deploy: without the secret the step says so and ends; a post
that fails (10 s at most, two retries) is a warning in the log, naming the HTTP status or
curl's exit code but never the URL, and the step still succeeds (and is `continue-on-error`
besides). GitHub itself records each job's deployment and its outcome on the environment
(the jobs name it: `environment:`), so the environment's deployments page shows the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

NOTIFY_SECRET: Final = "NOTIFY_WEBHOOK"  # noqa: S105 (the name of a secret, not one)

# (pattern of "$UP/$LIVE/$ROLLBACK", what the notification says) in the order bash's `case` tries
# them: UP and ROLLBACK are step outcomes (success, failure, cancelled, skipped), LIVE is the
# went-live check's output (true once the new release was recorded before the failure).
DEPLOY_OUTCOMES: Final[Sequence[tuple[str, str]]] = (
    ("success/*", "succeeded"),
    ("failure/true/*", "failed after the new release went live: it serves and was not rolled back"),
    ("failure/*/success", "failed and was rolled back to the release serving before (${TARGET:-?})"),
    ("failure/*/failure", "failed, and rolling back to the release serving before failed too: the stack needs a look"),
    ("failure/*/*", "failed; nothing was rolled back (no earlier release recorded)"),
    ("*", "did not run pulumi up (an earlier step failed, or the run was cancelled)"),
)
ROLLBACK_OUTCOMES: Final[Sequence[tuple[str, str]]] = (
    ("success/*", "succeeded: ${TARGET:-previous} serves"),
    ("failure/*", "failed (the run's log says at which step)"),
    ("*", "did not run pulumi up (an earlier step failed, or the run was cancelled)"),
)


def _post_lines() -> list[str]:
    """Posts "$text" as Slack-compatible JSON to $NOTIFY_WEBHOOK; never fails, never prints the URL."""
    return [
        'if [ -z "${NOTIFY_WEBHOOK:-}" ]; then',
        f'  echo "No {NOTIFY_SECRET} secret on this environment: no notification sent."',
        "  exit 0",
        "fi",
        'if [ -n "${GITHUB_RUN_ID:-}" ]; then text="$text · ${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/$GITHUB_RUN_ID"; fi',
        'payload="$(jq -n --arg text "$text" \'{text: $text}\')"',
        "# the URL reaches curl on stdin, not in its arguments",
        'status="$(curl --config - --silent --output /dev/null --write-out "%{http_code}" --max-time 10 --retry 2 --retry-max-time 30 \\',
        '  --header \'Content-Type: application/json\' --data-binary "$payload" <<< "url = \\"$NOTIFY_WEBHOOK\\"")" && code=0 || code=$?',
        'if [ "$code" -eq 0 ] && [[ "$status" == 2?? ]]; then',
        '  echo "Notified: $text"',
        "else",
        '  echo "::warning title=Notification not sent::the webhook answered HTTP ${status:-none} (curl exit $code); the deploy goes on"',
        "fi",
    ]


def started_script(kind: str, stack: str) -> str:
    """The step run before `pulumi up`: "<kind> of <stack> started: <commit> by <actor>"."""
    text = f"cutover: {kind} of {stack} started: ${{GITHUB_SHA:0:12}} by ${{GITHUB_ACTOR:-?}}"
    return "\n".join(["set -u", f'text="{text}"', *_post_lines()]) + "\n"


def finished_script(kind: str, stack: str, outcomes: Sequence[tuple[str, str]], key: str) -> str:
    """The step run at the end of the job: the outcome `key` (e.g. "$UP/$LIVE/$ROLLBACK") selects."""
    cases = [f'  {pattern}) result="{said}" ;;' for pattern, said in outcomes]
    return (
        "\n".join(
            [
                "set -u",
                f'case "{key}" in',
                *cases,
                "esac",
                f'text="cutover: {kind} of {stack} ${{result}}${{RELEASE_URL:+ ($RELEASE_URL)}}"',
                *_post_lines(),
            ]
        )
        + "\n"
    )
