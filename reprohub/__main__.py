"""``python -m reprohub``: the same as the ``reprohub`` command (and, like it, torch-free for ``--help``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
