"""The pipeline report: a row per stage, the comparison of an aligned stage with its start, escaped HTML."""

from __future__ import annotations

import json

from llmforge.report.document import plot_stage, write_report

STAGES = [
    {"name": "sft", "stage": "sft", "status": "completed", "output_dir": "", "needs": [],
     "final_metrics": {"train_wall_seconds": 75.0, "num_input_tokens_seen": 581456}},
    {"name": "dpo", "stage": "dpo", "status": "skipped", "output_dir": "", "needs": ["sft"],
     "final_metrics": {"train_wall_seconds": 19.4}},
]
EVALUATIONS = {
    "sft": {"headline": {"eval_accuracy": 0.65}, "samples": [{"prompt": "What is 1 + 2?", "answer": "3",
                                                              "expected": "3"}]},
    "dpo": {"headline": {"eval_accuracy": 0.7},
            "against": {"stage": "sft", "accuracy": 0.7, "baseline_accuracy": 0.65, "win_rate": 0.55, "kl": 0.25,
                        "reward": 1.0, "baseline_reward": 0.5},
            "samples": [{"prompt": "<b>2 | 2</b>", "answer": "4", "baseline": "5", "expected": "4"}]},
}


def test_report_tables_plots_and_escaping(tmp_path):
    for row in STAGES:
        run = tmp_path / row["name"]
        run.mkdir()
        (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 1 / s}) for s in (1, 2, 3)))
        row["output_dir"] = str(run)
    plots = {row["name"]: plot_stage(tmp_path, row["name"], tmp_path / row["name"]) for row in STAGES}
    md, page = write_report(tmp_path, "Pipeline test", STAGES, EVALUATIONS, plots)
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| sft |") or line.startswith("| dpo |")]
    assert table[0].startswith("| sft | sft | completed | 1 min 15 s | 581,456 | eval_accuracy 0.650 | - |")
    assert table[1] == ("| dpo | dpo | skipped | 19 s | - | eval_accuracy 0.700 | vs sft: accuracy 0.700 vs 0.650, "
                        "win-rate 0.550, KL 0.250 |")
    assert "| exact match | 0.700 | 0.650 |" in text
    assert "| <b>2 \\| 2</b> | 4 | 4 | 5 |" in text  # pipes in a cell do not break the markdown table
    for name in ("sft", "dpo"):
        assert f"![{name} {name}-loss](plots/{name}-loss.png)" in text
        assert (tmp_path / "plots" / f"{name}-loss.png").stat().st_size > 0
    html = page.read_text()
    assert "&lt;b&gt;2 | 2&lt;/b&gt;" in html and "<b>2" not in html
    assert html.count("<img src='plots/") == 2


def test_report_says_when_by_what_code_and_on_what_machine(tmp_path):
    import time

    import torch

    from llmforge import __version__
    from llmforge.machine import cpu_info

    md, _ = write_report(tmp_path, "Pipeline", [], {}, {})
    header = md.read_text().splitlines()[2]
    assert time.strftime("%Y-%m-%d") in header and f"llmforge {__version__}" in header
    assert cpu_info()["model"] in header and f"torch {torch.__version__}" in header


def test_sample_prompts_end_on_a_whole_word():
    from llmforge.pipeline.evaluation import word_prefix

    assert word_prefix("One cold day, Ben went to the park.", 24) == "One cold day, Ben went"
    assert word_prefix("Supercalifragilistic words", 5) == "Supercalifragilistic"
    assert word_prefix("a b", 24) == "a b"
