"""cutover's components, grouped by what they are about. Each package's docstring says what lives there.

    config/       the stack's config: the model, its readers and checks, README's config table
    host/         the Docker host: how the program reaches it, what every container on it carries
    cluster/      where roles run on a Swarm: services instead of containers
    edge/         the proxy: Caddy, its Caddyfile, the ports holder and the keeper
    accessories/  PostgreSQL and Redis beside the app, and the database's dumps
    release/      one release: which image, its containers per role, go-live, records, housekeeping
    github/       the GitHub side: the pipeline's settings, workflow files, dependency updates, notifications
    ops/          day-two commands on a stack's server (make status, logs, exec, restore), outside `pulumi up`

A package imports only from those above it in this list (and from itself): config from nothing of
the program, release from everything before it, ops from all. tests/test_layout.py holds them to it.
Modules named for a thing declare it (edge/proxy.py: EdgeProxy); the pure ones beside them compute
what it is asked for (edge/containers.py, edge/caddyfile.py), so tests read it without Pulumi.
"""
