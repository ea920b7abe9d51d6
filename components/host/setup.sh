#!/bin/sh
# Prepares a fresh Debian or Ubuntu server for cutover, as root: `make setup HOST=ssh://root@server`
# sends this script over ssh (components/ops/setup.py), which checks its arguments first: the deploy
# user's name, the public key it logs in with, and the engine's options as daemon.json's JSON.
# Safe to run again: each step checks first and says what it found.
#
#   1. /etc/docker/daemon.json with the engine options cutover expects: live-restore (containers keep
#      running while dockerd restarts: README "Keeping containers up while the engine restarts") and
#      log rotation as the default of every container (cutover sets the same on its own);
#   2. Docker from the distribution's packages (docker.io), started and enabled;
#   3. the deploy user, in the docker group, logging in with the key;
#   4. what to pin: the server's ed25519 host key, printed last as `host-key: <type> <key>`.
set -eu

user="${1:?the name of the deploy user}"
key="${2:?the public key of the deploy user}"
options="${3:?the engine options, as JSON}"
say() { printf 'setup: %s\n' "$*"; }
fail() {
    printf 'setup: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root on the server: log in as root, or as a user with passwordless sudo"
[ -r /etc/os-release ] || fail "no /etc/os-release: expected Debian or Ubuntu"
# shellcheck disable=SC1091 # the server's own file
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
*" debian "* | *" ubuntu "*) say "${PRETTY_NAME:-$ID}" ;;
*) fail "${PRETTY_NAME:-${ID:-an unknown system}} is not Debian or Ubuntu (expected ID or ID_LIKE debian or ubuntu in /etc/os-release)" ;;
esac

# 1. the engine's options, before the engine starts, so its first start has them
config=/etc/docker/daemon.json
if [ -e "$config" ]; then
    # an existing file is the team's: kept as it is, checked for the two settings
    grep -Eq '"live-restore"[[:space:]]*:[[:space:]]*true' "$config" ||
        fail "$config exists without \"live-restore\": true; add what it lacks of $options, then run setup again"
    grep -q '"max-size"' "$config" ||
        fail "$config exists without log rotation (log-opts max-size); add what it lacks of $options, then run setup again"
    say "$config already sets live-restore and log rotation"
else
    mkdir -p /etc/docker
    printf '%s\n' "$options" >"$config"
    say "wrote $config: $options"
fi

# 2. Docker from the distribution
if command -v dockerd >/dev/null 2>&1; then
    say "Docker is installed: $(dockerd --version)"
else
    say "installing docker.io from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl enable --now docker >/dev/null
    else
        # no systemd (a container, WSL): dockerd started here, in the background; nothing starts it at boot
        # (the package's /etc/init.d/docker raises the open-files limit first, which a container may refuse)
        setsid dockerd >>/var/log/docker.log 2>&1 </dev/null &
        say "no systemd here: started dockerd in the background (log: /var/log/docker.log); it will not start again at boot"
    fi
fi
tries=0
until docker info >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || fail "dockerd does not answer 60 s after its start: see journalctl -u docker or /var/log/docker.log"
    sleep 1
done
if [ "$(docker info --format '{{.LiveRestoreEnabled}}')" != true ]; then
    # an engine that ran before daemon.json said so: a reload applies live-restore, no container stops
    # (moby daemon/reload.go reloadLiveRestore)
    kill -HUP "$(cat /var/run/docker.pid)"
    sleep 1
    [ "$(docker info --format '{{.LiveRestoreEnabled}}')" = true ] || fail "dockerd did not take live-restore from $config"
fi
say "engine $(docker version --format '{{.Server.Version}}'), live-restore $(docker info --format '{{.LiveRestoreEnabled}}'), logs $(docker info --format '{{.LoggingDriver}}')"

# 3. the deploy user
if id "$user" >/dev/null 2>&1; then
    say "user $user exists"
else
    useradd --create-home --shell /bin/bash "$user"
    say "created user $user"
fi
usermod -a -G docker "$user"
home="$(getent passwd "$user" | cut -d: -f6)"
install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.ssh"
keys="$home/.ssh/authorized_keys"
touch "$keys"
if grep -qxF "$key" "$keys"; then
    say "$user already logs in with that key"
else
    printf '%s\n' "$key" >>"$keys"
    say "$user logs in with the key (${key%% *})"
fi
chown "$user" "$keys"
chmod 0600 "$keys"

# 4. what to pin
[ -r /etc/ssh/ssh_host_ed25519_key.pub ] || fail "no /etc/ssh/ssh_host_ed25519_key.pub: expected OpenSSH's ed25519 host key"
printf 'host-key: %s\n' "$(cut -d' ' -f1-2 /etc/ssh/ssh_host_ed25519_key.pub)"
