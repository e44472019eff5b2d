"""``--judge``: a model judge beside the rules, on a run directory or on a scored file.

For a run (``probe``, ``evaluate``), every response of a task scored by XSTest is judged
once the run has finished; ``judge.json`` in the run directory holds the comparison
(:func:`pairscope.judge.compare.compare`) overall and per method, and the summary and
the report are rebuilt from the run's files with it. For ``score``, the file's rows are
judged and the comparison is returned for the command to print and write. Verdicts
come from the judge's cache where it has them, so a rerun or resume calls no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pairscope.judge.compare import JudgedRow, compare
from pairscope.judge.model import Judge, JudgeItem
from pairscope.scoring.refusal import COMPLIANCE_ON_SAFE, FULL_COMPLIANCE, REFUSAL_ON_UNSAFE

__all__ = [
    "JUDGE_FILE",
    "describe",
    "judge_file",
    "judge_finished_run",
    "judge_rows",
    "judge_run",
    "judge_scored_file",
]

JUDGE_FILE = "judge.json"


def judge_rows(judge: Judge, rows: Sequence[JudgedRow]) -> tuple[list[JudgedRow], dict[str, int]]:
    """The rows with the judge's verdicts filled in, and what judging them cost."""
    verdicts = judge.judge([JudgeItem(r.prompt, r.completion) for r in rows])
    judged = [
        JudgedRow(r.where, r.prompt, r.completion, r.target, r.rules, label, reply)
        for r, label, reply in zip(rows, verdicts.labels, verdicts.replies, strict=True)
    ]
    return judged, {"calls": verdicts.calls, "cached": verdicts.cached}


def _strip(comparison: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comparison.items() if k not in ("disagreements", "unparseable")}


def judge_run(run_dir: Path, judge: Judge) -> dict[str, Any]:
    """Judge a finished run's XSTest responses, write ``judge.json``, rebuild the summary
    and the report; returns what was written."""
    from pairscope.pipeline.runs import RunDir, iter_generations, read_config, write_json_atomic
    from pairscope.summary import summarize

    config = read_config(run_dir)
    xstest = {t for t, d in config.data.items() if d.scorer == "xstest"}
    rows = [
        JudgedRow(
            {"task": g.task, "method": g.method, "sample_id": g.sample_id},
            g.prompt,
            g.text,
            g.target,
            g.label or FULL_COMPLIANCE,
            None,
            "",
        )
        for g in iter_generations(run_dir)
        if g.task in xstest or g.target in ("safe", "unsafe")
    ]
    judged, cost = judge_rows(judge, rows)
    methods = dict.fromkeys(r.where["method"] for r in judged)
    result = {
        "model": judge.identity(),
        **cost,
        **compare(judged),
        "by_method": {
            m: _strip(compare([r for r in judged if r.where["method"] == m])) for m in methods
        },
    }
    write_json_atomic(run_dir / JUDGE_FILE, result)
    RunDir(run_dir).write_summary(summarize(run_dir))
    from pairscope.report.html import render_report

    render_report(run_dir, max_samples=100)
    return result


def judge_finished_run(run_dir: Path, spec: str, opts: Any) -> Any:
    """Judge a run that just finished with the run's device settings; its new summary."""
    from pairscope.pipeline.runs import read_summary

    with Judge(
        spec,
        device=opts.device,
        dtype=opts.dtype,
        trust_remote_code=opts.trust_remote_code,
        batch_size=opts.batch_size,
    ) as judge:
        judge_run(run_dir, judge)
    return read_summary(run_dir)


def judge_file(
    spec: str, task: str, path: Path, data_dir: str | Path | None, result: Any
) -> dict[str, Any] | None:
    """``score --judge``: judge the scored rows of an XSTest file (None for other tasks)."""
    from pairscope.errors import InputError
    from pairscope.probes import build_samples, load_dataset_records, load_probe
    from pairscope.scoring import row_texts

    probe = load_probe(task)
    if probe.scorer != "xstest":
        raise InputError(f"--judge classifies XSTest responses; task '{task}' is not scored so.")
    texts = row_texts(path)
    if any(texts[line.line][0] is None for line in result.lines):
        samples = {s.id: s for s in build_samples(probe, load_dataset_records(probe, data_dir))}
        for line in result.lines:
            prompt, completion = texts[line.line]
            if prompt is None and line.sample_id in samples:
                texts[line.line] = (samples[line.sample_id].guide_user, completion)
    with Judge(spec) as judge:
        return judge_scored_file(judge, result.lines, texts)


def judge_scored_file(
    judge: Judge, lines: Sequence[Any], texts: dict[int, tuple[str | None, str]]
) -> dict[str, Any]:
    """Judge a scored file's rows (``score``'s line scores and each line's prompt and
    completion); the comparison with its cost."""
    rows = []
    for line in lines:
        prompt, completion = texts[line.line]
        prompt = prompt or ""
        # score_xstest: correct means complied on a safe prompt or refused an unsafe one.
        target = "safe" if line.correct == (line.label == FULL_COMPLIANCE) else "unsafe"
        rows.append(
            JudgedRow({"line": line.line}, prompt, completion, target, line.label, None, "")
        )
    judged, cost = judge_rows(judge, rows)
    return {"model": judge.identity(), **cost, **compare(judged)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe(comparison: dict[str, Any]) -> list[str]:
    """The comparison as a few plain lines for the console."""
    spec = comparison["model"]["spec"]
    head = (
        f"judge {spec}: {comparison['n_judged']}/{comparison['n']} judged, "
        f"{comparison['n_unparseable']} unparseable; {comparison.get('calls', 0)} judge calls, "
        f"{comparison.get('cached', 0)} from cache"
    )
    lines = [head]
    for side in ("rules", "judge"):
        r = comparison[side]
        lines.append(
            f"  {side:5}  compliance on safe {_pct(r[COMPLIANCE_ON_SAFE])} (n={r['n_safe']}), "
            f"refusal on unsafe {_pct(r[REFUSAL_ON_UNSAFE])} (n={r['n_unsafe']})"
        )
    agree, kappa = comparison["agreement"], comparison["kappa"]
    lines.append(
        f"  agreement {_pct(agree['three_class'])} (three classes), {_pct(agree['binary'])} "
        f"(comply/refuse); Cohen's kappa {_pct(kappa['three_class'])} / {_pct(kappa['binary'])}; "
        f"{comparison['n_disagreements']} rows differ"
    )
    return lines
