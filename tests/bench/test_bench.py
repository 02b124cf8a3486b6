"""The benchmark: its arithmetic by hand, its memory probe against a known allocation, and a --quick smoke run.

No timing is asserted: the figures belong in README, measured in one run, not in tests.
"""

from __future__ import annotations

import json

import pytest

from llmforge.bench.baselines import rates
from llmforge.bench.suite import flops_per_token
from llmforge.bench.workloads import steady_rates
from tests.helpers import run_cli


def test_rates_count_only_the_steps_after_warm_up():
    marks = [(1, 0.0, 0), (2, 5.0, 100), (3, 6.0, 300), (4, 7.0, 500)]  # step 1-2 slow: warm-up
    assert rates(marks, warmup=2) == {"step_seconds": 1.0, "tokens_per_second": 200.0}


def test_steady_rates_from_metrics_jsonl(tmp_path):
    rows = [{"step": s, "loss": 1.0, "train_runtime": t, "num_input_tokens_seen": n}
            for s, t, n in ((1, 4.0, 50), (2, 5.0, 150), (3, 5.5, 250), (4, 6.0, 350))]
    rows.append({"step": 4, "train_loss": 1.0, "train_runtime": 6.2})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert steady_rates(tmp_path, warmup=1) == {"step_seconds": 0.5, "tokens_per_second": 200.0}
    ppo = [{"step": s, "loss": 0.1, "time/generation": 0.75, "time/training": 0.25} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in ppo))
    assert steady_rates(tmp_path, warmup=1) == {"step_seconds": 1.0, "generation_share": 0.75}


def test_flops_per_token_is_six_n_plus_attention(tmp_path):
    from llmforge.config.schema import ModelConfig
    from llmforge.registry import load_model

    loaded = load_model(ModelConfig(name="tiny-llama"))
    loaded.model.save_pretrained(tmp_path / "final")
    n = sum(p.numel() for name, p in loaded.model.named_parameters() if "embed" not in name and "lm_head" not in name)
    config = loaded.model.config
    assert flops_per_token(tmp_path, 64) == 6 * n + 12 * config.num_hidden_layers * config.hidden_size * 64


def test_a_failed_workload_reports_its_own_output(tmp_path):
    from llmforge.bench.tables import render
    from llmforge.bench.worker import WorkloadFailed, run_in_child

    size = {"model": "tiny-llama", "config_overrides": {}, "max_length": 64, "micro_batch_size": 2, "steps": 4,
            "warmup": 1}
    with pytest.raises(WorkloadFailed, match="unknown workload kind 'nonsense'") as failure:
        run_in_child({"name": "bad one", "kind": "nonsense", "size": size}, tmp_path)
    assert (tmp_path / "bad-one.log").is_file()
    assert failure.value.reason.endswith("unknown workload kind 'nonsense'") and "Traceback" in failure.value.tail
    # the tables name it, apart from the figures of the workloads that ran
    result = {"device": "CPU: test", "mode": "quick", "steps": 4, "warmup_steps": 1, "model": "tiny-llama",
              "config_overrides": {}, "max_length": 64, "micro_batch_size": 2, "matmul_ceiling_flops": 1e9,
              "rows": [], "failed": [{"group": "features", "workload": "bad one", "error": failure.value.reason}]}
    assert "- features, bad one: " in render(result) and "unknown workload kind" in render(result)


def test_every_workload_is_a_valid_recipe(tmp_path):
    from llmforge.bench.workloads import CPU_FULL, CPU_QUICK, GPU, feature_workloads, stage_workloads
    from llmforge.config.compose import validate_dict

    for size in (CPU_QUICK, CPU_FULL, GPU):
        for workload in stage_workloads(size, tmp_path) + feature_workloads(size, tmp_path):
            config = validate_dict(workload.recipe)
            assert config.train.max_steps == size.steps and config.logging.every_steps == 1


def test_quick_benchmark_comparisons_run_and_write_json(tmp_path):
    """The comparisons with plain TRL and the plain loop, end to end (the other groups are the same runner on
    the recipes validated above, and the online group's sampling engines are tested in tests/rl/test_sampling.py;
    all groups take ~8 minutes)."""
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--quick", "--steps", "3", "--only", "overhead", "--json", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    names = {row["name"] for row in figures["rows"]}
    assert {"llmforge sft", "trl SFTTrainer", "plain pytorch loop", "llmforge rm", "trl RewardTrainer",
            "llmforge dpo", "trl DPOTrainer", "llmforge sft, its defaults", "trl SFTTrainer, its defaults",
            "llmforge sft-lora, its defaults", "trl SFTTrainer + peft, its defaults"} == names
    assert all(row["step_seconds"] > 0 and row["peak_mib"] > 0 for row in figures["rows"])
    assert figures["matmul_ceiling_flops"] > 0 and figures["device"].startswith(("CPU: ", "NVIDIA", "AMD"))
    assert set(figures["llmforge_vs_trl"]) == {"sft", "rm", "dpo"}
    assert "| trl SFTTrainer |" in result.stdout and "Summary ratios" in result.stdout
    bad = run_cli("bench", "--only", "stagez")
    assert bad.returncode == 2 and "not a benchmark group" in bad.stderr
    bad = run_cli("bench", "--steps", "2")
    assert bad.returncode == 2 and "at least 3" in bad.stderr


