"""The task interface: the sample a task scores, what it derives and returns, and :class:`Task`.

Everything here is plain data with no import of the probe machinery, so the task
modules can use it while :mod:`pairscope.probes` imports the task registry (probe
validation needs each task's fields): the dependency runs one way, probes -> tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pairscope.schema import GenerationRecord

__all__ = [
    "LETTERS",
    "Derived",
    "ProbeInfo",
    "RowTarget",
    "Sample",
    "ScoreResult",
    "Scorer",
    "Task",
    "column_key",
    "derive_nothing",
    "derived_seed",
    "first_value",
    "no_row_target",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Sample:
    """One rendered probe item.

    Attributes:
        id: Content hash: first 16 hex digits of the sha256 of the canonical JSON of
            the mapped source fields (independent of prompt wording and of the source).
        task: Probe name.
        stratum: Values of the stratification fields joined with '|' ('all' if none).
        fields: The canonical source fields.
        base_prompt: Plain completion prompt; ends exactly where the response begins.
        guide_user: The guide's user message (the engine applies the chat template).
        reference: Teacher-forcing reference continuation of ``base_prompt``, or None.
        target: What the scorer compares against (number, letter, 'safe'/'unsafe').
        options: Option letters for multiple choice, in display order (else empty).
        option_texts: Option texts aligned with ``options``.
        answer_letter: The correct option's letter (multiple choice only).
    """

    id: str
    task: str
    stratum: str
    fields: dict[str, Any] = field(hash=False)
    base_prompt: str
    guide_user: str
    reference: str | None
    target: str
    options: tuple[str, ...] = ()
    option_texts: tuple[str, ...] = ()
    answer_letter: str | None = None
    guide_system: str | None = None
    guide_prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["options"] = list(self.options)
        data["option_texts"] = list(self.option_texts)
        return data


@dataclass(frozen=True)
class ScoreResult:
    """One scored completion.

    Attributes:
        correct: Whether the completion counts as correct for the sample.
        extracted: What was read from the completion (number, letter, response class),
            or None when nothing could be read.
        label: Short outcome name: 'correct', 'incorrect' or 'no_answer' for GSM8K and
            TruthfulQA; the response class for XSTest.
    """

    correct: bool
    extracted: str | None
    label: str


Scorer = Callable[[Sample, str], ScoreResult]


class ProbeInfo(Protocol):
    """What a derivation may read of its probe: the name for messages, the seed for order.

    A protocol rather than ``ProbeSpec`` itself, so the tasks need not import the probe
    schema, which imports them.
    """

    @property
    def name(self) -> str: ...

    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class Derived:
    """What a task derives from one record: template values, and multiple-choice options.

    Attributes:
        values: Extra template values (the task's ``derived`` names) for the prompts,
            the reference and the target.
        options: Option letters in display order (multiple choice only).
        option_texts: Option texts aligned with ``options``.
        answer_letter: The correct option's letter (multiple choice only).
    """

    values: dict[str, Any]
    options: tuple[str, ...] = ()
    option_texts: tuple[str, ...] = ()
    answer_letter: str | None = None


@dataclass(frozen=True)
class RowTarget:
    """What a row of another system's file says it answers, in the task's own terms.

    Attributes:
        target: The row's own target (number, letter, 'safe'/'unsafe').
        options: The row's option letters, in its own order (multiple choice only);
            when given, the row is scored against them rather than a matched sample's.
        option_texts: Option texts aligned with ``options``.
        answer_letter: The correct option's letter (multiple choice only).
    """

    target: str
    options: tuple[str, ...] = ()
    option_texts: tuple[str, ...] = ()
    answer_letter: str | None = None


def derive_nothing(spec: ProbeInfo, sid: str, fields: Mapping[str, Any]) -> Derived:
    """The derivation of a task whose templates use the record's fields only."""
    return Derived({})


def no_row_target(row: Mapping[str, Any]) -> RowTarget | None:
    """A task whose file rows carry no label of their own: rows must match a sample."""
    return None


@dataclass(frozen=True)
class Task:
    """Everything one scorer needs, from a probe's record to its extra rates.

    Attributes:
        required: Canonical field names a probe using this scorer must map.
        score: The scorer: a sample and the response text (without the prompt).
        derived: Template value names :attr:`derive` adds, usable in the probe's
            prompts, ``reference`` and ``target``.
        derive: The derived values of one record, given the probe, the sample id and
            the record's fields; raises ``DataError`` for a record it cannot use.
        row_target: The target a row of a completions file carries itself
            (``pairscope score``), or None when it has none.
        file_rates: Extra rates of a scored completions file, from its (sample, result)
            pairs; None for a task with none.
        describe_rates: :attr:`file_rates` as the one line ``pairscope score`` prints
            under the accuracy; None prints nothing (the rates are still in ``--report``).
        run_rates: Extra rates of one method of a run, from the probe name, the
            method's generation records and whether the run recorded this task as the
            probe's scorer (False: a run from before scorers were recorded, where the
            task decides from the name and records whether its rates apply, and returns
            None when they do not); None for a task with none.
    """

    required: tuple[str, ...]
    score: Scorer
    derived: tuple[str, ...] = ()
    derive: Callable[[ProbeInfo, str, Mapping[str, Any]], Derived] = derive_nothing
    row_target: Callable[[Mapping[str, Any]], RowTarget | None] = no_row_target
    file_rates: Callable[[Iterable[tuple[Sample, ScoreResult]]], dict[str, Any]] | None = None
    describe_rates: Callable[[Mapping[str, Any]], str] | None = None
    run_rates: Callable[[str, Sequence[GenerationRecord], bool], dict[str, Any] | None] | None = (
        None
    )


def derived_seed(*parts: object) -> int:
    """A platform-independent integer seed from several parts (not Python's hash())."""
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def column_key(name: str) -> str:
    """A column name (or label value) as compared: lower case, spaces and hyphens as
    underscores."""
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def first_value(row: Mapping[str, Any], keys: Iterable[str]) -> Any:
    """The value of the first of ``keys`` the row has and is not empty, else None."""
    return next((row[k] for k in keys if row.get(k) not in (None, "")), None)
