"""`generate --input`: a JSONL file of requests in, one JSON result a line out.

Every row is read and checked before a model loads, so a bad row costs nothing. Lines
are split on ``\\n`` only: JSON strings may hold U+2028 and other characters that
``str.splitlines`` treats as line ends (pairscope's own output writes them as is).

Each result is appended to ``--output`` (flushed and ``fsync``ed) as soon as its row
finishes, carrying ``input_line``, the line number of its request. Running the same
command again with the same ``--output`` keeps the finished rows and decodes only the
rest, so a kill loses at most the rows in flight. Once every row is done the file is
rewritten in input order. The caller's own columns (``id`` or anything else that is not
a request field) are copied to the row's result unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pairscope.errors import InputError

REQUEST_KEYS = ("base_prompt", "guide_prompt", "system", "guide_prefix", "max_new_tokens", "stop")
# Fields of a result line; a caller's column of the same name would be overwritten.
RESULT_KEYS = frozenset(
    {
        "input_line",
        "text",
        "method",
        "positions",
        "uncertain",
        "overridden",
        "ir_kind",
        "ir_numerator",
        "ir_denominator",
        "intervention_rate",
        "uncertain_rate",
        "stop_reason",
    }
)


@dataclass(frozen=True)
class Row:
    """One request of an input file: its line number, the request, the caller's columns."""

    line: int
    request: Any  # pairscope.decoding.engine.Request
    columns: dict[str, Any] = field(default_factory=dict)


def read_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-empty line, split on ``\\n`` only.

    Raises:
        InputError: the file is missing or not UTF-8.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"No such {what}: {path}.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc.reason}.") from None
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc}") from None
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, line


def read_requests(
    path: Path, max_new: int, stop: tuple[str, ...], system: str | None, prefix: str
) -> list[Row]:
    """Every request of a JSONL file, checked; command-line values are the defaults.

    Raises:
        InputError: a line that is not a JSON object, a request field of the wrong type
            (``null`` included), or a caller's column named like a result field; the
            line is named.
    """
    if not path.is_file():
        raise InputError(f"No such input file: {path}.")
    rows = [
        _row(f"{path}:{n}", n, line, max_new, stop, system, prefix)
        for n, line in read_lines(path, "input file")
    ]
    if not rows:
        raise InputError(f"{path} holds no requests.")
    return rows


def _row(
    where: str,
    number: int,
    line: str,
    max_new: int,
    stop: tuple[str, ...],
    system: str | None,
    prefix: str,
) -> Row:
    from pairscope.decoding.engine import Request

    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("base_prompt"), str):
        raise InputError(f"{where}: each line needs a string 'base_prompt'.")
    for key in ("guide_prompt", "system", "guide_prefix"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"{where}: '{key}' must be a string (got {_kind(data[key])}).")
    new = data.get("max_new_tokens", max_new)
    if isinstance(new, bool) or not isinstance(new, int) or new < 1:
        raise InputError(f"{where}: 'max_new_tokens' must be an integer >= 1 (got {new!r}).")
    stops = data.get("stop", list(stop))
    stops = [stops] if isinstance(stops, str) else stops
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InputError(f"{where}: 'stop' must be a string or a list of strings.")
    columns = {k: v for k, v in data.items() if k not in REQUEST_KEYS}
    clash = sorted(set(columns) & RESULT_KEYS)
    if clash:
        raise InputError(
            f"{where}: column(s) {', '.join(clash)} would be overwritten by the result; "
            "rename them."
        )
    request = Request(
        data["base_prompt"],
        str(data.get("guide_prompt", data["base_prompt"])),
        tuple(stops),
        new,
        data.get("system", system),
        data.get("guide_prefix", prefix),
    )
    return Row(number, request, columns)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class ResultsFile:
    """``--output``: results appended as rows finish; on a rerun, the finished rows."""

    def __init__(self, path: Path, rows: list[Row], method: str) -> None:
        self.path = path
        self.lines = {row.line for row in rows}
        self.done: dict[int, dict[str, Any]] = {}
        if path.is_file():
            self._read_done(method)

    def _read_done(self, method: str) -> None:
        """The results already in the file; a last line cut short by a kill is dropped."""
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(raw.rfind(b"\n") + 1)
        for number, line in read_lines(self.path, "output file"):
            where = f"--output {self.path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(
                    f"{where} is not JSON, so the file is not a results file to continue.",
                    hint="Choose another --output, or delete that file to start over.",
                ) from None
            index = data.get("input_line") if isinstance(data, dict) else None
            if index not in self.lines or data.get("method") != method:
                raise InputError(
                    f"{where} is not a {method} result of a line of this input, so the "
                    "file was written for other requests or another method.",
                    hint="Choose another --output, or delete that file to start over.",
                )
            self.done[index] = data

    def append(self, result: dict[str, Any]) -> None:
        """Write one result and put it on disk before returning."""
        line = json.dumps(result, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[int(result["input_line"])] = result

    def finish(self) -> None:
        """Rewrite the complete file in input order (atomically)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                for index in sorted(self.done):
                    handle.write(json.dumps(self.done[index], ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def result_line(row: Row, result: Any) -> dict[str, Any]:
    """A row's output: the caller's columns, its input line, then the result."""
    return {**row.columns, "input_line": row.line, **result.to_dict(with_steps=False)}
