"""The benchmark's figures as markdown tables: what `llmforge bench` prints and README shows."""

from __future__ import annotations

import statistics
from typing import Any

from llmforge.bench.workloads import paired_ratios


def _f(value: Any, digits: int = 0, suffix: str = "") -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _relative_table(rows: list[dict[str, Any]], title: str, first: str, reference: str, digits: int) -> list[str]:
    """Rows with their tokens/s as a ratio of the reference row's."""
    if not rows:
        return []
    base = next((r.get("tokens_per_second") for r in rows if r["name"] == reference), None)
    return [title, ""] + _table(
        [first, "what", "tokens/s", f"vs {reference}", "step (s)", "peak memory (MiB)"],
        [[r["name"], r["note"], _f(r.get("tokens_per_second")),
          _f(r["tokens_per_second"] / base, digits, "x") if base and r.get("tokens_per_second") else "-",
          _f(r["step_seconds"], 3), _f(r.get("peak_mib"))] for r in rows])


def _versus(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """This row's speed over the plain script's for the same stage (rows of one stage come together)."""
    script = next((r for r in rows if r.get("stage") == row.get("stage") and r is not row
                   and not r["name"].startswith("llmforge") and "loop" not in r["name"]), None)
    if script is None or row is script:
        return "-"
    ratios = paired_ratios(row, script)
    spread = f" ({_f(min(ratios), 2)}-{_f(max(ratios), 2)})" if len(ratios) > 1 else ""
    return _f(statistics.median(ratios), 3, "x") + spread


SUMMARY_KEYS = ("sft_default_vs_best_option", "sft_best_option", "llmforge_vs_trl", "llmforge_vs_trl_range",
                "llmforge_vs_plain_loop", "ppo_continuous_vs_padded", "ddp_efficiency",
                "serve_concurrent_vs_one_at_a_time", "serve_errors")


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    longer = result.get("compared_steps", result["steps"])
    compared = (f"; {longer} steps, timed after {result['compared_warmup_steps']}, for the batching options and "
                "the equal-settings runs" if longer != result["steps"] else "")
    lines = [f"Device: {result['device']}. Mode: {result['mode']} ({result['steps']} steps, timed after "
             f"{result['warmup_steps']}{compared}); model {result['model']} {result['config_overrides'] or ''}, "
             f"{result['max_length']} tokens, micro-batch {result['micro_batch_size']}.",
             f"Measured matmul ceiling: {_f(result['matmul_ceiling_flops'] / 1e9, 1)} GFLOP/s"
             + (f"; datasheet peak {_f(result['datasheet_flops'] / 1e12, 0)} TFLOP/s."
                if result.get("datasheet_flops") else "."), ""]
    stages = [r for r in rows if r["group"] == "stages"]
    if stages:
        lines += ["Stages:", ""] + _table(
            ["workload", "step (s)", "tokens/s", "pairs/s or prompts/s", "generation share", "peak memory (MiB)",
             "MFU vs measured ceiling"],
            [[r["name"], _f(r["step_seconds"], 3), _f(r.get("tokens_per_second")),
              _f(r.get("pairs_per_second") or r.get("prompts_per_second"), 1), _f(r.get("generation_share"), 2),
              _f(r.get("peak_mib")), _f(100 * r["mfu"], 1, "%") if "mfu" in r else "-"] for r in stages])
    lines += _relative_table([r for r in rows if r["group"] == "features"], "Speed settings (SFT on variable-length "
                             "chat rows, one change from the default at a time):", "setting", "default", 2)
    overhead = [r for r in rows if r["group"] == "overhead"]
    if overhead:
        lines += ["llmforge against plain TRL scripts and a plain loop (same weights, rows, batch, length, optimizer, "
                  "precision, seed; speed = steps per second, so padding counts the same on both sides):", ""]
        lines += _table(["run", "what", "steps/s", "vs the plain script", "tokens/s", "peak memory (MiB)"],
                        [[r["name"], r["note"], _f(1 / r["step_seconds"], 2), _versus(r, overhead),
                          _f(r.get("tokens_per_second")), _f(r.get("peak_mib"))] for r in overhead])
    scaling = [r for r in rows if r["group"] == "scaling"]
    if scaling:
        lines += ["Scaling (pretraining; efficiency = tokens/s per thread against one process on one thread):", ""]
        lines += _table(["layout", "tokens/s", "efficiency", "step (s)"],
                        [[r["name"], _f(r.get("tokens_per_second")), _f(r.get("efficiency"), 2),
                          _f(r["step_seconds"], 3)] for r in scaling])
    online = [r for r in rows if r["group"] == "online"]
    if online:
        lines += ["Online RL at equal completions per step and generation length:", ""] + _table(
            ["trainer", "what", "completions/s", "prompts/s", "generation share", "step (s)", "peak memory (MiB)"],
            [[r["name"], r["note"], _f(r.get("completions_per_second"), 1), _f(r.get("prompts_per_second"), 1),
              _f(r.get("generation_share"), 2), _f(r["step_seconds"], 3), _f(r.get("peak_mib"))] for r in online])
    serve = [r for r in rows if r["group"] == "serve"]
    if serve:
        lines += [f"Serving (a real `llmforge serve` on 127.0.0.1, streamed completions of {serve[0]['new_tokens']} "
                  "sampled tokens; clients send one request after another):", ""] + _table(
            ["load", "requests", "errors", "requests/s", "generated tokens/s", "latency p50 / p95 (s)",
             "time to first token p50 / p95 (s)"],
            [[r["name"], _f(r["requests"]), _f(r["errors"]), _f(r["requests_per_second"], 2),
              _f(r["tokens_per_second"]), f"{_f(r['latency_p50'], 2)} / {_f(r['latency_p95'], 2)}",
              f"{_f(r.get('ttft_p50'), 3)} / {_f(r.get('ttft_p95'), 3)}"] for r in serve])
    curate = [r for r in rows if r["group"] == "curate"]
    if curate:
        lines += [f"Curating the built-in corpus ({_f(curate[0]['rows_in'])} documents), one step added at a time:",
                  ""] + _table(["steps", "rows/s", "seconds", "rows kept", "peak memory (MiB)"],
                               [[r["name"], _f(r["rows_per_second"]), _f(r["seconds"], 1), _f(r["rows_out"]),
                                 _f(r.get("peak_mib"))] for r in curate])
    lines += sizes_tables(result)
    if result.get("failed"):
        lines += ["Failed (no figures, left out of the tables above):", "",
                  *(f"- {f['group']}, {f['workload']}: {f['error']}" for f in result["failed"]), ""]
    found = {key: result[key] for key in SUMMARY_KEYS if key in result}
    if found:
        lines += ["Summary ratios (this run):", "", *(f"- {key}: {_summary(value)}" for key, value in found.items()), ""]
    return "\n".join(lines)


def sizes_tables(result: dict[str, Any]) -> list[str]:
    """The size ladder with the memory plan beside each measured peak, and TRL beside llmforge at 0.5B."""
    lines: list[str] = []
    ladder = rows_of(result, "sizes")
    if ladder:
        ceiling = result.get("sizes_matmul_ceiling_flops")
        lines += [f"Real sizes (float32, a warm-up step then timed steps; MFU against the {_f((ceiling or 0) / 1e9)} "
                  "GFLOP/s measured on 1,024-4,096 square matmuls; memory: peak resident set of the process, and "
                  "`llmforge plan`'s prediction for the same recipe):", ""]
        lines += _table(
            ["row", "tokens", "x rows", "checkpointing", "step (s)", "tokens/s", "MFU", "generation share",
             "peak (GiB)", "plan (GiB)", "plan / peak", "what"],
            [[r["name"], _f(r["length"]), _f(r["micro_batch_size"]),
              "on" if r.get("gradient_checkpointing") else "off", _f(r["step_seconds"], 1),
              _f(r.get("tokens_per_second")), _f(100 * r["mfu"], 0, "%") if "mfu" in r else "-",
              _f(r.get("generation_share"), 2), _f(r["peak_mib"] / 1024, 2), _f(r.get("predicted_mib", 0) / 1024, 2),
              _f(r.get("predicted_over_measured"), 2), r.get("note") or ""] for r in ladder])
    versus = rows_of(result, "sizes-trl")
    if versus:
        lines += ["llmforge beside TRL's own trainers at 0.5B (same initial weights, rows, batch, length, LoRA, "
                  "optimizer; speed ratio = TRL's step time over llmforge's, median of the paired runs):", ""]
        lines += _table(["comparison", "llmforge tokens/s", "TRL tokens/s", "speed ratio", "llmforge peak (GiB)",
                         "TRL peak (GiB)", "memory ratio"],
                        [[r["name"], " / ".join(_f(v) for v in r["llmforge_tokens_per_second"]),
                          " / ".join(_f(v) for v in r["trl_tokens_per_second"]), _f(r.get("speed_ratio"), 3),
                          " / ".join(_f(v / 1024, 2) for v in r["llmforge_peak_mib"]),
                          " / ".join(_f(v / 1024, 2) for v in r["trl_peak_mib"]), _f(r.get("memory_ratio"), 3)]
                         for r in versus])
    return lines


def rows_of(result: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["group"] == group]


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_summary(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "-".join(_summary(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)
