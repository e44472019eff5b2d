"""Racing guides: the elimination rules on synthetic streams, and its error rate by simulation.

Streams are drawn per sample: a denominator ``d`` uniform on [D_MIN, D_MAX], a numerator
``u ~ Binomial(d, ir)`` (so the pooled IR is ``ir``), and a score that is 1 when one
latent uniform per sample falls below the guide's accuracy: guides share that uniform,
as pairs scored on the same sample are correlated in practice.
"""

from __future__ import annotations

import numpy as np
import pytest

from pairscope.errors import InputError
from pairscope.metrics.sequential import Support
from pairscope.rank.racing import (
    DOMINATED,
    FEASIBLE,
    INFEASIBLE,
    RACE_NONE,
    RACE_RUNNING,
    RACE_TIE,
    RACE_UNRESOLVED,
    RACE_WINNER,
    TIED,
    UNRESOLVED,
    WINNER,
    MeanSequence,
    Outcome,
    RaceResult,
    RaceSettings,
    race,
)

THETA, D_MIN, D_MAX = 0.2, 16, 64


def streams(
    truth: dict[str, tuple[float, float]], n: int, seed: int
) -> tuple[list[str], dict[str, dict[str, Outcome]]]:
    """``truth``: guide -> (pooled IR, accuracy). Returns the order and every outcome."""
    rng = np.random.default_rng(seed)
    order = [f"s{i}" for i in range(n)]
    d = rng.integers(D_MIN, D_MAX + 1, size=n)
    latent = rng.random(n)
    out = {}
    for guide, (ir, acc) in truth.items():
        u = rng.binomial(d, ir)
        out[guide] = {
            s: Outcome(int(u[i]), int(d[i]), float(latent[i] < acc)) for i, s in enumerate(order)
        }
    return order, out


def settings(**kw: object) -> RaceSettings:
    base: dict[str, object] = {"threshold": THETA, "support": Support(D_MAX), "budget": 300}
    return RaceSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_clearly_infeasible_guide_is_dropped_early() -> None:
    order, out = streams({"good": (0.05, 0.6), "bad": (0.6, 0.9)}, 300, seed=1)
    result = race(["good", "bad"], order, out, settings())
    bad = result.guide("bad")
    assert bad.status == INFEASIBLE
    assert bad.decided_at is not None and bad.decided_at <= 3  # within 30 samples
    assert result.status == RACE_WINNER and result.guide("good").status == WINNER
    assert result.guide("good").ir.high <= THETA  # the interval is widened by a grid step


def test_no_decision_before_the_minimum_samples() -> None:
    order, out = streams({"bad": (0.9, 0.5)}, 300, seed=2)
    result = race(["bad"], order, out, settings(batch=5, min_samples=20))
    assert result.status == RACE_NONE
    assert result.guide("bad").decided_at == 4  # 4 batches of 5: the first allowed
    assert result.n == 20


def test_equal_guides_end_as_a_tie() -> None:
    order, out = streams({"a": (0.05, 0.5), "b": (0.05, 0.5)}, 600, seed=3)
    result = race(["a", "b"], order, out, settings(budget=600))
    assert result.status == RACE_TIE
    assert {g.status for g in result.guides} == {TIED}
    assert result.n < 600


def test_a_feasible_better_guide_dominates() -> None:
    order, out = streams({"strong": (0.05, 0.8), "weak": (0.05, 0.2)}, 300, seed=4)
    result = race(["strong", "weak"], order, out, settings())
    weak = result.guide("weak")
    assert weak.status == DOMINATED and weak.by == "strong"
    assert result.status == RACE_WINNER and result.guide("strong").status == WINNER


def test_an_undecided_guide_does_not_dominate() -> None:
    """A better score from a guide not yet shown feasible eliminates no one: it may
    still prove infeasible, and then the weaker guide is the answer."""
    order, out = streams({"edge": (THETA, 0.9), "safe": (0.02, 0.1)}, 60, seed=5)
    result = race(["edge", "safe"], order, out, settings(budget=60))
    assert result.guide("safe").status != DOMINATED


def test_budget_ends_unresolved_never_a_forced_winner() -> None:
    order, out = streams({"a": (0.05, 0.55), "b": (0.05, 0.5)}, 40, seed=6)
    result = race(["a", "b"], order, out, settings(budget=40))
    assert result.status == RACE_UNRESOLVED
    assert {g.status for g in result.guides} == {UNRESOLVED}


