"""Fault injection that needs a model: concurrent writers, kills and resumes, on the tiny
random pair (tests/conftest.py). The faults caught before a model loads are in
tests/unit/test_faults.py; docs/reliability.md names the test of each promise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pairscope.pipeline.runs import RECORDS, iter_records
from pairscope.schema import record_key
from tests.conftest import REPO, cli, data_dir

DATA = data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pairscope", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )


def probe_args(tiny_dirs, run: Path, *extra: object) -> list:
    return [
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", "xstest", "-n", "12", "--batch-size", "1"),
        *("--max-new-tokens", "12", "--no-calibration", "--fixed", "--out", run),
        *extra,
    ]


def keys_of(run: Path) -> Counter:
    return Counter(record_key(r) for r in iter_records(run))


@needs_data
@pytest.mark.parametrize("how", ["new", "resume"])
def test_two_concurrent_runs_on_one_directory_leave_one_set_of_records(tiny_dirs, tmp_path, how):
    run = tmp_path / "run"
    if how == "resume":
        # A run interrupted after its first record: both writers would finish it.
        first = cli(*probe_args(tiny_dirs, run))
        assert first.exit_code in (0, 1), first.output
        lines = (run / RECORDS).read_text(encoding="utf-8").splitlines(keepends=True)
        (run / RECORDS).write_text("".join(lines[:2]), encoding="utf-8")
        (run / "summary.json").unlink()
        extra: tuple = ("--resume", run)
    else:
        extra = ()
    procs = [start(*probe_args(tiny_dirs, run, *extra)) for _ in range(2)]
    outcomes = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        outcomes.append((proc.returncode, stderr))
    codes = sorted(code for code, _ in outcomes)
    assert all(code in (0, 1, 2) for code in codes), outcomes
    keys = keys_of(run)
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    assert sum(k[0] == "generation" for k in keys) == 12
    refusals = [stderr for code, stderr in outcomes if code == 2]
    assert len(refusals) <= 1
    for stderr in refusals:  # the loser says who holds the run, or that it is taken
        assert "in use by another pairscope process (pid" in stderr or "already holds" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tasks"]["xstest"]["n"] == 12


@needs_data
def test_resume_with_a_changed_setting_or_model_is_refused_naming_it(tiny_dirs, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_dirs["base"], base)
    run = tmp_path / "run"
    args = probe_args({**tiny_dirs, "base": base}, run)
    assert cli(*args).exit_code in (0, 1)
    changed = cli(*args, "--resume", run, "--tokenization", "own")
    assert changed.exit_code == 2 and "tokenization: run has 'canonical'" in changed.stderr
    strict = cli(*args, "--resume", run, "--strict")
    assert strict.exit_code == 2 and "strict: run has False, now True" in strict.stderr
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "rope_theta": 12345.0}))
    other = cli(*args, "--resume", run)
    assert other.exit_code == 2 and "different models (base sha256" in other.stderr


def generate_args(tiny_dirs, src: Path, dest: Path) -> list:
    return [
        "generate",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--input", src, "--output", dest, "--batch-size", "2", "--max-new-tokens", "24"),
    ]


def write_rows(path: Path, count: int) -> list[dict]:
    rows = [
        {"id": f"row-{i}", "base_prompt": f"Question: what is {i} + {i}?\u2028Think.\nAnswer:"}
        for i in range(count)
    ]
    rows[1]["meta"] = {"source": "caller", "tags": ["a", "b"]}
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return rows


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_generate_keeps_the_callers_columns_and_resumes_without_redoing_rows(tiny_dirs, tmp_path):
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = write_rows(src, 4)
    result = cli(*generate_args(tiny_dirs, src, dest))
    assert result.exit_code == 0, result.output
    out = read_results(dest)
    assert [o["input_line"] for o in out] == [1, 2, 3, 4]  # the finished file is in input order
    assert [o["id"] for o in out] == [r["id"] for r in rows]
    assert out[1]["meta"] == rows[1]["meta"] and "meta" not in out[0]
    # A file cut after its first result (a kill) is continued: row 1 is kept as written.
    kept = {**out[0], "text": "written by the first run"}
    dest.write_text(json.dumps(kept) + "\n" + json.dumps(out[1])[:20], encoding="utf-8")
    again = cli(*generate_args(tiny_dirs, src, dest))
    assert again.exit_code == 0, again.output
    assert "1 kept from an earlier run" in again.stdout
    final = read_results(dest)
    assert final[0] == kept
    assert [o["text"] for o in final[1:]] == [o["text"] for o in out[1:]]


def test_sigkill_during_generate_loses_at_most_the_rows_in_flight(tiny_dirs, tmp_path):
    src, dest = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = write_rows(src, 40)
    args = generate_args(tiny_dirs, src, dest)
    args[args.index("--batch-size") + 1] = "1"
    proc = start(*args)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if dest.exists() and dest.read_text(encoding="utf-8").count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "generate ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    raw = dest.read_text(encoding="utf-8")
    before = [json.loads(line) for line in raw.split("\n")[:-1]]  # whole lines only
    assert 2 <= len(before) < len(rows)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    final = read_results(dest)
    assert sorted(o["input_line"] for o in final) == list(range(1, len(rows) + 1))
    by_line = {o["input_line"]: o for o in final}
    for old in before:  # every row finished before the kill is kept, not redone
        assert by_line[old["input_line"]] == old
