"""Top-label calibration of teacher-forced next-token predictions (docs/methods.md §3).

Inputs are, per reference token, ``confidence`` = the model's maximum
probability and ``correct`` = whether its argmax equals the reference token.

Equal-width binning follows torchmetrics (``binary_calibration_error``, which
on these inputs is the top-label calibration error): boundaries
``0, 1/B, ..., 1``; bin ``i`` holds ``i/B <= c < (i+1)/B``, so a confidence
exactly on a boundary goes to the *upper* bin, and a confidence of exactly
1.0 forms a bin of its own, ``[1, 1]``, after the ``B`` regular ones. ECE is
``Σ_bins (n_bin / N) · |accuracy_bin − confidence_bin|`` (L1 norm), MCE the
largest ``|accuracy_bin − confidence_bin|`` over non-empty bins (max norm).
Computation is in float64 with boundaries ``k / B``; torchmetrics' own
``linspace`` can differ from ``k / B`` by one ulp, which only matters for a
confidence within one ulp of a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.stats import (
    Estimate,
    FloatArray,
    check_bootstrap_args,
    json_float,
    percentile_interval,
    resample_counts,
    to_binary,
    to_vector,
)

# Largest (resamples x tokens) block for the equal-mass bootstrap.
_BLOCK_ELEMENTS = 1_000_000


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram; ``mean_confidence`` and ``accuracy`` are None if empty."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "mean_confidence": json_float(self.mean_confidence),
            "accuracy": json_float(self.accuracy),
        }


@dataclass(frozen=True)
class CalibrationSummary:
    """Calibration of one model on one task, with bootstrap CIs over samples."""

    ece: Estimate
    ece_equal_mass: Estimate
    mce: Estimate
    n_samples: int
    n_tokens: int
    mean_confidence: float
    accuracy: float
    bins: tuple[ReliabilityBin, ...]
    n_bins: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ece": self.ece.to_dict(),
            "ece_equal_mass": self.ece_equal_mass.to_dict(),
            "mce": self.mce.to_dict(),
            "n_samples": self.n_samples,
            "n_tokens": self.n_tokens,
            "mean_confidence": json_float(self.mean_confidence),
            "accuracy": json_float(self.accuracy),
            "n_bins": self.n_bins,
            "bins": [b.to_dict() for b in self.bins],
        }


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InputError(f"n_bins must be a positive integer; got {n_bins!r}.")


def _inputs(
    confidences: ArrayLike, correct: ArrayLike, *, allow_empty: bool = False
) -> tuple[FloatArray, FloatArray]:
    conf = to_vector(confidences, "confidences", allow_empty=allow_empty)
    corr = to_binary(correct, "correct", allow_empty=allow_empty)
    if conf.shape != corr.shape:
        raise InputError(f"confidences and correct differ in length ({conf.size} vs {corr.size}).")
    if np.any((conf < 0.0) | (conf > 1.0)):
        raise InputError("confidences must be probabilities in [0, 1].")
    return conf, corr


def _width_bin_index(conf: FloatArray, n_bins: int) -> NDArray[np.intp]:
    """Bin index in ``0..n_bins``; ``n_bins`` is the bin of confidence exactly 1.0."""
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    return np.searchsorted(edges, conf, side="right") - 1


def _width_sums(
    conf: FloatArray, corr: FloatArray, n_bins: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-bin token count, confidence sum and correct sum (``n_bins + 1`` bins)."""
    index = _width_bin_index(conf, n_bins)
    size = n_bins + 1
    count = np.bincount(index, minlength=size).astype(np.float64)
    sum_conf = np.bincount(index, conf, size).astype(np.float64)
    return count, sum_conf, np.bincount(index, corr, size).astype(np.float64)


def _l1_error(count: FloatArray, sum_conf: FloatArray, sum_corr: FloatArray) -> FloatArray:
    """ECE from per-bin sums along the last axis: ``Σ |Σcorrect − Σconf| / N``."""
    total = count.sum(axis=-1)
    gap = np.abs(sum_corr - sum_conf).sum(axis=-1)
    out = np.full(np.shape(total), np.nan)
    np.divide(gap, total, out=out, where=total > 0)
    return out


def _max_error(count: FloatArray, sum_conf: FloatArray, sum_corr: FloatArray) -> FloatArray:
    """MCE from per-bin sums along the last axis (empty bins ignored)."""
    gap = np.zeros(np.shape(count))
    np.divide(np.abs(sum_corr - sum_conf), count, out=gap, where=count > 0)
    out = gap.max(axis=-1)
    return np.where(count.sum(axis=-1) > 0, out, np.nan)


