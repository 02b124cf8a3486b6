"""A conversation with a model: the history, resets, and streamed replies (what `llmforge chat` drives)."""

from __future__ import annotations

from collections.abc import Iterator

from llmforge.data.formats import Message
from llmforge.inference.generation import stream
from llmforge.registry import LoadedModel


class ChatSession:
    def __init__(self, loaded: LoadedModel, system: str | None = None, max_new_tokens: int = 128,
                 temperature: float = 0.0, top_p: float = 1.0) -> None:
        self.loaded = loaded
        self.system = system
        self.settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        self.history: list[Message] = []
        self.reset()

    def reset(self) -> None:
        self.history = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str) -> Iterator[str]:
        """Stream the model's answer to `text`; the whole answer joins the history once it is complete."""
        self.history.append({"role": "user", "content": text})
        pieces = []
        try:
            for piece in stream(self.loaded, self.history, **self.settings):
                pieces.append(piece)
                yield piece
        except BaseException:
            self.history.pop()  # an interrupted turn is not part of the conversation
            raise
        self.history.append({"role": "assistant", "content": "".join(pieces)})
