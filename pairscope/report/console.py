"""A run's summary for people at a terminal and in a CI job: the Rich table and Markdown.

Both read the typed summary (:class:`pairscope.schema.Summary`) and format what it
holds; nothing here computes a metric. The progress bars a run shows while it
decodes live here too, so the CLI only wires them up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pairscope.schema import Interval, SequentialSummary, Summary, TaskSummary

VERDICT_STYLE = {"PASS": "bold green", "WARN": "bold yellow", "FAIL": "bold red"}


def samples_used(task: TaskSummary) -> str:
    """ "used of budget" when a sequential task stopped early, else "n of dataset"."""
    if task.n < task.budget:
        return f"{task.n} of {task.budget}"
    return f"{task.n}/{task.dataset_size}"


def stop_text(seq: SequentialSummary) -> str:
    """Why a task stopped decoding, in words."""
    if seq.stop_reason == "decided":
        return (
            f"{seq.verdict} declared after {seq.decided_at} samples by the anytime-valid "
            f"test; {seq.used} decoded of a budget of {seq.budget}"
        )
    if seq.stop_reason == "budget":
        return f"undecided when the budget of {seq.budget} samples was spent (WARN)"
    if seq.stop_reason == "futile":
        chance = "" if seq.decision_chance is None else f" ({seq.decision_chance:.1%})"
        return (
            f"undecided after {seq.used} samples, with little chance{chance} of a decision "
            f"within the budget of {seq.budget}: stopped early (WARN)"
        )
    if seq.stop_reason == "incomplete":
        return f"{seq.used} of {seq.budget} samples decoded so far (resume to go on)"
    decided = (
        f"it would have decided {seq.verdict} after {seq.decided_at}"
        if seq.decided_at
        else "it would not have decided"
    )
    return f"all {seq.used} samples decoded, no early stop ({decided})"


def fmt(est: Interval | None, digits: int = 3) -> str:
    """``point [low, high]``, the point alone without an interval, ``n/a`` without a point."""
    if est is None or est.point is None:
        return "n/a"
    if est.low is None or est.high is None:
        return f"{est.point:.{digits}f}"
    return f"{est.point:.{digits}f} [{est.low:.{digits}f}, {est.high:.{digits}f}]"


def print_summary(summary: Summary, run_dir: Path, console: Console) -> None:
    """The verdict table and the lines under it (calibration, arbitration, comparisons)."""
    table = Table(
        title=f"pairscope {summary.kind}: {summary.model_spec('base')}"
        f" + {summary.model_spec('guide')}"
    )
    columns = ("task", "method", "n", "intervention rate", "uncertain", "override", "score")
    for col in (*columns, "verdict"):
        table.add_column(col)
    formulas: dict[str, str] = {}
    for task, t in summary.tasks.items():
        for method, m in t.methods.items():
            v = t.verdict if method == t.gate_method and t.verdict else ""
            if m.ir_definition:
                formulas[method] = m.ir_definition
            table.add_row(
                task,
                method,
                samples_used(t),
                fmt(m.intervention_rate),
                fmt(m.uncertain_rate),
                fmt(m.override_rate),
                fmt(m.score),
                f"[{VERDICT_STYLE.get(v, '')}]{v}[/]" if v else "",
            )
    console.print(table)
    for method, formula in formulas.items():
        console.print(f"  [dim]intervention rate, {method}: {formula}[/]")
    if formulas:
        console.print(
            "  [dim]uncertain: uncertain positions / positions; override: positions where "
            "the guide changed the text / positions[/]"
        )
    if any(m == "nudging" for m in formulas):
        console.print(f"  [dim]{protocol_line(summary.settings.protocol)}[/]")
    for task, t in summary.tasks.items():
        _print_task(console, task, t)
    o, timing = summary.overall, summary.timing
    console.print(
        f"Overall: [{VERDICT_STYLE.get(o.verdict, '')}]{o.verdict}[/] "
        f"(gate {'passed' if o.gate_passed else 'failed'}, exit {o.exit_code}); "
        f"load {timing.load_seconds:.1f} s, decode {timing.decode_seconds:.1f} s, "
        f"total {timing.total_seconds or 0:.1f} s"
    )
    console.print(f"Run directory: {run_dir}")
    if (run_dir / "report.html").exists():
        console.print(f"Report: {run_dir / 'report.html'}")


def _print_task(console: Console, task: str, t: TaskSummary) -> None:
    seq = t.sequential
    if seq:
        used = "gated on this" if seq.used_for_verdict else "shown beside it"
        console.print(
            f"  {task}: {stop_text(seq)}; anytime-valid 95 % interval "
            f"{fmt(seq.ir)} ({used}; the table's interval is the bootstrap's)"
        )
    for role, cal in (t.calibration or {}).items():
        console.print(
            f"  {task} calibration {role}: ECE {fmt(cal.ece)}, equal-mass ECE "
            f"{fmt(cal.ece_equal_mass)}, MCE {fmt(cal.mce)}"
        )
    if t.arbitration and t.arbitration.statement:
        console.print(f"  {task} arbitration: {t.arbitration.statement}")
    for c in t.comparisons:
        p_value = "n/a" if c.mcnemar.p_value is None else f"{c.mcnemar.p_value:.3g}"
        console.print(
            f"  {task} {c.a} - {c.b}: {fmt(c.diff)}, McNemar p = "
            f"{p_value}, detectable at this n: {c.mde:.3f}"
        )
    if t.subset:
        console.print(
            f"  [dim]{task}: n = {t.n} of {t.dataset_size} samples, a subset; "
            "read the intervals, not the points.[/]"
        )


PROTOCOL_RATES = {
    "reference": "rounds / re-encoded base completion tokens",
    "position": "rounds / base-written tokens",
}


def protocol_line(protocol: str) -> str:
    """Which NUDGING protocol a run used, with both protocols' rates (docs/methods.md)."""
    other = next(p for p in PROTOCOL_RATES if p != protocol)
    threshold = (
        "the rate the ~20 % threshold was stated in"
        if protocol == "reference"
        else (
            "its rates run below the reference protocol's, in which the ~20 % threshold was stated"
        )
    )
    return (
        f"NUDGING protocol: {protocol} ({PROTOCOL_RATES[protocol]}; {threshold}); "
        f"--protocol {other}: {PROTOCOL_RATES[other]}"
    )


