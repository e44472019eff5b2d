"""Every tokenizer family with a tiny random model: own-policy base decoding equals
transformers generate(), a full blend through a base of another family equals the
guide, NUDGING's two schedules agree, and cached passes equal uncached ones after own,
foreign and rollback appends."""

from __future__ import annotations

import pytest

from pairscope.decoding.engine import DecodeSettings, Request, generate
from tests import engine_checks as checks
from tests.conftest import CHAT_TEMPLATE, CORPUS, TINY
from tests.families import FAMILIES, build

PROMPTS = [
    "Tom has 3 apples and",
    "The capital of France is",
    "I cannot help with",
    "Let's think step by step",
    "The quick brown fox",
    "Answer: Tom has",
    "How many apples",
    "days in a year",
]


def _save(root, family, seed, chat):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build(family, CORPUS)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = dict(
        TINY,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **config)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    path = root / f"{family}-{seed}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=FAMILIES)
def family_pair(request, tmp_path_factory):
    """Base of one family, guide of the next family in the list."""
    from pairscope.models import load_pair

    root = tmp_path_factory.mktemp("families")
    base_family = request.param
    guide_family = FAMILIES[(FAMILIES.index(base_family) + 1) % len(FAMILIES)]
    base = _save(root, base_family, 0, chat=False)
    guide = _save(root, guide_family, 1, chat=True)
    return load_pair(str(base), str(guide), device="cpu", dtype="float32")


def _reqs(n=16):
    return [Request(p, p, (), n) for p in PROMPTS]


def test_own_policy_base_equals_generate(family_pair):
    checks.check_base_matches_generate(family_pair, _reqs())


@pytest.mark.parametrize("tokenization", ["canonical", "own"])
def test_full_blend_through_another_family_equals_guide(family_pair, tokenization):
    guide = generate(
        family_pair, _reqs(), DecodeSettings("guide", batch_size=3, tokenization=tokenization)
    )
    blend = generate(
        family_pair,
        _reqs(),
        DecodeSettings("blend:1", tau=2.0, batch_size=4, tokenization=tokenization),
    )
    assert [b.text for b in blend] == [g.text for g in guide]
    assert any(g.text.strip() for g in guide)


@pytest.mark.parametrize("role", ["base", "guide"])
def test_cached_equals_uncached(family_pair, role):
    lm = getattr(family_pair, role)
    prompts = [lm.encode_completion_prompt(p) for p in PROMPTS[:4]]
    assert checks.check_cache_invariance(lm, prompts, seed=3) <= 1e-4


@pytest.mark.parametrize("tokenization", ["canonical", "own"])
def test_nudging_one_pass_schedule_equals_lockstep(family_pair, tokenization, monkeypatch):
    """NUDGING's one-pass schedule lets the base read a word before it has ended and
    puts its context back when the word turns out otherwise. Through every family's
    base tokenizer (Llama-2 legacy and Metaspace re-encode differently from byte-level
    BPE and Gemma) it writes the texts and traces of the lockstep word loop."""
    from pairscope.decoding.engine import Engine

    def decode(one_pass: bool) -> list:
        monkeypatch.setattr(Engine, "one_pass_words", one_pass)
        settings = DecodeSettings("nudging", tau=0.6, batch_size=4, tokenization=tokenization)
        return generate(family_pair, _reqs(24), settings)

    one_pass, lockstep = decode(True), decode(False)
    assert [r.text for r in one_pass] == [r.text for r in lockstep]
    assert sum(r.ir_counts[0] for r in one_pass) > 0  # rounds happened
    for a, b in zip(one_pass, lockstep):
        assert len(a.steps) == len(b.steps)
        for x, y in zip(a.steps, b.steps):
            assert x.p_base == pytest.approx(y.p_base, rel=1e-5, abs=1e-6), (x, y)
            assert x.p_guide == pytest.approx(y.p_guide, rel=1e-5, abs=1e-6), (x, y)
            assert (x.text, x.source, x.uncertain, x.round_start, x.overlap) == (
                y.text,
                y.source,
                y.uncertain,
                y.round_start,
                y.overlap,
            )
