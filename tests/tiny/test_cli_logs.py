"""The commands' output as a CI log keeps it (not a terminal, COLUMNS=80 or 120), on the
tiny random pair: the probe's table whole, `check`'s overall line last, `generate`'s
writers marked in the text."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from tests.conftest import data_dir

DATA = data_dir()


def run(columns: int, *args: object):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


@pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
@pytest.mark.parametrize("columns", [80, 120])
def test_probe_table_fits_the_log_width(tiny_dirs, tmp_path, columns):
    result = run(
        columns,
        "probe",
        "--base", tiny_dirs["base"],
        "--guide", tiny_dirs["guide"],
        "--data-dir", DATA,
        "--tasks", "truthfulqa,xstest",
        "-n", "3",
        "--max-new-tokens", "4",
        "--tau", "2",
        "--protocol", "position",  # the per-position rates fill the wide columns
        "--no-calibration",
        "--fixed",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # tau 2: IR 1, FAIL on both tasks
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"\s*task\s+method\s", line))
    table = lines[header : header + 6]
    assert all(len(line) <= columns for line in table), "\n".join(table)
    assert "…" not in result.stdout
    narrow = ["task", "method", "n", "IR", "score", "verdict"]
    stacked = ["task", "method", "n", "IR", "uncertain", "override", "score", "verdict"]
    # 80 columns take the narrow layout; at 120 the stacked one fits unless the values
    # (their intervals' digits) make it wider, and then the narrow one is chosen.
    assert table[0].split() in ([narrow] if columns == 80 else [narrow, stacked])
    rows = [line.split() for line in table if line.split()[:1] in (["truthfulqa"], ["xstest"])]
    assert [(r[0], r[-1]) for r in rows] == [("truthfulqa", "FAIL"), ("xstest", "FAIL")]
    # The verdict, then where to find the run and its report.
    overall = next(i for i, line in enumerate(lines) if line.startswith("Overall: "))
    assert lines[overall].startswith("Overall: FAIL (gate failed, exit 1)")
    assert [line.split(":")[0] for line in lines[overall + 1 :]] == ["Run directory", "Report"]


@pytest.mark.parametrize("columns", [80, 120])
def test_check_ends_with_one_overall_line(tiny_dirs, columns):
    result = run(columns, "check", "--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"])
    assert result.exit_code == 0, result.output
    last = result.stdout.rstrip().splitlines()[-1]
    assert re.fullmatch(
        r"Overall: (PASS|WARN) \(0 FAIL, \d+ WARN, \d+ PASS of \d+ items, [\d.]+ s; exit 0\)", last
    ), last
    assert all(len(line) <= columns for line in result.stdout.splitlines()[:-1])


def test_generate_marks_the_guide_pieces_when_not_at_a_terminal(tiny_dirs):
    # tau 2: every position is uncertain, so NUDGING opens a round at the first one and
    # the guide writes that word.
    result = run(
        80,
        "generate",
        "--base", tiny_dirs["base"],
        "--guide", tiny_dirs["guide"],
        "--prompt", "Tom has 3 apples.",
        "--tau", "2",
        "--protocol", "position",
        "--max-new-tokens", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "[guide: " in result.stdout
    assert "Marks: [guide: ...] written by the guide" in result.stdout
