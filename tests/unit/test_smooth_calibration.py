"""Smooth ECE against relplot and against its definition; bootstrap bands of reliability bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairscope.errors import InputError
from pairscope.metrics.calibration import (
    calibration_summary,
    reliability_bands,
    reliability_bins,
)
from pairscope.metrics.smooth_calibration import (
    smooth_calibration_summary,
    smooth_ece,
    smooth_ece_bandwidth,
)
from pairscope.report.plots import _band_cells, reliability_band_png

PNG = b"\x89PNG\r\n\x1a\n"


def random_predictions(n: int, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Confidences strictly inside (0, 1) and outcomes drawn from a miscalibrated truth."""
    rng = np.random.default_rng(seed)
    conf = np.clip(rng.beta(5, 2, n), 1e-6, 1 - 1e-6)
    truth = {"calibrated": conf, "over": conf**2, "under": np.sqrt(conf)}[kind]
    return conf, (rng.random(n) < truth).astype(float)


CASES = [
    (n, kind, seed)
    for seed, (n, kind) in enumerate(
        [
            (50, "over"),
            (200, "calibrated"),
            (2000, "over"),
            (20000, "under"),
            (100000, "calibrated"),
        ]
    )
]


@pytest.mark.parametrize(("n", "kind", "seed"), CASES)
def test_smooth_ece_matches_relplot(n, kind, seed):
    relplot = pytest.importorskip("relplot")
    conf, correct = random_predictions(n, kind, seed)
    # relplot's bandwidth search stops within 1/1024 of the fixed point; ours within 1e-9.
    assert smooth_ece(conf, correct) == pytest.approx(relplot.smECE(conf, correct), abs=1.5e-3)
    for sigma in (0.02, 0.1):
        ours = smooth_ece(conf, correct, sigma=sigma)
        assert ours == pytest.approx(relplot.smECE_sigma(conf, correct, sigma), abs=5e-4)


def definition(conf: np.ndarray, correct: np.ndarray, sigma: float) -> float:
    """smECE_σ straight from the paper: the Gaussian kernel reflected at 0 and 1 (its
    images at 2k ± c), applied to the residuals on a fine mesh, |·| integrated."""
    t = np.linspace(0.0, 1.0, 8001)[:, None]
    kernel = np.zeros((t.size, conf.size))
    for k in range(-2, 3):
        for image in (2 * k + conf, 2 * k - conf):
            kernel += np.exp(-0.5 * ((t - image[None, :]) / sigma) ** 2)
    kernel /= sigma * math.sqrt(2.0 * math.pi)
    return float(np.trapezoid(np.abs(kernel @ (correct - conf)) / conf.size, t[:, 0]))


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.3])
def test_smooth_ece_matches_its_definition_including_confidences_of_one(sigma):
    """relplot counts a token at exactly 0 or 1 with about half its weight (its kernel
    reflection keeps the boundary point once); fp32 softmax gives many such tokens, and
    here they count in full, as the definition says."""
    conf, correct = random_predictions(300, "over", 7)
    conf[:60] = 1.0
    correct[:40] = 0.0
    assert smooth_ece(conf, correct, sigma=sigma) == pytest.approx(
        definition(conf, correct, sigma), abs=2e-5
    )


def test_the_bandwidth_is_the_fixed_point():
    conf, correct = random_predictions(3000, "over", 3)
    sigma = smooth_ece_bandwidth(conf, correct)
    assert smooth_ece(conf, correct) == pytest.approx(sigma, abs=1e-7)
    assert smooth_ece(conf, correct, sigma=sigma) == pytest.approx(sigma, abs=1e-7)


def test_extremes():
    assert smooth_ece(np.ones(50), np.zeros(50)) == pytest.approx(1.0, abs=1e-6)
    conf, correct = random_predictions(100000, "calibrated", 4)
    assert smooth_ece(conf, correct) < 0.01
    with pytest.raises(InputError):
        smooth_ece([0.5, 1.5], [1, 0])
    with pytest.raises(InputError):
        smooth_ece([0.5], [1], sigma=0.0)


def per_sample_data(n_samples: int, seed: int, spread: float = 0.15):
    """Samples whose tokens share an accuracy offset: strongly correlated within a sample."""
    rng = np.random.default_rng(seed)
    conf, correct = [], []
    for _ in range(n_samples):
        c = np.clip(rng.beta(4, 2, int(rng.integers(20, 200))), 0.0, 1.0)
        c[: int(rng.integers(0, 8))] = 1.0
        p = np.clip(c**1.4 + rng.normal(0.0, spread), 0.0, 1.0)
        conf.append(c)
        correct.append((rng.random(c.size) < p).astype(float))
    return conf, correct


