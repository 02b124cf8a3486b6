"""A curate run: read the sources, examine every row (in `num_proc` workers), take the decisions that
depend on earlier rows in order (exact and near duplicates, contamination), split by content and write
parquet shards and a manifest.

Everything is decided by the rows and the recipe alone (no clocks, no unordered iteration), so a run
killed at any point and run again writes the same bytes; the output is published only once complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from llmforge.config.schema import DataSource, RunConfig
from llmforge.curate.examine import Examiner, Verdict, examine_chunk, start_worker
from llmforge.curate.options import CurateOptions
from llmforge.curate.reading import fingerprint, read_rows, source_format
from llmforge.curate.similar import NearDuplicates, TestIndex
from llmforge.data.sources import describe, load_source
from llmforge.errors import UserError

log = logging.getLogger("llmforge")
CHUNK = 500
SPLITS = ("train", "validation", "test")


def _tests(options: CurateOptions) -> tuple[TestIndex | None, list[dict[str, Any]]]:
    """The decontamination index over every `against` source, and a description of each of its rows."""
    if not options.decontaminate.against:
        return None, []
    from llmforge.curate.content import content, turns

    index = TestIndex(options.decontaminate.ngram)
    rows: list[dict[str, Any]] = []
    for source in options.decontaminate.against:
        loaded = load_source(source)
        for number, row in enumerate(loaded.rows, 1):
            text = content(turns(dict(row), loaded.format, loaded.label, number - 1))
            index.add(text, f"{describe(source)}, row {number}")
            rows.append({"source": describe(source), "row": number, "text": text[:200]})
    return index, rows


def _items(sources: list[DataSource]) -> Iterator[tuple[int, dict[str, Any] | None, str | None, str]]:
    for index, source in enumerate(sources):
        for row in read_rows(source, index):
            yield index, row.value, row.error, row.where


def _verdicts(examiner: Examiner, items: Iterator[Any], workers: int) -> Iterator[tuple[Any, Verdict]]:
    chunks = iter(lambda: list(islice(items, CHUNK)), [])
    if workers <= 1:
        start_worker(examiner)
        for chunk in chunks:
            yield from zip(chunk, examine_chunk(chunk), strict=True)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with context.Pool(workers, initializer=start_worker, initargs=(examiner,)) as pool:
        pending: list[Any] = []
        for chunk in chunks:  # a bounded window: rows stream through, memory does not grow with the data
            pending.append((chunk, pool.apply_async(examine_chunk, (chunk,))))
            if len(pending) >= 2 * workers:
                done, result = pending.pop(0)
                yield from zip(done, result.get(), strict=True)
        for done, result in pending:
            yield from zip(done, result.get(), strict=True)


class Shards:
    """Kept rows per split, written as parquet files of `size` rows as they fill."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, size
        self.buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.files: dict[str, int] = Counter()
        self.rows: dict[str, int] = Counter()

    def add(self, split: str, row: dict[str, Any]) -> None:
        self.buffers[split].append(row)
        self.rows[split] += 1
        if len(self.buffers[split]) >= self.size:
            self.flush(split)

    def flush(self, split: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.buffers.pop(split, [])
        if not rows:
            return
        folder = self.folder / split
        folder.mkdir(parents=True, exist_ok=True)
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise UserError(f"curate: the kept rows do not fit one table ({exc}); give every row the same "
                            "structure for each field (e.g. 'prompt' always a string or always a list).") from None
        pq.write_table(table, folder / f"part-{self.files[split]:05d}.parquet")
        self.files[split] += 1

    def close(self) -> None:
        for split in list(self.buffers):
            self.flush(split)


def _split_of(group: str, options: CurateOptions) -> str:
    share = options.split
    if not share.validation and not share.test:
        return "train"
    value = int(hashlib.sha256(f"{share.salt}:{group}".encode()).hexdigest()[:15], 16) / 16**15
    if value < share.test:
        return "test"
    return "validation" if value < share.test + share.validation else "train"


LENGTH_BINS = 40


def histogram(before: list[int], after: list[int]) -> dict[str, Any]:
    """Rows by length in characters, before and after curation, over the same bins (counts, not rows: a
    manifest stays small whatever the dataset's size). The bins span the shortest 99% of the rows before;
    the last bin also holds every longer row, so one outlier cannot squeeze the rest into a bin."""
    ordered = sorted(before)
    top = (ordered[(len(ordered) - 1) * 99 // 100] if ordered else 0) + 1
    bins = min(LENGTH_BINS, top)  # never narrower than a character
    edges = [round(top * i / bins, 2) for i in range(bins + 1)]

    def counts(values: list[int]) -> list[int]:
        found = [0] * bins
        for value in values:
            found[min(bins - 1, value * bins // top)] += 1
        return found

    return {"unit": "characters", "edges": edges, "before": counts(before), "after": counts(after),
            "longest": ordered[-1] if ordered else 0}


def curate(cfg: RunConfig, options: CurateOptions, staging: Path) -> dict[str, Any]:
    started = time.perf_counter()
    sources = list(cfg.data.train)
    formats = [source_format(s) for s in sources]
    if len(set(formats)) > 1:
        raise UserError("curate: data.train mixes row formats (" + ", ".join(
            f"{describe(s)}: {f}" for s, f in zip(sources, formats, strict=True)) + "); curate each format in a "
            "run of its own.")
    described = [{"source": describe(s), "format": f, "fingerprint": fingerprint(s)}
                 for s, f in zip(sources, formats, strict=True)]
    tests, test_rows = _tests(options)
    need_signature = options.near_dedup.enabled or bool(options.split.validation or options.split.test)
    examiner = Examiner(options, formats, cfg.model.name, tests, need_signature)
    near = NearDuplicates(options.near_dedup.threshold, options.near_dedup.num_perm) if need_signature else None
    malformed: list[dict[str, Any]] = []
    removed: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    found: dict[int, list[str]] = defaultdict(list)
    seen: dict[str, str] = {}  # content digest -> where it was first seen
    shards = Shards(staging, options.shard_rows)
    rows_in = changed = 0
    lengths_in: list[int] = []  # characters of every readable row, and of every kept one
    lengths_out: list[int] = []

    def remove(step: str, where: str, verdict: Verdict, detail: str = "") -> None:
        removed[step] += 1
        if len(examples[step]) < options.examples:
            text = json.dumps(verdict.row, ensure_ascii=False)[:300] if verdict.row is not None else ""
            examples[step].append({"where": where, "detail": detail or verdict.detail, "row": text})

    for (index, _, _, where), verdict in _verdicts(examiner, _items(sources), options.num_proc):
        rows_in += 1
        changed += verdict.changed
        if verdict.row is not None:
            lengths_in.append(verdict.characters)
        if verdict.reason == "malformed":
            if options.on_error == "fail":
                raise UserError(f"{where}: {verdict.detail}. Fix the row, or set curate.on_error: skip to skip "
                                "malformed rows (they are listed in the manifest).")
            malformed.append({"source": describe(sources[index]), "where": where, "error": verdict.detail})
        if verdict.reason:
            remove(verdict.reason, where, verdict)
            continue
        if options.exact_dedup and verdict.digest in seen:
            remove("exact_dedup", where, verdict, f"repeats {seen[verdict.digest]}")
            continue
        seen.setdefault(verdict.digest, where)
        group = verdict.digest
        if near is not None:
            group = near.group(verdict.digest, verdict.signature)
            if group != verdict.digest and options.near_dedup.enabled:
                remove("near_dedup", where, verdict, f"a near copy of {seen.get(group, 'an earlier row')}")
                continue
        if verdict.hits:
            for hit in verdict.hits:
                found[hit].append(where)
            remove("decontaminate", where, verdict, f"holds {test_rows[verdict.hits[0]]['source']}, row "
                   f"{test_rows[verdict.hits[0]]['row']}")
            continue
        shards.add(_split_of(group, options), verdict.row)
        lengths_out.append(verdict.characters)
    shards.close()
    kept = sum(shards.rows.values())
    if kept == 0:
        if rows_in == 0:
            raise UserError("curate: data.train has no rows.")
        worst = ", ".join(f"{step} removed {count}" for step, count in removed.most_common())
        raise UserError(f"curate: every one of the {rows_in} rows was removed ({worst}). Loosen the setting of "
                        f"curate.{removed.most_common(1)[0][0].split('.')[0]}, or check the data.")
    seconds = time.perf_counter() - started
    steps = [{"step": "normalise", "changed": changed}] if options.normalise else []
    steps += [{"step": step, "removed": count, "examples": examples[step]} for step, count in sorted(removed.items())]
    manifest = {
        "rows_in": rows_in, "rows_out": kept, "format": formats[0],
        "splits": {split: shards.rows[split] for split in SPLITS if shards.rows[split]},
        "files": {split: shards.files[split] for split in SPLITS if shards.files[split]},
        "steps": steps, "malformed": malformed,
        "contamination": [{**test_rows[hit], "found_in": sorted(wheres)[:options.examples],
                           "training_rows": len(wheres)} for hit, wheres in sorted(found.items())],
        "test_rows_checked": len(test_rows),
        "sources": described,
        "lengths": histogram(lengths_in, lengths_out),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return {"sources": described, "data": {"fingerprints": {"train": [d["fingerprint"] for d in described]}},
            "metrics": {"rows_in": rows_in, "rows_out": kept, "rows_removed": rows_in - kept,
                        "malformed_rows": len(malformed), "contaminated_test_rows": len(found),
                        "rows_per_second": rows_in / max(seconds, 1e-9)}}
