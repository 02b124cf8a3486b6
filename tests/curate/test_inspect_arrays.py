"""`llmforge data inspect` on a JSON array of each row format (Alpaca's own file shape): the format and the
duplicates read as from the same rows as JSON Lines, with and without --out; a source with nothing to plot
still gets its report."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import cli_command

MESSAGES = [{"role": "user", "content": "Q{i}"}, {"role": "assistant", "content": "A{i}"}]
ROWS = {
    "alpaca": lambda i: {"instruction": f"Add {i} and 2.", "input": "", "output": str(i + 2)},
    "sharegpt": lambda i: {"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": f"A{i}"}]},
    "messages": lambda i: {"messages": [{k: v.format(i=i) for k, v in m.items()} for m in MESSAGES]},
    "preference": lambda i: {"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"},
}


def rows_of(fmt: str) -> list[dict]:
    unique = [ROWS[fmt](i) for i in range(12)]
    return unique + [unique[3], unique[3], unique[7]]  # three exact copies


@pytest.mark.parametrize("fmt", sorted(ROWS))
@pytest.mark.parametrize("out", [False, True])
def test_a_json_array_reads_as_its_format_with_its_duplicates(tmp_path, fmt, out):
    array, lines = tmp_path / "rows.json", tmp_path / "rows.jsonl"
    array.write_text(json.dumps(rows_of(fmt), indent=2))
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows_of(fmt)))
    reports = []
    for source in (array, lines):
        extra = ["--out", str(tmp_path / f"out-{source.suffix[1:]}")] if out else []
        result = subprocess.run(cli_command("data", "inspect", str(source), *extra), capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        reports.append(result.stdout)
        assert f"format: {fmt}" in result.stdout and "malformed rows: 0 (0.0%)" in result.stdout
        assert "exact duplicates: 3 (20.0%)" in result.stdout
        if out:
            assert (tmp_path / f"out-{source.suffix[1:]}" / "report.html").is_file()
    same = [[line for line in report.splitlines() if "rows.json" not in line and "written:" not in line]
            for report in reports]
    assert same[0] == same[1]  # everything but the file names


def test_a_source_with_nothing_readable_is_reported_not_a_traceback(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps([1, 2, "three"]))
    result = subprocess.run(cli_command("data", "inspect", str(broken), "--out", str(tmp_path / "out")),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "malformed rows: 3 (100.0%)" in result.stdout and "Traceback" not in result.stderr
    assert (tmp_path / "out" / "report.md").is_file()
