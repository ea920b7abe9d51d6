"""`python -m components.ops`: the day-two commands (components/ops/)."""

import sys

from components.ops.cli import main

sys.exit(main())
