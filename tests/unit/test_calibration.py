"""Calibration metrics: hand cases, and torchmetrics as an independent oracle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from pairscope.errors import InputError
from pairscope.metrics.calibration import (
    _equal_mass_error,
    calibration_summary,
    ece,
    ece_equal_mass,
    mce,
    reliability_bins,
)
from pairscope.metrics.stats import percentile_interval

DATA = json.loads((Path(__file__).parent / "cases" / "calibration.json").read_text())


Norm = Literal["l1", "l2", "max"]


def _oracle(conf: np.ndarray, correct: np.ndarray, n_bins: int, norm: Norm) -> float:
    # On (confidence, correct) inputs the binary metric is the top-label error.
    return float(
        binary_calibration_error(
            torch.tensor(conf, dtype=torch.float64),
            torch.tensor(correct, dtype=torch.long),
            n_bins=n_bins,
            norm=norm,
        )
    )


def _random_case(seed: int, n: int = 2000, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = rng.beta(2.0, 1.0, size=n)
    # Over-confident on purpose, plus exact 0/1 and exact bin boundaries
    # (those torch's linspace represents as k / n_bins).
    correct = rng.random(n) < conf**1.5
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64).numpy()
    exact = edges[edges == np.arange(n_bins + 1) / n_bins]
    conf[: exact.size] = exact
    conf[exact.size : exact.size + 5] = 1.0
    return conf, correct


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["name"])
def test_hand_cases(case: dict) -> None:
    conf, correct, n_bins = case["confidences"], case["correct"], case["n_bins"]
    tol = DATA["tolerance"]
    if "ece" in case:
        assert ece(conf, correct, n_bins) == pytest.approx(case["ece"], abs=tol)
        assert _oracle(np.array(conf), np.array(correct), n_bins, "l1") == pytest.approx(
            case["ece"], abs=1e-6
        )
    if "mce" in case:
        assert mce(conf, correct, n_bins) == pytest.approx(case["mce"], abs=tol)
        assert _oracle(np.array(conf), np.array(correct), n_bins, "max") == pytest.approx(
            case["mce"], abs=1e-6
        )
    if "ece_equal_mass" in case:
        got = ece_equal_mass(conf, correct, n_bins)
        assert got == pytest.approx(case["ece_equal_mass"], abs=tol)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_bins", [1, 4, 10, 15, 20])
def test_matches_torchmetrics_binary(seed: int, n_bins: int) -> None:
    conf, correct = _random_case(seed, n_bins=n_bins)
    assert ece(conf, correct, n_bins) == pytest.approx(
        _oracle(conf, correct, n_bins, "l1"), abs=1e-6
    )
    assert mce(conf, correct, n_bins) == pytest.approx(
        _oracle(conf, correct, n_bins, "max"), abs=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_multiclass_top_label(seed: int) -> None:
    # The definition (docs/methods.md §3): confidence = max prob, correct = argmax == reference.
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1500, 12, generator=gen) * 3
    target = torch.randint(0, 12, (1500,), generator=gen)
    probs = logits.softmax(dim=-1)
    conf, pred = probs.max(dim=-1)
    correct = (pred == target).numpy()
    norms: tuple[tuple[Norm, Callable[..., float]], ...] = (("l1", ece), ("max", mce))
    for norm, ours in norms:
        expected = float(multiclass_calibration_error(probs, target, 12, n_bins=15, norm=norm))
        assert ours(conf.numpy(), correct) == pytest.approx(expected, abs=1e-6)


def test_reliability_bins_layout_and_reconstruction() -> None:
    conf, correct = _random_case(7)
    bins = reliability_bins(conf, correct, n_bins=15)
    assert len(bins) == 16
    assert bins[0].lower == 0.0 and bins[14].upper == 1.0
    assert bins[15].lower == bins[15].upper == 1.0
    assert bins[15].count == np.sum(conf == 1.0) > 0
    assert bins[15].mean_confidence == 1.0
    assert sum(b.count for b in bins) == conf.size
    rebuilt = 0.0
    for b in bins:
        if b.accuracy is None or b.mean_confidence is None:
            assert b.count == 0
            continue
        assert b.lower <= b.mean_confidence <= b.upper
        rebuilt += b.count * abs(b.accuracy - b.mean_confidence)
    assert rebuilt / conf.size == pytest.approx(ece(conf, correct))


def test_reliability_bins_empty_bins() -> None:
    bins = reliability_bins([0.95, 0.97], [1, 0], n_bins=5)
    assert [b.count for b in bins] == [0, 0, 0, 0, 2, 0]
    assert bins[0].to_dict() == {
        "lower": 0.0,
        "upper": 0.2,
        "count": 0,
        "mean_confidence": None,
        "accuracy": None,
    }
    assert bins[4].accuracy == 0.5
    assert all(b.count == 0 for b in reliability_bins([], [], n_bins=3))


def _naive_equal_mass(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    order = np.lexsort((correct, conf))
    groups = zip(
        np.array_split(conf[order], n_bins),
        np.array_split(correct[order].astype(float), n_bins),
        strict=True,
    )
    return sum(abs(k.sum() - c.sum()) for c, k in groups) / conf.size


@pytest.mark.parametrize("seed", range(4))
def test_equal_mass_matches_array_split_and_ignores_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = np.round(rng.random(503), 2)  # many ties
    correct = rng.random(503) < conf
    got = ece_equal_mass(conf, correct, n_bins=15)
    assert got == pytest.approx(_naive_equal_mass(conf, correct, 15), abs=1e-12)
    perm = rng.permutation(conf.size)
    assert ece_equal_mass(conf[perm], correct[perm], 15) == pytest.approx(got, abs=1e-12)


def test_weighted_equal_mass_matches_expansion() -> None:
    rng = np.random.default_rng(5)
    conf = np.sort(rng.random(300))
    correct = (rng.random(300) < conf).astype(float)
    weights = rng.integers(0, 4, size=(6, 300)).astype(float)
    weights[0] = 0.0  # a resample with no tokens
    got = _equal_mass_error(conf, correct, weights, 7)
    assert np.isnan(got[0])
    for row, value in zip(weights[1:], got[1:], strict=True):
        reps = row.astype(int)
        expected = _naive_equal_mass(np.repeat(conf, reps), np.repeat(correct, reps), 7)
        assert value == pytest.approx(expected, abs=1e-12)


def _samples(seed: int, n_samples: int, max_len: int):
    rng = np.random.default_rng(seed)
    conf = [rng.beta(3, 1, size=rng.integers(0, max_len)) for _ in range(n_samples)]
    correct = [rng.random(c.size) < c**2 for c in conf]
    return conf, correct


def test_summary_points_equal_pooled_metrics() -> None:
    conf, correct = _samples(0, 40, 60)
    summary = calibration_summary(conf, correct, n_boot=200)
    pooled_conf, pooled_correct = np.concatenate(conf), np.concatenate(correct)
    assert summary.ece.point == pytest.approx(ece(pooled_conf, pooled_correct))
    assert summary.mce.point == pytest.approx(mce(pooled_conf, pooled_correct))
    assert summary.ece_equal_mass.point == pytest.approx(
        ece_equal_mass(pooled_conf, pooled_correct)
    )
    assert summary.n_samples == 40
    assert summary.n_tokens == pooled_conf.size
    assert summary.accuracy == pytest.approx(pooled_correct.mean())
    assert summary.mean_confidence == pytest.approx(pooled_conf.mean())
    assert list(summary.bins) == reliability_bins(pooled_conf, pooled_correct)


def test_summary_bootstrap_matches_naive_sample_resampling() -> None:
    conf, correct = _samples(1, 25, 30)
    conf[3] = np.array([])  # an empty sample is drawn but adds nothing
    correct[3] = np.array([], dtype=bool)
    n_boot, seed = 150, 4
    summary = calibration_summary(conf, correct, n_bins=10, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(conf), size=(n_boot, len(conf)))
    reps: dict[str, list[float]] = {"ece": [], "mce": [], "mass": []}
    for row in idx:
        c = np.concatenate([conf[i] for i in row])
        k = np.concatenate([correct[i] for i in row])
        reps["ece"].append(ece(c, k, 10))
        reps["mce"].append(mce(c, k, 10))
        reps["mass"].append(ece_equal_mass(c, k, 10))
    for name, est in (
        ("ece", summary.ece),
        ("mce", summary.mce),
        ("mass", summary.ece_equal_mass),
    ):
        low, high = percentile_interval(np.array(reps[name]), 0.95)
        assert est.low == pytest.approx(low, abs=1e-12)
        assert est.high == pytest.approx(high, abs=1e-12)


def test_summary_deterministic_and_json() -> None:
    conf, correct = _samples(2, 30, 50)
    first = calibration_summary(conf, correct, n_boot=100, seed=3)
    assert calibration_summary(conf, correct, n_boot=100, seed=3) == first
    assert calibration_summary(conf, correct, n_boot=100, seed=4) != first
    out = first.to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out) >= {"ece", "ece_equal_mass", "mce", "n_tokens", "bins", "accuracy"}
    assert len(out["bins"]) == 16


@pytest.mark.parametrize(
    ("conf", "correct", "n_bins"),
    [
        ([], [], 15),
        ([0.5, 1.2], [1, 0], 15),
        ([-0.1], [1], 15),
        ([float("nan")], [1], 15),
        ([0.5], [2], 15),
        ([0.5, 0.6], [1], 15),
        ([0.5], [1], 0),
    ],
)
def test_rejects_bad_input(conf, correct, n_bins) -> None:
    for fn in (ece, mce, ece_equal_mass):
        with pytest.raises(InputError):
            fn(conf, correct, n_bins)


def test_summary_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        calibration_summary([], [])
    with pytest.raises(InputError):
        calibration_summary([[0.5]], [[1], [0]])
    with pytest.raises(InputError):
        calibration_summary([[], []], [[], []])
    with pytest.raises(InputError):
        calibration_summary([[0.5]], [[1]], n_boot=0)
