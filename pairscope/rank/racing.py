"""Racing guides for one base on one task: successive elimination on anytime-valid
confidence sequences, as pure functions of the per-sample outcomes.

Every guide decodes the samples of one seeded order, batch by batch. :func:`race`
replays the outcomes found so far over the longest prefix of that order that every
guide still in the race has finished, one batch at a time, and after each batch
(from ``min_samples`` samples on) applies three rules:

* **infeasible**: the guide's pooled-IR test declares the IR above the threshold
  (the lower end of its confidence sequence is above it);
* **feasible**: the test declares it below (the upper end is below the threshold);
* **dominated**: a guide already shown feasible beats it by more than ε: the lower
  end of the confidence sequence of their paired per-sample score difference is
  above ε (``objective="ir"``: the guide's IR sequence lies above another's by
  more than ε).

The race ends when one guide is left and it is feasible (the winner), when every
guide left is feasible and all their differences are shown to lie within ε (a
tie), when no guide is left (none is feasible), or at the budget (unresolved,
never a forced winner). Each of the ``K`` IR sequences and the ``K (K − 1) / 2``
score-difference sequences runs at ``α / (K + K (K − 1) / 2)`` (Bonferroni), so all
hold at once, at every batch, with probability at least ``1 − α``, and then every
elimination is right (docs/rank.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.intervention import Verdict
from pairscope.metrics.sequential import (
    DEFAULT_TRUNCATION,
    FAIL,
    GRID_STEP,
    UNDECIDED,
    BettingState,
    Support,
    decisions,
    step,
)
from pairscope.metrics.stats import Estimate, FloatArray

Objective = Literal["score", "ir"]
OBJECTIVES: tuple[str, ...] = ("score", "ir")
DEFAULT_EPSILON = 0.02
DEFAULT_BATCH = 10
MIN_SAMPLES = 20
MEAN_GRID_STEP = 0.005

# A guide's status in a race, and the race's own outcome.
RACING, FEASIBLE, INFEASIBLE, DOMINATED = "racing", "feasible", "infeasible", "dominated"
WINNER, TIED, UNRESOLVED, PRUNED = "winner", "tied", "unresolved", "pruned"
RACE_WINNER, RACE_TIE, RACE_NONE, RACE_UNRESOLVED = "winner", "tie", "none-feasible", "unresolved"
RACE_RUNNING = "running"


@dataclass(frozen=True)
class Outcome:
    """One guide's result on one sample: IR numerator and denominator, and its score."""

    u: int
    d: int
    score: float


