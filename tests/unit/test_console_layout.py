"""What a run prints survives a CI log: at 80 and 120 columns the results table keeps every
header, task name and verdict whole, `check` ends with one overall line, and `generate`
marks in plain text which model wrote each piece."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from pairscope.check import CheckReport, Item
from pairscope.decoding.types import Step
from pairscope.metrics.intervention import Verdict
from pairscope.report.console import (
    check_overall_line,
    marked_text,
    overall_line,
    print_summary,
    source_legend,
)
from pairscope.schema import Summary
from tests.report_fixtures import make_run_dir

# A built-in task's longest name, and a user probe's longer one.
RENAMED = {"gsm8k": "truthfulqa", "xstest": "my_company_refusals_v2"}


@pytest.fixture(scope="module", params=["probe", "evaluate"])
def summary(request, tmp_path_factory) -> Summary:
    run = make_run_dir(tmp_path_factory.mktemp(request.param), request.param)
    loaded = Summary.model_validate(json.loads((run / "summary.json").read_text()))
    return loaded.model_copy(
        update={"tasks": {RENAMED[task]: t for task, t in loaded.tasks.items()}}
    )


def render(summary: Summary, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False)
    print_summary(summary, Path("reports/run"), console)
    return console.file.getvalue()  # type: ignore[attr-defined]


def table_lines(text: str) -> list[str]:
    """The table's lines: from its header to the last line before the legend."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "task" in line and "verdict" in line)
    end = next(i for i, line in enumerate(lines) if i > start and "  IR (intervention" in line)
    return lines[start:end]


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_width_with_every_header_task_and_verdict_whole(summary, width):
    text = render(summary, width)
    table = table_lines(text)
    assert all(len(line) <= width for line in table), "\n".join(table)
    assert "…" not in text
    header = table[0].split()
    for name in ("task", "method", "n", "IR", "score", "verdict"):
        assert name in header, table[0]
    rows = [line.split() for line in table[1:]]
    for task, t in summary.tasks.items():
        # Each task's verdict sits on its gate method's row, both whole.
        assert [task, t.gate_method] in [row[:2] for row in rows], table
        row = next(r for r in rows if r[:2] == [task, t.gate_method])
        assert row[-1] == t.verdict, row
    # The abbreviation is explained, with the method's formula.
    for t in summary.tasks.values():
        formula = t.methods[t.gate_method].ir_definition
        assert f"IR (intervention rate), {t.gate_method}: {formula}" in text


def test_the_narrow_layout_keeps_the_rates_it_moves_out_of_the_table(summary):
    text = render(summary, 80)
    for task, t in summary.tasks.items():
        for method, m in t.methods.items():
            if m.uncertain_rate is not None:
                low = f"{m.uncertain_rate.low:.3f}"
                assert f"  {task} {method}: uncertain {m.uncertain_rate.point:.3f} [{low}," in text


def test_a_wide_console_gets_one_line_per_row_with_the_full_header(summary):
    text = render(summary, 200)
    assert "intervention rate" in text.splitlines()[1] + text.splitlines()[2]
    rows = sum(len(t.methods) for t in summary.tasks.values())
    body = [line for line in text.splitlines() if line.startswith("│")]
    assert len(body) == rows  # one line a row: no interval wrapped


def test_the_last_lines_are_the_overall_verdict_and_the_run_directory(summary):
    lines = render(summary, 80).splitlines()
    assert lines[-2].startswith(f"Overall: {summary.overall.verdict} (gate ")
    assert f"exit {summary.overall.exit_code}" in lines[-2]
    assert lines[-1] == "Run directory: reports/run"


def test_a_resumed_runs_timing_says_what_spans_its_sessions(summary):
    once = summary.timing.model_copy(update={"total_seconds": 9.0})
    assert overall_line(summary.model_copy(update={"timing": once})).endswith(
        f"load {once.load_seconds:.1f} s, decode {once.decode_seconds:.1f} s, total 9.0 s"
    )
    resumed = once.model_copy(update={"sessions": 2})
    line = overall_line(summary.model_copy(update={"timing": resumed}))
    assert line.endswith(
        f"decode {once.decode_seconds:.1f} s over 2 sessions; "
        f"this session: load {once.load_seconds:.1f} s, total 9.0 s"
    )


def _plain(markup: str) -> str:
    console = Console(file=io.StringIO(), width=300, no_color=True)
    console.print(markup)
    return console.file.getvalue().strip()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("PASS", "PASS"), "Overall: PASS (0 FAIL, 0 WARN, 2 PASS of 2 items, 1.5 s; exit 0)"),
        (("PASS", "WARN"), "Overall: WARN (0 FAIL, 1 WARN, 1 PASS of 2 items, 1.5 s; exit 0)"),
        (("FAIL", "WARN"), "Overall: FAIL (1 FAIL, 1 WARN, 0 PASS of 2 items, 1.5 s; exit 2)"),
    ],
)
def test_check_ends_with_the_worst_status_and_the_counts(statuses, expected):
    items = tuple(
        Item(check=f"item {i}", model="pair", status=Verdict(s), found="x")
        for i, s in enumerate(statuses)
    )
    report = CheckReport(base="b", guide="g", items=items, seconds=1.5)
    assert _plain(check_overall_line(report)) == expected


def _step(text: str, source: str) -> Step:
    return Step(
        position=0, p_base=0.5, p_guide=None, alpha=None, text=text, source=source,
        uncertain=source != "base", override=False,
    )  # fmt: skip


def test_plain_text_marks_every_piece_the_base_did_not_write():
    steps = [
        _step("The", "base"),
        _step(" answer", "guide"),
        _step(" is", "guide"),
        _step("", "base"),
        _step(" 84", "blend"),
        _step(".", "base"),
        _step("\n", "base"),
    ]
    plain = marked_text(steps, plain=True).plain
    assert plain == "The [guide: answer is] [blend: 84].\n"
    assert re.sub(r"\[(guide|blend): ", "", plain).replace("]", "") == "The answer is 84.\n"
    # At a terminal the text is unchanged and colour carries the source.
    coloured = marked_text(steps, plain=False)
    assert coloured.plain == "The answer is 84.\n"
    assert {span.style for span in coloured.spans} == {"cyan", "magenta", "yellow"}
    # The legend says what the marks mean, and survives Rich markup.
    assert _plain(source_legend(plain=True)).startswith("Marks: [guide: ...] written by the guide")
