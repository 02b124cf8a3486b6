"""The chain a run came from, read from run.json files: parents by path and fingerprint, back to the
base model, with each run's data fingerprints. Nothing is recomputed: it shows what was recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmforge.errors import UserError
from llmforge.registry.folders import referenced_run
from llmforge.registry.runs import RUN_FILE, read_run_info


def lineage(run_dir: Path, role: str = "run", seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """{role, run_dir, stage, status, fingerprint, data, parents: [...]}, recursively."""
    run_dir = Path(run_dir).resolve()
    info = read_run_info(run_dir)
    node: dict[str, Any] = {"role": role, "run_dir": str(run_dir), "stage": info.get("stage"),
                            "status": info.get("status"), "fingerprint": info.get("final_fingerprint"),
                            "data": (info.get("data") or {}).get("fingerprints", {}), "parents": []}
    for parent in info.get("parents", []):
        folder = referenced_run(parent, run_dir)
        if folder is not None and str(folder) not in seen:
            child = lineage(folder, parent.get("role", "model"), seen | {str(run_dir)})
            if child["fingerprint"] != parent.get("fingerprint"):
                child["changed_since"] = parent.get("fingerprint")
            node["parents"].append(child)
        else:
            node["parents"].append({"role": parent.get("role", "model"), "kind": parent.get("kind"),
                                    "name": parent.get("name"), "parents": []})
    for folder in _data_runs(info, run_dir):  # a curated dataset read as data: its run, back to the raw files
        if str(folder) not in seen:
            node["parents"].append(lineage(folder, "data", seen | {str(run_dir)}))
    if info.get("sources"):
        node["sources"] = info["sources"]
    return node


def _data_runs(info: dict[str, Any], run_dir: Path) -> list[Path]:
    found: list[Path] = []
    for section in ("train", "eval"):
        for source in ((info.get("config") or {}).get("data") or {}).get(section) or []:
            path = source.get("path") if isinstance(source, dict) else None
            if not path:
                continue
            folder = Path(path) if Path(path).is_absolute() else run_dir / path
            folder = folder.parent if folder.name == "final" else folder
            if (folder / RUN_FILE).is_file() and folder.resolve() not in found:
                found.append(folder.resolve())
    return found


def read_lineage(run: str) -> dict[str, Any]:
    path = Path(run)
    if not (path / RUN_FILE).is_file():
        raise UserError(f"{run} is not an llmforge run folder (no {RUN_FILE}). Name a run's output_dir.")
    return lineage(path)


def render(node: dict[str, Any], depth: int = 0) -> list[str]:
    pad = "  " * depth + ("<- " if depth else "")
    if "run_dir" not in node:
        lines = [f"{pad}{node['role']}: {node['name']} ({node['kind']})"]
    else:
        changed = f" (changed since: was {node['changed_since']})" if node.get("changed_since") else ""
        lines = [f"{pad}{node['role']}: {node['run_dir']}  [{node['stage']}, {node['status']}, "
                 f"fingerprint {node['fingerprint']}{changed}]"]
        for split, prints in node["data"].items():
            if split in ("train", "eval") and prints:
                lines.append("  " * (depth + 1) + f"   data.{split}: {', '.join(map(str, prints))}")
        for source in node.get("sources", []):
            lines.append("  " * (depth + 1) + f"   source: {source['source']} [{source.get('fingerprint', '?')}]")
    for parent in node["parents"]:
        lines += render(parent, depth + 1)
    return lines
