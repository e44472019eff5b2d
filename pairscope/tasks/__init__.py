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


def run_rates(
    task: str, gens: Sequence[GenerationRecord], scorer: str | None = None
) -> dict[str, Any] | None:
    """A run method's extra rates: those of the task's scorer, else None.

    ``scorer`` is the one the run's ``config.json`` recorded for the task. Runs written
    before it was recorded name only the probe, so each task then decides from the
    probe name and the records whether its rates apply, and the first that does wins.
    """
    if scorer is not None:
        entry = TASKS.get(scorer)
        if entry is None or entry.run_rates is None:
            return None
        return entry.run_rates(task, gens, True)
    for entry in TASKS.values():
        if entry.run_rates is not None:
            rates = entry.run_rates(task, gens, False)
            if rates is not None:
                return rates
    return None
