"""What a run shows the person who started it: a banner, then a progress bar with ETA on a terminal or one
readable line per logging step in a log file, then a summary. Numbers print as numbers (transformers' own
printer shows them as quoted strings), and the libraries' noise stays out of sight unless --verbose."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("llmforge")
SHOWN = ("loss", "reward", "kl", "eval_loss", "eval_accuracy", "eval_reward", "learning_rate", "grad_norm",
         "train_tokens_per_second")
SHORT = {"learning_rate": "lr", "train_tokens_per_second": "tok/s"}


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3g}"


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def trains(cfg: Any) -> str:
    """What a run trains, in words: the whole model, its last layers, or adapters of a rank."""
    adapter = cfg.adapter
    return {"none": "full training", "freeze": f"last {adapter.trainable_layers} layers trained"}.get(
        adapter.type, f"{adapter.type.upper() if adapter.type != 'qlora' else 'QLoRA'} r={adapter.r}")


def banner(cfg: Any, model: dict[str, Any], data: dict[str, Any], resume: Any, processes: int) -> str:
    """The lines a run opens with: what runs, on what, how long, where it writes."""
    params = model.get("parameters")
    size = f"{params / 1e6:,.1f}M parameters" if params else "size unknown"
    trainable = model.get("trainable_parameters")
    if trainable and params and trainable != params:
        size += f" ({trainable / 1e6:,.2f}M trained)"
    batch = cfg.train.micro_batch_size * cfg.train.grad_accum_steps * processes
    rows = data.get("train_samples") or data.get("train_pairs") or data.get("train_prompts") or data.get(
        "train_blocks")
    tokens = data.get("train_tokens")
    steps = f"{cfg.train.max_steps} steps" if cfg.train.max_steps > 0 else f"{cfg.train.epochs:g} epochs"
    lines = [f"llmforge {cfg.stage}: {cfg.model.name} ({model.get('family', '?')}, {size}, {trains(cfg)}"
             + (", gradient checkpointing" if model.get("gradient_checkpointing") else "") + ")",
             f"  data: {rows:,} rows" if rows else "  data: streamed",
             f"  {steps} x {batch} rows per step ({cfg.train.micro_batch_size} x {cfg.train.grad_accum_steps} "
             f"accumulated x {processes} process{'es' if processes > 1 else ''}) -> {cfg.output_dir}"]
    if tokens:
        lines[1] += f", {tokens:,} tokens"
    if resume is not None:
        lines.append(f"  resuming from {resume}")
    return "\n".join(lines)


class ConsoleCallback(TrainerCallback):
    """A tqdm bar with ETA and the latest figures when stderr is a terminal; a line per log otherwise."""

    def __init__(self, interactive: bool | None = None) -> None:
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar = None
        self.started = time.time()
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.time(), state.global_step
        if self.interactive and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True,
                            leave=True, file=sys.stderr)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        shown = {SHORT.get(k, k): v for k in SHOWN if isinstance((v := logs.get(k)), (int, float))}
        if self.bar is not None:
            self.bar.set_postfix({k: number(v) for k, v in shown.items()}, refresh=False)
            return control
        if "train_loss" in logs or not shown:  # the closing summary is printed by the command
            return control
        done = state.global_step - self.first_step
        elapsed = time.time() - self.started
        eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 and state.max_steps else None
        figures = "  ".join(f"{k} {number(v)}" for k, v in shown.items())
        timing = f"{duration(elapsed)} elapsed" + (f", eta {duration(eta)}" if eta is not None else "")
        print(f"step {state.global_step}/{state.max_steps}  {figures}  ({timing})", file=sys.stderr, flush=True)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return control


def summary(status: str, output_dir: Any, metrics: dict[str, Any], seconds: float | None = None) -> str:
    keys = ("train_loss", "eval_loss", "eval_perplexity", "eval_accuracy", "eval_margin", "eval_reward")
    shown = "  ".join(f"{key} {number(metrics[key])}" for key in keys if isinstance(metrics.get(key), (int, float)))
    took = f" in {duration(seconds)}" if seconds else ""
    return f"{status}{took}: {output_dir}" + (f"  {shown}" if shown else "")
