"""``python -m warmroute.cli ...``: the same as the ``warmroute`` command (what Ray Jobs run on a cluster)."""

import sys

from warmroute.cli.main import main

sys.exit(main())
