"""Intervals and tests in pairscope.metrics.stats, against hand values and scipy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from pairscope.errors import InputError
from pairscope.metrics.stats import (
    Estimate,
    McNemar,
    bootstrap_mean,
    bootstrap_ratio,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_diff,
    pearson,
    pearson_interval,
    proportion,
    wilson,
)

CASES = Path(__file__).parent / "cases"
WILSON = json.loads((CASES / "wilson.json").read_text())


# --- Wilson ---------------------------------------------------------------


@pytest.mark.parametrize("case", WILSON["cases"], ids=lambda c: f"{c['successes']}/{c['n']}")
def test_wilson_known_values(case: dict) -> None:
    low, high = wilson(case["successes"], case["n"])
    assert low == pytest.approx(case["low"], abs=WILSON["tolerance"])
    assert high == pytest.approx(case["high"], abs=WILSON["tolerance"])


def _wilson_reference(k: int, n: int, confidence: float) -> tuple[float, float]:
    # Textbook form: roots of (p - k/n)^2 = z^2 p (1 - p) / n.
    z = sps.norm.ppf(0.5 + confidence / 2)
    a = 1 + z**2 / n
    b = -(2 * k / n + z**2 / n)
    c = (k / n) ** 2
    disc = math.sqrt(b * b - 4 * a * c)
    return ((-b - disc) / (2 * a), (-b + disc) / (2 * a))


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_wilson_matches_quadratic_roots(confidence: float) -> None:
    for n in (1, 2, 7, 30, 101):
        for k in range(n + 1):
            low, high = wilson(k, n, confidence)
            ref_low, ref_high = _wilson_reference(k, n, confidence)
            assert low == pytest.approx(max(ref_low, 0.0), abs=1e-12)
            assert high == pytest.approx(min(ref_high, 1.0), abs=1e-12)
            assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_edges_are_exact() -> None:
    assert wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"),
    [(-1, 10, 0.95), (11, 10, 0.95), (1, -1, 0.95), (1, 0, 0.95), (5, 10, 0.0), (5, 10, 1.0)],
)
def test_wilson_rejects_bad_input(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(InputError):
        wilson(successes, n, confidence)


def test_proportion_carries_wilson_interval() -> None:
    est = proportion(5, 10)
    assert est.point == 0.5
    assert (est.low, est.high) == wilson(5, 10)
    assert proportion(0, 0).to_dict() == {"point": None, "low": 0.0, "high": 1.0}


# --- Estimate -------------------------------------------------------------


def test_estimate_to_dict_is_plain_json() -> None:
    est = Estimate(np.float64(0.25), np.float64(0.125), math.nan)
    out = est.to_dict()
    assert out == {"point": 0.25, "low": 0.125, "high": None}
    assert all(type(v) is float for v in out.values() if v is not None)
    json.dumps(out, allow_nan=False)


# --- bootstraps -----------------------------------------------------------


def _naive_ratio_bootstrap(num, den, n_boot, seed, confidence=0.95):
    # Same draws as the vectorised version (one block): an index matrix.
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    ratios = np.array([num[row].sum() / den[row].sum() for row in idx])
    tail = (1 - confidence) / 2
    return np.quantile(ratios, [tail, 1 - tail])


def test_bootstrap_ratio_matches_naive_resampling() -> None:
    rng = np.random.default_rng(3)
    den = rng.integers(20, 200, size=60).astype(float)
    num = np.floor(den * rng.uniform(0, 0.4, size=60))
    est = bootstrap_ratio(num, den, n_boot=500, seed=11)
    low, high = _naive_ratio_bootstrap(num, den, 500, 11)
    assert est.point == pytest.approx(num.sum() / den.sum())
    assert est.low == pytest.approx(low, abs=1e-12)
    assert est.high == pytest.approx(high, abs=1e-12)


def test_bootstrap_ratio_contains_point_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    den = rng.integers(50, 150, size=200)
    num = rng.binomial(den, 0.2)
    first = bootstrap_ratio(num, den, seed=5)
    assert first.low <= first.point <= first.high
    assert first.low < first.high
    assert bootstrap_ratio(num, den, seed=5) == first
    assert bootstrap_ratio(num, den, seed=6) != first


def test_bootstrap_ratio_wider_at_higher_confidence() -> None:
    rng = np.random.default_rng(1)
    den = rng.integers(50, 150, size=100)
    num = rng.binomial(den, 0.3)
    narrow = bootstrap_ratio(num, den, confidence=0.8)
    wide = bootstrap_ratio(num, den, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_bootstrap_ratio_degenerate_and_zero_denominators() -> None:
    constant = bootstrap_ratio([1, 2, 3], [10, 20, 30])
    assert constant.point == constant.low == constant.high == pytest.approx(0.1)
    with_empty = bootstrap_ratio([1, 0, 2], [10, 0, 20])
    assert with_empty.point == pytest.approx(0.1)
    nothing = bootstrap_ratio([0, 0], [0, 0])
    assert nothing.to_dict() == {"point": None, "low": None, "high": None}


@pytest.mark.parametrize(
    ("num", "den", "kwargs"),
    [
        ([], [], {}),
        ([1, 2], [3], {}),
        ([1, math.nan], [2, 2], {}),
        ([1], [2], {"n_boot": 0}),
        ([1], [2], {"confidence": 1.0}),
        ([[1]], [[2]], {}),
    ],
)
def test_bootstrap_ratio_rejects_bad_input(num, den, kwargs) -> None:
    with pytest.raises(InputError):
        bootstrap_ratio(num, den, **kwargs)


def test_bootstrap_mean() -> None:
    values = np.random.default_rng(2).normal(3.0, 1.0, size=400)
    est = bootstrap_mean(values, seed=1)
    assert est.point == pytest.approx(values.mean())
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert est.high - est.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_paired_bootstrap_known_difference() -> None:
    a = np.ones(200, dtype=bool)
    b = np.arange(200) % 2 == 0
    est = paired_bootstrap_diff(a, b, seed=0)
    assert est.point == 0.5
    assert est.low < 0.5 < est.high
    assert est.low > 0.0
    assert paired_bootstrap_diff(a, b, seed=0) == est


def test_paired_bootstrap_keeps_pairs() -> None:
    # Identical paired outcomes differ by exactly 0 in every resample; an
    # unpaired bootstrap would spread around 0.
    a = np.random.default_rng(4).random(100) < 0.5
    est = paired_bootstrap_diff(a, a.copy())
    assert (est.point, est.low, est.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_rejects_unpaired() -> None:
    with pytest.raises(InputError):
        paired_bootstrap_diff([1, 0, 1], [1, 0])


# --- McNemar --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_mcnemar_matches_scipy_binomtest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    a = rng.random(n) < rng.uniform(0.2, 0.8)
    b = rng.random(n) < rng.uniform(0.2, 0.8)
    result = mcnemar_exact(a, b)
    assert result.b01 == int(np.sum(~a & b))
    assert result.b10 == int(np.sum(a & ~b))
    if result.n_discordant:
        expected = sps.binomtest(result.b01, result.n_discordant, 0.5).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("b01", "b10"), [(0, 0), (0, 1), (3, 3), (10, 0), (2, 9), (40, 55)])
def test_mcnemar_constructed_counts(b01: int, b10: int) -> None:
    a = [0] * b01 + [1] * b10 + [1, 1, 0]
    b = [1] * b01 + [0] * b10 + [1, 1, 0]
    result = mcnemar_exact(a, b)
    assert (result.b01, result.b10) == (b01, b10)
    if b01 + b10 == 0:
        assert result.p_value == 1.0
    else:
        expected = sps.binomtest(b01, b01 + b10, 0.5).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-9)
    assert 0.0 <= result.p_value <= 1.0


def test_mcnemar_hand_value_and_dict() -> None:
    # 0 vs 6 discordant: p = 2 * 0.5**6 = 0.03125.
    result = mcnemar_exact([1] * 6 + [0, 1], [0] * 6 + [0, 1])
    assert result == McNemar(b01=0, b10=6, p_value=0.03125)
    assert result.to_dict() == {"b01": 0, "b10": 6, "n_discordant": 6, "p_value": 0.03125}


@pytest.mark.parametrize(("a", "b"), [([1, 0], [1]), ([0.5, 1], [1, 1]), ([2], [1])])
def test_mcnemar_rejects_bad_input(a, b) -> None:
    with pytest.raises(InputError):
        mcnemar_exact(a, b)


# --- minimum detectable difference -----------------------------------------


def test_mdd_formula() -> None:
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert min_detectable_difference(100, 0.5) == pytest.approx(z * math.sqrt(0.5 / 100))
    assert min_detectable_difference(100, 0.5, discordance=0.2) == pytest.approx(
        z * math.sqrt(0.2 / 100)
    )
    psi = 0.6 * (1 - 0.4) + 0.4 * (1 - 0.6)
    assert min_detectable_difference(50, 0.6, 0.4) == pytest.approx(z * math.sqrt(psi / 50))


def test_mdd_behaviour() -> None:
    assert min_detectable_difference(400, 0.5) == pytest.approx(
        min_detectable_difference(100, 0.5) / 2
    )
    assert min_detectable_difference(100, 0.5, power=0.9) > min_detectable_difference(100, 0.5)
    assert min_detectable_difference(100, 0.5, alpha=0.01) > min_detectable_difference(100, 0.5)
    assert min_detectable_difference(100, 1.0) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0, "p_a": 0.5},
        {"n": 10, "p_a": 1.5},
        {"n": 10, "p_a": 0.5, "p_b": -0.1},
        {"n": 10, "p_a": 0.5, "discordance": 2.0},
        {"n": 10, "p_a": 0.5, "alpha": 0.0},
        {"n": 10, "p_a": 0.5, "power": 1.0},
    ],
)
def test_mdd_rejects_bad_input(kwargs) -> None:
    with pytest.raises(InputError):
        min_detectable_difference(**kwargs)


# --- Pearson ----------------------------------------------------------------


def test_pearson_matches_scipy() -> None:
    rng = np.random.default_rng(9)
    x = rng.random(15)
    y = -0.7 * x + rng.normal(0, 0.2, 15)
    r, p = pearson(x, y)
    expected = sps.pearsonr(x, y)
    assert r == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8])[0] == pytest.approx(1.0)


def test_pearson_guards() -> None:
    assert all(math.isnan(v) for v in pearson([1, 2], [3, 4]))
    assert all(math.isnan(v) for v in pearson([1, 1, 1, 1], [1, 2, 3, 4]))
    assert all(math.isnan(v) for v in pearson([], []))
    # Pairs with a missing value are dropped.
    r, _ = pearson([1, 2, math.nan, 3, 4], [2, 4, 5, 6, 8])
    assert r == pytest.approx(1.0)
    with pytest.raises(InputError):
        pearson([1, 2, 3], [1, 2])


@pytest.mark.parametrize("n", [4, 6, 15, 60])
def test_pearson_interval_matches_scipys_fisher_interval(n: int) -> None:
    """The oracle: scipy's own confidence interval for pearsonr (Fisher's z)."""
    rng = np.random.default_rng(n)
    x = rng.random(n)
    y = -0.6 * x + rng.normal(0, 0.3, n)
    r, _ = pearson(x, y)
    for level in (0.9, 0.95):
        low, high = pearson_interval(r, n, level)
        expected = sps.pearsonr(x, y).confidence_interval(confidence_level=level)
        assert (low, high) == pytest.approx((expected.low, expected.high))
        assert low < r < high


def test_pearson_interval_guards() -> None:
    assert all(math.isnan(v) for v in pearson_interval(0.5, 3))
    assert all(math.isnan(v) for v in pearson_interval(math.nan, 10))
    assert pearson_interval(-1.0, 10) == (-1.0, -1.0)
    narrow, wide = pearson_interval(-0.6, 100), pearson_interval(-0.6, 8)
    assert wide[0] < narrow[0] < -0.6 < narrow[1] < wide[1]
    with pytest.raises(InputError):
        pearson_interval(0.5, 10, level=1.0)
