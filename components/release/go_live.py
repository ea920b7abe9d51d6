"""The shell steps run on the host, computed without Pulumi.

Each function returns the text of a POSIX shell script that pulumi-command runs on
the Docker host (over SSH, or locally for the dev stack), so tests can read and run
exactly what the host runs:

- `go_live_script`: the release goes live. It refuses containers that are not
  healthy at that moment, checks through the proxy's private listener that the
  new version answers, points the edge proxy at them (with a canary, one slot
  first, watched on its own: `canary_steps`), watches the live release on
  probation, puts the previous routes back if anything fails, and lets the old
  routes drain. One script, so one Pulumi step: a failed check means
  the step failed and was not recorded (pulumi-go-provider v1.3.0
  infer/resource.go:1271-1292 stores nothing for a failed create), and the next
  `pulumi up` runs the whole of it again.
- `migration_script`: the one-shot migration in a container of the new image.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from components.edge.caddyfile import ACME_CA_ROOT, CADDYFILE, LIVE_DIR, UPSTREAM_HEADER, VERIFY_DIR
from components.host.engine import live_restore_note

_PREV_CADDYFILE = f"{CADDYFILE}.prev"
_NEXT_CADDYFILE = f"{CADDYFILE}.next"
_PREV_LIVE = f"{LIVE_DIR}.prev"


@dataclass(frozen=True)
class Verification:
    """Ask the proxy for `path` on its private port, whose slots name the new containers only, until one of
    them answers 200 (and, when `version` is set, its body holds `"version": "<version>"`)."""

    port: int
    path: str
    version: str | None
    attempts: int
    interval_s: int


def container_exec(container: str, *argv: str) -> str:
    return shlex.join(["docker", "exec", container, *argv])


def _reload(proxy: str) -> str:
    """`caddy reload` at the admin address the new Caddyfile names (its socket); a proxy that still runs the
    image's default Caddyfile (its first start, before the switch wrote one) has the default address instead."""
    reload = ["caddy", "reload", "--config", CADDYFILE, "--adapter", "caddyfile"]
    return f"{{ {container_exec(proxy, *reload)} || {container_exec(proxy, *reload, '--address', 'localhost:2019')}; }}"


def _check_names(upstreams: list[str]) -> None:
    if not upstreams:
        raise ValueError("the switch needs at least one web container")
    for name in upstreams:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"upstream {name!r} is not a container name")


def health_gate(upstreams: list[str], wait_s: int) -> list[str]:
    """Every container is running and Docker reports it healthy now; one still starting gets `wait_s`.

    Whatever the engine did before (a container adopted from an earlier failed update,
    one restarted since), the proxy is never pointed at a container that is not healthy.
    """
    _check_names(upstreams)
    fmt = "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}"
    return [
        f"for c in {' '.join(shlex.quote(u) for u in upstreams)}; do",
        "  waited=0",
        "  while :; do",
        f'    state="$(docker inspect --format {shlex.quote(fmt)} "$c" 2>&1)" || state="missing: $state"',
        '    case "$state" in',
        "      running/healthy) break ;;",
        f'      running/starting) if [ "$waited" -ge {wait_s} ]; then break; fi; sleep 1; waited=$((waited+1)) ;;',
        "      *) break ;;",
        "    esac",
        "  done",
        '  if [ "$state" != running/healthy ]; then',
        '    echo "refusing to route to $c: Docker reports it $state, not running/healthy; the proxy still routes to the previous release" >&2',
        "    exit 1",
        "  fi",
        "done",
    ]


