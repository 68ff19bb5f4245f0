"""``python -m bankhub.cli ARGS``: the same as ``bankhub ARGS``."""

import sys

from . import main

sys.exit(main())
