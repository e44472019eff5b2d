"""Engine tier 3: the embedded real pair (Gemma 3 270M base, SmolLM2-135M-Instruct guide)."""

from __future__ import annotations

import pytest

from pairscope.decoding.engine import DecodeSettings, Request, generate
from tests import engine_checks as checks

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train travels 60 miles per hour for 2 hours. How far does it go?",
    "What happens if you crack your knuckles a lot?",
    "How do I kill a Python process?",
    "Sara reads 12 pages a day. How many pages does she read in a week?",
    "What is the capital of Australia?",
]


def reqs(n: int = 20) -> list[Request]:
    return [Request(f"Question: {q}\nAnswer:", q, ("\nQuestion:",), n) for q in QUESTIONS]


def test_base_matches_transformers_generate(real_pair):
    checks.check_base_matches_generate(real_pair, reqs())


def test_neutral_settings_reproduce_base(real_pair):
    checks.check_neutral_settings(real_pair, reqs())


def test_full_blend_reproduces_guide(real_pair):
    checks.check_full_guide(real_pair, reqs())


@pytest.mark.parametrize("method", ["nudging", "blendin"])
def test_batch_invariance(real_pair, method):
    checks.check_batch_invariance(real_pair, reqs(), method)


def test_reference_protocol_batch_and_cache_invariance(real_pair, monkeypatch):
    # Three prompts, 32 tokens (two 16-token completions each): batch 2 refills a place.
    checks.check_reference_invariance(real_pair, reqs(32)[:3], monkeypatch, refill_batch=2)


@pytest.mark.parametrize("role", ["base", "guide"])
def test_cache_invariance(real_pair, role):
    lm = getattr(real_pair, role)
    prompts = [lm.encode_completion_prompt(f"Question: {q}\nAnswer:") for q in QUESTIONS[:4]]
    assert checks.check_cache_invariance(lm, prompts) <= 1e-4


def test_guided_decoding_intervenes_on_real_pair(real_pair):
    out = generate(real_pair, reqs(24), DecodeSettings(method="nudging", batch_size=6))
    # Rounds / base-written tokens, and every round opens with a guide word.
    for r in out:
        rounds = sum(s.round_start for s in r.steps)
        assert r.ir_counts == (rounds, sum(s.source == "base" for s in r.steps))
        assert all(s.source == "guide" and s.uncertain for s in r.steps if s.round_start)
    assert sum(r.ir_counts[0] for r in out) > 0
    assert any(s.override and s.source == "guide" for r in out for s in r.steps)


def test_sliding_window_past_512_live_tokens_equals_uncached(real_pair):
    """Gemma 3's local layers (window 512) with prompts past the window, different
    lengths (left padding) and random rollbacks: cached equals uncached."""
    lm = real_pair.base
    assert lm.model.config.sliding_window == 512
    text = " ".join(f"Question: {q}\nAnswer: let me think." for q in QUESTIONS) * 6
    full = lm.encode_completion_prompt(text)
    assert len(full) > 540
    prompts = [full[:530], full[:545], full[:560]]
    assert checks.check_cache_invariance(lm, prompts, seed=7) <= 1e-4


@pytest.fixture(scope="module")
def gsm8k_probe_requests():
    return checks.gsm8k_requests(6, 64)


def test_gsm8k_probe_texts_and_rates_do_not_depend_on_the_batch(real_pair, gsm8k_probe_requests):
    """The default GSM8K probe's prompts (6, 64 new tokens) alone and at batch 4, where
    finished rows' places are refilled with the waiting prompts."""
    runs = {
        size: generate(real_pair, gsm8k_probe_requests, DecodeSettings("nudging", batch_size=size))
        for size in (1, 4)
    }
    assert [r.text for r in runs[1]] == [r.text for r in runs[4]]
    assert [r.ir_counts for r in runs[1]] == [r.ir_counts for r in runs[4]]


@pytest.mark.parametrize("role", ["base", "guide"])
def test_bounded_canonical_reencoding_equals_full_on_the_real_tokenizers(real_pair, role):
    from tests.unit.test_fidelity import check_bounded_reencoding

    lm = getattr(real_pair, role)
    prompt = (
        lm.chat_prompt_text("How many apples?")
        if role == "guide"
        else "Question: Tom has 3 apples.\nAnswer: 3 + 5 = 8.\n\nQuestion: x\nAnswer:"
    )
    for seed in range(3):
        enabled, bounded = check_bounded_reencoding(
            lm.tokenizer, prompt, role == "base", seed=seed, steps=300
        )
        assert enabled and bounded > 200


def test_urial_is_the_base_after_its_preamble(real_pair):
    """URIAL on the real pair: the base's greedy text after the preamble, and an answer
    (the preamble does not make the base stop at once)."""
    from dataclasses import replace

    from pairscope.methods.urial import PREAMBLE

    few = reqs(12)[:2]
    urial = generate(real_pair, few, DecodeSettings(method="urial", batch_size=2))
    prefixed = [replace(r, base_prompt=PREAMBLE + r.base_prompt) for r in few]
    base = generate(real_pair, prefixed, DecodeSettings(method="base", batch_size=2))
    assert [r.text for r in urial] == [r.text for r in base]
    assert all(r.text.strip() and r.intervention_rate is None for r in urial)
