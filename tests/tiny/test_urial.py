"""URIAL on the tiny random pair: the base after an alignment preamble, in the engine, in
`generate`, in `evaluate` (paired with every other arm) and in the report; no gate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.methods.urial import PREAMBLE
from pairscope.pipeline.runs import read_json
from tests.conftest import data_dir

PROMPTS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
    "The capital of France is",
    "I cannot help with that request",
]


def reqs(n: int = 12) -> list[Request]:
    return [Request(p, p, (), n) for p in PROMPTS]


def cli(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_urial_is_the_base_after_its_preamble(tiny_pair):
    """The oracle: base greedy decoding of the preamble followed by the prompt, with no
    uncertain position and no intervention rate."""
    urial = generate(tiny_pair, reqs(), DecodeSettings(method="urial", batch_size=2))
    prefixed = [replace(r, base_prompt=PREAMBLE + r.base_prompt) for r in reqs()]
    base = generate(tiny_pair, prefixed, DecodeSettings(method="base", batch_size=2))
    assert [r.text for r in urial] == [r.text for r in base]
    plain = generate(tiny_pair, reqs(), DecodeSettings(method="base", batch_size=2))
    assert [r.text for r in urial] != [r.text for r in plain]  # the preamble is read
    for r in urial:
        assert r.method == "urial" and r.ir_kind is None
        assert r.intervention_rate is None and r.uncertain_rate is None
        assert r.uncertain == 0 and r.overridden == 0 and r.positions > 0
        assert r.to_dict()["intervention_rate"] is None


def test_urial_reads_a_preamble_of_ones_own(tiny_pair, tmp_path):
    own = tmp_path / "preamble.txt"
    own.write_text("# A terse assistant answers in one line.\n\n", encoding="utf-8")
    method = f"urial:{own}"
    mine = generate(tiny_pair, reqs(), DecodeSettings(method=method))
    prefixed = [replace(r, base_prompt=own.read_text() + r.base_prompt) for r in reqs()]
    base = generate(tiny_pair, prefixed, DecodeSettings("base"))
    assert [r.text for r in mine] == [r.text for r in base]
    assert {r.method for r in mine} == {method}


def test_generate_runs_urial(tiny_dirs):
    result = cli(
        "generate",
        "--base",
        tiny_dirs["base"],
        "--guide",
        tiny_dirs["guide"],
        "--prompt",
        "The capital of France is",
        "--method",
        "urial",
        "--max-new-tokens",
        "4",
    )
    assert result.exit_code == 0, result.output


def test_a_probe_cannot_gate_urial_and_says_why(tiny_dirs):
    models = ("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"])
    result = cli("probe", *models, "--method", "urial")
    assert result.exit_code == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "'urial' has no intervention rate" in error[0], result.stderr


def test_a_missing_preamble_file_is_an_input_error(tiny_dirs, tmp_path):
    missing = tmp_path / "nope.txt"
    result = cli(
        "generate",
        "--base",
        tiny_dirs["base"],
        "--guide",
        tiny_dirs["guide"],
        "--prompt",
        "Hi",
        "--method",
        f"urial:{missing}",
    )
    assert result.exit_code == 2 and "Cannot read the URIAL preamble" in result.stderr


DATA = data_dir()


@pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
def test_evaluate_compares_urial_with_every_other_arm_and_reports_it(tiny_dirs, tmp_path):
    out: Path = tmp_path / "run"
    arms = ["base", "guide", "blendin", "urial"]
    result = cli(
        "evaluate",
        "--base",
        tiny_dirs["base"],
        "--guide",
        tiny_dirs["guide"],
        "--data-dir",
        DATA,
        "--tasks",
        "truthfulqa",
        "--limit",
        "4",
        "--method",
        ",".join(arms),
        "--max-new-tokens",
        "4",
        "--out",
        out,
    )
    assert result.exit_code in (0, 1), result.output
    task = read_json(out / "summary.json")["tasks"]["truthfulqa"]
    urial = task["methods"]["urial"]
    assert urial["score"]["n"] == 4
    assert urial["intervention_rate"] is None and urial["ir_definition"] is None
    assert task["gate_method"] == "blendin"
    pairs = {(c["a"], c["b"]) for c in task["comparisons"]}
    assert {("urial", m) for m in arms if m != "urial"} <= pairs
    assert ("blendin", "base") in pairs and ("guide", "base") in pairs
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "urial" in html
