"""`python -m llmforge` is what torchrun and accelerate launch; it is the same CLI."""

import sys

from llmforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
