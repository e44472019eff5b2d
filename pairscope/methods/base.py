"""The two models alone: the base's greedy decoding and the guide's."""

from __future__ import annotations

from pairscope.decoding.strategies import Strategy
from pairscope.methods.spec import Method


class Base(Strategy):
    """Base greedy decoding; uncertain positions are counted but never changed."""

    name = "base"


class Guide(Strategy):
    """The guide decodes alone from its own prompt: it drives, and nothing is uncertain."""

    name = "guide"
    drives = "guide"
    ir_kind = None

    def uncertain(self, p_base: float) -> bool:
        return False


BASE = Method(
    "base",
    "the base alone (greedy)",
    models="base",
    build=lambda knobs, _: Base(tau=knobs.tau),
    default=True,
)
GUIDE = Method(
    "guide",
    "the guide alone (greedy)",
    models="guide",
    build=lambda knobs, _: Guide(tau=knobs.tau),
    default=True,
    versus=("base",),
)
