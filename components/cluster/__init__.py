"""Where a release's roles run: containers on one host, or Swarm services over a cluster's nodes.

- workload.py: run_role, the one place that declares a container or a service per `cluster.enabled`;
- service.py: a container's spec as a Swarm service's, as the provider reads it back.

Imports from config/ and host/.
"""
