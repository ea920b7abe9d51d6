# cutover: the two commands a newcomer needs are `make deploy` and `make test`.
#
#   make deploy              create .venv, select/create the dev stack, `pulumi up`
#   make deploy STACK=prod   the same for another stack
#   make preview             `pulumi preview --diff`, with the policy pack (policy/)
#   make releases            the current release and the history a rollback can use
#   make rollback            redeploy the previous release (TO=2, TO=<git sha>, TO=sha256:... for others)
#   make refresh             read the stack's resources back from the host (`pulumi refresh`)
#   make destroy             remove the stack's containers and networks (volumes are kept)
#   make status              the release serving, each container's health and image, the proxy, disk
#   make logs ROLE=worker    follow the logs of one role's containers (ROLE=web when not given);
#                            SINCE=10m (or a time), LINES=50 (or all; 100), GREP=text (lines with it), FOLLOW=0 (no follow)
#   make exec CMD='...'      run a command in a running web container of the release serving (ROLE= for another role;
#                            a terminal of its own when yours is one); NEW=1: in a one-off container of that release's
#                            image with the role's environment, secrets included, removed once it exits
#   make restart ROLE=worker restart the role's containers of the release serving, one at a time, each until healthy
#   make stop / make start   stop / start them (ROLE=web stops serving: it asks for CONFIRM=1)
#   make backups             the database dumps kept on the server (one before every migration)
#   make restore BACKUP=...  put one back (asks first; what is there now is dumped beside it)
#   make drift               fail when the server no longer matches the program (preview with refresh)
#   make test                lint, type-check, unit + schema + workflow checks, e2e when an engine answers
#   make e2e                 only the real-Docker end-to-end scenarios
#   make bench               the side-by-side deploy benchmark (writes BENCHMARKS.md)
#   make workflows           regenerate .github/workflows and .github/dependabot.yml from components/
#   make config-reference    rewrite README's config table from components/config/keys.py
#   make tools               build the pulumi CLI from its Go modules into .tools/bin (toolchain/README.md)
#   make lock                write requirements.lock and requirements-dev.lock (hashes) from the requirements files

SHELL := /bin/bash
STACK ?= dev
TO ?= previous
ROLE ?= web
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The pulumi CLI: yours when `pulumi` is on PATH. Otherwise the one `make tools` builds from Go modules
# into .tools/bin (first, when it is not there yet), with nothing tried on the network at run time: no
# update check, no plugin download (pulumi sdk/go/common/workspace/plugins.go reads
# PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION; pkg/cmd/pulumi checks PULUMI_SKIP_UPDATE_CHECK).
TOOLS_DIR ?= $(CURDIR)/.tools
ifeq ($(shell command -v pulumi 2>/dev/null),)
export PATH := $(TOOLS_DIR)/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
PULUMI_CLI := tools-built
endif

# The dev stack: a file state backend inside the project unless one is configured, and, as it
# holds no secret, an empty passphrase. Other stacks use the backend you are logged in to (or
# PULUMI_BACKEND_URL) with your passphrase, and are never created here by accident.
ifeq ($(STACK),dev)
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_CONFIG_PASSPHRASE ?=
SELECT := pulumi stack select --create $(STACK)
else
SELECT := pulumi stack select $(STACK)
endif

# An ssh agent for the day-to-day commands: yours when SSH_AUTH_SOCK is set, otherwise one that lives
# exactly as long as the command; components/ops/ gives it the deploy key (memory only).
AGENT := $(if $(SSH_AUTH_SOCK),,ssh-agent)

# Every pulumi command runs under an ssh agent of its own that lives exactly as long as the command, with
# the stack's deploy key loaded into it before pulumi starts: the docker provider's ssh logs in with it,
# and the provider is a process the engine starts, so the program could not hand it the key
# (components/host/ssh.py). The key goes from the CLI to ssh-add on a pipe: never into a file, a process
# argument or the terminal. Your own agent is left as it is, and the program only checks the agent.
# $(call with_key,COMMAND)
KEY_LIFETIME := 3600
load_key = host="$$(pulumi config get --path host.url --stack $(STACK) 2>/dev/null || true)"; \
  case "$$host" in ssh://*) pulumi config get sshPrivateKey --stack $(STACK) | ssh-add -q -t $(KEY_LIFETIME) - || { \
    echo "cutover: the deploy key (sshPrivateKey) of stack $(STACK) could not be loaded into the ssh agent of this command" \
      "(the line above says why); set it with: pulumi config set --secret sshPrivateKey --stack $(STACK) < deploy_key" >&2; exit 1; };; esac
with_key = ssh-agent $(SHELL) -c 'set -o pipefail; $(load_key); exec $(1)'

