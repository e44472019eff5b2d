"""Teacher forcing on reference answers: calibration, the arbitration check, MC answers.

docs/methods.md §3. Each model reads its own prompt followed by the reference text; at
every reference token, confidence = max probability and correct = argmax equals
the reference token. The arbitration check walks the *base* tokenization of the
reference; at positions where the base is uncertain it asks the guide for its
next-token distribution after exactly the same text (the guide's context is
re-encoded at that text offset, through the same cached stream the engine uses).

Each backend forces its own way (``Backend.forcer``): a local model computes a
probe's shared prompt prefix once; a served model (``vllm:``) answers through the
server's prompt logprobs, exact for confidence, correctness and option letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pairscope.backends.base import Backend, Forcer
from pairscope.defaults import LAMBDA, TOP_K
from pairscope.methods.blendin import Blend
from pairscope.models import Pair
from pairscope.runtime.scores import top_k as topk_of
from pairscope.runtime.vocab import END, TokenText


@dataclass(frozen=True)
class ForcedTokens:
    """Per-token teacher-forced confidences of one model on one reference."""

    confidence: list[float]
    correct: list[bool]

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": self.confidence, "correct": self.correct}

    @classmethod
    def from_logprobs(cls, logp: torch.Tensor, reference: Sequence[int]) -> ForcedTokens:
        """From ``logp[t]``, the distribution that predicts ``reference[t]``."""
        if not reference:
            return cls([], [])
        top_logp, top_ids = logp[: len(reference)].max(dim=-1)
        target = torch.tensor(list(reference), device=top_ids.device)
        return cls(top_logp.exp().tolist(), (top_ids == target).tolist())


def forcer(lm: Backend, prompts: Sequence[Sequence[int]] = ()) -> Forcer:
    """Teacher forcing of ``lm`` over a probe's prompts (its backend's own forcer)."""
    return lm.forcer(prompts)


def forced_tokens(
    lm: Backend, prompt: list[int], reference_text: str, forcer: Forcer | None = None
) -> ForcedTokens:
    """Confidence and correctness at each reference token, under the model's own prompt."""
    reference = list(lm.tokenizer.encode(reference_text, add_special_tokens=False))
    if not reference:
        return ForcedTokens([], [])
    return ForcedTokens.from_logprobs((forcer or lm.forcer()).scores(prompt, reference), reference)


@dataclass(frozen=True)
class Arbitration:
    """At base-uncertain teacher-forced positions: was each pick a correct continuation?"""

    base: list[bool]
    guide: list[bool]
    confident: list[bool]
    blend: list[bool]

    @property
    def oracle(self) -> list[bool]:
        return [b or g for b, g in zip(self.base, self.guide)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "guide": self.guide,
            "confident": self.confident,
            "blend": self.blend,
        }


def _continues(rest: str, text: str) -> bool:
    """A pick is correct if it is non-empty and the remaining reference starts with it."""
    return bool(text) and rest.startswith(text)


def arbitration(
    pair: Pair,
    prompts: tuple[list[int], list[int]],
    reference_text: str,
    tau: float,
    *,
    lam: float = LAMBDA,
    top_k: int = TOP_K,
    forcers: tuple[Forcer, Forcer] | None = None,
) -> Arbitration:
    """Accuracy of base top-1, guide top-1, the more confident, and the BlendIn pick.

    ``prompts``: the base's and the guide's prompt. ``forcers`` (base, guide) reuse a
    shared prompt prefix and the calibration passes just made on the same reference.
    """
    base, guide = pair.base, pair.guide
    base_prompt, guide_prompt = prompts
    bforcer, gforcer = forcers or (base.forcer(), guide.forcer())
    bvocab = TokenText(base.tokenizer, base.eos_ids, 0)
    gvocab = TokenText(guide.tokenizer, guide.eos_ids, 1)
    reference = list(base.tokenizer.encode(reference_text, add_special_tokens=False))
    result = Arbitration([], [], [], [])
    if not reference:
        return result
    logp = bforcer.scores(base_prompt, reference)
    # Text offset of each base position: the decoded prefix of the reference tokens.
    offsets = [len(base.tokenizer.decode(reference[:i])) for i in range(len(reference))]
    top_logp, _ = logp.max(dim=-1)
    uncertain = [i for i, lp in enumerate(top_logp.exp().tolist()) if lp < tau]
    if not uncertain:
        return result
    # One teacher-forced guide pass serves every offset whose re-encoded prefix is a
    # prefix of the guide's encoding of the whole reference (the same ids, so the same
    # distribution); other offsets (inside a guide token) get their own cached pass.
    gfull = list(guide.tokenizer.encode(reference_text, add_special_tokens=False))
    gforced = gforcer.scores(guide_prompt, gfull) if gfull else None
    stream = None
    blend = Blend(tau=tau, alpha=None, lam=lam, top_k=top_k)
    for i in uncertain:
        prefix = reference_text[: offsets[i]]
        rest = reference_text[offsets[i] :]
        gprefix = list(guide.tokenizer.encode(prefix, add_special_tokens=False))
        j = len(gprefix)
        if gforced is not None and j < len(gfull) and gfull[:j] == gprefix:
            glogp = gforced[j]
        else:
            stream = stream or guide.new_stream(1)
            glogp = stream.forward({0: guide_prompt + gprefix})[0]
        btop = topk_of(logp[i], bvocab, top_k)
        gtop = topk_of(glogp, gvocab, top_k)
        b_text, g_text = _text(btop.top_key), _text(gtop.top_key)
        pick = blend.decide(btop, gtop, {})
        result.base.append(_continues(rest, b_text))
        result.guide.append(_continues(rest, g_text))
        confident = b_text if btop.top_prob >= gtop.top_prob else g_text
        result.confident.append(_continues(rest, confident))
        result.blend.append(_continues(rest, _text(pick.key)))
    return result


def _text(key: Any) -> str:
    """Model-unique keys (byte pieces, specials) and END never continue a text."""
    return key if isinstance(key, str) and key != END else ""


def option_probs(
    lm: Backend, prompt: list[int], letters: Sequence[str], forcer: Forcer | None = None
) -> list[float]:
    """Renormalised probabilities of each option letter as the next token.

    A letter may start the answer as "A" or " A"; both single-token spellings are summed.
    """
    spellings: list[list[int]] = []
    for letter in letters:
        ids = []
        for spelling in (letter, " " + letter):
            tok = lm.tokenizer.encode(spelling, add_special_tokens=False)
            if len(tok) == 1:
                ids.append(int(tok[0]))
        spellings.append(ids)
    probs = _next_probs(lm, prompt, sorted({t for ids in spellings for t in ids}), forcer)
    mass = [sum(probs[t] for t in ids) for ids in spellings]
    norm = sum(mass)
    return [m / norm for m in mass] if norm > 0 else [1.0 / len(letters)] * len(letters)


def _next_probs(
    lm: Backend, prompt: list[int], wanted: list[int], forcer: Forcer | None
) -> dict[int, float]:
    """Next-token probability of each wanted id after ``prompt``."""
    return (forcer or lm.forcer()).next_probs(prompt, wanted)
