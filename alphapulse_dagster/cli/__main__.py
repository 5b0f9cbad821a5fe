"""``python -m alphapulse_dagster.cli`` — the same as the ``alphapulse`` console script."""

import sys

from alphapulse_dagster.cli import main

sys.exit(main())
