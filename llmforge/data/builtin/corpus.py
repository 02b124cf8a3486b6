"""`tinytext`: a deterministic synthetic corpus a tiny model learns on a CPU in minutes.

Short stories from a small grammar, with arithmetic facts mixed in so that a model
pretrained on it has seen numbers before it is fine-tuned on the arithmetic task, and
chat transcripts (questions about a story) in each family's chat template, so the
template's special tokens are trained as in a real base model. Without them LoRA
cannot learn to emit an end-of-turn token whose embedding is still random.
Document i depends only on (seed, split, i): any document can be made again alone,
which is what streaming and held-out splits need.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import cache

from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmforge.registry.families import FAMILIES

CHAT_TEMPLATES = sorted({family.chat_template for family in FAMILIES.values()})
BOS, EOS = "<|begin_of_text|>", "<|endoftext|>"


@cache
def _compiled(template: str):
    plain = template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    return ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(plain)


def render_chat(template: str, messages: list[dict[str, str]]) -> str:
    """A conversation in a family's template (as transformers renders it, minus training markers)."""
    return _compiled(template).render(messages=messages, bos_token=BOS, eos_token=EOS, add_generation_prompt=False)

NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Max", "Zoe", "Leo", "Ivy", "Tim", "Eva"]
ANIMALS = ["cat", "dog", "bird", "fox", "rabbit", "horse", "duck", "frog"]
OBJECTS = ["ball", "kite", "book", "box", "hat", "cake", "boat", "drum", "apple", "cup"]
COLORS = ["red", "blue", "green", "yellow", "big", "small", "new", "shiny"]
PLACES = ["park", "garden", "school", "river", "forest", "kitchen", "beach", "farm"]
FEELINGS = ["happy", "sad", "tired", "excited", "calm", "proud", "hungry", "sleepy"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "cloudy"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                "eighteen", "nineteen", "twenty"]

SPLIT_OFFSETS = {"train": 0, "test": 10_000_000}


def _story(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    animal, obj, color = rng.choice(ANIMALS), rng.choice(OBJECTS), rng.choice(COLORS)
    place, feeling, weather = rng.choice(PLACES), rng.choice(FEELINGS), rng.choice(WEATHER)
    count = rng.randint(2, 9)
    sentences = [
        f"One {weather} day, {a} went to the {place}.",
        f"{a} had a {color} {obj}.",
        f"{a} saw a {animal} near the {place}.",
        f"The {animal} wanted the {obj}.",
        f"{a} gave the {obj} to {b}.",
        f"{b} was {feeling}.",
        f"{b} said, \"Thank you, {a}!\"",
        f"They played with the {obj} until the sun went down.",
        f"{a} counted {NUMBER_WORDS[count]} {animal}s in the {place}.",
    ]
    middle = sentences[2:6]
    rng.shuffle(middle)
    sentences[2:6] = middle
    return " ".join(sentences[: rng.randint(4, len(sentences))])


def _facts(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        x, y = rng.randint(0, 50), rng.randint(0, 50)
        if rng.random() < 0.5:
            lines.append(f"{x} + {y} = {x + y}.")
        else:
            x, y = max(x, y), min(x, y)
            lines.append(f"{x} - {y} = {x - y}.")
    if rng.random() < 0.5:
        x, y = rng.randint(0, 10), rng.randint(0, 10)
        if x + y <= 20:
            lines.append(f"{NUMBER_WORDS[x].capitalize()} plus {NUMBER_WORDS[y]} is {NUMBER_WORDS[x + y]}.")
    return " ".join(lines)


def _chat(rng: random.Random) -> str:
    name, other = rng.sample(NAMES, 2)
    obj, place, color = rng.choice(OBJECTS), rng.choice(PLACES), rng.choice(COLORS)
    story = f"{name} had a {color} {obj}. {name} went to the {place} with {other}."
    question, answer = rng.choice([
        (f"Who had the {obj}?", f"{name} had the {obj}."),
        (f"Where did {name} go?", f"{name} went to the {place}."),
        (f"What color was the {obj}?", f"It was {color}."),
        (f"Who went with {name}?", f"{other} went with {name}."),
    ])
    messages = [{"role": "user", "content": f"{story} {question}"}, {"role": "assistant", "content": answer}]
    return render_chat(rng.choice(CHAT_TEMPLATES), messages)


def document(seed: int, split: str, index: int) -> str:
    rng = random.Random(seed * 1_000_003 + SPLIT_OFFSETS[split] + index)
    draw = rng.random()
    if draw < 0.2:
        return _facts(rng)
    return _chat(rng) if draw < 0.35 else _story(rng)


def generate(split: str, num_documents: int, seed: int) -> Iterator[dict]:
    for index in range(num_documents):
        yield {"text": document(seed, split, index)}
