"""Decoding methods as small classes with one decision interface (DESIGN.md §2).

The engine asks every strategy the same thing at an uncertain base position:
given the base's top-k list (and the guide's top-k list or next word, when the
strategy consults the guide), what text is appended? Confident positions always
append the base's top-1 token and never reach a strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pairscope.decoding.vocab import END, MatchKey
from pairscope.errors import InputError, unknown

METHODS = ("base", "guide", "nudging", "blendin", "blend:<alpha>")


@dataclass(frozen=True)
class TopK:
    """One model's top-k next tokens at a position, merged by match key.

    ``keys`` are in rank order of their merged probability; ``probs[i]`` is the
    summed probability of every id whose string is ``keys[i]``; ``ids[i]`` is the
    most probable of those ids (fed to its own model when the key is chosen).
    ``top_prob`` is the unmerged top-1 token probability.
    """

    keys: tuple[MatchKey, ...]
    probs: tuple[float, ...]
    ids: tuple[int, ...]
    top_prob: float
    top_key: MatchKey

    def prob(self, key: MatchKey) -> float:
        for k, p in zip(self.keys, self.probs):
            if k == key:
                return p
        return 0.0

    def id_of(self, key: MatchKey) -> int | None:
        for k, i in zip(self.keys, self.ids):
            if k == key:
                return i
        return None


def merge_topk(ids: Sequence[int], probs: Sequence[float], keys: Sequence[MatchKey]) -> TopK:
    """Sum the probabilities of ids that share a key; keep the best id per key.

    Args:
        ids: token ids in descending probability order.
        probs: their probabilities.
        keys: their match keys (decoded strings, END, or model-unique keys).
    """
    total: dict[MatchKey, float] = {}
    best: dict[MatchKey, int] = {}
    for i, p, k in zip(ids, probs, keys):
        if k in total:
            total[k] += p
        else:
            total[k] = p
            best[k] = i
    order = sorted(total, key=lambda k: -total[k])
    return TopK(
        keys=tuple(order),
        probs=tuple(total[k] for k in order),
        ids=tuple(best[k] for k in order),
        top_prob=float(probs[0]),
        top_key=keys[0],
    )


def auto_alpha(base: TopK, guide: TopK, lam: float) -> float:
    """BlendIn's adaptive weight: clip(p_g / (p_b + p_g) + lam * P_b(s_g), 0, 1)."""
    denominator = base.top_prob + guide.top_prob
    share = guide.top_prob / denominator if denominator > 0 else 0.5
    return min(1.0, max(0.0, share + lam * base.prob(guide.top_key)))


def blend_pick(base: TopK, guide: TopK, alpha: float) -> tuple[MatchKey, float]:
    """argmax over the union of keys of alpha * P_g + (1 - alpha) * P_b.

    Ties go to the key ranked first in the base list, then the guide list, so a
    neutral blend (alpha = 0) always returns the base top-1 key.
    """
    scores: dict[MatchKey, float] = {}
    for k, p in zip(base.keys, base.probs):
        scores[k] = (1.0 - alpha) * p
    for k, p in zip(guide.keys, guide.probs):
        scores[k] = scores.get(k, 0.0) + alpha * p
    best_key = max(scores, key=lambda k: scores[k])  # max keeps the first of equals
    return best_key, scores[best_key]


@dataclass(frozen=True)
class Decision:
    """What a strategy appends at an uncertain position."""

    key: MatchKey  # END or the appended string (or a model-unique key)
    text: str
    source: str
    override: bool
    alpha: float | None = None
    base_id: int | None = None  # fed to the base as its own token, if it has one
    guide_ids: tuple[int, ...] | None = None  # fed to the guide as its own tokens
    ends: bool = False  # the response ends after this text (a guide ended mid-word)