class MeanSequence:
    """Anytime-valid confidence sequences for the means of ``rows`` i.i.d. streams of
    values in ``[low, high]``, updated together.

    The betting tests of :mod:`pairscope.metrics.sequential` run at every null mean
    on a grid; a row's sequence is the running intersection of the nulls none of its
    tests has rejected, widened by one grid step on each side, so it holds the row's
    true mean at all times at once with probability at least ``1 − alpha``. A row
    left out of an update stays as it is from then on (its stream has stopped).
    """

    def __init__(
        self,
        low: float,
        high: float,
        alpha: float,
        rows: int = 1,
        step_size: float = MEAN_GRID_STEP,
    ) -> None:
        if not high > low:
            raise InputError(f"Need low < high for a mean's range; got [{low}, {high}].")
        if not 0.0 < alpha < 1.0:
            raise InputError(f"alpha must be between 0 and 1 (exclusive); got {alpha!r}.")
        self.low, self.high, self.alpha = float(low), float(high), float(alpha)
        points = int(round((high - low) / step_size)) + 1
        self.grid = np.linspace(low, high, points)
        self._m = (self.grid - low) / (high - low)
        self._state = BettingState.start((rows, points))
        self._alive = np.ones((rows, points), dtype=bool)
        self._total = np.zeros(rows)
        self._n = np.zeros(rows, dtype=np.int64)

    def n(self, row: int = 0) -> int:
        return int(self._n[row])

    def update(self, values: ArrayLike, active: ArrayLike | None = None) -> None:
        """One new value per row (``active``: the rows whose streams go on; default all)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        on = np.ones(v.shape, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        if np.any(on & ((v < self.low) | (v > self.high) | ~np.isfinite(v))):
            raise InputError(f"A value lies outside [{self.low}, {self.high}].")
        y = np.where(on, (v - self.low) / (self.high - self.low), 0.5)[:, None]
        half = self.alpha / 2
        self._state = _masked_step(self._state, y, self._m, half, on)
        self._alive &= ~on[:, None] | (decisions(self._state, half, half) == UNDECIDED)
        self._total += np.where(on, v, 0.0)
        self._n += on

    def interval(self, row: int = 0) -> Estimate:
        """A row's mean so far with its sequence's bounds (the whole range before any value)."""
        n = int(self._n[row])
        return _bounds(self.grid, self._alive[row], float(self._total[row]) / n if n else math.nan)


class IrSequences:
    """The anytime-valid IR test of :class:`pairscope.metrics.sequential.SequentialTest`,
    for ``rows`` guides at once: the same bets, grid and decisions, in one array.

    A row's verdict at the threshold is FAIL or PASS from the sample at which it is
    first declared; its interval is the running intersection of the grid's nulls not
    rejected, widened by one grid step (the test's own interval).
    """

    def __init__(self, threshold: float, support: Support, alpha: float, rows: int) -> None:
        self.support, self.threshold = support, float(threshold)
        top = 1.0 if support.numerator_max is None else float(support.numerator_max)
        grid = np.arange(int(round(top / GRID_STEP)) + 1) * GRID_STEP
        self.grid = np.unique(np.append(grid, self.threshold))
        self._at = int(np.searchsorted(self.grid, self.threshold))
        self._m = support.scaled(0.0, 0.0, self.grid)[1]
        self._half = alpha / 2  # split evenly between FAIL and PASS, as the probe's test does
        self._state = BettingState.start((rows, self.grid.size))
        self._alive = np.ones((rows, self.grid.size), dtype=bool)
        self._sums = np.zeros((rows, 2))
        self._n = np.zeros(rows, dtype=np.int64)
        self.verdicts: list[Verdict | None] = [None] * rows

    def n(self, row: int) -> int:
        return int(self._n[row])

    def update(self, u: ArrayLike, d: ArrayLike, active: ArrayLike) -> None:
        """One sample's counts per row; rows not ``active`` stay as they are."""
        on = np.asarray(active, dtype=bool)
        us, ds = np.asarray(u, dtype=np.float64), np.asarray(d, dtype=np.float64)
        for row in np.flatnonzero(on):
            self.support.check(float(us[row]), float(ds[row]))
        y = self.support.scaled(us[:, None], ds[:, None], self.grid[None, :])[0]
        self._state = _masked_step(
            self._state, np.where(on[:, None], y, 0.5), self._m, self._half, on
        )
        verdict = decisions(self._state, self._half, self._half)
        self._alive &= ~on[:, None] | (verdict == UNDECIDED)
        for row in np.flatnonzero(on):
            if self.verdicts[row] is None and verdict[row, self._at] != UNDECIDED:
                self.verdicts[row] = (
                    Verdict.FAIL if verdict[row, self._at] == FAIL else Verdict.PASS
                )
        self._sums += np.where(on[:, None], np.stack([us, ds], axis=1), 0.0)
        self._n += on

    def interval(self, row: int) -> Estimate:
        """A row's pooled IR so far with its anytime-valid bounds."""
        u, d = self._sums[row]
        return _bounds(self.grid, self._alive[row], u / d if d > 0 else math.nan)


def _masked_step(
    state: BettingState, y: FloatArray, m: FloatArray, half: float, on: NDArray[np.bool_]
) -> BettingState:
    """One betting step for the ``on`` rows of ``state``; the other rows keep their values."""
    new = step(state, y, m, half, half, DEFAULT_TRUNCATION)
    keep = on[:, None]
    old = (state.total, state.sq_dev, state.log_up, state.log_down)
    fresh = (new.total, new.sq_dev, new.log_up, new.log_down)
    return BettingState(new.t, *(np.where(keep, a, b) for a, b in zip(fresh, old)))


def _bounds(grid: FloatArray, alive: NDArray[np.bool_], point: float) -> Estimate:
    """A grid sequence's interval: the nulls not rejected, widened by one grid step (when
    every null is rejected, the two grid points around the point estimate)."""
    where = np.flatnonzero(alive)
    last = grid.size - 1
    if where.size:
        low_i, high_i = max(int(where[0]) - 1, 0), min(int(where[-1]) + 1, last)
    else:
        at = int(np.searchsorted(grid, point)) if point == point else 0
        low_i, high_i = max(at - 1, 0), min(at, last)
    return Estimate(point, float(grid[low_i]), float(grid[high_i]))


@dataclass(frozen=True)
class RaceSettings:
    """How a race decides.

    Attributes:
        threshold: The IR threshold θ a feasible guide stays below.
        support: Where one sample's IR counts can lie (:class:`Support`).
        budget: Samples at most (a prefix of the committed order).
        objective: ``score`` (best score among feasible guides) or ``ir`` (lowest IR).
        epsilon: Differences up to ε count as a tie.
        alpha: Chance of any wrong elimination, over the whole race.
        batch: Samples every surviving guide decodes between two decisions.
        min_samples: No decision before this many samples.
    """

    threshold: float
    support: Support
    budget: int
    objective: Objective = "score"
    epsilon: float = DEFAULT_EPSILON
    alpha: float = 0.05
    batch: int = DEFAULT_BATCH
    min_samples: int = MIN_SAMPLES

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"Unknown objective '{self.objective}'; choose score or ir.")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"The threshold must be in (0, 1); got {self.threshold!r}.")
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"--alpha must be in (0, 1); got {self.alpha!r}.")
        if not 0.0 <= self.epsilon < 1.0:
            raise InputError(f"--epsilon must be in [0, 1); got {self.epsilon!r}.")
        if self.batch < 1 or self.budget < 1 or self.min_samples < 0:
            raise InputError("--race-batch and --limit must be >= 1.")

    def alpha_each(self, guides: int) -> float:
        """The level of each sequence: α over the guides' IR sequences and, for the
        score objective, their pairwise score differences (Bonferroni)."""
        pairs = guides * (guides - 1) // 2 if self.objective == "score" else 0
        return self.alpha / max(guides + pairs, 1)

    def boundaries(self, available: int) -> list[int]:
        """The sample counts after which decisions are made: every batch, up to the budget."""
        top = min(self.budget, available)
        stops = list(range(self.batch, top, self.batch))
        return [*stops, top] if top else []


