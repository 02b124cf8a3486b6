#!/usr/bin/env bash
# Set up, then run the linter and the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check llmforge tests scripts
python -m pytest -q --durations=25 "$@"
