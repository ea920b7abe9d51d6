"""Entry point of the policy pack: the Python language host runs `python -u -m pulumi.policy <engine> <this
directory>`, which runs this file (pulumi/pulumi sdk/python/lib/pulumi/policy/__main__.py, runpy.run_path) with
this directory as the working directory and first on sys.path; the project's root goes before it so that
`policy` and `components` import as packages, as the tests import them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policy.pack import serve

serve()