# The policy pack (policy/) checks every resource before it changes: a mandatory rule broken fails the
# preview, and stops `pulumi up` before that resource is created (pulumi/pulumi pkg/resource/deploy/step_generator.go:
# analyzeAll marks it invalid outside a preview, then "resource ... is invalid" ends the update). It runs in $(VENV)
# (policy/PulumiPolicy.yaml).
POLICY := --policy-pack policy

.PHONY: setup deploy preview releases rollback refresh destroy status logs exec restart stop start backups restore drift test unit e2e bench bench-restart lint fmt workflows config-reference lock tools tools-built tools-pulumi tools-program tools-deploy clean

# Every package is installed from a lock with its hashes: pip refuses a file whose hash the lock does not
# list, and --no-deps installs nothing the lock does not name. `make lock` writes the locks again.
$(BIN)/.program: requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	@touch $@

$(BIN)/.installed: $(BIN)/.program requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	@touch $@

# The locks of requirements.txt and requirements-dev.txt, for the workflows' runners (Linux x86_64, the
# pipeline's Python), with the hash of every file each pinned version has.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --annotation-style line
lock: $(BIN)/.installed
	$(BIN)/uv pip compile $(LOCK_FLAGS) -o requirements.lock requirements.txt
	$(BIN)/uv pip compile $(LOCK_FLAGS) -o requirements-dev.lock requirements-dev.txt

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

tools:
	@TOOLS_DIR='$(TOOLS_DIR)' toolchain/build.sh

# the same, silent when the CLI is built already: what the other targets wait for
tools-built:
	@TOOLS_DIR='$(TOOLS_DIR)' TOOLS_QUIET=1 MAKE_GOAL='$(MAKECMDGOALS)' toolchain/build.sh

# The CLI alone: enough for stack outputs and the day-to-day commands.
tools-pulumi: $(PULUMI_CLI)
	@command -v pulumi >/dev/null 2>&1 || { echo "cutover: the pulumi CLI is not installed: install it with 'curl -fsSL https://get.pulumi.com | sh' (see https://www.pulumi.com/docs/install/), then run make $(MAKECMDGOALS) again"; exit 1; }

# Running the program also needs the Python language host, which the official CLI ships beside itself
# (pulumi sdk/go/common/workspace/plugins.go looks beside the pulumi binary, then on PATH).
tools-program: tools-pulumi
	@command -v pulumi-language-python >/dev/null 2>&1 || test -x "$$(dirname "$$(command -v pulumi)")/pulumi-language-python" || { echo "cutover: $$(command -v pulumi) has no Python language host beside it: the CLI that make tools builds runs no program yet (toolchain/README.md says why); install the official CLI with 'curl -fsSL https://get.pulumi.com | sh' (see https://www.pulumi.com/docs/install/), then run make $(MAKECMDGOALS) again"; exit 1; }

tools-deploy: tools-program
	@docker info >/dev/null 2>&1 || { echo "cutover: no Docker engine answers: install Docker (https://docs.docker.com/engine/install/) and start it (sudo systemctl start docker), then run make $(MAKECMDGOALS) again"; exit 1; }

# A file backend's folder is made when missing; the stack is selected (dev: created when missing).
define select_stack
@case "$$PULUMI_BACKEND_URL" in file://*) mkdir -p "$${PULUMI_BACKEND_URL#file://}";; esac
$(SELECT)
endef

deploy: tools-deploy $(BIN)/.program
	$(select_stack)
	$(call with_key,pulumi up $(POLICY) --stack $(STACK))

preview: tools-program $(BIN)/.program
	$(select_stack)
	$(call with_key,pulumi preview --diff $(POLICY) --stack $(STACK))

releases: tools-pulumi
	@echo "current release of $(STACK):"; pulumi stack output release --json --stack $(STACK)
	@echo "earlier releases, newest first (TO=1 is the first):"; pulumi stack output releases --json --stack $(STACK)

# Needs no local Docker engine for a remote (ssh://) stack: nothing is built. pulumi-docker still
# configures the provider of the image build it no longer declares (the engine does so for every
# delete, a no-op one too), and that configuration pings the local engine unless DOCKER_HOST is an
# ssh:// URL (pulumi-docker provider/image.go:944-952): so DOCKER_HOST is the stack's own host.
rollback: tools-program $(BIN)/.program
	@host="$$(pulumi config get --path host.url --stack $(STACK) 2>/dev/null || true)"; \
	case "$$host" in ssh://*) export DOCKER_HOST="$$host";; esac; \
	echo "CUTOVER_ROLLBACK_TO=$(or $(TO),previous) pulumi up $(POLICY) --stack $(STACK)"; \
	CUTOVER_ROLLBACK_TO=$(or $(TO),previous) $(call with_key,pulumi up $(POLICY) --stack $(STACK))

