"""Smooth ECE (Błasiok & Nakkiran 2023) of teacher-forced next-token predictions, with a
bootstrap over samples that shares its resamples with
:func:`pairscope.metrics.calibration.calibration_summary`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairscope.errors import InputError
from pairscope.metrics.calibration import _BLOCK_ELEMENTS, _inputs, _per_sample_tokens
from pairscope.metrics.stats import (
    Estimate,
    FloatArray,
    check_bootstrap_args,
    json_float,
    percentile_interval,
    resample_counts,
)

# smECE_σ = ∫_0^1 |(1/N) Σ_i K_σ(t, c_i) (correct_i − c_i)| dt, with K_σ the Gaussian
# kernel of width σ reflected at 0 and 1, and smECE = smECE_σ* at the fixed point
# σ* = smECE_σ* (unique: smECE_σ does not increase with σ). The reflected kernel is the
# Neumann heat kernel on [0, 1],
#     K_σ(t, c) = 1 + 2 Σ_{j>=1} exp(−π² j² σ² / 2) cos(π j t) cos(π j c),
# so the smoothed residual is a cosine series whose coefficients are sums over tokens,
# and a resample's coefficients are its multiplicities times per-sample sums.
# Confidences are first spread onto GRID midpoints (linear binning, which keeps each
# token's mass and mean position), so the coefficients are one DCT-II per sample. The
# series is cut where exp(−π² j² σ² / 2) < 1e-10 and |·| is integrated with the
# midpoint rule on 8 points per term (a DCT-III).

SMOOTH_SIGMA_FLOOR = 1e-3  # the bandwidth search stops here, as relplot's does
_SMOOTH_GRID = 8192
_DECAY_CUT = math.sqrt(2.0 * math.log(1e10)) / math.pi  # j·σ beyond which terms vanish


def _terms(sigma: float) -> int:
    return min(int(math.ceil(_DECAY_CUT / sigma)) + 1, _SMOOTH_GRID)


def _cosine_coefficients(
    conf: FloatArray, resid: FloatArray, owner: NDArray[np.intp], rows: int, n_terms: int
) -> FloatArray:
    """``Σ_{i of row r} resid_i · cos(π j conf_i)`` for each row and ``j < n_terms``.

    ``owner`` (the row of each token) must be sorted; rows go through in blocks so
    that memory stays bounded.
    """
    from scipy.fft import dct

    grid = _SMOOTH_GRID
    where = np.clip(conf * grid - 0.5, 0.0, grid - 1.0)
    left = np.minimum(where.astype(np.intp), grid - 2)
    frac = where - left
    out = np.empty((rows, n_terms))
    block = max(1, _BLOCK_ELEMENTS // grid)
    for first in range(0, rows, block):
        count = min(block, rows - first)
        lo, hi = np.searchsorted(owner, [first, first + count])
        cell = (owner[lo:hi] - first) * grid + left[lo:hi]
        binned = np.bincount(cell, resid[lo:hi] * (1.0 - frac[lo:hi]), count * grid)
        binned += np.bincount(cell + 1, resid[lo:hi] * frac[lo:hi], count * grid)
        # scipy's DCT-II is 2 Σ_k x_k cos(π j (k + 1/2) / grid).
        coef = dct(binned.reshape(count, grid), type=2, axis=-1)
        out[first : first + count] = coef[:, :n_terms] / 2.0
    return out


def _smooth_at(coef: FloatArray, sigma: FloatArray) -> FloatArray:
    """smECE_σ per row of ``coef`` (cosine coefficients of the residual, already / N)."""
    from scipy.fft import dct

    n_terms = min(coef.shape[-1], _terms(float(np.min(sigma))))
    j = np.arange(n_terms)
    weights = np.exp(-0.5 * (np.pi * j[None, :] * np.asarray(sigma)[..., None]) ** 2)
    # DCT-III: x_0 + 2 Σ_{j>=1} x_j cos(π j (m + 1/2) / M) at M midpoints of [0, 1].
    values = dct(coef[..., :n_terms] * weights, type=3, n=8 * n_terms, axis=-1)
    return np.abs(values).mean(axis=-1)


def _fixed_point(coef: FloatArray, floor: float = SMOOTH_SIGMA_FLOOR) -> FloatArray:
    """σ* with smECE_σ* = σ* for each row, by bisection on [floor, 1]."""
    low = np.full(coef.shape[0], floor)
    high = np.ones(coef.shape[0])
    at_floor = _smooth_at(coef, low) <= low  # the fixed point lies below the floor
    while np.any(high - low > 1e-9):
        mid = 0.5 * (low + high)
        below = _smooth_at(coef, mid) > mid  # σ below the fixed point
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return np.where(at_floor, floor, 0.5 * (low + high))


def _pooled_coefficients(conf: FloatArray, corr: FloatArray, n_terms: int) -> FloatArray:
    owner = np.zeros(conf.size, dtype=np.intp)
    return _cosine_coefficients(conf, corr - conf, owner, 1, n_terms) / conf.size


def smooth_ece(confidences: ArrayLike, correct: ArrayLike, sigma: float | None = None) -> float:
    """Smooth ECE (Błasiok & Nakkiran 2023, "Smooth ECE: principled reliability diagrams
    via kernel smoothing"), the quantity relplot's ``smECE`` computes.

    Unlike binned ECE it does not depend on bin edges, and it is a consistent
    calibration measure: small exactly when the confidences are close to perfectly
    calibrated ones (Błasiok, Gopalan, Hu & Nakkiran 2023).

    Args:
        confidences: Top-1 probability per prediction, in [0, 1].
        correct: Whether each top-1 prediction was right (bools or 0/1).
        sigma: Kernel width; None for the self-consistent width σ* (smECE_σ* = σ*).
    """
    conf, corr = _inputs(confidences, correct)
    if sigma is not None and not 0.0 < sigma <= 1.0:
        raise InputError(f"sigma must be in (0, 1]; got {sigma!r}.")
    floor = SMOOTH_SIGMA_FLOOR if sigma is None else min(sigma, SMOOTH_SIGMA_FLOOR)
    coef = _pooled_coefficients(conf, corr, _terms(floor))
    width = _fixed_point(coef) if sigma is None else np.array([sigma])
    return float(_smooth_at(coef, width)[0])


def smooth_ece_bandwidth(confidences: ArrayLike, correct: ArrayLike) -> float:
    """The self-consistent kernel width σ* of :func:`smooth_ece` (equal to smECE itself)."""
    conf, corr = _inputs(confidences, correct)
    return float(_fixed_point(_pooled_coefficients(conf, corr, _terms(SMOOTH_SIGMA_FLOOR)))[0])


@dataclass(frozen=True)
class SmoothCalibration:
    """Smooth ECE of one model on one task, with a bootstrap CI over samples."""

    smooth_ece: Estimate
    sigma: float
    n_samples: int
    n_tokens: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "smooth_ece": self.smooth_ece.to_dict(),
            "sigma": json_float(self.sigma),
            "n_samples": self.n_samples,
            "n_tokens": self.n_tokens,
        }


def smooth_calibration_summary(
    conf_per_sample: Sequence[ArrayLike],
    correct_per_sample: Sequence[ArrayLike],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> SmoothCalibration:
    """Smooth ECE with a percentile bootstrap CI that resamples whole samples.

    With the same ``n_boot`` and ``seed`` the resamples are those of
    :func:`calibration_summary`, so the two intervals are directly comparable.
    Each resample gets its own self-consistent kernel width. Resamples without
    tokens are dropped from the interval.
    """
    check_bootstrap_args(n_boot, confidence)
    conf, corr, lengths = _per_sample_tokens(conf_per_sample, correct_per_sample)
    sigma = smooth_ece_bandwidth(conf, corr)
    # Resamples need terms down to their own widths; a quarter of the point's is ample.
    floor = max(SMOOTH_SIGMA_FLOOR, sigma / 4)
    n_terms = _terms(floor)
    owner = np.repeat(np.arange(lengths.size), lengths)
    per_sample = _cosine_coefficients(conf, corr - conf, owner, lengths.size, n_terms)
    point = float(_smooth_at(per_sample.sum(axis=0)[None, :] / conf.size, np.array([sigma]))[0])
    boot = np.empty(n_boot)
    rng = np.random.default_rng(seed)
    done = 0
    for counts in resample_counts(rng, lengths.size, n_boot):
        tokens = counts @ lengths.astype(np.float64)
        coef = np.full((counts.shape[0], n_terms), np.nan)
        has = tokens > 0
        coef[has] = (counts[has] @ per_sample) / tokens[has, None]
        values = np.full(counts.shape[0], np.nan)
        if np.any(has):
            values[has] = _smooth_at(coef[has], _fixed_point(coef[has], floor))
        boot[done : done + counts.shape[0]] = values
        done += counts.shape[0]
    return SmoothCalibration(
        smooth_ece=Estimate(point, *percentile_interval(boot, confidence)),
        sigma=sigma,
        n_samples=int(lengths.size),
        n_tokens=int(conf.size),
    )
