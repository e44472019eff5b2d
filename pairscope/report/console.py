"""A run's summary for people at a terminal and in a CI job: the Rich table and Markdown.

Both read the typed summary (:class:`pairscope.schema.Summary`) and format what it
holds; nothing here computes a metric. The progress bars a run shows while it
decodes live here too, so the CLI only wires them up.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

import pairscope.methods as registry
from pairscope.schema import Interval, SequentialSummary, Summary, TaskSummary, Timing

if TYPE_CHECKING:
    from pairscope.check import CheckReport

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


def fmt(est: Interval | None, digits: int = 3, sep: str = " ") -> str:
    """``point [low, high]``, the point alone without an interval, ``n/a`` without a point.

    ``sep`` goes between the point and its interval (a newline stacks them in a cell).
    """
    if est is None or est.point is None:
        return "n/a"
    if est.low is None or est.high is None:
        return f"{est.point:.{digits}f}"
    return f"{est.point:.{digits}f}{sep}[{est.low:.{digits}f}, {est.high:.{digits}f}]"


LAYOUTS = ("wide", "stacked", "narrow")


def print_summary(summary: Summary, run_dir: Path, console: Console) -> None:
    """The verdict table and the lines under it (calibration, arbitration, comparisons).

    The table is shown whole at any width, in the first layout that fits the console
    (see :func:`results_table`); nothing in it is cut short.
    """
    pair = f"{summary.model_spec('base')} + {summary.model_spec('guide')}"
    title = escape(f"pairscope {summary.kind}: {pair}")
    unbounded = console.options.update_width(10_000)
    for layout in LAYOUTS:
        table = results_table(summary, layout)
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            break
    if layout == "wide":
        table.title = title
    else:
        console.print(title, highlight=False, soft_wrap=True)
    console.print(table)
    _print_legend(console, summary, layout)
    for task, t in summary.tasks.items():
        _print_task(console, task, t)
    console.print(overall_line(summary), highlight=False, soft_wrap=True)
    if summary.judge:
        from pairscope.judge.runs import describe

        for line in describe(summary.judge):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print(f"Run directory: {escape(str(run_dir))}", highlight=False, soft_wrap=True)
    if (run_dir / "report.html").exists():
        console.print(
            f"Report: {escape(str(run_dir / 'report.html'))}", highlight=False, soft_wrap=True
        )


def results_table(summary: Summary, layout: str = "wide") -> Table:
    """One row per task and method; the gate's verdict on its method's row.

    ``wide``: task, method, n, intervention rate, uncertain, override, score, verdict,
    each rate as ``point [low, high]`` (about 130 columns). ``stacked``: the same
    columns, each interval on the line under its point and the intervention rate
    headed IR (about 105). ``narrow``: task, method, n, IR, score and verdict (about
    70); the uncertain and override rates go to a line each under the table. Task,
    method, n and verdict never wrap.
    """
    narrow = layout == "narrow"
    table = Table() if layout == "wide" else Table(box=box.SIMPLE_HEAD, show_edge=False)
    columns = ["task", "method", "n", "intervention rate" if layout == "wide" else "IR"]
    columns += [] if narrow else ["uncertain", "override"]
    for col in (*columns, "score", "verdict"):
        fixed = col in ("task", "method", "n", "verdict")
        table.add_column(col, no_wrap=fixed, min_width=len(col) if fixed else None)
    sep = " " if layout == "wide" else "\n"
    for task, t in summary.tasks.items():
        for method, m in t.methods.items():
            v = t.verdict if method == t.gate_method and t.verdict else ""
            rates = [m.intervention_rate]
            rates += [] if narrow else [m.uncertain_rate, m.override_rate]
            table.add_row(
                task,
                method,
                samples_used(t),
                *(fmt(r, sep=sep) for r in (*rates, m.score)),
                f"[{VERDICT_STYLE.get(v, '')}]{v}[/]" if v else "",
            )
    return table


def _print_legend(console: Console, summary: Summary, layout: str) -> None:
    name = "intervention rate" if layout == "wide" else "IR (intervention rate)"
    for method, formula in summary_formulas(summary).items():
        console.print(f"  [dim]{name}, {method}: {formula}[/]", highlight=False)
    if not summary_formulas(summary):
        return
    if registry.with_protocols(list(summary_formulas(summary))):
        console.print(f"  [dim]{protocol_line(summary.settings.protocol)}[/]", highlight=False)
    console.print(
        "  [dim]uncertain: uncertain positions / positions; override: positions where "
        "the guide changed the text / positions[/]"
    )
    if layout != "narrow":
        return
    for task, t in summary.tasks.items():
        for method, m in t.methods.items():
            if m.uncertain_rate is None and m.override_rate is None:
                continue
            console.print(
                f"  {task} {method}: uncertain {fmt(m.uncertain_rate)}, "
                f"override {fmt(m.override_rate)}",
                highlight=False,
            )


def summary_formulas(summary: Summary) -> dict[str, str]:
    """Each method's intervention-rate formula, as the summary records it."""
    return {
        method: m.ir_definition
        for t in summary.tasks.values()
        for method, m in t.methods.items()
        if m.ir_definition
    }


