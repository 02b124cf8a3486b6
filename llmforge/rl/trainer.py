"""Our PPO loop: rollout, then several epochs of clipped updates over shuffled mini-batches.

It offers the engine what a transformers Trainer does (`train`, `log`, `final_model`, the
same callbacks), so checkpoint marking, metrics.jsonl, tensorboard, the NaN guard and
the atomic publication of final/ are the engine's, shared with every stage. The loop
itself runs on accelerate, which gives DDP, FSDP2 and DeepSpeed one code path.

Checkpoints hold everything that decides the future of the run: policy and value
weights, the optimizer and every process's RNG state (accelerate's files, read with
weights_only), and the scheduler, the KL controller and the step (which fixes the prompt
position: prompt order is a pure function of seed and epoch) as JSON. Resuming from one
continues exactly as if never stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, get_scheduler
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, TrainerControl, TrainerState
from transformers.trainer_utils import TrainOutput

from llmforge.engine.files import atomic_write_json
from llmforge.rl.core import KLController, masked_mean, policy_loss, value_loss
from llmforge.rl.evaluation import evaluate_policy
from llmforge.rl.models import PolicyAndValue, disable_dropout, gathered_for_generation
from llmforge.rl.rollout import Rollout, RolloutSettings, make_rollout
from llmforge.rl.sampling import ContinuousSampler
from llmforge.rl.selection import Selection

LOOP_STATE = "ppo_state.json"  # step, KL controller and scheduler: what accelerate's state files do not hold


class Progress:
    """The step counter, saved in checkpoints through accelerate like any other stateful object."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def prompt_order(count: int, epoch: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(count, generator=generator).tolist()


def prompts_for_step(count: int, step: int, per_process: int, rank: int, world: int, seed: int) -> list[int]:
    """Indices of this process's prompts at `step`: each step takes the next per_process x world prompts of a
    seeded shuffle of the set (reshuffled every pass), so the position is known from the step alone."""
    first = step * per_process * world + rank * per_process
    indices, cache = [], {}
    for i in range(first, first + per_process):
        epoch = i // count
        if epoch not in cache:
            cache[epoch] = prompt_order(count, epoch, seed)
        indices.append(cache[epoch][i % count])
    return indices


