"""Day-to-day commands on a stack's server: status, logs, a command in a container, restart/stop/start of a
role, the database's dumps, a restore.

    python -m components.ops status  --stack prod      (make status STACK=prod)
    python -m components.ops logs    --stack prod [--role worker] [--follow] [--since 10m] [--lines 50] [--grep text]
    python -m components.ops exec    --stack prod [--role web] [--new] --cmd 'bin/rails console'
    python -m components.ops restart --stack prod [--role worker]        (stop, start: the same; stop web: --confirm)
    python -m components.ops backups --stack prod
    python -m components.ops restore --stack prod --backup <name>
    python -m components.ops.setup --host ssh://root@server [--key ~/.ssh/id_ed25519.pub]   (make setup HOST=...)

The stack's config comes from `pulumi config --json --show-secrets` and is read with the model
the program uses (components/config/load.py); its release from `pulumi stack output`. The server is
reached the one way the docker provider reaches it: the system ssh with the same options
(components/host/ssh.py) and the deploy key in the ssh agent (put there as the program does); a
local (unix://) stack runs docker here. The scripts run on the server are pure functions of the
config; so are the reports made from what they print.

- remote.py: the stack's config and release through the pulumi CLI, its server over ssh (or here);
- status.py, logs.py, containers.py (exec, restart/stop/start), backups.py: each command's script and report;
- cli.py: the command line (`python -m components.ops`, __main__.py);
- setup.py: a fresh server made ready for its first deploy (no stack yet: it runs components/host/setup.sh
  over ssh as root and prints the stack's host lines).

May import from every other package: it runs outside `pulumi up` and reads what the program declared.
"""
