"""NUDGING (docs/methods.md §2): at an uncertain base position the guide writes its next
word, and a round of its words goes on while the base stays uncertain and disagrees.

Two protocols: ``position`` decides at each base position (this module's strategy; its
one-pass word schedule for local models is ``nudging_words.py``); ``reference`` runs its
authors' loop over 16-token completions (``nudging_reference.py``).
"""

from __future__ import annotations

from typing import Any

from pairscope.decoding.strategies import Decision, Stepper, Strategy, Uncertain
from pairscope.decoding.types import IR_ROUNDS
from pairscope.defaults import TAU
from pairscope.errors import InputError, unknown
from pairscope.methods.nudging_text import RowState, Word, split_word
from pairscope.methods.spec import Method
from pairscope.runtime.vocab import END, MatchKey

__all__ = ["NUDGING", "PROTOCOLS", "Nudging", "RowState", "Word", "nudging", "split_word"]

PROTOCOLS = ("position", "reference")


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
    ir_kind = IR_ROUNDS

    def __init__(self, tau: float = TAU, max_word_tokens: int = 16) -> None:
        super().__init__(tau)
        if max_word_tokens < 1:
            raise InputError("max_word_tokens must be >= 1.")
        self.max_word_tokens = max_word_tokens
        # A row in a round is fed the start of its next word with its text.
        self.guide_lookahead = max_word_tokens + 1

    def new_state(self) -> RowState:
        return RowState()

    def appended(self, state: RowState, decision: Decision, flushed: bool) -> None:
        """A guide word keeps the round open; anything else ends it. A plan (the guide's
        own ids after its last word) serves only the text it followed."""
        state.in_round = decision.source == "guide"
        state.ahead = None  # read for the text before this position
        if not state.in_round or flushed:
            state.plan, state.plan_logps = [], []

    def schedule(self, engine: Any) -> Stepper | None:
        """Local models: the one-pass word schedule (one base and at most one guide pass
        a step). A served model: the engine's steps, each finishing its words in
        :meth:`intervene` (a served stream answers a word's tokens from one request)."""
        if not engine.local():
            return None
        from pairscope.methods.nudging_words import WordSteps

        return WordSteps(engine, self)

    def intervene(self, at: Uncertain) -> dict[int, Decision]:
        from pairscope.methods.nudging_words import Lockstep

        words = Lockstep(at, self.max_word_tokens).run()
        out: dict[int, Decision] = {}
        for b in at.rows:
            token, base_key, base_text = at.base_token(b)
            out[b] = self.decide(words[b], at.state(b).in_round, token, base_key, base_text)
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


def nudging(tau: float, protocol: str = "position") -> Strategy:
    """NUDGING under one of its :data:`PROTOCOLS`."""
    if protocol == "position":
        return Nudging(tau=tau)
    if protocol == "reference":
        from pairscope.methods.nudging_reference import ReferenceNudging

        return ReferenceNudging(tau=tau)
    raise unknown("protocol", protocol, PROTOCOLS)


NUDGING = Method(
    "nudging",
    "NUDGING: the guide writes words where the base is uncertain (--protocol)",
    models="both",
    build=lambda knobs, _: nudging(knobs.tau, knobs.protocol),
    gated=True,
    default=True,
    versus=("base",),
    protocols=True,
)
