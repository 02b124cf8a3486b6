"""User code a recipe names: reward functions, data filters. Imported only because a recipe names it,
and run with the user's rights."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmforge.errors import UserError


def import_function(name: str, what: str = "reward function") -> Callable[..., Any]:
    """The user's function a recipe names (`path/to/file.py:function` or `package.module:function`): their
    code, imported only because the recipe names it."""
    target, _, attribute = name.rpartition(":")
    if not target or not attribute:
        raise UserError(f"{what} '{name}': write path/to/file.py:function or package.module:function.")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise UserError(f"{what} '{name}': {path} does not exist (paths are relative to {Path.cwd()}).")
        module_name = f"llmforge_user_reward_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # so pickling and dataclasses inside it work
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise UserError(f"{what} '{name}': importing {path} failed: {type(exc).__name__}: {exc}"
                            ) from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(f"{what} '{name}': cannot import {target} ({exc}).") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UserError(f"{what} '{name}': {target} has no function '{attribute}'.")
    return function
