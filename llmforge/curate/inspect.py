"""`llmforge data inspect SOURCE...`: what a dataset holds before anything trains on it.

Rows and format, length distributions per role (characters, and tokens with a model's tokenizer), turns
per conversation, empty answers, exact and near duplicates, the share over a length limit; printed as
markdown and written (with PNG histograms and an HTML page) to a folder.
"""

from __future__ import annotations

import html
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from llmforge.config.schema import DataSource
from llmforge.curate.content import answers, content, digest, turns
from llmforge.curate.reading import read_rows, source_format
from llmforge.curate.similar import NearDuplicates, signature
from llmforge.errors import UserError


def as_source(text: str, fmt: str | None = None) -> DataSource:
    """A command-line SOURCE: a local file or folder, else a built-in or hub dataset (`name` or `name:split`)."""
    if Path(text).exists():
        return DataSource(path=text, format=fmt)
    name, _, split = text.partition(":")
    return DataSource(name=name, split=split or "train", format=fmt)


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "p50": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "p99": ordered[int(0.99 * (len(ordered) - 1))], "max": ordered[-1], "mean": statistics.fmean(ordered)}


def inspect_source(source: DataSource, tokenizer: Any = None, max_length: int | None = None,
                   near_threshold: float = 0.8) -> dict[str, Any]:
    fmt = source_format(source)
    lengths: dict[str, list[int]] = defaultdict(list)  # "chars:role" / "tokens:role" / "tokens:row"
    turn_counts: Counter[int] = Counter()
    seen: set[str] = set()
    near = NearDuplicates(near_threshold, 64)
    rows = malformed = empty = exact = near_copies = over = 0
    for row in read_rows(source, 0):
        rows += 1
        if row.value is None:
            malformed += 1
            continue
        try:
            parts = turns(row.value, fmt, row.where, 0)
        except Exception:  # noqa: BLE001 - a malformed row of this format
            malformed += 1
            continue
        turn_counts[len(parts)] += 1
        empty += any(not a.strip() for a in answers(parts))
        for role, text in parts:
            lengths[f"chars:{role}"].append(len(text))
        text = content(parts)
        if tokenizer is not None:
            count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            lengths["tokens:row"].append(count)
            over += bool(max_length and count > max_length)
        key = digest(text)
        if key in seen:
            exact += 1
            continue
        seen.add(key)
        near_copies += near.group(key, signature(text, 5, 64)) != key
    if rows == 0:
        raise UserError(f"{source.path or source.name}: no rows.")
    return {"source": source.path or f"{source.name} ({source.split})", "format": fmt, "rows": rows,
            "malformed": malformed, "empty_answers": empty, "exact_duplicates": exact,
            "near_duplicates": near_copies, "turns": dict(sorted(turn_counts.items())),
            "over_max_length": over if tokenizer is not None and max_length else None, "max_length": max_length,
            "lengths": {key: _summary(values) for key, values in sorted(lengths.items())},
            "_values": lengths}


def render(reports: list[dict[str, Any]]) -> str:
    lines = ["# Data inspection", ""]
    for r in reports:
        def share(n: int, rows: int = r["rows"]) -> str:
            return f"{n} ({100 * n / rows:.1f}%)"

        lines += [f"## {r['source']}", "", f"- rows: {r['rows']:,}, format: {r['format']}",
                  f"- malformed rows: {share(r['malformed'])}", f"- rows with an empty answer: {share(r['empty_answers'])}",
                  f"- exact duplicates: {share(r['exact_duplicates'])}; near duplicates (MinHash, Jaccard >= 0.8): "
                  f"{share(r['near_duplicates'])}",
                  f"- parts per row (turns): {', '.join(f'{k}: {v:,}' for k, v in r['turns'].items())}"]
        if r["over_max_length"] is not None:
            lines.append(f"- rows over {r['max_length']} tokens: {share(r['over_max_length'])}")
        lines += ["", "| length | min | p50 | p90 | p99 | max | mean |", "|---|---|---|---|---|---|---|"]
        for key, s in r["lengths"].items():
            unit, role = key.split(":")
            lines.append(f"| {unit} of {role} | " + " | ".join(f"{s[k]:,.0f}" for k in
                                                              ("min", "p50", "p90", "p99", "max", "mean")) + " |")
        lines.append("")
    return "\n".join(lines)


def write(reports: list[dict[str, Any]], out: Path) -> Path:
    """report.md, report.html and one PNG histogram per source into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    text = render(reports)
    images = []
    for n, r in enumerate(reports):
        values = r["_values"]
        keys = [k for k in values if values[k]]
        if not keys:  # nothing readable in this source: its table says so, there is nothing to draw
            continue
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.6), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            ax.hist(values[key], bins=40)
            ax.set_title(key.replace(":", " of "), fontsize=9)
        fig.tight_layout()
        name = f"lengths-{n}.png"
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        images.append(name)
    (out / "report.md").write_text(text + "\n" + "".join(f"![lengths]({i})\n" for i in images))
    body = "".join(f"<pre>{html.escape(text)}</pre>") + "".join(f'<img src="{i}" alt="lengths">' for i in images)
    (out / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>Data inspection</title>{body}")
    return out
