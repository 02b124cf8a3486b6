#!/usr/bin/env python
"""The benchmark, as a script: `python scripts/bench.py --quick --json bench.json` = `llmforge bench ...`."""

import sys

from llmforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
