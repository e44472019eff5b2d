"""Scoring: each task's scorer through the task registry (:mod:`.registry`), a file of
completions produced elsewhere (:mod:`.files`, ``pairscope score``) and the judge-free
XSTest refusal rules (:mod:`.refusal`).

The names below load on first use: the refusal rules are imported by the task registry
itself, which :mod:`.registry` reads, so this package imports neither up front.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pairscope.scoring.files import (
        LineScore,
        ScoreReport,
        normalise_text,
        row_texts,
        score_file,
    )
    from pairscope.scoring.registry import SCORERS, get_scorer, score
    from pairscope.tasks.base import Scorer, ScoreResult

__all__ = [
    "SCORERS",
    "LineScore",
    "ScoreReport",
    "ScoreResult",
    "Scorer",
    "get_scorer",
    "normalise_text",
    "row_texts",
    "score",
    "score_file",
]

_HOME = {
    "SCORERS": "pairscope.scoring.registry",
    "get_scorer": "pairscope.scoring.registry",
    "score": "pairscope.scoring.registry",
    "LineScore": "pairscope.scoring.files",
    "ScoreReport": "pairscope.scoring.files",
    "normalise_text": "pairscope.scoring.files",
    "row_texts": "pairscope.scoring.files",
    "score_file": "pairscope.scoring.files",
    "Scorer": "pairscope.tasks.base",
    "ScoreResult": "pairscope.tasks.base",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(name)