class Strategy:
    """A decoding method. ``consults`` is what it needs from the guide when uncertain."""

    name = "base"
    consults: str | None = None  # None, "distribution" or "word"

    def __init__(self, tau: float = 0.4) -> None:
        if tau < 0:
            raise InputError(f"tau must be >= 0 (got {tau}).")
        self.tau = float(tau)

    def uncertain(self, p_base: float) -> bool:
        return p_base < self.tau


class Base(Strategy):
    """Base greedy decoding; uncertain positions are counted but never changed."""

    name = "base"


class Guide(Strategy):
    """The guide decodes alone from its own prompt (the engine swaps the driver)."""

    name = "guide"


class Nudging(Strategy):
    """NUDGING: at an uncertain position the guide writes the next whole word.

    If that word starts with the base's top-1 string the base token is kept
    (agreement); otherwise the word is appended.
    """

    name = "nudging"
    consults = "word"

    def __init__(self, tau: float = 0.4, max_word_tokens: int = 16) -> None:
        super().__init__(tau)
        if max_word_tokens < 1:
            raise InputError("max_word_tokens must be >= 1.")
        self.max_word_tokens = max_word_tokens

    def decide_word(
        self, base_id: int, base_key: MatchKey, base_text: str, word: str, word_ids: tuple[int, ...]
    ) -> Decision:
        """Agreement keeps the base token; otherwise the guide's word (or its end)."""
        if base_key != END and base_text and word.startswith(base_text):
            return Decision(base_key, base_text, "base", override=False, base_id=base_id)
        if not word.strip():
            return Decision(END, "", "guide", override=base_key != END)
        return Decision(word, word, "guide", override=True, guide_ids=word_ids)


class Blend(Strategy):
    """BlendIn (``alpha=None``: adaptive weight) or a fixed-weight blend ``blend:alpha``."""

    name = "blendin"
    consults = "distribution"

    def __init__(
        self, tau: float = 0.4, alpha: float | None = None, lam: float = 0.1, top_k: int = 100
    ) -> None:
        super().__init__(tau)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1] (got {alpha}).")
        if lam < 0:
            raise InputError(f"lambda must be >= 0 (got {lam}).")
        if top_k < 1:
            raise InputError(f"k must be >= 1 (got {top_k}).")
        self.alpha = alpha
        self.lam = lam
        self.top_k = top_k
        self.name = "blendin" if alpha is None else f"blend:{alpha:g}"

    def decide(self, base: TopK, guide: TopK, text_of: dict[MatchKey, str]) -> Decision:
        alpha = auto_alpha(base, guide, self.lam) if self.alpha is None else self.alpha
        key, _ = blend_pick(base, guide, alpha)
        guide_id = guide.id_of(key)
        return Decision(
            key,
            text_of.get(key, ""),
            "blend",
            override=key != base.top_key,
            alpha=alpha,
            base_id=base.id_of(key),
            guide_ids=None if guide_id is None else (guide_id,),
        )


def make_strategy(
    method: str, *, tau: float = 0.4, lam: float = 0.1, top_k: int = 100, alpha: float | None = None
) -> Strategy:
    """Build a strategy from its name: base, guide, nudging, blendin or blend:<alpha>.

    ``alpha`` given with ``blendin`` fixes its weight (the CLI's ``--alpha``).
    """
    if method.startswith("blend:"):
        raw = method.split(":", 1)[1]
        try:
            fixed = float(raw)
        except ValueError:
            raise InputError(
                f"Bad blend weight in '{method}': use blend:<alpha>, alpha in [0, 1]."
            ) from None
        return Blend(tau=tau, alpha=fixed, lam=lam, top_k=top_k)
    if method == "blendin":
        return Blend(tau=tau, alpha=alpha, lam=lam, top_k=top_k)
    if method == "nudging":
        return Nudging(tau=tau)
    if method == "base":
        return Base(tau=tau)
    if method == "guide":
        return Guide(tau=tau)
    raise unknown("method", method, ["base", "guide", "nudging", "blendin", "blend:0.5"])