def service_gate(services: list[str], wait_s: int) -> list[str]:
    """On a cluster: every task each service wants is running (a task with a health check is running only once
    it is healthy: moby daemon/cluster/executor/container/controller.go Start, which waits for "healthy"); a
    service still converging gets `wait_s`. As for containers, the proxy is never pointed at a release that is
    not whole and healthy now, whatever the engine did before."""
    _check_names(services)
    wanted = shlex.quote("{{.Spec.Mode.Replicated.Replicas}}")
    states = shlex.quote("{{.CurrentState}}")
    return [
        f"for s in {' '.join(shlex.quote(u) for u in dict.fromkeys(services))}; do",
        "  waited=0",
        "  while :; do",
        f'    want="$(docker service inspect --format {wanted} "$s" 2>&1)" || want="missing: $want"',
        f'    running="$(docker service ps --filter desired-state=running --format {states} "$s" 2>/dev/null | grep -c "^Running" || true)"',
        '    if [ "$running" = "$want" ]; then break; fi',
        f'    if [ "$waited" -ge {wait_s} ]; then break; fi',
        "    sleep 1; waited=$((waited+1))",
        "  done",
        '  if [ "$running" != "$want" ]; then',
        '    echo "refusing to route to $s: $running of its ${want} tasks run healthy; the proxy still routes to the previous release" >&2',
        """    docker service ps --no-trunc --format '    {{.Name}} on {{.Node}}: {{.CurrentState}} {{.Error}}' "$s" >&2 || true""",
        "    exit 1",
        "  fi",
        "done",
    ]


def _rename_each(directory: str) -> str:
    """Shell: slot files 0, 1, ... of `directory` to the names in "$@", each by an atomic rename; leaves $n at the
    first slot past them."""
    return f'n=0 && for name in "$@"; do printf %s "$name" > {directory}/$n.next && mv {directory}/$n.next {directory}/$n; n=$((n+1)); done'


def _prune_from_n(directory: str) -> str:
    """Shell: remove the slot files of `directory` from $n on (slots beyond the release's)."""
    return f"while [ -e {directory}/$n ]; do rm -f {directory}/$n; n=$((n+1)); done"


def write_slots(proxy: str, names: list[str], keep_previous: str = "''") -> str:
    """Point slots 0, 1, ... at `names`, each by an atomic rename (Caddy reads the slot files per request), after
    saving the slots as they were to live.prev; unless `keep_previous` (a shell word) expands to something, as
    after a canary, whose live.prev already holds the slots from before it."""
    _check_names(names)
    script = (
        f'keep="$1"; shift; mkdir -p {LIVE_DIR} && {{ [ -n "$keep" ] || {{ rm -rf {_PREV_LIVE} && cp -a {LIVE_DIR} {_PREV_LIVE}; }}; }} && '
        + _rename_each(LIVE_DIR)
    )
    return f"{container_exec(proxy, 'sh', '-c', script, 'sh')} {keep_previous} {shlex.join(names)}"


def write_verify_slots(proxy: str, names: list[str]) -> str:
    """Point the verify listener's slots (components/edge/caddyfile.py VERIFY_DIR) at `names`, each by an atomic
    rename, and drop any beyond them. No public slot changes: nothing here needs putting back."""
    _check_names(names)
    script = f"mkdir -p {VERIFY_DIR} && {_rename_each(VERIFY_DIR)} && {_prune_from_n(VERIFY_DIR)}"
    return f"{container_exec(proxy, 'sh', '-c', script, 'sh')} {shlex.join(names)}"


def switch_steps(proxy: str, upstreams: list[str]) -> list[str]:
    """Point the proxy at `upstreams` (one container name per slot file) and $new_config, the Caddyfile.

    Only when the Caddyfile differs from the proxy's (its own settings changed) is it
    validated first and installed with one `caddy reload`; a release itself only
    rewrites the slot files, each by an atomic rename, which Caddy reads per request.
    What it replaces is kept (live.prev, Caddyfile.prev) for the check to put back; after a
    canary ($canaried set) live.prev already holds the slots as they were before it, and stays.
    """
    _check_names(upstreams)
    prune = f"n={len(upstreams)}; {_prune_from_n(LIVE_DIR)}"
    install = f"if [ -f {CADDYFILE} ]; then cp {CADDYFILE} {_PREV_CADDYFILE}; fi && mv {_NEXT_CADDYFILE} {CADDYFILE}"
    current = container_exec(proxy, "cat", CADDYFILE)
    return [
        f'current_config="$({current} 2>/dev/null || true)"',
        container_exec(proxy, "rm", "-f", _PREV_CADDYFILE),
        'if [ "$new_config" != "$current_config" ]; then',
        "  " + "printf '%s\\n' \"$new_config\" | " + shlex.join(["docker", "exec", "-i", proxy, "sh", "-c", f"cat > {_NEXT_CADDYFILE}"]),
        "  " + container_exec(proxy, "caddy", "validate", "--config", _NEXT_CADDYFILE, "--adapter", "caddyfile"),
        "fi",
        write_slots(proxy, upstreams, keep_previous='"${canaried:-}"'),
        f"echo {shlex.quote('proxy now routes to ' + ' '.join(upstreams))}",
        'if [ "$new_config" != "$current_config" ]; then',
        "  " + container_exec(proxy, "sh", "-c", install),
        "  " + _reload(proxy),
        "  echo 'the proxy settings changed: Caddy reloaded its configuration'",
        "fi",
        container_exec(proxy, "sh", "-c", prune),
    ]


