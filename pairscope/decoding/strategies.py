"""Decoding methods as small classes with one interface (docs/methods.md §2).

The engine asks every strategy the same thing, once per step: at these uncertain
base positions (an :class:`Uncertain` view: the base's top-k, and on request the
guide's top-k or its next greedy words), what is appended? A strategy answers
with one :class:`Decision` per row it changes (:meth:`Strategy.intervene`); rows
it leaves out, and every confident position, append the base's top-1 token. The
engine knows no method: a new one (proxy-tuning's logit arithmetic, say) is a new
class here and nothing else, as a transformers ``LogitsProcessor`` is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pairscope.decoding.rounds import Limits, Row, nudging_row
from pairscope.decoding.types import IR_REFERENCE, IR_ROUNDS, IR_UNCERTAIN
from pairscope.defaults import LAMBDA, TAU, TOP_K
from pairscope.errors import InputError, unknown
from pairscope.runtime.scores import TopK
from pairscope.runtime.vocab import END, MatchKey, TokenText

METHODS = ("base", "guide", "nudging", "blendin", "blend:<alpha>")
# NUDGING's protocols: ``position`` decides at each base position (the engine's steps);
# ``reference`` runs its authors' loop over 16-token completions (decoding/rounds.py).
PROTOCOLS = ("position", "reference")


class KeyTexts(Mapping[MatchKey, str]):
    """The text each key of a base and a guide list appends, looked up when asked (a
    strategy reads one or two of the two hundred): a string key is its own text; an
    end or model-unique key is its token's text, the base's where both lists hold it."""

    def __init__(self, base: TopK, guide: TopK, base_vocab: TokenText, guide_vocab: TokenText):
        self._lists = ((base, base_vocab), (guide, guide_vocab))

    def __getitem__(self, key: MatchKey) -> str:
        for top, vocab in self._lists:
            token = top.id_of(key)
            if token is not None:
                return key if isinstance(key, str) and key != END else vocab.text(token)
        raise KeyError(key)

    def __iter__(self) -> Iterator[MatchKey]:
        (base, _), (guide, _) = self._lists
        return iter(dict.fromkeys(guide.keys + base.keys))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def auto_alpha(base: TopK, guide: TopK, lam: float) -> float:
    """BlendIn's adaptive weight: clip(p_g / (p_b + p_g) + lam * P_b(s_g), 0, 1)."""
    denominator = base.top_prob + guide.top_prob
    share = guide.top_prob / denominator if denominator > 0 else 0.5
    return min(1.0, max(0.0, share + lam * base.prob(guide.top_key)))


def blend_pick(base: TopK, guide: TopK, alpha: float) -> tuple[MatchKey, float]:
    """argmax over the union of keys of alpha * P_g + (1 - alpha) * P_b.

    At alpha = 0 (1) the blend is the base's (guide's) own top-1 token: merging ids
    that share a string may rank another string first, and a neutral weight must
    change nothing. Other ties go to the key ranked first in the base list, then
    the guide list.
    """
    if alpha <= 0.0:
        return base.top_key, base.prob(base.top_key)
    if alpha >= 1.0:
        return guide.top_key, guide.prob(guide.top_key)
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
    round_start: bool = False  # a NUDGING round (an intervention) starts here


@dataclass(frozen=True)
class Word:
    """The guide's next word at a position (NUDGING's unit of text)."""

    text: str
    ids: tuple[int, ...] | None  # guide ids that write exactly the text (None: re-encode)
    ended: bool  # the guide ended its turn while writing it


class Uncertain(Protocol):
    """What the engine offers a strategy at the uncertain positions of one step.

    ``rows`` are the batch rows whose base top-1 probability is below τ. The guide
    is read only when a strategy asks (``guide_top`` or ``guide_words``), once for
    all rows, and the view records what it read for the step's trace.
    """

    @property
    def rows(self) -> Sequence[int]:
        """The uncertain rows of the batch."""
        ...

    def base_top(self, row: int, k: int) -> TopK:
        """The base's top-``k`` at the row's position, merged by match key."""
        ...

    def base_token(self, row: int) -> tuple[int, MatchKey, str | None]:
        """The base's top-1 id, its match key and its text (None: END or a byte piece)."""
        ...

    def guide_top(self, row: int, k: int) -> TopK:
        """The guide's top-``k`` after the same text, merged by match key."""
        ...

    def tops(self, row: int, k: int) -> tuple[TopK, TopK]:
        """``(base_top(row, k), guide_top(row, k))``, both read in one go for all rows."""
        ...

    def texts(self, base: TopK, guide: TopK) -> Mapping[MatchKey, str]:
        """The text each key of the two lists appends."""
        ...

    def in_round(self, row: int) -> bool:
        """Whether the row's last text was a guide word of an open NUDGING round."""
        ...

    def guide_words(self, max_tokens: int) -> Mapping[int, Word]:
        """Each row's next guide word, decoded greedily (at most ``max_tokens`` tokens)."""
        ...


