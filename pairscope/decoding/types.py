"""Typed records the decoding engine produces. Metrics are computed from these only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pairscope.metrics.rates import (  # noqa: F401  (the kinds a strategy declares)
    IR_REFERENCE,
    IR_ROUNDS,
    IR_UNCERTAIN,
    REFERENCE_COMPLETION_TOKENS,
    ROUND_KINDS,
)


@dataclass(frozen=True)
class Step:
    """One base position: what the models said and what was appended.

    Attributes:
        position: index of the base position in the response (0-based).
        p_base: base top-1 probability.
        p_guide: guide top-1 probability, when the guide was consulted.
        alpha: blend weight used (blend methods only).
        text: the text appended at this position ("" for the end symbol).
        source: which model wrote it: base, guide or blend.
        uncertain: ``p_base < tau``.
        override: the guide's contribution changed the appended text.
        overlap: overlap@k of the two top-k string lists (uncertain positions).
        guide_top1_in_base: the guide's top-1 string is in the base top-k.
        round_start: an intervention (a round of guide words) starts at this position.
        tokens: the positions the step covers: 1 where a method decides position by
            position; a piece's length in base tokens where a protocol appends whole
            pieces (NUDGING's reference protocol: a guide's words, a base's turn).
    """

    position: int
    p_base: float
    p_guide: float | None
    alpha: float | None
    text: str
    source: str
    uncertain: bool
    override: bool
    overlap: float | None = None
    guide_top1_in_base: bool | None = None
    round_start: bool = False
    tokens: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.tokens == 1:  # one step, one position: the record stays as it was
            del out["tokens"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**{k: v for k, v in data.items() if k in _STEP_FIELDS})


_STEP_FIELDS = frozenset(Step.__dataclass_fields__)


@dataclass
class SampleResult:
    """The decoded response of one sample under one method.

    ``ir_kind`` names the method's intervention rate (None: guide-only decoding,
    which has no base positions).
    """

    text: str
    method: str
    steps: list[Step] = field(default_factory=list)
    stop_reason: str = "length"
    ir_kind: str | None = IR_UNCERTAIN
    # The rate's counts as a protocol kept them itself (None: counted from the steps).
    counted: tuple[int, int] | None = None

    @property
    def counts_interventions(self) -> bool:
        return self.ir_kind is not None

    @property
    def positions(self) -> int:
        return sum(s.tokens for s in self.steps)

    @property
    def uncertain(self) -> int:
        return sum(s.uncertain for s in self.steps)

    @property
    def overridden(self) -> int:
        return sum(s.tokens for s in self.steps if s.override)

    @property
    def rounds(self) -> int:
        return sum(s.round_start for s in self.steps)

    @property
    def base_written(self) -> int:
        return sum(s.tokens for s in self.steps if s.source == "base")

    @property
    def ir_counts(self) -> tuple[int, int] | None:
        """(numerator, denominator) of this sample's intervention rate."""
        if self.counted is not None:
            return self.counted
        if self.ir_kind == IR_ROUNDS:
            return self.rounds, self.base_written
        if self.ir_kind == IR_UNCERTAIN:
            return self.uncertain, self.positions
        return None

    @property
    def intervention_rate(self) -> float | None:
        """The method's own intervention rate (``ir_kind``); None without a denominator."""
        counts = self.ir_counts
        if counts is None or counts[1] == 0:
            return None
        return counts[0] / counts[1]

    @property
    def uncertain_rate(self) -> float | None:
        """Uncertain base positions / base positions, one definition for every method."""
        if not self.counts_interventions or not self.steps:
            return None
        return self.uncertain / self.positions

    def to_dict(self, with_steps: bool = True) -> dict[str, Any]:
        counts = self.ir_counts
        out: dict[str, Any] = {
            "text": self.text,
            "method": self.method,
            "positions": self.positions,
            "uncertain": self.uncertain if self.counts_interventions else None,
            "overridden": self.overridden,
            "ir_kind": self.ir_kind,
            "ir_numerator": None if counts is None else counts[0],
            "ir_denominator": None if counts is None else counts[1],
            "intervention_rate": self.intervention_rate,
            "uncertain_rate": self.uncertain_rate,
            "stop_reason": self.stop_reason,
        }
        if with_steps:
            out["steps"] = [s.to_dict() for s in self.steps]
        return out
