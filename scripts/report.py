#!/usr/bin/env python
"""``python scripts/report.py DIR... [options]``: the same as ``transferlab report``."""

import sys

from transferlab.commands import main

if __name__ == "__main__":
    raise SystemExit(main(["report", *sys.argv[1:]]))
