"""Plain TRL GRPO on llmforge's arithmetic task, with no llmforge code in the training path: the anchor that
tells a defect in llmforge's wiring from what the method does on this task.

It loads an SFT model folder with transformers, builds the training prompts from the built-in task's train
split (operands up to MAX_OPERAND), rewards the first integer of each completion against the answer, and trains
with TRL's GRPOTrainer and TRL's own defaults except the settings given; every EVERY steps it prints greedy exact
match on the held-out split (the same 200 prompts the pipeline's report uses). Compare its curve with
`llmforge train configs/grpo/...` at the same settings (docs/alignment.md).

    python scripts/trl_grpo_anchor.py runs/tiny-rlhf/sft --out /tmp/anchor --lr 1e-4 --steps 300
"""

from __future__ import annotations

import argparse
import json
import re

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from llmforge.data.builtin.arithmetic import generate as arithmetic_rows

NUMBER = re.compile(r"-?\d+")


def first_integer_is(text: str, answer: str) -> bool:
    found = NUMBER.search(text)
    return found is not None and int(found.group()) == int(answer)


def reward(completions: list, answer: list[str], **_: object) -> list[float]:
    texts = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [float(first_integer_is(t, a)) for t, a in zip(texts, answer, strict=True)]


class HeldOut(TrainerCallback):
    """Greedy exact match on the held-out prompts every `every` steps, printed as a JSON line."""

    def __init__(self, tokenizer, rows: list[dict], every: int) -> None:
        self.tokenizer, self.rows, self.every = tokenizer, rows, every

    @torch.no_grad()
    def measure(self, model) -> float:
        was = model.training
        model.eval()
        self.tokenizer.padding_side = "left"
        right = 0
        for start in range(0, len(self.rows), 32):
            batch = self.rows[start:start + 32]
            texts = [self.tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
                     for r in batch]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=12, do_sample=False)
            for row, ids in zip(batch, out[:, enc["input_ids"].shape[1]:], strict=True):
                right += first_integer_is(self.tokenizer.decode(ids, skip_special_tokens=True), row["answer"])
        model.train(was)
        return right / len(self.rows)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        print(json.dumps({"step": 0, "heldout_accuracy": self.measure(model)}), flush=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            print(json.dumps({"step": state.global_step, "heldout_accuracy": self.measure(model)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-operand", type=int, default=19)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=64, help="completions per step")
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--scale-rewards", default="group", choices=("group", "batch", "none"))
    parser.add_argument("--loss-type", default="dapo")
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    tokenizer = PreTrainedTokenizerFast.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    train = Dataset.from_list(list(arithmetic_rows("prompt", "train", 20000, args.max_operand, "+-", 0)))
    held_out = list(arithmetic_rows("prompt", "test", 200, args.max_operand, "+-", 0))
    config = GRPOConfig(output_dir=args.out, max_steps=args.steps, learning_rate=args.lr, warmup_steps=0.05,
                        per_device_train_batch_size=args.batch, num_generations=args.generations,
                        temperature=args.temperature, beta=args.beta,
                        scale_rewards=args.scale_rewards, loss_type=args.loss_type, max_completion_length=8, seed=args.seed,
                        logging_steps=10, save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                        bf16=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=train,
                          processing_class=tokenizer, callbacks=[HeldOut(tokenizer, held_out, args.every)])
    trainer.train()


if __name__ == "__main__":
    main()
