"""The GitHub side of the delivery pipeline: what the repository holds and how GitHub runs it.

- pipeline.py: GitHubPipeline, the environments, secrets, variables, workflow files and ruleset;
- workflows/: the workflow files, rendered from data (`python -m components.github.workflows`);
- dependabot.py: .github/dependabot.yml; notifications.py: the deploy notifications' steps.

Imports from config/ and host/ (the deploy key's load in a workflow): never from a release.
"""