class Strategy:
    """A decoding method.

    ``drives`` is the model that writes the response (``"guide"`` only for
    guide-only decoding, which has no uncertain positions); ``consults`` says
    whether the guide is needed at all; ``guide_lookahead`` is how many guide
    tokens a row may be fed past its text in one step; ``ir_kind`` names the
    intervention rate its authors' code reports. ``writes_words``: the method appends
    the guide's whole words (NUDGING), which the engine schedules one guide token a
    step with local models (decoding/words.py) through :meth:`Nudging.decide`.
    """

    name = "base"
    drives = "base"
    consults = False
    writes_words = False
    # The method decodes a request by whole completions (``row``), which the engine
    # answers in batches (decoding/completions.py), not position by position.
    completes = False
    guide_lookahead = 1
    ir_kind: str | None = IR_UNCERTAIN

    def __init__(self, tau: float = TAU) -> None:
        if tau < 0:
            raise InputError(f"tau must be >= 0 (got {tau}).")
        self.tau = float(tau)

    def uncertain(self, p_base: float) -> bool:
        return p_base < self.tau

    def intervene(self, at: Uncertain) -> dict[int, Decision]:
        """What to append at the uncertain rows it changes (the others get the base's
        top-1). The base strategy changes nothing: uncertain positions are counted."""
        return {}


class Base(Strategy):
    """Base greedy decoding; uncertain positions are counted but never changed."""

    name = "base"


class Guide(Strategy):
    """The guide decodes alone from its own prompt: it drives, and nothing is uncertain."""

    name = "guide"
    drives = "guide"
    ir_kind = None

    def uncertain(self, p_base: float) -> bool:
        return False


_WORD = re.compile(r"^( *[^ ]+) ")


def split_word(text: str) -> tuple[str, bool]:
    """NUDGING's word: leading spaces + the characters up to the next space (the
    reference splits on ``" "``, so a newline belongs to its word); complete once a
    space follows."""
    match = _WORD.match(text)
    if match:
        return match.group(1), True
    return text, False


class Nudging(Strategy):
    """NUDGING, by rounds as its reference code runs them (docs/methods.md §2).

    A round starts at an uncertain position after a base-written token; its first
    guide word is always appended. While the base stays uncertain, the guide's next
    word is appended unless it starts with the base's top-1 string (agreement: the
    base token is appended and the round ends). A confident base ends the round. A
    guide that ends its turn inside a word has that text appended, then the
    response ends.
    """

    name = "nudging"
    consults = True
    writes_words = True
    ir_kind = IR_ROUNDS

    def __init__(self, tau: float = TAU, max_word_tokens: int = 16) -> None:
        super().__init__(tau)
        if max_word_tokens < 1:
            raise InputError("max_word_tokens must be >= 1.")
        self.max_word_tokens = max_word_tokens
        # A row in a round is fed the start of its next word with its text.
        self.guide_lookahead = max_word_tokens + 1

    def intervene(self, at: Uncertain) -> dict[int, Decision]:
        words = at.guide_words(self.max_word_tokens)
        out: dict[int, Decision] = {}
        for b in at.rows:
            token, base_key, base_text = at.base_token(b)
            out[b] = self.decide(words[b], at.in_round(b), token, base_key, base_text)
        return out

    def decide(
        self, word: Word, in_round: bool, token: int, base_key: MatchKey, base_text: str | None
    ) -> Decision:
        """The decision at an uncertain position, given the guide's next word there and
        the base's top-1 (its id, match key and text)."""
        choice = self.choose(in_round, word.text, word.ended, base_text)
        if choice == "base":
            return Decision(base_key, base_text or "", "base", False, base_id=token)
        if choice == "end" and not word.text:
            return Decision(END, "", "guide", override=True)
        return Decision(
            word.text,
            word.text,
            "guide",
            override=True,
            guide_ids=word.ids,
            ends=choice == "end",
            round_start=not in_round,
        )

    @staticmethod
    def choose(in_round: bool, word: str, ended: bool, base_text: str | None) -> str:
        """At an uncertain position: ``"guide"`` (append the word), ``"base"`` (append
        the base's token: it agrees with a later word of the round) or ``"end"``
        (append the word, then the response ends).

        Args:
            in_round: the previous position's text was a guide word of this round.
            word: the guide's next word.
            ended: the guide ended its turn while producing it.
            base_text: the base's top-1 text (None for its end token or a byte piece).
        """
        if ended:
            return "end"
        if in_round and base_text and word.startswith(base_text):
            return "base"
        return "guide"


