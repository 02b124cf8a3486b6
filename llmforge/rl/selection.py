"""Model selection for our PPO loop, the rule transformers applies to the Trainer stages: track the best value
of `checkpoint.best_metric` and the step it was reached at, and count evaluations without an improvement larger
than `min_delta` (early stopping's patience). Its state goes into every checkpoint, so a resumed run keeps the
same best and stops at the same step."""

from __future__ import annotations

from typing import Any


class Selection:
    def __init__(self, metric: str | None, greater_is_better: bool, patience: int | None = None,
                 min_delta: float = 0.0) -> None:
        self.metric, self.greater, self.patience, self.min_delta = metric, greater_is_better, patience, min_delta
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.waited = 0

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record an evaluation; True when training should stop (patience used up)."""
        if self.metric is None:
            return False
        if self.metric not in metrics:
            from llmforge.errors import UserError

            raise UserError(f"checkpoint.best_metric '{self.metric}' is not among ppo's evaluation metrics: "
                            f"{', '.join(k for k in metrics if k.startswith('eval_'))}.")
        value = float(metrics[self.metric])
        better = self.best_value is None or (value > self.best_value if self.greater else value < self.best_value)
        large = self.best_value is None or abs(value - self.best_value) > self.min_delta
        self.waited = 0 if better and large else self.waited + 1
        if better:
            self.best_value, self.best_step = value, step
        return self.patience is not None and self.waited >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_step, self.waited = state["best_value"], state["best_step"], state["waited"]
