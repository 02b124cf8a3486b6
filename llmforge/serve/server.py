"""`llmforge serve`: load the models, bind the socket, run uvicorn until SIGTERM or Ctrl-C.

The socket is bound first (a taken port fails before minutes of loading), so `--port 0` works, and the
line announcing the address (`llmforge serve: http://HOST:PORT`) is printed once the models are loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from llmforge.errors import UserError

log = logging.getLogger("llmforge")
ANNOUNCE = "llmforge serve: "


def serve(models: list[str], names: list[str], host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, votes: str | None = "votes.jsonl", max_batch_size: int = 32,
          max_queue: int = 256, max_request_bytes: int | None = None, engine: str = "auto") -> int:
    from llmforge.registry.sources import resolve_source
    from llmforge.serve.naming import parse_arguments

    if max_batch_size < 1 or max_queue < 1:
        raise UserError("--max-batch-size and --max-queue must be at least 1.")
    from llmforge.serve.engines import choose_engine

    choose_engine(engine)  # an engine this machine cannot run is refused before anything loads
    pairs = parse_arguments(models, names)
    for _, model in pairs:
        resolve_source(model)  # a mistyped model is answered before torch is imported
    import uvicorn

    from llmforge.precision import current_device
    from llmforge.serve.app import create_app
    from llmforge.serve.models import load_served

    api_key = api_key or os.environ.get("LLMFORGE_API_KEY") or None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port, or 0 for "
                        "any free one.") from None
    sock.listen(128)  # bound before the models load: a taken port fails at once; clients wait until announced
    served = load_served(pairs, current_device(), {"max_batch_size": max_batch_size, "max_queue": max_queue})
    from llmforge.serve.limits import DEFAULT_MAX_REQUEST_BYTES

    app = create_app(served, api_key=api_key, votes=Path(votes) if votes else None,
                     max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    for name, item in served.items():
        log.info("serve: %s <- %s%s", name, item.argument, f" (adapter on {item.loaded.source.name})"
                 if item.adapter else "")
    print(f"{ANNOUNCE}http://{shown}:{bound}  models: {', '.join(served)}"
          f"{'  (API key required)' if api_key else ''}", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def launch(arguments: list[str], timeout: float = 180) -> tuple[str, subprocess.Popen]:
    """`llmforge serve ARGUMENTS --port 0` in a process of its own, once it accepts requests: (its URL, the
    process). What the benchmark and the tests start; stop it with SIGTERM."""
    process = subprocess.Popen([sys.executable, "-m", "llmforge", "serve", *arguments, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    found: list[str] = []

    def read() -> None:
        for line in process.stdout:
            if line.startswith(ANNOUNCE) and not found:
                found.append(line.split()[2])

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + timeout
    while not found:
        if process.poll() is not None:
            raise RuntimeError(f"llmforge serve exited {process.returncode}:\n{process.stderr.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            raise RuntimeError(f"llmforge serve did not start in {timeout:.0f} s")
        time.sleep(0.05)
    threading.Thread(target=process.stderr.read, daemon=True).start()  # never let a full pipe block it
    return found[0], process