def test_smooth_ece_bootstrap_over_samples():
    conf, correct = per_sample_data(100, 1)
    result = smooth_calibration_summary(conf, correct, n_boot=300, seed=0)
    pooled_conf, pooled_correct = np.concatenate(conf), np.concatenate(correct)
    est = result.smooth_ece
    assert est.point == pytest.approx(smooth_ece(pooled_conf, pooled_correct), abs=1e-7)
    assert est.low < est.point < est.high
    assert result.sigma == pytest.approx(est.point, abs=1e-7)
    assert result.n_samples == 100 and result.n_tokens == pooled_conf.size
    again = smooth_calibration_summary(conf, correct, n_boot=300, seed=0)
    assert again == result
    # Sample-level resampling: as wide as the binned ECE's interval from the same resamples.
    binned = calibration_summary(conf, correct, n_boot=300, seed=0).ece
    assert (est.high - est.low) > 0.5 * (binned.high - binned.low)
    record = result.to_dict()
    assert set(record) == {"smooth_ece", "sigma", "n_samples", "n_tokens"}
    with_empty = smooth_calibration_summary([*conf, []], [*correct, []], n_boot=50)
    assert with_empty.n_samples == 101


def resample_accuracies(conf, correct, n_bins, rng, n_resamples):
    """Bin accuracies of fresh whole-sample resamples (NaN where a bin is empty)."""
    out = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(conf), len(conf))
        c = np.concatenate([conf[i] for i in pick])
        k = np.concatenate([correct[i] for i in pick])
        out.append(
            [np.nan if b.accuracy is None else b.accuracy for b in reliability_bins(c, k, n_bins)]
        )
    return np.array(out)


def test_bands_cover_the_bin_accuracy_of_a_resample():
    conf, correct = per_sample_data(80, 2, spread=0.25)
    bands = reliability_bands(conf, correct, n_bins=15, n_boot=1000, seed=0)
    assert [b.count for b in bands] == [
        b.count for b in reliability_bins(np.concatenate(conf), np.concatenate(correct))
    ]
    fresh = resample_accuracies(conf, correct, 15, np.random.default_rng(1), 400)
    pooled_conf, pooled_correct = np.concatenate(conf), np.concatenate(correct)
    token_rng = np.random.default_rng(2)
    sample_cover, token_cover = [], []
    for i, band in enumerate(bands):
        if band.count < 300:
            continue
        seen = fresh[:, i][np.isfinite(fresh[:, i])]
        sample_cover.append(np.mean((band.accuracy_low <= seen) & (seen <= band.accuracy_high)))
        # A band from resampling tokens, ignoring which sample they came from, is too
        # narrow: tokens of one response share its accuracy.
        inside = (pooled_conf >= band.lower) & (
            (pooled_conf < band.upper) | (band.lower == band.upper)
        )
        hits = pooled_correct[inside]
        token_acc = token_rng.binomial(hits.size, hits.mean(), 1000) / hits.size
        t_low, t_high = np.quantile(token_acc, [0.025, 0.975])
        token_cover.append(np.mean((t_low <= seen) & (seen <= t_high)))
    print(f"\nbands cover a resample's bin accuracy: {np.round(sample_cover, 3).tolist()}")
    print(f"token-level bands would cover: {np.round(token_cover, 3).tolist()}")
    assert len(sample_cover) >= 6
    assert min(sample_cover) >= 0.90
    assert np.mean(token_cover) < 0.80


def test_band_cells_and_the_banded_diagram():
    conf, correct = per_sample_data(40, 3)
    bands = [b.to_dict() for b in reliability_bands(conf, correct, n_boot=200)]
    cells = _band_cells(bands)
    filled = [b for b in bands if b["count"]]
    assert len(cells) == len(filled)
    assert cells[-1]["lower"] == cells[-1]["upper"] == 1.0  # the [1, 1] bin stays apart
    for cell in cells:
        assert cell["low"] <= cell["accuracy"] <= cell["high"]
    assert _band_cells([{"lower": 0.0, "upper": 0.1, "count": 0}]) == []
    cal = {"bins": bands, "ece": {"point": 0.1, "low": 0.08, "high": 0.12}}
    png = reliability_band_png({"base": cal, "guide": cal}, "gsm8k: base vs guide")
    assert png.startswith(PNG)
    assert reliability_band_png({"base": {"bins": []}}, "none").startswith(PNG)