def markdown_summary(summary: Summary, run_dir: Path) -> str:
    """A short Markdown table for a CI job summary."""
    lines = [
        f"### pairscope {summary.kind}: {summary.overall.verdict}",
        "",
        f"Base `{summary.model_spec('base')}`, guide `{summary.model_spec('guide')}`",
        "",
        "| task | n | intervention rate (95% CI) | formula | threshold | score (95% CI) "
        "| verdict | decided by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, t in summary.tasks.items():
        m = t.methods[t.gate_method]
        seq = t.sequential
        by = "bootstrap interval"
        if seq and seq.used_for_verdict:
            by = f"anytime-valid test {fmt(seq.ir)}: {stop_text(seq)}"
        lines.append(
            f"| {task} | {samples_used(t)} | {fmt(m.intervention_rate)} | "
            f"{m.ir_definition or ''} | {t.threshold:.2f} | "
            f"{fmt(m.score)} | **{t.verdict}** | {by} |"
        )
    if any(m == "nudging" for t in summary.tasks.values() for m in t.methods):
        lines += ["", protocol_line(summary.settings.protocol)]
    lines += ["", f"Run directory: `{run_dir}`", ""]
    return "\n".join(lines)


class RichProgress:
    """Rich progress bars: samples done, tokens/s and running intervention rate per task."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.ids: dict[tuple[str, str], Any] = {}
        self.stats: dict[tuple[str, str], list[float]] = {}

    def __enter__(self) -> RichProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bars.__exit__(*exc)

    def phase(self, text: str) -> None:
        self.bars.console.print(f"[dim]{text}[/]")

    def start(self, task: str, method: str, total: int, done: int) -> None:
        key = (task, method)
        self.ids[key] = self.bars.add_task(
            f"{task} / {method}", total=total, completed=done, rate=""
        )
        self.stats[key] = [time.perf_counter(), 0.0, 0.0, 0.0]  # start, tokens, IR num, IR den

    def advance(
        self, task: str, method: str, tokens: int, ir_counts: tuple[int, int] | None
    ) -> None:
        key = (task, method)
        st = self.stats[key]
        st[1] += tokens
        if ir_counts is not None:
            st[2] += ir_counts[0]
            st[3] += ir_counts[1]
        speed = st[1] / max(time.perf_counter() - st[0], 1e-9)
        ir = f", IR {st[2] / st[3]:.3f}" if st[3] else ""
        rate = f"{speed:.0f} tok/s{ir}" if tokens else ""
        self.bars.update(self.ids[key], advance=1, rate=rate)