def overall_line(summary: Summary) -> str:
    """The run's last word: overall verdict, gate, exit code and timing, in one line."""
    o, timing = summary.overall, summary.timing
    return (
        f"Overall: [{VERDICT_STYLE.get(o.verdict, '')}]{o.verdict}[/] "
        f"(gate {'passed' if o.gate_passed else 'failed'}, exit {o.exit_code}); " + _timing(timing)
    )


def _timing(timing: Timing) -> str:
    """Load, decode and wall time; a resumed run's decoding spans its sessions, while its
    load and wall time are the last session's."""
    load, decode = f"load {timing.load_seconds:.1f} s", f"decode {timing.decode_seconds:.1f} s"
    total = f"{timing.total_seconds or 0:.1f} s"
    if timing.sessions > 1:
        return f"{decode} over {timing.sessions} sessions; this session: {load}, total {total}"
    return f"{load}, {decode}, total {total}"


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
    if registry.with_protocols([m for t in summary.tasks.values() for m in t.methods]):
        lines += ["", protocol_line(summary.settings.protocol)]
    lines += ["", f"Run directory: `{run_dir}`", ""]
    return "\n".join(lines)


def check_overall_line(report: CheckReport) -> str:
    """The last line of `pairscope check`: the worst status, the counts and the exit code."""
    counts = Counter(item.status.value for item in report.items)
    status = report.status.value
    tally = ", ".join(f"{counts[s]} {s}" for s in ("FAIL", "WARN", "PASS"))
    return (
        f"Overall: [{VERDICT_STYLE[status]}]{status}[/] ({tally} of {len(report.items)} "
        f"items, {report.seconds:.1f} s; exit {int(report.exit_code)})"
    )


# How `generate` shows which model wrote each piece: colours at a terminal, and marks in
# the text itself where colour would be lost (a pipe, a file, a CI log).
SOURCE_STYLE = {"base": "cyan", "guide": "magenta", "blend": "yellow"}


def source_pieces(steps: Iterable[Any]) -> list[tuple[str, str]]:
    """Consecutive steps of one source joined: ``[(source, text), ...]`` in order."""
    pieces: list[tuple[str, str]] = []
    for step in steps:
        if not step.text:
            continue
        if pieces and pieces[-1][0] == step.source:
            pieces[-1] = (step.source, pieces[-1][1] + step.text)
        else:
            pieces.append((step.source, step.text))
    return pieces


def marked_text(steps: Iterable[Any], *, plain: bool) -> Text:
    """The response with its writers shown: coloured, or (``plain``) every piece the base
    did not write enclosed as ``[guide: ...]`` or ``[blend: ...]``; taking the marks out
    gives back the response."""
    text = Text()
    for source, piece in source_pieces(steps):
        if not plain:
            text.append(piece, style=SOURCE_STYLE.get(source, ""))
        elif source == "base":
            text.append(piece)
        else:
            # Spaces and newlines at the piece's ends stay outside the marks.
            core = piece.strip()
            if not core:
                text.append(piece)
                continue
            head = piece[: len(piece) - len(piece.lstrip())]
            tail = piece[len(piece.rstrip()) :]
            text.append(f"{head}[{source}: {core}]{tail}")
    return text


def source_legend(*, plain: bool) -> str:
    """One line saying how :func:`marked_text` shows the writers (Rich markup)."""
    if plain:
        return (
            "Marks: \\[guide: ...] written by the guide, \\[blend: ...] chosen by the blend; "
            "unmarked text by the base"
        )
    return "Colours: " + " ".join(f"[{style}]{src}[/]" for src, style in SOURCE_STYLE.items())


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
        self.bars.console.print(f"[dim]{escape(text)}[/]")

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
