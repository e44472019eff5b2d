"""What a token adds to the text, and the keys under which two tokenizers' strings match.

The text of a token is what it adds to a decoded sequence, not what it decodes to
alone. SentencePiece decoders of the Llama-2 / Mistral kind strip the leading space
of a decoded sequence (``decode([id("▁the")]) == "the"``), so every decode here runs
after a fixed *anchor* token and cuts the anchor's text off: the decoder's strip
then falls on the anchor, never on the token. The same holds for byte-level BPE
(GPT-2, Qwen, Llama 3, SmolLM), Metaspace with any prepend scheme, and Gemma's
SentencePiece BPE; tests build a tiny tokenizer of each family.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

END = "\x00<END>"  # one shared end symbol for every model's end tokens

MatchKey = str | tuple[str, int, int]

# Strings that say nothing about a shared next word: never matched across models.
UNMATCHABLE = frozenset({"", "\ufffd"})
# A model holds at most this many byte pieces waiting for a whole character.
MAX_HELD_BYTES = 4


def _anchor(tokenizer: Any, special: frozenset[int]) -> tuple[list[int], str]:
    """A short, plain token sequence whose decoded text every decode is prefixed with."""
    for probe in ("a", "x", "0", "."):
        ids = [int(i) for i in tokenizer.encode(probe, add_special_tokens=False)]
        if ids and not set(ids) & special:
            text = str(tokenizer.decode(ids, clean_up_tokenization_spaces=False))
            if text and "\ufffd" not in text:
                return ids, text
    return [], ""


class TokenText:
    """Memoised token text for one tokenizer.

    ``key(id)`` is what the blend merges on: the token's text, the shared END
    symbol for end tokens, or a key unique to this model for byte pieces
    (incomplete characters), other special tokens and empty strings, which never
    match across models.
    """

    def __init__(self, tokenizer: Any, end_ids: frozenset[int], tag: int) -> None:
        self._tokenizer = tokenizer
        self._end = frozenset(int(i) for i in end_ids)
        self._tag = tag
        self._special = frozenset(int(i) for i in tokenizer.all_special_ids) | self._end
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._special |= frozenset(int(i) for i, t in added.items() if getattr(t, "special", False))
        self._anchor_ids, self._anchor_text = _anchor(tokenizer, self._special)
        self._text: dict[int, str] = {}
        self._keys: dict[int, MatchKey] = {}
        self._batch = _batch_decoder(tokenizer)

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special

    def decode(self, ids: Iterable[int]) -> str:
        """The text ``ids`` add to a sequence (special tokens add nothing)."""
        return self.decode_many([ids])[0]

    def decode_many(self, seqs: Iterable[Iterable[int]]) -> list[str]:
        """:meth:`decode` of several id sequences, in one call to a fast tokenizer's
        batch decoder where it has one (the same text: see :func:`_batch_decoder`)."""
        kept = [[int(i) for i in ids if int(i) not in self._special] for ids in seqs]
        todo = [n for n, ids in enumerate(kept) if ids]
        out = [""] * len(kept)
        fulls = self._raw([self._anchor_ids + kept[n] for n in todo])
        cut = len(self._anchor_text)
        for n, full in zip(todo, fulls):
            if self._anchor_text and full.startswith(self._anchor_text):
                out[n] = full[cut:]
            else:
                out[n] = self._raw([kept[n]])[0]
        return out

    def _raw(self, seqs: list[list[int]]) -> list[str]:
        if self._batch is not None and len(seqs) > 1:
            return [str(t) for t in self._batch(seqs)]
        return [str(self._tokenizer.decode(s, clean_up_tokenization_spaces=False)) for s in seqs]

    def text(self, token_id: int) -> str:
        """What one token adds to the text ("" for special tokens)."""
        cached = self._text.get(token_id)
        if cached is None:
            cached = self.decode([token_id])
            self._text[token_id] = cached
        return cached

    def is_byte(self, token_id: int) -> bool:
        """A piece of an incomplete character (a non-ASCII byte-fallback token such as
        ``<0xE2>``, or part of a multi-byte character in byte-level BPE). ASCII
        byte-fallback tokens (``<0x41>``) are whole characters."""
        return "\ufffd" in self.text(token_id) and token_id not in self._special

    def is_end(self, token_id: int) -> bool:
        return token_id in self._end

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special

    def key(self, token_id: int) -> MatchKey:
        """The token's match key (memoised)."""
        key = self._keys.get(token_id)
        if key is None:
            key = self._keys[token_id] = self._key(token_id)
        return key

    def keys(self, ids: Sequence[int]) -> list[MatchKey]:
        """:meth:`key` of each id; the texts not yet known are decoded in one batch."""
        memo = self._keys
        try:
            return [memo[i] for i in ids]
        except KeyError:
            pass
        missing = [i for i in dict.fromkeys(ids) if i not in memo and i not in self._text]
        if len(missing) > 1:
            for token, text in zip(missing, self.decode_many([[i] for i in missing])):
                self._text[token] = text
        return [memo[i] if i in memo else self.key(i) for i in ids]

    def _key(self, token_id: int) -> MatchKey:
        if token_id in self._end:
            return END
        text = self.text(token_id)
        if token_id in self._special or text in UNMATCHABLE or self.is_byte(token_id):
            return ("own", self._tag, token_id)
        return text

    def release(self, held: list[int]) -> str | None:
        """The text of held own ids once they form whole characters (None: keep holding
        while the last is a byte piece that leaves a character incomplete)."""
        text = self.decode(held)
        waiting = self.is_byte(held[-1]) and text.endswith("\ufffd")
        if waiting and len(held) < MAX_HELD_BYTES:
            return None
        return text


