"""NUDGING's schedules without their shortcuts, to show that the shortcuts change nothing
but the passes and steps: the lockstep word loop without run-ahead riders, and the
one-pass schedule without the guide's next id read ahead."""

from __future__ import annotations

from typing import Any

import pytest

from pairscope.methods import nudging_words
from pairscope.methods.nudging import Nudging
from pairscope.methods.nudging_words import Lockstep, WordSteps


class LockstepAlone(Lockstep):
    """The lockstep word loop in which a row whose word is done never rides along."""

    def rides_along(self) -> bool:
        return False


class ContextAlone(WordSteps):
    """The one-pass schedule in which a round starts from the row's context alone."""

    def _reads_ahead(self, row: Any) -> bool:
        return False


def use_lockstep(monkeypatch: pytest.MonkeyPatch, riders: bool = True) -> None:
    """NUDGING on local models runs the lockstep word loop (a served guide's)."""
    monkeypatch.setattr(Nudging, "schedule", lambda self, engine: None)
    monkeypatch.setattr(nudging_words, "Lockstep", Lockstep if riders else LockstepAlone)


def use_one_pass(monkeypatch: pytest.MonkeyPatch, read_ahead: bool = True) -> None:
    """NUDGING on local models runs the one-pass schedule, reading ahead or not."""
    schedule = WordSteps if read_ahead else ContextAlone
    monkeypatch.setattr(Nudging, "schedule", lambda self, engine: schedule(engine, self))