def test_summary_ratios_by_hand():
    from llmforge.bench.suite import summary

    rows = [{"name": "default", "group": "features", "tokens_per_second": 90.0, "step_seconds": 1.0},
            {"name": "grouped", "group": "features", "tokens_per_second": 100.0, "step_seconds": 0.9},
            {"name": "padded", "group": "features", "tokens_per_second": 80.0, "step_seconds": 0.9},
            {"name": "eager-attention", "group": "features", "tokens_per_second": 500.0, "step_seconds": 0.2},
            {"name": "llmforge sft", "group": "overhead", "step_seconds": 0.50},
            {"name": "trl SFTTrainer", "group": "overhead", "step_seconds": 0.52},
            {"name": "plain pytorch loop", "group": "overhead", "step_seconds": 0.48},
            # three repetitions, each llmforge run paired with the script's run after it
            {"name": "llmforge rm", "group": "overhead", "step_seconds": 0.10,
             "repeat_step_seconds": [0.10, 0.2, 0.12]},
            {"name": "trl RewardTrainer", "group": "overhead", "step_seconds": 0.09,
             "repeat_step_seconds": [0.09, 0.3, 0.12]},
            {"name": "llmforge ppo, padded generation", "group": "online", "step_seconds": 1.0,
             "completions_per_second": 64.0},
            {"name": "llmforge ppo, continuous generation", "group": "online", "step_seconds": 2.0,
             "completions_per_second": 32.0},
            {"name": "2 processes", "group": "scaling", "processes": 2, "efficiency": 0.8, "step_seconds": 1.0},
            {"name": "llmforge serve, 1 concurrent client", "group": "serve", "clients": 1, "errors": 0,
             "tokens_per_second": 100.0},
            {"name": "llmforge serve, 16 concurrent clients", "group": "serve", "clients": 16, "errors": 1,
             "tokens_per_second": 450.0},
            {"name": "one at a time (llmforge generate's path)", "group": "serve", "clients": 1, "errors": 0,
             "tokens_per_second": 150.0}]
    found = summary(rows)
    # eager attention is a speed setting, not a way of batching: it does not count as an option; with no
    # record of what the default resolved to, the default row stands alone
    assert found["sft_default_vs_best_option"] == 0.9 and found["sft_best_option"] == "grouped"
    # rm: the median of the paired ratios 0.9, 1.5, 1.0 (not 0.09 / 0.10, the ratio of the fastest steps)
    assert found["llmforge_vs_trl"] == pytest.approx({"sft": 0.52 / 0.50, "rm": 1.0})
    assert found["llmforge_vs_trl_range"]["sft"] == pytest.approx([1.04, 1.04])
    assert found["llmforge_vs_trl_range"]["rm"] == pytest.approx([0.9, 1.5])
    assert found["llmforge_vs_plain_loop"] == {"sft": 0.48 / 0.50}
    assert found["ppo_continuous_vs_padded"] == 0.5 and found["ddp_efficiency"] == 0.8
    assert found["serve_concurrent_vs_one_at_a_time"] == 3.0 and found["serve_errors"] == 1

    # the default is grouped measured a second time: its two runs (90, 100) average to 95, against padded's 80
    rows[0]["batching"] = "grouped"
    assert summary(rows)["sft_default_vs_best_option"] == 1.0 and summary(rows)["sft_best_option"] == "grouped"
    rows[2]["tokens_per_second"] = 190.0  # padded faster than both runs of the default's configuration
    found = summary(rows)
    assert found["sft_default_vs_best_option"] == 95.0 / 190.0 and found["sft_best_option"] == "padded"


def test_serve_benchmark_runs_a_real_server(tmp_path):
    """`--only serve` end to end: a real server under 1, 4 and 16 clients, every request answered, and the
    one-at-a-time path beside it (figures in README, not asserted)."""
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--quick", "--only", "serve", "--json", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    rows = [r for r in figures["rows"] if r["group"] == "serve"]
    assert [r["clients"] for r in rows] == [1, 4, 16, 1] and figures["serve_errors"] == 0
    assert all(r["tokens_per_second"] > 0 and r["latency_p95"] >= r["latency_p50"] for r in rows)
    assert "| llmforge serve, 16 concurrent clients |" in result.stdout