@dataclass
class GuideState:
    """One guide's standing: status, sample count, estimates, and when it was decided."""

    guide: str
    status: str = RACING
    n: int = 0
    ir: Estimate = field(default_factory=lambda: Estimate(math.nan, 0.0, 1.0))
    score: Estimate = field(default_factory=lambda: Estimate(math.nan, 0.0, 1.0))
    feasible_at: int | None = None  # batch at which IR was shown below θ
    decided_at: int | None = None  # batch at which it left the race
    by: str | None = None  # the guide that dominated it
    reason: str = ""

    @property
    def alive(self) -> bool:
        return self.status in (RACING, FEASIBLE)


@dataclass
class RaceResult:
    """A race replayed over the outcomes so far.

    ``next`` is the slice of the committed order that the guides in ``todo`` must
    decode before the race can go on (None once it has ended).
    """

    status: str
    n: int
    batches: int
    alpha: float
    alpha_each: float
    epsilon: float
    objective: str
    guides: list[GuideState]
    next: tuple[int, int] | None = None
    todo: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status != RACE_RUNNING

    def guide(self, name: str) -> GuideState:
        return next(g for g in self.guides if g.guide == name)


class _Sequences:
    """The confidence sequences of one race: an IR test and a score mean per guide, and a
    paired score difference per pair of guides (the means as rows of one array each)."""

    def __init__(self, guides: Sequence[str], settings: RaceSettings) -> None:
        each = settings.alpha_each(len(guides))
        self.guides = list(guides)
        self.ir = IrSequences(settings.threshold, settings.support, each, len(guides))
        self.pairs = list(itertools.combinations(range(len(guides)), 2))
        self.score = MeanSequence(0.0, 1.0, each, rows=len(guides))
        self.diff = MeanSequence(-1.0, 1.0, each, rows=max(len(self.pairs), 1))

    def feed(
        self,
        alive: Sequence[str],
        outcomes: Mapping[str, Mapping[str, Outcome]],
        ids: Sequence[str],
    ) -> None:
        on = np.array([g in alive for g in self.guides])
        both = np.array([on[i] and on[j] for i, j in self.pairs] or [False])
        for sample in ids:
            got = [outcomes[g][sample] if g in alive else Outcome(0, 0, 0.0) for g in self.guides]
            self.ir.update([o.u for o in got], [o.d for o in got], on)
            scores = np.array([o.score for o in got])
            self.score.update(scores, on)
            if self.pairs:
                self.diff.update([scores[i] - scores[j] for i, j in self.pairs], both)

    def ir_interval(self, g: str) -> Estimate:
        return self.ir.interval(self.guides.index(g))

    def verdict(self, g: str) -> Verdict | None:
        return self.ir.verdicts[self.guides.index(g)]

    def difference(self, a: str, b: str) -> Estimate:
        """Score of ``a`` minus score of ``b``, with its sequence's bounds."""
        i, j = self.guides.index(a), self.guides.index(b)
        if (i, j) in self.pairs:
            return self.diff.interval(self.pairs.index((i, j)))
        flip = self.diff.interval(self.pairs.index((j, i)))
        return Estimate(-flip.point, -flip.high, -flip.low)