_SHARED: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], TokenText]] = (
    weakref.WeakKeyDictionary()
)


def token_text(tokenizer: Any, end_ids: frozenset[int], tag: int) -> TokenText:
    """The :class:`TokenText` of a tokenizer, shared by every engine over it (its memos
    then carry from one batch, task and method to the next). A tokenizer that gained
    tokens gets a fresh one."""
    try:
        shelf = _SHARED.setdefault(tokenizer, {})
    except TypeError:  # not weakly referable: one of its own
        return TokenText(tokenizer, end_ids, tag)
    key = (frozenset(end_ids), tag, len(tokenizer))
    found = shelf.get(key)
    if found is None:
        found = shelf[key] = TokenText(tokenizer, end_ids, tag)
    return found


def _batch_decoder(tokenizer: Any) -> Any:
    """A fast tokenizer's batch decoder, where ``tokenizer.decode(ids,
    clean_up_tokenization_spaces=False)`` is exactly the backend's ``decode(ids,
    skip_special_tokens=False)`` (a transformers ``TokenizersBackend`` whose ``_decode``
    no subclass overrides); None otherwise, and each sequence is decoded alone."""
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - an older transformers
        return None
    plain = isinstance(tokenizer, TokenizersBackend) and (
        type(tokenizer)._decode is TokenizersBackend._decode
    )
    batch = getattr(getattr(tokenizer, "_tokenizer", None), "decode_batch", None)
    if not plain or batch is None:
        return None
    return lambda seqs: batch(seqs, skip_special_tokens=False)


def end_ids(generation_eos: Any, tokenizer: Any) -> frozenset[int]:
    """The ids that end a response: the generation config's and tokenizer's end of
    sequence, plus the special tokens a chat template puts right after an assistant
    turn (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>``), which generation configs
    of base models often leave out."""
    ids: set[int] = set()
    for value in (generation_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple | set | frozenset):
            ids.update(int(v) for v in value)
    ids.update(_template_end_ids(tokenizer))
    return frozenset(ids)


def _template_end_ids(tokenizer: Any) -> set[int]:
    if not getattr(tokenizer, "chat_template", None):
        return set()
    marker = "Zq7Marker"
    try:
        text = str(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                tokenize=False,
            )
        )
    except Exception:  # noqa: BLE001 - a template that needs other roles: no extra ends
        return set()
    cut = text.rfind(marker)
    if cut < 0:
        return set()
    after = tokenizer.encode(text[cut + len(marker) :], add_special_tokens=False)
    special = {int(i) for i in tokenizer.all_special_ids}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special |= {int(i) for i, t in added.items() if getattr(t, "special", False)}
    out: set[int] = set()
    for token in after:
        if int(token) not in special:
            break
        out.add(int(token))
    return out
