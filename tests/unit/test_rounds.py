"""NUDGING's reference protocol (methods/nudging_reference.py) against scripted completions: the
word split and the unused last word, acceptance, the base's turn, the repeat checks,
the stops, the final trim and the counting."""

from __future__ import annotations

from pairscope.decoding.types import IR_REFERENCE, SampleResult
from pairscope.methods import Knobs, build
from pairscope.methods.nudging_reference import (
    Ask,
    Completion,
    Limits,
    ReferenceNudging,
    RoundsResult,
    nudging_row,
    repeated_suffix,
    repeats_text,
    trim_repetitions,
)


def words_count(text: str) -> int:
    """A stand-in length counter: one token per space-separated piece."""
    return len(text.split()) if text.strip() else 0


def c(tokens: list[str], probs: list[float] | None = None, ended: bool = False) -> Completion:
    probs = probs if probs is not None else [0.9] * len(tokens)
    return Completion(tuple(tokens), tuple(probs), "".join(tokens), ended)


def play(script, limits: Limits = Limits(max_tokens=12)) -> tuple[RoundsResult, list[Ask]]:
    """Run one row, answering each ask with ``script(ask)``; the result and the asks."""
    row = nudging_row(limits, words_count)
    asks = []
    ask = next(row)
    try:
        while True:
            asks.append(ask)
            ask = row.send(script(ask))
    except StopIteration as stop:
        return stop.value, asks


def test_repeat_helpers():
    assert repeats_text(" a b c d e f", "x a b c d e f y")
    assert not repeats_text(" a b c d", "x a b c d y")  # five words or fewer
    assert not repeats_text(" a b c d e g", "x a b c d e f y")
    line = "The answer is 22. The answer is 22."
    assert repeated_suffix(line * 2) == len(line)
    assert trim_repetitions("  " + line * 2 + "  ") == line
    # Bisection over a predicate that is not monotone (as the reference searches) can
    # miss a repeat: three copies are kept whole.
    assert trim_repetitions(line * 3) == line * 3
    assert trim_repetitions("short short ") == "short short"  # under 30 characters


def test_first_word_taken_and_the_last_never_offered():
    # The guide writes " One two thr" (cut): " One" is taken without asking; the base
    # is asked after " One" (is " two" next?) and after " One two" (" thr"?), rejected
    # both times; " thr" itself is never appended.
    def script(ask):
        if ask.model == "guide":
            return c([" One", " two", " thr"]) if ask.text == "" else c([], ended=True)
        return c([" X"], [0.1])

    result, asks = play(script)
    assert [a.text for a in asks if a.model == "base"] == [" One", " One two"]
    assert result.text == "One two"  # round 1: " One two"; then the guide ends
    assert (result.rounds, result.base_tokens) == (1, 0)
    assert result.stop_reason == "nudging_model_stop"


def test_accepted_token_then_base_turn_counts_re_encoded_tokens():
    def script(ask):
        if ask.model == "guide":
            return c([" Yes", " it", " is"]) if ask.text == "" else c([], ended=True)
        if ask.text == " Yes":  # the base starts " it" itself: accepted (a prefix)
            return c([" i", "t", " rains", " now", " here"], [0.1, 0.9, 0.9, 0.2, 0.9])
        raise AssertionError(ask)

    result, asks = play(script)
    # " i" is the accepted first token; its turn runs to " now" (below tau): " it rains".
    assert result.text == "Yes it rains"
    assert result.rounds == 1
    assert result.base_tokens == words_count(" it rains")


def test_base_continues_in_completions_until_uncertain():
    def script(ask):
        if ask.model == "guide":
            return c([" A", " B"]) if ask.text == "" else c([], ended=True)
        if ask.text == " A":
            return c([" B", " c"], [0.9, 0.9])
        if ask.text == " A B c":
            return c([" d", " e"], [0.9, 0.3])
        raise AssertionError(ask)

    result, asks = play(script)
    assert result.text == "A B c d"
    assert [a.text for a in asks] == ["", " A", " A B c", " A B c d"]


def test_a_repeated_base_completion_ends_its_turn():
    loop = [" x", " y", " z", " w", " v", " u"]

    def script(ask):
        if ask.model == "guide":
            return c([" go", " x"]) if ask.text == "" else c([], ended=True)
        if ask.text == " go":
            return c([" x", *loop])  # accepted " x", then six words
        return c(loop)  # the same six words again: already in the text

    result, _ = play(script, Limits(max_tokens=60))
    assert result.text == "go x" + "".join(loop)


