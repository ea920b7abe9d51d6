"""`pulumi up`, replayed: the program's own registrations applied to real hosts with the real providers' semantics.

The Pulumi CLI and provider plugins cannot run here. This package plays the engine
(engine.py), its decisions (plan.py), the docker provider's read-back (readback.py) and
the providers' operations (providers.py, docker_api.py) for exactly the resources and
inputs the program registers, each rule with the source file it follows. stack.py holds
a stack: config, state, `up`.

What it does not model (so the e2e results say nothing about these):
- `--continue-on-error`, `--target`, `pulumi import`, update plans, and the
  `pulumi:autonaming` config (which can force delete-before-replace);
- preview: previews are not applied, so nothing here checks what a preview prints;
- aliases: a state is looked up by URN only (every e2e stack starts empty; the engine's
  aliases are shown on the real CLI in tests/test_real_engine.py);
- refresh of resources other than containers and remote images (networks, volumes, images
  and commands are read back unchanged, as their providers' Read mostly does);
- the image build runs the docker CLI (`buildx build --load`), not the Engine API call the
  provider makes; the same daemon BuildKit builds either way;
- the docker provider's client reuses connections; here each request opens one (more ssh
  logins, same outcome);
- pulumi-command's retries of a failed dial (dialErrorLimit) and its log streaming;
- secrets in the state (the state is in memory, never written).
"""
