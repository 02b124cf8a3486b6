"""`llmforge serve --engine`: what generates the answers.

- transformers: llmforge's continuous-batching scheduler (serve/engine.py) over a transformers model, on a
  CPU or a GPU: the engine the server has always run.
- vllm: vLLM's engine, for GPUs. It is refused here with the reason: vLLM is a CUDA build (not installable
  on a CPU machine), and llmforge's vLLM engine has not been built yet (it needs a GPU to be built and
  tested on, and none has been available).
- auto: transformers.
"""

from __future__ import annotations

import importlib.util

from llmforge.errors import UserError

ENGINES = ("auto", "transformers", "vllm")


def choose_engine(name: str) -> str:
    """The engine `--engine NAME` runs; a UserError (exit 2) for one this machine or this version cannot run."""
    if name not in ENGINES:
        raise UserError(f"--engine {name}: not an engine; choose one of {', '.join(ENGINES)}.")
    if name != "vllm":
        return "transformers"
    if importlib.util.find_spec("vllm") is None:
        raise UserError("--engine vllm needs vLLM (pip install vllm: a CUDA build, for machines with an NVIDIA GPU). "
                        "Use --engine transformers (the default) here.")
    import torch

    if not torch.cuda.is_available():
        raise UserError("--engine vllm needs a CUDA GPU and none is visible here. Use --engine transformers.")
    raise UserError("--engine vllm: llmforge's vLLM engine is not built yet (it has not had a GPU to be built and "
                    "tested on). Serve with --engine transformers, or serve an exported folder "
                    "(llmforge export RUN OUT) with vLLM's own `vllm serve OUT`.")
