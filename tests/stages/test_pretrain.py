"""Pretraining end to end: it learns, writes the contract's outputs, and chains into the next run."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmforge.config import load_config
from llmforge.data.builtin import corpus
from llmforge.errors import UserError
from llmforge.stages import run as run_stage
from tests.helpers import write_recipe

# Calibration (seed 7, 60 steps of 8x64 tokens, CPU): first logged loss 6.45, final eval loss 2.06;
# random init sits at ln(768) = 6.64. The bound leaves room for BLAS differences across CPUs.
EVAL_LOSS_BOUND = 2.5
STEPS = {"train": {"max_steps": 60}}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    recipe = write_recipe(folder, logging={"every_steps": 5, "report_to": "tensorboard"},
                          eval={"every_steps": 30}, **STEPS)
    outcome = run_stage(load_config(recipe))
    return folder, recipe, outcome


def test_loss_falls_and_perplexity_is_reported(pretrained):
    folder, _, outcome = pretrained
    lines = [json.loads(x) for x in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    evals = [r for r in lines if "eval_loss" in r]
    assert train[0]["step"] == 5 and train[-1]["step"] == 60
    assert train[0]["loss"] > 5.5
    assert outcome.metrics["eval_loss"] < EVAL_LOSS_BOUND
    assert outcome.metrics["eval_perplexity"] == pytest.approx(torch.tensor(outcome.metrics["eval_loss"]).exp().item())
    assert [r["step"] for r in evals][:2] == [30, 60] and evals[0]["eval_loss"] > evals[-1]["eval_loss"]


def test_run_json_records_the_run(pretrained):
    folder, _, outcome = pretrained
    info = json.loads((folder / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["stage"] == "pretrain"
    assert info["config"]["train"]["max_steps"] == 60
    assert {"torch", "transformers", "trl", "peft", "accelerate", "datasets"} <= set(info["versions"])
    assert len(info["data"]["fingerprints"]["train"][0]) == 16 and info["data"]["train_tokens"] > 10_000
    assert info["parents"][0]["kind"] == "preset" and info["parents"][0]["name"] == "tiny-llama"
    assert info["final_metrics"]["eval_loss"] == outcome.metrics["eval_loss"]
    assert len(info["final_fingerprint"]) == 16


def test_final_is_a_plain_hf_folder(pretrained):
    folder, _, _ = pretrained
    final = folder / "run" / "final"
    assert (final / "model.safetensors").is_file() and not (final / "training_args.bin").exists()
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    prompt = tokenizer("One sunny day, Tom went to the", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    continuation = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    vocabulary = {w for i in range(2000) for w in re.findall(r"[A-Za-z]+", corpus.document(0, "train", i))}
    words = re.findall(r"[A-Za-z]+", continuation)
    assert words and set(words) <= vocabulary, f"not the corpus' language: {continuation!r}"


def test_tensorboard_events_written(pretrained):
    folder, _, _ = pretrained
    events = list((folder / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_one_tensorboard_stream_holds_every_logged_metric(pretrained):
    """The final evaluation goes to the run's own stream (not a second file under checkpoints/), with its
    perplexity, and every key metrics.jsonl logged is a TensorBoard tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _, _ = pretrained
    run = folder / "run"
    events = list(run.rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].parent == run / "tensorboard", events
    tags = set(EventAccumulator(str(events[0])).Reload().Tags()["scalars"])
    logged = {k for line in (run / "metrics.jsonl").read_text().splitlines()
              for k, v in json.loads(line).items() if k != "step" and isinstance(v, (int, float))}
    assert {"loss", "eval_loss", "eval_perplexity"} <= tags
    assert logged <= tags, logged - tags
    perplexities = [e.value for e in EventAccumulator(str(events[0])).Reload().Scalars("eval_perplexity")]
    assert perplexities[-1] == pytest.approx(json.loads((run / "run.json").read_text())["final_metrics"]
                                             ["eval_perplexity"], rel=1e-6)


