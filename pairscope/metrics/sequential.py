"""Anytime-valid sequential test of a task's pooled intervention rate against θ.

A probe that decodes samples one by one can stop as soon as the data allow a
verdict, if the test stays valid however often it is looked at. This module is
that test, written from Waudby-Smith & Ramdas (2023), "Estimating means of
bounded random variables by betting" (JRSS B), section 4: hedged capital with
predictable plug-in (PrPl) bets.

**The reduction.** Sample ``i`` has an IR numerator ``u_i`` and denominator
``d_i`` (uncertain positions and positions, or NUDGING's rounds and base-written
tokens), with ``0 <= d_i <= d_max`` (the task's ``max_new_tokens``). The pooled
IR ``r = E[u] / E[d]`` exceeds θ exactly when ``E[u − θ·d] > 0``, and

    x_i = (u_i − θ·d_i) / d_max   lies in   [−θ, h],

with ``h = 1 − θ`` when ``u_i <= d_i`` (a numerator that counts a subset of the
denominator's positions), ``h = 1 − θ + s / d_max`` when ``u_i <= d_i + s``
(NUDGING: every round but a response's first follows a base-written token, so
``s = 1``) and ``h = numerator_max / d_max`` otherwise. Rescaled,
``y_i = (x_i + θ) / (h + θ)`` lies in [0, 1] and ``r > θ`` exactly when
``E[y] > m`` with ``m = θ / (h + θ)`` (``y = x + θ`` and ``m = θ`` in the first
case). As the bootstrap does, the test treats samples as i.i.d. draws from the
task, so the ``y_i`` are i.i.d. and bounded: the paper's setting, with no further
assumption. A random subset of the dataset in random order is such a sequence; a
manifest ordered by stratum is not, and must be shuffled before it is fed.

**The two tests.** Betting on ``E[y] > m`` and on ``E[y] < m``,

    K⁺_t = Π_{i<=t} (1 + λ⁺_i (y_i − m)),   K⁻_t = Π_{i<=t} (1 − λ⁻_i (y_i − m)),

with bets ``λ`` that depend only on earlier samples, are non-negative
supermartingales when ``E[y] <= m`` (resp. ``>= m``), so by Ville's inequality
``P(∃t: K⁺_t >= 1/α_fail) <= α_fail`` under ``r <= θ``, and likewise for K⁻.
FAIL is declared the first time ``K⁺ >= 1/α_fail`` (the IR is above θ), PASS the
first time ``K⁻ >= 1/α_pass``; ``α_fail + α_pass = α`` (half each by default,
the paper's hedged capital with weight 1/2), so a wrong decision, checked after
every sample, has probability at most α overall (at most α_fail + α_pass when
``r = θ`` exactly, where both are wrong).

**The bets** are the paper's PrPl bets:
``μ̂_t = (1/2 + Σ_{i<=t} y_i) / (t + 1)``,
``σ̂²_t = (1/4 + Σ_{i<=t} (y_i − μ̂_i)²) / (t + 1)``,
``λ_t = sqrt(2 log(1/α_side) / (σ̂²_{t−1} · t · log(1 + t)))``, truncated at
``c/m`` for λ⁺ and ``c/(1 − m)`` for λ⁻ so that no factor falls below ``1 − c``
(``c = 0.9`` here; the paper suggests 1/2 or 3/4). With θ = 0.2 the PASS side's
bets stay at their cap ``c/(1 − θ)`` for the whole usual budget, so ``c`` sets how
fast PASS can be declared; 0.9 still keeps a tenth of the capital after the
worst possible sample.

**What bounds the PASS side.** Every e-value for ``E[x] >= 0`` over all
distributions on ``[−θ, h]`` is dominated by some ``1 − λx`` with ``0 <= λ <= 1/h``
(it must stay non-negative at ``x = h``, a sample with IR 1 at full length), so PASS
needs about ``log(1/α_pass) / max_λ E[log(1 − λx)]`` samples on average however the
bets are chosen. With θ = 0.2 this is far slower than FAIL (whose bets may reach
``1/θ``); :func:`best_constant_bet_samples` gives that floor for a pool of samples.

**The interval.** :meth:`SequentialTest.interval` reports the set of θ' on a
grid (step 0.001) that neither test has rejected at any time so far (a running
intersection; each θ' has its own bets), widened by one grid step on each side.
For the true pooled IR the two tests' nulls hold, so it stays inside with
probability at least 1 − α at all times at once: a confidence sequence for the
pooled IR. The gate uses the tests at θ itself, not the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.intervention import Verdict
from pairscope.metrics.stats import Estimate, FloatArray, json_float, to_vector

DEFAULT_ALPHA = 0.05
DEFAULT_TRUNCATION = 0.9
GRID_STEP = 0.001

# Decisions in vectorised form.
UNDECIDED, FAIL, PASS = 0, 1, -1


@dataclass(frozen=True)
class BettingState:
    """Running state of the two betting processes, one per entry of an array of nulls.

    Every array has the same shape: one entry per null value ``m`` (a grid of θ'),
    per stream (a simulation), or a single entry (shape ``()``).
    """

    t: int
    total: FloatArray  # Σ y_i
    sq_dev: FloatArray  # Σ (y_i − μ̂_i)²
    log_up: FloatArray  # log K⁺_t, betting that E[y] > m
    log_down: FloatArray  # log K⁻_t, betting that E[y] < m

    @classmethod
    def start(cls, shape: tuple[int, ...] = ()) -> BettingState:
        zero = np.zeros(shape)
        return cls(0, zero, zero.copy(), zero.copy(), zero.copy())


def _cap(c: float, gap: FloatArray) -> FloatArray:
    """``c / gap`` with ``inf`` where ``gap`` is 0 (the factor can then never shrink)."""
    out = np.full(np.shape(gap), np.inf)
    np.divide(c, gap, out=out, where=gap > 0)
    return out


def bets(
    state: BettingState, m: FloatArray, alpha_fail: float, alpha_pass: float, c: float
) -> tuple[FloatArray, FloatArray]:
    """The PrPl bets ``(λ⁺, λ⁻)`` for the next sample, from earlier samples only."""
    t = state.t + 1
    variance = (0.25 + state.sq_dev) / t  # σ̂²_{t−1}
    scale = variance * t * math.log(1.0 + t)
    up = np.sqrt(2.0 * math.log(1.0 / alpha_fail) / scale)
    down = np.sqrt(2.0 * math.log(1.0 / alpha_pass) / scale)
    return np.minimum(up, _cap(c, m)), np.minimum(down, _cap(c, 1.0 - m))


def step(
    state: BettingState,
    y: ArrayLike,
    m: FloatArray,
    alpha_fail: float,
    alpha_pass: float,
    c: float,
) -> BettingState:
    """Bet on one new sample ``y`` (in [0, 1], broadcast against the state) and update."""
    y = np.asarray(y, dtype=np.float64)
    lam_up, lam_down = bets(state, m, alpha_fail, alpha_pass, c)
    t = state.t + 1
    total = state.total + y
    mean = (0.5 + total) / (t + 1)  # μ̂_t, including y_t, as in the paper
    return BettingState(
        t=t,
        total=total,
        sq_dev=state.sq_dev + (y - mean) ** 2,
        log_up=state.log_up + np.log1p(lam_up * (y - m)),
        log_down=state.log_down + np.log1p(-lam_down * (y - m)),
    )


def decisions(state: BettingState, alpha_fail: float, alpha_pass: float) -> NDArray[np.int_]:
    """``FAIL`` (1) where K⁺ >= 1/α_fail, ``PASS`` (−1) where K⁻ >= 1/α_pass, else 0."""
    over_fail = state.log_up - math.log(1.0 / alpha_fail)
    over_pass = state.log_down - math.log(1.0 / alpha_pass)
    # Both at once would need E[y] both above and below m; the larger excess wins.
    fail = (over_fail >= 0) & ((over_pass < 0) | (over_fail >= over_pass))
    passed = (over_pass >= 0) & ~fail
    return np.where(fail, FAIL, np.where(passed, PASS, UNDECIDED))


def scaled(
    u: ArrayLike,
    d: ArrayLike,
    theta: ArrayLike,
    d_max: float,
    numerator_max: float | None,
    slack: float = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """``(y, m)``: samples mapped into [0, 1] and the null mean, for each θ (module doc).

    ``slack``: with no ``numerator_max``, a numerator is at most ``d + slack``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if numerator_max is None:
        high = 1.0 - theta + slack / d_max
    else:
        high = np.full_like(theta, numerator_max / d_max)
    width = high + theta
    x = (np.asarray(u, dtype=np.float64) - theta * np.asarray(d, dtype=np.float64)) / d_max
    return (x + theta) / width, theta / width


def _check_alpha(alpha: float, fail_share: float) -> tuple[float, float]:
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be between 0 and 1 (exclusive); got {alpha!r}.")
    if not 0.0 < fail_share < 1.0:
        raise InputError(f"fail_share must be between 0 and 1 (exclusive); got {fail_share!r}.")
    return alpha * fail_share, alpha * (1.0 - fail_share)


class SequentialTest:
    """Anytime-valid PASS/FAIL test of one task's pooled IR against ``theta``.

    Feed samples with :meth:`update` in a random order fixed before decoding (a
    shuffled manifest), not in the order they finish: short responses finish first
    in a batch, and an order that depends on the outcomes voids the guarantee, so
    hold finished samples back until their turn. Stop at the first verdict or at
    the sample budget (then the verdict is WARN, as for an interval that contains
    θ). Checking after every sample is allowed: the probability of any wrong
    decision is at most ``alpha`` (module doc).

    Args:
        theta: IR threshold, in (0, 1).
        d_max: Largest possible denominator of one sample (``max_new_tokens``).
        alpha: Total error probability, split between FAIL and PASS.
        numerator_max: Largest possible numerator of one sample; None when the
            numerator never exceeds the denominator plus ``numerator_slack``.
        numerator_slack: With no ``numerator_max``, a numerator is at most
            ``d + numerator_slack``. 0 for uncertain positions out of positions; 1 for
            NUDGING, whose rounds each follow a base-written token but the first.
        fail_share: Share of ``alpha`` spent on FAIL (the rest on PASS).
        truncation: ``c`` in (0, 1), the bets' cap (module doc).
        grid_max: Largest θ' on the interval's grid.

    Example:
        >>> test = SequentialTest(theta=0.2, d_max=192)
        >>> for u, d in finished_samples:  # doctest: +SKIP
        ...     if test.update(u, d) is not None:
        ...         break
    """

    def __init__(
        self,
        theta: float,
        d_max: int,
        alpha: float = DEFAULT_ALPHA,
        *,
        numerator_max: int | None = None,
        numerator_slack: int = 0,
        fail_share: float = 0.5,
        truncation: float = DEFAULT_TRUNCATION,
        grid_max: float = 1.0,
    ) -> None:
        if not 0.0 < theta < 1.0:
            raise InputError(f"theta must be between 0 and 1 (exclusive); got {theta!r}.")
        if isinstance(d_max, bool) or not float(d_max).is_integer() or d_max < 1:
            raise InputError(f"d_max must be a positive whole number; got {d_max!r}.")
        if numerator_max is not None and numerator_max < 1:
            raise InputError(f"numerator_max must be positive; got {numerator_max!r}.")
        if numerator_slack < 0:
            raise InputError(f"numerator_slack must be >= 0; got {numerator_slack!r}.")
        if not 0.0 < truncation < 1.0:
            raise InputError(f"truncation must be in (0, 1); got {truncation!r}.")
        if grid_max <= 0:
            raise InputError(f"grid_max must be positive; got {grid_max!r}.")
        self.theta = float(theta)
        self.d_max = int(d_max)
        self.alpha = float(alpha)
        self.numerator_max = None if numerator_max is None else float(numerator_max)
        self.numerator_slack = int(numerator_slack)
        self.alpha_fail, self.alpha_pass = _check_alpha(alpha, fail_share)
        self.truncation = float(truncation)
        self._m = scaled(
            0.0, 0.0, self.theta, self.d_max, self.numerator_max, self.numerator_slack
        )[1]
        self._state = BettingState.start()
        steps = int(round(grid_max / GRID_STEP))
        self._grid = np.arange(steps + 1) * GRID_STEP
        if self.numerator_max is None:
            self._grid = self._grid[self._grid <= 1.0]
        self._grid_m = scaled(
            0.0, 0.0, self._grid, self.d_max, self.numerator_max, self.numerator_slack
        )[1]
        self._grid_state = BettingState.start(self._grid.shape)
        self._alive = np.ones(self._grid.shape, dtype=bool)
        self._sum_u = 0.0
        self._sum_d = 0.0
        self._verdict: Verdict | None = None
        self._decided_at: int | None = None

    @property
    def n(self) -> int:
        """Samples seen so far."""
        return self._state.t

    @property
    def decided_at(self) -> int | None:
        """The sample count at which PASS or FAIL was first declared (None: not yet)."""
        return self._decided_at

    @property
    def verdict(self) -> Verdict | None:
        """PASS or FAIL once declared (it never changes afterwards), else None."""
        return self._verdict

    def final_verdict(self) -> Verdict:
        """The verdict at the end of the budget: PASS, FAIL, or WARN when undecided."""
        return self._verdict or Verdict.WARN

    @property
    def e_values(self) -> tuple[float, float]:
        """``(K⁺, K⁻)`` at θ: evidence that the IR is above θ and below θ."""
        return (float(np.exp(self._state.log_up)), float(np.exp(self._state.log_down)))

    def update(self, u: float, d: float) -> Verdict | None:
        """Add one sample's IR numerator ``u`` and denominator ``d``; return the verdict.

        Returns PASS or FAIL from the sample at which it is first declared on (later
        samples still narrow :meth:`interval` but never change it), else None.

        Raises:
            InputError: counts out of range (negative, ``d > d_max``, ``u > d``, or
                ``u > numerator_max``), which would break the test's guarantee.
        """
        u, d = float(u), float(d)
        if not (math.isfinite(u) and math.isfinite(d)) or u < 0 or d < 0:
            raise InputError(f"IR counts must be non-negative numbers; got u={u}, d={d}.")
        if d > self.d_max:
            raise InputError(f"Denominator {d:g} exceeds d_max = {self.d_max}.")
        if self.numerator_max is None and u > d + self.numerator_slack:
            raise InputError(
                f"Numerator {u:g} exceeds denominator {d:g} + {self.numerator_slack}; "
                "pass numerator_max or numerator_slack when "
                "the numerator can exceed the denominator."
            )
        if self.numerator_max is not None and u > self.numerator_max:
            raise InputError(f"Numerator {u:g} exceeds numerator_max = {self.numerator_max:g}.")
        self._sum_u += u
        self._sum_d += d
        y = scaled(u, d, self.theta, self.d_max, self.numerator_max, self.numerator_slack)[0]
        args = (self.alpha_fail, self.alpha_pass, self.truncation)
        self._state = step(self._state, y, self._m, *args)
        grid_y = scaled(u, d, self._grid, self.d_max, self.numerator_max, self.numerator_slack)[0]
        self._grid_state = step(self._grid_state, grid_y, self._grid_m, *args)
        self._alive &= decisions(self._grid_state, self.alpha_fail, self.alpha_pass) == UNDECIDED
        if self._verdict is None:
            decision = int(decisions(self._state, self.alpha_fail, self.alpha_pass))
            if decision != UNDECIDED:
                self._verdict = Verdict.FAIL if decision == FAIL else Verdict.PASS
                self._decided_at = self.n
        return self._verdict

    @property
    def point(self) -> float:
        """The pooled IR so far, ``Σu / Σd`` (NaN before any denominator)."""
        return self._sum_u / self._sum_d if self._sum_d > 0 else math.nan

    def interval(self) -> Estimate:
        """The pooled IR with its anytime-valid interval (module doc), level ``1 − alpha``.

        Before any sample the interval is the whole grid.
        """
        alive = np.flatnonzero(self._alive)
        last = self._grid.size - 1
        if alive.size:
            low_i, high_i = max(int(alive[0]) - 1, 0), min(int(alive[-1]) + 1, last)
        else:
            # Every grid point rejected: the interval lies between two of them.
            at = int(np.searchsorted(self._grid, self.point)) if self._sum_d > 0 else 0
            low_i, high_i = max(at - 1, 0), min(at, last)
        return Estimate(self.point, float(self._grid[low_i]), float(self._grid[high_i]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, naming the method so a reader knows what the interval is."""
        up, down = self.e_values
        return {
            "method": "anytime-valid betting test (Waudby-Smith & Ramdas 2023, hedged PrPl)",
            "theta": self.theta,
            "alpha": self.alpha,
            "n": self.n,
            "verdict": None if self._verdict is None else self._verdict.value,
            "decided_at": self._decided_at,
            "ir": self.interval().to_dict(),
            "e_fail": json_float(up),
            "e_pass": json_float(down),
        }


# -- operating characteristics -------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """Decisions of many streams, each checked after every sample up to the budget.

    Attributes:
        decision: Per stream, ``FAIL`` (1), ``PASS`` (−1) or ``UNDECIDED`` (0).
        decided_at: Per stream, the sample count at the decision; ``budget + 1`` if none.
        true_ir: The pool's pooled IR, ``Σu / Σd``.
    """

    decision: NDArray[np.int_]
    decided_at: NDArray[np.int_]
    true_ir: float
    budget: int

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
    d_max: int,
    *,
    streams: int = 2000,
    budget: int = 100,
    alpha: float = DEFAULT_ALPHA,
    numerator_max: int | None = None,
    numerator_slack: int = 0,
    fail_share: float = 0.5,
    truncation: float = DEFAULT_TRUNCATION,
    seed: int = 0,
) -> Simulation:
    """Run :class:`SequentialTest`'s decision rule on ``streams`` resampled streams at once.

    Each stream draws ``budget`` samples with replacement from the pool of
    ``(numerators[i], denominators[i])`` pairs; all streams share the step
    functions :class:`SequentialTest` uses, vectorised across streams.
    """
    u = to_vector(numerators, "numerators")
    d = to_vector(denominators, "denominators")
    if u.shape != d.shape:
        raise InputError(f"numerators and denominators differ ({u.size} vs {d.size}).")
    alpha_fail, alpha_pass = _check_alpha(alpha, fail_share)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, u.size, size=(budget, streams))
    y_pool, m = scaled(u, d, theta, d_max, numerator_max, numerator_slack)
    state = BettingState.start((streams,))
    decision = np.zeros(streams, dtype=np.int_)
    decided_at = np.full(streams, budget + 1, dtype=np.int_)
    for t in range(budget):
        state = step(state, y_pool[draws[t]], m, alpha_fail, alpha_pass, truncation)
        now = decisions(state, alpha_fail, alpha_pass)
        new = (decision == UNDECIDED) & (now != UNDECIDED)
        decision[new] = now[new]
        decided_at[new] = t + 1
    return Simulation(decision, decided_at, float(u.sum() / d.sum()), budget)


def best_constant_bet_samples(
    numerators: ArrayLike,
    denominators: ArrayLike,
    theta: float,
    d_max: int,
    *,
    alpha_side: float = DEFAULT_ALPHA / 2,
    numerator_max: int | None = None,
    numerator_slack: int = 0,
) -> float:
    """A floor on the samples one side needs: ``log(1/α_side) / g*``.

    ``g*`` is the best growth rate any bet can reach on this pool, the constant
    bet in the true direction chosen knowing the pool, over the whole range that
    keeps every factor non-negative. Returns ``inf`` when the pool's IR is θ.
    """
    u = to_vector(numerators, "numerators")
    d = to_vector(denominators, "denominators")
    y, m = scaled(u, d, theta, d_max, numerator_max, numerator_slack)
    gap = y - m
    direction = 1.0 if gap.mean() > 0 else -1.0
    top = 1.0 / m if direction > 0 else 1.0 / (1.0 - m)
    lams = np.linspace(0.0, top, 2001)[1:-1]
    growth = np.log1p(direction * lams[:, None] * gap[None, :]).mean(axis=1)
    best = float(growth.max())
    return math.log(1.0 / alpha_side) / best if best > 0 else math.inf


def synthetic_pool(
    target_ir: float,
    *,
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
    ``[d_min, d_max]``. Each sample's own rate is Beta with mean ``target_ir`` and
    the given concentration (spread like per-sample IRs of real probes), and its
    numerator Binomial(d, rate). The numerators are then nudged by ±1 (staying in
    ``[0, d]``) until the pooled IR is exact.
    """
    if not 0.0 < target_ir < 1.0:
        raise InputError(f"target_ir must be in (0, 1); got {target_ir!r}.")
    rng = np.random.default_rng(seed)
    lengths = np.round(rng.lognormal(math.log(median_length), 0.5, size))
    d = np.where(rng.random(size) < at_cap, d_max, np.clip(lengths, d_min, d_max)).astype(int)
    rates = rng.beta(target_ir * concentration, (1.0 - target_ir) * concentration, size)
    u = rng.binomial(d, rates).astype(int)
    ratio = Fraction(target_ir).limit_denominator(1000)
    # Make Σd a multiple of the ratio's denominator, so Σu can hit it exactly.
    while int(d.sum()) % ratio.denominator:
        i = int(rng.integers(size))
        if d[i] < d_max:
            d[i] += 1
    want = int(d.sum()) * ratio.numerator // ratio.denominator
    while int(u.sum()) != want:
        i = int(rng.integers(size))
        if u.sum() < want and u[i] < d[i]:
            u[i] += 1
        elif u.sum() > want and u[i] > 0:
            u[i] -= 1
    return u, d


__all__ = [
    "BettingState",
    "SequentialTest",
    "Simulation",
    "best_constant_bet_samples",
    "decisions",
    "simulate",
    "step",
    "synthetic_pool",
]
