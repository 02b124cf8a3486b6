"""What llmforge is compared with, at the same settings: plain TRL scripts and a plain PyTorch loop.

Each baseline starts from the same saved initial weights and reads the same rows, with the
same batch size, sequence length, optimizer, learning rate, precision and seed as the
llmforge workload it is set beside, and is timed the same way: per step, after warm-up.
These are the scripts a user would write by hand from the libraries' documentation.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from llmforge.bench.hardware import training_dtype
from llmforge.bench.workloads import Size


class StepTimer(TrainerCallback):
    """Wall time and non-padding tokens at the end of every optimizer step."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, int]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append((state.global_step, time.perf_counter(), int(state.num_input_tokens_seen or 0)))


def rates(marks: list[tuple[int, float, int]], warmup: int) -> dict[str, float]:
    from llmforge.bench.workloads import step_rates

    return step_rates([(step, seconds, tokens) for step, seconds, tokens in marks if step >= warmup])


def _bf16() -> bool:
    return training_dtype() == torch.bfloat16


def trl_sft(model_dir: Path, data: Path, size: Size, out: Path, own_defaults: bool = False,
            lora: bool = False) -> dict[str, float]:
    """TRL's SFTTrainer on a messages dataset with our batch, length, steps and learning rate; with
    `own_defaults` everything else is TRL's default (it turns gradient checkpointing on), otherwise the
    settings llmforge runs with (checkpointing off). `lora`: PEFT LoRA r=16 on all linear layers."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    timer = StepTimer()
    args = SFTConfig(output_dir=str(out), max_steps=size.steps, per_device_train_batch_size=size.micro_batch_size,
                     learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
                     report_to="none", seed=0, max_length=size.max_length, bf16=_bf16(), disable_tqdm=True,
                     include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
                     **({} if own_defaults else {"optim": "adamw_torch"}),
                     **({} if own_defaults else {"activation_checkpointing": False, "packing": False}))
    peft_config = None
    if lora:
        from peft import LoraConfig

        dropout = {} if own_defaults else {"lora_dropout": 0.0}  # llmforge's; peft's default is 0.05
        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", **dropout)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, peft_config=peft_config,
                         train_dataset=load_dataset("json", data_files=str(data), split="train"),
                         processing_class=AutoTokenizer.from_pretrained(model_dir), callbacks=[timer])
    trainer.train()
    return rates(timer.marks, size.warmup)


def pairs_file(folder: Path, rows: int = 4000) -> Path:
    """The built-in arithmetic preference pairs as conversational JSONL, as a TRL script reads them."""
    import json

    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source

    path = folder / "pairs.jsonl"
    if not path.is_file():
        pairs = load_source(DataSource(name="arithmetic-pref", options={"num_samples": rows})).rows
        path.write_text("".join(json.dumps({k: row[k] for k in ("prompt", "chosen", "rejected")}) + "\n"
                                for row in pairs))
    return path


def _common(size: Size, out: Path) -> dict[str, Any]:
    """What every TRL baseline sets as llmforge's workloads do: steps, batch, lr, schedule, seed, precision,
    optimizer."""
    return {"output_dir": str(out), "max_steps": size.steps, "per_device_train_batch_size": size.micro_batch_size,
            "learning_rate": 1e-4, "lr_scheduler_type": "constant", "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "seed": 0, "bf16": _bf16(), "fp16": False, "disable_tqdm": True,
            "dataloader_num_workers": 0, "max_length": size.max_length, "activation_checkpointing": False,
            "disable_dropout": True, "dataset_num_proc": None,
            "optim": "adamw_torch"}  # llmforge's default; transformers' own is adamw_torch_fused


def trl_reward(model_dir: Path, data: Path, size: Size, out: Path) -> dict[str, float]:
    """TRL's RewardTrainer on the same pairs: a one-score head on the same initial weights."""
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    timer = StepTimer()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(model=model, args=RewardConfig(**_common(size, out)), processing_class=tokenizer,
                            train_dataset=load_dataset("json", data_files=str(data), split="train"), callbacks=[timer])
    trainer.train()
    return rates(timer.marks, size.warmup)


def trl_dpo(model_dir: Path, data: Path, size: Size, out: Path, lora: bool = False) -> dict[str, float]:
    """TRL's DPOTrainer on the same pairs: sigmoid loss, beta 0.1, a frozen copy of the start as reference (with
    `lora`: PEFT LoRA r=16 on all linear layers, the reference being the base with the adapter off)."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    timer = StepTimer()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    reference, peft_config = None, None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM",
                                 lora_dropout=0.0)
    else:
        reference = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = DPOTrainer(model=model, ref_model=reference, args=DPOConfig(**_common(size, out), beta=0.1),
                         peft_config=peft_config,
                         processing_class=AutoTokenizer.from_pretrained(model_dir), callbacks=[timer],
                         train_dataset=load_dataset("json", data_files=str(data), split="train"))
    trainer.train()
    return rates(timer.marks, size.warmup)


def plain_loop(model_dir: Path, data: Path, size: Size) -> dict[str, float]:
    """The loop one writes by hand: chat-template tokens, padded batches, AdamW, clipping, no Trainer."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device).train()
    rows = [tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=False)
            [:size.max_length] for line in data.read_text().splitlines()]
    random.Random(0).shuffle(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    marks, tokens = [], 0
    for step in range(1, size.steps + 1):
        batch = rows[(step - 1) * size.micro_batch_size:step * size.micro_batch_size]
        width = max(len(r) for r in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(batch):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        labels = ids.masked_fill(mask == 0, -100)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=_bf16()):
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        tokens += int(mask.sum())
        marks.append((step, time.perf_counter(), tokens))
    return rates(marks, size.warmup)


def trl_online(kind: str, model_dir: Path, size: Size, out: Path, completions: int, generations: int,
               max_new_tokens: int) -> dict[str, float]:
    """TRL's GRPOTrainer or RLOOTrainer on the built-in prompts with the arithmetic reward: `completions` per
    step in groups of `generations`, `max_new_tokens` each, one update per batch."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmforge.config.schema import DataSource
    from llmforge.data.sources import load_source
    from llmforge.rl.reward_functions import arithmetic

    if kind == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    rows = load_source(DataSource(name="arithmetic-prompts", options={"num_samples": 4000})).rows
    timer = StepTimer()
    args = Config(output_dir=str(out), max_steps=size.steps, per_device_train_batch_size=completions,
                  num_generations=generations, max_completion_length=max_new_tokens, learning_rate=1e-4,
                  lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none", seed=0,
                  bf16=_bf16(), disable_tqdm=True, beta=0.0, dataloader_num_workers=0,
                  activation_checkpointing=False)  # llmforge's PPO default; TRL's is on
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[arithmetic], args=args,
                      train_dataset=Dataset.from_list(list(rows)),
                      processing_class=AutoTokenizer.from_pretrained(model_dir, padding_side="left"),
                      callbacks=[timer])
    trainer.train()
    return rates(timer.marks, size.warmup)
