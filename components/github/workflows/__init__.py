"""The GitHub Actions workflows of the delivery pipeline, rendered from data.

`render_workflows(WorkflowSettings())` returns the text of every workflow file:

- ``ci.yml``: lint, type-check and test on pushes to the default branch and on
  pull requests.
- ``preview.yml``: ``pulumi preview --diff`` of every stack on pull requests, each
  in the stack's preview environment once a reviewer approved the run, posted as a
  PR comment; a failing preview fails the check.
- ``deploy.yml``: on pushes to the default branch (and by hand), the tests,
  then ``pulumi up`` stack after stack, each in its GitHub environment, never
  two at once on one stack. When ``pulumi up`` fails, the release that served
  before is redeployed (``CUTOVER_ROLLBACK_TO=<digest>``) and the job still fails.
- ``rollback.yml``: by hand, ``CUTOVER_ROLLBACK_TO=<target> pulumi up`` on one
  stack.
- ``drift.yml``: every day (and by hand), ``pulumi preview --refresh --expect-no-changes``
  of every stack at the commit it last deployed, in the stack's drift environment; fails, with the diff in the job summary,
  when the server no longer matches what was deployed.

One module per workflow (ci.py, preview.py, deploy.py, rollback.py, drift.py), the steps and jobs they
share (steps.py), what they are rendered from (settings.py: `WorkflowSettings`, `ACTIONS`) and the
rendering to YAML text (render.py).

Deploy and rollback jobs announce their start and outcome to a webhook
(components/github/notifications.py).

The package is pure: no Pulumi call. The GitHub component commits these texts to
the repository; ``python -m components.github.workflows --write .github/workflows``
writes them to a directory, and a test keeps the committed copies equal to the
rendered ones.

Security rules the rendering follows, checked by tests and by actionlint,
zizmor and the GitHub workflow JSON schema:

- every action is pinned to a full commit SHA (table `ACTIONS`);
- ``permissions`` is empty at the top of each workflow and granted per job,
  the least each job needs;
- checkout never persists the token (``persist-credentials: false``);
- no ``${{ }}`` expression is ever written inside a ``run:`` script: values go
  through ``env:``; stack names and commands are static settings, validated;
- no ``pull_request_target`` trigger: pull requests from forks get no secrets
  and their previews are skipped;
- no secret is read outside a GitHub environment, so none is a repository secret that any
  branch's workflow could read: deploys and rollbacks run in the stack's environment (the
  default branch only), the daily drift check in ``<environment>-drift`` (the default branch
  only), and a pull request's preview in ``<environment>-preview``, whose required reviewers
  approve each run before its job starts and reads that environment's secrets (the GitHub
  component declares all three, components/github/pipeline.py);
- the program's dependencies are installed from a lock file with hashes (``--require-hashes``);
- deploys are never cancelled (``cancel-in-progress: false``).
"""
