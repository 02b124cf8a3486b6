"""Whether the Hugging Face hub can be reached, settled once per command before anything asks it.

Without a network, huggingface_hub retries each request with a backoff (1, 2, 4, 8 and 8 s) before it gives
up, so a hub model or dataset name on such a machine took ~30 s to be refused. Each command first resolves
the hub's host name; when the resolver answers that it does not exist, the command (and every process it
starts) runs with HF_HUB_OFFLINE=1, huggingface's own switch: what the local cache holds still loads, and
anything else fails at once. The switch is read when huggingface_hub is imported, so this runs before that.
Left alone: a switch already set either way, a configured proxy (the proxy resolves names, not this
machine), and a resolver that does not answer within PROBE_SECONDS.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 2.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

_decided: str | None = None  # the host found not to resolve, when this process switched the hub off


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).hostname or "huggingface.co"


def resolves(host: str, timeout: float = PROBE_SECONDS) -> bool | None:
    """True when `host` resolves, False when the resolver says it does not, None when there is no answer in
    time (a slow resolver is not taken as a missing network)."""
    answer: list[bool] = []

    def ask() -> None:
        try:
            socket.getaddrinfo(host, 443)
            answer.append(True)
        except socket.gaierror:
            answer.append(False)
        except OSError:
            pass

    probe = threading.Thread(target=ask, daemon=True)
    probe.start()
    probe.join(timeout)
    return answer[0] if answer else None


def settle_offline() -> None:
    """Set HF_HUB_OFFLINE=1 for this process and its children when the hub's host does not resolve."""
    global _decided
    if "HF_HUB_OFFLINE" in os.environ or "huggingface_hub" in sys.modules:
        return
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    host = hub_host()
    if resolves(host) is False:
        os.environ["HF_HUB_OFFLINE"] = "1"
        _decided = host


def offline_hint() -> str:
    """What to tell a user whose hub name could not be loaded while the hub is switched off. Called after a
    hub request failed, so huggingface_hub is imported and its own reading of the switch is the one to use."""
    from huggingface_hub import is_offline_mode

    if _decided is not None:
        why = f"this machine cannot reach the Hugging Face hub ({_decided} does not resolve)"
    elif is_offline_mode():
        why = "HF_HUB_OFFLINE is set"
    else:
        return ""
    return (f" The hub was not asked: {why}, so only names already in the local Hugging Face cache load; "
            "use a local folder or file, or fetch it on a machine that reaches the hub.")
