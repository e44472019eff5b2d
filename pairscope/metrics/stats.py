"""Intervals and tests: Wilson, percentile bootstraps over samples, exact McNemar.

Every bootstrap here resamples *samples* (rows) with replacement, never the
tokens inside them: tokens of one response are not independent, so a
token-level bootstrap would give intervals that are too narrow (docs/methods.md §3).
All functions are pure and deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError

FloatArray = NDArray[np.float64]

# Largest resample block (rows x samples) held in memory at once.
_BLOCK_ELEMENTS = 1_000_000


def json_float(value: Any) -> float | None:
    """Return ``value`` as a plain float for JSON, or None when it is NaN or infinite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def to_vector(values: ArrayLike, name: str, *, allow_empty: bool = False) -> FloatArray:
    """Return ``values`` as a finite 1-D float64 array, or raise InputError."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numbers; got {type(values).__name__}.") from exc
    if array.ndim != 1:
        raise InputError(f"{name} must be one-dimensional; got shape {array.shape}.")
    if not allow_empty and array.size == 0:
        raise InputError(f"{name} is empty; at least one value is needed.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values.")
    return array


def to_binary(values: ArrayLike, name: str, *, allow_empty: bool = False) -> FloatArray:
    """Return 0/1 (or bool) ``values`` as a float64 array of 0.0 and 1.0, or raise InputError."""
    array = to_vector(values, name, allow_empty=allow_empty)
    if not np.all((array == 0.0) | (array == 1.0)):
        raise InputError(f"{name} must hold only booleans or 0/1 values.")
    return array


def check_bootstrap_args(n_boot: int, confidence: float) -> None:
    """Raise InputError unless ``n_boot >= 1`` and ``0 < confidence < 1``."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"n_boot must be a positive integer; got {n_boot!r}.")
    check_confidence(confidence)


def check_confidence(confidence: float) -> None:
    """Raise InputError unless ``0 < confidence < 1``."""
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be between 0 and 1 (exclusive); got {confidence!r}.")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with the bounds of its confidence interval (NaN when undefined)."""

    point: float
    low: float
    high: float

    def __post_init__(self) -> None:
        for field in ("point", "low", "high"):
            object.__setattr__(self, field, float(getattr(self, field)))

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready form; NaN becomes None."""
        return {
            "point": json_float(self.point),
            "low": json_float(self.low),
            "high": json_float(self.high),
        }


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on paired binary outcomes.

    Attributes:
        b01: Pairs where ``a`` is 0 and ``b`` is 1.
        b10: Pairs where ``a`` is 1 and ``b`` is 0.
        p_value: Two-sided exact binomial p-value; 1.0 without discordant pairs.
    """

    b01: int
    b10: int
    p_value: float

    @property
    def n_discordant(self) -> int:
        """Number of pairs on which ``a`` and ``b`` disagree."""
        return self.b01 + self.b10

    def to_dict(self) -> dict[str, int | float | None]:
        """JSON-ready form."""
        return {
            "b01": self.b01,
            "b10": self.b10,
            "n_discordant": self.n_discordant,
            "p_value": json_float(self.p_value),
        }


def _z(quantile: float) -> float:
    return NormalDist().inv_cdf(quantile)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: Number of successes, ``0 <= successes <= n``.
        n: Number of trials; ``n = 0`` gives the uninformative ``(0.0, 1.0)``.
        confidence: Two-sided confidence level.

    Returns:
        ``(low, high)``, clipped to ``[0, 1]``; exactly 0 at 0 successes and 1 at ``n``.
    """
    check_confidence(confidence)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise InputError(f"Need 0 <= successes <= n; got successes={successes}, n={n}.")
    if n == 0:
        return (0.0, 1.0)
    z = _z(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


def proportion(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Proportion ``successes / n`` with its Wilson interval (point NaN when ``n = 0``)."""
    low, high = wilson(successes, n, confidence)
    return Estimate(successes / n if n else math.nan, low, high)


def resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[FloatArray]:
    """Yield blocks of bootstrap multiplicities, shape ``(rows, n)``, ``n_boot`` rows in all.

    Row ``r`` says how often each of the ``n`` samples was drawn in resample ``r``
    (each row sums to ``n``). Blocks keep memory bounded; the draws depend only
    on ``rng``, ``n`` and ``n_boot``.
    """
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, rows):
        block = min(rows, n_boot - start)
        draws = rng.integers(0, n, size=(block, n))
        flat = (draws + np.arange(block)[:, None] * n).ravel()
        yield np.bincount(flat, minlength=block * n).reshape(block, n).astype(np.float64)


def resampled_sums(columns: FloatArray, n_boot: int, seed: int) -> FloatArray:
    """Column sums of ``columns`` (samples x m) over ``n_boot`` resamples of its rows.

    Returns:
        Array of shape ``(n_boot, m)``.
    """
    rng = np.random.default_rng(seed)
    n = columns.shape[0]
    out = np.empty((n_boot, columns.shape[1]), dtype=np.float64)
    start = 0
    for counts in resample_counts(rng, n, n_boot):
        out[start : start + counts.shape[0]] = counts @ columns
        start += counts.shape[0]
    return out


def percentile_interval(replicates: FloatArray, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring undefined (NaN) ones."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))


def _safe_ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def bootstrap_ratio(
    numerators: ArrayLike,
    denominators: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """Ratio of sums ``Σ num / Σ den`` with a percentile bootstrap over samples.

    Each resample draws whole samples (rows) with replacement and recomputes the
    ratio of sums, so a sample with many tokens weighs more, exactly as in the
    point estimate. Resamples whose denominators sum to 0 are dropped.

    Args:
        numerators: Per-sample numerators (e.g. uncertain positions).
        denominators: Per-sample denominators (e.g. base positions); zeros allowed.
        n_boot: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Two-sided confidence level.

    Returns:
        The ratio and its interval; all NaN when every denominator is 0.
    """
    check_bootstrap_args(n_boot, confidence)
    num = to_vector(numerators, "numerators")
    den = to_vector(denominators, "denominators")
    if num.shape != den.shape:
        raise InputError(
            f"numerators and denominators differ in length ({num.size} vs {den.size})."
        )
    total = den.sum()
    point = num.sum() / total if total != 0 else math.nan
    sums = resampled_sums(np.column_stack([num, den]), n_boot, seed)
    low, high = percentile_interval(_safe_ratio(sums[:, 0], sums[:, 1]), confidence)
    return Estimate(point, low, high)


def bootstrap_mean(
    values: ArrayLike, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Mean of per-sample ``values`` with a percentile bootstrap over samples."""
    check_bootstrap_args(n_boot, confidence)
    array = to_vector(values, "values")
    sums = resampled_sums(array[:, None], n_boot, seed)[:, 0]
    low, high = percentile_interval(sums / array.size, confidence)
    return Estimate(float(array.mean()), low, high)


def paired_bootstrap_diff(
    a: ArrayLike, b: ArrayLike, n_boot: int = 10000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Difference ``mean(a) - mean(b)`` of paired per-sample outcomes, with a bootstrap CI.

    Sample indices are resampled jointly, so each resample keeps the pairing
    (the CI accounts for the correlation between the two methods).

    Args:
        a: Outcomes of method A per sample (bools or floats).
        b: Outcomes of method B on the same samples, in the same order.
        n_boot: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Two-sided confidence level.
    """
    left = to_vector(a, "a")
    right = to_vector(b, "b")
    if left.shape != right.shape:
        raise InputError(f"a and b must be paired; got lengths {left.size} and {right.size}.")
    return bootstrap_mean(left - right, n_boot=n_boot, seed=seed, confidence=confidence)


def mcnemar_exact(a: ArrayLike, b: ArrayLike) -> McNemar:
    """Exact (binomial) McNemar test for paired binary outcomes.

    ``p = min(1, 2 * BinomCDF(min(b01, b10); b01 + b10, 0.5))``, and 1.0 when
    there are no discordant pairs.

    Args:
        a: Per-sample outcomes of method A (bools or 0/1).
        b: Per-sample outcomes of method B on the same samples.
    """
    from scipy.stats import binom

    left = to_binary(a, "a", allow_empty=True)
    right = to_binary(b, "b", allow_empty=True)
    if left.shape != right.shape:
        raise InputError(f"a and b must be paired; got lengths {left.size} and {right.size}.")
    b01 = int(np.sum((left == 0.0) & (right == 1.0)))
    b10 = int(np.sum((left == 1.0) & (right == 0.0)))
    n = b01 + b10
    if n == 0:
        return McNemar(b01, b10, 1.0)
    p_value = min(1.0, 2.0 * float(binom.cdf(min(b01, b10), n, 0.5)))
    return McNemar(b01, b10, p_value)


def min_detectable_difference(
    n: int,
    p_a: float,
    p_b: float | None = None,
    discordance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest paired difference in accuracy detectable with ``n`` samples.

    Normal approximation for paired binary outcomes: with discordant
    proportion ``ψ = P(a != b)``, a two-sided test at level ``alpha`` detects
    ``δ = (z_{1-alpha/2} + z_{power}) * sqrt(ψ / n)``. This is Connor's (1987)
    sample-size formula solved for δ after dropping its ``-δ²`` term, so it
    slightly overstates δ (errs on the safe side).

    When ``discordance`` is unknown, ψ is taken as if the two outcomes were
    independent, ``ψ = p_a(1 - p_b) + p_b(1 - p_a)`` (``p_b`` defaults to ``p_a``,
    giving ``2 p(1 - p)``). Methods run on the same samples are usually
    positively correlated, so the true ψ, and the true δ, tend to be smaller.

    Args:
        n: Number of paired samples.
        p_a: Accuracy of method A (planning value).
        p_b: Accuracy of method B; defaults to ``p_a``.
        discordance: Known discordant proportion ψ, if measured.
        alpha: Two-sided significance level.
        power: Desired power.

    Returns:
        The minimum detectable difference in proportion units (may exceed 1 for tiny n).
    """
    if n < 1:
        raise InputError(f"n must be at least 1; got {n}.")
    for name, value in (("p_a", p_a), ("p_b", p_b), ("discordance", discordance)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InputError(f"{name} must be in [0, 1]; got {value!r}.")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise InputError(f"alpha and power must be in (0, 1); got {alpha!r}, {power!r}.")
    if discordance is None:
        other = p_a if p_b is None else p_b
        discordance = p_a * (1.0 - other) + other * (1.0 - p_a)
    z_sum = _z(1.0 - alpha / 2.0) + _z(power)
    return z_sum * math.sqrt(discordance / n)


def pearson(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Pearson correlation and two-sided p-value over pairs where both values are finite.

    Returns:
        ``(r, p)``; ``(nan, nan)`` with fewer than 3 pairs or a constant input.
    """
    from scipy.stats import pearsonr

    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ys.shape:
        raise InputError(f"x and y must be 1-D and the same length; got {xs.shape}, {ys.shape}.")
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if xs.size < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return (math.nan, math.nan)
    result = pearsonr(xs, ys)
    return (float(result.statistic), float(result.pvalue))


def pearson_interval(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Fisher's z interval for a Pearson correlation ``r`` over ``n`` pairs.

    ``atanh(r) ± z / sqrt(n − 3)`` mapped back with ``tanh``: approximate for bivariate
    normal data, and the usual way to show how little a handful of points pins r down.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when ``r`` is NaN or ``n < 4``; ``(r, r)`` when
        ``|r| = 1``.
    """
    if not 0 < level < 1:
        raise InputError(f"level must lie strictly between 0 and 1; got {level}.")
    if not math.isfinite(r) or n < 4:
        return (math.nan, math.nan)
    if abs(r) >= 1.0:
        return (float(r), float(r))
    half = NormalDist().inv_cdf(0.5 + level / 2) / math.sqrt(n - 3)
    centre = math.atanh(r)
    return (math.tanh(centre - half), math.tanh(centre + half))
