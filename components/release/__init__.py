"""One release, in the order `pulumi up` runs it (__main__.py reads as this sequence).

- plan.py: which release this update deploys (build, tag, rollback, promotion), read before anything runs;
- image.py: AppImage, built and pushed, or a known digest reused;
- containers.py: what web's and each role's containers, and the migration, are asked for;
- web.py: WebRelease (pull, backup, migrate, health-gated web containers); roles.py: RoleRelease;
- go_live.py: the go-live script (health gate, switch, verification, probation, revert); switch.py runs it;
- records.py: the release records the stack exports, and what a rollback means;
- housekeeping.py: the images older releases no longer need leave the server.

Imports from every package above it in components/: config, host, cluster, edge, accessories.
"""
