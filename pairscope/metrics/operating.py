"""Operating characteristics of the sequential IR gate (:mod:`pairscope.metrics.sequential`).

How often and how early the test decides, by simulation: many streams resample a
pool of per-sample ``(u, d)`` counts and run the test's own step functions,
vectorised across streams, checked after every sample up to a budget, with or
without stopping for futility; the floor no valid test of this kind beats on
average; and synthetic pools whose pooled IR is set exactly (an uncertain rate's
counts and NUDGING's). ``bench/sequential.py`` and the tests use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_TRUNCATION,
    FUTILITY_CHANCE,
    FUTILITY_MIN_SAMPLES,
    FUTILITY_STREAMS,
    UNDECIDED,
    BettingState,
    Support,
    check_alpha,
    continuation_chance,
    decisions,
    step,
)
from pairscope.metrics.stats import FloatArray, to_vector


@dataclass(frozen=True)
class Simulation:
    """Decisions of many streams, each checked after every sample up to the budget.

    Attributes:
        decision: Per stream, ``FAIL`` (1), ``PASS`` (−1) or ``UNDECIDED`` (0).
        decided_at: Per stream, the sample count at the decision; ``budget + 1`` if none.
        true_ir: The pool's pooled IR, ``Σu / Σd``.
        futile: Per stream, whether it stopped undecided for futility (None: not checked).
        spent: Per stream, the samples it decoded: up to its decision, its futility
            stop, or the whole budget.
    """

    decision: NDArray[np.int_]
    decided_at: NDArray[np.int_]
    true_ir: float
    budget: int
    futile: NDArray[np.bool_] | None = None
    spent: NDArray[np.int_] | None = None

    @property
    def streams(self) -> int:
        return int(self.decision.size)

    def rate(self, decision: int) -> tuple[int, float]:
        """How many streams reached ``decision``, and their share."""
        count = int(np.sum(self.decision == decision))
        return count, count / self.streams

    def median_samples(self) -> float:
        """Median samples to a decision (undecided streams count as ``budget + 1``)."""
        return float(np.median(self.decided_at))


def simulate(
    numerators: ArrayLike,
    denominators: ArrayLike,
    theta: float,
    support: Support | int,
    *,
    streams: int = 2000,
    budget: int = 100,
    alpha: float = DEFAULT_ALPHA,
    fail_share: float = 0.5,
    truncation: float = DEFAULT_TRUNCATION,
    seed: int = 0,
    futility: bool = False,
    check_every: int = 16,
    futility_streams: int = FUTILITY_STREAMS,
) -> Simulation:
    """Run :class:`SequentialTest`'s decision rule on ``streams`` resampled streams at once.

    Each stream draws ``budget`` samples with replacement from the pool of
    ``(numerators[i], denominators[i])`` pairs; all streams share the step
    functions :class:`SequentialTest` uses, vectorised across streams. With
    ``futility``, an undecided stream is also checked as :meth:`SequentialTest.futile`
    checks it, at the probe's batch boundaries for a task calibration reads: after
    ``FUTILITY_MIN_SAMPLES`` (the first chunk, ``--min-calibration-samples``) and then
    every ``check_every`` samples (``--batch-size``), with
    ``futility_streams`` continuations, and stops undecided when it is futile
    (``Simulation.futile`` marks those streams).
    """
    u = to_vector(numerators, "numerators")
    d = to_vector(denominators, "denominators")
    if u.shape != d.shape:
        raise InputError(f"numerators and denominators differ ({u.size} vs {d.size}).")
    alpha_fail, alpha_pass = check_alpha(alpha, fail_share)
    args = (alpha_fail, alpha_pass, truncation)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, u.size, size=(budget, streams))
    support = support if isinstance(support, Support) else Support(support)
    y_pool, m = support.scaled(u, d, theta)
    state = BettingState.start((streams,))
    decision = np.zeros(streams, dtype=np.int_)
    decided_at = np.full(streams, budget + 1, dtype=np.int_)
    stopped = np.zeros(streams, dtype=bool)
    spent = np.full(streams, budget, dtype=np.int_)
    for t in range(budget):
        state = step(state, y_pool[draws[t]], m, *args)
        now = decisions(state, *args[:2])
        new = (decision == UNDECIDED) & (now != UNDECIDED) & ~stopped
        decision[new] = now[new]
        decided_at[new] = t + 1
        spent[new] = t + 1
        seen, left = t + 1, budget - t - 1
        due = seen >= FUTILITY_MIN_SAMPLES and (seen - FUTILITY_MIN_SAMPLES) % check_every == 0
        if futility and due and left:
            undecided = np.flatnonzero((decision == UNDECIDED) & ~stopped)
            for s in _futile(
                state, undecided, y_pool, draws[:seen], left, m, args, futility_streams
            ):
                stopped[s], spent[s] = True, seen
    truth = float(u.sum() / d.sum())
    return Simulation(decision, decided_at, truth, budget, stopped if futility else None, spent)


def _futile(
    state: BettingState,
    candidates: NDArray[np.intp],
    y_pool: FloatArray,
    drawn: NDArray[np.int_],
    left: int,
    m: FloatArray,
    args: tuple[float, float, float],
    streams: int,
) -> list[int]:
    """The streams of ``candidates`` :meth:`SequentialTest.futile` would stop: their chance
    to decide within the ``left`` samples to come, over ``streams`` continuations of
    their draws so far (``drawn``: indices into ``y_pool``, [seen, streams]), is below
    ``FUTILITY_CHANCE``."""
    return [
        int(s)
        for s in candidates
        if continuation_chance(
            state.at(int(s)), y_pool[drawn[:, s]], left, m, *args, streams=streams
        )
        < FUTILITY_CHANCE
    ]


def best_constant_bet_samples(
    numerators: ArrayLike,
    denominators: ArrayLike,
    theta: float,
    support: Support | int,
    *,
    alpha_side: float = DEFAULT_ALPHA / 2,
) -> float:
    """A floor on the samples one side needs: ``log(1/α_side) / g*``.

    ``g*`` is the best growth rate any bet can reach on this pool, the constant
    bet in the true direction chosen knowing the pool, over the whole range that
    keeps every factor non-negative. Returns ``inf`` when the pool's IR is θ.
    """
    u = to_vector(numerators, "numerators")
    d = to_vector(denominators, "denominators")
    support = support if isinstance(support, Support) else Support(support)
    y, m = support.scaled(u, d, theta)
    gap = y - m
    direction = 1.0 if gap.mean() > 0 else -1.0
    top = 1.0 / m if direction > 0 else 1.0 / (1.0 - m)
    lams = np.linspace(0.0, top, 2001)[1:-1]
    growth = np.log1p(direction * lams[:, None] * gap[None, :]).mean(axis=1)
    best = float(growth.max())
    return math.log(1.0 / alpha_side) / best if best > 0 else math.inf


def _lengths(
    rng: np.random.Generator, size: int, d_min: int, d_max: int, at_cap: float, median: float
) -> NDArray[np.int_]:
    """Response lengths: a share ``at_cap`` cut at ``d_max``, the rest log-normal around
    ``median`` within ``[d_min, d_max]``."""
    lengths = np.round(rng.lognormal(math.log(median), 0.5, size))
    return np.where(rng.random(size) < at_cap, d_max, np.clip(lengths, d_min, d_max)).astype(int)


def synthetic_pool(
    target_ir: float,
    *,
    rounds: bool = False,
    size: int = 1000,
    d_min: int = 20,
    d_max: int = 256,
    at_cap: float = 0.3,
    median_length: float = 110.0,
    concentration: float = 8.0,
    seed: int = 0,
) -> tuple[NDArray[np.int_], NDArray[np.int_]]:
    """Synthetic per-sample ``(u, d)`` with pooled IR ``Σu / Σd`` exactly ``target_ir``.

    Lengths look like responses: a share ``at_cap`` is cut at ``d_max``
    (``max_new_tokens``), the rest are log-normal around ``median_length`` within
    ``[d_min, d_max]``. Each sample's own rate is Beta with the given concentration
    (spread like per-sample IRs of real probes).

    * An uncertain rate (``u <= d``): ``d`` is the length, the rate's mean is
      ``target_ir`` and ``u`` is Binomial(d, rate).
    * NUDGING's counts (``rounds``; rounds ``u``, base-written tokens ``d``, inside
      ``Support(d_max, slack=1, disjoint=True)``): each position of the length starts a
      round with the sample's own probability (mean ``target_ir / (1 + target_ir)``),
      a round is one word (one position), every other position is base-written, and
      ``u <= d + 1``.

    Then the numerators are moved by ±1 (NUDGING: positions move between rounds and
    base-written tokens), staying in the support, until the pooled IR is exact.
    """
    if not 0.0 < target_ir < 1.0:
        raise InputError(f"target_ir must be in (0, 1); got {target_ir!r}.")
    ratio = Fraction(target_ir).limit_denominator(1000)
    rng = np.random.default_rng(seed)
    length = _lengths(rng, size, d_min, d_max, at_cap, median_length)
    mean = target_ir / (1.0 + target_ir) if rounds else target_ir
    rates = rng.beta(mean * concentration, (1.0 - mean) * concentration, size)
    u = rng.binomial(length, rates).astype(int)
    if rounds:
        u = np.minimum(u, (length + 1) // 2)
    # Σu / Σd = p / q exactly when Σu = p·Σd / q, and for NUDGING (d = length − u) when
    # Σu = p·L / (p + q) for the total length L: make the total a multiple of that.
    parts = ratio.denominator + (ratio.numerator if rounds else 0)
    while int(length.sum()) % parts:
        i = int(rng.integers(size))
        if length[i] < d_max:
            length[i] += 1
    want = int(length.sum()) * ratio.numerator // parts
    while int(u.sum()) != want:
        i = int(rng.integers(size))
        room = 2 * u[i] + 1 <= length[i] if rounds else u[i] < length[i]  # keeps u in support
        if u.sum() < want and room:
            u[i] += 1
        elif u.sum() > want and u[i] > 0:
            u[i] -= 1
    return u, (length - u if rounds else length)


__all__ = [
    "Simulation",
    "best_constant_bet_samples",
    "simulate",
    "synthetic_pool",
]
