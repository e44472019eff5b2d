"""Every tokenizer family with a tiny random model: own-policy base decoding equals
transformers generate(), a full blend through a base of another family equals the
guide, NUDGING's two schedules agree, and cached passes equal uncached ones after own,
foreign and rollback appends."""

from __future__ import annotations

import pytest

from pairscope.decoding.engine import DecodeSettings, Request, generate
from tests import engine_checks as checks
from tests import nudging_schedules as schedules
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


# The heads' scale: at 12 a tiny random model is uncertain nearly everywhere (a NUDGING
# round then never meets a confident base); at 36 about half its positions are, as the
# stand-ins of bench/standin.py are tuned to be.
FLAT, SHARP = 12.0, 36.0


def _save(root, family, seed, chat, scale=FLAT):
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
        model.lm_head.weight.mul_(scale)
    path = root / f"{family}-{seed}-{scale:g}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _pair(family, tmp_path_factory, scale):
    """Base of one family, guide of the next family in the list."""
    from pairscope.models import load_pair

    root = tmp_path_factory.mktemp("families")
    guide_family = FAMILIES[(FAMILIES.index(family) + 1) % len(FAMILIES)]
    base = _save(root, family, 0, chat=False, scale=scale)
    guide = _save(root, guide_family, 1, chat=True, scale=scale)
    return load_pair(str(base), str(guide), device="cpu", dtype="float32")


@pytest.fixture(scope="module", params=FAMILIES)
def family_pair(request, tmp_path_factory):
    return _pair(request.param, tmp_path_factory, FLAT)


@pytest.fixture(scope="module", params=FAMILIES)
def sharp_pair(request, tmp_path_factory):
    """A family pair whose base is confident at about half of its positions."""
    return _pair(request.param, tmp_path_factory, SHARP)


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
    _one_pass_equals_lockstep(family_pair, tokenization, 0.6, monkeypatch)


@pytest.mark.parametrize("tokenization", ["canonical", "own"])
def test_nudging_one_pass_schedule_equals_lockstep_where_the_base_is_confident(
    sharp_pair, tokenization, monkeypatch
):
    """The same where the base is confident at about half of its positions: rounds end
    on a confident base, the base writes before the guide pass, and rounds start from the
    guide's id read ahead."""
    results = _one_pass_equals_lockstep(sharp_pair, tokenization, 0.4, monkeypatch)
    steps = [s for r in results for s in r.steps]
    assert sum(not s.uncertain for s in steps) > len(steps) / 4, "too few confident positions"


def _one_pass_equals_lockstep(pair, tokenization, tau, monkeypatch) -> list:

    def decode(one_pass: bool) -> list:
        if not one_pass:  # the lockstep word loop (a served guide's) on local models
            schedules.use_lockstep(monkeypatch)
        settings = DecodeSettings("nudging", tau=tau, batch_size=4, tokenization=tokenization)
        return generate(pair, _reqs(24), settings)

    one_pass, lockstep = decode(True), decode(False)
    assert [r.text for r in one_pass] == [r.text for r in lockstep]
    assert sum(r.ir_counts[0] for r in one_pass) > 0  # rounds happened
    _same_steps(one_pass, lockstep)
    return one_pass


def _same_steps(a_results: list, b_results: list) -> None:
    for a, b in zip(a_results, b_results):
        assert len(a.steps) == len(b.steps)
        for x, y in zip(a.steps, b.steps):
            assert x.p_base == pytest.approx(y.p_base, rel=1e-5, abs=1e-6), (x, y)
            if y.p_guide is None:  # a confident position: the guide was not read
                assert x.p_guide is None, (x, y)
            else:
                assert x.p_guide == pytest.approx(y.p_guide, rel=1e-5, abs=1e-6), (x, y)
            assert (x.text, x.source, x.uncertain, x.round_start, x.overlap) == (
                y.text,
                y.source,
                y.uncertain,
                y.round_start,
                y.overlap,
            )


