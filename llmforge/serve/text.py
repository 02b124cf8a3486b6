"""Tokens to text as they arrive: incremental decoding that never shows half a character, and stop
strings that end a completion without ever sending their first characters."""

from __future__ import annotations

from typing import Any


class TextStream:
    """Feed token ids one at a time; `push` returns the text that is safe to send now."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already returned
        self.stopped = False

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self._text()
        for stop in self.stops:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at != -1:
                self.stopped = True
                return self._take(text[:at])
        if text.endswith("\ufffd"):  # a multi-byte character not complete yet
            return ""
        return self._take(text[:len(text) - self._held(text)])

    def finish(self) -> str:
        """What is left once generation ended (text held back in case it began a stop string)."""
        return "" if self.stopped else self._take(self._text())

    def _take(self, upto: str) -> str:
        piece = upto[self.sent:]
        self.sent = max(self.sent, len(upto))
        return piece

    def _held(self, text: str) -> int:
        """The length of the longest end of `text` that could be the start of a stop string."""
        held = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:size]):
                    held = size
                    break
        return held
