"""`llmforge serve`: its options (bound to this machine unless told), and the call that starts the server."""

from __future__ import annotations

import argparse

EXAMPLE = "llmforge serve runs/tiny-rlhf/sft runs/tiny-rlhf/dpo runs/tiny-rlhf/ppo --port 8000"


def add_arguments(srv: argparse.ArgumentParser) -> None:
    srv.add_argument("models", nargs="+", metavar="MODEL",
                     help="run folder, LoRA run, HF folder, hub id or preset; NAME=MODEL names it (LoRA runs on "
                          "one base share one copy of it)")
    srv.add_argument("--name", action="append", default=[], metavar="NAME=MODEL", help="serve MODEL as NAME")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    srv.add_argument("--api-key", help="require `Authorization: Bearer KEY` on the API (default: env "
                     "LLMFORGE_API_KEY, else none)")
    srv.add_argument("--votes", default="votes.jsonl", help="JSONL file the chat page's side-by-side votes are "
                     "appended to, as preference rows (default votes.jsonl)")
    srv.add_argument("--max-batch-size", type=int, default=32, help="completions decoded together (default 32)")
    srv.add_argument("--max-queue", type=int, default=256,
                     help="completions waiting at most; more get HTTP 429 with Retry-After (default 256)")
    srv.add_argument("--max-request-size", default="8MiB",
                     help="largest request body; larger ones get HTTP 413 before they are read (default 8MiB)")
    srv.add_argument("--engine", default="auto", choices=("auto", "transformers", "vllm"),
                     help="what generates: transformers (llmforge's continuous batching over a transformers model, "
                          "on CPU or GPU) or vllm (needs vLLM and a GPU); auto = transformers")


def run(args: argparse.Namespace) -> int:
    from llmforge.serve.server import serve
    from llmforge.units import parse_size

    return serve(args.models, names=args.name, host=args.host, port=args.port, api_key=args.api_key,
                 votes=args.votes, max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                 max_request_bytes=parse_size(args.max_request_size, "--max-request-size"), engine=args.engine)