@dataclass(frozen=True)
class Canary:
    """Before the full switch, the first slot alone routes to the release's first web container for `seconds`,
    on probation of its own: its containers watched as on probation, and the 5xx among the answers that
    container gave, judged every CHECK_EVERY_TICKS ticks. The other slots keep the previous release, so a bad
    release answers 1 in `slots` requests until it is taken back."""

    seconds: int
    max_error_rate: int
    CHECK_EVERY_TICKS = 1  # every 0.2 s: the canary is short, and its failures cost less the sooner they are seen


def canary_steps(proxy: str, upstreams: list[str], canary: Canary, watched: list[str]) -> list[str]:
    """Slot 0 to the first new web container (the release already verified), watched; on a failure, revert and
    fail. Only when the proxy's settings stay as they are: a new Caddyfile (another number of slots, a domain)
    is installed with every slot at once by switch_steps, so that release goes live without a canary."""
    _check_names(upstreams)
    first = upstreams[0]
    others = len(upstreams) - 1
    watch = Probation(canary.seconds, canary.max_error_rate)
    steps = [
        write_slots(proxy, [first]),  # slot 0 only; the others keep the previous release
        "switched=yes",
        f"echo {shlex.quote(f'canary: the proxy routes 1 of {len(upstreams)} slots to {first}; {others} still to the previous release')}",
        'went_live="$(date +%s)"',
        *probation_steps(proxy, watched, watch, phase="canary", answers_of=first, check_every_ticks=Canary.CHECK_EVERY_TICKS),
        "canaried=yes",
    ]
    current = container_exec(proxy, "cat", CADDYFILE)
    return [
        f'if [ "$new_config" = "$({current} 2>/dev/null || true)" ]; then',
        *("  " + line for line in steps),
        "else",
        "  echo 'canary: none, the proxy settings change with this release: every slot switches at once'",
        "fi",
    ]


def verify_first_steps(proxy: str, verification: Verification, upstreams: list[str]) -> list[str]:
    """The verify listener's slots to the new release; then, while the proxy's settings stay as they are, the
    check through them, before any public slot changes (a release that fails it never served the public, and the
    proxy's own probe of the public slots never meets it). A new Caddyfile (the first release, other settings)
    is installed with the public switch, and that release is checked after it (switch_steps)."""
    current = container_exec(proxy, "cat", CADDYFILE)
    return [
        write_verify_slots(proxy, upstreams),
        f'if [ "$new_config" = "$({current} 2>/dev/null || true)" ]; then',
        *("  " + line for line in verify_steps(proxy, verification, upstreams)),
        "  verified_first=yes",
        "else",
        "  echo 'the proxy settings change with this release: it is checked through the proxy once they are installed'",
        "fi",
    ]


def restore_steps(proxy: str) -> list[str]:
    """Put back the upstreams (and the Caddyfile, if this update changed it) the switch replaced."""
    restore_slots = container_exec(
        proxy, "sh", "-c",
        f'if [ -d {_PREV_LIVE} ]; then '
        # slots the switch added (more replicas now) go; the ones it replaced come back, each by a rename
        f'for f in {LIVE_DIR}/*; do if [ ! -e "{_PREV_LIVE}/${{f##*/}}" ]; then rm -f "$f"; fi; done; '
        f'for f in {_PREV_LIVE}/*; do if [ -e "$f" ]; then mv "$f" "{LIVE_DIR}/${{f##*/}}"; fi; done; fi',
    )  # fmt: skip
    config_changed = container_exec(proxy, "test", "-f", _PREV_CADDYFILE)
    restore_config = container_exec(proxy, "mv", _PREV_CADDYFILE, CADDYFILE)
    return [
        f"if {restore_slots}; then echo 'the proxy routes to the previous release again' >&2; fi",
        f"if {config_changed}; then {restore_config} && {_reload(proxy)} && echo 'and has its previous configuration back' >&2; fi",
    ]


