#!/usr/bin/env bash
# Set up, then run the tiny end-to-end demo on CPU (~4 minutes): pretrain a ~1M-parameter Llama-style
# model on the built-in corpus, fine-tune it with LoRA on the built-in arithmetic task (held-out
# exact-match accuracy is printed), and ask it a question. Outputs land in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
llmforge train configs/pretrain/tiny.yaml
llmforge train configs/sft/tiny-lora.yaml
llmforge generate runs/sft-tiny-lora --prompt "What is 4 + 3?" --prompt "Compute 8 - 5." --max-new-tokens 8
