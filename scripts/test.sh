#!/usr/bin/env bash
# Set up, then run the linter and the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check llmforge tests scripts
# the chat page's test drives a real Chromium (Debian's, installed here when missing)
LLMFORGE_CHROMIUM=$(bash scripts/browser.sh)
export LLMFORGE_CHROMIUM
# two workers: training tests that share a trained model stay on one worker (tests/conftest.py)
python -m pytest -q -n 2 --dist loadgroup --durations=25 "$@"