def verify_steps(proxy: str, check: Verification, upstreams: list[str]) -> list[str]:
    """Ask the proxy's verify listener until one of `upstreams` (the new release, in its slots:
    write_verify_slots) answers 200, with the new version when the check wants one; if none does, revert
    (the public slots, when the switch came first) and fail.

    Which container answered is read from the header the proxy's verify listener adds to every answer
    (components/edge/caddyfile.py UPSTREAM_HEADER), so the check needs nothing of the app but a 200: no JSON, no
    version field. The old containers are still running: Pulumi deletes nothing before this succeeds.
    """
    url = f"http://127.0.0.1:{check.port}{check.path}"
    # -S: the status line and the headers go to stderr, read with the body (2>&1), so the check sees which
    # upstream answered and a failure shows what the proxy said; the timeout outlasts the proxy's own retries
    # (lb_try_duration 5s), so its 502 arrives
    fetch = container_exec(proxy, "wget", "-q", "-S", "-T", "10", "-O", "-", url)
    names = "|".join(n.replace(".", "\\.") for n in upstreams)  # container names: letters, digits, '_', '.', '-'
    answered = f"^ *{UPSTREAM_HEADER}: ({names}):[0-9]+[[:space:]]*$"
    test = f"printf '%s\\n' \"$body\" | grep -Eiq {shlex.quote(answered)}"
    if check.version is not None:
        pattern = '"version": ?"' + re.escape(check.version) + '"'
        test += f" && printf '%s' \"$body\" | grep -Eq {shlex.quote(pattern)}"
    want = "200 from a new container" + (f" with version {check.version}" if check.version is not None else "")
    ask = [
        f"  if body=$({fetch} 2>&1) && {test}; then",
        '    echo "verified through the proxy on attempt $attempt: $body"; verified=yes; break',
        "  fi",
    ]
    return [
        "body=''",
        "verified=''",
        f"for attempt in $(seq 1 {check.attempts}); do",
        *ask,
        f"  sleep {check.interval_s}",
        "done",
        'if [ -z "$verified" ]; then',
        f'  echo "verification failed: {url} through the proxy did not answer {want} after {check.attempts} attempts; last response: ${{body:-none within 10s}}" >&2',
        '  if [ -z "${switched:-}" ]; then echo "the proxy still routes to the previous release: no public slot named the new one" >&2; fi',
        "  revert",
        "  exit 1",
        "fi",
    ]


@dataclass(frozen=True)
class Probation:
    """Watch the live release for `seconds`: any of its containers dying, restarting or turning
    unhealthy, or more than `max_error_rate` percent 5xx among the proxy's answers over the last
    `window_s` seconds (once at least `min_requests` were answered), puts the previous release back."""

    seconds: int
    max_error_rate: int
    window_s: int = 10
    min_requests: int = 10


# How many of the proxy's last log lines a judgement of the error rate reads. `docker logs --tail N --since T`
# seeks back N lines from the end and then drops what is older than T (moby daemon/logger/loggerutils/
# logfile.go, readLogsLocked -> tailFiles, then forwarder.Do); with no --tail it decodes the whole log from
# its first line, which on a proxy that has served for days takes seconds per judgement, and every one of
# those seconds a bad release keeps answering.
LOG_LINES_JUDGED = 2000

# What ends a probation at once: Docker's events for the new containers (`health_status` matches
# "health_status: <status>", moby daemon/events/filter.go), read as they come.
_BAD_EVENTS = "^(die|oom|kill|restart|health_status: unhealthy) "


