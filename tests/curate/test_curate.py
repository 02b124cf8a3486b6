"""The curate stage against known answers: a set of distinct rows with injected exact copies, near copies
(character edits, reordered sentences) and copied test rows; malformed rows; an emptied result; a SIGKILL
mid-run; a curated dataset trained on with its lineage; `llmforge data inspect`."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli_command, kill_when, run_cli, write_recipe

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 9))) for _ in range(count)]


def _document(rng: random.Random, vocabulary: list[str]) -> str:
    sentences = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 12))).capitalize() + "."
                 for _ in range(rng.randint(4, 6))]
    return " ".join(sentences)


def _edit(rng: random.Random, text: str, edits: int = 3) -> str:
    chars = list(text)
    changed: set[int] = set()
    while len(changed) < edits:
        i = rng.randrange(len(chars))
        if chars[i].isalpha() and i not in changed:
            chars[i] = rng.choice([c for c in LETTERS if c != chars[i].lower()])
            changed.add(i)
    return "".join(chars)


def _reorder(rng: random.Random, text: str) -> str:
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()]
    while True:
        shuffled = sentences[:]
        rng.shuffle(shuffled)
        if shuffled != sentences:
            return " ".join(shuffled)


@pytest.fixture(scope="module")
def injected(tmp_path_factory) -> dict:
    """400 distinct documents; 40 exact copies (case and spacing changed), 30 copies with 3 characters edited,
    30 with their sentences reordered; 20 test documents, each copied once into train; 3 malformed lines."""
    rng = random.Random(0)
    vocabulary = _words(rng, 3000)
    clean = [_document(rng, vocabulary) for _ in range(400)]
    tests = [_document(rng, vocabulary) for _ in range(20)]
    exact = [("  " + c.upper() + " ") for c in rng.sample(clean, 40)]
    pairs = [(c, _edit(rng, c)) for c in rng.sample(clean, 30)] + [(c, _reorder(rng, c)) for c in rng.sample(clean, 30)]
    near = [copy for _, copy in pairs]
    rows = clean + exact + near + tests
    kinds = ["clean"] * 400 + ["exact"] * 40 + ["near"] * 60 + ["test"] * 20
    order = list(range(len(rows)))
    rng.shuffle(order)
    order.sort(key=lambda i: kinds[i] != "clean")  # originals first: a copy is always the later row
    folder = tmp_path_factory.mktemp("curate-data")
    lines = [json.dumps({"text": rows[i]}) for i in order]
    lines[10:10] = ["{broken json", json.dumps(["a list"]), json.dumps({"text": 7})]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in tests))
    return {"folder": folder, "clean": clean, "tests": tests, "near": near, "pairs": pairs}


def _curate(folder: Path, injected: dict, name: str, **curate) -> dict:
    recipe = write_recipe(folder, f"{name}.yaml", base={
        "stage": "curate", "model": {"name": "tiny-llama"},
        "data": {"train": [{"path": str(injected["folder"] / "train.jsonl")}]},
        "curate": {"decontaminate": {"against": [{"path": str(injected["folder"] / "test.jsonl")}]}, **curate}},
        output_dir=str(folder / name))
    result = run_cli("train", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((folder / name / "final" / "manifest.json").read_text())


def _texts(run: Path, split: str = "train") -> list[str]:
    import pyarrow.parquet as pq

    return [t for f in sorted((run / "final" / split).glob("*.parquet")) for t in pq.read_table(f)["text"].to_pylist()]


def test_known_duplicates_and_contamination_are_found(tmp_path, injected):
    manifest = _curate(tmp_path, injected, "run")
    removed = {s["step"]: s.get("removed") for s in manifest["steps"]}
    assert removed["exact_dedup"] == 40  # every exact copy
    kept = set(_texts(tmp_path / "run"))
    near_left = [n for n in injected["near"] if n in kept]
    assert len(near_left) <= 3  # >= 95% of the 60 near copies removed
    clean_lost = [c for c in injected["clean"] if c not in kept]
    assert len(clean_lost) <= 4  # <= 1% of the 400 distinct rows
    found = {c["row"] for c in manifest["contamination"]}
    assert found == set(range(1, 21)) and not any(t in kept for t in injected["tests"])
    assert manifest["test_rows_checked"] == 20
    assert [m["where"] for m in manifest["malformed"]] == ["train.jsonl, line 11", "train.jsonl, line 12",
                                                           "train.jsonl, line 13"]
    assert manifest["rows_in"] == 523 and manifest["rows_out"] == len(kept)
    # the pipeline report's data section: rows removed per step, the contamination table
    from llmforge.report.document import data_section

    blocks = data_section(tmp_path / "run")
    steps = {row[0]: row[1] for row in blocks[1][2]}
    assert steps["exact_dedup"] == "40" and steps["malformed"] == "3"
    assert "20 of 20 test rows were found" in blocks[2][1] and len(blocks[3][2]) == 20


def test_split_keeps_near_copies_together(tmp_path, injected):
    """With near copies kept (near_dedup off), a split puts each document and its near copies on one side."""
    manifest = _curate(tmp_path, injected, "split", near_dedup={"enabled": False},
                       split={"validation": 0.2, "test": 0.2})
    sides = {split: set(_texts(tmp_path / "split", split)) for split in ("train", "validation", "test")}
    assert all(len(s) > 40 for s in sides.values()) and manifest["splits"]["test"] == len(sides["test"])
    where = {text: split for split, texts in sides.items() for text in texts}
    apart = [(o, c) for o, c in injected["pairs"] if where[o] != where[c]]
    assert not apart, [(_jaccard(o, c), where[o], where[c]) for o, c in apart]


def _jaccard(a: str, b: str, k: int = 5) -> float:
    from llmforge.curate.content import canonical

    a, b = canonical(a), canonical(b)
    x, y = {a[i:i + k] for i in range(len(a) - k + 1)}, {b[i:i + k] for i in range(len(b) - k + 1)}
    return round(len(x & y) / len(x | y), 3)


def test_emptied_result_and_failing_on_malformed_rows(tmp_path, injected):
    recipe = write_recipe(tmp_path, base={"stage": "curate", "model": {"name": "tiny-llama"},
                                          "data": {"train": [{"path": str(injected["folder"] / "train.jsonl")}]},
                                          "curate": {"lengths": {"max_chars": 10}}}, output_dir=str(tmp_path / "e"))
    result = run_cli("train", str(recipe))
    assert result.returncode == 2 and "lengths.max_chars removed 520" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "e" / "final").exists()
    strict = run_cli("train", str(recipe), "curate.lengths.max_chars=null", "curate.on_error=fail",
                     f"output_dir={tmp_path / 'f'}")
    assert strict.returncode == 2 and "train.jsonl, line 11: not valid JSON" in strict.stderr


def test_sigkill_mid_run_then_rerun_writes_the_same_bytes(tmp_path):
    base = {"stage": "curate", "model": {"name": "tiny-llama"},
            "data": {"train": [{"name": "tinytext", "options": {"num_documents": 8000}}]},
            "curate": {"shard_rows": 500, "split": {"validation": 0.05}}}
    whole = run_cli("train", str(write_recipe(tmp_path, "a.yaml", base=base, output_dir=str(tmp_path / "a"))))
    assert whole.returncode == 0, whole.stderr[-2000:]
    recipe = write_recipe(tmp_path, "b.yaml", base=base, output_dir=str(tmp_path / "b"))
    process = subprocess.Popen(cli_command("train", str(recipe)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    kill_when(process, lambda: (tmp_path / "b" / ".final-staging" / "train" / "part-00002.parquet").exists(),
              timeout=300)
    assert not (tmp_path / "b" / "final").exists()
    again = run_cli("train", str(recipe))
    assert again.returncode == 0, again.stderr[-2000:]
    files = sorted(p.relative_to(tmp_path / "a" / "final") for p in (tmp_path / "a" / "final").rglob("*")
                   if p.is_file())
    assert len(files) > 10
    for name in files:
        assert (tmp_path / "a" / "final" / name).read_bytes() == (tmp_path / "b" / "final" / name).read_bytes()


def test_a_curated_dataset_trains_with_lineage_to_the_raw_file(tmp_path, injected):
    _curate(tmp_path, injected, "cur", split={"validation": 0.1})
    sft = write_recipe(tmp_path, "pre.yaml", base={
        "stage": "pretrain", "model": {"name": "tiny-llama"},
        "data": {"train": [{"path": str(tmp_path / "cur")}], "eval": [{"path": str(tmp_path / "cur"),
                                                                       "split": "validation"}], "max_length": 32},
        "train": {"max_steps": 2, "micro_batch_size": 4}}, output_dir=str(tmp_path / "pre"))
    assert run_cli("train", str(sft)).returncode == 0
    lineage = run_cli("lineage", str(tmp_path / "pre"))
    assert "<- data: " in lineage.stdout and "[curate, completed" in lineage.stdout
    assert "train.jsonl" in lineage.stdout
    from llmforge.data.sources import dataset_folder
    from llmforge.errors import UserError

    with pytest.raises(UserError, match=r"has no 'test' split \(it has: train, validation\)"):
        dataset_folder(tmp_path / "cur", "test", "data source")


def test_data_inspect_reports_duplicates(tmp_path, injected):
    result = run_cli("data", "inspect", str(injected["folder"] / "train.jsonl"), "--model", "tiny-llama",
                     "--max-length", "64", "--out", str(tmp_path / "insp"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows: 523, format: text" in result.stdout and "malformed rows: 3" in result.stdout
    assert "exact duplicates: 40 " in result.stdout
    assert (tmp_path / "insp" / "report.html").is_file() and (tmp_path / "insp" / "lengths-0.png").is_file()
