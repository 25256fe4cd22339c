"""Entry point of `python -m devstack` (what `make dev` runs)."""

import sys

from devstack.runner import main

if __name__ == "__main__":
    sys.exit(main())
