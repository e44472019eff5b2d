"""NUDGING under the reference protocol: its authors' loop over 16-token completions.

The position protocol (``methods/nudging.py``, one base position per engine step) is
NUDGING as decision rules at each position. The reference protocol is the loop of the research
code that stated NUDGING's ~20 % intervention rate, decision for decision:

* a round asks the guide for a greedy completion of ``completion_tokens`` tokens from
  the whole text; a guide that ends its turn there has its completion appended and the
  response ends;
* the completion is split into words on ``" "`` (after its leading spaces). The first
  word is always taken; each later word (never the last, possibly cut one, unless it
  is the only one) is offered to the base: the base completes the text so far plus the
  words taken, and the first of its tokens is accepted where it starts the next word
  or where its probability is at least τ. The words before it are appended (one
  round: one intervention); with no base token accepted, the next round asks the
  guide again;
* from the accepted token on, the base continues in completions of the same length,
  up to its first token below τ; a completion already in the text written so far (or
  holding more than five words that are) ends the base's turn;
* three rounds with identical words in a row end the response; so do
  ``max_tokens`` counted tokens of text and ``max_rounds`` rounds. The final text is
  stripped and loses any suffix of at least 30 characters repeating the text just
  before it.

The reference code knows no stop strings. A task's stop strings (``stops``) end the
response where one first appears, as they end it under the position protocol: the
text is cut there and what was appended after it is not counted.

The intervention rate it reports is rounds / the base tokens written, counted by
re-encoding each base continuation with the base tokenizer (``count``).

Each row runs as a generator (:func:`nudging_row`) that yields :class:`Ask` and is
sent :class:`Completion`; ``decoding/completions.py`` answers the asks of a batch in
batched passes. The generator is pure, so the protocol is tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from pairscope.decoding.completions import Ask, Completion, RoundsResult, Row
from pairscope.decoding.strategies import Strategy
from pairscope.decoding.types import IR_REFERENCE, REFERENCE_COMPLETION_TOKENS
from pairscope.defaults import TAU
from pairscope.errors import InputError

# A repeated suffix shorter than this many characters is not trimmed.
MIN_REPEAT_CHARS = 30
# A base continuation of more than this many words found in the text ends the base's turn.
REPEAT_WORDS = 5
# The reference caps the rate at 1 once more than this many base tokens are counted.
CAP_AFTER = 20


def repeats_text(completion: str, text: str, words: int = REPEAT_WORDS) -> bool:
    """A continuation of more than ``words`` words (split on " ") already in ``text``."""
    return len(completion.split(" ")) > words and completion in text


def repeated_suffix(text: str, shortest: int = MIN_REPEAT_CHARS) -> int:
    """The length of a suffix (at least ``shortest`` characters) that the text just
    before it ends with, found by bisection over the length as the reference finds it
    (the predicate is not monotone, so a repeat can be missed); 0 if none."""

    def repeats(n: int) -> bool:
        return n >= shortest and text[:-n].endswith(text[-n:])

    low, high, found = 0, len(text), 0
    while low <= high:
        mid = (low + high) // 2
        if repeats(mid):
            found, low = mid, mid + 1
        else:
            high = mid - 1
    return found


def trim_repetitions(text: str) -> str:
    """The text stripped, without repeated suffixes (:func:`repeated_suffix`, repeatedly)."""
    text = text.strip()
    cut = repeated_suffix(text)
    while cut:
        text = text[:-cut]
        cut = repeated_suffix(text)
    return text


@dataclass(frozen=True)
class Limits:
    """The reference loop's constants."""

    tau: float = 0.4
    completion_tokens: int = REFERENCE_COMPLETION_TOKENS
    max_tokens: int = 128
    max_rounds: int = 150


def _accepts(after: str, offer: Completion, tau: float) -> bool:
    """Whether the base's first token of an offer is accepted: it starts the next word,
    or its probability is at least τ."""
    return after.startswith(offer.tokens[0]) or offer.top_probs[0] >= tau


def _past_cut(probs: tuple[float, ...], tau: float) -> bool:
    return any(p < tau for p in probs)


def _settled(text: str) -> str:
    """A completion's text without its last piece of a character or of spacing (what
    later tokens could still change when the whole is decoded)."""
    return text.rstrip().rstrip("\ufffd").rstrip()


def _offer_read(after: str, tau: float) -> Callable[[Completion], bool]:
    """What the loop reads of an offer's completion (:class:`Ask` ``enough``): a refused
    first token ends the reading; an accepted one is read as the base's turn, up to its
    first token below τ and (for the repeat check) whether the rest, joined, lies
    within the first token, which a non-empty rest no longer can once it does not."""

    def enough(c: Completion) -> bool:
        if not _accepts(after, c, tau):
            return True
        rest = "".join(c.tokens[1:])
        return _past_cut(c.top_probs[1:], tau) and rest not in c.tokens[0]

    return enough


def _turn_read(written: str, tau: float) -> Callable[[Completion], bool]:
    """What the base's turn reads of a later completion: up to its first token below τ,
    and whether the whole completion's text lies in ``written``, which it cannot once
    the text without its last token does not (a longer text contains it)."""

    def enough(c: Completion) -> bool:
        if not _past_cut(c.top_probs, tau) or len(c.tokens) < 2:
            return False
        head = c.text[: len(c.text) - len(c.tokens[-1])] if c.text.endswith(c.tokens[-1]) else ""
        return bool(_settled(head)) and _settled(head) not in written

    return enough


