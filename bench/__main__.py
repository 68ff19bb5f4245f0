"""``python -m bench``: the whole benchmark suite (bench/suite.py; see bench/README.md)."""

import sys

from .suite import main

sys.exit(main())
