"""``python -m armlens.cli``: the same entry point as the ``armlens`` command."""

import sys

from armlens.cli import main

sys.exit(main())
