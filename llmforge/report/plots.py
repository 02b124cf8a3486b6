"""PNG curves of a run from its metrics.jsonl: what `llmforge plot` and the pipeline report show.

One figure per quantity (loss, reward, KL, entropy, accuracy, margin), with whichever of the
run's logged series measure it; a figure with nothing to show is not written. Noisy
per-step series (PPO/GRPO rewards) get a moving average drawn over the raw points.
"""

from __future__ import annotations

from pathlib import Path

from llmforge.engine.run_record import MetricsLog
from llmforge.errors import UserError

# figure name -> (y label, series keys in metrics.jsonl; "eval_" ones are the held-out points). Quantities
# on different scales get figures of their own: training token accuracy (teacher-forced, per token) is
# not the held-out exact match of greedy answers.
FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "loss": ("loss", ("loss", "eval_loss")),
    "reward": ("reward", ("reward", "rewards/reward_model", "rewards/arithmetic", "rewards/final_number",
                          "mean_reward", "eval_mean_reward", "rewards/chosen", "rewards/rejected")),
    "kl": ("KL (nats)", ("kl", "objective/kl")),
    "entropy": ("entropy (nats per token)", ("entropy",)),
    "accuracy": ("exact match / pair accuracy", ("accuracy", "eval_accuracy", "rewards/accuracies",
                                                 "eval_rewards/accuracies")),
    "token-accuracy": ("token accuracy (teacher-forced)", ("mean_token_accuracy", "eval_mean_token_accuracy")),
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


def merge_identical(drawn: list[tuple[str, list, list]]) -> list[tuple[str, list, list]]:
    """Series with points, one line for series that are the same numbers (PPO's `reward` is
    `rewards/arithmetic` when that is its only source): one line labelled with both names, not one line
    hidden under another."""
    merged: list[tuple[str, list, list]] = []
    for key, x, y in drawn:
        if not x:
            continue
        same = next((i for i, (_, mx, my) in enumerate(merged) if mx == x and my == y), None)
        if same is None:
            merged.append((key, x, y))
        else:
            merged[same] = (f"{merged[same][0]} = {key}", x, y)
    return merged


def plot_run(run: Path, out_dir: Path, prefix: str = "") -> list[Path]:
    """Write PREFIX<figure>.png under out_dir for each figure the run has data for; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (label, keys) in FIGURES.items():
        drawn = merge_identical([(key, *series(rows, key)) for key in keys])
        if not drawn:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
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
        ax.legend(fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{prefix}{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_lengths(manifest: dict, out: Path) -> Path | None:
    """A curated dataset's rows by length, before and after curation, as one PNG (None without the counts)."""
    lengths = manifest.get("lengths")
    if not lengths or not any(lengths["before"]):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = lengths["edges"]
    widths = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    for key, label in (("before", f"before ({sum(lengths['before']):,} rows)"),
                       ("after", f"after ({sum(lengths['after']):,} rows)")):
        ax.bar(edges[:-1], lengths[key], width=widths, align="edge", alpha=0.55, label=label)
    longest = lengths.get("longest", edges[-1])
    ax.set_xlabel(f"length ({lengths['unit']})" + (f"; the last bar holds every row up to {longest:,}"
                                                    if longest > edges[-1] else ""))
    ax.set_ylabel("rows")
    ax.set_yscale("symlog", linthresh=1)  # a curation that keeps 2% of its rows still shows them
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