def test_the_last_step_is_evaluated_once(pretrained):
    """eval.every_steps divides max_steps: the trainer's evaluation at step 60 is the final one, not redone."""
    folder, _, _ = pretrained
    lines = [json.loads(x) for x in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval_loss" in r] == [30, 60]


def test_run_json_says_what_is_machine_specific(pretrained):
    folder, _, _ = pretrained
    info = json.loads((folder / "run" / "run.json").read_text())
    machine = info["machine"]
    assert machine["cpu"]["model"] and isinstance(machine["cpu"]["extensions"], list)
    assert machine["torch_threads"] == torch.get_num_threads() and "deterministic_algorithms" in machine
    assert info["precision"]["weights"] == "float32"
    if not torch.cuda.is_available():
        assert info["precision"] == {**info["precision"], "device": "cpu", "compute": "float32"}


def test_finished_run_is_not_retrained(pretrained):
    folder, recipe, _ = pretrained
    run_json = folder / "run" / "run.json"
    before = run_json.stat().st_mtime_ns, (folder / "run" / "final" / "model.safetensors").stat().st_mtime_ns
    # logging changes are not a new run, nor are other stages' options (a new ppo key must not orphan old runs)
    recorded = json.loads(run_json.read_text())  # as recorded by a version whose ppo/dpo options differed
    recorded["config"]["ppo"]["kl_coef"], recorded["config"]["dpo"]["beta"] = 0.5, 0.3
    run_json.write_text(json.dumps(recorded))
    before = (run_json.stat().st_mtime_ns, *before[1:])
    outcome = run_stage(load_config(recipe, ["logging.every_steps=1"]))
    assert outcome.status == "skipped"
    assert before == (run_json.stat().st_mtime_ns,
                      (folder / "run" / "final" / "model.safetensors").stat().st_mtime_ns)
    with pytest.raises(UserError, match=r"different config \(train.lr: 0.003 -> 0.01\)"):
        run_stage(load_config(recipe, ["train.lr=0.01"]))


def test_a_run_continues_from_a_previous_run(pretrained, tmp_path):
    folder, _, _ = pretrained
    recipe = write_recipe(tmp_path, model={"name": str(folder / "run")}, train={"max_steps": 10, "lr": 1e-3})
    outcome = run_stage(load_config(recipe))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    parent_info = json.loads((folder / "run" / "run.json").read_text())
    assert info["parents"][0]["kind"] == "run"
    assert info["parents"][0]["fingerprint"] == parent_info["final_fingerprint"]
    # Starting from the trained model, it begins far below a random init's loss.
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert first < 3.0 and outcome.metrics["eval_loss"] < EVAL_LOSS_BOUND


def test_streaming_run_learns_and_resumes_exactly(tmp_path):
    import shutil

    from safetensors.torch import load_file

    stream = {"data": {"streaming": True}, "train": {"max_steps": 20},
              "checkpoint": {"every_steps": 10, "keep_last": 2}, "eval": {"max_samples": 16}}
    first = run_stage(load_config(write_recipe(tmp_path, name="a.yaml", output_dir=str(tmp_path / "a"), **stream)))
    assert first.metrics["eval_loss"] < 5.0  # from 6.6 at init, in 20 steps
    # A second run folder that holds only the first run's step-10 checkpoint resumes from it.
    shutil.copytree(tmp_path / "a" / "checkpoints" / "checkpoint-10", tmp_path / "b" / "checkpoints" / "checkpoint-10")
    run_stage(load_config(write_recipe(tmp_path, name="b.yaml", output_dir=str(tmp_path / "b"), **stream)))
    a, b = (load_file(tmp_path / run / "final" / "model.safetensors") for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert [r["checkpoint"] for r in info["resumed_from"]] == ["checkpoint-10"]


def test_adapter_on_pretrain_is_refused(tmp_path):
    with pytest.raises(UserError, match="adapter.type=lora"):
        run_stage(load_config(write_recipe(tmp_path, adapter={"type": "lora"})))


def test_a_run_recorded_before_a_key_existed_is_the_same_run(pretrained, tmp_path):
    folder, recipe, _ = pretrained
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    info = json.loads((copy / "run.json").read_text())
    del info["config"]["train"]["compile"]  # as written by a version without train.compile
    info["config"]["output_dir"] = str(copy)
    (copy / "run.json").write_text(json.dumps(info))
    assert run_stage(load_config(recipe, [f"output_dir={copy}"])).status == "skipped"
    with pytest.raises(UserError, match=r"different config \(train.compile: False -> True\)"):
        run_stage(load_config(recipe, [f"output_dir={copy}", "train.compile=true"]))
