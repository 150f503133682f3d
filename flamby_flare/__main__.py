"""``python -m flamby_flare``: the ``flamby-flare`` command line."""

import sys

from flamby_flare.cli import main

sys.exit(main())
