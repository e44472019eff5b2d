"""Typed records the decoding engine produces. Metrics are computed from these only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SOURCES = ("base", "guide", "blend")
STOP_REASONS = ("eos", "stop", "length", "empty")


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(**data)


@dataclass
class SampleResult:
    """The decoded response of one sample under one method."""

    text: str
    method: str
    steps: list[Step] = field(default_factory=list)
    stop_reason: str = "length"
    counts_interventions: bool = True

    @property
    def positions(self) -> int:
        return len(self.steps)

    @property
    def uncertain(self) -> int:
        return sum(s.uncertain for s in self.steps)

    @property
    def overridden(self) -> int:
        return sum(s.override for s in self.steps)

    @property
    def intervention_rate(self) -> float | None:
        """Uncertain base positions / base positions (None for guide-only decoding)."""
        if not self.counts_interventions or not self.steps:
            return None
        return self.uncertain / self.positions

    def to_dict(self, with_steps: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "method": self.method,
            "positions": self.positions,
            "uncertain": self.uncertain if self.counts_interventions else None,
            "overridden": self.overridden,
            "intervention_rate": self.intervention_rate,
            "stop_reason": self.stop_reason,
        }
        if with_steps:
            out["steps"] = [s.to_dict() for s in self.steps]
        return out