def _equal_mass_error(
    conf_sorted: FloatArray, corr_sorted: FloatArray, weights: FloatArray, n_bins: int
) -> FloatArray:
    """Equal-mass ECE of weighted samples, one value per row of ``weights``.

    Row ``r`` stands for the multiset where token ``t`` appears ``weights[r, t]``
    times (integers). Tokens must be sorted by confidence. The expanded sorted
    list is split like ``numpy.array_split`` into ``n_bins`` consecutive groups
    (sizes differ by at most one), computed from cumulative sums so that no
    row is ever expanded.
    """
    rows, n_tokens = weights.shape
    cum_w = np.cumsum(weights, axis=1)
    cum_conf = np.cumsum(weights * conf_sorted, axis=1)
    cum_corr = np.cumsum(weights * corr_sorted, axis=1)
    total = cum_w[:, -1]
    quotient, remainder = np.divmod(total[:, None], n_bins)
    steps = np.arange(n_bins + 1, dtype=np.float64)
    edges = steps * quotient + np.minimum(steps, remainder)
    # Offsetting each row keeps the flattened cumulative weights sorted, so one
    # searchsorted finds, per edge, the token holding that expanded position.
    offset = (np.arange(rows, dtype=np.float64) * (total.max() + 1.0))[:, None]
    flat_w = (cum_w + offset).ravel()
    targets = (edges + offset).ravel()
    holder = np.searchsorted(flat_w, targets, side="left")
    excess = flat_w[holder] - targets
    token = holder % n_tokens
    conf_at = (cum_conf.ravel()[holder] - excess * conf_sorted[token]).reshape(edges.shape)
    corr_at = (cum_corr.ravel()[holder] - excess * corr_sorted[token]).reshape(edges.shape)
    gap = np.abs(np.diff(corr_at, axis=1) - np.diff(conf_at, axis=1)).sum(axis=1)
    out = np.full(rows, np.nan)
    np.divide(gap, total, out=out, where=total > 0)
    return out


def _sort_for_mass(conf: FloatArray, corr: FloatArray) -> NDArray[np.intp]:
    # Ties in confidence are ordered by correctness, so the result does not
    # depend on the input order.
    return np.lexsort((corr, conf))


def ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (torchmetrics L1 norm).

    Args:
        confidences: Top-1 probability per prediction, in [0, 1].
        correct: Whether each top-1 prediction was right (bools or 0/1).
        n_bins: Number of equal-width bins on [0, 1].
    """
    _check_n_bins(n_bins)
    conf, corr = _inputs(confidences, correct)
    return float(_l1_error(*_width_sums(conf, corr, n_bins)))


def mce(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """Maximum calibration error over non-empty equal-width bins (torchmetrics max norm)."""
    _check_n_bins(n_bins)
    conf, corr = _inputs(confidences, correct)
    return float(_max_error(*_width_sums(conf, corr, n_bins)))


def ece_equal_mass(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-mass bins.

    Predictions are sorted by confidence (ties: incorrect first) and split into
    ``n_bins`` consecutive groups whose sizes differ by at most one (the first
    ``N mod n_bins`` groups hold one more), as ``numpy.array_split`` does; with
    fewer predictions than bins, the extra bins are empty.
    """
    _check_n_bins(n_bins)
    conf, corr = _inputs(confidences, correct)
    order = _sort_for_mass(conf, corr)
    weights = np.ones((1, conf.size))
    return float(_equal_mass_error(conf[order], corr[order], weights, n_bins)[0])


def reliability_bins(
    confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15
) -> list[ReliabilityBin]:
    """Equal-width bins for a reliability diagram and confidence histogram.

    Returns ``n_bins + 1`` bins: the ``n_bins`` regular ones ``[k/B, (k+1)/B)``
    and last the bin ``[1, 1]`` of confidences exactly 1.0 (torchmetrics keeps
    them apart; in fp32 softmax such tokens are common). With these bins,
    ``ece == Σ count/N · |accuracy − mean_confidence|`` holds exactly.
    Empty inputs are allowed and give empty bins.
    """
    _check_n_bins(n_bins)
    conf, corr = _inputs(confidences, correct, allow_empty=True)
    count, sum_conf, sum_corr = _width_sums(conf, corr, n_bins)
    return _bins_from_sums(count, sum_conf, sum_corr, n_bins)


def _bins_from_sums(
    count: FloatArray, sum_conf: FloatArray, sum_corr: FloatArray, n_bins: int
) -> list[ReliabilityBin]:
    bins = []
    for i in range(n_bins + 1):
        filled = count[i] > 0
        bins.append(
            ReliabilityBin(
                lower=i / n_bins,
                upper=min(i + 1, n_bins) / n_bins,
                count=int(count[i]),
                mean_confidence=float(sum_conf[i] / count[i]) if filled else None,
                accuracy=float(sum_corr[i] / count[i]) if filled else None,
            )
        )
    return bins


