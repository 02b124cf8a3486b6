"""Prepared (tokenized, packed) datasets cached on disk, built once for all ranks and runs.

The entry is built in a temporary folder and renamed into place, so a kill during
preparation leaves no half-written entry behind. Under a distributed launch the main
process builds while the others wait, then all of them read the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_from_disk

from llmforge.distributed.state import process_state

META_FILE = "llmforge_meta.json"


def cache_root(configured: str | None) -> Path:
    root = configured or os.environ.get("LLMFORGE_CACHE") or Path.home() / ".cache" / "llmforge"
    return Path(root).expanduser() / "data"


def cache_key(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def prepare_once(root: Path, key: str, build: Callable[[], tuple[DatasetDict, dict[str, Any]]],
                 ) -> tuple[DatasetDict, dict[str, Any]]:
    """Load `root/key`, building it first if absent. Returns (data, meta).

    meta (the build's own counts, plus rows and tokens per split, counted here once) is kept beside
    the data in the same entry, so a run that reads the cache reports what the build measured
    without scanning the data again.
    """
    entry = root / key
    # One builder per node (local main first): with a shared file system the other nodes find it
    # built; with node-local disks each node builds its own copy.
    with process_state().local_main_process_first():
        if not entry.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
            try:
                data, meta = build()
                meta["splits"] = {name: {"rows": len(split), "tokens": _tokens(split)} for name, split in data.items()}
                data.save_to_disk(str(staging / "data"))
                (staging / "data" / META_FILE).write_text(json.dumps(meta))
                try:
                    os.replace(staging / "data", entry)
                except OSError:
                    if not entry.is_dir():  # another node published the same entry first: use theirs
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    meta_file = entry / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return load_from_disk(str(entry)), meta


def _tokens(split: Any) -> int:
    """Tokens in a split: every id column (input_ids; prompt/chosen/rejected ids of preference pairs)."""
    return sum(sum(map(len, split[column])) for column in split.column_names if column.endswith("_ids"))