# --run-program: each resource is read back with the provider as the program declares it now, not as the
# state recorded it (without it, pulumi reads every resource before the program runs).
refresh: tools-program $(BIN)/.program
	$(call with_key,pulumi refresh --run-program --stack $(STACK))

destroy: tools-program $(BIN)/.program
	$(call with_key,pulumi destroy --run-program --stack $(STACK))

# Day to day: over the stack's own host connection, with the deploy key in the agent (components/ops/).
# CMD, SINCE, GREP and LINES reach the command exactly as written: `$(value ...)` is a variable's text with none
# of its `$` expanded by make (GNU make manual, "The value Function"), single-quoted for the shell here. LINES
# only when given on make's command line: an interactive shell may export its own LINES (the terminal's height).
quoted = '$(subst ','\'',$(value $(1)))'
status backups: tools-pulumi $(BIN)/.program
	@$(AGENT) $(BIN)/python -m components.ops $@ --stack $(STACK)

logs: tools-pulumi $(BIN)/.program
	@$(AGENT) $(BIN)/python -m components.ops logs --stack $(STACK) --role '$(ROLE)' $(if $(filter 0 no false,$(FOLLOW)),,--follow) \
	  $(if $(filter command line,$(origin LINES)),--lines=$(call quoted,LINES)) --since=$(call quoted,SINCE) --grep=$(call quoted,GREP)

exec: tools-pulumi $(BIN)/.program
	@$(AGENT) $(BIN)/python -m components.ops exec --stack $(STACK) --role '$(ROLE)' $(if $(filter 1 yes true,$(NEW)),--new) --cmd=$(call quoted,CMD)

restart stop start: tools-pulumi $(BIN)/.program
	@$(AGENT) $(BIN)/python -m components.ops $@ --stack $(STACK) --role '$(ROLE)' $(if $(filter 1 yes true,$(CONFIRM)),--confirm)

restore: tools-pulumi $(BIN)/.program
	@test -n '$(BACKUP)' || { echo "cutover: BACKUP=<name> is missing: make backups STACK=$(STACK) lists the names"; exit 1; }
	@$(AGENT) $(BIN)/python -m components.ops restore --stack $(STACK) --backup '$(BACKUP)'

# A fresh Debian or Ubuntu server, once, before its first deploy (components/ops/setup.py): HOST=ssh://root@server,
# KEY= the deploy user's public key (default ~/.ssh/id_ed25519.pub), DEPLOY_USER= its name (default deploy).
setup: $(BIN)/.installed
	@$(BIN)/python -m components.ops.setup --host=$(call quoted,HOST) $(if $(KEY),--key=$(call quoted,KEY)) $(if $(DEPLOY_USER),--user=$(call quoted,DEPLOY_USER))

# Refreshes every resource as the program declares it, and fails on any create, update, replace or delete
# the preview then proposes (components/github/workflows.py drift_workflow says why refreshes are not counted).
drift: tools-program $(BIN)/.program
	$(call with_key,pulumi preview --refresh --run-program --expect-no-changes --diff $(POLICY) --stack $(STACK))

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy components policy __main__.py
	$(BIN)/hadolint app/Dockerfile examples/static-app/Dockerfile

workflows: $(BIN)/.installed
	$(BIN)/python -m components.github.workflows --write .github/workflows
	$(BIN)/python -m components.github.dependabot --write .github/dependabot.yml

# README's table of config keys ("Configuration"), between its two marker lines
config-reference: $(BIN)/.installed
	$(BIN)/python -m components.config.reference --write README.md

fmt: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint node_modules/.installed
	$(BIN)/python -m pytest --cov=components --cov-report=term-missing --cov-fail-under=90

unit: $(BIN)/.installed node_modules/.installed
	$(BIN)/python -m pytest -m "not e2e"

e2e: $(BIN)/.installed
	CUTOVER_REQUIRE_E2E=1 $(BIN)/python -m pytest -m e2e -v

bench: $(BIN)/.installed
	$(BIN)/python -m tests.e2e.bench --runs 3 --write BENCHMARKS.md
	$(BIN)/python -m tests.e2e.bench_proxy --runs 3 --write BENCHMARKS.md

# restarts this machine's dockerd 20 times: only where every container on it may stop
bench-restart: $(BIN)/.installed
	CUTOVER_E2E_RESTART_DOCKERD=1 $(BIN)/python -m tests.e2e.bench_restart --restarts 20 --write BENCHMARKS.md

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .coverage
