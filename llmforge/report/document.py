"""The pipeline report: one list of blocks rendered twice, as report.md and report.html.

Built from what the pipeline already keeps (pipeline.json's stage rows, each stage's
evaluation, each run's metrics.jsonl), so it can be rewritten after every stage and
always describes the runs on disk. Plots are PNGs beside it, referred to by relative path.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from llmforge.engine.files import atomic_write_text
from llmforge.report.plots import plot_lengths, plot_run

Block = tuple  # ("h1"|"h2"|"p", text) | ("table", header, rows) | ("img", path, alt)
PLOTS = "plots"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _versus(evaluation: dict[str, Any]) -> str:
    against = evaluation.get("against")
    if not against:
        return "-"
    parts = []
    if against.get("accuracy") is not None:
        parts.append(f"accuracy {_number(against['accuracy'])} vs {_number(against.get('baseline_accuracy'))}"
                     + (f" ({gain_words(against['gain'], against['gain_se'])})" if "gain_se" in against else ""))
    if against.get("win_rate") is not None:
        parts.append(f"win-rate {_number(against['win_rate'])}")
    if against.get("kl") is not None:
        parts.append(f"KL {_number(against['kl'])}")
    return f"vs {against['stage']}: " + ", ".join(parts)


NOISE_SE = 2.0  # a gain within this many standard errors of zero may be sampling noise


def standard_errors(gain: float, se: float) -> float:
    """How many standard errors a gain is from zero (infinite when every prompt moved the same way)."""
    return abs(gain) / se if se > 0 else (0.0 if gain == 0 else float("inf"))


def within_noise(gain: float, se: float) -> bool:
    return standard_errors(gain, se) < NOISE_SE


def gain_words(gain: float, se: float) -> str:
    """'+0.070 +- 0.025, 2.8 SE: beyond noise' for a held-out gain and its paired standard error."""
    verdict = "within noise" if within_noise(gain, se) else ("a real gain" if gain > 0 else "a real loss")
    return f"{gain:+.3f} ± {se:.3f}, {standard_errors(gain, se):.1f} SE: {verdict}"


def provenance() -> str:
    """When, by what code and on what machine the report was written: figures depend on all three."""
    import time

    import torch

    from llmforge import __version__
    from llmforge.engine.run_record import source_commit
    from llmforge.machine import cpu_summary

    commit = source_commit()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"Written {time.strftime('%Y-%m-%d %H:%M %Z')} by llmforge {__version__}"
            + (f" (commit {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''})" if commit else "")
            + f" on {cpu_summary()}, {device}, torch {torch.__version__} with {torch.get_num_threads()} threads.")


def blocks(title: str, stages: list[dict[str, Any]], evaluations: dict[str, dict], plots: dict[str, list[Path]],
           root: Path, extra: list[Block] | None = None) -> list[Block]:
    out: list[Block] = [("h1", title), ("p", provenance())]
    rows = []
    for row in stages:
        final = row.get("final_metrics", {})
        evaluation = evaluations.get(row["name"], {})
        shown = ", ".join(f"{k} {_number(v)}" for k, v in evaluation.get("headline", {}).items())
        status = f"{row['status']} ({row['gate']})" if row.get("gate") else row["status"]
        rows.append([row["name"], row["stage"], status, _duration(final.get("train_wall_seconds")),
                     _number(final.get("num_input_tokens_seen")), shown or "-", _versus(evaluation)])
    out.append(("table", ["stage", "kind", "this run", "training time", "tokens", "final metrics",
                          "against its start"], rows))
    out.append(("p", "Training time is the stage's own wall time (a skipped stage shows the run it kept). "
                     "Accuracy is greedy exact match on the stage's held-out prompts; win-rate is judged by the "
                     "pipeline's reward model (ties count half); KL is nats per completion, sampled. A gain against "
                     "the start is the mean per-prompt difference in exact match ± its standard error (both models "
                     f"answer the same prompts); within {NOISE_SE:g} standard errors of zero it may be noise. A stage "
                     "that failed its `require` gate is marked failed; the stages starting from it are not run."))
    out += extra or []
    for row in stages:
        name, evaluation = row["name"], evaluations.get(row["name"], {})
        out.append(("h2", f"{name} ({row['stage']}) -> {row['output_dir']}"))
        if row.get("needs"):
            out.append(("p", "Starts from: " + ", ".join(row["needs"])))
        out += data_section(Path(row["output_dir"]))
        against = evaluation.get("against")
        if against:
            out.append(("table", ["", name, against["stage"]], [
                ["exact match", _number(against.get("accuracy")), _number(against.get("baseline_accuracy"))],
                *([["gain on held-out problems", gain_words(against["gain"], against["gain_se"]), "-"]]
                  if "gain_se" in against else []),
                ["mean reward (judge)", _number(against.get("reward")), _number(against.get("baseline_reward"))],
                ["win-rate (judge)", _number(against.get("win_rate")), "-"],
                ["KL to start", _number(against.get("kl")), "-"]]))
        samples = evaluation.get("samples", [])
        if samples:
            header = ["prompt", name] + (["expected"] if any("expected" in s for s in samples) else [])
            header += [against["stage"]] if against else []
            out.append(("table", header, [
                [s["prompt"], s["answer"]] + ([_number(s.get("expected"))] if "expected" in header else [])
                + ([s.get("baseline", "")] if against else []) for s in samples]))
        for path in plots.get(name, []):
            out.append(("img", str(path.relative_to(root)), f"{name} {path.stem}"))
    return out


def data_section(run: Path) -> list[Block]:
    """A curated dataset's rows in and out per step, and the test rows found in its sources."""
    import json

    path = run / "final" / "manifest.json"
    if not path.is_file():
        return []
    manifest = json.loads(path.read_text())
    rows_in = manifest["rows_in"]
    out: list[Block] = [("p", f"Rows: {rows_in:,} in, {manifest['rows_out']:,} out ("
                         + ", ".join(f"{k} {v:,}" for k, v in manifest["splits"].items()) + ")."),
                        ("table", ["step", "rows removed", "share of rows in", "example"], [
                            [s["step"], _number(s.get("removed", s.get("changed"))) + (" changed" if "changed" in s
                                                                                      else ""),
                             f"{100 * s.get('removed', 0) / max(1, rows_in):.1f}%",
                             (s.get("examples") or [{}])[0].get("where", "")] for s in manifest["steps"]])]
    found = manifest.get("contamination", [])
    if manifest.get("test_rows_checked"):
        out.append(("p", f"Contamination: {len(found)} of {manifest['test_rows_checked']:,} test rows were found "
                         "in the training data and their copies removed."))
        if found:
            out.append(("table", ["test row", "text", "training rows holding it", "first found at"], [
                [f"{c['source']}, row {c['row']}", c["text"][:80], _number(c["training_rows"]),
                 (c.get("found_in") or [""])[0]] for c in found[:20]]))
    return out


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: list[Block]) -> str:
    lines: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def to_html(doc: list[Block]) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>" + e(doc[0][1]) + "</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}img{max-width:48%}"
             "</style></head><body>"]
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            parts.append(f"<img src='{e(block[1])}' alt='{e(block[2])}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_stage(root: Path, name: str, run: Path) -> list[Path]:
    """A stage's curves as root/plots/NAME-<figure>.png (none when the run logged nothing), or a curated
    dataset's lengths before and after as root/plots/NAME-lengths.png."""
    if (run / "metrics.jsonl").is_file():
        return plot_run(run, root / PLOTS, prefix=f"{name}-")
    manifest = run / "final" / "manifest.json"
    if manifest.is_file():
        import json

        drawn = plot_lengths(json.loads(manifest.read_text()), root / PLOTS / f"{name}-lengths.png")
        return [drawn] if drawn else []
    return []


def write_report(root: Path, title: str, stages: list[dict[str, Any]], evaluations: dict[str, dict],
                 plots: dict[str, list[Path]], extra: list[Block] | None = None) -> tuple[Path, Path]:
    """Write root/report.md and root/report.html from the stage rows, evaluations, plots and any extra section
    (the retention tables) so far."""
    doc = blocks(title, stages, evaluations, plots, root, extra)
    md, page = root / "report.md", root / "report.html"
    atomic_write_text(md, to_markdown(doc))
    atomic_write_text(page, to_html(doc))
    return md, page
