"""`python -m benchmarks.ui [flags] [locust flags]`: see benchmarks/ui/launcher.py."""

from __future__ import annotations

import sys

from benchmarks.ui.launcher import main

if __name__ == "__main__":
    sys.exit(main())