def test_only_the_completed_prefix_counts() -> None:
    """Results past a gap in the committed order are not read: the race asks for the gap."""
    order, out = streams({"a": (0.05, 0.5), "b": (0.6, 0.5)}, 100, seed=7)
    early = dict(out["b"])
    del early["s12"]
    result = race(["a", "b"], order, {"a": out["a"], "b": early}, settings(batch=10))
    assert result.status == RACE_RUNNING
    assert result.n == 10 and result.next == (10, 20) and result.todo == ["b"]
    assert result.guide("b").n == 10


def test_replay_is_a_pure_function_of_the_prefix() -> None:
    """More results beyond the decision point change nothing already decided."""
    order, out = streams({"a": (0.05, 0.8), "b": (0.5, 0.5)}, 300, seed=8)
    first = race(["a", "b"], order, out, settings())
    cut = {g: {s: o for s, o in v.items() if int(s[1:]) < first.n} for g, v in out.items()}
    again = race(["a", "b"], order, cut, settings())
    assert (again.status, again.n) == (first.status, first.n)
    assert [g.status for g in again.guides] == [g.status for g in first.guides]


def test_ir_objective_ranks_by_intervention_rate() -> None:
    order, out = streams({"low": (0.02, 0.1), "high": (0.15, 0.9)}, 300, seed=9)
    result = race(["low", "high"], order, out, settings(objective="ir"))
    assert result.guide("high").status == DOMINATED
    assert result.status == RACE_WINNER and result.guide("low").status == WINNER


def test_bonferroni_split() -> None:
    assert settings(alpha=0.06).alpha_each(3) == pytest.approx(0.06 / 6)
    assert settings(alpha=0.06, objective="ir").alpha_each(3) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "bad", [{"objective": "best"}, {"epsilon": -0.1}, {"alpha": 1.5}, {"batch": 0}]
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        settings(**bad)


def test_mean_sequence_covers_and_shrinks() -> None:
    rng = np.random.default_rng(0)
    seq = MeanSequence(-1.0, 1.0, 0.05)
    for v in rng.choice([-1.0, 0.0, 1.0], p=[0.2, 0.5, 0.3], size=400):
        seq.update([float(v)])
    interval = seq.interval()
    assert interval.low < 0.1 < interval.high
    assert interval.high - interval.low < 0.5


def _wrong(result: RaceResult, truth: dict[str, tuple[float, float]], eps: float) -> bool:
    """Whether any elimination in ``result`` contradicts the true rates."""
    for g in result.guides:
        ir, acc = truth[g.guide]
        if g.status == INFEASIBLE and ir <= THETA:
            return True
        if g.status == DOMINATED and g.by is not None and truth[g.by][1] - acc <= eps:
            return True
        if g.status in (FEASIBLE, WINNER, TIED) and g.feasible_at is not None and ir >= THETA:
            return True
    return False


def test_wrong_eliminations_stay_under_alpha() -> None:
    """Guides on the edges of every rule: an IR at θ exactly, and scores ε apart exactly,
    so any elimination of them is wrong. Over many seeded races the share of races with
    a wrong elimination stays under α."""
    alpha, eps, races = 0.2, 0.05, 50
    truth = {"edge": (THETA, 0.7), "near": (0.1, 0.7 - eps), "far": (0.1, 0.7 - 2 * eps)}
    rules = settings(alpha=alpha, epsilon=eps, budget=100, batch=20)
    wrong = 0
    for seed in range(races):
        order, out = streams(truth, 100, seed=1000 + seed)
        wrong += _wrong(race(list(truth), order, out, rules), truth, eps)
    print(f"wrong eliminations in {wrong} of {races} races (alpha {alpha})")
    assert wrong / races < alpha


@pytest.mark.parametrize("support", [Support(D_MAX), Support(D_MAX, slack=1, disjoint=True)])
def test_ir_sequences_match_the_probes_sequential_test(support: Support) -> None:
    """The race's vectorised IR test is the probe's test: same verdicts, same intervals."""
    from pairscope.metrics.sequential import SequentialTest
    from pairscope.rank.racing import IrSequences

    rng = np.random.default_rng(11)
    d = rng.integers(D_MIN, D_MAX // 2, size=(2, 80))
    u = np.minimum(rng.binomial(d, [[0.1], [0.35]]), D_MAX - d)
    rows = IrSequences(THETA, support, 0.05, rows=2)
    tests = [SequentialTest(THETA, support, 0.05) for _ in range(2)]
    for i in range(80):
        rows.update(u[:, i], d[:, i], [True, True])
        for r in range(2):
            tests[r].update(u[r, i], d[r, i])
    for r in range(2):
        assert rows.verdicts[r] == tests[r].verdict
        assert rows.interval(r) == tests[r].interval()
    assert rows.verdicts[1] is not None
