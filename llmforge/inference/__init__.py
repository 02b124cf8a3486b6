"""Inference: load any model name, generate (batched or streamed), hold a chat."""

from llmforge.inference.chat import ChatSession
from llmforge.inference.generation import generate, generate_ids, stream
from llmforge.inference.loading import load_for_inference, stops_of

__all__ = ["ChatSession", "generate", "generate_ids", "load_for_inference", "stops_of", "stream"]
