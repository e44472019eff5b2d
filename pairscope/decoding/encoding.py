"""Encoding the strings of one step: several short strings, every step, for every model.

The decoding loop re-encodes each row's changed tail at every step (decoding/contexts.py).
Two things made that cost more than the tokenizer's own work:

- A fast tokenizer's batch encoder spreads a batch over a thread pool. For a batch of
  short strings, waking the pool costs more than the encoding, and it competes with
  torch's threads, which are still spinning after a forward pass: calls of 16 strings
  of 60 characters took 0.4 ms when serial and up to 6 ms in the pool. Batches below
  :data:`SERIAL_CHARS` characters are therefore encoded serially (the ``tokenizers``
  library reads ``TOKENIZERS_PARALLELISM`` at every call; it is set for the call and
  restored after it).
- transformers' ``__call__`` wraps the backend in several layers of argument handling
  and per-encoding conversion. Where that wrapper provably does nothing but call the
  backend (a plain ``TokenizersBackend`` with no truncation or padding set and the
  default special-token splitting), the backend's ``encode_batch`` is called directly;
  tested equal to ``__call__`` for every tokenizer family. Any other tokenizer goes
  through ``__call__``.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

# A batch of strings shorter than this in all is encoded without the thread pool.
SERIAL_CHARS = 8192
_PARALLELISM = "TOKENIZERS_PARALLELISM"

Encoded = tuple[list[list[int]], list[list[int]] | None]


@contextlib.contextmanager
def serial() -> Iterator[None]:
    """Fast tokenizers encode without their thread pool inside this block."""
    before = os.environ.get(_PARALLELISM)
    os.environ[_PARALLELISM] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[_PARALLELISM]
        else:
            os.environ[_PARALLELISM] = before


def _plain_backend(tokenizer: Any) -> Any:
    """The tokenizers-library backend, where transformers' ``__call__`` of a batch with no
    padding, truncation or length options is exactly its ``encode_batch`` (the
    class overrides neither ``__call__`` nor ``_encode_plus``); None otherwise."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - an older transformers
        return None
    cls = type(tokenizer)
    plain = (
        isinstance(tokenizer, TokenizersBackend)
        and cls.__call__ is PreTrainedTokenizerBase.__call__
        and cls._encode_plus is TokenizersBackend._encode_plus
    )
    return getattr(tokenizer, "_tokenizer", None) if plain else None


class Encoder:
    """Batched encoding for one tokenizer, equal to ``tokenizer(strings, ...)``."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._backend = _plain_backend(tokenizer)

    def _direct(self) -> Any:
        """The backend, if the wrapper would leave its state as it is (checked per call:
        anyone may enable truncation on a shared tokenizer)."""
        backend = self._backend
        if backend is None or getattr(self.tokenizer, "_in_target_context_manager", False):
            return None
        if backend.truncation is not None or backend.padding is not None:
            return None
        if bool(backend.encode_special_tokens) != bool(self.tokenizer.split_special_tokens):
            return None
        return backend

    def encode(self, strings: Sequence[str], add_special: bool, offsets: bool) -> Encoded:
        """Each string's ids, and with ``offsets`` the character offset where each id
        starts (None without)."""
        strings = list(strings)
        if not strings:
            return [], [] if offsets else None
        quiet = sum(len(s) for s in strings) < SERIAL_CHARS
        with serial() if quiet else contextlib.nullcontext():
            backend = self._direct()
            if backend is not None:
                encodings = backend.encode_batch(strings, add_special_tokens=add_special)
                ids = [list(e.ids) for e in encodings]
                starts = [[o[0] for o in e.offsets] for e in encodings] if offsets else None
                return ids, starts
            enc = self.tokenizer(
                strings, add_special_tokens=add_special, return_offsets_mapping=offsets
            )
        ids = [[int(x) for x in row] for row in enc["input_ids"]]
        if not offsets:
            return ids, None
        return ids, [[int(o[0]) for o in row] for row in enc["offset_mapping"]]


_ENCODERS: weakref.WeakKeyDictionary[Any, Encoder] = weakref.WeakKeyDictionary()


def encoder(tokenizer: Any) -> Encoder:
    """The :class:`Encoder` of a tokenizer (one per tokenizer object)."""
    try:
        found = _ENCODERS.get(tokenizer)
    except TypeError:  # not weakly referenceable
        return Encoder(tokenizer)
    if found is None:
        found = _ENCODERS[tokenizer] = Encoder(tokenizer)
    return found
