"""Interrupted runs lose nothing and resume to the same result (docs/methods.md §5).

Ctrl-C (in process and as a real SIGINT), a cut last line and a real SIGKILL of
a probe on the embedded pair: in every case the resumed run's records and
summary equal those of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pairscope.pipeline.runs import RECORDS, RunDir, iter_records, read_json
from pairscope.schema import Record, dump
from tests.conftest import REPO, cli, data_dir

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
TIMING_KEYS = ("timing", "seconds", "tokens_per_second")


def without_timing(value: Any) -> Any:
    """A summary or record with every wall-clock measurement removed."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def work(run: Path) -> dict[tuple[str, str, str, str], dict]:
    """The records of a run keyed by unit of work, checking that no key appears twice."""
    out: dict[tuple[str, str, str, str], dict] = {}
    for rec in map(dump, iter_records(run)):
        if rec["kind"] == "session":
            continue
        key = (rec["kind"], rec["task"], rec["sample_id"], rec["method"])
        assert key not in out, f"duplicated record {key}"
        out[key] = without_timing(rec)
    return out


def assert_same_run(resumed: Path, reference: Path, *free_settings: str) -> None:
    """Same records and same summary, but for timing and the settings named free."""
    assert work(resumed) == work(reference)
    summaries = [without_timing(read_json(p / "summary.json")) for p in (resumed, reference)]
    for summary in summaries:
        for name in free_settings:
            summary["settings"].pop(name)
    assert summaries[0] == summaries[1]
    for line in (resumed / RECORDS).read_text().splitlines():
        json.loads(line)  # every line whole


def tiny_args(tiny_dirs, out: Path, *extra: object, task: str = "truthfulqa") -> list:
    """truthfulqa with calibration: generation, calibration, arbitration and answer records.

    Batch size 1, so that the interrupted and the clean run decode identical batches:
    the floats are then equal bit for bit (see test_resume_with_another_batch_size).
    """
    return [
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", task, "--limit", "3"),
        *("--max-new-tokens", "5", "--batch-size", "1", "--out", out),
        *extra,
    ]


def assert_close(a: Any, b: Any, tol: float = 1e-5, where: str = "") -> None:
    """Equal structures; floats equal within ``tol``."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=tol), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, tol, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def reference(tiny_dirs, tmp_path_factory) -> Path:
    """An uninterrupted tiny run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert cli(*tiny_args(tiny_dirs, out)).exit_code in (0, 1)
    return out


@pytest.mark.parametrize(("kind", "after"), [("generation", 1), ("calibration", 3)])
def test_ctrl_c_then_resume_gives_the_uninterrupted_result(
    tiny_dirs, reference, tmp_path, monkeypatch, kind, after
):
    """Ctrl-C arrives while appending the (after+1)-th record of a kind."""
    original = RunDir.append
    seen = [0]

    def append(self: RunDir, record: Record) -> None:
        if record.kind == kind:
            seen[0] += 1
            if seen[0] > after:
                raise KeyboardInterrupt
        original(self, record)

    monkeypatch.setattr(RunDir, "append", append)
    run = tmp_path / "run"
    result = cli(*tiny_args(tiny_dirs, run))
    assert result.exit_code == 130
    assert f"Continue with: pairscope probe --resume {run}" in result.stderr
    assert not (run / "summary.json").exists()
    assert sum(r.kind == kind for r in iter_records(run)) == after

    monkeypatch.setattr(RunDir, "append", original)
    # The settings not given again (all of them here) are the run's own.
    resumed = cli("probe", "--resume", run)
    assert resumed.exit_code == read_json(reference / "summary.json")["overall"]["exit_code"]
    assert_same_run(run, reference)


