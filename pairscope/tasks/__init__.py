"""The task registry: one :class:`~pairscope.tasks.base.Task` per scorer name.

A probe YAML names its task by ``scorer``; everything that differs between tasks
(required fields, derived template values, references, the scorer, the rows of
``pairscope score``, extra rates) is in that task's own module and reached through
:data:`TASKS`. Adding a task is one module beside these and one line below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pairscope.errors import unknown
from pairscope.schema import GenerationRecord
from pairscope.tasks.base import Task
from pairscope.tasks.gsm8k import GSM8K
from pairscope.tasks.truthfulqa_mc1 import TRUTHFULQA_MC1
from pairscope.tasks.xstest import XSTEST

__all__ = ["TASKS", "Task", "get_task", "run_rates"]

TASKS: dict[str, Task] = {
    "gsm8k": GSM8K,
    "truthfulqa_mc1": TRUTHFULQA_MC1,
    "xstest": XSTEST,
}


def get_task(name: str) -> Task:
    """The task registered under ``name``.

    Raises:
        InputError: unknown name, with a close-name suggestion.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise unknown("scorer", name, TASKS) from None


def run_rates(task: str, gens: Sequence[GenerationRecord]) -> dict[str, Any] | None:
    """A run method's extra rates: those of the first task whose rates apply, else None.

    The summary knows a run's probe name and records, not its scorer, so each task
    decides from those whether its rates apply.
    """
    for entry in TASKS.values():
        if entry.run_rates is not None:
            rates = entry.run_rates(task, gens)
            if rates is not None:
                return rates
    return None
