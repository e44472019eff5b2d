"""scripts/compare_texts.py: the before/after comparison quoted for refactors finds every
difference in the records and the summary, and none between two identical runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.report_fixtures import make_run_dir

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_texts.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_texts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _edit_line(path: Path, kind: str, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.endswith("\n") and json.loads(line)["kind"] == kind:
            record = json.loads(line)
            edit(record)
            lines[i] = json.dumps(record) + "\n"
            break
    path.write_text("".join(lines), encoding="utf-8")


def test_identical_runs_and_every_kind_of_difference(compare, tmp_path, capsys):
    before = make_run_dir(tmp_path / "before", "evaluate")
    after = make_run_dir(tmp_path / "after", "evaluate")
    compare.main([str(before), str(after), "--all"])
    out = capsys.readouterr().out
    assert "gsm8k: 0 of 12 responses differ" in out
    assert "calibration: 24 of 24 identical" in out and "summary: 0 values differ" in out

    records = after / "records.jsonl"
    _edit_line(records, "calibration", lambda r: r["confidence"].__setitem__(0, 0.5))
    _edit_line(records, "generation", lambda r: r.update(text=r["text"] + "!"))
    summary = json.loads((after / "summary.json").read_text(encoding="utf-8"))
    summary["tasks"]["gsm8k"]["threshold"] = 0.3
    summary["timing"]["decode_seconds"] = 99.0  # timing is not compared
    (after / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    compare.main([str(before), str(after), "--all"])
    out = capsys.readouterr().out
    assert "gsm8k: 1 of 12 responses differ" in out
    assert "calibration: 23 of 24 identical" in out and ".confidence[0]" in out
    assert "summary: 1 values differ" in out and ".tasks.gsm8k.threshold" in out
