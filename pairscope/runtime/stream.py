"""One model's batched KV cache, kept in sync with each row's target token ids.

Rows of a batch need different things at each step: one appends its own token,
another must roll back two tokens and feed four re-encoded ones. A transformers
cache can only be cropped for all rows at once, so rows never crop here.
Instead the cache lives in *slot* space: every forward call adds the same number
of slots to every row, and a per-row attention mask says which slots hold live
tokens. Rolling a row back just masks its dead slots; new tokens are fed
right-aligned in the new block, with explicit position ids that count only live
tokens. Attention over masked slots is exactly zero, so the next-token
distribution equals that of an uncached pass over the row's live ids (tested).

Sliding-window layers (Gemma 2/3, Mistral) count their window in *live tokens*:
such a model keeps every slot of every layer and gets explicit 4-D masks in which
a query sees a key only if the key is live, not later than the query, and (in a
sliding layer) fewer than ``window`` positions back. Position ids count live
tokens, so neither dead slots from rollbacks nor padding shrink a row's window,
and a result never depends on which samples share a batch (tested against
uncached passes past the window).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from pairscope.errors import RuntimeFault
from pairscope.runtime.kvcache import in_place
from pairscope.runtime.scores import Scores, check_finite


@dataclass
class _Row:
    """What is in the cache for one row: live token ids and the slot of each."""

    ids: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists.

    Called for every row at every step, where the answer is nearly always "all of the
    shorter one": that is one list comparison in C; otherwise a bisection over slice
    comparisons (log n of them) finds the first difference.
    """
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


# A shared prompt prefix shorter than this is not worth a separate pass.
MIN_SHARED_PREFIX = 8


def _right(t: torch.Tensor, slots: int) -> torch.Tensor:
    """``t`` (slots in dimension 2 for a cache's keys or values, else in dimension 1)
    padded with zeros on the left to ``slots`` slots: its slots become the last ones."""
    dim = 2 if t.dim() == 4 else 1
    missing = slots - t.shape[dim]
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim) + [missing, 0]
    return torch.nn.functional.pad(t, pad)


# select() drops the leading slots no row holds once there are at least this many.
COMPACT_SLOTS = 64


def shared_prefix(seqs: list[list[int]]) -> list[int]:
    """The longest prefix of every sequence that leaves at least one token of each
    (so a pass that starts from it always has a last token to read logits at)."""
    if not seqs:
        return []
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for other in seqs[1:]:
        n = min(n, common_prefix(first, other))
    return first[: max(n, 0)]


def window_layout(config: Any) -> tuple[int | None, list[str]]:
    """(sliding window, the attention kinds of the model's layers): (None, []) for a
    model whose every layer attends to the whole context."""
    window = getattr(config, "sliding_window", None)
    kinds = list(getattr(config, "layer_types", None) or [])
    if not window:
        return None, []
    if kinds:
        return (int(window), kinds) if "sliding_attention" in kinds else (None, [])
    # A sliding window without per-layer kinds (Mistral): every layer slides.
    return int(window), ["sliding_attention"]


