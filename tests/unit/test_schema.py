"""The results contract (pairscope.schema): what is written is what the schema says, files
round-trip unchanged, and anything off the schema is refused with the field named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from pairscope.decoding.types import SampleResult, Step
from pairscope.errors import RunDirError
from pairscope.pipeline.runs import RECORDS, SUMMARY, iter_records, read_config, read_summary
from pairscope.pipeline.spec import OPTS, RunSpec, Settings, from_record
from pairscope.schema import (
    SCHEMA_VERSION,
    GenerationRecord,
    SessionRecord,
    StepRecord,
    Summary,
    Timing,
    dump,
)
from tests.report_fixtures import make_run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("schema") / "run", "evaluate")


def test_files_round_trip_unchanged(run: Path) -> None:
    on_disk = json.loads((run / SUMMARY).read_text(encoding="utf-8"))
    assert dump(read_summary(run)) == on_disk
    lines = (run / RECORDS).read_text(encoding="utf-8").splitlines()[:-1]  # last one cut short
    records = list(iter_records(run))
    assert len(records) == len(lines) > 0
    assert [dump(r) for r in records] == [json.loads(line) for line in lines]
    assert dump(read_config(run)) == json.loads((run / "config.json").read_text(encoding="utf-8"))


def test_records_are_typed_by_kind(run: Path) -> None:
    kinds = {type(r).__name__: r.kind for r in iter_records(run)}
    assert kinds == {
        "SessionRecord": "session",
        "GenerationRecord": "generation",
        "CalibrationRecord": "calibration",
        "ArbitrationRecord": "arbitration",
    }


def test_a_step_record_is_a_decoding_step() -> None:
    """One contract for a step: the schema's fields are the decoder's, defaults included."""
    fields = {f.name: f.default for f in dataclasses.fields(Step)}
    schema = {name: info.default for name, info in StepRecord.model_fields.items()}
    assert set(fields) == set(schema)
    for name, default in fields.items():
        if default is not dataclasses.MISSING:
            assert schema[name] == default, name


def test_a_decoded_result_fills_a_generation_record_exactly() -> None:
    step = Step(0, 0.3, 0.6, None, " 4", "guide", True, True, 0.5, True, True)
    result = SampleResult(" 4", "nudging", [step], "stop", "rounds / base-written tokens")
    added = {"task", "sample_id", "prompt", "target", "correct", "label", "extracted", "seconds"}
    assert set(result.to_dict()) | added | {"kind"} == set(GenerationRecord.model_fields)
    record = GenerationRecord(
        task="t",
        sample_id="s",
        prompt="p",
        target="4",
        correct=True,
        label="4",
        extracted="4",
        seconds=0.1,
        **result.to_dict(),
    )
    assert record.steps[0].round_start and record.ir_numerator == 1


def test_settings_are_what_a_run_records() -> None:
    spec = RunSpec(task_names=("gsm8k",), thresholds={"gsm8k": 0.2}, max_new={"gsm8k": 8})
    settings = spec.record()
    assert set(settings) == {o.key or name for name, o in OPTS.items() if o.key is not None}
    read = TypeAdapter(Settings).validate_python(settings)
    assert read == spec and dump(read) == settings


def test_an_older_record_reads_with_the_meaning_it_had() -> None:
    """A config.json from before the revisions and NUDGING's protocol were recorded:
    the position protocol, and the missing keys stay missing when it is written again."""
    settings = RunSpec(task_names=("gsm8k",)).record()
    for key in ("protocol", "base_revision", "guide_revision"):
        del settings[key]
    read = from_record(settings)
    assert read.protocol == "position" and read.base_revision is None
    assert dump(read) == settings
    with pytest.raises(ValueError, match="tau: Field required"):
        from_record({k: v for k, v in settings.items() if k != "tau"})
    with pytest.raises(ValueError, match="colour: Extra inputs"):
        from_record({**settings, "colour": "blue"})


def test_dump_writes_kind_and_leaves_out_unset_optional_fields() -> None:
    record = SessionRecord(task="-", sample_id="1", method="-", load_seconds=1.5)
    assert dump(record)["kind"] == "session"
    assert dump(Timing(load_seconds=1.0, decode_seconds=2.0)) == {
        "load_seconds": 1.0,
        "decode_seconds": 2.0,
    }
    timed = Timing(load_seconds=1.0, decode_seconds=2.0).model_copy(update={"total_seconds": 3.0})
    assert dump(timed)["total_seconds"] == 3.0


def _rewrite(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda s: s["tasks"]["gsm8k"].pop("gate_method"),
            r"tasks\.gsm8k\.gate_method: Field required",
        ),
        (
            lambda s: s["overall"].update(verdict="MAYBE"),
            r"overall\.verdict: Input should be 'PASS'",
        ),
        (lambda s: s["timing"].update(extra=1), r"timing\.extra: Extra inputs are not permitted"),
        (lambda s: s.update(schema_version=1), "rounds / base-written tokens"),
        (lambda s: s.update(schema_version=SCHEMA_VERSION + 1), "reads version 3"),
    ],
)
def test_a_summary_off_the_schema_is_refused(run: Path, tmp_path: Path, edit, match) -> None:
    (tmp_path / SUMMARY).write_bytes((run / SUMMARY).read_bytes())
    _rewrite(tmp_path / SUMMARY, edit)
    with pytest.raises(RunDirError, match=match):
        read_summary(tmp_path)


def test_a_record_off_the_schema_is_refused_with_its_line(run: Path, tmp_path: Path) -> None:
    lines = (run / RECORDS).read_text(encoding="utf-8").splitlines()
    bad = json.loads(lines[1])
    bad["positions"] = "many"
    (tmp_path / RECORDS).write_text(
        "\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n", encoding="utf-8"
    )
    with pytest.raises(RunDirError, match=r"line 2 .*generation\.positions: Input should"):
        list(iter_records(tmp_path))
    (tmp_path / RECORDS).write_text(json.dumps({"kind": "mystery"}) + "\n", encoding="utf-8")
    with pytest.raises(RunDirError, match="line 1 is not a record of schema version 3"):
        list(iter_records(tmp_path))


def test_a_config_of_another_version_is_refused(run: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((run / "config.json").read_bytes())
    _rewrite(tmp_path / "config.json", lambda c: c.update(schema_version=1))
    with pytest.raises(RunDirError, match="schema_version 1"):
        read_config(tmp_path)


def test_summary_names_the_model_asked_for_when_none_loaded(run: Path) -> None:
    summary = read_summary(run)
    assert summary.model_spec("guide") == summary.pair.guide.spec  # type: ignore[union-attr]
    bare = Summary.model_validate({**dump(summary), "pair": None})
    assert bare.model_spec("base") == summary.settings.base
