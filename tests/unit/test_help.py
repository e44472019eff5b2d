"""`--help` reads as the docstrings are written: paragraphs re-flowed to the terminal's
width (not broken where the source lines break), and no placeholder swallowed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pairscope.cli import app

COMMANDS = [
    ["--help"],
    ["generate", "--help"],
    ["check", "--help"],
    ["probe", "--help"],
    ["evaluate", "--help"],
    ["report", "--help"],
    ["compare", "--help"],
    ["score", "--help"],
    ["probes", "list", "--help"],
    ["probes", "show", "--help"],
]


def _help(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(columns), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:-1]) or "pairscope")
def test_help_renders(args: list[str]) -> None:
    text = _help(args, 100)
    assert "Usage: pairscope" in text
    assert "Show this message and exit." in text


def test_paragraphs_reflow_to_the_width() -> None:
    # The docstring breaks this sentence after "family and"; a wide terminal shows it whole.
    wide = _help(["check", "--help"], 200)
    assert "for each model's tokenizer family and single-token spaces, chat template" in wide
    # A narrow one wraps it to the width, with no line left half empty by a source break.
    narrow = _help(["check", "--help"], 80)
    lines = [ln.rstrip() for ln in narrow.splitlines()]
    start = next(i for i, ln in enumerate(lines) if "Reports PASS" in ln)
    paragraph = lines[start : lines.index("", start)]
    assert len(paragraph) >= 3
    assert all(len(ln) > 60 for ln in paragraph[:-1]), paragraph


def test_placeholders_survive_markup() -> None:
    # Markdown treats <word> as an HTML tag and drops it; the help names placeholders in
    # capitals instead.
    assert "blend:ALPHA" in _help(["evaluate", "--help"], 200)
    assert "blend:ALPHA" in _help(["generate", "--help"], 200)
    assert "reports/COMMAND-TIME" in _help(["probe", "--help"], 200)


def test_probe_help_states_the_futility_rule_the_code_applies() -> None:
    from pairscope.metrics.sequential import FUTILITY_CHANCE, FUTILITY_MIN_SAMPLES

    text = " ".join(_help(["probe", "--help"], 200).split())
    assert f"from {FUTILITY_MIN_SAMPLES} samples on" in text
    assert f"under {FUTILITY_CHANCE * 100:g} % likely" in text
