"""The one interface every decoding method implements (docs/methods.md §2).

The engine asks every strategy the same thing, once per step: at these uncertain
base positions (an :class:`Uncertain` view: the base's top-k, and on request the
guide's top-k), what is appended? A strategy answers with one :class:`Decision` per
row it changes (:meth:`Strategy.intervene`); rows it leaves out, and every confident
position, append the base's top-1 token. A strategy may keep state per row
(:meth:`Strategy.new_state`), set its prompts up (:meth:`Strategy.setup`) and run a
step schedule of its own (:meth:`Strategy.schedule`). The engine knows no method: a
new one is a module in ``pairscope/methods/`` and a line in its registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pairscope.decoding.types import IR_UNCERTAIN, Step
from pairscope.defaults import TAU
from pairscope.errors import InputError
from pairscope.runtime.scores import TopK
from pairscope.runtime.vocab import END, MatchKey, TokenText


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
    round_start: bool = False  # an intervention (a round of words) starts here


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

    def state(self, row: int) -> Any:
        """The row's per-row state, the strategy's own (:meth:`Strategy.new_state`)."""
        ...


class Stepper(Protocol):
    """A step schedule of a method's own: one engine step over the live rows."""

    def step(self, rows: list[Any]) -> None: ...


class Strategy:
    """A decoding method.

    ``drives`` is the model that writes the response (``"guide"`` only for
    guide-only decoding, which has no uncertain positions); ``consults`` says
    whether the guide is needed at all; ``guide_lookahead`` is how many guide
    tokens a row may be fed past its text in one step; ``ir_kind`` names the
    intervention rate its authors' code reports (``decoding/types.py``: which events
    over which positions; None: it has none).
    """

    name = "base"
    drives = "base"
    consults = False
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

    def setup(self, request: Any) -> Any:
        """The request as this method decodes it (its prompt set-up); as given here."""
        return request

    def new_state(self) -> Any:
        """A new row's state, the method's own (None: it keeps none)."""
        return None

    def appended(self, state: Any, decision: Decision, flushed: bool) -> None:
        """After the engine appended a decision's text at a row with state
        (``flushed``: byte pieces another model held were written out before it)."""

    def schedule(self, engine: Any) -> Stepper | None:
        """A step schedule of the method's own for this engine (None: the engine's
        step, which asks :meth:`intervene` at the uncertain positions)."""
        return None


OVERLAP_K = 50  # overlap@k's k


def base_top1(vocab: TokenText, token: int) -> tuple[int, MatchKey, str | None]:
    """The base's top-1 as a strategy reads it: its id, its match key and its text
    (None for an end token or a piece that matches nothing)."""
    key = vocab.key(token)
    return token, key, key if isinstance(key, str) and key != END else None


def uncertain_step(
    position: int,
    p_base: float,
    facts: tuple[float, float, bool] | None,
    decision: Decision,
) -> Step:
    """The trace of an uncertain position a strategy decided (``facts``: the guide's
    top-1 probability, overlap@k and whether its top-1 is in the base's top-k)."""
    p_guide, overlap, hit = facts if facts is not None else (None, None, None)
    return Step(
        position,
        p_base,
        p_guide,
        decision.alpha,
        "",
        decision.source,
        True,
        decision.override,
        overlap,
        hit,
        decision.round_start,
    )