def probation_steps(
    proxy: str | None,
    watched: list[str],
    probation: Probation,
    on_cluster: bool = False,
    *,
    phase: str = "probation",
    answers_of: str | None = None,
    check_every_ticks: int = 5,
) -> list[str]:
    """Watch the new release's containers (on a cluster, its services' tasks) from the moment it went live
    (and, behind a proxy, its answers); on a failure, revert, explain, fail.

    `answers_of` (a canary): only the answers that upstream gave are counted, told by the access log's
    `upstream` field (components/edge/caddyfile.py). The error rate is judged every `check_every_ticks`
    ticks of 0.2 s (each judgement reads the proxy's log of the window, at most its last LOG_LINES_JUDGED lines)."""
    _check_names(watched)
    watched = list(dict.fromkeys(watched))
    names = " ".join(shlex.quote(u) for u in watched)
    events = shlex.join(
        [
            "docker", "events", "--since", "$went_live", "--format", "{{.Action}} {{.Actor.Attributes.name}}",
            "--filter", "type=container", *[a for u in watched for a in ("--filter", f"container={u}")],
            *[a for e in ("die", "oom", "kill", "restart", "health_status") for a in ("--filter", f"event={e}")],
        ]
    ).replace("'$went_live'", '"$went_live"')  # fmt: skip
    p = probation
    error_rate: list[str] = []
    if proxy is not None:
        of = ""
        if answers_of is not None:
            _check_names([answers_of])
            of = ' && /"upstream":"' + answers_of.replace(".", "\\.") + ":/"
        count = (
            f'docker logs --since "$since" --tail {LOG_LINES_JUDGED} {shlex.quote(proxy)} 2>/dev/null | '
            f"""awk '/"logger":"http.log.access/{of} {{ n++; if ($0 ~ /"status":5[0-9][0-9]/) e++ }} END {{ printf "%d %d", n, e }}'"""
        )
        error_rate = [
            "  ticks=$((ticks+1))",
            f"  if [ $((ticks % {check_every_ticks})) -eq 0 ]; then",
            f'    since=$(( $(date +%s) - {p.window_s} )); if [ "$since" -lt "$went_live" ]; then since="$went_live"; fi',
            f'    counts="$({count})"',
            '    total="${counts% *}"; errors="${counts#* }"',
            f'    if [ "$total" -ge {p.min_requests} ] && [ $((errors * 100)) -gt $((total * {p.max_error_rate})) ]; then',
            f'      verdict="{"the proxy answered" if answers_of is None else answers_of + " answered"} $errors of its last $total requests with a 5xx in {p.window_s}s (more than {p.max_error_rate}%)"; break',
            "    fi",
            "  fi",
        ]
    answers = ""
    if proxy is not None:
        answers = f" and the answers of {answers_of} through the proxy" if answers_of is not None else " and the answers through the proxy"
    watcher = [
        'probation_events="$(mktemp)"',
        f'{events} > "$probation_events" 2>&1 &',
        "probation_watcher=$!",
        """trap 'kill "$probation_watcher" 2>/dev/null || true; rm -f "$probation_events"' EXIT""",
    ]
    container_events = [
        f"  if event=$(grep -m1 -E '{_BAD_EVENTS}' \"$probation_events\"); then",
        '    verdict="container ${event##* }: ${event% *}"; break',
        "  fi",
    ]
    # `docker service logs` can hang on a task of a lost node (moby#38640): bounded, after the revert
    logs = "timeout 10 docker service logs --tail 15" if on_cluster else "docker logs --tail 15"
    return [
        f"echo '{phase}: watching {' '.join(watched)}{answers} for {p.seconds}s'",
        *([] if on_cluster else watcher),
        "verdict=''",
        "ticks=0",
        # whole seconds: went_live may be up to 1 s later than the moment it names, so the loop runs until the
        # clock is past went_live + seconds: probation lasts at least `seconds`, at most one more
        f'while [ "$(date +%s)" -le $((went_live + {p.seconds})) ]; do',
        *(cluster_watch_loop(watched) if on_cluster else container_events),
        *error_rate,
        "  sleep 0.2",
        "done",
        'if [ -n "$verdict" ]; then',
        f'  echo "{phase} failed $(( $(date +%s) - went_live ))s after going live: $verdict" >&2',
        "  revert",
        f"  for c in {names}; do",
        '    echo "--- the last lines of the log of $c:" >&2',
        f"""    {logs} "$c" 2>&1 | sed 's/^/    /' >&2 || true""",
        "  done",
        "  exit 1",
        "fi",
        f"echo '{phase} passed: {p.seconds}s without a crash, a restart, an unhealthy container{' or too many 5xx' if proxy is not None else ''}'",
        *([] if on_cluster else ['kill "$probation_watcher" 2>/dev/null || true']),
    ]


