"""The edge: Caddy in front of the web containers, the only thing bound to the host's ports.

- proxy.py: EdgeProxy, the ports holder, Caddy in its network namespace, and the keeper;
- containers.py: those three containers' specs; caddyfile.py: the Caddyfile and its upstream slot files.

A release never replaces or reloads the edge: release/go_live.py rewrites the slot files.
Imports from config/, host/ and cluster/.
"""
