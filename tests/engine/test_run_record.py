"""metrics.jsonl as the record of a whole run, across resumes."""

from __future__ import annotations

import json

import pytest

from llmforge.engine.run_record import MetricsLog


def test_mean_loss_weights_each_logged_window_by_its_steps(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for row in ({"step": 5, "loss": 1.0}, {"step": 10, "loss": 0.5}, {"step": 10, "eval_loss": 9.0},
                {"step": 12, "loss": 0.2}, {"step": 12, "train_loss": 7.0}):
        log.append(row)
    assert log.mean_loss() == pytest.approx((5 * 1.0 + 5 * 0.5 + 2 * 0.2) / 12)


def test_mean_loss_after_a_resume_counts_the_steps_before_it_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in (
        {"step": 5, "loss": 1.0}, {"step": 10, "loss": 0.5}, {"step": 15, "loss": 0.4})) + '{"step": 2')
    log = MetricsLog(path)
    log.truncate_after(10)  # resumed from checkpoint-10: steps 11-15 are trained and logged again
    log.append({"step": 15, "loss": 0.3})
    assert log.mean_loss() == pytest.approx((5 * 1.0 + 5 * 0.5 + 5 * 0.3) / 15)
    assert MetricsLog(tmp_path / "none.jsonl").mean_loss() is None
