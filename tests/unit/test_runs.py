"""The run directory: creation rules, append-once records, repair and resume checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairscope.errors import RunDirError
from pairscope.pipeline.runs import (
    RECORDS,
    RunDir,
    is_run_dir,
    iter_records,
    read_json,
    write_json_atomic,
)
from pairscope.pipeline.spec import RunSpec
from pairscope.schema import SCHEMA_VERSION, GenerationRecord, dump

SETTINGS = RunSpec(
    tasks=("gsm8k",),
    task_names=("gsm8k",),
    methods=("nudging",),
    n=3,
    tau=0.4,
    thresholds={"gsm8k": 0.2},
    max_new={"gsm8k": 8},
)


def gen(sample: str, method: str = "nudging", text: str = "x") -> GenerationRecord:
    return GenerationRecord(
        task="gsm8k",
        sample_id=sample,
        method=method,
        prompt="q",
        target="1",
        correct=False,
        label=None,
        extracted=None,
        seconds=0.1,
        text=text,
        positions=1,
        uncertain=0,
        overridden=0,
        ir_kind="rounds / base-written tokens",
        ir_numerator=0,
        ir_denominator=1,
        intervention_rate=0.0,
        uncertain_rate=0.0,
        stop_reason="length",
    )


def new_run(path: Path) -> RunDir:
    """A new run whose writer has finished (its lock released; appends still work)."""
    run = RunDir.create(path, SETTINGS)
    run.close()
    return run


def test_create_writes_config_and_empty_records(tmp_path):
    run = new_run(tmp_path / "run")
    assert is_run_dir(run.path)
    config = read_json(run.path / "config.json")
    assert config["schema_version"] == SCHEMA_VERSION and config["settings"] == SETTINGS.record()
    assert (run.path / RECORDS).read_text() == ""


def test_create_accepts_an_existing_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    assert is_run_dir(new_run(tmp_path / "empty").path)


def test_create_refuses_a_non_run_directory_even_with_force(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(RunDirError, match="not a pairscope run"):
            RunDir.create(tmp_path / "notes", SETTINGS, force=force)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_create_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        RunDir.check_new(tmp_path / "file")


def test_create_on_a_run_needs_force_and_hints_at_resume(tmp_path):
    run = new_run(tmp_path / "run")
    run.append(gen("a"))
    with pytest.raises(RunDirError, match="already holds a run") as info:
        new_run(run.path)
    assert info.value.hint is not None and "--resume" in info.value.hint
    assert "--force" in info.value.hint
    again = RunDir.create(run.path, SETTINGS, force=True)
    assert list(again.records()) == []


def test_append_writes_each_key_once(tmp_path):
    run = new_run(tmp_path / "run")
    run.append(gen("a"))
    run.append(gen("a", text="again"))
    run.append(gen("a", method="blendin"))
    lines = (run.path / RECORDS).read_text().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["method"] for line in lines] == ["nudging", "blendin"]
    assert run.has("generation", "gsm8k", "a", "nudging")
    assert not run.has("generation", "gsm8k", "b", "nudging")


def test_append_refuses_nan_rather_than_writing_invalid_json(tmp_path):
    run = new_run(tmp_path / "run")
    with pytest.raises(ValueError):
        run.append(gen("a").model_copy(update={"seconds": float("nan")}))
    assert (run.path / RECORDS).read_text() == ""


def test_resume_skips_done_keys(tmp_path):
    run = new_run(tmp_path / "run")
    run.append(gen("a"))
    resumed = RunDir.resume(run.path, SETTINGS)
    assert resumed.has("generation", "gsm8k", "a", "nudging")
    resumed.append(gen("a"))
    resumed.append(gen("b"))
    assert [r.sample_id for r in iter_records(run.path)] == ["a", "b"]


def test_resume_repairs_a_truncated_last_line(tmp_path):
    run = new_run(tmp_path / "run")
    run.append(gen("a"))
    run.append(gen("b"))
    path = run.path / RECORDS
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 7])  # a hard kill in the middle of writing "b"
    assert [r.sample_id for r in iter_records(run.path)] == ["a"]
    resumed = RunDir.resume(run.path, SETTINGS)
    assert not resumed.has("generation", "gsm8k", "b", "nudging")
    resumed.append(gen("b"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["sample_id"] for line in lines] == ["a", "b"]


def test_resume_refuses_different_settings_and_names_them(tmp_path):
    run = new_run(tmp_path / "run")
    with pytest.raises(RunDirError) as info:
        RunDir.resume(run.path, SETTINGS.model_copy(update={"n": 5, "tau": 0.3}))
    assert "n: run has 3, now 5" in info.value.message
    assert "tau: run has 0.4, now 0.3" in info.value.message


def test_resume_allows_a_different_batch_size_and_device(tmp_path):
    run = new_run(tmp_path / "run")
    RunDir.resume(run.path, SETTINGS.model_copy(update={"batch_size": 1, "device": "cuda"}))


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a pairscope run directory"):
        RunDir.resume(tmp_path, SETTINGS)


def test_a_damaged_line_in_the_middle_is_a_clear_error(tmp_path):
    run = new_run(tmp_path / "run")
    run.append(gen("a"))
    with (run.path / RECORDS).open("a") as handle:
        handle.write("{not json\n")
    run.append(gen("b"))
    with pytest.raises(RunDirError, match="line 2 is not a JSON record"):
        list(iter_records(run.path))


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "y.json", {"nan": float("nan")})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_the_summary_counts_a_resumed_runs_sessions(tmp_path):
    """Decode time spans every session; the load time is the last session's."""
    from pairscope.schema import SessionRecord
    from pairscope.summary import summarize
    from tests.report_fixtures import make_run_dir

    path = make_run_dir(tmp_path / "run")
    first = summarize(path).timing
    assert first.sessions == 1 and "sessions" not in json.dumps(dump(first))
    resumed = SessionRecord(task="-", sample_id="2", method="-", load_seconds=2.25)
    file = path / RECORDS  # its last line is cut short (a crash): the session goes first
    file.write_text(json.dumps(dump(resumed)) + "\n" + file.read_text(encoding="utf-8"))
    again = summarize(path).timing
    assert again.sessions == 2 and again.load_seconds == first.load_seconds  # the last one's
    assert again.decode_seconds == first.decode_seconds