class PPOTrainer:
    def __init__(self, model: Any, args: Any, train_dataset: Any, eval_dataset: Any = None,
                 processing_class: Any = None, callbacks: list[Any] | None = None, *, make_accelerator: Any,
                 value_model: Any, ref_model: Any, scorer: Any, options: Any, stop_ids: list[int],
                 value_scale: tuple[float, float] = (0.0, 1.0), engine: str = "padded",
                 eval_items: list[dict[str, Any]] | None = None, eval_every: int | None = None,
                 selection: Selection | None = None, chunked: bool = True) -> None:
        self.args, self.options = args, options
        self.eval_items, self.eval_every = eval_items or [], eval_every
        self.selection = selection or Selection(None, True)
        self.accelerator = accelerator = make_accelerator()
        self.tokenizer, self.scorer, self.ref_model = processing_class, scorer, ref_model
        self.prompts = train_dataset
        disable_dropout(model, value_model)
        if getattr(args, "activation_checkpointing", False):
            for trained in (m for m in (model, value_model) if m is not None):
                trained.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if ref_model is not None:
            ref_model.to(accelerator.device).eval().requires_grad_(False)
        scorer.to(accelerator.device)
        world = accelerator.num_processes
        self.max_steps = args.max_steps if args.max_steps > 0 else math.ceil(
            args.num_train_epochs * len(train_dataset) / (options.rollout_batch_size * world))
        mini_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
        self.updates_per_step = (options.ppo_epochs * options.rollout_batch_size * options.samples_per_prompt
                                 // mini_batch)
        combined = PolicyAndValue(model, value_model, value_scale, options.temperature, chunked)
        optimizer = self._optimizer(combined)
        total = self.max_steps * self.updates_per_step
        self.scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(total),
                                       num_training_steps=total, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        self.model_wrapped, self.optimizer = accelerator.prepare(combined, optimizer)
        self.model = accelerator.unwrap_model(self.model_wrapped)
        self.kl = KLController(options.kl_coef, options.kl_target, options.kl_horizon)
        self.progress = Progress()
        self.settings = RolloutSettings(
            max_new_tokens=options.max_new_tokens, temperature=options.temperature, top_p=options.top_p,
            stop_ids=stop_ids, pad_id=processing_class.pad_token_id, micro_batch_size=args.per_device_train_batch_size,
            kl_estimator=options.kl_estimator, gamma=options.gamma, lam=options.lam,
            whiten_advantages=options.whiten_advantages, missing_eos_penalty=options.missing_eos_penalty,
            reward_clip=options.reward_clip, advantage_estimator=options.advantage_estimator,
            samples_per_prompt=options.samples_per_prompt)
        longest = max((len(row["prompt_ids"]) for row in train_dataset), default=1)
        self.continuous = ContinuousSampler(
            options.rollout_batch_size * options.samples_per_prompt, longest, options.max_new_tokens,
            options.temperature, options.top_p, stop_ids, processing_class.pad_token_id) if engine == "continuous" \
            else None
        self.state = TrainerState(max_steps=self.max_steps, logging_steps=args.logging_steps, save_steps=args.save_steps)
        self.state.is_world_process_zero = accelerator.is_main_process
        self.state.is_local_process_zero = accelerator.is_local_main_process
        self.control = TrainerControl()
        self.callback_handler = CallbackHandler([DefaultFlowCallback(), *(callbacks or [])], self.model,
                                                processing_class, self.optimizer, self.scheduler)

    def _optimizer(self, combined: PolicyAndValue) -> torch.optim.Optimizer:
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
        policy = [p for p in combined.policy.parameters() if p.requires_grad]
        groups = [{"params": policy, "lr": self.args.learning_rate},
                  {"params": combined.value_parameters(), "lr": self.options.value_lr or self.args.learning_rate}]
        kwargs = {**kwargs, "weight_decay": self.args.weight_decay}
        kwargs.pop("lr", None)
        return cls(groups, lr=self.args.learning_rate, **kwargs)

    # ---- the loop ----------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | None = None) -> TrainOutput:
        if resume_from_checkpoint:
            self.accelerator.load_state(resume_from_checkpoint)
            self._load_loop_state(Path(resume_from_checkpoint))
        self.state.global_step = self.progress.step
        self.callback_handler.on_train_begin(self.args, self.state, self.control)
        started, window, losses = time.time(), defaultdict(list), []
        try:
            while self.progress.step < self.max_steps:
                stats = self.training_step()
                losses.append(stats["loss"])
                self.progress.step += 1
                self.state.global_step = self.progress.step
                for key, value in stats.items():
                    window[key].append(value)
                stop = self.maybe_evaluate(self.progress.step == self.max_steps)
                last = self.progress.step == self.max_steps or stop
                self.control = self.callback_handler.on_step_end(self.args, self.state, self.control)
                if self.progress.step % self.args.logging_steps == 0 or last or self.control.should_training_stop:
                    self.log({key: sum(v) / len(v) for key, v in window.items()})
                    window.clear()
                if self.progress.step % self.args.save_steps == 0 or last or self.control.should_save:
                    self.save_checkpoint()
                if stop or self.control.should_training_stop:
                    break
                self.control.should_save = self.control.should_log = False
        finally:  # the continuous-batching engine's thread ends with the loop, however it ends
            if self.continuous is not None:
                self.continuous.close()
        if self.selection.best_step is not None and self.selection.best_step != self.progress.step:
            best = Path(self.args.output_dir) / f"checkpoint-{self.selection.best_step}"
            self.accelerator.load_state(str(best))  # final/ holds the best weights; the last step's stay on disk
        self.callback_handler.on_train_end(self.args, self.state, self.control)
        runtime = time.time() - started
        metrics = {"train_runtime": round(runtime, 2), "train_loss": sum(losses) / max(len(losses), 1),
                   "train_prompts_per_second": round(len(losses) * self.options.rollout_batch_size
                                                     * self.accelerator.num_processes / max(runtime, 1e-9), 3)}
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)

    def maybe_evaluate(self, last: bool) -> bool:
        """Evaluate every eval_every steps (and at the last); True when early stopping ends the run here."""
        if not self.eval_every or not self.eval_items or not (self.progress.step % self.eval_every == 0 or last):
            return False
        with gathered_for_generation(self.accelerator, self.model_wrapped) as policy:
            metrics = evaluate_policy(policy, self.tokenizer, self.eval_items, self.scorer, self.settings.stop_ids,
                                      self.options.max_new_tokens)
        metrics = self._mean_over_processes(metrics)
        self.log(metrics)
        stop = self.selection.update(metrics, self.progress.step)
        self.state.best_metric, self.state.best_global_step = self.selection.best_value, self.selection.best_step
        return stop

    def training_step(self) -> dict[str, float]:
        rows = prompts_for_step(len(self.prompts), self.progress.step, self.options.rollout_batch_size,
                                self.accelerator.process_index, self.accelerator.num_processes, self.args.seed)
        started = time.time()
        rollout = make_rollout(self.accelerator, self.model_wrapped, self.ref_model, self.tokenizer, self.scorer,
                               self.kl, [self.prompts[i] for i in rows for _ in range(self.options.samples_per_prompt)],
                               self.settings, self.continuous)
        generated = time.time()
        stats = {**rollout.stats, **self.update(rollout)}
        trained = time.time()
        stats = self._mean_over_processes(stats)
        self.kl.update(stats["kl"], len(rollout) * self.accelerator.num_processes)
        stats.update({"kl_coef": self.kl.value, "learning_rate": self.scheduler.get_last_lr()[0],
                      "time/generation": generated - started, "time/training": trained - generated,
                      "generation_share": (generated - started) / max(trained - started, 1e-9)})
        return stats

    def update(self, rollout: Rollout) -> dict[str, float]:
        options, args = self.options, self.args
        micro, mini = args.per_device_train_batch_size, args.per_device_train_batch_size * args.gradient_accumulation_steps
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)  # grad_norm exists on optimizer steps only, not every micro-batch
        for _ in range(options.ppo_epochs):
            order = torch.randperm(len(rollout))
            for start in range(0, len(rollout), mini):
                for micro_start in range(start, start + mini, micro):
                    batch = order[micro_start:micro_start + micro].to(rollout.input_ids.device)
                    with self.accelerator.accumulate(self.model_wrapped):
                        loss, step_stats = self._loss(rollout, batch)
                        self.accelerator.backward(loss)
                        if self.accelerator.sync_gradients:
                            norm = self.accelerator.clip_grad_norm_(self.model_wrapped.parameters(),
                                                                    args.max_grad_norm) if args.max_grad_norm else None
                            if norm is not None:
                                step_stats["grad_norm"] = float(norm)
                        self.optimizer.step()
                        if self.accelerator.sync_gradients:
                            self.scheduler.step()
                        self.optimizer.zero_grad()
                    for key, value in step_stats.items():
                        sums[key] += value
                        counts[key] += 1
        return {key: value / counts[key] for key, value in sums.items()}

    def _loss(self, r: Rollout, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        options = self.options
        mask = r.mask[batch]
        scored = self.model_wrapped(input_ids=r.input_ids[batch], attention_mask=r.attention_mask[batch],
                                    position_ids=r.position_ids[batch], responses=r.responses[batch], mask=mask,
                                    prompt_width=r.prompt_width, with_entropy=bool(options.entropy_coef))
        pg_loss, pg_stats = policy_loss(scored.logprobs, r.logprobs[batch], r.advantages[batch], mask,
                                        options.cliprange)
        loss, stats, vf_stats = pg_loss, {"policy_loss": pg_loss.item()}, {}
        if options.advantage_estimator == "gae":  # rloo has no value model to train
            vf_loss, vf_stats = value_loss(scored.values.float(), r.values[batch], r.returns[batch], mask,
                                           options.cliprange_value)
            loss = loss + options.vf_coef * vf_loss
            stats["value_loss"] = vf_loss.item()
        if options.entropy_coef:
            loss = loss - options.entropy_coef * masked_mean(scored.entropy, mask)
        stats.update({key: value.item() for key, value in {**pg_stats, **vf_stats}.items()})
        stats["loss"] = loss.item()
        return loss, stats

    def _mean_over_processes(self, stats: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return stats
        keys = sorted(stats)
        values = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction="mean")
        return dict(zip(keys, values.tolist(), strict=True))

    # ---- what the engine calls ---------------------------------------------------------------------------
    def log(self, logs: dict[str, float]) -> None:
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)

    def save_checkpoint(self) -> None:
        folder = Path(self.args.output_dir) / f"checkpoint-{self.progress.step}"
        self.accelerator.save_state(str(folder), safe_serialization=True)
        if self.accelerator.is_main_process:
            atomic_write_json(folder / LOOP_STATE, {"step": self.progress.step, "kl": self.kl.state_dict(),
                                                   "scheduler": self.scheduler.state_dict(),
                                                   "selection": self.selection.state_dict()})
        self.accelerator.wait_for_everyone()
        self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    def _load_loop_state(self, folder: Path) -> None:
        """The loop's own state as JSON (never a pickle: accelerate unpickles registered objects with
        weights_only=False, which would run code planted in a checkpoint)."""
        state = json.loads((folder / LOOP_STATE).read_text())
        self.progress.load_state_dict({"step": state["step"]})
        self.kl.load_state_dict(state["kl"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "selection" in state:
            self.selection.load_state_dict(state["selection"])
            self.state.best_metric, self.state.best_global_step = self.selection.best_value, self.selection.best_step

    def final_model(self) -> tuple[Any, dict[str, torch.Tensor]]:
        """(the policy, its full state dict gathered from every rank); called on every rank."""
        full = self.accelerator.get_state_dict(self.model_wrapped)
        prefix = "policy."
        state = {k[len(prefix):]: v for k, v in (full or {}).items() if k.startswith(prefix)}
        return self.model.policy, state
