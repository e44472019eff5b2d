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


@pytest.mark.parametrize("role", ["base", "guide"])
def test_cache_invariance(real_pair, role):
    lm = getattr(real_pair, role)
    prompts = [lm.encode_completion_prompt(f"Question: {q}\nAnswer:") for q in QUESTIONS[:4]]
    assert checks.check_cache_invariance(lm, prompts) <= 1e-4


def test_guided_decoding_intervenes_on_real_pair(real_pair):
    out = generate(real_pair, reqs(24), DecodeSettings(method="nudging", batch_size=6))
    rates = [r.intervention_rate for r in out]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert any(r > 0 for r in rates)
    assert any(s.override and s.source == "guide" for r in out for s in r.steps)
