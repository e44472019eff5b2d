"""The drill-down of a race: its winner against the runner-up, sample by sample.

The two guides were decoded on one committed sample order, so every sample both
finished is a paired comparison: whose answer was right, and how often each guide had
to step in. Read from the two cells' records (the paths rank.json names); nothing is
decoded or re-scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pairscope.rank.cells import cell_records
from pairscope.rank.schema import GuideStanding, Race
from pairscope.schema import GenerationRecord

EXCERPT = 240  # characters of each response shown


@dataclass(frozen=True)
class PairedSample:
    """One sample both guides finished."""

    sample_id: str
    first: GenerationRecord
    second: GenerationRecord

    @property
    def differs(self) -> bool:
        return self.first.correct != self.second.correct


@dataclass(frozen=True)
class DrillDown:
    """A race's two leading guides on the samples both finished, in the race's order."""

    race: Race
    first: GuideStanding
    second: GuideStanding
    label: str  # "winner vs runner-up", "tied", "leader vs runner-up"
    samples: list[PairedSample]

    @property
    def wins(self) -> tuple[int, int]:
        """Samples only the first got right, and samples only the second got right."""
        only_first = sum(s.first.correct and not s.second.correct for s in self.samples)
        only_second = sum(s.second.correct and not s.first.correct for s in self.samples)
        return only_first, only_second

    @property
    def pooled_ir(self) -> tuple[float | None, float | None]:
        """Each guide's pooled intervention rate over the shared samples."""
        return _pooled([s.first for s in self.samples]), _pooled([s.second for s in self.samples])


def _pooled(records: list[GenerationRecord]) -> float | None:
    num = sum(r.ir_numerator or 0 for r in records)
    den = sum(r.ir_denominator or 0 for r in records)
    return num / den if den else None


def _order(race: Race) -> list[GuideStanding]:
    """The race's decoded guides, best first: winners (or tied), then by the objective's
    point (score high, or intervention rate low), then by samples decoded."""
    decoded = [g for g in race.guides if g.n > 0 and g.cell]

    def key(g: GuideStanding) -> tuple[int, float, int]:
        first = 0 if g.guide in race.winners else 1
        if race.objective == "ir":
            value = g.ir.point if g.ir and g.ir.point is not None else float("inf")
        else:
            value = -(g.score.point if g.score and g.score.point is not None else float("-inf"))
        return first, value, -g.n

    return sorted(decoded, key=key)


def drill_down(out_dir: Path, race: Race) -> DrillDown | None:
    """The race's two leading guides, paired on the samples both finished (None when
    fewer than two guides were decoded)."""
    ranked = _order(race)
    if len(ranked) < 2:
        return None
    first, second = ranked[:2]
    if race.status == "tie":
        label = "tied"
    elif race.status == "winner":
        label = "winner vs runner-up"
    else:
        label = "leader vs runner-up"
    a = cell_records(out_dir / (first.cell or ""), race.task, race.method)
    b = cell_records(out_dir / (second.cell or ""), race.task, race.method)
    samples = [PairedSample(i, a[i], b[i]) for i in a if i in b]
    return DrillDown(race, first, second, label, samples)


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """The start of a response, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = ["DrillDown", "PairedSample", "drill_down", "excerpt"]