def _shutdown_tasks(services: list[str]) -> str:
    _check_names(services)
    return "docker service ps --no-trunc --filter desired-state=shutdown " + " ".join(shlex.quote(u) for u in dict.fromkeys(services))


def cluster_went_live(services: list[str]) -> list[str]:
    """On a cluster, just before the release goes live: note the services' tasks stopped so far (while they
    converged), so that probation holds against the release only the tasks stopped from then on."""
    return [
        'stopped_before="$(mktemp)"',
        """trap 'rm -f "$stopped_before"' EXIT""",
        f'{_shutdown_tasks(services)} -q > "$stopped_before" 2>/dev/null || true',
    ]


def cluster_watch_loop(services: list[str]) -> list[str]:
    """On a cluster, what probation watches instead of one engine's container events (the manager's events
    show no task of another node): the services' tasks, about five times a second. A task the cluster stopped
    after the release went live (it exited, or turned unhealthy and was killed, or its node was lost: Swarm
    sets its desired state to shutdown and starts another) fails the probation. A `docker` that fails (the
    manager slow to answer) is no verdict: its error goes nowhere."""
    fmt = shlex.quote("{{.ID}} {{.Name}} on {{.Node}}: {{.CurrentState}} {{.Error}}")
    return [
        f'  if stopped=$({_shutdown_tasks(services)} --format {fmt} 2>/dev/null | grep -v -F -f "$stopped_before" | grep -m1 .); then',
        '    verdict="task ${stopped#* }"; break',
        "  fi",
    ]


@dataclass(frozen=True)
class Handover:
    """A single-instance role (a bot, a scheduler): its one new container, only created so far, replaces the
    running one of the same app, stack and role; the old one stops before the new one starts."""

    app: str
    stack: str
    role: str
    container: str
    stop_timeout_s: int
    wait_s: int


_HEALTH_FORMAT = "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}"


def handover_steps(i: int, h: Handover) -> list[str]:
    """Stop the role's running container, start the new one and wait (polling five times a second) until its
    probe passes; on failure, revert (this handover included) and fail. The gap is as short as the new
    container's start and first passing probe: it is already pulled and created."""
    _check_names([h.container])
    new = shlex.quote(h.container)
    running = (
        f"docker ps -q --no-trunc --filter label=cutover.app={shlex.quote(h.app)} --filter label=cutover.stack={shlex.quote(h.stack)} "
        f"--filter label=cutover.role={shlex.quote(h.role)} --filter status=running --filter status=restarting"
    )
    id_format = shlex.quote("{{.Id}}")
    return [
        f'new_id="$(docker inspect --format {id_format} {new})"',
        f'old_{i}="$({running} | grep -v "^$new_id$" || true)"',
        f'echo "{h.role}: one at a time: stopping ${{old_{i}:-nothing}}, then starting {h.container}"',
        f"handed_{i}=yes",
        f'for o in $old_{i}; do docker stop --time {h.stop_timeout_s} "$o" >/dev/null; done',
        f"docker start {new} >/dev/null",
        "ticks=0",
        "while :; do",
        f'  state="$(docker inspect --format {shlex.quote(_HEALTH_FORMAT)} {new} 2>&1)" || state="missing: $state"',
        '  case "$state" in',
        "    running/healthy) break ;;",
        f'    running/starting) if [ "$ticks" -ge {h.wait_s * 5} ]; then break; fi; sleep 0.2; ticks=$((ticks+1)) ;;',
        "    *) break ;;",
        "  esac",
        "done",
        'if [ "$state" != running/healthy ]; then',
        f'  echo "{h.role}: {h.container} is $state, not running/healthy, after {h.wait_s}s" >&2',
        f"  docker logs --tail 15 {new} 2>&1 | sed 's/^/    /' >&2 || true",
        "  revert",
        "  exit 1",
        "fi",
        f"echo '{h.role}: {h.container} is healthy'",
    ]


