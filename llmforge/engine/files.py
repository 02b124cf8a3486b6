"""Writes that a SIGKILL cannot leave half done: temp file or folder, fsync, rename."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(staging: Path, target: Path) -> None:
    """Put a fully written folder at `target`, replacing any older one only after it is complete."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)


def remove_dir(path: Path) -> None:
    """Rename out of the way first, so a kill mid-delete never leaves a half folder under its real name."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def folder_fingerprint(folder: Path, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the files of a folder (names and bytes), in name order; top-level entries in `skip` left out."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] not in skip):
        digest.update(str(file.relative_to(folder)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def writable_or_explain(folder: Path) -> None:
    """Create `folder` and check a file can be written there (and in what it holds), or say why not."""
    from llmforge.errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        for place in [folder, *(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))]:
            fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=place)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        where = Path(exc.filename).parent if getattr(exc, "filename", None) else folder
        raise UserError(f"output_dir {folder}: cannot write in {where} ({exc.strerror or exc}). Give the user "
                        "running llmforge write access to it, or choose another output_dir.") from None


DISK_FULL_SIGNS = ("no space left on device", "storagefull", "os error 28", "code: 28", "unexpected pos",
                   "disk quota exceeded", "not enough disk space")


def disk_full(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) says the disk filled up. torch's zip writer reports
    it as 'unexpected pos', safetensors as StorageFull, datasets (checking before it writes its cache) as 'Not
    enough disk space', Python as ENOSPC/EDQUOT."""
    import errno

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(seen).lower() for sign in DISK_FULL_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def disk_full_message(output_dir: Path, checkpoints: Path) -> str:
    """The folder, the free space, and how much a checkpoint of this run takes."""
    free = shutil.disk_usage(output_dir).free if output_dir.exists() else 0
    sizes = [_size(p) for p in checkpoints.glob("checkpoint-*") if p.is_dir()]
    needed = max(sizes) if sizes else 0
    need = f"; a checkpoint of this run takes {needed / 2**20:,.0f} MiB" if needed else ""
    return (f"The disk holding {output_dir} is full ({free / 2**20:,.0f} MiB free{need}), so llmforge stopped "
            "before writing a partial file over good output.")
