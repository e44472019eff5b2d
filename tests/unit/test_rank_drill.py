"""rank's drill-down: which two guides it pairs, and what it counts on their records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pairscope.rank.drill import drill_down, excerpt
from pairscope.rank.schema import GuideStanding, Race
from pairscope.schema import SCHEMA_VERSION

TASK, METHOD = "gsm8k", "nudging"


def _record(sample: str, correct: bool, num: int, den: int, text: str) -> dict[str, object]:
    return {
        "kind": "generation", "task": TASK, "sample_id": sample, "method": METHOD,
        "prompt": "q", "target": "t", "correct": correct, "label": None, "extracted": None,
        "seconds": 0.1, "text": text, "positions": den, "uncertain": num, "overridden": num,
        "ir_kind": "rounds", "ir_numerator": num, "ir_denominator": den,
        "intervention_rate": num / den, "uncertain_rate": num / den, "stop_reason": "eos",
    }  # fmt: skip


def _cell(root: Path, name: str, rows: list[tuple[str, bool, int, int]]) -> str:
    path = root / "cells" / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(
        json.dumps({"schema_version": SCHEMA_VERSION, "command": "probe"})
    )
    lines = [json.dumps(_record(s, c, u, d, f"{name} answer {s}")) for s, c, u, d in rows]
    (path / "records.jsonl").write_text("".join(line + "\n" for line in lines))
    return f"cells/{name}"


def _standing(guide: str, status: str, n: int, score: float, ir: float, cell: str | None):
    point = {"point": score, "low": score - 0.1, "high": score + 0.1}
    return GuideStanding.model_validate(
        {
            "guide": guide,
            "status": status,
            "n": n,
            "cell": cell,
            "score": point,
            "ir": {"point": ir, "low": ir - 0.05, "high": ir + 0.05},
        }  # fmt: skip
    )


def _race(status: str, winners: list[str], guides: list[GuideStanding], objective="score"):
    return Race.model_validate(
        {
            "base": "b",
            "task": TASK,
            "method": METHOD,
            "threshold": 0.2,
            "status": status,
            "n": 3,
            "budget": 100,
            "batch": 10,
            "batches": 1,
            "alpha": 0.05,
            "alpha_each": 0.01,
            "epsilon": 0.02,
            "objective": objective,
            "winners": winners,
            "guides": guides,
        }  # fmt: skip
    )


@pytest.fixture
def cells(tmp_path: Path) -> dict[str, str]:
    return {
        # a: right on s1 and s2; b: right on s1 and s3 (s4 only a finished); c: all wrong.
        "a": _cell(tmp_path, "a", [("s1", True, 1, 10), ("s2", True, 2, 10), ("s4", True, 0, 8)]),
        "b": _cell(tmp_path, "b", [("s1", True, 3, 10), ("s2", False, 3, 10), ("s3", True, 1, 9)]),
        "c": _cell(tmp_path, "c", [("s1", False, 9, 10), ("s2", False, 9, 10)]),
    }


def test_the_winner_meets_the_runner_up_on_their_shared_samples(tmp_path, cells):
    guides = [
        _standing("c", "dominated", 2, 0.0, 0.9, cells["c"]),
        _standing("b", "dominated", 3, 0.67, 0.23, cells["b"]),
        _standing("a", "winner", 3, 1.0, 0.11, cells["a"]),
        _standing("pruned", "pruned", 0, 0.0, 0.0, None),
    ]
    d = drill_down(tmp_path, _race("winner", ["a"], guides))
    assert d is not None and d.label == "winner vs runner-up"
    assert (d.first.guide, d.second.guide) == ("a", "b")  # b scores above c
    assert [s.sample_id for s in d.samples] == ["s1", "s2"]  # s3, s4: one guide only
    assert d.wins == (1, 0)  # s2: only a is right
    assert [s.differs for s in d.samples] == [False, True]
    assert d.pooled_ir == pytest.approx((3 / 20, 6 / 20))


def test_by_intervention_rate_the_lowest_rate_leads(tmp_path, cells):
    guides = [
        _standing("a", "unresolved", 3, 1.0, 0.11, cells["a"]),
        _standing("b", "unresolved", 3, 0.67, 0.23, cells["b"]),
        _standing("c", "unresolved", 2, 0.0, 0.05, cells["c"]),
    ]
    d = drill_down(tmp_path, _race("unresolved", [], guides, objective="ir"))
    assert d is not None and d.label == "leader vs runner-up"
    assert (d.first.guide, d.second.guide) == ("c", "a")


def test_a_tie_pairs_the_tied_guides_and_one_guide_gives_none(tmp_path, cells):
    guides = [
        _standing("c", "dominated", 2, 0.0, 0.9, cells["c"]),
        _standing("b", "tied", 3, 0.67, 0.23, cells["b"]),
        _standing("a", "tied", 3, 0.7, 0.11, cells["a"]),
    ]
    d = drill_down(tmp_path, _race("tie", ["b", "a"], guides))
    assert d is not None and d.label == "tied" and {d.first.guide, d.second.guide} == {"a", "b"}
    alone = [_standing("a", "winner", 3, 1.0, 0.11, cells["a"])]
    assert drill_down(tmp_path, _race("winner", ["a"], alone)) is None


def test_excerpt_is_one_line_and_bounded():
    assert excerpt("two\n lines") == "two lines"
    cut = excerpt("x" * 500, limit=20)
    assert len(cut) == 20 and cut.endswith("…")
