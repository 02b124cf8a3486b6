#!/usr/bin/env bash
# Create .venv and install llmforge with its test tools. Safe to run again (fast when up to date).
# torch is installed first and pinned: on this project's machines torch==2.13.0 is a local CPU wheel,
# and an unpinned torch would pull several GB of CUDA wheels. GPU users: TORCH_SPEC="torch" (or a
# CUDA build) before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "$TORCH_SPEC"
python -m pip install -q -e ".[dev]"
