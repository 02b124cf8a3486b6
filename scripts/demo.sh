#!/usr/bin/env bash
# Set up, then run the tiny end-to-end demo on CPU: pretrain a ~1M-parameter Llama-style model
# on the built-in corpus, report held-out perplexity, write runs/pretrain-tiny/final.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
llmforge train configs/pretrain/tiny.yaml "$@"
