"""Which lm-evaluation-harness tasks a name means: llmforge's shipped task folder, the user's own task folders,
then lm-eval's registry (MMLU, GSM8K, HellaSwag, ARC, IFEval, ...).

Local task folders are ordinary lm-eval YAML with one addition: a relative `data_files` path is read from
the YAML's own folder, so a task folder (YAML + jsonl/parquet) runs from any working directory with no hub.
Local names are looked up first without indexing lm-eval's ~15,000 registry YAMLs (seconds); the registry
is read only for a name no local folder has. A task's fingerprint (its resolved config and its local data
files' bytes) is what a saved result is checked against before it is reused.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmforge.errors import UserError

SHIPPED = Path(__file__).resolve().parent.parent / "benchmarks"


@dataclass
class ResolvedTask:
    name: str
    spec: str | dict[str, Any]  # what lm-eval's TaskManager loads: a config dict (local) or a registry name
    chat: bool  # the task asks for the model's chat template (`metadata.chat: true` in its YAML)
    fingerprint: str


def _manager(paths: list[Path], defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in paths] or None, include_defaults=defaults)


def _absolute_data(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The config with relative `dataset_kwargs.data_files` read from the task's folder where they exist."""
    config = copy.deepcopy(config)
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if files is None:
        return config

    def place(value: Any) -> Any:
        if isinstance(value, list):
            return [place(v) for v in value]
        if isinstance(value, str) and not Path(value).is_absolute() and (folder / value).exists():
            return str((folder / value).resolve())
        return value

    config["dataset_kwargs"]["data_files"] = ({k: place(v) for k, v in files.items()} if isinstance(files, dict)
                                              else place(files))
    return config


def _data_paths(config: dict[str, Any]) -> list[Path]:
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    values = list(files.values()) if isinstance(files, dict) else [files]
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    return sorted(Path(v) for v in flat if isinstance(v, str) and Path(v).is_file())


def _fingerprint(config: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for path in _data_paths(config):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _local(manager: Any, name: str) -> ResolvedTask | None:
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index.get(name)
    if entry is None or entry.yaml_path is None or entry.cfg is None or "task" not in entry.cfg:
        return None  # groups and tags of local folders go through lm-eval by name
    config = _absolute_data(load_yaml(entry.yaml_path, resolve_func=True, recursive=True), entry.yaml_path.parent)
    config.pop("tag", None)  # loaded by config, a task needs no tag of its own (and a tag would load its peers)
    chat = bool((config.get("metadata") or {}).get("chat", False))
    return ResolvedTask(name, config, chat, _fingerprint(config))


def task_folders(extra: list[str | Path] | None = None) -> list[Path]:
    """The shipped task folder and the user's (files or folders), each checked to exist."""
    folders = [SHIPPED]
    for given in extra or []:
        path = Path(given)
        if not path.exists():
            raise UserError(f"--task-path {given}: no such file or folder (give a folder of lm-eval task YAML "
                            "files, or one YAML file).")
        folders.append(path)
    return folders


def resolve_tasks(names: list[str], folders: list[Path]) -> tuple[list[ResolvedTask], Any]:
    """Every name as a task lm-eval can load, and the TaskManager that loads them; an unknown name exits 2
    listing the closest names."""
    if not names:
        raise UserError("--tasks: name at least one task, e.g. --tasks llmforge_arithmetic,gsm8k.")
    manager = _manager(folders, defaults=False)
    found: dict[str, ResolvedTask] = {}
    for name in names:
        if (task := _local(manager, name)) is not None:
            found[name] = task
    missing = [n for n in names if n not in found]
    if missing:
        manager = _manager(folders, defaults=True)
        from lm_eval import __version__ as lm_eval_version

        for name in missing:
            if name not in manager.all_tasks:
                close = difflib.get_close_matches(name, manager.all_tasks, n=6, cutoff=0.6)
                shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
                raise UserError(f"--tasks: unknown task '{name}'. "
                                + (f"Close names: {', '.join(close)}. " if close else "")
                                + f"llmforge ships {shipped}; lm-eval's registry has {len(manager.all_tasks):,} "
                                "names (`lm-eval ls tasks`); your own task YAML goes in a folder given with "
                                "--task-path.")
            entry = manager.task_index[name]
            config = entry.cfg or {}
            version = (config.get("metadata") or {}).get("version")
            fingerprint = hashlib.sha256(f"{name}|{version}|lm_eval {lm_eval_version}".encode()).hexdigest()[:16]
            found[name] = ResolvedTask(name, name, chat=False, fingerprint=fingerprint)
    return [found[n] for n in names], manager
