#!/usr/bin/env bash
# What an engine restart costs a published port, with and without Docker's live-restore, side by side in
# one run: `CUTOVER_E2E_RESTART_DOCKERD=1 tests/e2e/live_restore.sh` (it restarts this machine's dockerd
# six times, so only where every container on it may stop; it starts dockerd as it found it at the end).
#
# For each mode, a container publishing port 18080 answers GET / while dockerd is stopped (SIGTERM), left
# down 3 s and started again; a probe asks every 0.1 s for 12 s over loopback (127.0.0.1, which Docker
# serves through its userland proxy) and over docker0's address (through iptables' DNAT, the path of a
# request from another machine), each with a 1 s timeout, and counts the answers that were not 200.
set -euo pipefail
[[ "${CUTOVER_E2E_RESTART_DOCKERD:-}" == 1 ]] || { echo "live_restore.sh restarts dockerd: set CUTOVER_E2E_RESTART_DOCKERD=1 where every container may stop" >&2; exit 2; }
image="${IMAGE:-python:3.11-slim}"
log="${TMPDIR:-/tmp}/live-restore-dockerd.log"
original=()
if pid="$(pgrep -x dockerd)"; then mapfile -d '' -t original <"/proc/$pid/cmdline"; fi
((${#original[@]})) || original=(dockerd)

start_dockerd() {
  if pid="$(pgrep -x dockerd)"; then kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; fi
  (nohup "$@" >>"$log" 2>&1 &)
  until docker info >/dev/null 2>&1; do sleep 0.2; done
}
trap 'start_dockerd "${original[@]}"' EXIT

echo "| mode | container kept running | failed over loopback | failed over docker0 |"
echo "|---|---|---|---|"
for mode in "off" "live-restore" "live-restore, no userland proxy"; do
  case "$mode" in
    off) args=(dockerd) ;;
    live-restore) args=(dockerd --live-restore) ;;
    *) args=(dockerd --live-restore --userland-proxy=false) ;;
  esac
  start_dockerd "${args[@]}"
  docker rm -f cutover-live-restore >/dev/null 2>&1 || true
  docker run -d --name cutover-live-restore --restart unless-stopped -p 18080:8000 "$image" python -m http.server 8000 >/dev/null
  until curl -fs -o /dev/null -m 1 http://127.0.0.1:18080/; do sleep 0.2; done
  bridge="$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)"
  answers="$(mktemp)"
  ( for _ in $(seq 1 120); do
      echo "$(curl -s -o /dev/null -m 1 -w '%{http_code}' http://127.0.0.1:18080/ || true) $(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$bridge:18080/" || true)"
      sleep 0.1
    done ) >"$answers" &
  probe=$!
  sleep 1
  pid="$(pgrep -x dockerd)"; kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  kept=$(pgrep -f 'http.server 8000' >/dev/null && echo yes || echo no)
  sleep 3
  (nohup "${args[@]}" >>"$log" 2>&1 &)
  until docker info >/dev/null 2>&1; do sleep 0.2; done
  wait "$probe"
  echo "| $mode | $kept | $(awk '$1 != "200"' "$answers" | wc -l) of $(wc -l <"$answers") | $(awk '$2 != "200"' "$answers" | wc -l) of $(wc -l <"$answers") |"
  rm -f "$answers"
  docker rm -f cutover-live-restore >/dev/null
done
