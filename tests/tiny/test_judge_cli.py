"""--judge on a real (tiny) run: the judge model loads through the backends, its
verdicts land in judge.json, the summary and the report, and a resume asks it nothing."""

from __future__ import annotations

import pytest

from pairscope.pipeline.runs import read_json
from tests.conftest import cli, data_dir

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")


def test_probe_with_a_judge_and_its_resume(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("PAIRSCOPE_JUDGE_CACHE", str(tmp_path / "judge-cache"))
    run = tmp_path / "run"
    args = [
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", "xstest", "--n", "3", "--fixed"),
        *("--max-new-tokens", "6", "--no-calibration", "--device", "cpu"),
        *("--judge", tiny_dirs["guide"], "--out", run),
    ]
    first = cli(*args)
    assert first.exit_code in (0, 1), first.output
    judged = read_json(run / "judge.json")
    assert judged["n"] == 3 and judged["calls"] == 3 and judged["cached"] == 0
    # A random tiny model answers no class: every verdict is unparseable, none guessed.
    assert judged["n_unparseable"] + judged["n_judged"] == 3
    assert len(judged["unparseable"]) == judged["n_unparseable"]
    assert read_json(run / "summary.json")["judge"]["n"] == 3
    assert "Model judge vs. rules" in (run / "report.html").read_text(encoding="utf-8")
    assert f"judge {tiny_dirs['guide']}: " in first.output
    again = cli(*args[:-2], "--resume", run)
    assert again.exit_code == first.exit_code, again.output
    rejudged = read_json(run / "judge.json")
    assert (rejudged["calls"], rejudged["cached"]) == (0, 3)
    assert "0 judge calls, 3 from cache" in again.output
