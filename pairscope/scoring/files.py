"""``pairscope score``: a file of completions produced elsewhere.

:func:`score_file` reads a JSONL or CSV file, matches each row to a probe sample (or
takes the row's own label, as its task reads it), scores it with the task's scorer and
reports the accuracy with its interval.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pairscope.errors import DataError
from pairscope.metrics.stats import wilson
from pairscope.probes import build_samples, load_dataset_records, load_probe
from pairscope.tasks import get_task
from pairscope.tasks.base import RowTarget, Sample, ScoreResult, Task, column_key, first_value

__all__ = ["LineScore", "ScoreReport", "normalise_text", "row_texts", "score_file"]


# Column names of other systems' files and of the benchmark releases, after
# :func:`~pairscope.tasks.base.column_key` (lower case, spaces and hyphens as underscores).
_COMPLETION_KEYS = (
    "completion",
    "response",
    "output",
    "model_output",
    "model_response",
    "generation",
    "prediction",
)
_ID_KEYS = ("sample_id", "id")
_TEXT_KEYS = ("prompt", "question", "input", "instruction")
_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201f": '"',
        "\u00ab": '"',
        "\u00bb": '"',
    }
)


@dataclass(frozen=True)
class LineScore:
    """One scored row of a completions file.

    ``sample_id`` is None for a row scored by its own label without matching a sample.
    """

    line: int
    sample_id: str | None
    correct: bool
    extracted: str | None
    label: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class ScoreReport:
    """Accuracy of a completions file with its Wilson 95 % interval.

    ``skipped`` lists the line numbers of rows that matched no sample and were left out
    (only with ``skip_unmatched``).
    """

    task: str
    n: int
    n_correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    lines: list[LineScore] = field(default_factory=list)
    rates: dict[str, Any] | None = None
    skipped: list[int] = field(default_factory=list)

    @property
    def correct(self) -> int:
        """Number of correct lines (same as ``n_correct``)."""
        return self.n_correct

    @property
    def n_skipped(self) -> int:
        """Number of rows left out because they matched no sample."""
        return len(self.skipped)

    @property
    def interval(self) -> tuple[float, float]:
        """The Wilson 95 % interval of the accuracy."""
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "n_skipped": self.n_skipped}


def normalise_text(text: str) -> str:
    """A prompt as compared across files: curly quotes straightened, whitespace runs
    collapsed, case folded."""
    return " ".join(text.translate(_QUOTES).split()).casefold()


def _text_index(samples: Sequence[Sample]) -> dict[str, Sample | None]:
    """Normalised question/prompt text -> sample; ambiguous texts map to None."""
    index: dict[str, Sample | None] = {}
    for sample in samples:
        keys = {normalise_text(sample.guide_user), normalise_text(sample.base_prompt)}
        for name in ("question", "prompt"):
            value = sample.fields.get(name)
            if isinstance(value, str) and value.strip():
                keys.add(normalise_text(value))
        keys.discard("")
        for key in keys:
            index[key] = None if key in index and index[key] is not sample else sample
    return index


def _row_sample(
    row_target: RowTarget | None, task: str, row: Mapping[str, Any], base: Sample | None
) -> Sample | None:
    """The sample to score a row against when the row carries its own label.

    ``row_target`` is what the task read from the row (None: no usable label of its
    kind, and then neither is there a sample here). Otherwise a copy of the matched
    sample (or a bare one) whose target is the row's own; a row with its own options
    is scored against those.
    """
    if row_target is None:
        return None
    if base is not None and not row_target.options:
        return replace(base, target=row_target.target)
    text = first_value(row, _TEXT_KEYS)
    return Sample(
        id="",
        task=task,
        stratum="all",
        fields=dict(row),
        base_prompt="",
        guide_user=str(text or ""),
        reference=None,
        target=row_target.target,
        options=row_target.options,
        option_texts=row_target.option_texts,
        answer_letter=row_target.answer_letter,
    )


def _match(
    row: Mapping[str, Any],
    by_id: Mapping[str, Sample],
    by_text: Mapping[str, Sample | None],
) -> tuple[Sample | None, str]:
    """The probe sample a row refers to (by id, else by normalised prompt text), or None
    and why not."""
    sid = first_value(row, _ID_KEYS)
    if sid is not None and str(sid) in by_id:
        return by_id[str(sid)], ""
    text = first_value(row, _TEXT_KEYS)
    if isinstance(text, str):
        key = normalise_text(text)
        if key in by_text:
            matched = by_text[key]
            if matched is None:
                return None, "the prompt matches several samples; give 'sample_id'"
            return matched, ""
        shown = text if len(text) <= 60 else text[:57] + "..."
        return None, f"prompt matches no sample: {shown!r}"
    if sid is not None:
        return None, f"unknown sample id '{sid}'"
    return None, ""


def _read_rows(src: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row with normalised keys) for a JSONL or CSV file.

    The format comes from the suffix (``.csv``; ``.jsonl``, ``.json``, ``.ndjson``), or,
    for any other name, from the first character ('{' is JSONL). A CSV row's line number
    is the line its record starts on (completions may span lines).

    Raises:
        DataError: unreadable file, or a line that is not a JSON object.
    """
    try:
        content = src.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read completions file {src}: {exc}") from None
    suffix = src.suffix.lower()
    is_csv = suffix == ".csv" or (
        suffix not in (".jsonl", ".json", ".ndjson") and not content.lstrip().startswith("{")
    )
    rows: list[tuple[int, dict[str, Any]]] = []
    if is_csv:
        reader = csv.DictReader(io.StringIO(content, newline=""))
        start = 2
        try:
            for record in reader:
                row = {column_key(k): v for k, v in record.items() if k is not None}
                if any(str(v).strip() for v in row.values() if v is not None):
                    rows.append((start, row))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{src}, line {reader.line_num}: not valid CSV ({exc}).") from None
        return rows
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{src}, line {number}: not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict):
            raise DataError(f"{src}, line {number}: not a JSON object.")
        rows.append((number, {column_key(k): v for k, v in row.items()}))
    return rows