def _read_ahead_both_ways(pair, monkeypatch, batch_size, owner, name, weigh) -> tuple[int, int]:
    """NUDGING with and without reading ahead: the texts and traces must be the same,
    with rounds. Returns each side's sum of ``weigh(*args)`` over calls of
    ``owner.name`` (read ahead first)."""
    count = [0]
    inner = getattr(owner, name)

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        count[0] += weigh(*args)
        return inner(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    sides = []
    for ahead in (True, False):
        schedules.use_one_pass(monkeypatch, read_ahead=ahead)
        count[0] = 0
        settings = DecodeSettings("nudging", tau=0.4, batch_size=batch_size)
        sides.append((generate(pair, _reqs(24), settings), count[0]))
    (ahead_results, ahead_count), (context_results, context_count) = sides
    assert [r.text for r in ahead_results] == [r.text for r in context_results]
    _same_steps(ahead_results, context_results)
    assert sum(r.ir_counts[0] for r in ahead_results) > 0  # rounds happened
    return ahead_count, context_count


def test_nudging_reading_ahead_saves_steps_and_changes_nothing_else(sharp_pair, monkeypatch):
    """The one-pass schedule gives the base's token to a row it writes for before the
    guide pass, and keeps the guide's greedy id there, so a round starting at the next
    position starts from it. Through every family that writes the same texts and traces
    as starting from the context alone, in fewer steps."""
    from pairscope.methods.nudging_words import WordSteps

    def row_steps(rows: list) -> int:
        return len(rows)  # the steps of each row, summed

    ahead, context = _read_ahead_both_ways(sharp_pair, monkeypatch, 4, WordSteps, "step", row_steps)
    assert ahead < context, (ahead, context)


def test_nudging_reads_ahead_only_in_a_guide_pass_made_anyway(sharp_pair, monkeypatch):
    """A step with no word open makes no guide pass to read ahead: at batch 1 the rows
    never share a pass, so reading ahead changes neither the guide's passes nor the
    steps (nor, as everywhere, the texts)."""
    from pairscope.decoding.engine import Engine

    def one_pass(*args: object) -> int:
        return 1  # every guide pass of the one-pass schedule is a sync

    ahead, context = _read_ahead_both_ways(
        sharp_pair, monkeypatch, 1, Engine, "guide_sync", one_pass
    )
    assert ahead == context, (ahead, context)


def test_reference_protocol_is_batch_and_cache_invariant(sharp_pair, monkeypatch):
    """NUDGING's reference protocol (16-token completions, re-encoded strings) through
    every family pair: the same texts and counts at any batch size, with refilled places
    and a shared prefix, and with every completion computed afresh."""
    checks.check_reference_invariance(sharp_pair, _reqs(24), monkeypatch)


def test_reference_protocol_counts_tokens_not_pieces(sharp_pair):
    """Under the reference protocol a step is a piece (a guide's words, a base's turn):
    a response's positions are its pieces' base tokens, its uncertain positions the
    rounds the loop counted, its overridden positions the guide's tokens."""
    from pairscope.decoding.types import Step
    from pairscope.schema import StepRecord

    settings = DecodeSettings("nudging", protocol="reference", batch_size=4)
    results = generate(sharp_pair, _reqs(24), settings)
    tok = sharp_pair.base.tokenizer

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False)) if text else 0

    for r in results:
        rounds, _ = r.ir_counts
        assert r.uncertain == rounds
        assert r.positions == sum(count(s.text) for s in r.steps)
        assert r.overridden == sum(count(s.text) for s in r.steps if s.source == "guide")
        for step in r.steps:  # a record keeps the weights
            assert StepRecord.model_validate(step.to_dict()).tokens == step.tokens
            assert Step.from_dict(step.to_dict()) == step
    assert any(r.positions > len(r.steps) for r in results)  # pieces of several tokens
