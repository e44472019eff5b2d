"""The arbitration statement: a claim only when the bootstrap interval over samples
excludes zero (hand-built records)."""

from __future__ import annotations

import pytest

from pairscope.schema import ArbitrationRecord, dump
from pairscope.summary import _arbitration as _typed_arbitration


def _arbitration(records: list[ArbitrationRecord]) -> dict:
    """The arbitration summary in its summary.json form."""
    out = _typed_arbitration(records)
    assert out is not None
    return dump(out)


def _records(confident: list[list[bool]], base: list[list[bool]], guide: list[list[bool]]):
    return [
        ArbitrationRecord(
            task="t", sample_id=str(i), method="blendin", base=b, guide=g, confident=c, blend=c
        )
        for i, (c, b, g) in enumerate(zip(confident, base, guide))
    ]


def test_clearly_better_confidence_is_claimed():
    # Every sample: confidence right at all 4 positions, base at 2, guide at 1.
    recs = _records(
        [[True] * 4] * 20, [[True, True, False, False]] * 20, [[True, False, False, False]] * 20
    )
    out = _arbitration(recs)
    assert out["confidence_helps"] is True
    assert out["statement"].startswith("Confidence arbitrates better")
    diff = out["confidence_minus_better"]
    assert diff["point"] == pytest.approx(0.5)
    assert 0 < diff["low"] <= diff["point"] <= diff["high"]


def test_equal_accuracy_is_no_claim():
    # Confidence and the guide are each right at the same number of positions.
    recs = _records(
        [[True, False], [False, True]] * 10,
        [[False, False]] * 20,
        [[False, True], [True, False]] * 10,
    )
    out = _arbitration(recs)
    assert out["accuracy"]["confident"]["point"] == out["accuracy"]["guide"]["point"]
    assert out["confidence_helps"] is False
    assert out["statement"].startswith("Confidence does not arbitrate detectably better")
    diff = out["confidence_minus_better"]
    assert diff["low"] <= 0 <= diff["high"]


def test_clearly_worse_confidence_is_said_to_be_worse():
    recs = _records([[False] * 3] * 15, [[True] * 3] * 15, [[False] * 3] * 15)
    out = _arbitration(recs)
    assert out["confidence_helps"] is False
    assert out["statement"].startswith("Confidence arbitrates worse")
    assert out["confidence_minus_better"]["high"] < 0
