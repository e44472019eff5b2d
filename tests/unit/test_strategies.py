"""Blend, alpha and NUDGING decisions on synthetic distributions (hand-computed)."""

from __future__ import annotations

import pytest

from pairscope.errors import InputError
from pairscope.methods import Knobs, build
from pairscope.methods.blendin import Blend, auto_alpha, blend_pick
from pairscope.methods.nudging import Nudging
from pairscope.runtime.scores import merge_topk
from pairscope.runtime.vocab import END


def make_strategy(method, **knobs):
    """A method's strategy by its name, as the registry builds it for a run."""
    return build(method, Knobs(**knobs))


def top(pairs, ids=None):
    keys = [k for k, _ in pairs]
    probs = [p for _, p in pairs]
    return merge_topk(ids or list(range(len(pairs))), probs, keys)


def test_merge_sums_ids_that_decode_to_one_string_and_keeps_the_best_id():
    merged = merge_topk([7, 3, 9], [0.3, 0.25, 0.2], [" the", " a", " the"])
    assert merged.keys == (" the", " a")
    assert merged.probs == pytest.approx((0.5, 0.25))
    assert merged.ids == (7, 3)
    # top_prob is the unmerged top-1 token probability, as the alpha formula needs.
    assert merged.top_prob == 0.3 and merged.top_key == " the"


def test_strings_missing_from_one_list_count_zero_there():
    base = top([(" cat", 0.35), (" dog", 0.30)])
    guide = top([(" bird", 0.6), (" dog", 0.3)])
    # alpha 0.5: cat 0.175, dog 0.30, bird 0.30 -> dog and bird tie; dog is ranked first in base
    key, score = blend_pick(base, guide, 0.5)
    assert key == " dog" and score == pytest.approx(0.30)
    key, score = blend_pick(base, guide, 0.6)
    # cat .14, dog .12 + .18 = .30, bird .36
    assert key == " bird" and score == pytest.approx(0.36)


def test_auto_alpha_formula_hand_computed():
    base = top([(" cat", 0.3), (" dog", 0.2)])
    guide = top([(" dog", 0.6), (" cow", 0.1)])
    # p_g / (p_b + p_g) + lam * P_b(s_g) = 0.6 / 0.9 + 0.1 * 0.2
    assert auto_alpha(base, guide, 0.1) == pytest.approx(0.6 / 0.9 + 0.02)


def test_auto_alpha_is_clipped_to_one():
    base = top([(" dog", 0.05), (" cat", 0.04)])
    guide = top([(" dog", 0.99)])
    assert auto_alpha(base, guide, 10.0) == 1.0


def test_neutral_and_full_weights():
    base = top([(" cat", 0.3), (" dog", 0.29)])
    guide = top([(" dog", 0.9)])
    assert blend_pick(base, guide, 0.0)[0] == " cat"
    assert blend_pick(base, guide, 1.0)[0] == " dog"


def test_blend_decision_carries_ownership_of_the_chosen_string():
    base = merge_topk([11, 12], [0.3, 0.2], [" cat", " dog"])
    guide = merge_topk([21, 22], [0.6, 0.3], [" dog", " cow"])
    decision = Blend(tau=0.4).decide(base, guide, {" cat": " cat", " dog": " dog", " cow": " cow"})
    assert decision.key == " dog" and decision.override
    assert decision.base_id == 12 and decision.guide_ids == (21,)
    assert decision.alpha == pytest.approx(0.6 / 0.9 + 0.1 * 0.2)


def test_end_symbol_is_shared_so_both_models_can_agree_to_stop():
    base = top([(END, 0.35), (" and", 0.3)])
    guide = top([(END, 0.8)])
    assert blend_pick(base, guide, 0.5)[0] == END


def test_nudging_agreement_applies_only_inside_a_round():
    assert Nudging.choose(True, " Therefore", False, " The") == "base"
    assert Nudging.choose(False, " Therefore", False, " The") == "guide"
    assert Nudging.choose(True, " So", False, " The") == "guide"
    assert Nudging.choose(True, " So", True, " The") == "end"


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("blendn", {}),
        ("blend:2", {}),
        ("blend:x", {}),
        ("nudging", {"tau": -0.1}),
        ("blendin", {"lam": -1}),
        ("blendin", {"top_k": 0}),
    ],
)
def test_bad_settings_are_input_errors(method, kwargs):
    with pytest.raises(InputError):
        make_strategy(method, **kwargs)


def test_misspelt_method_suggests_the_close_name():
    with pytest.raises(InputError, match="Did you mean 'blendin'"):
        make_strategy("blendn")


def _merge_reference(ids, probs, keys):
    """merge_topk's dictionary merge, written out once more (the oracle of its fast path)."""
    total, best = {}, {}
    for i, p, k in zip(ids, probs, keys):
        if k in total:
            total[k] += p
        else:
            total[k], best[k] = p, i
    order = sorted(total, key=lambda k: -total[k])
    return order, [total[k] for k in order], [best[k] for k in order]


def test_merge_topk_fast_path_equals_the_dictionary_merge():
    import random

    from pairscope.runtime.scores import merge_topk

    rng = random.Random(7)
    for trial in range(300):
        n = rng.randint(1, 30)
        probs = [rng.choice([0.5, 0.25, rng.random()]) for _ in range(n)]
        if trial % 3:
            probs.sort(reverse=True)  # the usual rank order; every third list is not
        if trial % 2:  # distinct keys, or keys shared by several ids
            keys = [f"u{j}" for j in range(n)]
        else:
            keys = [f"k{rng.randrange(max(1, n // 3))}" for _ in range(n)]
        ids = list(range(100, 100 + n))
        got = merge_topk(ids, probs, keys)
        order, merged, best = _merge_reference(ids, probs, keys)
        assert list(got.keys) == order
        assert list(got.probs) == merged
        assert list(got.ids) == best
        assert got.top_prob == probs[0] and got.top_key == keys[0]


def test_urial_takes_an_optional_preamble_file_and_is_never_gated(tmp_path):
    from pairscope import methods
    from pairscope.methods.urial import PREAMBLE, Urial

    plain = make_strategy("urial")
    assert isinstance(plain, Urial) and plain.preamble == PREAMBLE and plain.ir_kind is None
    assert PREAMBLE.startswith("# Instructions") and PREAMBLE.count("# User:") == 3
    own = tmp_path / "mine.txt"
    own.write_text("Be brief.\n", encoding="utf-8")
    mine = make_strategy(f"urial:{own}")
    assert mine.preamble == "Be brief.\n" and mine.name == f"urial:{own}"
    with pytest.raises(InputError, match="Cannot read"):
        make_strategy(f"urial:{tmp_path / 'missing.txt'}")
    assert not methods.is_gated("urial") and "urial" not in methods.gated()
    with pytest.raises(InputError, match="no intervention rate"):
        methods.check_gated("urial")
    assert ("urial", "base") in methods.pairs_in(["base", "urial"])
    assert "urial[:FILE]" in methods.choices_text()
