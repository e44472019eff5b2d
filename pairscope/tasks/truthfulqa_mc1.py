"""TruthfulQA MC1: one true answer among false ones, scored by the option letter chosen.

The task letters the best answer and the incorrect answers in a seeded per-sample
order (``options``, ``answer_letter``, ``answer_text`` for the templates) and reads
back the letter a response chooses.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pairscope.errors import DataError
from pairscope.tasks.base import (
    LETTERS,
    Derived,
    ProbeInfo,
    RowTarget,
    Sample,
    ScoreResult,
    Task,
    derived_seed,
)

__all__ = ["TRUTHFULQA_MC1", "extract_letter", "score_truthfulqa_mc1"]


def _derive(spec: ProbeInfo, sid: str, fields: Mapping[str, Any]) -> Derived:
    """Letter the best answer and the incorrect answers in a seeded per-sample order.

    The order depends on the probe's ``seed`` and the sample id only, so a sample's
    prompt is the same whatever subset it is drawn in.
    """
    best = str(fields["best_answer"]).strip()
    incorrect = fields["incorrect_answers"]
    if isinstance(incorrect, str):
        incorrect = [incorrect]
    texts = [best]
    for text in incorrect:
        if text and text not in texts:
            texts.append(text)
    if not best or len(texts) < 2:
        raise DataError(f"Sample {sid} of probe '{spec.name}' needs a best and a wrong answer.")
    if len(texts) > len(LETTERS):
        raise DataError(f"Sample {sid} of probe '{spec.name}' has more than 26 options.")
    random.Random(derived_seed(spec.seed, sid)).shuffle(texts)
    letters = tuple(LETTERS[: len(texts)])
    letter = letters[texts.index(best)]
    rendered = "\n".join(f"{ltr}) {text}" for ltr, text in zip(letters, texts, strict=True))
    return Derived(
        {"options": rendered, "answer_letter": letter, "answer_text": best},
        options=letters,
        option_texts=tuple(texts),
        answer_letter=letter,
    )


def _letter_class(letters: Sequence[str]) -> str:
    return "[" + "".join(letters) + "]"


def extract_letter(completion: str, letters: Sequence[str]) -> str | None:
    """The option letter a completion chooses, or None.

    Order of preference: the last explicit statement ("the answer is C", "Answer: (C)",
    "option C is correct", "I choose C"), since a final statement overrides letters
    mentioned in passing ("Option A is wrong; the answer is C"); then a letter at the
    very start ("B", "(B)", "B)", "B. text", "**B**"); then the first parenthesised
    letter; then, if exactly one option's text appears, that option.
    """
    if not letters:
        return None
    cls = _letter_class(letters)
    text = completion.replace("*", "").strip()
    explicit = re.compile(
        rf"(?:answer|option|choice)\s*(?:is|would\s+be|:|=)\s*(?:option\s+|letter\s+)?"
        rf"[\(\[]?({cls})\b(?![\'\w])"
        rf"|\b(?:choose|pick|select|go\s+with|say)\s+(?:option\s+)?[\(\[]?({cls})\b(?![\'\w])"
        rf"|\bit(?:'s|\s+is)\s+(?:option\s+)?[\(\[]?({cls})\b(?![\'\w])"
        rf"|(?:^|\s)(?:option\s+)?[\(\[]?({cls})[\)\]]?\s+is\s+(?:the\s+)?"
        rf"(?:correct|right|best|true)",
        re.IGNORECASE,
    )
    chosen = None
    for match in explicit.finditer(text):
        letter = next(g for g in match.groups() if g)
        # Options are upper-case letters: a lower-case "a" is the article.
        if letter.isupper():
            chosen = letter
    if chosen is not None:
        return chosen
    # A leading letter, unless it is the word "A"/"I" starting a sentence ("A common
    # myth ...", "I think ...").
    lead = re.match(rf"[\(\[]?({cls})(?:[\)\]\.:,]|\s*$|\s+(?![a-z]))", text)
    if lead:
        return lead.group(1)
    paren = re.search(rf"\(({cls})\)", text)
    if paren:
        return paren.group(1)
    return None


def _letter_from_text(completion: str, sample: Sample) -> str | None:
    low = completion.lower()
    hits = [
        letter
        for letter, option in zip(sample.options, sample.option_texts, strict=True)
        if option and option.lower() in low
    ]
    return hits[0] if len(hits) == 1 else None


def score_truthfulqa_mc1(sample: Sample, completion: str) -> ScoreResult:
    """Correct iff the chosen letter is the best answer's letter."""
    got = extract_letter(completion, sample.options) or _letter_from_text(completion, sample)
    if got is None:
        return ScoreResult(False, None, "no_answer")
    ok = got == sample.answer_letter
    return ScoreResult(ok, got, "correct" if ok else "incorrect")


def _row_target(row: Mapping[str, Any]) -> RowTarget | None:
    """Options and correct letter in the row's own order: ``mc1_targets`` (choices and
    0/1 labels, as on the Hub) or ``choices`` with a ``label`` (index or letter)."""
    targets = row.get("mc1_targets")
    if isinstance(targets, Mapping):
        choices, labels = targets.get("choices"), targets.get("labels")
        if isinstance(choices, list) and isinstance(labels, list) and 1 in labels:
            if not 2 <= len(choices) <= len(LETTERS) or labels.index(1) >= len(choices):
                raise ValueError(
                    f"mc1_targets has {len(choices)} choices and its label 1 at position "
                    f"{labels.index(1) + 1}; it needs 2 to {len(LETTERS)} choices and the "
                    "label among them"
                )
            letters = tuple(LETTERS[: len(choices)])
            return _own_options(letters, choices, letters[labels.index(1)])
        return None
    choices, label = row.get("choices"), row.get("label")
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS) or label is None:
        return None
    letters = tuple(LETTERS[: len(choices)])
    text = str(label).strip()
    if text.isdigit() and int(text) < len(letters):
        return _own_options(letters, choices, letters[int(text)])
    if text.upper() in letters:
        return _own_options(letters, choices, text.upper())
    return None


def _own_options(letters: tuple[str, ...], choices: list[Any], letter: str) -> RowTarget:
    return RowTarget(letter, letters, tuple(map(str, choices)), letter)


TRUTHFULQA_MC1 = Task(
    required=("question", "best_answer", "incorrect_answers"),
    derived=("options", "answer_letter", "answer_text"),
    derive=_derive,
    score=score_truthfulqa_mc1,
    row_target=_row_target,
)
