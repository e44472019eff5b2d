"""Intervention rate, per-sample distribution, verdicts and the gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pairscope.errors import InputError
from pairscope.metrics.intervention import (
    Distribution,
    Verdict,
    distribution_summary,
    gate_passes,
    intervention_rate,
    overall_verdict,
    per_sample_rates,
    verdict,
)
from pairscope.metrics.stats import Estimate, bootstrap_ratio

VERDICTS = json.loads((Path(__file__).parent / "cases" / "verdicts.json").read_text())

P, W, F = Verdict.PASS, Verdict.WARN, Verdict.FAIL


def test_rate_is_ratio_of_sums_not_mean_of_rates() -> None:
    est = intervention_rate([1, 30], [10, 100])
    assert est.point == pytest.approx(31 / 110)
    assert np.nanmean(per_sample_rates([1, 30], [10, 100])) == pytest.approx(0.2)


def test_rate_ci_contains_point_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    positions = rng.integers(30, 250, size=100)
    uncertain = rng.binomial(positions, 0.18)
    est = intervention_rate(uncertain, positions, seed=1)
    assert est.low <= est.point <= est.high
    assert intervention_rate(uncertain, positions, seed=1) == est
    assert est == bootstrap_ratio(uncertain, positions, seed=1)


def test_zero_position_samples_are_allowed() -> None:
    est = intervention_rate([0, 3, 0], [0, 10, 0])
    assert est.point == pytest.approx(0.3)
    assert est.low == est.high == pytest.approx(0.3)
    assert intervention_rate([0], [0]).to_dict() == {"point": None, "low": None, "high": None}


@pytest.mark.parametrize(
    ("uncertain", "positions"),
    [([], []), ([1], [1, 2]), ([-1], [2]), ([1], [-2]), ([0.5], [2]), ([1], [math.nan])],
)
def test_rate_rejects_bad_counts(uncertain, positions) -> None:
    with pytest.raises(InputError):
        intervention_rate(uncertain, positions)


def test_per_sample_rates() -> None:
    rates = per_sample_rates([1, 0, 5], [4, 0, 5])
    assert rates[0] == 0.25 and math.isnan(rates[1]) and rates[2] == 1.0


def test_distribution_summary() -> None:
    rates = [0.0, 0.1, math.nan, 0.2, 0.3, 0.4]
    summary = distribution_summary(rates)
    assert isinstance(summary, Distribution)
    assert summary.n == 5
    assert summary.mean == pytest.approx(0.2)
    assert (summary.min, summary.p25, summary.median, summary.p75, summary.max) == pytest.approx(
        (0.0, 0.1, 0.2, 0.3, 0.4)
    )
    out = summary.to_dict()
    assert out["n"] == 5 and out["median"] == pytest.approx(0.2)
    json.dumps(out, allow_nan=False)
    empty = distribution_summary([math.nan])
    assert empty.n == 0 and empty.to_dict()["median"] is None
    assert distribution_summary([]).n == 0


@pytest.mark.parametrize(
    "case", VERDICTS["cases"], ids=lambda c: f"{c['low']}-{c['high']}@{c['threshold']}"
)
def test_verdict_boundaries(case: dict) -> None:
    expected = Verdict(case["verdict"])
    bounds = (case["low"], case["high"])
    assert verdict(bounds, case["threshold"]) is expected
    assert verdict(Estimate(math.nan, *bounds), case["threshold"]) is expected


def test_verdict_just_around_threshold() -> None:
    theta = 0.2
    eps = np.nextafter(theta, 1.0) - theta
    assert verdict((theta + eps, 0.5), theta) is F
    assert verdict((theta, 0.5), theta) is W
    assert verdict((0.0, theta - eps), theta) is P
    assert verdict((0.0, theta), theta) is W


def test_verdict_undefined_interval_is_warn() -> None:
    assert verdict(Estimate(math.nan, math.nan, math.nan), 0.2) is W


@pytest.mark.parametrize("threshold", [-0.01, 1.01, math.nan, "x"])
def test_verdict_rejects_threshold_outside_unit_interval(threshold) -> None:
    with pytest.raises(InputError):
        verdict((0.1, 0.2), threshold)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([P], P),
        ([P, P, P], P),
        ([P, W, P], W),
        ([P, W, F], F),
        ([F, F], F),
        (["PASS", "WARN"], W),
    ],
)
def test_overall_any_fail(verdicts, expected) -> None:
    assert overall_verdict(verdicts) is expected


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [([P, P], P), ([P, W], F), ([W], F), ([P, F], F)],
)
def test_overall_strict_counts_warn_as_fail(verdicts, expected) -> None:
    assert overall_verdict(verdicts, strict=True) is expected


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [([F, F], F), ([F, P], W), ([P, P], P), ([F, W], W), ([F, W], W)],
)
def test_overall_all_fail_policy(verdicts, expected) -> None:
    assert overall_verdict(verdicts, policy="all-fail") is expected


def test_overall_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="Did you mean 'any-fail'"):
        overall_verdict([P], policy="any-fial")
    with pytest.raises(InputError):
        overall_verdict([])
    with pytest.raises(InputError):
        overall_verdict(["MAYBE"])


@pytest.mark.parametrize(
    ("overall", "strict", "passes"),
    [(P, False, True), (P, True, True), (W, False, True), (W, True, False), (F, False, False)],
)
def test_gate_passes(overall, strict, passes) -> None:
    assert gate_passes(overall, strict) is passes


def test_verdict_is_a_json_string() -> None:
    assert Verdict.FAIL == "FAIL"
    assert str(Verdict.WARN) == "WARN"
    assert json.dumps({"verdict": Verdict.PASS}) == '{"verdict": "PASS"}'
