"""`pairscope probe` end to end on the embedded real pair: the CI-gate contract.

One run of all three probes (n = 3, short responses) through the CLI, then
checks on its exit code, summary.json, records.jsonl, the --json and --markdown
outputs, and that the summary is a pure function of the run directory's files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.pipeline.runs import SCHEMA_VERSION, iter_records, read_json
from pairscope.schema import dump
from pairscope.summary import summarize
from tests.conftest import data_dir

DATA = data_dir()
TASKS = ("gsm8k", "truthfulqa", "xstest")
N = 3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found"),
]


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> dict[str, Any]:
    """Run the probe once; every test reads its outputs."""
    root = tmp_path_factory.mktemp("e2e")
    run = root / "run"
    result = CliRunner().invoke(
        app,
        [
            "probe",
            *("--data-dir", str(DATA), "--limit", str(N), "--max-new-tokens", "16"),
            *("--out", str(run), "--json", "--markdown", str(root / "summary.md")),
            # The position protocol: these tests read its per-position rates; the default
            # reference protocol is checked against its authors' code in
            # test_reference_outputs.py and for invariance in test_engine_real.py.
            *("--device", "cpu", "--protocol", "position"),
        ],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return {"result": result, "run": run, "markdown": root / "summary.md"}


def intervals(value: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every dict with point/low/high in a summary, with where it is."""
    found = []
    if isinstance(value, dict):
        if {"point", "low", "high"} <= value.keys():
            found.append((path, value))
        for key, item in value.items():
            found += intervals(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += intervals(item, f"{path}[{i}]")
    return found


def test_exit_code_matches_the_overall_verdict(probed):
    result = probed["result"]
    summary = read_json(probed["run"] / "summary.json")
    assert result.exit_code in (0, 1), result.output
    assert result.exit_code == summary["overall"]["exit_code"]
    verdicts = [t["verdict"] for t in summary["tasks"].values()]
    expected = "FAIL" if "FAIL" in verdicts else "WARN" if "WARN" in verdicts else "PASS"
    assert summary["overall"]["verdict"] == expected
    assert summary["overall"]["gate_passed"] is (expected != "FAIL")
    assert "Traceback" not in result.output


def test_summary_fields(probed):
    summary = read_json(probed["run"] / "summary.json")
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["kind"] == "probe"
    assert summary["pair"]["base"]["spec"] == "embedded:gemma-3-270m"
    assert summary["pair"]["guide"]["spec"] == "embedded:smollm2-135m-instruct"
    assert list(summary["tasks"]) == list(TASKS)
    for name, task in summary["tasks"].items():
        assert task["n"] == N and task["subset"] is True
        assert task["gate_method"] == "nudging" and list(task["methods"]) == ["nudging"]
        assert task["threshold"] == 0.2
        assert task["verdict"] in ("PASS", "WARN", "FAIL") and task["reason"]
        nudging = task["methods"]["nudging"]
        for key in ("uncertain_rate", "override_rate"):
            est = nudging[key]
            assert 0.0 <= est["low"] <= est["point"] <= est["high"] <= 1.0, (name, key)
        # The guide overrides only at uncertain positions.
        assert nudging["override_rate"]["point"] <= nudging["uncertain_rate"]["point"]
        # The gated rate is NUDGING's own: rounds / base-written tokens, pooled.
        assert nudging["ir_definition"] == "rounds / base-written tokens"
        rounds, written = (sum(c) for c in zip(*nudging["ir_counts"]))
        ir = nudging["intervention_rate"]
        assert ir["point"] == pytest.approx(rounds / written)
        assert 0.0 <= ir["low"] <= ir["point"] <= ir["high"], name
        assert nudging["score"]["n"] == N
        if name in ("gsm8k", "truthfulqa"):
            for role in ("base", "guide"):
                cal = task["calibration"][role]
                for metric in ("ece", "ece_equal_mass", "mce"):
                    assert 0.0 <= cal[metric]["point"] <= 1.0, (name, role, metric)
            arbitration = task["arbitration"]
            assert arbitration["statement"]
            assert arbitration["n_positions"] >= 0
        else:
            assert task["calibration"] is None and task["arbitration"] is None
    assert summary["tasks"]["truthfulqa"]["answer_calibration"] is not None
    assert summary["overall"]["policy"] == "any-fail" and summary["overall"]["strict"] is False


def test_every_interval_contains_its_point(probed):
    summary = read_json(probed["run"] / "summary.json")
    found = intervals(summary)
    assert len(found) > 20
    for where, est in found:
        if est["point"] is None or (isinstance(est["point"], float) and math.isnan(est["point"])):
            continue
        assert est["low"] <= est["point"] + 1e-12, where
        assert est["point"] <= est["high"] + 1e-12, where


def test_one_generation_record_per_sample(probed):
    run: Path = probed["run"]
    manifest = read_json(run / "manifest.json")
    gens = [dump(r) for r in iter_records(run) if r.kind == "generation"]
    keys = [(r["task"], r["sample_id"], r["method"]) for r in gens]
    assert len(keys) == len(set(keys)) == N * len(TASKS)
    for task in TASKS:
        ids = {sid for t, sid, _ in keys if t == task}
        assert ids == set(manifest[task]["ids"])
    for rec in gens:
        assert rec["stop_reason"] in ("eos", "stop", "length")
        assert rec["positions"] == len(rec["steps"]) <= 16
        assert rec["uncertain"] == sum(s["uncertain"] for s in rec["steps"])


def test_summary_is_recomputed_from_the_files(probed):
    saved = read_json(probed["run"] / "summary.json")
    total = saved["timing"].pop("total_seconds")
    assert total > 0
    assert dump(summarize(probed["run"])) == saved


def test_json_to_stdout(probed):
    printed = json.loads(probed["result"].stdout)
    assert printed == read_json(probed["run"] / "summary.json")


def test_markdown_table(probed):
    summary = read_json(probed["run"] / "summary.json")
    text = probed["markdown"].read_text()
    assert text.startswith(f"### pairscope probe: {summary['overall']['verdict']}")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(TASKS)
    for task, row in zip(TASKS, rows[1:]):
        info = summary["tasks"][task]
        assert row.startswith(f"| {task} | {N}/{info['dataset_size']} | ")
        # The verdict, then what decided it: the sequential test (the default).
        verdict, decided_by = row.rsplit(" | ", 2)[-2:]
        assert verdict == f"**{info['verdict']}**"
        assert decided_by.startswith("anytime-valid test ") and decided_by.endswith(" |")
