"""``python -m reprohub.cli``: the ``reprohub`` command (as ``python -m reprohub``)."""

import sys

from . import main

sys.exit(main())
