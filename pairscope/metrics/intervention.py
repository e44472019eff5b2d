"""Intervention rate, its bootstrap CI, and the PASS/WARN/FAIL verdicts (docs/methods.md §3).

A method's intervention rate (IR) is the quantity its authors' code reports: for
NUDGING interventions (rounds) / base-written tokens, for BlendIn uncertain base
positions / base positions (``decoding/types.py`` names both). A task's IR is
``Σ numerator / Σ denominator`` over its samples (a token-weighted ratio, not the
mean of per-sample rates), with a 95 % CI from a bootstrap over samples. A NUDGING
sample may have more rounds than base-written tokens, so a rate above 1 is valid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike

from pairscope.errors import InputError, unknown
from pairscope.metrics.stats import (
    Estimate,
    FloatArray,
    bootstrap_ratio,
    json_float,
    to_vector,
)


class Verdict(str, Enum):
    """Outcome of comparing an interval with a threshold."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Distribution:
    """Summary of the per-sample rates (samples without positions left out)."""

    n: int
    mean: float
    min: float
    p25: float
    median: float
    p75: float
    max: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready form; undefined values become None."""
        return {
            "n": self.n,
            "mean": json_float(self.mean),
            "min": json_float(self.min),
            "p25": json_float(self.p25),
            "median": json_float(self.median),
            "p75": json_float(self.p75),
            "max": json_float(self.max),
        }


def _counts(
    uncertain_counts: ArrayLike, position_counts: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    uncertain = to_vector(uncertain_counts, "uncertain_counts")
    positions = to_vector(position_counts, "position_counts")
    if uncertain.shape != positions.shape:
        raise InputError(
            f"uncertain_counts and position_counts differ in length "
            f"({uncertain.size} vs {positions.size})."
        )
    if np.any(uncertain < 0) or np.any(positions < 0):
        raise InputError("Intervention counts must be >= 0 for every sample.")
    if np.any(uncertain != np.round(uncertain)) or np.any(positions != np.round(positions)):
        raise InputError("Position counts must be whole numbers.")
    return uncertain, positions


def intervention_rate(
    uncertain_counts: ArrayLike,
    position_counts: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Task intervention rate ``Σ uncertain / Σ positions`` with a bootstrap CI over samples.

    Samples with 0 positions are allowed: they are drawn in resampling but add
    nothing to either sum.

    Args:
        uncertain_counts: Per sample, base positions with top-1 probability below τ.
        position_counts: Per sample, base positions.
        n_boot: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Two-sided confidence level.

    Returns:
        The IR and its percentile interval; NaN throughout when no sample has a position.
    """
    uncertain, positions = _counts(uncertain_counts, position_counts)
    return bootstrap_ratio(uncertain, positions, n_boot=n_boot, seed=seed, confidence=confidence)


def per_sample_rates(uncertain_counts: ArrayLike, position_counts: ArrayLike) -> FloatArray:
    """Intervention rate of each sample; NaN where a sample has no positions."""
    uncertain, positions = _counts(uncertain_counts, position_counts)
    rates = np.full(uncertain.shape, np.nan)
    np.divide(uncertain, positions, out=rates, where=positions > 0)
    return rates


def distribution_summary(rates: ArrayLike) -> Distribution:
    """Mean and quantiles (min, p25, median, p75, max) of per-sample rates, ignoring NaN."""
    values = np.asarray(rates, dtype=np.float64)
    if values.ndim != 1:
        raise InputError(f"rates must be one-dimensional; got shape {values.shape}.")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Distribution(0, *([math.nan] * 6))
    q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
    return Distribution(
        n=int(values.size),
        mean=float(values.mean()),
        min=float(q[0]),
        p25=float(q[1]),
        median=float(q[2]),
        p75=float(q[3]),
        max=float(q[4]),
    )


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise InputError unless it lies in [0, 1]."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The threshold must be a number; got {threshold!r}.") from exc
    if not 0.0 <= value <= 1.0:
        raise InputError(
            f"The IR threshold must be in [0, 1]; got {threshold!r}.",
            hint="Use a fraction, e.g. 0.2 for 20 %.",
        )
    return value


def verdict(estimate: Estimate | tuple[float, float], threshold: float) -> Verdict:
    """Compare an IR interval with the threshold θ.

    FAIL if the lower bound is above θ, PASS if the upper bound is below θ,
    otherwise WARN (a bound exactly at θ, or an undefined NaN interval, is WARN).

    Args:
        estimate: An ``Estimate`` or a ``(low, high)`` pair.
        threshold: θ in [0, 1].
    """
    theta = check_threshold(threshold)
    if isinstance(estimate, Estimate):
        low, high = estimate.low, estimate.high
    else:
        low, high = (float(v) for v in estimate)
    if low > theta:
        return Verdict.FAIL
    if high < theta:
        return Verdict.PASS
    return Verdict.WARN


def _any_fail(verdicts: list[Verdict]) -> Verdict:
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.WARN if Verdict.WARN in verdicts else Verdict.PASS


def _all_fail(verdicts: list[Verdict]) -> Verdict:
    if all(v is Verdict.FAIL for v in verdicts):
        return Verdict.FAIL
    return Verdict.PASS if all(v is Verdict.PASS for v in verdicts) else Verdict.WARN


POLICIES: dict[str, Callable[[list[Verdict]], Verdict]] = {
    "any-fail": _any_fail,
    "all-fail": _all_fail,
}


def overall_verdict(
    verdicts: Iterable[Verdict | str], policy: str = "any-fail", strict: bool = False
) -> Verdict:
    """Combine per-task verdicts into the pair's verdict.

    Policies:
        ``any-fail`` (default): any FAIL gives FAIL; otherwise any WARN gives
        WARN; otherwise PASS.
        ``all-fail``: FAIL only when every task fails; PASS only when every
        task passes; otherwise WARN.

    Args:
        verdicts: One verdict per task (``Verdict`` or its string value).
        policy: Name of the policy above.
        strict: Count every WARN as FAIL before applying the policy (for a gate
            that must not let uncertain results through).

    Returns:
        The overall verdict (never WARN when ``strict``).
    """
    if policy not in POLICIES:
        raise unknown("verdict policy", policy, POLICIES)
    try:
        items = [Verdict(v) for v in verdicts]
    except ValueError as exc:
        raise InputError(f"Unknown verdict: {exc}.") from exc
    if not items:
        raise InputError("No task verdicts to combine.")
    if strict:
        items = [Verdict.FAIL if v is Verdict.WARN else v for v in items]
    return POLICIES[policy](items)


def gate_passes(overall: Verdict | str, strict: bool = False) -> bool:
    """Whether a deployment gate passes: PASS always, WARN unless ``strict``, FAIL never."""
    result = Verdict(overall)
    if result is Verdict.WARN:
        return not strict
    return result is Verdict.PASS
