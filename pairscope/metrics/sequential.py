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

where ``h`` is the largest value ``(u − θ·d) / d_max`` takes on the sample space
(:class:`Support`): ``h = 1 − θ`` when ``u <= d`` (a numerator that counts a subset
of the denominator's positions); for NUDGING, whose rounds and base-written tokens
are different positions of one response (``u + d <= d_max``) and whose every round
but a response's first follows a base-written token (``u <= d + 1``), the most
adverse sample has about half its positions rounds, and ``h`` is about
``(1 − θ) / 2``. Rescaled, ``y_i = (x_i + θ) / (h + θ)`` lies in [0, 1] and
``r > θ`` exactly when ``E[y] > m`` with ``m = θ / (h + θ)``. As the bootstrap
does, the test treats samples as i.i.d. draws from the task, so the ``y_i`` are
i.i.d. and bounded: the paper's setting, with no further assumption. A random
subset of the dataset in random order is such a sequence; a manifest ordered by
stratum is not, and must be shuffled before it is fed.

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
distributions on the sample space is dominated by some ``1 − λx`` with
``0 <= λ <= 1/h`` (it must stay non-negative at ``x = h``, the most adverse sample
possible: for an uncertain rate, IR 1 at full length), so PASS
needs about ``log(1/α_pass) / max_λ E[log(1 − λx)]`` samples on average however the
bets are chosen. With θ = 0.2 this is far slower than FAIL (whose bets may reach
``1/θ``), and about twice as fast for NUDGING's rounds as for an uncertain rate,
whose ``h`` is twice as large;
:func:`pairscope.metrics.operating.best_constant_bet_samples` gives that floor for
a pool of samples.

**Stopping for futility.** A task whose IR sits close to θ may need many times
the budget to be decided (the embedded pair's GSM8K, IR 0.169 against 0.20,
about 565 samples), and decoding the rest of the budget then buys a WARN that was
clear long before. :meth:`SequentialTest.decision_chance` estimates the chance
that the test still decides within the samples left: streams continue the test
from its current state on future samples drawn from the samples seen, each
stream from its own Bayesian-bootstrap reweighting of them (Dirichlet(1, ..., 1)
weights, so the streams carry the uncertainty about the pool as well as the
luck of the draw). After at least ``FUTILITY_MIN_SAMPLES`` samples, a chance
below ``FUTILITY_CHANCE`` stops the task undecided (WARN). Stopping can only
turn a declaration that might have come into none, so the error guarantee above
is untouched (Ville's inequality holds at any stopping time); what it costs is
power, measured by :func:`pairscope.metrics.operating.simulate` with
``futility=True``.

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
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.intervention import Verdict
from pairscope.metrics.stats import Estimate, FloatArray, json_float

DEFAULT_ALPHA = 0.05
DEFAULT_TRUNCATION = 0.9
GRID_STEP = 0.001
# Stopping for futility (module doc): undecided after at least FUTILITY_MIN_SAMPLES,
# with an estimated chance below FUTILITY_CHANCE of a decision within the budget.
FUTILITY_CHANCE = 0.02
FUTILITY_MIN_SAMPLES = 30
FUTILITY_STREAMS = 2000

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

    def at(self, i: int) -> BettingState:
        """The state of entry ``i`` alone (one stream of a simulation)."""
        return BettingState(self.t, self.total[i], self.sq_dev[i], self.log_up[i], self.log_down[i])

    def broadcast(self, shape: tuple[int, ...]) -> BettingState:
        """Copies of a single state, one per entry of ``shape`` (streams that go on from it)."""

        def spread(a: FloatArray) -> FloatArray:
            return np.broadcast_to(a, shape).copy()

        return BettingState(
            self.t, spread(self.total), spread(self.sq_dev), spread(self.log_up),
            spread(self.log_down),
        )  # fmt: skip


def continuation_chance(
    state: BettingState,
    seen: FloatArray,
    remaining: int,
    m: FloatArray,
    alpha_fail: float,
    alpha_pass: float,
    c: float,
    *,
    streams: int = FUTILITY_STREAMS,
    seed: int = 0,
) -> float:
    """The share of ``streams`` that, going on from ``state`` (one undecided test) for
    ``remaining`` samples drawn from the Bayesian bootstrap of ``seen``, reach a decision."""
    if remaining <= 0 or seen.size == 0:
        return 0.0
    future = _bootstrap_draws(seen, streams, remaining, seed)
    state = state.broadcast((streams,))
    decided = np.zeros(streams, dtype=bool)
    for t in range(remaining):
        state = step(state, future[:, t], m, alpha_fail, alpha_pass, c)
        decided |= decisions(state, alpha_fail, alpha_pass) != UNDECIDED
    return float(decided.mean())


def _bootstrap_draws(values: FloatArray, streams: int, size: int, seed: int) -> FloatArray:
    """``(streams, size)`` future samples: each stream draws from ``values`` with its own
    Dirichlet(1, ..., 1) weights (the Bayesian bootstrap)."""
    rng = np.random.default_rng(seed)
    n = values.size
    cum = np.cumsum(rng.dirichlet(np.ones(n), size=streams), axis=1)
    cum[:, -1] = 1.0
    # One sorted array for all streams: stream s's cumulative weights shifted by s.
    rows = np.arange(streams)[:, None]
    queries = (rng.random((streams, size)) + rows).ravel()
    at = np.searchsorted((cum + rows).ravel(), queries, side="right")
    return values[(at - (rows * n).ravel().repeat(size)).reshape(streams, size)]


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


@dataclass(frozen=True)
class Support:
    """Where one sample's IR counts ``(u, d)`` can lie; the test's range follows from it.

    Attributes:
        d_max: Largest possible denominator (the task's ``max_new_tokens``).
        numerator_max: Largest possible numerator; None when it never exceeds the
            denominator plus ``slack``.
        slack: With no ``numerator_max``, a numerator is at most ``d + slack``: 0 for
            uncertain positions out of positions; 1 for NUDGING, whose rounds each
            follow a base-written token but the first.
        disjoint: The numerator and the denominator count different positions of one
            response of at most ``d_max`` positions, so ``u + d <= d_max`` (NUDGING:
            a round's first word and a base-written token are never the same position).

    Example:
        >>> Support(256).high(0.2)  # an uncertain rate: IR 1 at full length
        0.8
        >>> round(float(Support(256, slack=1, disjoint=True).high(0.2)), 4)  # NUDGING
        0.4023
    """

    d_max: int
    numerator_max: int | None = None
    slack: int = 0
    disjoint: bool = False

    def __post_init__(self) -> None:
        d_max = self.d_max
        if isinstance(d_max, bool) or not float(d_max).is_integer() or d_max < 1:
            raise InputError(f"d_max must be a positive whole number; got {d_max!r}.")
        if self.numerator_max is not None and self.numerator_max < 1:
            raise InputError(f"numerator_max must be positive; got {self.numerator_max!r}.")
        if self.slack < 0:
            raise InputError(f"numerator slack must be >= 0; got {self.slack!r}.")

    def _ceiling(self, d: FloatArray) -> FloatArray:
        """The largest numerator possible beside denominator ``d``."""
        cap = self.d_max - d if self.disjoint else np.full_like(d, np.inf)
        if self.numerator_max is None:
            return np.minimum(d + self.slack, cap)
        return np.minimum(float(self.numerator_max), cap)

    def high(self, theta: ArrayLike) -> Any:
        """``h``: the largest ``(u − θ·d) / d_max`` on the support, for each θ.

        ``u − θ·d`` is concave and piecewise linear in ``d`` along the upper edge, so
        its maximum lies at an end of ``[0, d_max]`` or where two bounds on ``u`` meet.
        """
        theta = np.asarray(theta, dtype=np.float64)
        top = float(self.d_max)
        corners = [0.0, top]
        if self.disjoint and self.numerator_max is None:
            corners.append((top - self.slack) / 2)  # u = d + slack meets u = d_max − d
        elif self.disjoint:
            corners.append(top - float(self.numerator_max or 0))  # u = numerator_max meets it
        if self.numerator_max is not None:
            corners.append(float(self.numerator_max))
        d = np.clip(np.array(corners), 0.0, top)
        value = self._ceiling(d)[:, None] - d[:, None] * theta.reshape(1, -1)
        out = (value.max(axis=0) / top).reshape(theta.shape)
        return float(out) if out.ndim == 0 else out

    def check(self, u: float, d: float) -> None:
        """Refuse counts outside the support: they would break the test's guarantee."""
        if not (math.isfinite(u) and math.isfinite(d)) or u < 0 or d < 0:
            raise InputError(f"IR counts must be non-negative numbers; got u={u}, d={d}.")
        if d > self.d_max:
            raise InputError(f"Denominator {d:g} exceeds d_max = {self.d_max}.")
        if self.numerator_max is None and u > d + self.slack:
            raise InputError(
                f"Numerator {u:g} exceeds denominator {d:g} + {self.slack}; "
                "pass numerator_max or a numerator slack when "
                "the numerator can exceed the denominator."
            )
        if self.numerator_max is not None and u > self.numerator_max:
            raise InputError(f"Numerator {u:g} exceeds numerator_max = {self.numerator_max:g}.")
        if self.disjoint and u + d > self.d_max:
            raise InputError(
                f"Numerator {u:g} and denominator {d:g} count {u + d:g} positions, "
                f"more than d_max = {self.d_max}."
            )

    def scaled(self, u: ArrayLike, d: ArrayLike, theta: ArrayLike) -> tuple[Any, Any]:
        """``(y, m)``: samples mapped into [0, 1] and the null mean, for each θ (module doc)."""
        theta = np.asarray(theta, dtype=np.float64)
        width = self.high(theta) + theta
        x = np.asarray(u, dtype=np.float64) - theta * np.asarray(d, dtype=np.float64)
        return (x / self.d_max + theta) / width, theta / width


def check_alpha(alpha: float, fail_share: float) -> tuple[float, float]:
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
        support: Where one sample's counts can lie (:class:`Support`; an int is the
            ``d_max`` of an uncertain rate, ``u <= d <= d_max``).
        alpha: Total error probability, split between FAIL and PASS.
        fail_share: Share of ``alpha`` spent on FAIL (the rest on PASS).
        truncation: ``c`` in (0, 1), the bets' cap (module doc).
        grid_max: Largest θ' on the interval's grid.

    Example:
        >>> test = SequentialTest(theta=0.2, support=Support(d_max=192))
        >>> for u, d in finished_samples:  # doctest: +SKIP
        ...     if test.update(u, d) is not None:
        ...         break
    """

    def __init__(
        self,
        theta: float,
        support: Support | int,
        alpha: float = DEFAULT_ALPHA,
        *,
        fail_share: float = 0.5,
        truncation: float = DEFAULT_TRUNCATION,
        grid_max: float = 1.0,
    ) -> None:
        if not 0.0 < theta < 1.0:
            raise InputError(f"theta must be between 0 and 1 (exclusive); got {theta!r}.")
        if not isinstance(support, Support):
            support = Support(support)
        if not 0.0 < truncation < 1.0:
            raise InputError(f"truncation must be in (0, 1); got {truncation!r}.")
        if grid_max <= 0:
            raise InputError(f"grid_max must be positive; got {grid_max!r}.")
        self.theta = float(theta)
        self.support = support
        self.alpha = float(alpha)
        self.alpha_fail, self.alpha_pass = check_alpha(alpha, fail_share)
        self.truncation = float(truncation)
        self._m = support.scaled(0.0, 0.0, self.theta)[1]
        self._state = BettingState.start()
        steps = int(round(grid_max / GRID_STEP))
        self._grid = np.arange(steps + 1) * GRID_STEP
        if support.numerator_max is None:
            self._grid = self._grid[self._grid <= 1.0]
        self._grid_m = support.scaled(0.0, 0.0, self._grid)[1]
        self._grid_state = BettingState.start(self._grid.shape)
        self._alive = np.ones(self._grid.shape, dtype=bool)
        self._sum_u = 0.0
        self._sum_d = 0.0
        self._ys: list[float] = []
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
            InputError: counts outside the support (negative, ``d > d_max``, ``u > d``
                plus its slack, ...), which would break the test's guarantee.
        """
        u, d = float(u), float(d)
        self.support.check(u, d)
        self._sum_u += u
        self._sum_d += d
        y = self.support.scaled(u, d, self.theta)[0]
        self._ys.append(float(y))
        args = (self.alpha_fail, self.alpha_pass, self.truncation)
        self._state = step(self._state, y, self._m, *args)
        grid_y = self.support.scaled(u, d, self._grid)[0]
        self._grid_state = step(self._grid_state, grid_y, self._grid_m, *args)
        self._alive &= decisions(self._grid_state, self.alpha_fail, self.alpha_pass) == UNDECIDED
        if self._verdict is None:
            decision = int(decisions(self._state, self.alpha_fail, self.alpha_pass))
            if decision != UNDECIDED:
                self._verdict = Verdict.FAIL if decision == FAIL else Verdict.PASS
                self._decided_at = self.n
        return self._verdict

    def decision_chance(
        self, remaining: int, *, streams: int = FUTILITY_STREAMS, seed: int = 0
    ) -> float:
        """Estimated chance that PASS or FAIL is declared within ``remaining`` more samples.

        1 once declared, 0 with nothing left or nothing seen. Deterministic for a given
        ``seed``, so a summary recomputes exactly what the probe saw (module doc).
        """
        if self._verdict is not None:
            return 1.0
        args = (self.alpha_fail, self.alpha_pass, self.truncation)
        return continuation_chance(
            self._state, np.asarray(self._ys), remaining, self._m, *args,
            streams=streams, seed=seed,
        )  # fmt: skip

    def futile(self, remaining: int) -> tuple[bool, float]:
        """Whether to stop undecided now (module doc), and the chance it rests on."""
        chance = self.decision_chance(remaining)
        eligible = self._verdict is None and self.n >= FUTILITY_MIN_SAMPLES and remaining > 0
        return eligible and chance < FUTILITY_CHANCE, chance

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


__all__ = [
    "BettingState",
    "SequentialTest",
    "Support",
    "check_alpha",
    "continuation_chance",
    "decisions",
    "step",
]
