"""``python -m app serve`` / ``python -m app export``: see :mod:`app.cli`."""

import sys

from app.cli import main

sys.exit(main())
