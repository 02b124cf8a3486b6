"""Streaming generation and the chat session: the same text as batched generation, delivered in pieces."""

from __future__ import annotations

import os
import subprocess
import sys

from llmforge.inference import ChatSession, generate, load_for_inference, stream


def test_streamed_pieces_join_to_the_batched_completion(pretrained):
    loaded = load_for_inference(str(pretrained))
    prompt = "One sunny day, Tom went to the"
    pieces = list(stream(loaded, prompt, chat=False, max_new_tokens=24))
    assert len(pieces) > 3, "a multi-word completion arrives in pieces, as it is generated"
    assert "".join(pieces) == generate(loaded, [prompt], chat=False, max_new_tokens=24)[0]


def test_chat_session_keeps_the_conversation(pretrained):
    session = ChatSession(load_for_inference(str(pretrained)), system="Be brief.", max_new_tokens=8)
    first = "".join(session.reply("Hello"))
    assert [m["role"] for m in session.history] == ["system", "user", "assistant"]
    assert session.history[-1]["content"] == first
    "".join(session.reply("And again?"))
    assert len(session.history) == 5
    session.reset()
    assert session.history == [{"role": "system", "content": "Be brief."}]


def test_chat_command_prints_each_reply_as_it_streams(pretrained):
    chat = subprocess.run([sys.executable, "-m", "llmforge", "chat", str(pretrained), "--max-new-tokens", "12"],
                          input="Hello there\n/reset\nTell me a story\n", capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert len(chat.stdout.strip().splitlines()) == 2
