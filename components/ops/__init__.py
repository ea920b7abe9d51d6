"""Day-two commands on a stack's server, outside `pulumi up`: `python -m components.ops` (make status, ...).

- commands.py: status, logs, exec, restart/stop/start of a role, the database's dumps and a restore.

Reads the stack's config and outputs through the pulumi CLI; may import from every other package.
"""
