"""`python -m components.ops`: the day-two commands (components/ops/commands.py)."""

import sys

from components.ops.commands import main

sys.exit(main())
