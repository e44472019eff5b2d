"""GSM8K: grade-school maths, scored by an exact numeric match of the final answer.

A record's ``answer`` is the worked solution ending in ``#### N``; the task derives
a clean one-line ``solution`` (the teacher-forcing reference) and the
``final_answer`` the target compares against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pairscope.errors import DataError
from pairscope.tasks.base import (
    Derived,
    ProbeInfo,
    RowTarget,
    Sample,
    ScoreResult,
    Task,
    first_value,
)

__all__ = ["GSM8K", "extract_number", "score_gsm8k"]

_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
# A number: thousands groups with commas, or plain digits, optional decimals. The
# lookbehind keeps the "3" of "5-3" from reading as "-3".
_NUMBER = r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+"
_NUMBER_RE = re.compile(_NUMBER)
# Explicit final-answer statements; the number must follow within the same line.
_ANSWER_MARKERS = re.compile(
    r"####|\b(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)|\\boxed\{",
    re.IGNORECASE,
)


def _derive(spec: ProbeInfo, sid: str, fields: Mapping[str, Any]) -> Derived:
    """Split a GSM8K answer into a clean solution and the final number.

    The reference solution drops the ``<<...>>`` calculator notes and puts the
    steps on one line ending each with a period, matching the few-shot style.
    """
    answer = str(fields["answer"])
    body, sep, final = answer.rpartition("####")
    if not sep:
        body, final = "", answer
    steps = []
    for line in _CALCULATOR_NOTE.sub("", body).splitlines():
        line = line.strip()
        if line:
            steps.append(line if line[-1] in ".!?" else line + ".")
    final = final.strip().replace(",", "")
    if not final:
        raise DataError(f"Sample {sid} of probe '{spec.name}' has no final answer.")
    return Derived({"solution": " ".join(steps), "final_answer": final})


def _clean_numeric_text(text: str) -> str:
    # Unicode minus and currency/percent/markdown noise never change the value.
    return text.replace("\u2212", "-").replace("$", "").replace("*", "")


def extract_number(completion: str) -> str | None:
    """The final numeric answer of a GSM8K completion, normalised (no commas).

    Prefers the first explicit statement ("The answer is N", "#### N", "\\boxed{N}"):
    a model that keeps going after answering tends to invent a new question with its
    own answer. Without one, takes the last number in the text.
    """
    text = _clean_numeric_text(completion)
    for marker in _ANSWER_MARKERS.finditer(text):
        rest = text[marker.end() :].split("\n", 1)[0]
        found = _NUMBER_RE.search(rest)
        if found:
            return found.group(0).replace(",", "")
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _same_number(a: str, b: str) -> bool:
    try:
        x, y = Decimal(a), Decimal(b.replace(",", ""))
    except InvalidOperation:
        return a.strip() == b.strip()
    return abs(x - y) <= Decimal("1e-6")


def score_gsm8k(sample: Sample, completion: str) -> ScoreResult:
    """Exact numeric match of the final answer ("18.00" equals "18")."""
    got = extract_number(completion)
    if got is None:
        return ScoreResult(False, None, "no_answer")
    ok = _same_number(got, sample.target)
    return ScoreResult(ok, got, "correct" if ok else "incorrect")


def _row_target(row: Mapping[str, Any]) -> RowTarget | None:
    """The reference number from a GSM8K 'answer' ("... #### 18") or a 'target' column."""
    answer = row.get("answer")
    if isinstance(answer, str) and "####" in answer:
        final = answer.rpartition("####")[2].strip().replace(",", "")
        return RowTarget(final) if final else None
    value = first_value(row, ("target", "final_answer", "label"))
    if value is not None and _NUMBER_RE.fullmatch(str(value).strip().replace("$", "")):
        return RowTarget(str(value).strip().replace("$", "").replace(",", ""))
    return None


GSM8K = Task(
    required=("question", "answer"),
    derived=("solution", "final_answer"),
    derive=_derive,
    score=score_gsm8k,
    row_target=_row_target,
)
