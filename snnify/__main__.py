"""``python -m snnify``: the ``snnify`` command line."""

import sys

from snnify.cli import main

if __name__ == "__main__":
    sys.exit(main())
