"""README's serving examples, taken from README as a user copies them (curl and the `openai` client), run
against a live `llmforge serve` on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from tests.helpers import ROOT
from tests.serve.conftest import server


def examples() -> tuple[str, str]:
    section = (ROOT / "README.md").read_text().split("### Serve it")[1].split("\n### ")[0]
    bash = re.findall(r"```bash\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    curl = next(block for block in bash if block.lstrip().startswith("curl"))
    return curl.replace("\\\n", " "), python[0]


def test_the_readme_curl_and_openai_examples_work_against_a_live_server(lora_run, tmp_path):
    curl, client = examples()
    with server(f"sft={lora_run}") as (url, _):
        port = url.rsplit(":", 1)[1]
        answered = subprocess.run(shlex.split(curl.replace("8000", port)), capture_output=True, text=True,
                                  timeout=120)
        assert answered.returncode == 0, answered.stderr
        reply = json.loads(answered.stdout)
        assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["role"] == "assistant"
        script = tmp_path / "client.py"
        script.write_text(client.replace("8000", port))
        printed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert printed.returncode == 0, printed.stderr  # it reached the server, got an answer and printed it
        assert printed.stdout.endswith("\n")
