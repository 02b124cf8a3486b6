"""Standard benchmarks through EleutherAI's lm-evaluation-harness, on models as llmforge loads them.

`llmforge eval MODEL --tasks ...` and a pipeline's `evaluation.tasks` both call `run_tasks`; results are
kept per task in the model's evals/ folder and reused while the model, task and options are unchanged.
"""

from llmforge.eval.harness.catalog import SHIPPED, resolve_tasks
from llmforge.eval.harness.results import headline
from llmforge.eval.harness.run import HarnessOptions, model_fingerprint, results_folder, run_tasks

__all__ = ["SHIPPED", "HarnessOptions", "headline", "model_fingerprint", "resolve_tasks", "results_folder",
           "run_tasks"]
