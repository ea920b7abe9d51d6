"""`python -m components.github.workflows`: prints the workflow files, or writes them (`--write DIR`)."""

import sys

from components.github.workflows.render import main

sys.exit(main())