def cache_keyword(model: Any) -> str:
    """The forward() keyword of the KV cache: transformers renamed `past_key_values`
    to `cache` (5.2x); accept both."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class ModelStream:
    """Batched incremental forward passes for one model."""

    # One narrow pass that brings every row up to date is cheaper than lazy catch-ups
    # (see Engine._guide_sync): a pass costs rows x width.
    sync_all_rows = True
    # A one-row stream (a shared prompt prefix) can be copied into a batch: fork().
    can_fork = True

    def __init__(self, model: Any, batch: int, pad_id: int = 0) -> None:
        from transformers import DynamicCache

        self.model = model
        self.device = next(model.parameters()).device
        self.window, kinds = window_layout(
            getattr(model.config, "get_text_config", lambda: model.config)()
        )
        self._mixed = len(set(kinds)) > 1
        self.cache = in_place(DynamicCache(config=model.config), keep_all=self.window is not None)
        self.rows = [_Row() for _ in range(batch)]
        self.mask = torch.zeros((batch, 0), dtype=torch.long, device=self.device)
        # Position id of each slot (only read for sliding-window masks).
        self.pos = torch.zeros((batch, 0), dtype=torch.long, device=self.device)
        self._dtype = next(model.parameters()).dtype
        self.pad_id = pad_id
        self._cache_kw = cache_keyword(model)
        self.passes = 0  # forward passes so far (benchmarks and tests read it)

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in that order), e.g. after some rows finished."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask.index_select(0, index)
        self.pos = self.pos.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]
        # Rows admitted in finished rows' places hold their slots at the end of the cache
        # (see admit): the leading slots only finished rows held are dropped.
        first = min((row.slots[0] for row in self.rows if row.slots), default=0)
        if first >= COMPACT_SLOTS:
            self._drop_slots(first)

    def _drop_slots(self, count: int) -> None:
        """Drop the first ``count`` slots, which no row holds."""
        for layer in self.cache.layers:
            keys = getattr(layer, "keys", None)
            if keys is None or not keys.numel():
                continue
            if keys.shape[-2] != self.slots:
                raise RuntimeFault("A cache layer that drops slots cannot be compacted.")
            layer.keys, layer.values = keys[:, :, count:], layer.values[:, :, count:]
        self.mask = self.mask[:, count:]
        if self.pos.shape[1]:
            self.pos = self.pos[:, count:]
        for row in self.rows:
            row.slots = [slot - count for slot in row.slots]

    def fork(self, batch: int) -> ModelStream:
        """A new stream of ``batch`` rows, each a copy of this one-row stream's state
        (a shared prompt prefix computed once, reused by every row and every batch)."""
        if len(self.rows) != 1:
            raise ValueError("Only a one-row stream can be forked.")
        out = copy.copy(self)
        out.cache = copy.deepcopy(self.cache)
        if batch > 1:  # the deep copy already is the one row (teacher forcing forks one)
            out.cache.batch_repeat_interleave(batch)
        out.mask = self.mask.repeat(batch, 1)
        out.pos = self.pos.repeat(batch, 1)
        row = self.rows[0]
        out.rows = [_Row(list(row.ids), list(row.slots)) for _ in range(batch)]
        return out

    @torch.inference_mode()
    def admit(self, prompts: list[list[int]], prefix: ModelStream | None = None) -> None:
        """Add a row after the batch's rows for each prompt (a finished row's place).

        The new rows are computed on their own, in a stream of their own: from a fork
        of the one-row stream ``prefix`` (a shared prompt prefix) for the prompts that
        start with its ids, from nothing for the others, each fed its prompt but the
        last id (which its first step feeds, as a forked row's). Their slots are then
        copied into this stream's last slots: a pass of the new rows here would add
        its width in masked slots to every running row, and every later pass would
        attend over them. The slots before them, which only earlier rows hold, are
        dropped once those rows have finished (:meth:`select`), so a stream that keeps
        taking rows does not grow by every step it ever ran. A row's results do not
        depend on where its live slots lie (as after a rollback; tested).
        """
        if not prompts:
            return
        parts = self._computed_apart(prompts, prefix)
        widest = max(part.slots for _, part in parts)
        if widest > self.slots:
            self._add_slots(widest - self.slots)
        slots = self.slots
        at = [torch.tensor(members, dtype=torch.long, device=self.device) for members, _ in parts]
        self._append_cache_rows(len(prompts), slots, at, parts)
        self._append_mask_rows(len(prompts), slots, at, parts)
        rows: list[_Row] = [_Row() for _ in prompts]
        for members, part in parts:
            shift = slots - part.slots
            for j, i in enumerate(members):
                row = part.rows[j]
                rows[i] = _Row(list(row.ids), [slot + shift for slot in row.slots])
        self.rows.extend(rows)

    def _computed_apart(
        self, prompts: list[list[int]], prefix: ModelStream | None
    ) -> list[tuple[list[int], ModelStream]]:
        """The rows of ``prompts`` computed in streams of their own, as (the prompts'
        indices, their stream): a fork of ``prefix`` for the prompts that start with its
        ids, a new stream for the others; each row fed its prompt but the last id."""
        kept = prefix.rows[0].ids if prefix is not None else []
        shares = [bool(kept) and len(p) > len(kept) and p[: len(kept)] == kept for p in prompts]
        parts: list[tuple[list[int], ModelStream]] = []
        for share in (True, False):
            members = [i for i, s in enumerate(shares) if s == share]
            if not members:
                continue
            part = (
                prefix.fork(len(members))
                if share and prefix is not None
                else ModelStream(self.model, len(members), self.pad_id)
            )
            body = {
                j: prompts[i][:-1]
                for j, i in enumerate(members)
                if len(prompts[i]) - 1 > len(part.rows[j].ids)
            }
            if body:
                part._advance(body, 1, read=[])
            parts.append((members, part))
        return parts

    def _append_cache_rows(
        self,
        count: int,
        slots: int,
        at: list[torch.Tensor],
        parts: list[tuple[list[int], ModelStream]],
    ) -> None:
        """Append ``count`` rows to every cache layer, each part's keys and values copied
        into its rows ``at`` and right-aligned in the ``slots`` slots."""
        for n, layer in enumerate(self.cache.layers):
            if getattr(layer, "keys", None) is None or not layer.keys.numel():
                continue
            if layer.keys.shape[-2] != slots:
                raise RuntimeFault("A cache layer that drops slots cannot take new rows.")
            grown = []
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = old.new_zeros((count, *old.shape[1:]))
                for index, (_, part) in zip(at, parts):
                    source = getattr(part.cache.layers[n], name, None)
                    if source is not None and source.numel():
                        new.index_copy_(0, index, _right(source, slots))
                grown.append(torch.cat([old, new]))
            layer.keys, layer.values = grown

    def _append_mask_rows(
        self,
        count: int,
        slots: int,
        at: list[torch.Tensor],
        parts: list[tuple[list[int], ModelStream]],
    ) -> None:
        """Append ``count`` rows to the mask and the positions, each part's copied into
        its rows ``at`` and right-aligned in the ``slots`` slots."""
        blocks = []
        for held in (self.mask, self.pos):
            block = held.new_zeros((count, held.shape[1]))
            if held.shape[1]:  # positions are kept for windowed models only
                for index, (_, part) in zip(at, parts):
                    source = part.mask if held is self.mask else part.pos
                    block.index_copy_(0, index, _right(source, slots))
            blocks.append(block)
        self.mask = torch.cat([self.mask, blocks[0]])
        self.pos = torch.cat([self.pos, blocks[1]])

    def _add_slots(self, width: int) -> None:
        """``width`` more slots for every row, masked (room for admitted rows)."""
        for layer in self.cache.layers:
            keys = getattr(layer, "keys", None)
            if keys is None or not keys.numel():
                continue
            if hasattr(layer, "append_masked"):
                layer.append_masked(width)
                continue
            # A layer type kvcache.py does not know: concatenate.
            layer.keys, layer.values = (
                torch.cat([t, t.new_zeros((*t.shape[:2], width, t.shape[-1]))], dim=-2)
                for t in (keys, layer.values)
            )
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length += width
        self.mask = torch.cat([self.mask, self.mask.new_zeros((len(self.rows), width))], dim=1)
        if self.pos.shape[1]:
            self.pos = torch.cat([self.pos, self.pos.new_zeros((len(self.rows), width))], dim=1)

    def _rows_cache(self, index: torch.Tensor) -> Any:
        """A cache holding only the rows ``index`` (copies of their keys and values)."""
        sub = copy.copy(self.cache)
        sub.layers = []
        layer: Any
        for layer in self.cache.layers:
            part = copy.copy(layer)
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                part.keys = layer.keys.index_select(0, index)
                part.values = layer.values.index_select(0, index)
            sub.layers.append(part)
        return sub

    def _merge_rows(self, sub: Any, index: torch.Tensor, width: int) -> None:
        """Write a row-subset cache back: every other row gets ``width`` empty (masked) slots.

        Only the last ``width`` slots are new, in every layer (a sliding-window layer may
        store fewer old slots than a full one), so only those are written.
        """
        for i, (full, part) in enumerate(zip(self.cache.layers, sub.layers)):
            if getattr(part, "keys", None) is None or not part.keys.numel():
                continue
            if hasattr(full, "append_masked") and full.keys is not None and full.keys.numel():
                full.append_masked(width, index, part)
                continue
            # A layer type this module does not know: rebuild it whole, aligned from the end.
            batch, length = len(self.rows), part.keys.shape[-2]
            merged = []
            for old, new in ((full.keys, part.keys), (full.values, part.values)):
                out = torch.zeros((batch, *new.shape[1:]), dtype=new.dtype, device=new.device)
                carried = min(
                    length - width, 0 if old is None or not old.numel() else old.shape[-2]
                )
                if carried > 0:
                    out[:, :, length - width - carried : length - width] = old[:, :, -carried:]
                out.index_copy_(0, index, new)
                merged.append(out)
            part.keys, part.values = merged
            self.cache.layers[i] = part

    def _masks(self, live: torch.Tensor, key_pos: torch.Tensor, query_pos: torch.Tensor) -> Any:
        """4-D additive masks [R, 1, width, slots] by live-token distance: a query sees a
        live key at or before its position, and in a sliding layer fewer than
        ``window`` positions back (what an uncached pass over the live ids sees)."""
        assert self.window is not None
        distance = query_pos[:, :, None] - key_pos[:, None, :]  # [R, width, slots]
        visible = (live[:, None, :] > 0) & (distance >= 0)
        floor = torch.finfo(self._dtype).min
        zero = torch.zeros((), dtype=self._dtype, device=self.device)
        full = torch.where(visible, zero, floor)[:, None]
        sliding = torch.where(visible & (distance < self.window), zero, floor)[:, None]
        if self._mixed:
            return {"full_attention": full, "sliding_attention": sliding}
        return sliding

    def forward(self, targets: dict[int, list[int]]) -> torch.Tensor:
        """Bring rows to their target ids and return their next-token logprobs
        ``[len(targets), vocab]`` (float32), in the order of ``targets``.

        Raises:
            RuntimeFault: a NaN or +inf logit (see :func:`log_normaliser`).
        """
        scores = self.scores(targets)
        if scores.norm is not None:
            check_finite(scores.norm)
        return scores.logprobs()

    @torch.inference_mode()
    def scores(self, targets: dict[int, list[int]], read: Sequence[int] | None = None) -> Scores:
        """Bring rows to their target ids and return their next-token :class:`Scores`.

        Args:
            targets: row index -> the full token id list that row should hold
                (prompt + response). Rows not named are left untouched.
            read: the rows (of ``targets``) whose scores a decision reads, in this
                order; None: every row of ``targets``. The other rows are brought up
                to date, but their logits are never computed (see :func:`head_rows`).

        Returns:
            the scores of the rows read, normalised as the pass's own would be.
        """
        if not targets:
            return Scores(torch.empty((0, 0)))
        logits = self._advance(targets, 1, read)[:, -1, :]
        return Scores.of_logits(logits, batch=len(targets))

    def forced(self, ids: list[int], n: int) -> torch.Tensor:
        """Teacher forcing on a one-row stream: bring the row to ``ids`` and return the
        float32 logits ``[n, vocab]`` after each of the last ``n`` ids (row t predicts
        what follows ``ids[: len(ids) - n + t + 1]``). The row keeps its cache, so a
        forked copy of a shared prompt prefix is computed once for every sample."""
        if len(self.rows) != 1:
            raise ValueError("Teacher forcing runs on a one-row stream.")
        return self._advance({0: ids}, n)[0]

    @torch.inference_mode()
    def _advance(
        self, targets: dict[int, list[int]], tail: int, read: Sequence[int] | None = None
    ) -> torch.Tensor:
        """One pass bringing the named rows to their target ids: the float32 logits
        ``[len(read), tail, vocab]`` after each row's last ``tail`` ids, in the order of
        ``read`` (None: of ``targets``; each row is fed at least its last ``tail`` ids)."""
        order = list(targets)
        self.passes += 1
        feeds = self._roll_back(targets, tail)
        width = max(len(new) for _, new in feeds.values())
        start = self.slots
        # Only the named rows are computed when they are fewer than the batch: a forward
        # pass costs rows x width, and the other rows would only carry masked pads.
        subset = len(order) < len(self.rows)
        computed = order if subset else list(range(len(self.rows)))
        input_ids, block, positions = self._inputs(computed, feeds, width)
        index = torch.tensor(computed, dtype=torch.long, device=self.device)
        cache = self._rows_cache(index) if subset else self.cache
        attention = self._attention(index if subset else None, block, positions)
        # The logits only of the rows read, in their order (rows of this pass's input).
        at = {r: i for i, r in enumerate(computed)}
        pick = [at[r] for r in (order if read is None else read)]
        whole = pick == list(range(len(computed)))
        with head_rows(self.model, None if whole else pick, len(computed)) as narrowed:
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=positions,
                **{self._cache_kw: cache},
                cache_position=torch.arange(start, start + width, device=self.device),
                use_cache=True,
                logits_to_keep=tail,
            )
        self._append_block(index, block, positions)
        if subset:
            self._merge_rows(cache, index, width)
        for r, (_, new) in feeds.items():
            row = self.rows[r]
            row.ids.extend(new)
            row.slots.extend(range(start + width - len(new), start + width))
        logits = out.logits[:, -tail:, :].float()
        if not (whole or narrowed[0]):
            logits = logits.index_select(0, torch.tensor(pick, device=self.device))
        return logits

    def _roll_back(
        self, targets: dict[int, list[int]], tail: int
    ) -> dict[int, tuple[int, list[int]]]:
        """Mask each named row's slots past what it keeps of its target ids, and return
        row -> (the ids it keeps, the ids to feed it)."""
        feeds: dict[int, tuple[int, list[int]]] = {}
        for r in targets:
            row, want = self.rows[r], targets[r]
            if len(want) < tail:
                raise RuntimeFault("A model was asked to continue an empty context.")
            # Keep the longest common prefix, but always feed the last ``tail`` tokens:
            # the logits of cached tokens are not kept.
            keep = min(common_prefix(row.ids, want), len(want) - tail)
            if keep < len(row.ids):
                dead = torch.tensor(row.slots[keep:], dtype=torch.long, device=self.device)
                self.mask[r, dead] = 0
                del row.ids[keep:], row.slots[keep:]
            feeds[r] = (keep, want[keep:])
        return feeds

    def _inputs(
        self, computed: list[int], feeds: dict[int, tuple[int, list[int]]], width: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pass's [R, width] input ids, live-slot block and position ids, on the
        device: each fed row's new tokens right-aligned, pads masked out."""
        # Built as lists and sent to the device once each.
        id_rows, block_rows, pos_rows = [], [], []
        for r in computed:
            if r in feeds:
                keep, new = feeds[r]
                pad = width - len(new)
                id_rows.append([self.pad_id] * pad + new)
                block_rows.append([0] * pad + [1] * len(new))
                # Pads get the row's last live position so no position id is out of range.
                pos_rows.append([max(keep - 1, 0)] * pad + list(range(keep, keep + len(new))))
            else:
                id_rows.append([self.pad_id] * width)
                block_rows.append([0] * width)
                pos_rows.append([max(len(self.rows[r].ids) - 1, 0)] * width)
        return (
            torch.tensor(id_rows, dtype=torch.long).to(self.device),
            torch.tensor(block_rows, dtype=torch.long, device=self.device),
            torch.tensor(pos_rows, dtype=torch.long).to(self.device),
        )

    def _attention(
        self, index: torch.Tensor | None, block: torch.Tensor, positions: torch.Tensor
    ) -> Any:
        """The pass's attention mask over the held slots and the new ``block``: 2-D, or
        4-D by live-token distance for a windowed model; ``index``: the rows computed
        (None: every row)."""
        past_mask = self.mask if index is None else self.mask.index_select(0, index)
        attention: Any = torch.cat([past_mask, block], dim=1)
        if self.window is not None:
            past_pos = self.pos if index is None else self.pos.index_select(0, index)
            attention = self._masks(attention, torch.cat([past_pos, positions], dim=1), positions)
        return attention

    def _append_block(
        self, index: torch.Tensor, block: torch.Tensor, positions: torch.Tensor
    ) -> None:
        """Append a pass's slots to the mask (and positions) of every row: the rows
        ``index`` get the pass's ``block`` and ``positions``, the others masked slots."""
        batch, width = len(self.rows), block.shape[1]
        full_block = torch.zeros((batch, width), dtype=torch.long, device=self.device)
        full_block.index_copy_(0, index, block)
        self.mask = torch.cat([self.mask, full_block], dim=1)
        if self.window is not None:
            full_pos = torch.zeros((batch, width), dtype=torch.long, device=self.device)
            full_pos.index_copy_(0, index, positions)
            self.pos = torch.cat([self.pos, full_pos], dim=1)


@contextmanager
def head_rows(model: Any, pick: list[int] | None, rows: int) -> Iterator[list[bool]]:
    """While a pass of ``rows`` rows runs, its output head (``get_output_embeddings``)
    computes the logits of the rows ``pick`` alone, in that order (None: every row).

    A next-token pass costs a head of ``vocab x hidden`` per row, and none of it is
    needed at rows whose pass only brings their cache up to date (a guide is read at its
    uncertain rows). What that saves is measured by ``bench/head.py``: 4-7 % of a
    16-row guide pass that reads 5 rows, on this project's CPU machine. The
    head's input is narrowed by a one-shot forward pre-hook, so whatever the model does
    after its head (Gemma's soft-capping, the float cast) applies to those rows as it
    would to all. Yields ``[applied]``; it stays False where the head was not called
    on the pass's rows (a model without one, or another layout): the caller then
    selects the rows from the full output.
    """
    applied = [False]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or pick is None:
        yield applied
        return

    def narrow(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0] if args else None
        if applied[0] or not isinstance(hidden, torch.Tensor) or hidden.shape[0] != rows:
            return None
        applied[0] = True
        index = torch.tensor(pick, dtype=torch.long, device=hidden.device)
        return (hidden.index_select(0, index), *args[1:])

    handle = head.register_forward_pre_hook(narrow)
    try:
        yield applied
    finally:
        handle.remove()
