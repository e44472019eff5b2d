"""Teacher forcing on reference answers: calibration, the arbitration check, MC answers.

DESIGN.md §3. Each model reads its own prompt followed by the reference text; at
every reference token, confidence = max probability and correct = argmax equals
the reference token. The arbitration check walks the *base* tokenization of the
reference; at positions where the base is uncertain it asks the guide for its
next-token distribution after exactly the same text (the guide's context is
re-encoded at that text offset, through the same cached stream the engine uses).

A served model (``vllm:``) is teacher-forced through the server's prompt logprobs
(``echo``): each position holds the top-k and the reference token, so confidence
(max) and correctness (argmax) are exact; option letters are scored exactly too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pairscope.backends.served import ServedModel
from pairscope.decoding.strategies import Blend
from pairscope.decoding.stream import (
    MIN_SHARED_PREFIX,
    cache_keyword,
    log_normalise,
    shared_prefix,
)
from pairscope.decoding.stream import top_k as topk_of
from pairscope.decoding.vocab import END, TokenText
from pairscope.defaults import LAMBDA, TOP_K
from pairscope.errors import RuntimeFault
from pairscope.models import LoadedModel, Pair


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


class Forcer:
    """Teacher-forced log-probabilities of one model over the prompts of one probe.

    The prompts of a probe share a long prefix (the few-shot block, a chat
    template's system text). Its keys and values are computed once, when the
    forcer is made, and every sample's pass starts from a copy of them; the rest of
    the prompt and the reference are one forward pass. The most recent prompt's
    next-token distribution is kept, so option letters after the same prompt cost
    nothing more. A served model is forced through its server (no prefix reuse).
    """

    MIN_PREFIX = MIN_SHARED_PREFIX

    def __init__(self, lm: LoadedModel, prompts: Sequence[Sequence[int]] = ()) -> None:
        self.lm = lm
        self.prefix: list[int] = []
        self._cache: Any = None
        # ((prompt, continuation), logprobs) of the most recent pass.
        self._last: tuple[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] | None = None
        if isinstance(lm, ServedModel) or not prompts:
            return
        prefix = shared_prefix([list(p) for p in prompts])
        if len(prefix) >= self.MIN_PREFIX:
            self.prefix = prefix
            from transformers import DynamicCache

            cache = DynamicCache(config=lm.model.config)
            ids = torch.tensor([self.prefix], device=lm.model.device)
            with torch.inference_mode():
                lm.model(
                    input_ids=ids,
                    use_cache=True,
                    logits_to_keep=1,
                    **{cache_keyword(lm.model): cache},
                )
            self._cache = cache

    def logprobs(self, prompt: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
        """``[len(continuation) + 1, vocab]``: row t is the distribution after
        ``prompt + continuation[:t]`` (local models only)."""
        key = (tuple(prompt), tuple(continuation))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if isinstance(self.lm, ServedModel):
            raise TypeError("A served model has no dense teacher-forced distribution.")
        if not prompt:
            raise RuntimeFault("Teacher forcing needs a non-empty prompt.")
        ids, n = list(prompt) + list(continuation), len(self.prefix)
        kwargs: dict[str, Any] = {"use_cache": False}
        if self._cache is not None and len(prompt) > n and list(prompt[:n]) == self.prefix:
            ids = ids[n:]
            kwargs = {cache_keyword(self.lm.model): copy.deepcopy(self._cache), "use_cache": True}
        model = self.lm.model
        with torch.inference_mode():
            out = model(
                input_ids=torch.tensor([ids], device=model.device),
                logits_to_keep=len(continuation) + 1,
                **kwargs,
            )
        logp = log_normalise(out.logits[0].float())
        self._last = (key, logp)
        return logp

    def scores(self, prompt: Sequence[int], reference: Sequence[int]) -> torch.Tensor:
        """Log-probabilities ``[len(reference), vocab]`` predicting each reference token.

        The same call twice in a row (calibration, then the arbitration check) is one pass.
        """
        if not reference:
            return torch.empty((0, 0))
        if isinstance(self.lm, ServedModel):
            key = (tuple(prompt), tuple(reference))
            if self._last is None or self._last[0] != key:
                self._last = (key, self.lm.forced_logprobs(prompt, reference))
            return self._last[1]
        return self.logprobs(prompt, reference)[:-1]

    def next_logprobs(self, prompt: Sequence[int]) -> torch.Tensor:
        """The next-token distribution after ``prompt``: row 0 of the last pass if it
        had the same prompt, so option letters after a forced reference are free."""
        if self._last is not None and self._last[0][0] == tuple(prompt):
            if not isinstance(self.lm, ServedModel):
                return self._last[1][0]
        return self.logprobs(prompt, [])[0]


def forced_tokens(
    lm: LoadedModel, prompt: list[int], reference_text: str, forcer: Forcer | None = None
) -> ForcedTokens:
    """Confidence and correctness at each reference token, under the model's own prompt."""
    reference = list(lm.tokenizer.encode(reference_text, add_special_tokens=False))
    if not reference:
        return ForcedTokens([], [])
    return ForcedTokens.from_logprobs((forcer or Forcer(lm)).scores(prompt, reference), reference)


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
    base_prompt: list[int],
    guide_prompt: list[int],
    reference_text: str,
    tau: float,
    lam: float = LAMBDA,
    top_k: int = TOP_K,
    forcers: tuple[Forcer, Forcer] | None = None,
) -> Arbitration:
    """Accuracy of base top-1, guide top-1, the more confident, and the BlendIn pick.

    ``forcers`` (base, guide) reuse a shared prompt prefix and the calibration passes
    just made on the same reference.
    """
    base, guide = pair.base, pair.guide
    bforcer, gforcer = forcers or (Forcer(base), Forcer(guide))
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
    lm: LoadedModel, prompt: list[int], letters: Sequence[str], forcer: Forcer | None = None
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
    lm: LoadedModel, prompt: list[int], wanted: list[int], forcer: Forcer | None
) -> dict[int, float]:
    """Next-token probability of each wanted id after ``prompt``."""
    if isinstance(lm, ServedModel):
        return {t: math.exp(v) for t, v in zip(wanted, lm.candidate_logprobs(prompt, wanted))}
    probs = (forcer or Forcer(lm)).next_logprobs(prompt).exp()
    return {t: float(probs[t]) for t in wanted}
