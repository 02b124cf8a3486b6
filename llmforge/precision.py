"""The one precision decision: which dtype weights are held in and which dtype the matmuls run in.

Every stage (Trainer-based, TRL-based, our PPO loop), every distributed strategy and inference ask
here, and the answer is written into run.json. Trainer arguments get every flag set explicitly: TRL's
config classes default to `bf16=True`, plain `TrainingArguments` to False, and a library default must
never decide how a run computes.

The policy, from what each device does natively and what was measured:
- CPU: float32 weights, no autocast. bf16 autocast on a CPU without native bf16 (AVX2 only) is
  emulated: 40 steps of `configs/sft/tiny-full.yaml` trained at 872 tokens/s under autocast and 6,610
  without (7.6x) with torch's kernels held to AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) on a
  2-core Xeon with AMX; a 2-core AMD EPYC (AVX2) reported the same shape (5.9x). Even with AMX and
  AVX-512-BF16 autocast was slower for these small models (6,043 vs 6,941 tokens/s), and bf16 kernels
  differ between CPUs where float32 ones agree to ~1e-7 (that run's step-40 loss: 1.18199050 with AMX,
  1.18199034 held to AVX2). `train.mixed_precision: bf16` asks for autocast anyway.
- CUDA: float32 master weights under bf16 autocast where the GPU has bf16 (Ampere and newer), fp16
  autocast with a gradient scaler otherwise; `model.dtype: float32` means float32 compute (no autocast),
  `model.dtype: bfloat16` holds and computes the weights in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from llmforge.errors import UserError

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    device: str  # cpu | cuda
    weights: torch.dtype  # what the parameters are held in
    autocast: torch.dtype | None  # what matmuls compute in under autocast; None = the weights' dtype
    reason: str

    @property
    def mixed(self) -> str:
        """accelerate's `mixed_precision` value."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.autocast, "no")

    def trainer_flags(self) -> dict[str, Any]:
        """TrainingArguments (and every TRL config) precision flags, all explicit."""
        return {"bf16": self.autocast == torch.bfloat16, "fp16": self.autocast == torch.float16,
                "use_cpu": self.device == "cpu"}

    def record(self) -> dict[str, str]:
        """How run.json states it."""
        return {"device": self.device, "weights": _name(self.weights),
                "compute": _name(self.autocast or self.weights) + (" autocast" if self.autocast else ""),
                "reason": self.reason}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def current_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def decide(model_dtype: str = "auto", mixed_precision: MixedPrecision = "auto", device: str | None = None,
           ) -> Precision:
    """The precision a run trains in, from `model.dtype` and `train.mixed_precision`."""
    device = device or current_device()
    if model_dtype == "float16" and mixed_precision in ("auto", "no"):
        raise UserError("model.dtype=float16 weights cannot be trained directly (the gradient scaler needs "
                        "float32 weights); use model.dtype=auto with train.mixed_precision=fp16, or bfloat16.")
    weights = DTYPES.get(model_dtype, torch.float32)
    if mixed_precision == "no" or (mixed_precision == "auto" and model_dtype != "auto"):
        where = "the CPU" if device == "cpu" else "the GPU"
        return Precision(device, weights, None, f"model.dtype={model_dtype}: computed in it on {where}")
    if mixed_precision == "auto":
        if device == "cpu":
            return Precision(device, torch.float32, None, "CPU: float32 (bf16 autocast is emulated, ~6x slower, "
                             "on CPUs without native bf16, and differs between CPUs)")
        if torch.cuda.is_bf16_supported():
            return Precision(device, torch.float32, torch.bfloat16, "GPU with bf16: float32 weights, bf16 autocast")
        return Precision(device, torch.float32, torch.float16, "GPU without bf16: float32 weights, fp16 autocast")
    if weights != torch.float32:
        raise UserError(f"train.mixed_precision={mixed_precision} autocasts float32 weights; model.dtype="
                        f"{model_dtype} already holds them in lower precision. Use model.dtype=auto.")
    if mixed_precision == "fp16" and device == "cpu":
        raise UserError("train.mixed_precision=fp16 needs a GPU; on a CPU use auto (float32) or bf16.")
    target = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    if device == "cuda" and target == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise UserError("train.mixed_precision=bf16: this GPU has no bf16; use fp16 or auto.")
    return Precision(device, torch.float32, target, f"train.mixed_precision={mixed_precision}")


def inference_dtype(model_dtype: str = "auto", device: str | None = None) -> torch.dtype:
    """The dtype weights are loaded in to generate: what training computes in (bf16 on a bf16 GPU under auto)."""
    decided = decide(model_dtype, "auto", device) if model_dtype != "float16" else None
    if decided is None:
        return torch.float16
    return decided.autocast or decided.weights
