"""Teacher forcing: the shared-prefix forcer against uncached passes, reuse of passes,
and the arbitration check against a brute-force oracle (tiny random models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pairscope.backends.local import LocalForcer as Forcer
from pairscope.pipeline.teacher import arbitration, forced_tokens, option_probs
from pairscope.runtime.vocab import TokenText

TOL = 1e-5


def _uncached(model, ids: list[int], keep: int) -> torch.Tensor:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
    return torch.log_softmax(logits, dim=-1)[-keep:]


def _prompts(lm, texts: list[str]) -> list[list[int]]:
    head = "Question: a long shared few-shot block. Answer: fine.\n" * 3
    return [lm.encode_completion_prompt(head + t) for t in texts]


@pytest.mark.parametrize("role", ["base", "guide"])
def test_shared_prefix_pass_equals_uncached_pass(tiny_pair, role):
    lm = getattr(tiny_pair, role)
    prompts = _prompts(lm, ["What is two?", "Name a colour.", "Why is the sky blue?"])
    forcer = Forcer(lm, prompts)
    assert len(forcer.prefix) >= Forcer.MIN_PREFIX
    cont = lm.tokenizer.encode(" It is blue because of scattering.", add_special_tokens=False)
    for prompt in prompts:
        got = forcer.logprobs(prompt, cont)
        want = _uncached(lm.model, prompt + cont, len(cont) + 1)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=TOL)
    # A prompt without the shared prefix takes a full pass and is still right.
    other = lm.tokenizer.encode("Unrelated text", add_special_tokens=False)
    want = _uncached(lm.model, other + cont, len(cont) + 1)
    assert torch.allclose(forcer.logprobs(other, cont), want, atol=TOL)


def test_shared_prefix_beyond_a_sliding_window_equals_uncached_pass():
    from transformers import Gemma3ForCausalLM

    from tests.conftest import tiny_gemma3_config

    torch.manual_seed(3)
    config = tiny_gemma3_config(64, sliding_window=8)
    model = Gemma3ForCausalLM(config).eval()
    lm = SimpleNamespace(model=model)
    prefix = torch.randint(3, 64, (20,)).tolist()
    prompts = [prefix + torch.randint(3, 64, (n,)).tolist() for n in (3, 5, 9)]
    forcer = Forcer(lm, prompts)  # type: ignore[arg-type]
    assert forcer.prefix == prefix
    cont = torch.randint(3, 64, (12,)).tolist()
    for prompt in prompts:
        want = _uncached(model, prompt + cont, len(cont) + 1)
        assert torch.allclose(forcer.logprobs(prompt, cont), want, atol=TOL)


def test_calibration_then_arbitration_then_options_reuse_one_pass(tiny_pair):
    lm = tiny_pair.base
    prompts = _prompts(lm, ["Pick one.", "Pick another."])
    forcer = Forcer(lm, prompts)
    ref = lm.tokenizer.encode(" the answer is B", add_special_tokens=False)
    passes = []
    hook = lm.model.register_forward_hook(lambda *a: passes.append(1))
    try:
        first = forcer.scores(prompts[0], ref)
        assert torch.equal(forcer.scores(prompts[0], ref), first)
        row0 = forcer.next_logprobs(prompts[0])
        assert len(passes) == 1
    finally:
        hook.remove()
    assert torch.equal(row0, forcer.logprobs(prompts[0], ref)[0])
    fresh = Forcer(lm).next_logprobs(prompts[0])
    assert torch.allclose(row0, fresh, atol=TOL)
    assert option_probs(lm, prompts[0], "ABCD", forcer) == pytest.approx(
        option_probs(lm, prompts[0], "ABCD"), abs=TOL
    )
    # Different prompt: a new pass, not the memo.
    assert not torch.equal(forcer.next_logprobs(prompts[1]), row0)


def test_forced_tokens_with_a_forcer_equal_those_without(tiny_pair):
    lm = tiny_pair.guide
    prompts = _prompts(lm, ["One?", "Two?"])
    forcer = Forcer(lm, prompts)
    for prompt in prompts:
        a = forced_tokens(lm, prompt, " a reference text here", forcer)
        b = forced_tokens(lm, prompt, " a reference text here")
        assert a.correct == b.correct
        assert a.confidence == pytest.approx(b.confidence, abs=TOL)
        assert len(a.confidence) == len(
            lm.tokenizer.encode(" a reference text here", add_special_tokens=False)
        )


def _oracle_guide_correct(pair, bprompt, gprompt, text, tau):
    """Brute force: at each base-uncertain position, an uncached guide pass over the
    guide prompt + the guide's encoding of the reference text before that position."""
    base, guide = pair.base, pair.guide
    ref = base.tokenizer.encode(text, add_special_tokens=False)
    blogp = _uncached(base.model, bprompt + ref, len(ref) + 1)[:-1]
    gvocab = TokenText(guide.tokenizer, guide.eos_ids, 1)
    out = []
    for i, p in enumerate(blogp.max(dim=-1).values.exp().tolist()):
        if p >= tau:
            continue
        prefix = text[: len(base.tokenizer.decode(ref[:i]))]
        gids = guide.tokenizer.encode(prefix, add_special_tokens=False)
        glogp = _uncached(guide.model, gprompt + gids, 1)[0]
        key = gvocab.key(int(glogp.argmax()))
        piece = key if isinstance(key, str) else ""
        out.append(bool(piece) and text[len(prefix) :].startswith(piece))
    return out


def test_arbitration_matches_a_brute_force_oracle(tiny_pair):
    text = " the cat sat on the mat and then it ran away quickly"
    bprompts = _prompts(tiny_pair.base, ["Tell a story.", "Another story."])
    gprompts = [tiny_pair.guide.encode_chat_prompt(q) for q in ("Tell a story.", "Another story.")]
    forcers = (Forcer(tiny_pair.base, bprompts), Forcer(tiny_pair.guide, gprompts))
    for bp, gp in zip(bprompts, gprompts):
        # tau=2 makes every position uncertain, so every offset is checked.
        got = arbitration(tiny_pair, (bp, gp), text, tau=2.0, forcers=forcers)
        plain = arbitration(tiny_pair, (bp, gp), text, tau=2.0)
        assert got == plain
        assert len(got.base) == len(tiny_pair.base.tokenizer.encode(text, add_special_tokens=False))
        assert got.guide == _oracle_guide_correct(tiny_pair, bp, gp, text, 2.0)
