"""Refuse a checkpoint whose pickles would run code, before any library unpickles them.

transformers' Trainer loads optimizer, scheduler and RNG state with `torch.load(weights_only=True)`, but
DeepSpeed's checkpoint engine uses `weights_only=False` and torch.distributed.checkpoint reads its
`.metadata` with plain `pickle.load`: a file swapped into a checkpoint (a `__reduce__` calling
`os.system`) would run on resume. So every pickle-based file of a checkpoint is first read here by an
unpickler that can build tensors and plain containers only: torch's own `weights_only` unpickler for
torch files (numpy scalars and arrays allowed, as transformers allows them for RNG state), and an
allow-list unpickler for the plain pickles of distributed checkpoints. A file that passes builds the
same objects under any unpickler, so it is then safe to hand to the library that wrote it.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".metadata")
# Written by the Trainer for the record and never read on resume; a TrainingArguments pickle, not data.
NOT_LOADED = ("training_args.bin",)
# What torch.distributed.checkpoint's metadata and DeepSpeed's state hold besides tensors and containers.
PLAIN_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner",
                 "torch.distributed.checkpoint._nested_dict", "torch.distributed.checkpoint._traverse")
PLAIN_NAMES = {("collections", "OrderedDict"), ("collections", "defaultdict"), ("torch", "Size"),
               ("torch", "device"), ("torch", "dtype"), ("builtins", "set"), ("builtins", "frozenset"),
               ("builtins", "slice"), ("builtins", "complex"), ("torch._utils", "_rebuild_tensor_v2"),
               ("torch.storage", "_load_from_bytes"), ("enum", "Enum")}
TORCH_DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool",
                "float8_e4m3fn", "float8_e5m2", "complex64"}


class UnsafePickle(Exception):
    """A checkpoint file holds objects other than tensors and plain data."""


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in PLAIN_NAMES or module in PLAIN_MODULES or (module == "torch" and name in TORCH_DTYPES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def _numpy_globals() -> list:
    """What transformers and accelerate allow for RNG state under weights_only: numpy arrays, dtypes, scalars."""
    import codecs

    import numpy as np

    core = np._core if int(np.__version__.split(".")[0]) >= 2 else np.core
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, codecs.encode,
            *(type(np.dtype(t)) for t in ("uint32", "float32", "float64", "int64", "int32", "bool"))]


# Data classes of the libraries whose checkpoints llmforge resumes: DeepSpeed's ZeRO optimizer state holds its
# loss-scaler settings and ZeRO stage. Allowed by name, imported only when a file names them.
LIBRARY_CLASSES = ("deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.zero.config.ZeroStageEnum")


def _library_classes(path: Path) -> list:
    import importlib

    import torch

    named = set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) & set(LIBRARY_CLASSES)
    classes = []
    for name in sorted(named):
        module, _, attribute = name.rpartition(".")
        classes.append(getattr(importlib.import_module(module), attribute))
    return classes


def check_file(path: Path) -> None:
    """Raise UnsafePickle when `path` would build anything but tensors and plain data."""
    import torch

    try:
        if zipfile.is_zipfile(path):  # torch.save's format
            with torch.serialization.safe_globals(_numpy_globals() + _library_classes(path)):
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        else:
            with path.open("rb") as handle:
                _AllowListUnpickler(handle).load()
    except Exception as exc:  # any refusal or a file that is not a pickle at all
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafePickle(f"{path.name} holds objects that are not plain data, so loading it could run code "
                           f"({detail[:200]}); it was not loaded") from None


def check_pickles(checkpoint: Path) -> None:
    """Check every pickle-based file under a checkpoint folder."""
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file() and path.suffix in PICKLE_SUFFIXES and path.name not in NOT_LOADED:
            check_file(path)
