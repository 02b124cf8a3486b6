"""PNG curves of a run from its metrics.jsonl: what `llmforge plot` and the pipeline report show.

One figure per quantity (loss, reward, KL, accuracy, margin), with whichever of the
run's logged series measure it; a figure with nothing to show is not written. Noisy
per-step series (PPO/GRPO rewards) get a moving average drawn over the raw points.
"""

from __future__ import annotations

from pathlib import Path

from llmforge.engine.run_record import MetricsLog
from llmforge.errors import UserError

# figure name -> (y label, series keys in metrics.jsonl; "eval_" ones are the held-out points)
FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "loss": ("loss", ("loss", "eval_loss")),
    "reward": ("reward", ("reward", "rewards/reward_model", "rewards/arithmetic", "rewards/final_number",
                          "mean_reward", "eval_mean_reward", "rewards/chosen", "rewards/rejected")),
    "kl": ("KL (nats)", ("kl", "objective/kl")),
    "accuracy": ("accuracy", ("accuracy", "eval_accuracy", "rewards/accuracies", "eval_rewards/accuracies",
                              "mean_token_accuracy")),
    "margin": ("margin", ("margin", "eval_margin", "rewards/margins", "eval_rewards/margins")),
}
SMOOTH_FROM = 30  # points; fewer are drawn as they are


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{run}: no metrics.jsonl here; give the output_dir of an llmforge run.")
    return MetricsLog(path).read()


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in rows
              if "step" in row and isinstance(row.get(key), (int, float)) and "train_loss" not in row]
    return [p[0] for p in points], [p[1] for p in points]


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_run(run: Path, out_dir: Path, prefix: str = "") -> list[Path]:
    """Write PREFIX<figure>.png under out_dir for each figure the run has data for; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (label, keys) in FIGURES.items():
        drawn = [(key, *series(rows, key)) for key in keys]
        drawn = [(key, x, y) for key, x, y in drawn if x]
        if not drawn:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        for key, x, y in drawn:
            held_out = key.startswith("eval_")
            if held_out:
                ax.plot(x, y, marker="o", linestyle="--", label=key)
            elif len(x) >= SMOOTH_FROM:
                line, = ax.plot(x, y, alpha=0.25)
                ax.plot(x, moving_average(y, max(3, len(x) // 15)), color=line.get_color(), label=key)
            else:
                ax.plot(x, y, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{Path(run).name}: {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{prefix}{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
