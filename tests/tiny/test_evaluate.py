"""`pairscope evaluate`, `report` and `compare` end to end on the tiny random pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.pipeline.runs import iter_records, read_json
from pairscope.schema import dump
from pairscope.summary import summarize
from tests.conftest import data_dir

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
METHODS = ["base", "guide", "nudging", "blendin"]


def cli(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def eval_run(tiny_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate") / "run"
    result = cli(
        "evaluate",
        "--base",
        tiny_dirs["base"],
        "--guide",
        tiny_dirs["guide"],
        "--data-dir",
        DATA,
        "--tasks",
        "truthfulqa,xstest",
        "--limit",
        "5",
        "--method",
        ",".join(METHODS),
        "--max-new-tokens",
        "6",
        "--tau",
        "0.9",
        "--out",
        out,
    )
    assert result.exit_code in (0, 1), result.output
    return out


def test_every_method_runs_on_the_identical_manifest(eval_run):
    manifest = read_json(eval_run / "manifest.json")
    gens = [dump(r) for r in iter_records(eval_run) if r.kind == "generation"]
    for task in ("truthfulqa", "xstest"):
        ids = set(manifest[task]["ids"])
        assert len(ids) == 5
        for method in METHODS:
            got = {r["sample_id"] for r in gens if r["task"] == task and r["method"] == method}
            assert got == ids, (task, method)


def test_summary_has_scores_rates_and_paired_comparisons(eval_run):
    summary = read_json(eval_run / "summary.json")
    assert summary["kind"] == "evaluate"
    for task in ("truthfulqa", "xstest"):
        t = summary["tasks"][task]
        assert t["subset"] is True and t["n"] == 5
        for method in METHODS:
            m = t["methods"][method]
            score = m["score"]
            assert score["n"] == 5 and score["low"] <= score["point"] <= score["high"]
            assert m["tokens"] > 0 and m["seconds"] > 0
            if method == "guide":
                assert m["intervention_rate"] is None and m["ir_definition"] is None
            else:
                ur = m["uncertain_rate"]
                assert ur["low"] <= ur["point"] <= ur["high"]
                num, den = (sum(c) for c in zip(*m["ir_counts"]))
                ir = m["intervention_rate"]
                if method == "nudging":
                    # the default protocol is the reference loop's (its authors' count)
                    assert m["ir_definition"] == "rounds / re-encoded base completion tokens"
                else:
                    assert m["ir_definition"] == "uncertain positions / positions"
                    assert ir == ur
                # The tiny guide may write every token: NUDGING's rate is then undefined.
                if den:
                    assert ir["point"] == pytest.approx(num / den)
                    assert ir["low"] <= ir["point"] <= ir["high"]
                else:
                    assert ir is None and num > 0
        pairs = {(c["a"], c["b"]) for c in t["comparisons"]}
        assert {("blendin", "nudging"), ("blendin", "base"), ("nudging", "base")} <= pairs
        for c in t["comparisons"]:
            assert c["n"] == 5
            assert c["diff"]["low"] <= c["diff"]["point"] <= c["diff"]["high"]
            assert 0.0 <= c["mcnemar"]["p_value"] <= 1.0
            assert c["mde"] > 0
    assert "rates" in summary["tasks"]["xstest"]["methods"]["base"]


def test_summary_is_reproduced_from_the_files(eval_run):
    summary = read_json(eval_run / "summary.json")
    again = summarize(eval_run)
    summary["timing"].pop("total_seconds", None)
    assert json.loads(json.dumps(dump(again))) == summary


def test_report_command_renders_the_runs_numbers(eval_run, tmp_path):
    out = tmp_path / "again.html"
    result = cli("report", eval_run, "--output", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    summary = read_json(eval_run / "summary.json")
    for task, t in summary["tasks"].items():
        score = t["methods"]["blendin"]["score"]
        shown = f"{score['point']:.3f} [{score['low']:.3f}, {score['high']:.3f}]"
        assert shown in html, (task, shown)
    assert re.search(r"a subset", html)


def test_compare_ranks_runs_and_plots_the_paradox(eval_run, tmp_path):
    out = tmp_path / "compare.html"
    result = cli("compare", eval_run, eval_run, "--output", out)
    assert result.exit_code == 0, result.output
    assert out.exists() and "data:image/png;base64," in out.read_text()
