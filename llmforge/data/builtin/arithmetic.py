"""The verifiable task: small-integer addition and subtraction with one right answer.

Later stages prove they learn on it: SFT raises exact-match accuracy (graded by
eval/answers.py), a reward model tells right from wrong answers, DPO/PPO/GRPO push accuracy
further. Problems are split
into train and test by a hash of the problem itself, so no held-out problem is ever
seen in training, whichever view (SFT, preference, prompt) is used.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

PROMPT_STYLES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")
TEST_SHARE_PER_MILLE = 100  # 10% of problems are held out


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def answer(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    def prompt(self, style: int) -> str:
        return PROMPT_STYLES[style % len(PROMPT_STYLES)].format(a=self.a, op=self.op, b=self.b)


def split_of(problem: Problem) -> str:
    digest = hashlib.sha256(f"{problem.a}{problem.op}{problem.b}".encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 1000 < TEST_SHARE_PER_MILLE else "train"


def problems(split: str, max_operand: int, ops: str) -> list[Problem]:
    """Every problem of a split; subtraction keeps answers non-negative."""
    found = []
    for op in ops:
        for a in range(max_operand + 1):
            for b in range(max_operand + 1):
                if op == "-" and b > a:
                    continue
                problem = Problem(a, op, b)
                if split_of(problem) == split:
                    found.append(problem)
    return found


def near_miss(problem: Problem, rng: random.Random) -> int:
    """A plausible wrong answer: off by a little, never the right one, never negative."""
    while True:
        wrong = problem.answer + rng.choice((-10, -2, -1, 1, 2, 10))
        if wrong >= 0 and wrong != problem.answer:
            return wrong


def _sampled(split: str, num_samples: int, max_operand: int, ops: str, seed: int) -> Iterator[tuple]:
    pool = problems(split, max_operand, ops)
    rng = random.Random(seed)
    order: list[Problem] = []
    for index in range(num_samples):
        if not order:
            order = pool[:]
            rng.shuffle(order)
        yield index, order.pop(), rng


def generate(kind: str, split: str, num_samples: int, max_operand: int, ops: str, seed: int) -> Iterator[dict]:
    for index, problem, rng in _sampled(split, num_samples, max_operand, ops, seed):
        prompt, answer = problem.prompt(index), str(problem.answer)
        if kind == "sft":
            yield {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
        elif kind == "preference":
            yield {"prompt": [{"role": "user", "content": prompt}],
                   "chosen": [{"role": "assistant", "content": answer}],
                   "rejected": [{"role": "assistant", "content": str(near_miss(problem, rng))}]}
        elif kind == "prompt":
            yield {"prompt": [{"role": "user", "content": prompt}], "answer": answer}
        else:  # text: plain worked examples for pretraining or tokenizer training
            yield {"text": f"{prompt} {answer}"}
