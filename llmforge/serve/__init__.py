"""Serving trained models: an OpenAI-compatible HTTP API over a batching engine, and a chat page."""
