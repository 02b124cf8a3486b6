"""Train the tiny presets' byte-level BPE on the built-in data and write it into the package.

    python scripts/train_tokenizer.py

The output (llmforge/registry/assets/tiny-bpe/tokenizer.json) is committed, so runs do
not depend on training it again; run this after changing the built-in generators.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

from llmforge.data.builtin import arithmetic, corpus
from llmforge.registry.families import FAMILIES
from llmforge.registry.tokenizer import ASSET, train_bpe

OUT = Path(__file__).resolve().parents[1] / "llmforge" / "registry" / "assets" / ASSET


def texts():
    stories = (row["text"] for row in corpus.generate("train", 20_000, 0))
    problems = (row["text"] for row in arithmetic.generate("text", "train", 5_000, 99, "+-", 0))
    chat_words = [f.chat_template for f in FAMILIES.values()] + ["system user assistant model"] * 50
    return chain(stories, problems, chat_words)


def main() -> None:
    tokenizer = train_bpe(texts())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(OUT))
    print(f"wrote {OUT} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