def _per_sample_tokens(
    conf_per_sample: Sequence[ArrayLike], correct_per_sample: Sequence[ArrayLike]
) -> tuple[FloatArray, FloatArray, NDArray[np.intp]]:
    """Pooled tokens and each sample's token count, validated like calibration_summary."""
    if len(conf_per_sample) != len(correct_per_sample):
        raise InputError(
            f"Got confidences for {len(conf_per_sample)} samples but correctness "
            f"for {len(correct_per_sample)}."
        )
    if len(conf_per_sample) == 0:
        raise InputError("No samples to measure calibration on.")
    pairs = [
        _inputs(c, k, allow_empty=True)
        for c, k in zip(conf_per_sample, correct_per_sample, strict=True)
    ]
    lengths = np.array([c.size for c, _ in pairs], dtype=np.intp)
    conf = np.concatenate([c for c, _ in pairs])
    corr = np.concatenate([k for _, k in pairs])
    if conf.size == 0:
        raise InputError("No reference tokens in any sample; calibration is undefined.")
    return conf, corr, lengths


def _sample_bin_sums(
    conf: FloatArray, corr: FloatArray, owner: NDArray[np.intp], n_samples: int, n_bins: int
) -> FloatArray:
    """Each sample's equal-width bin counts, confidence sums and correct sums side by side,
    ``[samples, 3 (B + 1)]``: a resample's bin sums are its multiplicities times these."""
    size = n_bins + 1
    cell = owner * size + _width_bin_index(conf, n_bins)
    return np.concatenate(
        [
            np.bincount(cell, minlength=n_samples * size).reshape(n_samples, size),
            np.bincount(cell, conf, n_samples * size).reshape(n_samples, size),
            np.bincount(cell, corr, n_samples * size).reshape(n_samples, size),
        ],
        axis=1,
    ).astype(np.float64)


