"""`llmforge plot`: one PNG per quantity the run logged, none for what it did not log."""

from __future__ import annotations

import json

from llmforge.report.plots import moving_average, plot_run, series
from tests.helpers import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run, rows):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 9, \"lo")


def test_moving_average_by_hand():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_series_skips_summary_rows_and_a_line_cut_by_a_kill(tmp_path):
    write_metrics(tmp_path, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5},
                             {"step": 2, "train_loss": 3.0, "loss": 9.0}])
    from llmforge.report.plots import read_metrics

    assert series(read_metrics(tmp_path), "loss") == ([1, 2], [2.0, 1.5])


def test_figures_only_for_what_the_run_logged(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s, "reward": s * 0.1, "kl": 0.01 * s} for s in range(1, 41)]
    write_metrics(tmp_path / "run", rows + [{"step": 40, "eval_accuracy": 0.5}])
    written = plot_run(tmp_path / "run", tmp_path / "plots", prefix="ppo-")
    assert sorted(p.name for p in written) == ["ppo-accuracy.png", "ppo-kl.png", "ppo-loss.png", "ppo-reward.png"]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def test_cli_writes_beside_the_run_and_refuses_a_folder_without_logs(tmp_path):
    write_metrics(tmp_path / "run", [{"step": s, "loss": 1.0 / s} for s in range(1, 5)])
    result = run_cli("plot", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "plots" / "loss.png").is_file()
    result = run_cli("plot", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no metrics.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_identical_series_are_one_line_named_for_both():
    from llmforge.report.plots import merge_identical

    x, same, other = [1, 2, 3], [0.1, 0.5, 0.9], [0.1, 0.4, 0.9]
    merged = merge_identical([("reward", x, same), ("rewards/arithmetic", x, list(same)), ("rewards/rm", x, other),
                              ("kl", [], [])])
    assert [name for name, _, _ in merged] == ["reward = rewards/arithmetic", "rewards/rm"]


def test_token_accuracy_and_exact_match_get_separate_figures(tmp_path):
    """Teacher-forced token accuracy (~0.9) and greedy exact match (~0.5) are not one quantity on one axis."""
    rows = [{"step": s, "loss": 1.0 / s, "mean_token_accuracy": 0.8 + s / 1000} for s in range(1, 11)]
    write_metrics(tmp_path / "run", rows + [{"step": 10, "eval_accuracy": 0.45}])
    names = sorted(p.name for p in plot_run(tmp_path / "run", tmp_path / "plots"))
    assert names == ["accuracy.png", "loss.png", "token-accuracy.png"]


def test_a_curate_manifest_gets_its_lengths_drawn_and_an_empty_one_none(tmp_path):
    from llmforge.curate.run import histogram
    from llmforge.report.plots import plot_lengths

    drawn = plot_lengths({"lengths": histogram([12, 12, 17, 781], [12])}, tmp_path / "lengths.png")
    assert drawn is not None and drawn.read_bytes().startswith(PNG_MAGIC)
    assert plot_lengths({"lengths": histogram([], [])}, tmp_path / "none.png") is None
    assert plot_lengths({}, tmp_path / "none.png") is None
