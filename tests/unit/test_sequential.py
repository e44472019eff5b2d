"""The anytime-valid IR gate: error rates and speed by simulation, and the streaming API.

Every simulation draws >= 2000 streams per scenario from a synthetic pool whose pooled IR
is set exactly, checks each stream after every sample up to a budget of 100, and prints
what it observed (run with ``-s`` to see the figures).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairscope.errors import InputError
from pairscope.metrics.intervention import Verdict
from pairscope.metrics.operating import (
    best_constant_bet_samples,
    simulate,
    synthetic_pool,
)
from pairscope.metrics.sequential import FAIL, PASS, UNDECIDED, SequentialTest, Support
from pairscope.metrics.stats import wilson

THETA, D_MAX, STREAMS, BUDGET = 0.2, 256, 2000, 100


def extremes_pool() -> tuple[np.ndarray, np.ndarray]:
    """Samples at the ends of the range only (IR 0 or 1 at full length), pooled IR 0.2:
    the hardest case for a bounded-mean test's error rate."""
    u = np.array([0] * 4 + [D_MAX])
    return u, np.full(5, D_MAX)


def rounds_extremes_pool() -> tuple[np.ndarray, np.ndarray]:
    """NUDGING counts at the ends of their support: half the positions rounds at full
    length (next to the most adverse sample, ``u = d + 1``, ``u + d = d_max``) or no
    round at all, pooled IR 0.2."""
    return np.array([D_MAX // 2, 0, 0]), np.array([D_MAX // 2, D_MAX, D_MAX])


UNCERTAIN, ROUNDS = Support(D_MAX), Support(D_MAX, slack=1, disjoint=True)
POOLS = {
    "response-like lengths": (lambda: synthetic_pool(THETA, seed=11), UNCERTAIN),
    "short responses": (
        lambda: synthetic_pool(THETA, d_max=D_MAX, median_length=30, at_cap=0.0, seed=12),
        UNCERTAIN,
    ),
    "range extremes": (extremes_pool, UNCERTAIN),
    "NUDGING, response-like lengths": (lambda: synthetic_pool(THETA, rounds=True, seed=13), ROUNDS),
    "NUDGING, short responses": (
        lambda: synthetic_pool(THETA, rounds=True, median_length=30, at_cap=0.0, seed=14),
        ROUNDS,
    ),
    "NUDGING, range extremes": (rounds_extremes_pool, ROUNDS),
}


@pytest.mark.parametrize("name", POOLS)
def test_wrong_decisions_at_theta_are_rare(name):
    make, support = POOLS[name]
    u, d = make()
    assert u.sum() / d.sum() == THETA
    for i in range(u.size):
        support.check(float(u[i]), float(d[i]))  # every sample lies in the support
    sim = simulate(u, d, THETA, support, streams=STREAMS, budget=BUDGET, seed=1)
    wrong = int(np.sum(sim.decision != UNDECIDED))
    low, high = wilson(wrong, STREAMS)
    print(
        f"\n{name}: wrong decisions at IR = θ: {wrong}/{STREAMS} = {wrong / STREAMS:.4f} "
        f"(Wilson 95 % [{low:.4f}, {high:.4f}])"
    )
    # The guarantee is <= 5 %; the whole Wilson interval must lie below it.
    assert high <= 0.05


def test_checking_after_every_sample_breaks_a_fixed_n_interval():
    """The same streams, gated by a normal-approximation 95 % interval looked at after
    every sample, decide wrongly far more than 5 % of the time: the simulation detects
    a procedure that is not anytime-valid."""
    u, d = POOLS["response-like lengths"][0]()
    rng = np.random.default_rng(1)
    draws = rng.integers(0, u.size, size=(STREAMS, BUDGET))
    su, sd = np.cumsum(u[draws], axis=1), np.cumsum(d[draws], axis=1)
    n = np.arange(1, BUDGET + 1)
    x = u[draws] - THETA * d[draws]
    mean_x = np.cumsum(x, axis=1) / n
    var_x = np.maximum(np.cumsum(x * x, axis=1) / n - mean_x**2, 1e-12)
    half = 1.96 * np.sqrt(var_x / n) / (sd / n)
    ratio = su / sd
    looked = (n >= 10) & ((ratio - half > THETA) | (ratio + half < THETA))
    wrong = np.mean(looked.any(axis=1))
    print(f"\nnormal interval checked after every sample: wrong decisions {wrong:.3f}")
    assert wrong > 0.10


@pytest.mark.parametrize(("delta", "expected"), [(0.1, FAIL), (-0.1, PASS)])
def test_samples_to_a_decision(delta, expected):
    u, d = synthetic_pool(THETA + delta, seed=21)
    sim = simulate(u, d, THETA, UNCERTAIN, streams=STREAMS, budget=BUDGET, seed=2)
    right, share = sim.rate(expected)
    wrong, _ = sim.rate(-expected)
    floor = best_constant_bet_samples(u, d, THETA, UNCERTAIN)
    median = sim.median_samples()
    print(
        f"\nIR = θ {delta:+g}: {share:.4f} decided right, {wrong} wrong, median samples "
        f"{median:.0f}; no valid bet of this kind needs fewer than about {floor:.0f}"
    )
    assert wrong <= 0.025 * STREAMS
    assert share >= 0.95
    if expected == FAIL:
        assert median < 40
    else:
        # PASS must bet against a sample with IR 1 at full length (x = 1 - θ), which caps
        # its bets at 1/(1 - θ): with these lengths, 40 samples are out of reach of any
        # valid test at α/2 (the floor), and the PrPl bets stay within 15 % of it.
        assert floor > 40
        assert median <= 1.15 * floor
        u, d = synthetic_pool(THETA + delta, at_cap=0.8, seed=22)
        fast = simulate(u, d, THETA, UNCERTAIN, streams=STREAMS, budget=BUDGET, seed=3)
        print(f"  80 % of responses at the cap: median samples {fast.median_samples():.0f}")
        assert fast.median_samples() < 45


@pytest.mark.parametrize(("delta", "expected"), [(0.1, FAIL), (-0.1, PASS)])
def test_samples_to_a_decision_for_nudging_rounds(delta, expected):
    """NUDGING's counts have a smaller support (u <= d + 1, u + d <= d_max), so PASS may
    bet about twice as much as for an uncertain rate and decides within 40 samples too."""
    u, d = synthetic_pool(THETA + delta, rounds=True, seed=21)
    sim = simulate(u, d, THETA, ROUNDS, streams=STREAMS, budget=BUDGET, seed=2)
    _, share = sim.rate(expected)
    wrong, _ = sim.rate(-expected)
    floor = best_constant_bet_samples(u, d, THETA, ROUNDS)
    print(
        f"\nNUDGING, IR = θ {delta:+g}: {share:.4f} decided right, {wrong} wrong, "
        f"median samples {sim.median_samples():.0f} (floor {floor:.0f})"
    )
    assert wrong == 0 and share >= 0.9
    assert sim.median_samples() < 40
    if expected == PASS:
        # The same pool under the uncertain rate's wider support is much slower.
        wide = simulate(u, d, THETA, Support(D_MAX, slack=1), streams=STREAMS, seed=2)
        assert wide.median_samples() > 1.3 * sim.median_samples()


def test_the_support_bound_is_the_largest_value_on_it():
    """``h`` equals the maximum of (u − θd)/d_max over every integer sample in the support
    (up to the half position a continuous corner can add), and maps it into [0, 1]."""
    top = 64
    for support in (
        Support(top),
        Support(top, slack=1),
        Support(top, slack=1, disjoint=True),
        Support(top, numerator_max=40),
        Support(top, numerator_max=40, disjoint=True),
    ):
        for theta in (0.05, 0.2, 0.5, 0.9):
            best, ys = -math.inf, []
            for d in range(top + 1):
                for u in range(2 * top + 2):
                    try:
                        support.check(float(u), float(d))
                    except InputError:
                        continue
                    best = max(best, (u - theta * d) / top)
                    ys.append(float(support.scaled(u, d, theta)[0]))
            high = support.high(theta)
            assert best <= high + 1e-12 and high - best <= 1.0 / top, (support, theta)
            assert min(ys) >= -1e-12 and max(ys) <= 1.0 + 1e-12


def test_the_streaming_test_matches_the_vectorised_simulation():
    u, d = synthetic_pool(0.3, seed=5)
    sim = simulate(u, d, THETA, UNCERTAIN, streams=20, budget=BUDGET, seed=9)
    draws = np.random.default_rng(9).integers(0, u.size, size=(BUDGET, 20))
    for s in range(20):
        test = SequentialTest(THETA, D_MAX)
        for t in range(BUDGET):
            test.update(u[draws[t, s]], d[draws[t, s]])
        expected = {FAIL: Verdict.FAIL, PASS: Verdict.PASS}.get(int(sim.decision[s]))
        assert test.verdict == expected
        assert (test.decided_at or BUDGET + 1) == sim.decided_at[s]


def test_interval_covers_the_true_pooled_ir_at_all_times():
    u, d = synthetic_pool(0.27, seed=6)
    truth = u.sum() / d.sum()
    rng = np.random.default_rng(4)
    streams, missed, widths = 200, 0, []
    for _ in range(streams):
        test = SequentialTest(THETA, D_MAX)
        covered = True
        for i in rng.integers(0, u.size, size=BUDGET):
            test.update(u[i], d[i])
            est = test.interval()
            covered &= est.low <= truth <= est.high
        missed += not covered
        widths.append(est.high - est.low)
    low, high = wilson(missed, streams)
    print(
        f"\ninterval missed the true IR at some time in {missed}/{streams} streams "
        f"[{low:.3f}, {high:.3f}]; median width at n = 100: {np.median(widths):.3f}"
    )
    assert missed <= 0.05 * streams
    assert np.median(widths) < 0.2


def test_verdict_is_kept_and_the_budget_ends_in_warn():
    test = SequentialTest(THETA, 100)
    assert test.interval().low == 0.0 and test.interval().high == 1.0
    assert math.isnan(test.point)
    for _ in range(40):
        verdict = test.update(90, 100)
    assert verdict is Verdict.FAIL and test.decided_at is not None and test.decided_at < 40
    first = test.decided_at
    for _ in range(40):
        assert test.update(0, 100) is Verdict.FAIL
    assert test.decided_at == first and test.n == 80
    idle = SequentialTest(THETA, 100)
    for _ in range(5):
        assert idle.update(20, 100) is None
    assert idle.final_verdict() is Verdict.WARN
    est = idle.interval()
    assert est.low < THETA < est.high and est.point == pytest.approx(0.2)
    record = test.to_dict()
    assert record["verdict"] == "FAIL" and record["decided_at"] == first
    assert record["ir"]["low"] > THETA


def test_counts_outside_the_range_are_refused():
    test = SequentialTest(THETA, 100)
    for u, d in ((5, 101), (-1, 10), (11, 10), (math.nan, 10)):
        with pytest.raises(InputError):
            test.update(u, d)
    assert test.n == 0
    rounds = SequentialTest(THETA, Support(100, numerator_max=100))
    rounds.update(3, 1)  # NUDGING: rounds can outnumber base-written tokens
    with pytest.raises(InputError):
        rounds.update(101, 100)
    nudging = SequentialTest(THETA, Support(100, slack=1, disjoint=True))
    nudging.update(50, 49)  # u = d + 1 and u + d < d_max
    for u, d in ((52, 50), (50, 51)):  # u > d + 1; u + d > d_max
        with pytest.raises(InputError):
            nudging.update(u, d)
    for bad in (dict(theta=0.0), dict(theta=1.0), dict(alpha=0.0), dict(support=0)):
        with pytest.raises(InputError):
            SequentialTest(**({"theta": THETA, "support": 100} | bad))
    for fields in (dict(numerator_max=0), dict(slack=-1), dict(d_max=2.5)):
        with pytest.raises(InputError):
            Support(**({"d_max": 100} | fields))


def test_numerator_above_denominator_widens_the_range():
    """With numerator_max the mapped values still lie in [0, 1] and FAIL still works."""
    test = SequentialTest(THETA, Support(50, numerator_max=50))
    for _ in range(60):
        test.update(30, 40)
    assert test.verdict is Verdict.FAIL
    assert test.interval().low > THETA


# -- the summary's replay ---------------------------------------------------------------


def test_the_summary_replays_the_test_in_order_with_nudgings_bounds() -> None:
    from pairscope.decoding.types import IR_ROUNDS, IR_UNCERTAIN
    from pairscope.summary import sequential_test

    # NUDGING: one round more than base-written tokens is possible (u <= d + 1).
    counts = [(30, 29), (1, 0)] * 4
    test = sequential_test(counts, 0.2, 64, IR_ROUNDS)
    assert test is not None and test.verdict is not None and test.verdict.value == "FAIL"
    assert test.n == 8 and test.support == Support(64, slack=1, disjoint=True)
    with pytest.raises(InputError):
        sequential_test(counts, 0.2, 64, IR_UNCERTAIN)  # u > d is impossible there
    with pytest.raises(InputError):
        sequential_test([(12, 10)], 0.2, 64, IR_ROUNDS)  # nor u > d + 1 for NUDGING
    # The same counts in another order may decide at another sample, never otherwise.
    mixed = [(0, 60), (0, 60), (40, 60), (40, 60), (40, 60), (40, 60), (40, 60), (40, 60)]
    a = sequential_test(mixed, 0.2, 64, IR_UNCERTAIN)
    b = sequential_test(list(reversed(mixed)), 0.2, 64, IR_UNCERTAIN)
    assert a is not None and b is not None and a.decided_at != b.decided_at
    # No test where it cannot be valid.
    assert sequential_test(counts, 1.0, 64, IR_ROUNDS) is None
    # The tighter bound is valid: at u = d + 1 every mapped value stays in [0, 1].
    y, m = Support(64, slack=1).scaled([0, 1, 65, 0], [64, 0, 64, 0], 0.2)
    assert 0.0 <= y.min() and y.max() <= 1.0 + 1e-12 and 0.0 < float(m) < 1.0
    assert sequential_test(counts, 0.2, 64, None) is None


# -- stopping for futility ----------------------------------------------------------------


FUTILITY_STREAMS = 300


@pytest.mark.parametrize("target", [0.1, 0.15, 0.2, 0.25, 0.3])
def test_futility_stops_close_calls_early_and_rarely_costs_a_decision(target):
    """Every stream sees the same draws with and without stopping for futility: a stream
    that decides with it decides the same way at the same sample without it, so the
    error rate cannot grow; the decisions it forfeits are few, and near θ it saves
    most of the budget."""
    u, d = synthetic_pool(target, rounds=True, seed=31)
    plain = simulate(u, d, THETA, ROUNDS, streams=FUTILITY_STREAMS, seed=4)
    early = simulate(
        u, d, THETA, ROUNDS, streams=FUTILITY_STREAMS, seed=4, futility=True,
        futility_streams=500,
    )  # fmt: skip
    assert early.futile is not None and early.spent is not None and plain.spent is not None
    made = early.decision != UNDECIDED
    assert np.array_equal(early.decision[made], plain.decision[made])
    assert np.array_equal(early.decided_at[made], plain.decided_at[made])
    assert not np.any(made & early.futile)
    lost = float(np.mean((plain.decision != UNDECIDED) & ~made))
    saved = 1.0 - early.spent.mean() / plain.spent.mean()
    print(
        f"\nIR {target}: decided {np.mean(plain.decision != 0):.3f} -> {np.mean(made):.3f} "
        f"(lost {lost:.3f}); stopped for futility {early.futile.mean():.3f}; "
        f"mean samples {plain.spent.mean():.1f} -> {early.spent.mean():.1f}"
    )
    assert lost <= 0.03
    if abs(target - THETA) < 0.06:  # close calls: most streams stop early
        assert early.futile.mean() >= 0.5 and saved >= 0.2
    stop = early.spent[early.futile]
    assert np.all((stop - 30) % 16 == 0)  # at the probe's batch boundaries: 30, 46, 62, ...


def test_decision_chance_reads_the_samples_seen():
    far = SequentialTest(THETA, ROUNDS)
    near = SequentialTest(THETA, ROUNDS)
    u, d = synthetic_pool(0.12, rounds=True, seed=7)
    v, e = synthetic_pool(THETA, rounds=True, seed=8)
    for i in range(20):
        far.update(u[i], d[i])
        near.update(v[i], e[i])
    assert far.verdict is None and near.verdict is None
    assert far.decision_chance(80) > 0.5 > near.decision_chance(80)
    assert near.decision_chance(80) == near.decision_chance(80)  # deterministic
    assert near.decision_chance(0) == 0.0 and SequentialTest(THETA, 100).decision_chance(50) == 0
    assert near.futile(80) == (False, near.decision_chance(80))  # 20 samples: too few yet
    for i in range(20, 60):
        near.update(v[i], e[i])
    stop, chance = near.futile(40)
    print(f"\nat IR = θ after 60 samples: chance of a decision in 40 more {chance:.3f}")
    assert stop and chance < 0.05
    decided = SequentialTest(THETA, 100)
    for _ in range(30):
        decided.update(100, 100)
    assert decided.verdict is Verdict.FAIL and decided.futile(70) == (False, 1.0)


def test_the_summary_names_a_futile_stop() -> None:
    from pairscope.decoding.types import IR_ROUNDS
    from pairscope.summary import _sequential_summary, sequential_test

    v, e = synthetic_pool(THETA, rounds=True, seed=8)
    counts = [(int(v[i]), int(e[i])) for i in range(48)]
    test = sequential_test(counts, THETA, D_MAX, IR_ROUNDS)
    assert test is not None and test.verdict is None
    futile = _sequential_summary(test, True, 100, 48)
    assert futile is not None and futile.stop_reason == "futile" and futile.verdict == "WARN"
    assert futile.decision_chance is not None and futile.decision_chance < 0.05
    assert "estimated chance" in futile.reason and "stopped early" in futile.reason
    spent = _sequential_summary(test, True, 48, 48)
    fixed = _sequential_summary(test, False, 100, 48)
    assert spent is not None and spent.stop_reason == "budget" and spent.decision_chance is None
    assert fixed is not None and fixed.stop_reason == "fixed"
    short = sequential_test(counts[:20], THETA, D_MAX, IR_ROUNDS)
    early = _sequential_summary(short, True, 100, 20)
    assert early is not None and early.stop_reason == "incomplete"
