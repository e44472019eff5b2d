"""Each model's token ids for its own context, under a tokenization policy (docs/methods.md §2).

A row's state is its response text. A model's context is its prompt text + that
text, and the ids it holds for it follow the policy:

- ``canonical`` (default): the canonical tokenization of ``prompt + text``, as the
  methods' reference code sees it (it sends the whole string at every step). After
  every append the context is re-encoded; the stream reuses its KV cache up to the
  longest common prefix of old and new ids, so only the changed tail is computed.
- ``own``: text chosen from a model's own token is fed to that model as that id
  (what transformers ``generate()`` does for one model); foreign text is re-encoded
  as ``prompt ids + encode(text)``.

Either way a model may *follow its own path*: NUDGING's guide writes a round's
words from one greedy pass over its own tokens, as the reference's one completion
per round does. Byte pieces a model wrote (incomplete characters) are held in its
ids until they form whole characters.
"""

from __future__ import annotations

import bisect
import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

from pairscope.decoding.encoding import encoder
from pairscope.errors import InputError, unknown
from pairscope.runtime.vocab import token_text

POLICIES = ("canonical", "own")
# Canonical re-encoding starts at least this many ids before the end of the last one.
SUFFIX_TOKENS = 8


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise unknown("tokenization policy", policy, POLICIES)
    return policy


@dataclass
class Context:
    """One model's view of one row.

    ``ids`` hold the model's context for the first ``synced`` characters of the
    response text, plus any ``held`` own byte pieces; when the text grows past
    ``synced`` the ids are rebuilt by the policy before the next pass.
    """

    prompt_text: str
    prompt_ids: list[int]
    ids: list[int]
    add_special: bool = False
    synced: int = 0
    held: list[int] = field(default_factory=list)
    # Canonical policy: where each id of ``ids`` starts in ``prompt_text + text``.
    starts: list[int] = field(default_factory=list)


