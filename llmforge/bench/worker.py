"""One benchmark workload in a process of its own: `python -m llmforge.bench.worker SPEC.json`.

A fresh process per workload makes its peak memory its own (the allocator of a shared
process keeps what earlier workloads freed) and its start free of earlier workloads' state.
The spec names what to run; the rates come back as the last line of standard output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "llmforge-bench-result: "


class WorkloadFailed(RuntimeError):
    """A workload's process ended without its figures: `reason` is the last line it wrote (the error, when it
    raised one), `tail` the end of its output, since the scratch folder holding its log is removed."""

    def __init__(self, name: str, returncode: int, output: str) -> None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        self.name, self.tail = name, output[-3000:]
        self.reason = lines[-1] if lines and returncode != 0 else f"exit {returncode} without a result line"
        super().__init__(f"benchmark workload '{name}' failed (exit {returncode}): {self.reason}")


def run_spec(spec: dict[str, Any]) -> dict[str, float]:
    from llmforge.bench import baselines
    from llmforge.bench.workloads import Size, run_recipe, steady_rates

    size = Size(**spec["size"])
    kind = spec["kind"]
    if kind == "recipe" and spec["recipe"]["stage"] == "curate":  # a dataset stage: rows, not steps
        from llmforge.registry.runs import read_run_info

        final = read_run_info(run_recipe(spec["recipe"]))["final_metrics"]
        return {"rows_per_second": final["rows_per_second"], "rows_in": final["rows_in"],
                "rows_out": final["rows_out"], "seconds": final["train_wall_seconds"]}
    if kind == "recipe":
        return steady_rates(run_recipe(spec["recipe"]), size.warmup)
    if kind not in ("trl_sft", "trl_reward", "trl_dpo", "plain_loop", "trl_online"):
        raise ValueError(f"unknown workload kind {kind!r}")
    model, out = Path(spec["model"]), Path(spec["out"])
    if kind == "trl_sft":
        return baselines.trl_sft(model, Path(spec["data"]), size, out, own_defaults=spec["own_defaults"],
                                 lora=spec.get("lora", False))
    if kind == "trl_dpo":
        return baselines.trl_dpo(model, Path(spec["data"]), size, out, lora=spec.get("lora", False))
    if kind == "trl_reward":
        return baselines.trl_reward(model, Path(spec["data"]), size, out)
    if kind == "plain_loop":
        return baselines.plain_loop(model, Path(spec["data"]), size)
    return baselines.trl_online(spec["trainer"], model, size, out, **spec["online"])


def resident_peak_mib() -> float:
    """This process's peak resident set (VmHWM: of its own address space, so not inherited through exec as
    ru_maxrss is: a child started by a parent holding 6 GiB would otherwise report 6 GiB), or its children's
    when they held more (a launched multi-process workload)."""
    import resource

    own = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def run_in_child(spec: dict[str, Any], folder: Path) -> dict[str, float]:
    """Run a spec in a child process; its rates plus `peak_mib` (GPU: allocator peak; CPU: peak RSS)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = spec["name"].replace(" ", "-").replace(",", "")
    spec_path, log_path = folder / f"{name}.json", folder / f"{name}.log"
    spec_path.write_text(json.dumps(spec))
    with log_path.open("w") as log:
        child = subprocess.Popen([sys.executable, "-m", "llmforge.bench.worker", str(spec_path)], stdout=log,
                                 stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not lines:
        raise WorkloadFailed(spec["name"], child.returncode, output)
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result.setdefault("peak_mib", usage.ru_maxrss / 1024)  # the child's own figure first; Linux reports KiB
    return result


def main(path: str) -> None:
    spec = json.loads(Path(path).read_text())
    os.environ.update(spec.get("environment", {}))
    from llmforge.allocator import release_freed_memory

    release_freed_memory()  # as `llmforge` does
    if spec.get("threads"):  # before torch starts its thread pools
        os.environ["OMP_NUM_THREADS"] = str(spec["threads"])
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    result = run_spec(spec)
    result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else (
        resident_peak_mib())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
