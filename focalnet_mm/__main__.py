"""``python -m focalnet_mm TOOL ARGS...``: the same as the ``focalnet-mm`` command
(focalnet_mm/commands.py)."""
import sys

from .commands import main

sys.exit(main())