class ReferenceNudging(Strategy):
    """NUDGING under the reference protocol: its authors' loop over greedy completions
    (``decoding/rounds.py``), counted as that loop counts (rounds / re-encoded base
    completion tokens)."""

    name = "nudging"
    consults = True
    completes = True
    ir_kind = IR_REFERENCE

    def __init__(self, tau: float = TAU, completion_tokens: int = 16) -> None:
        super().__init__(tau)
        if completion_tokens < 1:
            raise InputError("completion_tokens must be >= 1.")
        self.completion_tokens = completion_tokens

    def row(self, count: Callable[[str], int], max_tokens: int, stops: tuple[str, ...]) -> Row:
        """One request's loop; ``count``: the base-token length counter; ``stops``: the
        request's stop strings."""
        limits = Limits(self.tau, self.completion_tokens, max_tokens)
        return nudging_row(limits, count, stops)


def nudging(tau: float, protocol: str = "position") -> Strategy:
    """NUDGING under one of its :data:`PROTOCOLS`."""
    if protocol == "position":
        return Nudging(tau=tau)
    if protocol == "reference":
        return ReferenceNudging(tau=tau)
    raise unknown("protocol", protocol, PROTOCOLS)


class Blend(Strategy):
    """BlendIn (``alpha=None``: adaptive weight) or a fixed-weight blend ``blend:alpha``."""

    name = "blendin"
    consults = True

    def __init__(
        self, tau: float = TAU, alpha: float | None = None, lam: float = LAMBDA, top_k: int = TOP_K
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

    def intervene(self, at: Uncertain) -> dict[int, Decision]:
        out: dict[int, Decision] = {}
        for b in at.rows:
            base, guide = at.tops(b, self.top_k)
            out[b] = self.decide(base, guide, at.texts(base, guide))
        return out

    def decide(self, base: TopK, guide: TopK, text_of: Mapping[MatchKey, str]) -> Decision:
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


# Method name -> factory(tau=, lam=, top_k=, alpha=, protocol=) -> Strategy.
# ``blend:<alpha>`` is parsed apart. A method of one's own joins with :func:`register_method`.
METHOD_FACTORIES: dict[str, Callable[..., Strategy]] = {
    "base": lambda tau, **_: Base(tau=tau),
    "guide": lambda tau, **_: Guide(tau=tau),
    "nudging": lambda tau, protocol="position", **_: nudging(tau, protocol),
    "blendin": lambda tau, lam, top_k, alpha, **_: Blend(
        tau=tau, alpha=alpha, lam=lam, top_k=top_k
    ),
}


def register_method(name: str, factory: Callable[..., Strategy]) -> None:
    """Make ``name`` a method every decoding entry point accepts (``DecodeSettings``,
    ``generate``, the pipeline). ``factory`` gets ``tau``, ``lam``, ``top_k`` and
    ``alpha`` as keywords and returns a :class:`Strategy`."""
    if name in METHOD_FACTORIES or name.startswith("blend:") or not name:
        raise ValueError(f"Method name '{name}' is taken or reserved.")
    METHOD_FACTORIES[name] = factory


def make_strategy(
    method: str,
    *,
    tau: float = TAU,
    lam: float = LAMBDA,
    top_k: int = TOP_K,
    alpha: float | None = None,
    protocol: str = "position",
) -> Strategy:
    """Build a strategy from its name: base, guide, nudging, blendin, blend:<alpha>, or
    one registered with :func:`register_method`.

    ``alpha`` given with ``blendin`` fixes its weight (the CLI's ``--alpha``);
    ``protocol`` picks NUDGING's (:data:`PROTOCOLS`; the other methods have one).
    """
    if protocol not in PROTOCOLS:
        raise unknown("protocol", protocol, PROTOCOLS)
    if method.startswith("blend:"):
        raw = method.split(":", 1)[1]
        try:
            fixed = float(raw)
        except ValueError:
            raise InputError(
                f"Bad blend weight in '{method}': use blend:<alpha>, alpha in [0, 1]."
            ) from None
        return Blend(tau=tau, alpha=fixed, lam=lam, top_k=top_k)
    factory = METHOD_FACTORIES.get(method)
    if factory is None:
        raise unknown("method", method, [*METHOD_FACTORIES, "blend:0.5"])
    if protocol != "position":
        return factory(tau=tau, lam=lam, top_k=top_k, alpha=alpha, protocol=protocol)
    return factory(tau=tau, lam=lam, top_k=top_k, alpha=alpha)