def test_resume_with_another_batch_size_gives_the_same_result(tiny_dirs, tmp_path):
    """The batch size may change on resume (e.g. after running out of memory).

    Rows padded to a common length give the same tokens and the same probabilities up
    to float rounding (not bit for bit). xstest's prompts are short: prompts longer
    than a sliding window (Gemma 3: 512 tokens) also shift with padding, a documented
    caveat of batching (see pairscope/runtime/stream.py).
    """
    reference = tmp_path / "reference"
    assert cli(*tiny_args(tiny_dirs, reference, task="xstest")).exit_code in (0, 1)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "manifest.json"):
        (run / name).write_text((reference / name).read_text())
    first = next(
        line
        for line in (reference / RECORDS).read_text().splitlines()
        if json.loads(line)["kind"] == "generation"
    )
    (run / RECORDS).write_text(first + "\n")  # as if killed after one sample
    args = tiny_args(tiny_dirs, run, "--resume", run, task="xstest")
    args[args.index("--batch-size") + 1] = "3"
    assert cli(*args).exit_code in (0, 1)
    assert_close(work(run), work(reference))
    summaries = [without_timing(read_json(p / "summary.json")) for p in (run, reference)]
    assert summaries[0]["settings"].pop("batch_size") == 3
    assert summaries[1]["settings"].pop("batch_size") == 1
    assert_close(summaries[0], summaries[1])


def test_a_cut_last_line_is_repaired_on_resume(tiny_dirs, reference, tmp_path):
    """A hard kill in the middle of a write leaves half a line; resume drops and redoes it."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "manifest.json"):
        (run / name).write_text((reference / name).read_text())
    lines = (reference / RECORDS).read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["kind"] == "calibration")
    (run / RECORDS).write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    result = cli(*tiny_args(tiny_dirs, run), "--resume", run)
    assert result.exit_code in (0, 1)
    assert_same_run(run, reference)


def wait_for_generations(records: Path, count: int, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the probe ended (exit {proc.returncode}) before it could be interrupted")
        if records.exists():
            text = records.read_text(encoding="utf-8", errors="replace")
            if text.count('"kind": "generation"') >= count:
                return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {count} generation records within {limit} s")


def _foreground_sigint() -> None:
    # A process started in the background by a non-interactive shell (a CI runner, `&`)
    # inherits SIGINT ignored, and Python then keeps it ignored. Give the probe the
    # disposition of a foreground process, where Ctrl-C arrives as the user presses it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_probe(args: list, stderr: Any = subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pairscope", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        preexec_fn=_foreground_sigint,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_exits_130_keeps_samples_and_says_how_to_resume(tiny_dirs, tmp_path, sig):
    """Ctrl-C, and SIGTERM (a scheduler's preemption, `kill`, a CI timeout), alike."""
    run = tmp_path / "run"
    args = [
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", "xstest", "--limit", "200", "--batch-size", "1"),
        # --fixed: a sequential probe of the tiny pair may decide and end within seconds.
        *("--max-new-tokens", "32", "--no-calibration", "--fixed", "--out", run),
    ]
    proc = start_probe(args)
    wait_for_generations(run / RECORDS, 1, proc, limit=120)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted: finished samples are saved in {run}" in stderr
    assert f"Continue with: pairscope probe --resume {run}" in stderr
    gens = [dump(r) for r in iter_records(run) if r.kind == "generation"]
    assert 1 <= len(gens) < 200
    assert not (run / "summary.json").exists()


@pytest.mark.slow
def test_sigkill_of_a_real_probe_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Kill -9 a probe of the embedded pair, resume it, compare with a clean run."""
    settings = [
        *("--data-dir", DATA, "--tasks", "gsm8k", "--limit", "4", "--batch-size", "1"),
        *("--no-calibration", "--max-new-tokens", "16", "--device", "cpu"),
    ]
    killed = tmp_path / "killed"
    proc = start_probe(["probe", *settings, "--out", killed], stderr=subprocess.DEVNULL)
    try:
        wait_for_generations(killed / RECORDS, 2, proc, limit=300)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = [dump(r) for r in iter_records(killed) if r.kind == "generation"]
    assert 2 <= len(done) < 4
    assert not (killed / "summary.json").exists()

    resumed = cli("probe", *settings, "--out", killed, "--resume", killed)
    assert resumed.exit_code in (0, 1), resumed.output
    clean = tmp_path / "clean"
    result = cli("probe", *settings, "--out", clean)
    assert result.exit_code == resumed.exit_code
    assert_same_run(killed, clean)
    # The resumed run decoded only what the kill left undone.
    sessions = [dump(r) for r in iter_records(killed) if r.kind == "session"]
    assert len(sessions) == 2
    for before in done:
        key = ("generation", before["task"], before["sample_id"], before["method"])
        assert work(killed)[key] == without_timing(before)
