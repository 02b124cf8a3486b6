"""What a recipe asks of the machine, checked before anything is loaded or launched.

A recipe can be valid and still impossible here: 8-bit AdamW without bitsandbytes or a GPU,
flash-attention 2 without the flash-attn package, Liger kernels on a CPU, QLoRA without CUDA. Each is a
user error (exit 2) that says what to install or change, rather than a library's traceback minutes in.
"""

from __future__ import annotations

import importlib.util

import torch

from llmforge.config.schema import RunConfig
from llmforge.errors import UserError


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def problems(cfg: RunConfig) -> list[str]:
    gpu = torch.cuda.is_available()
    found = []
    if cfg.train.optimizer == "adamw_8bit" and not (gpu and _has("bitsandbytes")):
        need = "a CUDA GPU and bitsandbytes (pip install bitsandbytes)" if not gpu else "pip install bitsandbytes"
        found.append(f"train.optimizer=adamw_8bit needs {need}; use adamw_torch here")
    if cfg.model.attn_implementation == "flash_attention_2" and not (gpu and _has("flash_attn")):
        need = "a CUDA GPU and the flash-attn package" if not gpu else "the flash-attn package (pip install flash-attn)"
        found.append(f"model.attn_implementation=flash_attention_2 needs {need}; use auto (PyTorch SDPA) here")
    if cfg.model.attn_implementation == "flex_attention" and not gpu:
        found.append("model.attn_implementation=flex_attention: PyTorch's FlexAttention has no backward pass on a "
                     "CPU; use auto (PyTorch SDPA) here")
    if cfg.train.liger_kernel and not (gpu and _has("liger_kernel")):
        found.append("train.liger_kernel needs a CUDA GPU and the liger-kernel package (pip install liger-kernel); "
                     "set it to false here")
    if cfg.adapter.type == "qlora" and not (gpu and _has("bitsandbytes")):
        found.append("adapter.type=qlora loads the base in 4 bits with bitsandbytes, which needs a CUDA GPU (and pip "
                     "install bitsandbytes); on this machine use adapter.type=lora")
    report_to = cfg.logging.report_to
    if "mlflow" in report_to and not _has("mlflow"):
        found.append("logging.report_to=mlflow needs MLflow: pip install 'llmforge[tracking]' (or mlflow)")
    if "wandb" in report_to:
        if not _has("wandb"):
            found.append("logging.report_to=wandb needs W&B: pip install 'llmforge[tracking]' (or wandb)")
        elif not wandb_can_log():
            found.append("logging.report_to=wandb needs a W&B login (WANDB_API_KEY or `wandb login`), or "
                         "WANDB_MODE=offline to write the run locally (`wandb sync` uploads it later)")
    return found


def wandb_can_log() -> bool:
    """W&B would not stop to ask for a key: offline or disabled, or a key is set or stored."""
    import os

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get(
            "WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.isfile(netrc) and "api.wandb.ai" in open(netrc, encoding="utf-8", errors="replace").read()


def check(cfg: RunConfig) -> None:
    found = problems(cfg)
    if found:
        raise UserError("This machine cannot run the recipe as written:\n  - " + "\n  - ".join(found) + ".")
