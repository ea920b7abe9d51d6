"""The Docker host a stack deploys to: how the program reaches it, and what every container on it carries.

- docker_host.py: DockerHost, the docker provider and the command runner for one machine;
- ssh.py: reaching an ssh:// host with no file written (pinned host key, the deploy key in the agent);
- containers.py: the labels and hardening of every container; engine.py: what the engine is asked;
- setup.sh: what `make setup` runs on a fresh server, as root (Docker, its options, the deploy user).

Imports from config/ only.
"""