class ModelView:
    """A loaded model with its token texts, its policy and its stream for one batch."""

    def __init__(self, lm: Any, tag: int, policy: str = "canonical") -> None:
        self.lm = lm
        self.tag = tag
        self.policy = check_policy(policy)
        self.vocab = token_text(lm.tokenizer, lm.eos_ids, tag)
        self.stream: Any = None
        self._prefix: Any = None
        self._forked: Any = None  # the one-row stream the open stream's rows copied

    # -- contexts --------------------------------------------------------------------------

    def context(self, prompt_text: str, add_special: bool, reserve: int) -> Context:
        """A row's context for ``prompt_text``, cut from the left to fit the window."""
        tok = self.lm.tokenizer
        ids, starts = self._encode(prompt_text, add_special)
        kept = fit_prompt(self.lm, ids, reserve)
        if kept != ids:
            bos = tok.bos_token_id
            body = kept[1:] if bos is not None and kept and kept[0] == bos and add_special else kept
            prompt_text = str(tok.decode(body, clean_up_tokenization_spaces=False))
            ids, starts = self._encode(prompt_text, add_special)
        # The prompt's offsets make its first re-encoding a bounded suffix too.
        return Context(prompt_text, ids, list(ids), add_special, starts=starts)

    def _encode(self, text: str, add_special: bool) -> tuple[list[int], list[int]]:
        """One string's ids and, for a fast tokenizer, where each starts ([] otherwise)."""
        ids, starts = self._encoder.encode([text], add_special, self._offsets)
        return ids[0], starts[0] if starts is not None else []

    def targets(self, ctxs: list[Context], texts: list[str]) -> list[list[int]]:
        """The ids each context should hold for its row's text (re-encoded where stale,
        all stale rows in one batched tokenizer call)."""
        stale = [i for i, (c, t) in enumerate(zip(ctxs, texts)) if c.synced != len(t)]
        if stale:
            if self.policy == "canonical":
                self._canonical([ctxs[i] for i in stale], [texts[i] for i in stale])
            else:
                encoded, _ = self._encoder.encode([texts[i] for i in stale], False, False)
                for i, ids in zip(stale, encoded):
                    ctxs[i].ids = ctxs[i].prompt_ids + ids
            for i in stale:
                ctxs[i].synced = len(texts[i])
                ctxs[i].held = []
        return [c.ids for c in ctxs]

    def _canonical(self, ctxs: list[Context], texts: list[str]) -> None:
        """Canonical ids of ``prompt + text``. Where the tokenizer allows it, only a bounded
        suffix is re-encoded: from a word start at least ``SUFFIX_TOKENS`` ids before the
        end of the last encoding, which the tokenizer splits at anyway (tested equal to
        full re-encoding for every tokenizer family); otherwise the whole string."""
        jobs: dict[tuple[bool, bool], list[tuple[Context, str, int]]] = {}
        for ctx, text in zip(ctxs, texts):
            full = ctx.prompt_text + text
            cut = self._cut(ctx, full) if self._bounded else None
            if cut is None:
                jobs.setdefault((ctx.add_special, True), []).append((ctx, full, 0))
            else:
                jobs.setdefault((False, False), []).append((ctx, full, cut))
        for (special, whole), items in jobs.items():
            strings = [full[cut:] for _, full, cut in items]
            encoded, offsets = self._encoder.encode(strings, special, self._offsets)
            for n, (ctx, _, cut) in enumerate(items):
                ids = encoded[n]
                starts = [cut + o for o in offsets[n]] if offsets is not None else []
                if whole:
                    ctx.ids, ctx.starts = ids, starts
                else:
                    keep = _keep_before(ctx.starts, cut)
                    ctx.ids, ctx.starts = ctx.ids[:keep] + ids, ctx.starts[:keep] + starts

    def _cut(self, ctx: Context, full: str) -> int | None:
        """A character offset to re-encode from: the start of a word-initial id at least
        ``SUFFIX_TOKENS`` ids before the end of the context's last canonical encoding.

        ``starts`` cover the ids of that encoding; ids the model appended since (its
        own token, fed as is until this re-encoding) come after them and are re-encoded
        with the suffix."""
        starts = ctx.starts
        if len(starts) > len(ctx.ids) or len(starts) <= SUFFIX_TOKENS + 1:
            return None
        for j in range(len(starts) - SUFFIX_TOKENS, 0, -1):
            c = starts[j]
            if c > starts[j - 1] and c < len(full) and full[c] in " \n":
                return c
        return None

    @functools.cached_property
    def _encoder(self) -> Any:
        return encoder(self.lm.tokenizer)

    @functools.cached_property
    def _offsets(self) -> bool:
        return bool(getattr(self.lm.tokenizer, "is_fast", False))

    @functools.cached_property
    def _bounded(self) -> bool:
        """A suffix can be encoded on its own: a fast tokenizer that does not put a space
        marker in front of every string it encodes (Llama-2 / Metaspace-"first" ones do)."""
        tok = self.lm.tokenizer
        if not self._offsets:
            return False
        first = tok.convert_ids_to_tokens(tok.encode("x", add_special_tokens=False))
        return bool(first) and not str(first[0]).startswith(("\u2581", "\u0120"))

    def feed_own(self, ctx: Context, ids: list[int], text_before: str, follow: bool) -> str | None:
        """Give a model its own ids chosen at the end of ``text_before``.

        Returns the text they release (None while byte pieces wait for a whole
        character). ``follow``: the model keeps its own ids for this text even under
        the canonical policy (a guide writing its own words).
        """
        if ctx.synced != len(text_before):
            return self.vocab.release(ids) if not ctx.held else None
        ctx.ids = ctx.ids + ids
        ctx.held = ctx.held + ids
        released = self.vocab.release(ctx.held)
        if released is None:
            return None
        ctx.held = []
        if follow or self.policy == "own":
            ctx.synced = len(text_before) + len(released)
        return released

    def flush_held(self, ctx: Context) -> str:
        """Text of held byte pieces, given up (another model's text comes next)."""
        if not ctx.held:
            return ""
        text = self.vocab.decode(ctx.held)
        ctx.held = []
        ctx.synced = -1
        return text

    # -- streams ---------------------------------------------------------------------------

    def open(self, prompts: list[list[int]], lookahead: int = 1, share: bool = True) -> None:
        """A fresh stream for one batch. When the prompts share a prefix (a few-shot
        block, a chat template's system text), it is computed once in a one-row stream
        and every row of this and later batches starts from a copy of it.
        ``lookahead``: how far this model's greedy path is likely followed (a served
        model then asks for that many tokens per request)."""
        from pairscope.runtime.stream import MIN_SHARED_PREFIX, shared_prefix

        stream = self.lm.new_stream(len(prompts), lookahead=lookahead)
        self._forked = None
        if share and stream.can_fork:
            kept = self._prefix.rows[0].ids if self._prefix is not None else []
            if len(prompts) > 1:
                prefix = shared_prefix(prompts)
            else:
                # One prompt alone says nothing about what later batches share.
                [only] = prompts
                prefix = kept if len(only) > len(kept) and only[: len(kept)] == kept else []
            if len(prefix) >= MIN_SHARED_PREFIX:
                if prefix != kept:
                    self._prefix = self.lm.new_stream(1)
                    self._prefix.forward({0: prefix})
                stream = self._prefix.fork(len(prompts))
                self._forked = self._prefix
        self.stream = stream

    def admit(self, prompts: list[list[int]]) -> None:
        """Rows for these prompts after the open stream's rows (finished rows' places),
        each from the prefix the stream's rows started from where it shares it."""
        self.stream.admit(prompts, self._forked)


def _keep_before(starts: list[int], cut: int) -> int:
    """How many ids start before character ``cut``."""
    return bisect.bisect_left(starts, cut)


def fit_prompt(lm: Any, ids: list[int], reserve: int) -> list[int]:
    """Truncate a prompt from the left (keeping a leading BOS) to fit the context window."""
    window = lm.context_window
    if window is None or len(ids) + reserve <= window:
        return ids
    keep = max(window - reserve, 1)
    bos = lm.tokenizer.bos_token_id
    head = [ids[0]] if bos is not None and ids and ids[0] == bos else []
    warnings.warn(
        f"Prompt of {len(ids)} tokens does not fit {lm.name}'s context window of {window} "
        f"with {reserve} new tokens; truncating it from the left.",
        stacklevel=3,
    )
    return head + ids[len(ids) - keep + len(head) :]


def check_max_new(n: int) -> int:
    if n < 1:
        raise InputError(f"max_new_tokens must be >= 1 (got {n}).")
    return n
