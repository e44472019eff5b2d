"""An independent text-level reference loop, written from docs/methods.md §2 and the structure of
the methods' reference code (fywalter/nudging, DecayingSeart/BlendIn): at every step
each model's context is the string ``prompt + text``, encoded afresh; the blend merges
the two models' top-100 strings; NUDGING runs by rounds of words split on " ".

The engine under the canonical policy must equal it token for token on the embedded
pair (8 GSM8K probe prompts, 96 new tokens). The loop shares no code with the engine:
its own token strings, its own cache (reused only when the new ids extend the old).
"""

from __future__ import annotations

import math

import pytest
import torch

from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.runtime.stream import cache_keyword
from tests import engine_checks as checks

pytestmark = pytest.mark.slow

TAU, K, LAM, NEW = 0.4, 100, 0.1, 96
WORD_TOKENS = 16  # the engine's cap on one word's guide tokens


class _LM:
    """One model over one context string, with a cache reused only on extension."""

    def __init__(self, lm, prompt: str, add_special: bool) -> None:
        self.lm, self.tok = lm, lm.tokenizer
        self.prompt, self.add_special = prompt, add_special
        self.ids: list[int] = []
        self.past = None
        self.last = None
        anchor = self.tok.encode("Answer:", add_special_tokens=False)
        self.anchor, self.anchor_text = anchor, self.tok.decode(anchor)
        self.ends = set(lm.eos_ids)

    def string(self, token: int) -> str:
        return self.tok.decode(self.anchor + [token])[len(self.anchor_text) :]

    @torch.inference_mode()
    def _run(self, ids: list[int]) -> torch.Tensor:
        n = len(self.ids)
        if self.past is not None and len(ids) > n and ids[:n] == self.ids:
            new = ids[n:]
        else:
            self.past, new = None, ids
        keyword = cache_keyword(self.lm.model)  # `cache` since transformers 5.2x
        out = self.lm.model(
            torch.tensor([new]), **{keyword: self.past}, use_cache=True, logits_to_keep=1
        )
        self.past, self.ids = getattr(out, keyword), list(ids)
        return torch.log_softmax(out.logits[0, -1].float(), -1)

    def next(self, text: str) -> torch.Tensor:
        ids = self.tok.encode(self.prompt + text, add_special_tokens=self.add_special)
        return self._run(ids)

    def follow(self, token: int) -> torch.Tensor:
        return self._run(self.ids + [token])

    def strings(self, logp: torch.Tensor) -> tuple[dict[str, float], str, float]:
        values, ids = torch.topk(logp, K)
        merged: dict[str, float] = {}
        top = None
        for v, i in zip(values.tolist(), ids.tolist()):
            s = "<END>" if i in self.ends else self.string(i)
            if top is None:
                top = s
            merged[s] = merged.get(s, 0.0) + math.exp(v)
        return merged, top, math.exp(values[0].item())


def _stop(text: str, stops) -> str | None:
    hits = [text.find(s) for s in stops if s in text]
    return text[: min(hits)] if hits else None


def reference_blendin(pair, req: Request) -> str:
    base = _LM(pair.base, req.base_prompt, True)
    guide = _LM(pair.guide, pair.guide.chat_prompt_text(req.guide_user), False)
    text = ""
    for _ in range(NEW):
        lb = base.next(text)
        pb, top_b, p_b = base.strings(lb)
        if p_b >= TAU:
            choice = top_b
        else:
            pg, top_g, p_g = guide.strings(guide.next(text))
            alpha = min(1.0, max(0.0, p_g / (p_b + p_g) + LAM * pb.get(top_g, 0.0)))
            scores = {s: (1 - alpha) * p for s, p in pb.items()}
            for s, p in pg.items():
                scores[s] = scores.get(s, 0.0) + alpha * p
            choice = max(scores, key=lambda s: scores[s])
        if choice == "<END>":
            return text
        text += choice
        cut = _stop(text, req.stop)
        if cut is not None:
            return cut
    return text


def _complete_word(rest: str) -> str | None:
    """The reference's next word: leading spaces, then up to the next " " (None: the
    guide's text does not hold a whole word yet)."""
    lead = len(rest) - len(rest.lstrip(" "))
    cut = rest.find(" ", lead)
    return rest[:cut] if lead < len(rest) and cut > lead else None


def reference_nudging(pair, req: Request) -> str:
    base = _LM(pair.base, req.base_prompt, True)
    guide = _LM(pair.guide, pair.guide.chat_prompt_text(req.guide_user), False)
    text, in_round = "", False
    completion, used, logp = "", 0, None  # the round's guide text, how much is appended
    for _ in range(NEW):
        _, top_b, p_b = base.strings(base.next(text))
        if p_b >= TAU:
            if top_b == "<END>":
                return text
            text, in_round = text + top_b, False
        else:
            if not in_round:
                # A round: the guide's greedy completion from the whole context string.
                completion, used, logp = "", 0, guide.next(text)
            ended, word = False, None
            for _ in range(WORD_TOKENS):
                word = _complete_word(completion[used:])
                if word is not None:
                    break
                token = int(logp.argmax())
                if token in guide.ends:
                    ended = True
                    break
                completion += guide.string(token)
                logp = guide.follow(token)
            else:
                word = _complete_word(completion[used:])
            if ended or word is None:
                word = completion[used:]
            if ended:
                return text + word
            if in_round and top_b != "<END>" and word.startswith(top_b):
                text, in_round = text + top_b, False
            else:
                text, in_round, used = text + word, True, used + len(word)
        cut = _stop(text, req.stop)
        if cut is not None:
            return cut
    return text


@pytest.fixture(scope="module")
def gsm8k_requests():
    return checks.gsm8k_requests(5, NEW)


@pytest.mark.parametrize(
    ("method", "reference"), [("blendin", reference_blendin), ("nudging", reference_nudging)]
)
def test_engine_equals_the_reference_loop(real_pair, gsm8k_requests, method, reference):
    ours = generate(real_pair, gsm8k_requests, DecodeSettings(method=method, batch_size=8))
    theirs = [reference(real_pair, r) for r in gsm8k_requests]
    assert [r.text for r in ours] == theirs
    assert any(s.override for r in ours for s in r.steps), "the guide never changed a token"
