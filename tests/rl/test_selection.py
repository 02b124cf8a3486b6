"""PPO's model selection by hand: best value and step, patience with min_delta, state through a checkpoint."""

from __future__ import annotations

import pytest

from llmforge.errors import UserError
from llmforge.rl.selection import Selection


def test_best_and_patience_on_a_constructed_curve():
    selection = Selection("eval_accuracy", greater_is_better=True, patience=2, min_delta=0.01)
    curve = [(10, 0.30), (20, 0.40), (30, 0.405), (40, 0.39), (50, 0.50)]
    stops = [selection.update({"eval_accuracy": value}, step) for step, value in curve]
    # 0.405 beats 0.40 but by less than min_delta: it becomes the best, yet counts as no improvement
    assert stops == [False, False, False, True, False]
    assert selection.best_step == 50 and selection.best_value == 0.50


def test_lower_is_better_and_the_state_round_trips():
    selection = Selection("eval_loss", greater_is_better=False, patience=3)
    selection.update({"eval_loss": 2.0}, 5)
    selection.update({"eval_loss": 2.5}, 10)
    resumed = Selection("eval_loss", greater_is_better=False, patience=3)
    resumed.load_state_dict(selection.state_dict())
    assert (resumed.best_step, resumed.best_value, resumed.waited) == (5, 2.0, 1)
    with pytest.raises(UserError, match="eval_reward"):
        resumed.update({"eval_reward": 1.0}, 15)