def _guide_words(completion: str) -> tuple[str, list[str]]:
    """A guide completion's leading spaces and its words, split on " "."""
    body = completion.lstrip(" ")
    return " " * (len(completion) - len(body)), body.split(" ")


def _offer_words(
    limits: Limits, text: str, space: str, words: list[str]
) -> Generator[Ask, Completion, tuple[int, Completion | None, bool]]:
    """Offer the guide's words to the base, one at a time: how many words are taken,
    the base's last completion, and whether its first token was accepted."""
    taken = 0 if len(words) > 1 else 1
    base: Completion | None = None
    accepted = False
    while not accepted and taken < len(words) - 1:
        taken += 1
        after = " " + words[taken]
        if after == " ":  # several spaces in a row
            continue
        offered = text + space + " ".join(words[:taken])
        base = yield Ask("base", offered, limits.completion_tokens, _offer_read(after, limits.tau))
        if not base.tokens:
            continue
        accepted = _accepts(after, base, limits.tau)
    return taken, base, accepted


def _continue_base(
    limits: Limits, text: str, first: Completion, budget: int, count: Callable[[str], int]
) -> Generator[Ask, Completion, str]:
    """The base's turn from its accepted first token: completions up to the first token
    below τ, ended early by a repeat or by the base ending (``budget``: counted tokens)."""
    written = first.tokens[0]
    tokens, probs = first.tokens[1:], first.top_probs[1:]
    current: str | None = "".join(tokens)
    fresh = ended = stop = False
    while count(written) < budget and not stop:
        if current is None:
            c = yield Ask(
                "base", text + written, limits.completion_tokens, _turn_read(written, limits.tau)
            )
            tokens, probs, current, fresh = c.tokens, c.top_probs, c.text, True
            ended = c.ended
        if current in written:
            break
        cut = next((i for i, p in enumerate(probs) if p < limits.tau), None)
        new = "".join(tokens if cut is None else tokens[:cut])
        stop = cut is not None
        if repeats_text(new, text + written):
            break
        written += new
        if fresh and ended:
            break
        current = None
    return written


def _cut(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the first stop string in ``text`` begins, if one ends past ``start``."""
    hits = [text.find(s, max(0, start - len(s) + 1)) for s in stops if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


def nudging_row(limits: Limits, count: Callable[[str], int], stops: tuple[str, ...] = ()) -> Row:
    """One response under the reference protocol (see the module docstring).

    ``count`` is the length counter: the number of base tokens of a string, encoded
    without special tokens. ``stops``: the task's stop strings."""
    text, rounds, base_tokens, loops = "", 0, 0, 0
    last_words, repeats = "", 0
    stop: str | None = None
    trace: list[tuple[str, str, bool, float | None]] = []
    while count(text) < limits.max_tokens and loops < limits.max_rounds:
        loops += 1
        guide = yield Ask("guide", text, limits.completion_tokens)
        if guide.ended:
            text, stop = _guide_ends(text, guide, stops, trace)
            break
        if base_tokens > CAP_AFTER and rounds >= base_tokens:
            # The reference's intervention cap (a rate of 1, its default): the base
            # writes a completion alone, counted as one token.
            alone = yield Ask("base", text, limits.completion_tokens)
            cut = _cut(text + alone.text, stops, len(text))
            if cut is not None:
                text, stop = (text + alone.text)[:cut], "stop"
                break
            text += alone.text
            base_tokens += 1
            trace.append((alone.text, "base", False, _first(alone)))
            continue
        space, words = _guide_words(guide.text)
        taken, base, accepted = yield from _offer_words(limits, text, space, words)
        chosen = space + " ".join(words[:taken])
        if chosen == last_words:
            repeats += 1
            if repeats >= 3:
                stop = "repeated_nudging_words"
                break
        else:
            last_words, repeats = chosen, 0
        rounds += 1
        cut = _cut(text + chosen, stops, len(text))
        trace.append((chosen, "guide", True, _first(guide)))
        if cut is not None:
            text, stop = (text + chosen)[:cut], "stop"
            break
        text += chosen
        if not accepted or base is None or not base.text:
            continue
        budget = limits.max_tokens - count(text)
        written = yield from _continue_base(limits, text, base, budget, count)
        cut = _cut(text + written, stops, len(text))
        if cut is not None:
            written, stop = (text + written)[len(text) : cut], "stop"
        text += written
        base_tokens += count(written)
        trace.append((written, "base", False, base.top_probs[0]))
        if stop is not None:
            break
    if stop is None:
        stop = "rounds" if loops >= limits.max_rounds else "length"
    return RoundsResult(trim_repetitions(text), rounds, base_tokens, stop, trace)


def _guide_ends(
    text: str, guide: Completion, stops: tuple[str, ...], trace: list
) -> tuple[str, str]:
    """The text once the guide ended its turn in a completion (appended, up to a stop
    string), and the stop reason."""
    cut = _cut(text + guide.text, stops, len(text))
    if cut is not None:
        return (text + guide.text)[:cut], "stop"
    if guide.text:  # appended, but not a round the reference counts
        trace.append((guide.text, "guide", False, _first(guide)))
    return text + guide.text, "nudging_model_stop"


def _first(c: Completion) -> float | None:
    return c.top_probs[0] if c.top_probs else None


class ReferenceNudging(Strategy):
    """NUDGING under the reference protocol: its authors' loop over greedy completions
    (:func:`nudging_row`), counted as that loop counts (rounds / re-encoded base
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
