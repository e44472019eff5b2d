"""Token id -> string, and the keys under which two tokenizers' strings are matched."""

from __future__ import annotations

import re
from typing import Any

END = "\x00<END>"  # one shared end symbol for every model's end-of-sequence tokens

_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")

MatchKey = str | tuple[str, int, int]


class TokenText:
    """Memoised decoding of single token ids for one tokenizer.

    ``key(id)`` is what the blend merges on: the decoded string, the shared END
    symbol for end-of-sequence ids, or a key unique to this model for byte pieces
    (incomplete characters) and other special tokens, which never match across
    models.
    """

    def __init__(self, tokenizer: Any, eos_ids: frozenset[int], tag: int) -> None:
        self._tokenizer = tokenizer
        self._eos = eos_ids
        self._tag = tag
        self._special = frozenset(int(i) for i in tokenizer.all_special_ids)
        self._text: dict[int, str] = {}
        self._byte: dict[int, bool] = {}

    def text(self, token_id: int) -> str:
        """The decoded string of one token ("" for special tokens)."""
        cached = self._text.get(token_id)
        if cached is None:
            if token_id in self._special:
                cached = ""
            else:
                cached = self._tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            self._text[token_id] = cached
        return cached

    def is_byte(self, token_id: int) -> bool:
        """A byte piece: a byte-fallback token (``<0x41>``) or part of a multi-byte character.

        Decoders group consecutive byte tokens, so these are held back and decoded
        together with the tokens around them.
        """
        cached = self._byte.get(token_id)
        if cached is None:
            raw = self._tokenizer.convert_ids_to_tokens(token_id)
            cached = bool(_BYTE_TOKEN.match(str(raw))) or "\ufffd" in self.text(token_id)
            self._byte[token_id] = cached
        return cached

    def is_end(self, token_id: int) -> bool:
        return token_id in self._eos

    def key(self, token_id: int) -> MatchKey:
        if token_id in self._eos:
            return END
        text = self.text(token_id)
        if token_id in self._special or text == "" or self.is_byte(token_id):
            return ("own", self._tag, token_id)
        return text

    def decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, clean_up_tokenization_spaces=False))
