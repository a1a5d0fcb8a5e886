"""`python -m benchmarks.ui`, the same as `python -m benchmarks ui`: see launcher.py."""

from __future__ import annotations

import sys

from benchmarks.ui.launcher import main

if __name__ == "__main__":
    sys.exit(main())