def _resampled_errors(
    counts: FloatArray,
    per_sample: FloatArray,
    by_mass: tuple[FloatArray, FloatArray, NDArray[np.intp]],
    n_bins: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ECE, MCE and equal-mass ECE of a block of resamples (each row of ``counts`` a
    resample's multiplicity of every sample). ``by_mass`` holds the pooled confidences,
    outcomes and owning samples in equal-mass order; its weights are formed in blocks
    of at most ``_BLOCK_ELEMENTS``."""
    size = n_bins + 1
    sums = counts @ per_sample
    parts = (sums[:, :size], sums[:, size : 2 * size], sums[:, 2 * size :])
    conf_sorted, corr_sorted, owner_sorted = by_mass
    mass = np.empty(counts.shape[0])
    step = max(1, _BLOCK_ELEMENTS // conf_sorted.size)
    for start in range(0, counts.shape[0], step):
        weights = counts[start : start + step][:, owner_sorted]
        mass[start : start + weights.shape[0]] = _equal_mass_error(
            conf_sorted, corr_sorted, weights, n_bins
        )
    return _l1_error(*parts), _max_error(*parts), mass


def calibration_summary(
    conf_per_sample: Sequence[ArrayLike],
    correct_per_sample: Sequence[ArrayLike],
    n_bins: int = 15,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> CalibrationSummary:
    """ECE, equal-mass ECE and MCE with percentile bootstrap CIs over samples.

    Teacher-forced tokens within one sample are not independent, so each
    resample draws whole samples with replacement and pools their tokens; the
    three metrics share the same resamples. Samples with no tokens are
    allowed (they are drawn but add nothing); resamples with no tokens at all
    are dropped from the interval.

    Binned calibration errors are biased upwards in finite samples, and
    resampling (which duplicates samples) adds to that bias, so for a nearly
    calibrated model the percentile interval can lie above the point estimate.

    Args:
        conf_per_sample: Per sample, the top-1 probability at each reference token.
        correct_per_sample: Per sample, whether each top-1 was the reference token.
        n_bins: Number of bins for all three metrics.
        n_boot: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Two-sided confidence level.
    """
    _check_n_bins(n_bins)
    check_bootstrap_args(n_boot, confidence)
    conf, corr, lengths = _per_sample_tokens(conf_per_sample, correct_per_sample)
    n_samples = len(lengths)
    owner = np.repeat(np.arange(n_samples), lengths)

    count, sum_conf, sum_corr = _width_sums(conf, corr, n_bins)
    order = _sort_for_mass(conf, corr)
    by_mass = (conf[order], corr[order], owner[order])
    point_mass = _equal_mass_error(by_mass[0], by_mass[1], np.ones((1, conf.size)), n_bins)
    per_sample = _sample_bin_sums(conf, corr, owner, n_samples, n_bins)
    boot_ece, boot_mce, boot_mass = _bootstrap_errors(seed, n_boot, per_sample, by_mass, n_bins)

    def estimate(point: float, replicates: FloatArray) -> Estimate:
        return Estimate(point, *percentile_interval(replicates, confidence))

    return CalibrationSummary(
        ece=estimate(float(_l1_error(count, sum_conf, sum_corr)), boot_ece),
        ece_equal_mass=estimate(float(point_mass[0]), boot_mass),
        mce=estimate(float(_max_error(count, sum_conf, sum_corr)), boot_mce),
        n_samples=n_samples,
        n_tokens=int(conf.size),
        mean_confidence=float(conf.mean()),
        accuracy=float(corr.mean()),
        bins=tuple(_bins_from_sums(count, sum_conf, sum_corr, n_bins)),
        n_bins=n_bins,
    )


def _bootstrap_errors(
    seed: int,
    n_boot: int,
    per_sample: FloatArray,
    by_mass: tuple[FloatArray, FloatArray, NDArray[np.intp]],
    n_bins: int,
) -> FloatArray:
    """ECE, MCE and equal-mass ECE ``[3, n_boot]`` of ``n_boot`` resamples of whole
    samples (``per_sample``: their bin sums; ``by_mass``: their tokens sorted for the
    equal-mass bins), drawn by ``numpy.random.default_rng(seed)``."""
    n_samples = per_sample.shape[0]
    boot = np.empty((3, n_boot))
    done = 0
    for counts in resample_counts(np.random.default_rng(seed), n_samples, n_boot):
        boot[:, done : done + counts.shape[0]] = _resampled_errors(
            counts, per_sample, by_mass, n_bins
        )
        done += counts.shape[0]
    return boot


# -- reliability diagrams with bootstrap bands ---------------------------------------------


@dataclass(frozen=True)
class ReliabilityBand:
    """A reliability bin with a bootstrap interval (over samples) for its accuracy."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a :class:`ReliabilityBin` plus ``accuracy_low/high``)."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "mean_confidence": json_float(self.mean_confidence),
            "accuracy": json_float(self.accuracy),
            "accuracy_low": json_float(self.accuracy_low),
            "accuracy_high": json_float(self.accuracy_high),
        }


def reliability_bands(
    conf_per_sample: Sequence[ArrayLike],
    correct_per_sample: Sequence[ArrayLike],
    n_bins: int = 15,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[ReliabilityBand]:
    """:func:`reliability_bins` with a percentile bootstrap interval for each bin's accuracy.

    Each resample draws whole samples with replacement (tokens of one response
    are not independent) and recomputes every bin's accuracy; resamples that
    leave a bin empty are dropped for that bin. A band is the range the bin's
    accuracy takes over resamples of the same size, so a bin with few tokens, or
    tokens from few samples, gets a wide band. Same bins as
    :func:`reliability_bins` (``n_bins + 1``, the last ``[1, 1]``).
    """
    _check_n_bins(n_bins)
    check_bootstrap_args(n_boot, confidence)
    conf, corr, lengths = _per_sample_tokens(conf_per_sample, correct_per_sample)
    n_samples, size = lengths.size, n_bins + 1
    owner = np.repeat(np.arange(n_samples), lengths)
    cell = owner * size + _width_bin_index(conf, n_bins)
    per_count = np.bincount(cell, minlength=n_samples * size).reshape(n_samples, size)
    per_correct = np.bincount(cell, corr, n_samples * size).reshape(n_samples, size)
    boot = np.empty((n_boot, size))
    rng = np.random.default_rng(seed)
    done = 0
    for counts in resample_counts(rng, n_samples, n_boot):
        count = counts @ per_count.astype(np.float64)
        hits = counts @ per_correct
        block = np.full(count.shape, np.nan)
        np.divide(hits, count, out=block, where=count > 0)
        boot[done : done + counts.shape[0]] = block
        done += counts.shape[0]
    bands = []
    for i, b in enumerate(reliability_bins(conf, corr, n_bins)):
        low, high = percentile_interval(boot[:, i], confidence) if b.count else (math.nan, math.nan)
        bands.append(
            ReliabilityBand(
                lower=b.lower,
                upper=b.upper,
                count=b.count,
                mean_confidence=b.mean_confidence,
                accuracy=b.accuracy,
                accuracy_low=json_float(low),
                accuracy_high=json_float(high),
            )
        )
    return bands