def revert_function(proxy: str | None, handovers: list[Handover]) -> list[str]:
    """`revert`: put back what this script changed so far, the proxy's routes and each handover."""
    lines = ["revert() {"]
    if proxy is not None:
        lines += ['  if [ -n "$switched" ]; then', *("    " + line for line in restore_steps(proxy)), "  fi"]
    for i, h in reversed(list(enumerate(handovers))):
        lines += [
            f'  if [ -n "$handed_{i}" ]; then',
            f"    docker stop --time {h.stop_timeout_s} {shlex.quote(h.container)} >/dev/null 2>&1 || true",
            f'    for o in $old_{i}; do docker start "$o" >/dev/null; done',
            f"    echo '{h.role}: its previous container runs again' >&2",
            "  fi",
        ]
    return [*lines, "  :", "}"]


def go_live_script(
    proxy: str | None,
    upstreams: list[str],
    *,
    drain_s: int,
    wait_healthy_s: int,
    verification: Verification | None,
    probation: Probation | None = None,
    handovers: list[Handover] | None = None,
    watched: list[str] | None = None,
    acme_ca_root: str | None = None,
    on_cluster: bool = False,
    canary: Canary | None = None,
) -> str:
    """Health gate, single-instance handovers, verification through the verify listener's own slots
    (verify_first_steps: before the switch, unless the proxy's settings change, then after it), switch,
    probation (reverting all of it on a failure), then the old routes' drain. Without a proxy (no web
    role) nothing is switched.

    `upstreams` are the new web containers; `watched`, every new container (the web ones when not given):
    those not handed over are health-gated, all are watched on probation. `on_cluster`: they are Swarm
    services (components/cluster/workload.py), gated and watched by their tasks. `canary`: one slot goes
    first (canary_steps), with two web containers or more, on a host."""
    handovers = handovers or []
    watched = list(watched) if watched is not None else list(upstreams)
    if proxy is not None:
        _check_names(upstreams)
    lines = ["set -eu"]
    if proxy is not None:
        lines.append('new_config="$(cat)"')  # the Caddyfile, on stdin
    lines += ["switched=''", "canaried=''", "verified_first=''", *(f"handed_{i}=''; old_{i}=''" for i in range(len(handovers)))]
    lines += revert_function(proxy, handovers)
    handed = {h.container for h in handovers}
    gated = [*upstreams, *(w for w in watched if w not in upstreams and w not in handed)]
    if gated:
        lines += service_gate(gated, wait_healthy_s) if on_cluster else health_gate(gated, wait_healthy_s)
    for i, h in enumerate(handovers):
        lines += handover_steps(i, h)
    if proxy is not None and acme_ca_root is not None:
        # a public certificate, not a secret: written before the Caddyfile that names it is validated
        write = f"cat > {ACME_CA_ROOT}.next && mv {ACME_CA_ROOT}.next {ACME_CA_ROOT}"
        lines.append(
            f"printf '%s\\n' {shlex.quote(acme_ca_root.strip())} | " + shlex.join(["docker", "exec", "-i", proxy, "sh", "-c", write])
        )
    if proxy is not None and verification is not None:
        lines += verify_first_steps(proxy, verification, upstreams)
    if proxy is not None and canary is not None and canary.seconds > 0:
        if len(upstreams) < 2:
            lines.append("echo 'canary: none, with one web container one slot is all the traffic'")
        elif on_cluster:
            lines.append("echo 'canary: none on a cluster: every slot names the one web service'")
        else:
            lines += canary_steps(proxy, upstreams, canary, watched)
    if proxy is not None:
        lines += [*switch_steps(proxy, upstreams), "switched=yes"]
    if on_cluster and probation is not None and probation.seconds > 0 and watched:
        lines += cluster_went_live(watched)
    lines.append('went_live="$(date +%s)"')
    if proxy is not None and verification is not None:
        lines += ['if [ -z "$verified_first" ]; then', *("  " + line for line in verify_steps(proxy, verification, upstreams)), "fi"]
    if probation is not None and probation.seconds > 0 and watched:
        lines += probation_steps(proxy, watched, probation, on_cluster)
    if proxy is not None:
        lines += [f"echo 'draining old routes for {drain_s}s'", f"sleep {drain_s}"]
    lines.append(live_restore_note())
    return "\n".join(lines)
