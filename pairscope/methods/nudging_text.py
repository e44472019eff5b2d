"""NUDGING's units of text: the guide's word, and a row's state between engine steps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    """The guide's next word at a position (NUDGING's unit of text)."""

    text: str
    ids: tuple[int, ...] | None  # guide ids that write exactly the text (None: re-encode)
    ended: bool  # the guide ended its turn while writing it


@dataclass
class RowState:
    """A row's NUDGING state, kept between engine steps."""

    in_round: bool = False  # the last text was a guide word of an open round
    plan: list[int] = field(default_factory=list)  # guide's own greedy ids not yet appended
    # The guide's distribution that chose each plan id (at the position before it).
    plan_logps: list[Any] = field(default_factory=list)
    open: Any = None  # the word still being written (nudging_words.OpenWord)
    # The guide's greedy id (and the distribution that chose it) after the text, read
    # ahead in the pass that followed the base's last token (nudging_words.py).
    ahead: tuple[int, Any] | None = None


_WORD = re.compile(r"^( *[^ ]+) ")


def split_word(text: str) -> tuple[str, bool]:
    """NUDGING's word: leading spaces + the characters up to the next space (the
    reference splits on ``" "``, so a newline belongs to its word); complete once a
    space follows."""
    match = _WORD.match(text)
    if match:
        return match.group(1), True
    return text, False
