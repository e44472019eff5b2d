"""Reading a vLLM server's answers (pure functions): ``/v1/models`` cards, top-k
logprobs keyed by token id or string, dense next-token rows, request bodies and the
greedy paths a request with lookahead answers."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

TOKEN_ID_PREFIX = "token_id:"
# vLLM clamps -inf to -9999.0 in its JSON answers.
_FLOOR = -9999.0


@dataclass(frozen=True)
class ServedCard:
    """One entry of ``/v1/models``."""

    id: str
    root: str | None = None
    max_model_len: int | None = None


def parse_models(payload: Any) -> list[ServedCard]:
    """The models a ``/v1/models`` answer lists."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ValueError("not a /v1/models answer (no 'data' list)")
    cards = []
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            length = entry.get("max_model_len")
            cards.append(
                ServedCard(
                    id=entry["id"],
                    root=entry.get("root") if isinstance(entry.get("root"), str) else None,
                    max_model_len=int(length) if isinstance(length, int) else None,
                )
            )
    return cards


def _restore_spaces(raw: str, text: str, marker: str = "\u2581") -> str:
    """vLLM puts back the leading spaces SentencePiece's decode strips (▁ pieces)."""
    count = len(raw) - len(raw.lstrip(marker))
    missing = count - (len(text) - len(text.lstrip(" ")))
    return " " * missing + text if missing > 0 else text


class TokenKeys:
    """Map the keys of a logprobs answer to token ids.

    ``token_id:123`` is exact. A decoded string (a server without
    ``return_tokens_as_token_ids``) is looked up in a table of this tokenizer's
    decoded ids, built on first use, decoded the way vLLM decodes them. Several ids
    can share a string: the one the tokenizer encodes the string to wins, else the
    lowest.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._table: dict[str, list[int]] | None = None
        self._chosen: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str) -> int | None:
        if key.startswith(TOKEN_ID_PREFIX):
            try:
                return int(key[len(TOKEN_ID_PREFIX) :])
            except ValueError:
                return None
        with self._lock:
            if key not in self._chosen:
                self._chosen[key] = self._resolve(key)
            return self._chosen[key]

    def _resolve(self, text: str) -> int | None:
        if self._table is None:
            self._table = self._build()
        ids = self._table.get(text)
        if not ids:
            return None
        if len(ids) > 1:
            encoded = self._tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] in ids:
                return int(encoded[0])
        return ids[0]

    def _build(self) -> dict[str, list[int]]:
        tok = self._tokenizer
        n = len(tok)
        raw = tok.convert_ids_to_tokens(list(range(n)))
        table: dict[str, list[int]] = {}
        for i in range(n):
            text = _restore_spaces(str(raw[i] or ""), tok.decode([i]) or "")
            table.setdefault(text, []).append(i)
        return table


def _value(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ValueError(f"a logprob is {type(x).__name__}, not a number")
    value = float(x)
    return -math.inf if value <= _FLOOR else value


def choice_positions(
    choice: dict[str, Any],
    keys: Callable[[str], int | None],
    start: int = 0,
    stop: int | None = None,
    *,
    echo: bool = False,
) -> list[dict[int, float]]:
    """``{token id: logprob}`` at each position of a choice: its top-k plus its own token.

    Args:
        choice: one element of a completions answer's ``choices``.
        keys: maps answer keys (``token_id:N`` or decoded strings) to ids.
        start, stop: the positions wanted (with ``echo``, prompt positions come first).
        echo: the answer echoes its prompt, whose first position has no distribution
            (null top logprobs, read as an empty entry); anywhere else null is refused.

    Raises:
        ValueError: the choice has no logprobs, fewer positions than asked for, a
            wanted position without its top logprobs, or a logprob that is not a number.
    """
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        raise ValueError("the answer holds no logprobs")
    tokens = logprobs.get("tokens") or []
    own = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    stop = len(tokens) if stop is None else stop
    if stop > min(len(tokens), len(own), len(tops)):
        raise ValueError(f"the answer has {len(tokens)} positions, {stop} were needed")
    out: list[dict[int, float]] = []
    for i in range(start, stop):
        entry: dict[int, float] = {}
        if tops[i] is None and echo and i == 0:
            out.append({})
            continue
        if not isinstance(tops[i], dict):
            raise ValueError(f"position {i} has no top_logprobs (got {tops[i]!r})")
        for key, value in tops[i].items():
            token = keys(key)
            if token is not None and value is not None:
                entry[token] = _value(value)
        token = keys(tokens[i]) if isinstance(tokens[i], str) else None
        if token is not None and own[i] is not None:
            entry.setdefault(token, _value(own[i]))
        out.append(entry)
    return out


def ordered_choices(answer: Any, expected: int) -> list[dict[str, Any]]:
    """The answer's choices in prompt order (one per prompt)."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != expected:
        count = len(choices) if isinstance(choices, list) else 0
        raise ValueError(f"expected {expected} choices, got {count}")
    return sorted(choices, key=lambda c: int(c.get("index", 0)))


def dense_logprobs(positions: Sequence[dict[int, float]], vocab: int) -> torch.Tensor:
    """A ``[len(positions), vocab]`` float32 tensor: the given logprobs, -inf elsewhere.

    Raises:
        ValueError: an id outside ``[0, vocab)`` (the local tokenizer is not the served one).
    """
    out = torch.full((len(positions), vocab), -math.inf, dtype=torch.float32)
    for row, entry in enumerate(positions):
        if not entry:
            continue
        ids = list(entry)
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(
                f"token id {bad[0]} is outside the local vocabulary of {vocab}: the local "
                "tokenizer is not the served model's"
            )
        out[row, torch.tensor(ids, dtype=torch.long)] = torch.tensor(
            [entry[i] for i in ids], dtype=torch.float32
        )
    return out


def completion_body(
    model: str,
    prompts: Sequence[Sequence[int]],
    *,
    logprobs: int,
    echo: bool = False,
    token_ids: bool = True,
    max_tokens: int = 1,
) -> dict[str, Any]:
    """A ``/v1/completions`` request for the logprobs of token-id prompts: the next
    token's, and with ``max_tokens`` > 1 those along the greedy continuation."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": [list(p) for p in prompts],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "logprobs": logprobs,
        "echo": echo,
        "skip_special_tokens": False,
    }
    if token_ids:
        body["return_tokens_as_token_ids"] = True
    return body


@dataclass(frozen=True)
class GreedyPath:
    """A server's greedy continuation of ``start``: its tokens and, at each position,
    the top-k logprobs that predicted it (``positions[j]`` follows ``start + tokens[:j]``)."""

    start: list[int]
    tokens: list[int | None]
    positions: list[dict[int, float]]

    def lookup(self, ids: Sequence[int]) -> dict[int, float] | None:
        """The distribution after ``ids`` if ``ids`` lies on this path, else None."""
        n, j = len(self.start), len(ids) - len(self.start)
        if not 0 <= j < len(self.positions):
            return None
        if list(ids[n:]) != self.tokens[:j] or list(ids[:n]) != self.start:
            return None
        return self.positions[j]
