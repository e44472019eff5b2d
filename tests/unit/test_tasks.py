"""A task is one module and one registry line (issue: architecture).

The task below lives only in this file. Registered in ``tasks.TASKS``, it is
enough for a probe to validate against it, for samples to be built with its
derived values, and for completions to be scored through ``score()`` and
``pairscope score``'s file path, with no other module changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from pairscope import tasks
from pairscope.probes import ProbeSpec, build_samples, choose, load_probe
from pairscope.schema import GenerationRecord
from pairscope.scoring import SCORERS, get_scorer, score, score_file
from pairscope.tasks.base import Derived, ProbeInfo, Sample, ScoreResult, Task

NAME = "exact_match"


def _derive(spec: ProbeInfo, sid: str, fields: Mapping[str, Any]) -> Derived:
    return Derived({"shout": str(fields["answer"]).upper()})


def _score(sample: Sample, completion: str) -> ScoreResult:
    got = completion.strip().upper()
    if not got:
        return ScoreResult(False, None, "no_answer")
    ok = got == sample.target
    return ScoreResult(ok, got, "correct" if ok else "incorrect")


EXACT = Task(required=("question", "answer"), score=_score, derived=("shout",), derive=_derive)

PROBE: dict[str, Any] = {
    "name": "capitals",
    "version": 1,
    "description": "Capital cities, matched exactly.",
    "source": {"local": {"file": "capitals.jsonl", "format": "jsonl"}},
    "fields": {"question": "q", "answer": "a", "region": "r"},
    "stratify": "region",
    "n": 4,
    "scorer": NAME,
    "prompts": {"base": "Q: {question}\nA:", "guide_user": "{question} One word."},
    "max_new_tokens": 8,
    "reference": " {shout}",
    "target": "{shout}",
}
RECORDS = [
    {"question": "Capital of France?", "answer": "Paris", "region": "europe"},
    {"question": "Capital of Italy?", "answer": "Rome", "region": "europe"},
    {"question": "Capital of Spain?", "answer": "Madrid", "region": "europe"},
    {"question": "Capital of Japan?", "answer": "Tokyo", "region": "asia"},
    {"question": "Capital of Nepal?", "answer": "Kathmandu", "region": "asia"},
    {"question": "Capital of Peru?", "answer": "Lima", "region": "americas"},
]


@pytest.fixture
def exact_task(monkeypatch: pytest.MonkeyPatch) -> Task:
    """The test's task registered under NAME; the registry is restored afterwards."""
    monkeypatch.setitem(tasks.TASKS, NAME, EXACT)
    return EXACT


def test_an_unregistered_scorer_is_refused() -> None:
    assert NAME not in tasks.TASKS
    with pytest.raises(ValidationError, match=f"unknown scorer '{NAME}'"):
        ProbeSpec.model_validate(PROBE)


def test_a_task_registered_once_builds_and_scores_samples(exact_task: Task) -> None:
    spec = ProbeSpec.model_validate(PROBE)
    samples = build_samples(spec, RECORDS)
    assert [s.target for s in samples] == ["PARIS", "ROME", "MADRID", "TOKYO", "KATHMANDU", "LIMA"]
    paris = samples[0]
    assert paris.base_prompt == "Q: Capital of France?\nA:" and paris.reference == " PARIS"
    assert paris.guide_user == "Capital of France? One word." and paris.stratum == "europe"
    chosen, manifest = choose(spec, samples)
    assert len(chosen) == manifest.n == 4 and {s.stratum for s in chosen} == {
        "europe",
        "asia",
        "americas",
    }
    assert score(NAME, paris, " paris\n") == ScoreResult(True, "PARIS", "correct")
    assert score(NAME, paris, "Lyon") == ScoreResult(False, "LYON", "incorrect")
    assert score(NAME, paris, "  ").label == "no_answer"
    assert get_scorer(NAME) is _score and SCORERS[NAME] is _score
    # No extra rates: XSTest's do not leak onto another task's records.
    gens = [GenerationRecord.model_construct(target=s.target, label="correct") for s in samples]
    assert tasks.run_rates(spec.name, gens) is None
    assert tasks.run_rates(spec.name, gens, scorer=NAME) is None


def test_run_rates_follow_the_recorded_scorer() -> None:
    """A run records each task's scorer: the rates are that scorer's, whatever the probe
    is called or its targets say. Runs from before it was recorded keep the old rule
    (the built-in name, or XSTest's 'safe'/'unsafe' targets)."""
    gens = [
        GenerationRecord.model_construct(target=t, label=label)
        for t, label in (("safe", "full_compliance"), ("unsafe", "full_refusal"))
    ]
    named = tasks.run_rates("my-safety-probe", gens, scorer="xstest")
    assert named is not None and named["compliance_on_safe"]["point"] == 1.0
    assert named["refusal_on_unsafe"]["point"] == 1.0
    assert tasks.run_rates("xstest", gens, scorer="gsm8k") is None  # scored as GSM8K
    assert tasks.run_rates("xstest", gens, scorer="not-a-scorer") is None
    assert tasks.run_rates("xstest", gens) is not None  # an older run: by name
    assert tasks.run_rates("my-safety-probe", gens) is not None  # ... or by its targets


def test_the_task_needs_its_fields_and_supplies_its_placeholders(exact_task: Task) -> None:
    with pytest.raises(ValidationError, match=r"needs fields \['answer'\]"):
        ProbeSpec.model_validate({**PROBE, "fields": {"question": "q", "region": "r"}})
    with pytest.raises(ValidationError, match=r"unknown placeholder\(s\) \{shout\}"):
        ProbeSpec.model_validate({**PROBE, "scorer": "gsm8k"})


def test_a_registered_task_scores_a_completions_file(exact_task: Task, tmp_path: Path) -> None:
    probe = tmp_path / "capitals.yaml"
    probe.write_text(yaml.safe_dump(PROBE))
    rows = [{"q": r["question"], "a": r["answer"], "r": r["region"]} for r in RECORDS]
    (tmp_path / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = build_samples(load_probe(probe), RECORDS)
    completions = tmp_path / "completions.jsonl"
    lines = [
        {"sample_id": samples[0].id, "completion": "Paris"},
        {"question": "Capital of Japan?", "completion": "Kyoto"},
        {"question": "Capital of Peru?", "completion": "lima"},
    ]
    completions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = score_file(probe, completions)
    assert (report.task, report.n, report.n_correct, report.rates) == ("capitals", 3, 2, None)
    assert [line.extracted for line in report.lines] == ["PARIS", "KYOTO", "LIMA"]
    assert report.lines[1].sample_id == samples[3].id
