"""Scoring through the task registry: each task's scorer lives in its module under
:mod:`pairscope.tasks`; :func:`score` and :func:`get_scorer` reach it by the probe's
``scorer`` name (close names are suggested)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pairscope.tasks import TASKS, get_task
from pairscope.tasks.base import Sample, Scorer, ScoreResult

__all__ = ["SCORERS", "get_scorer", "score"]


class _Scorers(Mapping[str, Scorer]):
    """Each registered task's scorer by name, read from :data:`pairscope.tasks.TASKS` on
    every lookup, so it can never disagree with the registry."""

    def __getitem__(self, name: str) -> Scorer:
        return TASKS[name].score

    def __iter__(self) -> Iterator[str]:
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)


SCORERS: Mapping[str, Scorer] = _Scorers()


def get_scorer(name: str) -> Scorer:
    """The scorer registered under ``name``.

    Raises:
        InputError: unknown name, with a close-name suggestion.
    """
    return get_task(name).score


def score(scorer_name: str, sample: Sample, completion: str) -> ScoreResult:
    """Score one completion with the named scorer."""
    return get_scorer(scorer_name)(sample, completion)