def race(
    guides: Sequence[str],
    order: Sequence[str],
    outcomes: Mapping[str, Mapping[str, Outcome]],
    settings: RaceSettings,
) -> RaceResult:
    """Replay a race over the outcomes found so far (module doc).

    Args:
        guides: The guides in the race (pruned ones left out), in a fixed order.
        order: The committed sample order, the same for every guide.
        outcomes: Per guide, its finished samples' outcomes by sample id (extra or
            out-of-order results are fine: only the completed prefix is read).
        settings: The race's rules.
    """
    if len(set(guides)) != len(guides) or not guides:
        raise InputError("A race needs one or more distinct guides.")
    seqs = _Sequences(guides, settings)
    states = {g: GuideState(g) for g in guides}
    n, batch = 0, 0
    for stop in settings.boundaries(len(order)):
        alive = [g for g in guides if states[g].alive]
        missing = [g for g in alive if any(s not in outcomes.get(g, {}) for s in order[n:stop])]
        if missing:
            return _result(RACE_RUNNING, n, batch, settings, seqs, states, (n, stop), missing)
        seqs.feed(alive, outcomes, order[n:stop])
        n, batch = stop, batch + 1
        if n >= settings.min_samples:
            _decide(batch, alive, seqs, states, settings)
        status = _race_status(guides, seqs, states, settings)
        if status is not None:
            return _result(status, n, batch, settings, seqs, states)
    return _result(RACE_UNRESOLVED, n, batch, settings, seqs, states)


def _decide(
    batch: int,
    alive: list[str],
    seqs: _Sequences,
    states: dict[str, GuideState],
    settings: RaceSettings,
) -> None:
    """Apply the three rules after one batch, all against the same evidence."""
    for g in alive:
        verdict = seqs.verdict(g)
        if verdict is Verdict.FAIL:
            _leave(states[g], INFEASIBLE, batch, f"IR shown above {settings.threshold:g}")
        elif verdict is Verdict.PASS and states[g].feasible_at is None:
            states[g].status, states[g].feasible_at = FEASIBLE, batch
    leaders = [g for g in alive if states[g].status == FEASIBLE or settings.objective == "ir"]
    beaten: dict[str, str] = {}
    for b in alive:
        for a in leaders:
            if a != b and states[b].alive and _beats(a, b, seqs, settings):
                beaten.setdefault(b, a)
    for b, a in beaten.items():
        what = "score" if settings.objective == "score" else "IR"
        _leave(states[b], DOMINATED, batch, f"{what} shown worse than {a}'s by more than ε", a)


def _beats(a: str, b: str, seqs: _Sequences, settings: RaceSettings) -> bool:
    """Whether ``a`` is shown better than ``b`` by more than ε."""
    if settings.objective == "score":
        return seqs.difference(a, b).low > settings.epsilon
    return seqs.ir_interval(b).low > seqs.ir_interval(a).high + settings.epsilon


def _within(a: str, b: str, seqs: _Sequences, settings: RaceSettings) -> bool:
    """Whether ``a`` and ``b`` are shown to differ by less than ε (either way)."""
    eps = settings.epsilon
    if settings.objective == "score":
        diff = seqs.difference(a, b)
        return -eps < diff.low and diff.high < eps
    ia, ib = seqs.ir_interval(a), seqs.ir_interval(b)
    return -eps < ia.low - ib.high and ia.high - ib.low < eps


def _leave(state: GuideState, status: str, batch: int, reason: str, by: str | None = None) -> None:
    state.status, state.decided_at, state.reason, state.by = status, batch, reason, by


def _race_status(
    guides: Sequence[str], seqs: _Sequences, states: dict[str, GuideState], settings: RaceSettings
) -> str | None:
    """The race's outcome once it has one, else None (go on)."""
    alive = [g for g in guides if states[g].alive]
    if not alive:
        return RACE_NONE
    if any(states[g].status != FEASIBLE for g in alive):
        return None
    if len(alive) == 1:
        return RACE_WINNER
    if all(_within(a, b, seqs, settings) for a, b in itertools.combinations(alive, 2)):
        return RACE_TIE
    return None


def _result(
    status: str,
    n: int,
    batch: int,
    settings: RaceSettings,
    seqs: _Sequences,
    states: dict[str, GuideState],
    next_slice: tuple[int, int] | None = None,
    todo: list[str] | None = None,
) -> RaceResult:
    for g, state in states.items():
        row = seqs.guides.index(g)
        state.n = seqs.ir.n(row)
        state.ir = seqs.ir.interval(row)
        state.score = seqs.score.interval(row)
        if state.alive and status != RACE_RUNNING:
            state.status = {RACE_WINNER: WINNER, RACE_TIE: TIED}.get(status, UNRESOLVED)
            state.decided_at = batch
    return RaceResult(
        status=status,
        n=n,
        batches=batch,
        alpha=settings.alpha,
        alpha_each=settings.alpha_each(len(states)),
        epsilon=settings.epsilon,
        objective=settings.objective,
        guides=list(states.values()),
        next=next_slice,
        todo=todo or [],
    )


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_EPSILON",
    "MIN_SAMPLES",
    "MeanSequence",
    "Outcome",
    "RaceResult",
    "RaceSettings",
    "GuideState",
    "race",
]