def test_three_identical_rounds_stop_the_response():
    def script(ask):
        if ask.model == "guide":
            return c([" same", " again"])
        return c([" no"], [0.1])

    result, asks = play(script, Limits(max_tokens=100))
    assert result.stop_reason == "repeated_nudging_words"
    assert result.rounds == 3  # the fourth identical round ends it uncounted
    assert result.text.split() == ["same"] * 3


def test_the_length_budget_and_the_stop_reason():
    def script(ask):
        if ask.model == "guide":
            return c([" w" + str(len(ask.text)), " z"])
        return c([" q"] * 16, [0.9] * 16)

    result, _ = play(script, Limits(max_tokens=10))
    assert result.stop_reason == "length"
    assert words_count(result.text) >= 10


def test_reference_strategy_is_a_protocol_of_nudging():
    strategy = build("nudging", Knobs(protocol="reference"))
    assert isinstance(strategy, ReferenceNudging) and strategy.completes
    assert strategy.ir_kind == IR_REFERENCE
    assert not build("nudging").completes
    result = SampleResult("x", "nudging", [], ir_kind=IR_REFERENCE, counted=(3, 12))
    assert result.intervention_rate == 0.25
    assert result.to_dict()["ir_numerator"] == 3


def test_a_stop_string_ends_the_response_and_the_count():
    def script(ask):
        if ask.model == "guide":
            return c([" A", " B"])
        return c([" B", " c", "\n\n", "Question", " d"], [0.9] * 5)

    row = nudging_row(Limits(max_tokens=60), words_count, ("\n\n",))
    ask, asks = next(row), []
    try:
        while True:
            asks.append(ask)
            ask = row.send(script(ask))
    except StopIteration as stop:
        result = stop.value
    assert result.text == "A B c"
    assert result.stop_reason == "stop"
    assert (result.rounds, result.base_tokens) == (1, words_count(" B c"))


def _fake_model(seed: int):
    """A deterministic stand-in model: a completion is a function of (model, context),
    its tokens drawn from a small vocabulary of word pieces (repeats included), the
    guide sometimes ending its turn."""
    import random

    pieces = [" a", " b", "c", " d", " a b", ".", " e", "f", " a a"]

    def answer(ask: Ask) -> Completion:
        rng = random.Random(f"{seed}|{ask.model}|{ask.text}")
        tokens: list[str] = []
        probs: list[float] = []
        for _ in range(ask.tokens):
            if ask.model == "guide" and rng.random() < 0.04:
                tokens.append("<end>")
                probs.append(0.9)
                return Completion(tuple(tokens), tuple(probs), "".join(tokens[:-1]), True)
            tokens.append(rng.choice(pieces))
            probs.append(rng.choice([0.1, 0.3, 0.5, 0.8, 0.95, 0.99]))
        return Completion(tuple(tokens), tuple(probs), "".join(tokens), False)

    return answer


def _read_as_complete_does(answer, ask: Ask) -> tuple[Completion, int]:
    """Answer ``ask`` as decoding/completions.complete does: token by token, stopping
    once ``ask.enough`` says the asker has read enough; also the tokens computed."""
    whole = answer(ask)
    if ask.enough is None or whole.ended:
        return whole, len(whole.tokens)
    for n in range(1, len(whole.tokens) + 1):
        part = Completion(whole.tokens[:n], whole.top_probs[:n], "".join(whole.tokens[:n]), False)
        if ask.enough(part):
            return part, n
    return whole, len(whole.tokens)


def test_reading_only_what_the_loop_reads_changes_no_result():
    """Ask.enough lets the engine stop a base completion early; over many seeded fake
    models the loop's result is the same as with every completion whole, and tokens
    are saved."""
    saved = 0
    for seed in range(300):
        answer = _fake_model(seed)
        computed = 0

        def short(ask: Ask, answer=answer) -> Completion:
            nonlocal computed
            part, n = _read_as_complete_does(answer, ask)
            computed += n
            return part

        limits = Limits(tau=0.4, completion_tokens=8, max_tokens=40)
        whole, _ = play(answer, limits)
        early, _ = play(short, limits)
        assert early == whole, seed
        full = sum(len(answer(a).tokens) for a in play(answer, limits)[1])
        assert computed <= full
        saved += full - computed
    assert saved > 0