def _unmatched_error(src: Path, unmatched: list[tuple[int, str]]) -> DataError:
    shown = "; ".join(f"line {n}: {why}" for n, why in unmatched[:10])
    rest = [str(n) for n, _ in unmatched[10:]]
    more = f"; and {len(rest)} more, on lines {', '.join(rest)}" if rest else ""
    rows = "row matches" if len(unmatched) == 1 else "rows match"
    return DataError(
        f"{src}: {len(unmatched)} {rows} no sample of this task ({shown}{more}).",
        hint="Give such rows their own label (XSTest 'label' or 'type', GSM8K 'answer' "
        "with '#### N'), fix the prompt text, or pass --skip-unmatched to score the rest.",
    )


def row_texts(path: str | Path) -> dict[int, tuple[str | None, str]]:
    """Each row's prompt (None without one) and completion, by line number, as
    :func:`score_file` reads them."""
    texts: dict[int, tuple[str | None, str]] = {}
    for number, row in _read_rows(Path(path)):
        prompt = first_value(row, _TEXT_KEYS)
        completion = first_value(row, _COMPLETION_KEYS)
        texts[number] = (
            prompt if isinstance(prompt, str) else None,
            completion if isinstance(completion, str) else "",
        )
    return texts


def _score_rows(
    src: Path, probe: str, task_def: Task, samples: Sequence[Sample]
) -> tuple[list[LineScore], list[tuple[Sample, ScoreResult]], list[tuple[int, str]]]:
    """Each row of a completions file scored against its sample (see :func:`score_file`):
    the scored lines, their samples with results, and the unmatched rows with the reason."""
    by_id = {s.id: s for s in samples}
    by_text = _text_index(samples)
    lines: list[LineScore] = []
    pairs: list[tuple[Sample, ScoreResult]] = []
    unmatched: list[tuple[int, str]] = []
    for number, row in _read_rows(src):
        where = f"{src}, line {number}"
        completion = first_value(row, _COMPLETION_KEYS)
        if completion is None and any(isinstance(row.get(k), str) for k in _COMPLETION_KEYS):
            completion = ""
        if not isinstance(completion, str):
            names = "', '".join(_COMPLETION_KEYS[:3])
            raise DataError(f"{where}: needs a string field '{names}' or similar.")
        matched, why = _match(row, by_id, by_text)
        try:
            own = task_def.row_target(row)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}.") from None
        sample = _row_sample(own, probe, row, matched) or matched
        if sample is None:
            if not why:
                raise DataError(
                    f"{where}: needs a 'sample_id' (or 'id'), a 'prompt' or 'question', "
                    "or its own label."
                )
            unmatched.append((number, why))
            continue
        result = task_def.score(sample, completion)
        pairs.append((sample, result))
        sid = matched.id if matched is not None else None
        lines.append(LineScore(number, sid, result.correct, result.extracted, result.label))
    return lines, pairs, unmatched


def score_file(
    task: str | Path,
    path: str | Path,
    data_dir: str | Path | None = None,
    *,
    skip_unmatched: bool = False,
) -> ScoreReport:
    """Score a file of completions (``pairscope score --task T FILE``), JSONL or CSV.

    Each row has the response under ``completion`` (or ``response``, ``output``, ...)
    and says what it answers, first that applies:

    1. its own label: XSTest ``label`` ('safe'/'unsafe') or prompt ``type``
       (``contrast_*`` is unsafe), GSM8K ``answer`` ending in ``#### N`` (or ``target``),
       TruthfulQA ``mc1_targets`` or ``choices`` with ``label``, in the row's own option
       order; the row needs no matching sample then;
    2. otherwise the probe sample with its ``sample_id`` (or ``id``), or whose prompt or
       question equals the row's ``prompt``/``question`` after :func:`normalise_text`.
       For TruthfulQA the letters then refer to the probe's own option order (see the
       sample's ``guide_user``).

    Column names are compared in lower case with spaces as underscores, so the releases'
    own files (XSTest ``id, type, prompt, completion, ...``; GSM8K ``question, answer``;
    TruthfulQA ``Question, Best Answer, ...``) are read as they come.

    Raises:
        DataError: unreadable or malformed file; a row without a completion or anything
            to match on; rows matching no sample, all listed with their line numbers
            (unless ``skip_unmatched``, which leaves them out and lists them in
            ``ScoreReport.skipped``); nothing left to score.
    """
    spec = load_probe(task)
    samples = build_samples(spec, load_dataset_records(spec, data_dir))
    task_def = get_task(spec.scorer)
    src = Path(path)
    lines, pairs, unmatched = _score_rows(src, spec.name, task_def, samples)
    if unmatched and not skip_unmatched:
        raise _unmatched_error(src, unmatched)
    if not lines:
        extra = f" ({len(unmatched)} unmatched rows skipped)" if unmatched else ""
        raise DataError(f"Completions file {src} has no lines to score{extra}.")
    k = sum(line.correct for line in lines)
    low, high = wilson(k, len(lines))
    return ScoreReport(
        task=spec.name,
        n=len(lines),
        n_correct=k,
        accuracy=k / len(lines),
        ci_low=low,
        ci_high=high,
        lines=lines,
        rates=task_def.file_rates(pairs) if task_def.file_rates is not None else None,
        skipped=[n for n, _ in unmatched],
    )
